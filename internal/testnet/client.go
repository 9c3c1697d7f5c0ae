package testnet

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// Dial connects to addr over TCP on IPv4, and closes the connection when
// the test ends.
func Dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// RoundTrip checks an echo through c: it sends data while it reads, then
// half-closes, and reports an error unless exactly data came back followed
// by EOF, all within timeout. It is safe to call from any goroutine.
func RoundTrip(c *net.TCPConn, data []byte, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("echo differs: got %d bytes, want %d", len(got), len(data))
	}
	return nil
}
