// Package protocol checks package forward against the kubelet's own
// port-forward server code (k8s.io/cri-streaming), reached through package
// kube's real client over TLS.
package protocol

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"k8s.io/cri-streaming/pkg/streaming/portforward"

	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/internal/testnet"
	"github.com/tunnels-dev/tunnels/kube"
)

// leakOptions ignores what outlives every test by design: klog's flush
// daemon, and the kubelet server's wait for the second stream of a pair
// (streamCreationTimeout, 30 s), which a client cut off between its two
// SYN_STREAMs leaves behind on the server, and the server's spdystream
// closing a stream whose SYN_REPLY it never managed to write (its
// connection killed first: SendReply fails, replied stays false, and
// Close waits in waitWriteReply for good). They belong to the oracle, not
// to the client under test, which does not use spdystream.
var leakOptions = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/moby/spdystream.(*Stream).waitWriteReply"),
	goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*loggingT).flushDaemon"),
	goleak.IgnoreAnyFunction("k8s.io/cri-streaming/pkg/streaming/portforward.(*httpStreamHandler).monitorStreamPair"),
}

// TestMain fails the run if goroutines outlive the tests and benchmarks.
func TestMain(m *testing.M) {
	if os.Getenv(benchKubeletEnv) != "" {
		serveBenchKubeletProcess()
		return
	}
	code := m.Run()
	if code == 0 {
		if err := findLeaks(leakOptions...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines still running after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// findLeaks is goleak.Find with a 5s grace: spdystream, in the kubelet's
// server code and in client-go, takes up to a second to wind down a
// connection, longer than goleak's own retries.
func findLeaks(opts ...goleak.Option) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
}

// checkLeaks fails the test if goroutines it started are still running
// after it ended (with findLeaks' grace); call it first.
func checkLeaks(t *testing.T) {
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, leakOptions...)
	t.Cleanup(func() {
		if err := findLeaks(opts...); err != nil {
			t.Errorf("leaked goroutines: %v", err)
		}
	})
}

// kubelet runs the kubelet's port-forward server (ServePortForward) behind
// an httptest TLS server at the apiserver's path. Pod "missing" answers 404
// and pod "broken" 500, as the apiserver would.
type kubelet struct {
	t       testing.TB
	srv     *httptest.Server
	targets map[int32]string // pod port → loopback address
	// pf, if set, serves every forwarded connection instead of a forwarder
	// over targets: a runtime scripted by the test.
	pf portforward.PortForwarder
	// plain serves plain HTTP instead of TLS.
	plain bool

	conns    testnet.Conns    // every accepted TCP connection, for kill
	handlers testnet.Handlers // port-forward upgrades served: ServePortForward calls, which outlive hijacking
}

func newKubelet(t testing.TB, targets map[int32]string) *kubelet {
	return startKubelet(t, &kubelet{targets: targets}, nil)
}

// startKubelet starts k, with its listener wrapped by wrap if set; wrap's
// connections carry the TLS bytes as they go on the wire.
func startKubelet(t testing.TB, k *kubelet, wrap func(net.Listener) net.Listener) *kubelet {
	k.t = t
	k.srv = httptest.NewUnstartedServer(k)
	var l net.Listener = &trackingListener{Listener: k.srv.Listener, k: k}
	if wrap != nil {
		l = wrap(l)
	}
	k.srv.Listener = l
	if k.plain {
		k.srv.Start()
	} else {
		k.srv.StartTLS()
	}
	t.Cleanup(func() {
		k.handlers.Stop()
		k.srv.Close()
		k.conns.Close()
		k.handlers.Wait()
	})
	return k
}

// trackingListener remembers every connection so that kill can close the
// hijacked ones, which httptest forgets.
type trackingListener struct {
	net.Listener
	k *kubelet
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.k.conns.Add(c)
	}
	return c, err
}

// kill closes every connection, as a node or apiserver that dies would.
func (k *kubelet) kill() { k.conns.CloseAll() }

// dialCount returns how many port-forward upgrades the kubelet has served.
func (k *kubelet) dialCount() int { return k.handlers.Started() }

// ServeHTTP serves the apiserver's port-forward endpoint.
func (k *kubelet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// /api/v1/namespaces/NS/pods/POD/portforward
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 7 || parts[5] == "" || parts[6] != "portforward" {
		http.NotFound(w, r)
		return
	}
	pod := parts[5]
	switch pod {
	case "missing":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"missing\" not found","reason":"NotFound","code":404}`)
		return
	case "broken":
		http.Error(w, "etcd is on fire", http.StatusInternalServerError)
		return
	}
	// httptest does not wait for handlers of hijacked connections, so the
	// kubelet counts them itself, and refuses new ones once its cleanup has
	// started waiting.
	if !k.handlers.Start() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer k.handlers.Done()
	var pf portforward.PortForwarder = &forwarder{targets: k.targets}
	if k.pf != nil {
		pf = k.pf
	}
	portforward.ServePortForward(w, r, pf, pod, "uid-"+pod, nil, 0, 30*time.Second, portforward.SupportedProtocols)
}

// forwarder is the PortForwarder a container runtime provides: it dials the
// port "in the pod" (a loopback target) and copies both ways, as containerd
// does: the client's end reaches the target as a half-close, and once
// either direction has ended the other gets runtimeGrace to finish before
// PortForward returns. The kubelet then closes the error stream and then
// the data stream, so the client's FIN on the data comes last.
//
// Unlike containerd, whose grace is a second of wall-clock time, the grace
// starts again whenever the other direction moves data: a transfer still
// flowing is never cut, only one that stalls (a target that never closes
// its side) is. With containerd's fixed second, a test that sends a long
// reply after the client's half-close (as TestTransferBothWaysAtOnce does
// when its upload ends first) would pass or fail with the machine's load.
// docs/protocol.md §8 describes containerd's cut.
type forwarder struct {
	targets map[int32]string
}

// runtimeGrace is containerd's "give a chance to terminate gracefully";
// here, how long the remaining direction may stall.
const runtimeGrace = time.Second

func (f *forwarder) PortForward(ctx context.Context, name, uid string, port int32, stream io.ReadWriteCloser) error {
	addr, ok := f.targets[port]
	if !ok {
		return fmt.Errorf("no target for port %d", port)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	var moved atomic.Int64 // bytes copied either way
	errs := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, countingReader{stream, &moved})
		conn.(*net.TCPConn).CloseWrite()
		errs <- err
	}()
	go func() {
		_, err := io.Copy(stream, countingReader{conn, &moved})
		errs <- err
	}()
	err = <-errs
	grace := time.NewTicker(runtimeGrace)
	defer grace.Stop()
	for last := moved.Load(); ; {
		select {
		case <-errs:
			return err
		case <-ctx.Done():
			return err
		case <-grace.C:
			n := moved.Load()
			if n == last {
				return err // no byte in a whole grace: stalled
			}
			last = n
		}
	}
}

// countingReader adds the bytes read from r to n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// kubeClient returns package kube's client for the server, over TLS with
// its CA, as tunnels uses it.
func (k *kubelet) kubeClient(t testing.TB) *kube.Client {
	t.Helper()
	c, err := kube.NewClient(&kube.RestConfig{Server: k.srv.URL, CAData: k.caPEM(), BearerToken: "token"}, kube.ClientOptions{})
	if err != nil {
		t.Fatalf("kube.NewClient: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// caPEM returns the server's certificate, its own CA, as PEM.
func (k *kubelet) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.srv.Certificate().Raw})
}

// upgrader adapts *kube.Client to forward.Upgrader, as cmd/tunnels does.
type upgrader struct{ c *kube.Client }

func (u upgrader) Upgrade(ctx context.Context, method, path string, h http.Header) (net.Conn, http.Header, error) {
	conn, err := u.c.Upgrade(ctx, method, path, h)
	if err != nil {
		return nil, nil, err
	}
	return conn, conn.Header, nil
}

func (k *kubelet) upgrader(t testing.TB) forward.Upgrader { return upgrader{k.kubeClient(t)} }

// dial opens a forward.Conn to pod "web".
func (k *kubelet) dial(t testing.TB, opts forward.Options) *forward.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := forward.Dial(ctx, k.upgrader(t), "default", "web", opts)
	if err != nil {
		t.Fatalf("forward.Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
