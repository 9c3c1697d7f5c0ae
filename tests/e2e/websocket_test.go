package e2e

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/internal/testnet"
	"github.com/tunnels-dev/tunnels/kube"
	"github.com/tunnels-dev/tunnels/tests/cluster/podserver"
	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
	"github.com/tunnels-dev/tunnels/tunnel"
)

// echoPod starts a pod whose port 80 kwok routes to a local echo server.
func echoPod(t *testing.T, c *cluster.Cluster) (ns, pod string) {
	t.Helper()
	ns = c.Namespace(t)
	echo := cluster.EchoServer(t)
	c.Pod(t, ns, "echo", cluster.PodOptions{
		Ports:   []corev1.ContainerPort{{Name: "echo", ContainerPort: 80}},
		Forward: map[int32]string{80: echo},
	})
	return ns, "echo"
}

// upgrader is the forward.Upgrader of a kube.Client, as tunnels uses it.
func upgrader(c *kube.Client) forward.Upgrader { return tunnel.KubeClient(c) }

// dialTransport dials pod over transport and closes the connection at the
// end of the test.
func dialTransport(t *testing.T, up forward.Upgrader, ns, pod string, tr forward.Transport) *forward.Conn {
	t.Helper()
	conn, err := forward.Dial(t.Context(), up, ns, pod, forward.Options{Transport: tr})
	if err != nil {
		t.Fatalf("dial %s/%s over %s: %v", ns, pod, tr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// serveLocal listens on loopback and forwards every accepted connection to
// remote over conn, until the test ends.
func serveLocal(t testing.TB, conn *forward.Conn, remote int) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		cancel()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { _ = conn.Forward(ctx, c, remote) })
		}
	})
	return l.Addr().String()
}

// hashEcho sends n bytes through addr to the echo server and reads them
// back, and compares the SHA-256 of what went up with that of what came
// down.
func hashEcho(t *testing.T, addr string, n int64, seed uint64) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	up := sha256.New()
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, io.TeeReader(testnet.Stream(seed, n), up))
		werr <- err
	}()
	down := sha256.New()
	got, err := io.CopyN(down, c, n)
	if err != nil {
		t.Fatalf("read back through %s: %d of %d bytes: %v", addr, got, n, err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("send through %s: %v", addr, err)
	}
	if string(up.Sum(nil)) != string(down.Sum(nil)) {
		t.Fatalf("SHA-256 of the %d bytes read back differs from that of the bytes sent", n)
	}
}

func TestWebSocketTransport64MiBEachWay(t *testing.T) {
	c := cluster.Start(t)
	ns, pod := echoPod(t, c)
	kc := kubeClient(t, c.AdminKubeconfig)
	conn := dialTransport(t, upgrader(kc), ns, pod, forward.TransportWebSocket)
	if got := conn.Transport(); got != forward.TransportWebSocket {
		t.Fatalf("transport: got %s, want websocket", got)
	}
	addr := serveLocal(t, conn, 80)
	hashEcho(t, addr, 64<<20, 1)
	if err := conn.Err(); err != nil {
		t.Fatalf("connection after the transfer: %v", err)
	}
}

func TestWebSocketTransportManyConnections(t *testing.T) {
	c := cluster.Start(t)
	ns, pod := echoPod(t, c)
	kc := kubeClient(t, c.AdminKubeconfig)
	conn := dialTransport(t, upgrader(kc), ns, pod, forward.TransportWebSocket)
	addr := serveLocal(t, conn, 80)
	const conns = 100
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() { hashEcho(t, addr, 256<<10, uint64(100+i)) })
	}
	wg.Wait()
	if got := conn.Stats.Snapshot().Total; got < conns {
		t.Fatalf("connections forwarded over the one websocket: got %d, want %d", got, conns)
	}
}

func TestWebSocketTransportForbidden(t *testing.T) {
	// The no-rights user gets the API server's 403, and auto does not fall
	// back to SPDY for it: a 403 is a 403.
	c := cluster.Start(t)
	ns, pod := echoPod(t, c)
	kc := kubeClient(t, c.NoRightsKubeconfig)
	_, err := forward.Dial(t.Context(), upgrader(kc), ns, pod, forward.Options{Transport: forward.TransportAuto})
	if !errors.Is(err, kube.ErrForbidden) {
		t.Fatalf("dial as nobody: got %v, want a 403", err)
	}
	var ue *kube.UpgradeError
	if !errors.As(err, &ue) || ue.Method != http.MethodGet {
		t.Fatalf("dial as nobody: got %v, want the websocket GET's own 403, not a fallback", err)
	}
}

// TestWebSocketTransportBackends: over WebSocket to kwok's node (the
// apiserver unwraps the tunnel and speaks SPDY to kwok) and to the real
// kubelet (which since 1.36 may get the WebSocket itself), 16 MiB each way
// with matching SHA-256.
func TestWebSocketTransportBackends(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *cluster.Backend) {
		ns := b.Namespace(t)
		b.ServerPod(t, ns, "srv", cluster.ServerPodOptions{})
		conn := dialTransport(t, upgrader(kubeClient(t, b.AdminKubeconfig)), ns, "srv", forward.TransportWebSocket)
		hashEcho(t, serveLocal(t, conn, podserver.EchoPort), 16<<20, 11)
	})
}
