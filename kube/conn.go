package kube

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
)

// pendingConn is a net.Conn whose first reads return bytes a handshake
// already pulled into a bufio.Reader, so that nothing the peer sent right
// after the handshake is lost.
type pendingConn struct {
	net.Conn

	drained atomic.Bool // fast path once pending is empty

	mu      sync.Mutex
	pending []byte // guarded by mu
}

// withPending returns conn, wrapped if br holds bytes read past the handshake.
func withPending(conn net.Conn, br *bufio.Reader) net.Conn {
	n := br.Buffered()
	if n == 0 {
		return conn
	}
	b, _ := br.Peek(n)
	pc := &pendingConn{Conn: conn, pending: append([]byte(nil), b...)}
	return pc
}

// NetConn returns the connection under the pending bytes.
func (c *pendingConn) NetConn() net.Conn { return c.Conn }

// Read returns the buffered bytes first, then reads the connection.
func (c *pendingConn) Read(p []byte) (int, error) {
	if !c.drained.Load() {
		c.mu.Lock()
		if len(c.pending) > 0 {
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			if len(c.pending) == 0 {
				c.pending = nil
				c.drained.Store(true)
			}
			c.mu.Unlock()
			return n, nil
		}
		c.drained.Store(true)
		c.mu.Unlock()
	}
	return c.Conn.Read(p)
}
