package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
	"github.com/tunnels-dev/tunnels/internal/testnet"
)

// pattern is n bytes that show where a cut or a reordering happened.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>10)
	}
	return b
}

// blaster serves want to every connection and signals each full write.
func blaster(t *testing.T, want []byte) (addr string, wrote <-chan struct{}) {
	done := make(chan struct{}, 16)
	addr = testnet.Serve(t, func(c *net.TCPConn) {
		if _, err := c.Write(want); err == nil {
			done <- struct{}{}
		}
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	return addr, done
}

// TestForwardLostConnectionResetsAfterEveryByte: the SPDY connection dies
// mid-download; the local client gets every byte that had arrived, in
// order, and then a reset, never a short clean EOF.
func TestForwardLostConnectionResetsAfterEveryByte(t *testing.T) {
	leakcheck.Check(t)
	want := pattern(64 << 20)
	target, _ := blaster(t, want)
	k := newFakeKubelet(t, map[int]string{80: target})
	c := dialFake(t, k, Options{})
	client, done := startForward(t, c, 80)
	client.SetDeadline(time.Now().Add(20 * time.Second))
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(client, head); err != nil {
		t.Fatal(err)
	}
	k.kill()
	rest, err := io.ReadAll(client)
	got := append(head, rest...)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read ended after %d of %d bytes with %v, want a connection reset", len(got), len(want), err)
	}
	if len(got) >= len(want) || !bytes.Equal(got, want[:len(got)]) {
		t.Errorf("got %d bytes, want a strict prefix of the %d sent, intact", len(got), len(want))
	}
	if err := waitResult(t, done); !errors.Is(err, ErrLostConnection) {
		t.Errorf("Forward = %v, want ErrLostConnection", err)
	}
}

// TestForwardPausedReaderSparesTheOthers: a local reader that stops
// reading holds up nothing else on the same SPDY connection; what it did
// not read waits (spilling to disk) and reaches it whole when it reads.
func TestForwardPausedReaderSparesTheOthers(t *testing.T) {
	leakcheck.Check(t)
	want := pattern(48 << 20)
	target, wrote := blaster(t, want)
	k := newFakeKubelet(t, map[int]string{80: target, 81: testnet.Echo(t)})
	c := dialFake(t, k, Options{StreamBuffer: 64 << 10})
	paused, pausedDone := startForward(t, c, 80)

	// The pod writes everything although nobody reads it locally: the
	// frame reader kept going.
	select {
	case <-wrote:
	case <-time.After(20 * time.Second):
		t.Fatal("the pod's writes stalled behind a paused local reader")
	}
	for i := range 20 {
		other, otherDone := startForward(t, c, 81)
		if err := testnet.RoundTrip(other, bytes.Repeat([]byte{byte(i)}, 64<<10), echoTimeout); err != nil {
			t.Fatalf("connection %d beside the paused reader: %v", i, err)
		}
		other.CloseWrite()
		if err := waitResult(t, otherDone); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	paused.SetDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(paused)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("paused reader got %d of %d bytes (%v), want all, intact, then EOF", len(got), len(want), err)
	}
	paused.CloseWrite()
	if err := waitResult(t, pausedDone); err != nil {
		t.Fatalf("Forward = %v, want nil", err)
	}
}

// TestKeepaliveSparesABlockedReader: with spilling off, a paused reader
// blocks the connection's reads, so pongs cannot arrive; that is local
// backpressure, not a dead peer, and the connection stays up.
func TestKeepaliveSparesABlockedReader(t *testing.T) {
	leakcheck.Check(t)
	want := pattern(16 << 20)
	target, _ := blaster(t, want)
	k := newFakeKubelet(t, map[int]string{80: target})
	const interval = 200 * time.Millisecond
	c := dialFake(t, k, Options{PingInterval: interval, StreamBuffer: 64 << 10, SpillLimit: -1})
	paused, done := startForward(t, c, 80)
	deadline := time.Now().Add(10 * time.Second)
	for c.blocked.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stream reader never blocked")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-c.Done():
		t.Fatalf("connection declared dead while its reader was blocked locally: %v", c.Err())
	case <-time.After(10 * interval):
	}
	paused.SetDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(paused)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("paused reader got %d of %d bytes (%v), want all, intact; connection: %v", len(got), len(want), err, c.Err())
	}
	paused.CloseWrite()
	if err := waitResult(t, done); err != nil {
		t.Fatalf("Forward = %v, want nil", err)
	}
}

// TestSessionRetriesAnUnansweredStream: a server that stops answering new
// streams gets the connection replaced, and the local connection that was
// waiting is retried on the fresh one with what it had sent.
func TestSessionRetriesAnUnansweredStream(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	k.mu.Lock()
	k.noReply = true
	k.mu.Unlock()
	opts := sessionOptions(k, &fakeResolver{})
	opts.Conn.StreamCreationTimeout = 200 * time.Millisecond
	s := runSession(t, opts)
	p := addPort(t, s, RemotePort{Number: 80})
	eventually(t, "the first connection", func() bool { return s.Status().State == StateReady })
	k.mu.Lock()
	k.noReply = false // the next connection answers
	k.mu.Unlock()
	checkEcho(t, p, "asked of a server that did not answer")
	if st := s.Status(); st.Dials != 2 || st.Stats.Failed != 0 {
		t.Errorf("dials %d, failed connections %d; want 2 and 0", st.Dials, st.Stats.Failed)
	}
}

// uidResolver resolves pod "web" with a UID the test changes.
type uidResolver struct {
	mu  sync.Mutex
	uid string
	pod string
}

func (r *uidResolver) set(pod, uid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pod, r.uid = pod, uid
}

func (r *uidResolver) resolve(_ context.Context, remotes []RemotePort, _ string) (Resolved, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Resolved{Pod: r.pod, UID: r.uid}
	for _, rp := range remotes {
		res.Ports = append(res.Ports, rp.Number)
	}
	return res, nil
}

// TestSessionMovesKeepOpenConnections: a pod re-created under its old name
// (a new UID) or replaced by another pod gets a new connection; connections
// open on the old one carry on until they end.
func TestSessionMovesKeepOpenConnections(t *testing.T) {
	for _, move := range []struct{ name, pod, uid string }{
		{"same name, new UID", "web", "uid-2"},
		{"another pod", "web-2", "uid-3"},
	} {
		t.Run(move.name, func(t *testing.T) {
			leakcheck.Check(t)
			k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
			r := &uidResolver{pod: "web", uid: "uid-1"}
			opts := sessionOptions(k, nil)
			opts.Resolve = r.resolve
			s := runSession(t, opts)
			p := addPort(t, s, RemotePort{Number: 80})
			open := dialPort(t, p)
			open.SetDeadline(time.Now().Add(10 * time.Second))
			exchange := func(msg string) {
				t.Helper()
				if _, err := open.Write([]byte(msg)); err != nil {
					t.Fatalf("write on the open connection: %v", err)
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(open, got); err != nil || string(got) != msg {
					t.Fatalf("echo on the open connection = %q, %v; want %q", got, err, msg)
				}
			}
			exchange("before")
			// The same pod again changes nothing.
			s.Refresh()
			checkEcho(t, p, "same pod")
			if got := k.dialCount(); got != 1 {
				t.Fatalf("dials = %d after a refresh to the same pod, want 1", got)
			}
			r.set(move.pod, move.uid)
			s.Refresh()
			eventually(t, "a new connection", func() bool { return k.dialCount() == 2 && s.Status().State == StateReady })
			if got := s.Status().Pod; got != move.pod {
				t.Errorf("pod = %q, want %q", got, move.pod)
			}
			checkEcho(t, p, "after the move")
			exchange("still open on the old pod")
			open.CloseWrite()
			open.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(open); err != nil {
				t.Errorf("connection open across the move ended with %v, want a clean EOF", err)
			}
		})
	}
}

// TestSessionProbeCutsTheBackoff: a session in a long backoff retries as
// soon as its Prober sees the API server come back.
func TestSessionProbeCutsTheBackoff(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	pr := &probeUpgrader{Upgrader: k.upgrader(), down: true}
	r := &fakeResolver{}
	r.set(errors.New("api server down"), nil)
	opts := sessionOptions(k, r)
	opts.Upgrader = pr
	opts.Backoff = Backoff{Initial: time.Hour, Max: time.Hour}
	s := runSession(t, opts)
	eventually(t, "the first failure", func() bool { return s.Status().State == StateRetrying })
	eventually(t, "a failed probe", func() bool { return pr.probes() > 0 })
	r.set(nil, nil)
	pr.setDown(false)
	eventually(t, "ready within a probe of the server's return", func() bool { return s.Status().State == StateReady })
}

// probeUpgrader is an Upgrader whose Prober the test switches.
type probeUpgrader struct {
	Upgrader
	mu   sync.Mutex
	down bool
	n    int
}

func (p *probeUpgrader) Reachable(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if p.down {
		return errors.New("connection refused")
	}
	return nil
}

func (p *probeUpgrader) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

func (p *probeUpgrader) probes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// TestForwardPodFinishedBeforeTheConnectionDied: once the server has ended
// a pair cleanly, losing the connection takes nothing from a local reader
// that is behind: it gets every byte and a clean EOF.
func TestForwardPodFinishedBeforeTheConnectionDied(t *testing.T) {
	leakcheck.Check(t)
	want := pattern(8 << 20)
	target, wrote := blaster(t, want)
	k := newFakeKubelet(t, map[int]string{80: target})
	c := dialFake(t, k, Options{})
	paused, done := startForward(t, c, 80)
	paused.CloseWrite() // the pair can end as soon as the target is done
	<-wrote
	eventually(t, "the server to finish both streams", func() bool {
		c.streamsMu.Lock()
		defer c.streamsMu.Unlock()
		n := 0
		for _, s := range c.streams {
			if s.finished() {
				n++
			}
		}
		return n == 2
	})
	k.kill()
	<-c.Done()
	paused.SetDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(paused)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("reader got %d of %d bytes (%v), want all, intact, then a clean EOF", len(got), len(want), err)
	}
	if err := waitResult(t, done); err != nil {
		t.Fatalf("Forward = %v, want nil", err)
	}
}

// TestSessionRefusedConnections: a refusal from the pod that is still the
// one to use fails that connection with a reset; a refusal from a pod that
// was replaced meanwhile (its app stopped first) is retried on the next pod.
func TestSessionRefusedConnections(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.ClosedPort(t)})
	k.setPodTarget("web-2", 80, testnet.Echo(t))
	r := &uidResolver{pod: "web", uid: "uid-1"}
	opts := sessionOptions(k, nil)
	opts.Resolve = r.resolve
	s := runSession(t, opts)
	p := addPort(t, s, RemotePort{Number: 80})
	eventually(t, "ready", func() bool { return s.Status().State == StateReady })

	// The pod was replaced, and its app no longer listens.
	r.set("web-2", "uid-2")
	c := dialPort(t, p)
	if err := testnet.RoundTrip(c, []byte("to the replacement"), echoTimeout); err != nil {
		t.Fatalf("a connection refused by a replaced pod: %v, want it retried on the next pod", err)
	}
	if st := p.Status(); st.Stats.Failed != 0 || s.Status().Pod != "web-2" {
		t.Errorf("after the replacement: %d failed, pod %q; want 0, web-2", st.Stats.Failed, s.Status().Pod)
	}

	// The pod is still the one to use: a genuine refusal.
	k.setPodTarget("web-2", 80, testnet.ClosedPort(t))
	wantRefused(t, p, "a connection the pod refused")
	eventually(t, "the failure counted", func() bool { return p.Status().Stats.Failed == 1 })
	// A second connection is served on the same connection to the pod,
	// whereas a redial (were the first taken for a pod gone) would have
	// happened before it ends.
	wantRefused(t, p, "a second connection the pod refused")
	if got := k.dialCount(); got != 2 {
		t.Errorf("dials = %d after a genuine refusal, want 2 (no redial)", got)
	}
}

// wantRefused dials p and wants a reset, which may come before the dial
// returns: the pod's refusal is answered as soon as the pod is known good.
func wantRefused(t *testing.T, p *Port, what string) {
	t.Helper()
	c, err := net.Dial("tcp4", p.Listener().Addrs()[0].String())
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%s: %v, want a connection reset", what, err)
		}
		return
	}
	defer c.Close()
	wantReset(t, c, what)
}

// TestSessionRefusalsShareOneResolve: connections refused at once ask the
// API once between them whether the pod is still the one to use, and the
// connection that asked first leaves as soon as its port is removed,
// without waiting for the answer or cancelling it for the others.
func TestSessionRefusalsShareOneResolve(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.ClosedPort(t), 81: testnet.ClosedPort(t)})
	r := &uidResolver{pod: "web", uid: "uid-1"}
	var mu sync.Mutex
	var gate chan struct{} // while set, a resolve waits for it to close
	resolves := 0
	entered := make(chan struct{}, 16)
	opts := sessionOptions(k, nil)
	opts.Resolve = func(ctx context.Context, remotes []RemotePort, current string) (Resolved, error) {
		mu.Lock()
		resolves++
		g := gate
		mu.Unlock()
		if g != nil {
			entered <- struct{}{}
			select {
			case <-g:
			case <-ctx.Done():
				return Resolved{}, ctx.Err()
			}
		}
		return r.resolve(ctx, remotes, current)
	}
	s := runSession(t, opts)
	first := addPort(t, s, RemotePort{Number: 81})
	p := addPort(t, s, RemotePort{Number: 80})
	eventually(t, "both ports mapped", func() bool { return first.Status().PodPort == 81 && p.Status().PodPort == 80 })

	// Adding a port asks for a resolve, which may still be pending when
	// the first one has mapped both: let one more run, which takes any
	// such request with it, so that only the refusals' check counts.
	mu.Lock()
	resolves = 0
	mu.Unlock()
	s.Refresh()
	eventually(t, "the refresh's resolve", func() bool { mu.Lock(); defer mu.Unlock(); return resolves > 0 })
	g := make(chan struct{})
	mu.Lock()
	gate, resolves = g, 0
	mu.Unlock()
	firstConn := dialPort(t, first)
	<-entered // its refusal is being checked
	var conns []net.Conn
	for range 5 {
		conns = append(conns, dialPort(t, p))
	}
	// Every refusal has come back (the six forwards over the connection
	// have returned) before the check is let go, so the five wait on it;
	// a refusal slower than the check's answer plus the 250 ms it stands
	// would ask again.
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	eventually(t, "all six connections refused", func() bool {
		return conn.Stats.Total.Load() == 6 && conn.Stats.Active.Load() == 0
	})
	removed := make(chan struct{})
	go func() { s.RemovePort(first); close(removed) }()
	select {
	case <-removed:
	case <-time.After(10 * time.Second):
		t.Fatal("RemovePort waited for the check its connection started")
	}
	wantReset(t, firstConn, "the removed port's connection")
	close(g)
	for i, c := range conns {
		wantReset(t, c, fmt.Sprintf("refused connection %d", i))
	}
	mu.Lock()
	defer mu.Unlock()
	if resolves != 1 {
		t.Errorf("%d resolves for 6 refused connections, want 1", resolves)
	}
}

// TestSessionPodDeletedHoldsNewConnections: once its pod is deleted, the
// session hands out no connection to it; new local connections wait for
// the next pod.
func TestSessionPodDeletedHoldsNewConnections(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	r := &uidResolver{pod: "web", uid: "uid-1"}
	var mu sync.Mutex
	var noPod error
	opts := sessionOptions(k, nil)
	opts.Resolve = func(ctx context.Context, remotes []RemotePort, current string) (Resolved, error) {
		mu.Lock()
		err := noPod
		mu.Unlock()
		if err != nil {
			return Resolved{}, err
		}
		return r.resolve(ctx, remotes, current)
	}
	opts.Backoff = Backoff{Initial: time.Hour, Max: time.Hour} // only Refresh retries
	s := runSession(t, opts)
	p := addPort(t, s, RemotePort{Number: 80})
	eventually(t, "ready", func() bool { return s.Status().State == StateReady })

	mu.Lock()
	noPod = errors.New("no ready pod")
	mu.Unlock()
	s.PodDeleted("web", "uid-1")
	eventually(t, "the session to leave the deleted pod", func() bool { return s.Status().State == StateRetrying })
	echoed := make(chan error, 1)
	go func() { echoed <- testnet.RoundTrip(dialPort(t, p), []byte("waits"), 10*time.Second) }()
	eventually(t, "the connection to wait", func() bool { return p.Status().Stats.Active == 1 })

	// The replacement is Ready: the pod watch asks for a refresh.
	mu.Lock()
	noPod = nil
	mu.Unlock()
	r.set("web-2", "uid-2")
	s.Refresh()
	if err := <-echoed; err != nil {
		t.Fatalf("a connection made while the pod was gone: %v", err)
	}
	if got := s.Status().Pod; got != "web-2" {
		t.Errorf("pod = %q, want web-2", got)
	}
}

// TestSessionPodDeletedIgnoresAnOlderUID: the deletion of a pod's earlier
// incarnation (the old UID of a pod re-created under its name), heard
// after the session moved to the new one, leaves the session where it is.
func TestSessionPodDeletedIgnoresAnOlderUID(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	r := &uidResolver{pod: "web", uid: "uid-2"}
	opts := sessionOptions(k, nil)
	opts.Resolve = r.resolve
	s := runSession(t, opts)
	p := addPort(t, s, RemotePort{Number: 80})
	eventually(t, "ready", func() bool { return s.Status().State == StateReady })
	s.PodDeleted("web", "uid-1")
	checkEcho(t, p, "after the old pod's deletion")
	if got := k.dialCount(); got != 1 {
		t.Errorf("dials = %d after the deletion of an older pod of the same name, want 1", got)
	}
}
