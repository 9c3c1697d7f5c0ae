package protocol

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/internal/testnet"
	"github.com/tunnels-dev/tunnels/internal/testrun"
	"github.com/tunnels-dev/tunnels/kube"
)

// session runs a forward.Session to pod "web" of k, with one local port
// (127.0.0.1, a free port) per remote port.
type session struct {
	s     *forward.Session
	ports map[int]*forward.Port
}

// startTrustSession runs a forward.Session to pod "web" through up, with
// conn as its connection options and one local port (127.0.0.1, a free
// port) per remote port.
func startTrustSession(t testing.TB, up forward.Upgrader, conn forward.Options, remotes ...int) *session {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := forward.NewSession(ctx, forward.SessionOptions{
		Upgrader:  up,
		Namespace: "default",
		Resolve: func(ctx context.Context, rs []forward.RemotePort, _ string) (forward.Resolved, error) {
			res := forward.Resolved{Pod: "web"}
			for _, r := range rs {
				res.Ports = append(res.Ports, r.Number)
			}
			return res, nil
		},
		Target:  "pod/web",
		Conn:    conn,
		Backoff: forward.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
	})
	ss := &session{s: s, ports: map[int]*forward.Port{}}
	for _, r := range remotes {
		l, err := forward.Listen([]string{"127.0.0.1"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.AddPort(l, forward.RemotePort{Number: r}, forward.PortOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ss.ports[r] = p
	}
	testrun.Go(t, cancel, s.Run)
	return ss
}

func startSession(t testing.TB, k *kubelet, remotes ...int) *session {
	t.Helper()
	return startTrustSession(t, k.upgrader(t), forward.Options{}, remotes...)
}

// dial connects to the local port forwarding to remote.
func (ss *session) dial(t testing.TB, remote int) *net.TCPConn {
	t.Helper()
	return testnet.Dial(t, ss.ports[remote].Listener().Addrs()[0].String())
}

// echoTimeout bounds one echo round trip through a session: generous, as
// hundreds run at once under the race detector.
const echoTimeout = 60 * time.Second

func TestTransferBothWaysAtOnce(t *testing.T) {
	checkLeaks(t)
	size := int64(256 << 20)
	if testing.Short() {
		size = 16 << 20
	}
	// The target sends size bytes of Stream(2) while it hashes what it
	// receives; after both, it sends the 32-byte digest of what it got.
	target := testnet.Serve(t, func(c *net.TCPConn) {
		sent := make(chan error, 1)
		go func() {
			_, err := io.Copy(c, testnet.Stream(2, size))
			sent <- err
		}()
		h := sha256.New()
		io.Copy(h, c)
		if <-sent == nil {
			c.Write(h.Sum(nil))
		}
		c.CloseWrite()
	})
	k := newKubelet(t, map[int32]string{80: target})
	ss := startSession(t, k, 80)
	c := ss.dial(t, 80)
	c.SetDeadline(time.Now().Add(5 * time.Minute))

	start := time.Now()
	upHash := sha256.New()
	sendErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, io.TeeReader(testnet.Stream(1, size), upHash))
		if err == nil {
			err = c.CloseWrite()
		}
		sendErr <- err
	}()
	downHash := sha256.New()
	if n, err := io.Copy(downHash, io.LimitReader(c, size)); err != nil || n != size {
		t.Fatalf("received %d of %d bytes: %v", n, size, err)
	}
	digest, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read the target's digest: %v", err)
	}
	if err := <-sendErr; err != nil {
		t.Fatalf("send: %v", err)
	}
	elapsed := time.Since(start)

	wantDown := sha256.New()
	io.Copy(wantDown, testnet.Stream(2, size))
	if !bytes.Equal(downHash.Sum(nil), wantDown.Sum(nil)) {
		t.Error("SHA-256 of the data received differs from what the target sent")
	}
	if !bytes.Equal(digest, upHash.Sum(nil)) {
		t.Errorf("the target's SHA-256 of what it received (%x) differs from what was sent (%x)", digest, upHash.Sum(nil))
	}
	t.Logf("%d MiB each way in %s: %.0f MB/s each way", size>>20, elapsed.Round(time.Millisecond), float64(size)/elapsed.Seconds()/1e6)
}

func TestConcurrentConnections(t *testing.T) {
	checkLeaks(t)
	k := newKubelet(t, map[int32]string{80: testnet.Echo(t)})
	ss := startSession(t, k, 80)
	const n = 200
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		conns[i] = ss.dial(t, 80)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data, _ := io.ReadAll(testnet.Stream(uint64(100+i), 32<<10+int64(i)))
			if err := testnet.RoundTrip(c, data, echoTimeout); err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// So many at once crowd one SPDY connection: the session adds more
	// to the same pod, up to its pool's default of 4.
	for deadline := time.Now().Add(10 * time.Second); k.dialCount() < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := k.dialCount(); got < 2 || got > 4 {
		t.Errorf("%d SPDY connections for %d concurrent ones, want 2-4 (a pool)", got, n)
	}
	if st := ss.ports[80].Status(); st.Stats.Total != n || st.Stats.Failed != 0 {
		t.Errorf("port stats = %+v, want %d connections, none failed", st.Stats, n)
	}
}

func TestHalfClose(t *testing.T) {
	t.Run("client closes first", func(t *testing.T) {
		checkLeaks(t)
		// The target reads to EOF, then answers and closes.
		target := testnet.Serve(t, func(c *net.TCPConn) {
			b, _ := io.ReadAll(c)
			fmt.Fprintf(c, "got %d bytes", len(b))
		})
		k := newKubelet(t, map[int32]string{80: target})
		ss := startSession(t, k, 80)
		c := ss.dial(t, 80)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(make([]byte, 1<<20))
		c.CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "got 1048576 bytes" {
			t.Fatalf("answer = %q, %v; want %q", got, err, "got 1048576 bytes")
		}
	})
	t.Run("server closes first", func(t *testing.T) {
		checkLeaks(t)
		received := make(chan string, 1)
		target := testnet.Serve(t, func(c *net.TCPConn) {
			c.Write([]byte("hello"))
			c.CloseWrite()
			b, _ := io.ReadAll(c)
			received <- string(b)
		})
		k := newKubelet(t, map[int32]string{80: target})
		ss := startSession(t, k, 80)
		c := ss.dial(t, 80)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// The runtime ends the pair about a second after the target's
		// half-close (containerd's grace), and the kubelet closes the
		// error stream before the data stream: a clean EOF.
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "hello" {
			t.Fatalf("read = %q, %v; want hello then EOF", got, err)
		}
		select {
		case <-received:
		case <-time.After(10 * time.Second):
			t.Fatal("the target did not see the end of the connection")
		}
	})
}

func TestRefusedPortFailsOnlyThatConnection(t *testing.T) {
	checkLeaks(t)
	k := newKubelet(t, map[int32]string{80: testnet.Echo(t), 81: testnet.ClosedPort(t)})
	ss := startSession(t, k, 80, 81)

	long := ss.dial(t, 80)
	long.SetDeadline(time.Now().Add(20 * time.Second))
	exchange := func(msg string) {
		t.Helper()
		if _, err := long.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(long, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo on the open connection = %q, %v; want %q", buf, err, msg)
		}
	}
	exchange("before")

	refused := ss.dial(t, 81)
	refused.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(refused); !errors.Is(err, syscall.ECONNRESET) || len(b) > 0 {
		t.Fatalf("refused connection: read %q, %v; want a reset, not a clean EOF", b, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var re *forward.RemoteError
	for !errors.As(ss.ports[81].Status().LastErr, &re) {
		if time.Now().After(deadline) {
			t.Fatalf("port 81 error = %v, want a *RemoteError", ss.ports[81].Status().LastErr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !re.Refused() || !strings.Contains(re.Message, "error forwarding port 81 to pod web") {
		t.Errorf("remote error = %q, want the kubelet's refused message", re.Message)
	}

	exchange("after")
	if err := testnet.RoundTrip(ss.dial(t, 80), []byte("a new connection"), echoTimeout); err != nil {
		t.Fatal(err)
	}
	if got := k.dialCount(); got != 1 {
		t.Errorf("%d SPDY connections, want the first kept", got)
	}
	if st := ss.s.Status(); st.State != forward.StateReady {
		t.Errorf("session state = %v, want ready", st.State)
	}
}

func TestDialErrorsQuoteTheServer(t *testing.T) {
	checkLeaks(t)
	k := newKubelet(t, nil)
	up := k.upgrader(t)
	tests := []struct {
		pod    string
		want   []string
		wantIs error
	}{
		{"missing", []string{"404", "missing", "not found"}, kube.ErrNotFound},
		{"broken", []string{"500", "etcd is on fire"}, nil},
	}
	for _, tt := range tests {
		c, err := forward.Dial(t.Context(), up, "default", tt.pod, forward.Options{})
		if err == nil {
			c.Close()
			t.Fatalf("Dial(%s) succeeded", tt.pod)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Dial(%s) = %v; want it to contain %s", tt.pod, err, w)
			}
		}
		if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
			t.Errorf("Dial(%s) = %v, want errors.Is %v", tt.pod, err, tt.wantIs)
		}
	}
}

func TestLostConnectionIsReported(t *testing.T) {
	checkLeaks(t)
	k := newKubelet(t, map[int32]string{80: testnet.Echo(t)})
	c := k.dial(t, forward.Options{})
	local, remote := net.Pipe()
	defer local.Close()
	done := make(chan error, 1)
	go func() { done <- c.Forward(t.Context(), remote, 80) }()
	local.Write([]byte("x"))
	io.ReadFull(local, make([]byte, 1))

	k.kill()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not fire within 5s of the server dying")
	}
	if err := c.Err(); !errors.Is(err, forward.ErrLostConnection) {
		t.Errorf("Err = %v, want ErrLostConnection", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, forward.ErrLostConnection) {
			t.Errorf("Forward = %v, want ErrLostConnection", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Forward did not return within 5s of the server dying")
	}
}

func TestSessionRedialsAfterTheServerDies(t *testing.T) {
	checkLeaks(t)
	k := newKubelet(t, map[int32]string{80: testnet.Echo(t)})
	ss := startSession(t, k, 80)
	if err := testnet.RoundTrip(ss.dial(t, 80), []byte("first"), echoTimeout); err != nil {
		t.Fatal(err)
	}
	k.kill()
	deadline := time.Now().Add(10 * time.Second)
	for k.dialCount() < 2 || ss.s.Status().State != forward.StateReady {
		if time.Now().After(deadline) {
			t.Fatalf("no redial: %d dials, status %+v", k.dialCount(), ss.s.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := testnet.RoundTrip(ss.dial(t, 80), []byte("after the redial"), echoTimeout); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownIsBounded(t *testing.T) {
	checkLeaks(t)
	k := newKubelet(t, map[int32]string{80: testnet.Echo(t)})
	ctx, cancel := context.WithCancel(t.Context())
	s := forward.NewSession(ctx, forward.SessionOptions{
		Upgrader:  k.upgrader(t),
		Namespace: "default",
		Resolve: func(ctx context.Context, rs []forward.RemotePort, _ string) (forward.Resolved, error) {
			return forward.Resolved{Pod: "web", Ports: []int{80}}, nil
		},
	})
	l, err := forward.Listen([]string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddPort(l, forward.RemotePort{Number: 80}, forward.PortOptions{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run() }()
	var open []net.Conn
	for range 10 {
		c, err := net.Dial("tcp4", l.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("x"))
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("shutdown with open connections took %s, want under 2s", took)
	}
	for i, c := range open {
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("connection %d at shutdown: read ended with %v, want a reset", i, err)
		}
	}
}
