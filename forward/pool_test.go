package forward

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
	"github.com/tunnels-dev/tunnels/internal/testnet"
	"github.com/tunnels-dev/tunnels/internal/testrun"
)

// runPoolSession runs a session whose extra connections close after idle.
func runPoolSession(t *testing.T, k *fakeKubelet, pool int, idle time.Duration) *Session {
	t.Helper()
	opts := sessionOptions(k, &fakeResolver{})
	opts.Pool = pool
	ctx, cancel := context.WithCancel(context.Background())
	s := NewSession(ctx, opts)
	s.poolIdle = idle
	testrun.Go(t, cancel, s.Run)
	return s
}

// openEcho opens a local connection to p and sees one byte echoed, so that
// it is forwarded and stays open until the test ends or it is closed.
func openEcho(t *testing.T, p *Port) *net.TCPConn {
	t.Helper()
	c := dialPort(t, p)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("echo through a held connection: %v", err)
	}
	return c
}

// waitClosed waits up to 10 s for c to end.
func waitClosed(t *testing.T, c *Conn, what string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not close", what)
	}
}

// poolConns returns the session's pool, the first connection first.
func poolConns(s *Session) []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cs []*Conn
	for _, pc := range s.pool {
		cs = append(cs, pc.conn)
	}
	return cs
}

func TestSessionPoolGrowsUnderLoadAndShrinksWhenIdle(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	s := runPoolSession(t, k, 2, 200*time.Millisecond)
	p := addPort(t, s, RemotePort{Number: 80})

	// Up to poolGrowAt local connections share the first connection.
	var held []*net.TCPConn
	for range poolGrowAt {
		held = append(held, openEcho(t, p))
	}
	if got := k.dialCount(); got != 1 {
		t.Fatalf("%d connections to the pod for %d local ones, want 1", got, poolGrowAt)
	}
	// One more crowds it: a second is dialed, and the local connection
	// after that takes it, as the least busy.
	held = append(held, openEcho(t, p))
	eventually(t, "a second connection in the pool", func() bool { return len(poolConns(s)) == 2 })
	held = append(held, openEcho(t, p))
	pool := poolConns(s)
	first, extra := pool[0], pool[1]
	if got := extra.Stats.Snapshot().Total; got != 1 {
		t.Errorf("the added connection carried %d local connections, want 1 (the least busy takes the next)", got)
	}
	// The pool stops at Pool.
	for range 2 * poolGrowAt {
		held = append(held, openEcho(t, p))
	}
	if got := k.dialCount(); got != 2 {
		t.Errorf("%d connections to the pod with Pool 2, want 2", got)
	}
	if st := s.Status(); st.Dials != 1 || st.Conns != 2 {
		t.Errorf("status: %d dials and %d connections, want 1 dial (the pool's are not redials) and 2 connections", st.Dials, st.Conns)
	}

	// Idle, the added connection closes; the first stays.
	for _, c := range held {
		c.Close()
	}
	waitClosed(t, extra, "the added connection, once idle")
	if got := poolConns(s); len(got) != 1 || got[0] != first {
		t.Errorf("pool after idle = %d connections, want only the first", len(got))
	}
	if first.Err() != nil {
		t.Errorf("first connection ended: %v", first.Err())
	}
	if got := s.Status().Conns; got != 1 {
		t.Errorf("status: %d connections after idle, want 1", got)
	}
	checkEcho(t, p, "after the pool shrank")
}

func TestSessionPoolOfOne(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	s := runPoolSession(t, k, 1, time.Minute)
	p := addPort(t, s, RemotePort{Number: 80})
	for range 3 * poolGrowAt {
		openEcho(t, p)
	}
	s.mu.Lock()
	growing := s.growing
	s.mu.Unlock()
	if got := k.dialCount(); got != 1 || growing {
		t.Errorf("%d connections to the pod (growing: %v) with Pool 1, want 1", got, growing)
	}
}

// When the session moves on, the connections added to the pool move with
// it, but what they carry is not cut: they drain, as the first does.
func TestSessionPoolDrainsWithTheFirst(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	s := runPoolSession(t, k, 2, time.Minute)
	p := addPort(t, s, RemotePort{Number: 80})
	var held []*net.TCPConn
	for range poolGrowAt + 1 {
		held = append(held, openEcho(t, p))
	}
	eventually(t, "a second connection in the pool", func() bool { return len(poolConns(s)) == 2 })
	onExtra := openEcho(t, p)
	extra := poolConns(s)[1]

	s.PodDeleted("web", "")
	eventually(t, "a fresh connection", func() bool {
		pool := poolConns(s)
		return len(pool) == 1 && pool[0] != extra && k.dialCount() == 3
	})
	// The connection carried by the old pool's extra still works.
	if _, err := onExtra.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(onExtra, make([]byte, 1)); err != nil {
		t.Fatalf("a connection on the retired pool was cut: %v", err)
	}
	if extra.Err() != nil {
		t.Fatalf("the retired extra connection closed while carrying a connection: %v", extra.Err())
	}
	onExtra.Close()
	for _, c := range held {
		c.Close()
	}
	waitClosed(t, extra, "the retired extra connection, once drained")
	checkEcho(t, p, "on the fresh connection")
}
