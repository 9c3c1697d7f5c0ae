package forward

import (
	"errors"
	"io"
	"sync"
)

// errBufferAborted is what a streamBuffer returns once aborted.
var errBufferAborted = errors.New("stream buffer aborted")

// streamBuffer holds the data frames one stream received and its local
// connection has not yet taken, so that a local reader that stops reading
// does not hold up spdystream's frame workers, and with them the other
// streams of the connection.
//
// The trade-off: spdystream implements no SPDY flow control (it ignores
// WINDOW_UPDATE), so the only backpressure there is, is not reading. Up to
// limit bytes per stream are absorbed without blocking anything. Once a
// stream's buffer is full, push blocks that stream's reader goroutine, which
// leaves the frame in spdystream's unbuffered data channel and blocks the
// frame worker of that stream's partition (stream id mod 5); if the local
// reader stays stalled, that partition's queue of 50 frames fills and the
// whole connection stalls, as with client-go. The alternative, an unbounded
// buffer, trades that stall for unbounded memory. limit bounds memory at
// limit per stalled connection, which tolerates a consumer that pauses for a
// while (a paused download, a slow query client) without touching the others.
type streamBuffer struct {
	limit int

	mu      sync.Mutex
	cond    sync.Cond
	chunks  [][]byte // received, not yet taken
	size    int      // bytes received and not yet released
	eof     bool     // no more pushes; err says why
	err     error    // io.EOF for a clean end
	aborted bool
}

func newStreamBuffer(limit int) *streamBuffer {
	b := &streamBuffer{limit: limit}
	b.cond.L = &b.mu
	return b
}

// push appends p, which the buffer then owns, waiting while the buffer is
// full. It returns false once the buffer was aborted. A push into a buffer
// holding less than limit always succeeds, so one frame may overshoot the
// limit by its own size.
func (b *streamBuffer) push(p []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.size >= b.limit && !b.aborted {
		b.cond.Wait()
	}
	if b.aborted {
		return false
	}
	b.chunks = append(b.chunks, p)
	b.size += len(p)
	b.cond.Broadcast()
	return true
}

// closeWrite ends the pushes: err nil is a clean end of stream, which take
// reports as io.EOF once everything pushed was taken.
func (b *streamBuffer) closeWrite(err error) {
	if err == nil {
		err = io.EOF
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.eof {
		b.eof, b.err = true, err
		b.cond.Broadcast()
	}
}

// take waits for data and returns every chunk received so far; the caller
// writes them out and then calls release with their size. When the stream
// has ended and everything was taken it returns the end error (io.EOF for
// a clean end); after abort it returns errBufferAborted.
func (b *streamBuffer) take() ([][]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.chunks) == 0 && !b.eof && !b.aborted {
		b.cond.Wait()
	}
	switch {
	case b.aborted:
		return nil, errBufferAborted
	case len(b.chunks) > 0:
		chunks := b.chunks
		b.chunks = nil
		return chunks, nil
	}
	return nil, b.err
}

// release frees n bytes that take returned and that have been written,
// letting a blocked push continue.
func (b *streamBuffer) release(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.size -= n
	b.cond.Broadcast()
}

// abort drops everything buffered and wakes every waiter; push then returns
// false and take errBufferAborted.
func (b *streamBuffer) abort() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.aborted = true
	b.chunks = nil
	b.cond.Broadcast()
}
