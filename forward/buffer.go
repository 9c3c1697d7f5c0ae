package forward

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// errBufferAborted is what a streamBuffer returns once aborted.
var errBufferAborted = errors.New("stream buffer aborted")

// spillReadSize is how much of a spill file one take reads back.
const spillReadSize = 128 << 10

var spillBuffers = sync.Pool{New: func() any { b := make([]byte, spillReadSize); return &b }}

// frameBufferSize is the size of the pooled buffers that received DATA
// payloads too large to write at once are read into: the kubelet's frames
// are at most 32 KiB (its copy buffer). A download then allocates (and
// zeroes) nothing per frame, and a larger payload is read in pieces of
// this size (Conn.streamData).
const frameBufferSize = 32 << 10

var frameBuffers = sync.Pool{New: func() any { b := make([]byte, frameBufferSize); return &b }}

// getFrameBuffer returns a pooled buffer of n bytes, n at most
// frameBufferSize.
func getFrameBuffer(n int) []byte {
	return (*frameBuffers.Get().(*[]byte))[:n]
}

// putFrameBuffer gives back b, which nothing refers to any more, if it
// came from the pool.
func putFrameBuffer(b []byte) {
	if cap(b) != frameBufferSize {
		return
	}
	b = b[:frameBufferSize]
	frameBuffers.Put(&b)
}

// streamBuffer holds the data one stream received and its local connection
// has not taken yet, so that a local reader that stops reading never holds
// up the connection's frame reader, and with it every other stream of the SPDY
// connection. See the package documentation for why this, and not flow
// control, is the answer.
//
// Up to mem bytes are kept in memory. Past that, if the local reader takes
// nothing within spillAfter, what arrives is appended to a spill file (created on first use in os.TempDir, unlinked at once, so
// nothing is left behind even on a crash), up to spill bytes; only past
// that does push block, and with it the connection, as with client-go. The
// file is read back in order once the local reader drains the memory part,
// and truncated whenever it is drained completely.
//
// One goroutine pushes and one takes.
type streamBuffer struct {
	mem, spill int64

	mu      sync.Mutex
	cond    sync.Cond
	chunks  [][]byte // in memory, received and not taken yet
	memSize int64    // bytes in memory: in chunks, or taken and not released
	file    *os.File // the spill file, once needed
	fileErr error    // creating or writing the spill file failed: no more spilling
	fileR   int64    // the spill file holds [fileR, fileW)
	fileW   int64
	out     int   // batches taken and not released yet
	waiting bool  // a push is blocked on a full buffer
	eof     bool  // no more pushes; err says why
	err     error // io.EOF for a clean end
	aborted bool
	noWait  bool // the connection ended: push no longer waits (see stopWaiting)
}

// newStreamBuffer returns a buffer holding up to mem bytes in memory and
// spill more on disk (0 or less disables spilling).
func newStreamBuffer(mem, spill int) *streamBuffer {
	b := &streamBuffer{mem: int64(mem), spill: int64(max(spill, 0))}
	b.cond.L = &b.mu
	return b
}

// batch is what take hands out: data to write to the local connection,
// then to give back with release.
type batch struct {
	chunks [][]byte
	size   int64
	pooled *[]byte // a buffer from spillBuffers, read back from the file
}

// spillAfter is how long a push into a full memory buffer waits for the
// local reader to take something before it starts spilling to disk. A
// reader that is only slower than the pod keeps the stream in memory, at
// its own pace (spilling costs two copies through the page cache); one
// that stopped reading is spilled for, so that it holds nothing else up
// for longer than this.
const spillAfter = 20 * time.Millisecond

// push appends p, which the buffer then owns. Once the memory part is full
// it waits up to spillAfter for the reader, then spills to disk, and waits
// without end only while the spill file is full too (or cannot be used).
// It returns false once the buffer was aborted, or, for a push that would
// have to wait, once stopWaiting was called. onBlock, if not nil, is
// called with true before push waits without end and false after.
func (b *streamBuffer) push(p []byte, onBlock func(bool)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	var (
		graceEnd time.Time
		grace    *time.Timer
	)
	defer func() {
		if grace != nil {
			grace.Stop()
		}
	}()
	for !b.aborted {
		spilling := b.fileW > b.fileR
		canSpill := b.fileErr == nil && b.fileW-b.fileR+int64(len(p)) <= b.spill
		switch {
		case !spilling && b.memSize < b.mem:
			// One frame may overshoot the limit by its own size.
			b.chunks = append(b.chunks, p)
			b.memSize += int64(len(p))
			b.cond.Broadcast()
			return true
		case b.noWait && !canSpill:
			// The connection ended: p is dropped, and the stream ends
			// with the connection's error after what was pushed before.
			return false
		case canSpill && !spilling && graceEnd.IsZero() && !b.noWait:
			graceEnd = time.Now().Add(spillAfter)
			grace = time.AfterFunc(spillAfter, func() {
				b.mu.Lock()
				defer b.mu.Unlock()
				b.cond.Broadcast()
			})
			b.cond.Wait()
		case canSpill && !spilling && time.Now().Before(graceEnd) && !b.noWait:
			b.cond.Wait()
		case canSpill:
			if err := b.appendFile(p); err != nil {
				// No more spilling; what is already on disk comes out
				// first, and then the memory limit alone applies.
				b.fileErr = err
				continue
			}
			putFrameBuffer(p)
			b.cond.Broadcast()
			return true
		default:
			if !b.waiting && onBlock != nil {
				onBlock(true)
				defer onBlock(false)
			}
			b.waiting = true
			b.cond.Wait()
			b.waiting = false
		}
	}
	return false
}

// appendFile writes p at the end of the spill file, creating it if needed.
func (b *streamBuffer) appendFile(p []byte) error {
	if b.file == nil {
		f, err := os.CreateTemp("", "tunnels-spill-*")
		if err != nil {
			return fmt.Errorf("create spill file: %w", err)
		}
		// Unlinked at once: the open file is all that is needed, and
		// nothing is left behind however the process ends.
		_ = os.Remove(f.Name())
		b.file = f
	}
	if _, err := b.file.WriteAt(p, b.fileW); err != nil {
		return fmt.Errorf("write spill file: %w", err)
	}
	b.fileW += int64(len(p))
	return nil
}

// closeWrite ends the pushes: err nil is a clean end of stream, which take
// reports as io.EOF once everything pushed was taken. The first call wins.
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

// stopWaiting makes every push from now on that would wait (for the
// local reader to take something, or on a full spill file) return false
// instead, and wakes one that waits. The connection calls it when it ends:
// its frame reader may be the one waiting, and must get back to reading
// the closed connection so that every stream ends.
func (b *streamBuffer) stopWaiting() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.noWait = true
	b.cond.Broadcast()
}

// take waits for data and returns what is buffered: every chunk in memory,
// or else the next part of the spill file. The caller writes it out and
// then calls release. When the stream has ended and everything was taken it
// returns the end error (io.EOF for a clean end); after abort it returns
// errBufferAborted.
func (b *streamBuffer) take() (batch, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.chunks) == 0 && b.fileW == b.fileR && !b.eof && !b.aborted {
		b.cond.Wait()
	}
	switch {
	case b.aborted:
		return batch{}, errBufferAborted
	case len(b.chunks) > 0:
		bt := batch{chunks: b.chunks}
		for _, c := range b.chunks {
			bt.size += int64(len(c))
		}
		b.chunks = nil
		b.out++
		return bt, nil
	case b.fileW > b.fileR:
		bp := spillBuffers.Get().(*[]byte)
		n, err := b.file.ReadAt((*bp)[:min(int64(len(*bp)), b.fileW-b.fileR)], b.fileR)
		if n == 0 && err != nil {
			spillBuffers.Put(bp)
			return batch{}, fmt.Errorf("read spill file: %w", err)
		}
		b.fileR += int64(n)
		if b.fileR == b.fileW {
			// Drained: start again at the beginning so the file stays
			// as small as the longest stall.
			b.fileR, b.fileW = 0, 0
			_ = b.file.Truncate(0)
		}
		b.cond.Broadcast()
		b.out++
		return batch{chunks: [][]byte{(*bp)[:n]}, pooled: bp}, nil
	}
	return batch{}, b.err
}

// release gives back a batch that take returned and that has been
// written (nothing refers to its chunks any more: they go back to the
// pool), letting a blocked push continue.
func (b *streamBuffer) release(bt batch) {
	for i, c := range bt.chunks {
		putFrameBuffer(c)
		bt.chunks[i] = nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.out--
	if bt.pooled != nil {
		spillBuffers.Put(bt.pooled)
		return
	}
	b.memSize -= bt.size
	if b.chunks == nil {
		b.chunks = bt.chunks[:0] // the next pushes reuse the slice
	}
	b.cond.Broadcast()
}

// empty reports whether nothing waits in the buffer and nothing taken is
// still being written out. The pusher may then write to the local
// connection itself, without a hop to the taker: the pusher is the only
// one that adds, so the taker has nothing until it pushes again.
func (b *streamBuffer) empty() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.chunks) == 0 && b.out == 0 && b.fileW == b.fileR && !b.eof && !b.aborted
}

// buffered returns how many bytes wait in memory and on disk.
func (b *streamBuffer) buffered() (mem, disk int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.memSize, b.fileW - b.fileR
}

// abort drops everything buffered, removes the spill file and wakes every
// waiter; push then returns false and take errBufferAborted.
func (b *streamBuffer) abort() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.aborted = true
	b.chunks = nil
	if b.file != nil {
		_ = b.file.Close()
		b.file = nil
	}
	b.fileR, b.fileW = 0, 0
	b.cond.Broadcast()
}
