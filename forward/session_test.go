package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
	"github.com/tunnels-dev/tunnels/internal/testnet"
	"github.com/tunnels-dev/tunnels/internal/testrun"
)

// fakeResolver resolves to pod "web"; the port named http is 80.
type fakeResolver struct {
	mu    sync.Mutex
	calls int
	err   error
	gate  chan struct{} // when set, each call waits for a receive
}

func (r *fakeResolver) resolve(ctx context.Context, remotes []RemotePort, _ string) (Resolved, error) {
	r.mu.Lock()
	r.calls++
	err, gate := r.err, r.gate
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return Resolved{}, ctx.Err()
		}
	}
	if err != nil {
		return Resolved{}, err
	}
	res := Resolved{Pod: "web"}
	for _, rp := range remotes {
		switch {
		case rp.Name == "http":
			res.Ports = append(res.Ports, 80)
		case rp.Name != "":
			return Resolved{}, fmt.Errorf("no port named %q", rp.Name)
		default:
			res.Ports = append(res.Ports, rp.Number)
		}
	}
	return res, nil
}

func (r *fakeResolver) set(err error, gate chan struct{}) {
	r.mu.Lock()
	r.err, r.gate = err, gate
	r.mu.Unlock()
}

func (r *fakeResolver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// runSession runs a session until the test ends.
func runSession(t *testing.T, opts SessionOptions) *Session {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := NewSession(ctx, opts)
	testrun.Go(t, cancel, s.Run)
	return s
}

func sessionOptions(k *fakeKubelet, r *fakeResolver) SessionOptions {
	return SessionOptions{
		Upgrader:  k.upgrader(),
		Namespace: "default",
		Resolve:   r.resolve,
		Target:    "pod/web",
		Backoff:   Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
	}
}

func addPort(t *testing.T, s *Session, remote RemotePort) *Port {
	t.Helper()
	l, err := Listen([]string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.AddPort(l, remote, PortOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dialPort connects to p's listener until the test ends.
func dialPort(t *testing.T, p *Port) *net.TCPConn {
	t.Helper()
	return testnet.Dial(t, p.Listener().Addrs()[0].String())
}

func checkEcho(t *testing.T, p *Port, msg string) {
	t.Helper()
	if err := testnet.RoundTrip(dialPort(t, p), []byte(msg), echoTimeout); err != nil {
		t.Fatalf("through local port %d: %v", p.Listener().Port(), err)
	}
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSessionPortsShareOneConnection(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t), 81: testnet.Echo(t)})
	r := &fakeResolver{}
	s := runSession(t, sessionOptions(k, r))
	p80 := addPort(t, s, RemotePort{Name: "http"})
	checkEcho(t, p80, "to http")

	// A port added later, on a port the last resolve did not cover.
	p81 := addPort(t, s, RemotePort{Number: 81})
	checkEcho(t, p81, "to 81")
	if got := k.dialCount(); got != 1 {
		t.Errorf("%d SPDY connections for two ports, want 1", got)
	}
	if st := p81.Status(); st.State != StateReady || st.PodPort != 81 || st.Stats.Total != 1 {
		t.Errorf("port status = %+v, want ready, pod port 81, 1 connection", st)
	}

	// Removing a port ends its listener and its connections only.
	open := dialPort(t, p80)
	open.Write([]byte("x"))
	io.ReadFull(open, make([]byte, 1))
	s.RemovePort(p80)
	wantReset(t, open, "a connection of the removed port")
	if c, err := net.Dial("tcp4", p80.Listener().Addrs()[0].String()); err == nil {
		c.Close()
		t.Error("removed port still listening")
	}
	checkEcho(t, p81, "still there")
	if got := k.dialCount(); got != 1 {
		t.Errorf("%d SPDY connections after removing a port, want 1", got)
	}
	if st := s.Status(); st.State != StateReady || st.Pod != "web" || st.Dials != 1 {
		t.Errorf("session status = %+v, want ready on web after 1 dial", st)
	}
	s.mu.Lock()
	ports := len(s.ports)
	s.mu.Unlock()
	if ports != 1 {
		t.Errorf("%d ports, want 1", ports)
	}
}

func TestSessionRedialsAfterLoss(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	r := &fakeResolver{}
	s := runSession(t, sessionOptions(k, r))
	p := addPort(t, s, RemotePort{Number: 80})
	checkEcho(t, p, "first")

	// Hold the next resolve, so a connection arrives while redialing.
	gate := make(chan struct{})
	r.set(nil, gate)
	k.kill()
	eventually(t, "the session to notice the loss", func() bool { return s.Status().State != StateReady })
	if st := s.Status(); !errors.Is(st.Err, ErrLostConnection) {
		t.Errorf("status error = %v, want ErrLostConnection", st.Err)
	}
	waiting := dialPort(t, p)
	result := make(chan error, 1)
	go func() { result <- testnet.RoundTrip(waiting, []byte("waited"), echoTimeout) }()
	close(gate)
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("connection accepted during the redial: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("connection accepted during the redial was not served")
	}
	if got := k.dialCount(); got != 2 {
		t.Errorf("dials = %d, want 2", got)
	}
	if got := r.count(); got < 2 {
		t.Errorf("resolves = %d, want the target resolved again", got)
	}
	if st := s.Status(); st.State != StateReady || st.Dials != 2 {
		t.Errorf("status = %+v, want ready after 2 dials", st)
	}
}

func TestSessionFailFast(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, nil)
	notFound := errors.New("pods \"web\" not found")
	r := &fakeResolver{err: notFound}
	opts := sessionOptions(k, r)
	opts.FailFast = true
	s := NewSession(t.Context(), opts)
	p := addPort(t, s, RemotePort{Number: 80})
	err := s.Run()
	if !errors.Is(err, notFound) {
		t.Fatalf("Run = %v, want the resolve error", err)
	}
	if c, err := net.Dial("tcp4", p.Listener().Addrs()[0].String()); err == nil {
		c.Close()
		t.Error("listener still open after Run returned")
	}
	l, err := Listen([]string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddPort(l, RemotePort{Number: 1}, PortOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("AddPort after Run returned = %v, want ErrClosed", err)
	}
}

func TestSessionPermanentFailureWaitsForRefresh(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	forbidden := errors.New("forbidden")
	r := &fakeResolver{err: forbidden}
	opts := sessionOptions(k, r)
	opts.Permanent = func(err error) bool { return errors.Is(err, forbidden) }
	s := runSession(t, opts)
	p := addPort(t, s, RemotePort{Number: 80})
	eventually(t, "the failed state", func() bool { return s.Status().State == StateFailed })
	calls := r.count()

	// A connection to a failed session is closed at once.
	if c, err := net.Dial("tcp4", p.Listener().Addrs()[0].String()); err == nil {
		wantReset(t, c, "a connection to a failed session")
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("dial a failed session's port: %v, want it accepted and then reset", err)
	}
	eventually(t, "the port to record the failure", func() bool { return errors.Is(p.Status().LastErr, forbidden) })
	if got := r.count(); got != calls {
		t.Errorf("failed session retried on its own: %d resolves, want %d", got, calls)
	}

	r.set(nil, nil)
	s.Refresh()
	eventually(t, "ready after Refresh", func() bool { return s.Status().State == StateReady })
	checkEcho(t, p, "fixed")
}

func TestSessionRedialsWhenPodIsGone(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{
		80: testnet.Echo(t),
		81: `msg:failed to find sandbox "abc" in store: not found`,
	})
	r := &fakeResolver{}
	s := runSession(t, sessionOptions(k, r))
	p80 := addPort(t, s, RemotePort{Number: 80})
	p81 := addPort(t, s, RemotePort{Number: 81})
	checkEcho(t, p80, "up")
	// A connection told the pod is gone before anything came back is not
	// failed: the session redials, and the connection, with what it had
	// sent, is tried again on the new connection, where the (replacement)
	// pod answers.
	c := dialPort(t, p81)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("sent before")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a redial", func() bool { return k.dialCount() >= 2 })
	k.setTarget(81, testnet.Echo(t))
	got := make([]byte, len("sent before"))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "sent before" {
		t.Fatalf("retried connection read %q, %v; want what it sent first, echoed", got, err)
	}
	if st := p81.Status(); st.Stats.Failed != 0 || st.LastErr != nil {
		t.Errorf("port 81: %d failed, last error %v; want none", st.Stats.Failed, st.LastErr)
	}
	checkEcho(t, p80, "after the redial")
}

func TestSessionCloseEndsEverything(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	r := &fakeResolver{}
	ctx, cancel := context.WithCancel(t.Context())
	s := NewSession(ctx, sessionOptions(k, r))
	p := addPort(t, s, RemotePort{Number: 80})
	done := make(chan error, 1)
	go func() { done <- s.Run() }()
	c := dialPort(t, p)
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("shutdown took %s, want under 2s", took)
	}
	wantReset(t, c, "an open connection at shutdown")
	if st := s.Status(); st.State != StateClosed {
		t.Errorf("state = %v, want closed", st.State)
	}
}

// noWebSocket is an Upgrader that refuses every WebSocket upgrade (a GET)
// as a proxy that does not tunnel it would, counting them, and passes the
// SPDY ones on.
type noWebSocket struct {
	Upgrader
	refused *atomic.Int32
}

func (u noWebSocket) Upgrade(ctx context.Context, method, path string, h http.Header) (net.Conn, http.Header, error) {
	if method == http.MethodGet {
		u.refused.Add(1)
		return nil, nil, &refusedError{errors.New("the proxy does not tunnel websocket")}
	}
	return u.Upgrader.Upgrade(ctx, method, path, h)
}

// TestSessionRemembersAutoFallback: a session whose TransportAuto dial fell
// back to SPDY dials SPDY directly next time, instead of asking for the
// refused WebSocket upgrade on every redial.
func TestSessionRemembersAutoFallback(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	opts := sessionOptions(k, &fakeResolver{})
	refused := &atomic.Int32{}
	opts.Upgrader = noWebSocket{Upgrader: opts.Upgrader, refused: refused}
	opts.Conn.Transport = TransportAuto
	s := runSession(t, opts)
	p := addPort(t, s, RemotePort{Number: 80})
	for i := range 3 {
		checkEcho(t, p, fmt.Sprintf("dial %d", i+1))
		if st := s.Status(); st.Transport != TransportSPDY {
			t.Fatalf("dial %d: transport %q, want spdy", i+1, st.Transport)
		}
		if i < 2 {
			k.kill()
			eventually(t, "the redial", func() bool { st := s.Status(); return st.State == StateReady && st.Dials == i+2 })
		}
	}
	if got := refused.Load(); got != 1 {
		t.Errorf("%d websocket upgrades refused over 3 dials, want 1 (the fallback remembered)", got)
	}
}
