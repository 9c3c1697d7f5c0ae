package testnet

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func TestEchoRoundTrip(t *testing.T) {
	leakcheck.Check(t)
	addr := Echo(t)
	for _, data := range [][]byte{nil, []byte("hello"), make([]byte, 1<<20)} {
		if err := RoundTrip(Dial(t, addr), data, 10*time.Second); err != nil {
			t.Errorf("RoundTrip of %d bytes: %v", len(data), err)
		}
	}
}

func TestRoundTripFailsOnAWrongAnswer(t *testing.T) {
	leakcheck.Check(t)
	addr := Serve(t, func(c *net.TCPConn) {
		io.Copy(io.Discard, c)
		c.Write([]byte("something else"))
	})
	if err := RoundTrip(Dial(t, addr), []byte("hello"), 10*time.Second); err == nil {
		t.Error("RoundTrip = nil against a server that does not echo")
	}
}

func TestClosedPort(t *testing.T) {
	c, err := net.Dial("tcp4", ClosedPort(t))
	if err == nil {
		c.Close()
		t.Fatal("dial to ClosedPort succeeded")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial = %v, want connection refused", err)
	}
}

func TestServeEndsWithTheTest(t *testing.T) {
	leakcheck.Check(t)
	ended := make(chan struct{})
	var client *net.TCPConn
	t.Run("server", func(t *testing.T) {
		addr := Serve(t, func(c *net.TCPConn) {
			defer close(ended)
			io.Copy(io.Discard, c) // until the cleanup closes c
		})
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		client = c.(*net.TCPConn)
		client.Write([]byte("x"))
	})
	defer client.Close()
	select {
	case <-ended:
	default:
		t.Fatal("the handler still runs after the test ended")
	}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	// EOF, or a reset if "x" was still unread: either way, closed.
	var ne net.Error
	if _, err := io.ReadAll(client); errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the connection was not closed: %v", err)
	}
}

func TestConns(t *testing.T) {
	var s Conns
	a1, a2 := net.Pipe()
	defer a2.Close()
	s.Add(a1)
	s.CloseAll()
	if _, err := a1.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("write after CloseAll = %v, want it closed", err)
	}

	b1, b2 := net.Pipe()
	defer b2.Close()
	s.Add(b1)
	s.Remove(b1)
	s.Close()
	go b2.Read(make([]byte, 1))
	if _, err := b1.Write([]byte("x")); err != nil {
		t.Errorf("a removed connection was closed: %v", err)
	}
	b1.Close()

	c1, c2 := net.Pipe()
	defer c2.Close()
	s.Add(c1)
	if _, err := c1.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("write to a connection added after Close = %v, want it closed", err)
	}
}

func TestHandlers(t *testing.T) {
	var h Handlers
	if !h.Start() || !h.Start() {
		t.Fatal("Start = false before Stop")
	}
	h.Done()
	h.Stop()
	if h.Start() {
		t.Error("Start = true after Stop")
	}
	if got := h.Started(); got != 2 {
		t.Errorf("Started = %d, want 2", got)
	}
	waited := make(chan struct{})
	go func() { h.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while a handler runs")
	case <-time.After(50 * time.Millisecond): // a grace for a wrong Wait to return
	}
	h.Done()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after the last Done")
	}
}
