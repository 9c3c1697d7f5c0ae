// Package testnet runs loopback TCP servers and clients for tests.
package testnet

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Serve runs handle in its own goroutine for each connection accepted on
// 127.0.0.1 until the test ends, and returns the listener's address. The
// connection is closed when handle returns. When the test ends, Serve stops
// listening, closes every open connection and waits for the handlers.
func Serve(t testing.TB, handle func(*net.TCPConn)) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	var conns Conns
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { conns.Remove(c); c.Close() }()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		conns.Close()
		wg.Wait()
	})
	return l.Addr().String()
}

// Echo starts a server (see Serve) that writes back what it reads until
// EOF, then half-closes.
func Echo(t testing.TB) string {
	t.Helper()
	return Serve(t, func(c *net.TCPConn) {
		io.Copy(c, c)
		c.CloseWrite()
	})
}

// ClosedPort returns a loopback address on which nothing listens, so that a
// dial to it is refused.
func ClosedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
