package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// TestHarnessClientGoPortForward proves the harness: client-go's own
// port-forward moves 16 MiB through the real kube-apiserver and kwok to a
// local echo server and back, over SPDY and over WebSocket.
func TestHarnessClientGoPortForward(t *testing.T) {
	c := cluster.Start(t)
	ns := c.Namespace(t)
	echo := cluster.EchoServer(t)
	c.Pod(t, ns, "echo", cluster.PodOptions{
		Ports:   []corev1.ContainerPort{{Name: "echo", ContainerPort: 80}},
		Forward: map[int32]string{80: echo},
	})
	cfg := c.Rest()
	u, err := url.Parse(fmt.Sprintf("%s/api/v1/namespaces/%s/pods/echo/portforward", c.Server, ns))
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, websocket bool) {
		transport, upgrader, err := spdy.RoundTripperFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var dialer httpstream.Dialer = spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
		if websocket {
			// No fallback to SPDY: the test must prove the WebSocket path itself.
			if dialer, err = portforward.NewSPDYOverWebsocketDialer(u, cfg); err != nil {
				t.Fatal(err)
			}
		}
		stop, ready := make(chan struct{}), make(chan struct{})
		fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:80"}, stop, ready, io.Discard, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- fw.ForwardPorts() }()
		defer func() {
			close(stop)
			select {
			case <-errc:
			case <-time.After(10 * time.Second):
				t.Error("port-forward did not stop within 10s")
			}
		}()
		select {
		case <-ready:
		case err := <-errc:
			t.Fatalf("port-forward failed: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("port-forward not ready within 30s")
		}
		ports, err := fw.GetPorts()
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, fmt.Sprintf("127.0.0.1:%d", ports[0].Local), 16<<20)
	}
	t.Run("spdy", func(t *testing.T) { run(t, false) })
	t.Run("websocket", func(t *testing.T) { run(t, true) })
}

// roundTrip sends n random bytes through addr to the echo server and checks
// that the same bytes come back.
func roundTrip(t *testing.T, addr string, n int) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	data := make([]byte, n)
	rand.Read(data)
	want := sha256.Sum256(data)
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, bytes.NewReader(data))
		werr <- err
	}()
	h := sha256.New()
	got, err := io.CopyN(h, conn, int64(n))
	if err != nil {
		t.Fatalf("read back %d of %d bytes: %v", got, n, err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("sha256 of echoed data differs")
	}
}
