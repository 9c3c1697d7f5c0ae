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

// batchConn sits under TLS on an upgraded connection and lets its user
// gather the records of one write into one write(2). crypto/tls writes
// every record (at most 16 KiB of payload) with its own Write on the
// connection under it, so a 128 KiB SPDY frame would cost eight syscalls,
// and a burst of small frames one each. See WriteBatch.
type batchConn struct {
	net.Conn

	// mu orders every write: records gathered by a batch reach the
	// network before any record TLS writes after the batch (an alert,
	// say), as TLS's sequence numbers require.
	mu       sync.Mutex
	batching bool    // guarded by mu
	buf      *[]byte // guarded by mu; records gathered by the current batch, from batchBuffers
}

// batchBuffers holds the buffers of batches between batches, so that an
// idle connection holds none.
var batchBuffers = sync.Pool{New: func() any { return new([]byte) }}

// NetConn returns the connection under the batching.
func (c *batchConn) NetConn() net.Conn { return c.Conn }

// Write gathers p while a batch runs, else writes it.
func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batching {
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// maxKeptBatch is the largest batch buffer kept for the next batch.
const maxKeptBatch = 256 << 10

// WriteBatch runs write, which writes through the TLS connection above c,
// gathering what reaches c meanwhile, and then writes all of it at once.
// Callers must not run batches concurrently (package forward's frame
// writer runs them under its own lock); other writes may happen at any
// time.
func (c *batchConn) WriteBatch(write func() error) error {
	c.mu.Lock()
	c.batching = true
	c.buf = batchBuffers.Get().(*[]byte)
	c.mu.Unlock()
	err := write()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	if len(*c.buf) > 0 {
		if _, werr := c.Conn.Write(*c.buf); err == nil {
			err = werr
		}
	}
	if cap(*c.buf) <= maxKeptBatch {
		*c.buf = (*c.buf)[:0]
		batchBuffers.Put(c.buf)
	}
	c.buf = nil
	return err
}
