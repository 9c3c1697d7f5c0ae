package forward

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
)

// readBufferSize is the bufio.Reader under spdystream's framer. The framer
// reads each frame as two 4-byte words and then the payload; without a
// buffer that is three read(2) calls per frame (docs/protocol.md §13.1).
// Payloads larger than the buffer are read straight into the framer's
// slice, so this costs no extra copy for them: 16 KiB, below the
// kubelet's 32 KiB frames, so that a download's payloads go from TLS's
// record straight to the frame (64 KiB copied every payload once more:
// runtime.memmove 0.25 s against 0.18 s per GiB down).
const readBufferSize = 16 << 10

// frameHeaderSize is the size of every SPDY/3.1 frame header, control or
// data: 4 bytes of stream id or version/type, then 1 byte of flags and 3 of
// payload length.
const frameHeaderSize = 8

// wireConn is the upgraded connection as spdystream sees it: reads go
// through a large bufio.Reader, and each frame, which spdystream's framer
// writes in several small pieces, goes to the network in one Write.
type wireConn struct {
	net.Conn
	r         *bufio.Reader
	hr        headerReader // set up by plain; reads through r
	w         frameWriter
	bytesRead atomic.Uint64 // read progress, which keepalive counts as life
	readErr   atomic.Pointer[error]
	ends      endTracker // how the server ended each stream
}

func newWireConn(c net.Conn) *wireConn {
	wc := &wireConn{Conn: c, r: bufio.NewReaderSize(c, readBufferSize)}
	wc.w.w = c
	wc.w.batch = findBatcher(c)
	return wc
}

// writeBatcher is a connection under TLS that can gather the records of
// one TLS write into one write(2) (package kube's upgraded connections
// are). crypto/tls writes each record of at most 16 KiB with its own
// syscall: eight for a 128 KiB frame, and one for each small frame.
type writeBatcher interface {
	WriteBatch(write func() error) error
}

// findBatcher returns the writeBatcher under c's TLS, or nil.
func findBatcher(c net.Conn) writeBatcher {
	for range 8 {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
		if b, ok := c.(writeBatcher); ok {
			return b
		}
	}
	return nil
}

// Read reads from the buffered reader. Bytes the upgrader had already read
// past the 101 response come out first, because the net.Conn it returned
// yields them first.
func (c *wireConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if c.hr.src != nil {
		n, err = c.hr.Read(p)
	} else {
		n, err = c.r.Read(p)
	}
	c.bytesRead.Add(uint64(n))
	c.ends.feed(p[:n])
	if err != nil {
		c.readErr.CompareAndSwap(nil, &err)
	}
	return n, err
}

// Write coalesces frame pieces; see frameWriter.
func (c *wireConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// plain makes the connection compress and inflate SPDY header blocks for
// a framer whose own header compression is off (see headers.go). Call it
// before the first frame.
func (c *wireConn) plain() {
	c.hr.src = c.r
	c.w.deflate = &deflater{}
}

// lastReadErr returns the first error a read returned, or nil.
func (c *wireConn) lastReadErr() error {
	if p := c.readErr.Load(); p != nil {
		return *p
	}
	return nil
}

// frameWriter collects the pieces of one SPDY frame and writes the whole
// frame with a single Write once the length its header declares has
// arrived. spdystream's framer writes a data frame as stream id (4 bytes),
// flags and length (4 bytes) and payload, and a control frame in even more
// pieces; with TCP_NODELAY each piece could leave as its own segment and
// cost its own syscall (docs/protocol.md §13.2). The frame length is bytes
// 5-7 of every frame header, control or data.
//
// spdystream already serialises frame writes under its own lock; mu makes
// frameWriter safe on its own anyway.
//
// While corked (see cork), complete frames are held and go out together,
// in one write, at the next uncork: the SYN_STREAMs and FIN that open a
// forwarded connection, and whatever other streams sent meanwhile, cost
// one syscall and one TLS record instead of one each.
type frameWriter struct {
	mu      sync.Mutex
	w       io.Writer
	batch   writeBatcher // under w's TLS, if any: one syscall per write
	deflate *deflater    // compresses header blocks; nil if spdystream does
	buf     []byte       // the frame being collected
	need    int          // the frame's total size once its header is complete
	corked  int          // cork depth; held frames wait while it is above 0
	held    []byte       // complete frames held by a cork
	err     error        // the first write error: the frame stream is broken
}

// maxKeptBuffer is the largest buffer kept between frames; a rare larger
// frame gets a buffer of its own that is dropped after the write.
const maxKeptBuffer = 256 << 10

// Write appends p to the current frame and writes each frame that p
// completes. After an error it reports 0 bytes written: the frame stream is
// broken and the connection unusable anyway.
func (f *frameWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		if len(f.buf) < frameHeaderSize {
			k := min(frameHeaderSize-len(f.buf), len(p))
			f.buf = append(f.buf, p[:k]...)
			p = p[k:]
			if len(f.buf) < frameHeaderSize {
				break
			}
			length := int(binary.BigEndian.Uint32(f.buf[4:8]) & 0xffffff)
			f.need = frameHeaderSize + length
			if cap(f.buf) < f.need {
				grown := make([]byte, len(f.buf), f.need)
				copy(grown, f.buf)
				f.buf = grown
			}
		}
		k := min(f.need-len(f.buf), len(p))
		f.buf = append(f.buf, p[:k]...)
		p = p[k:]
		if len(f.buf) == f.need {
			if err := f.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// maxHeld bounds the frames a cork holds; past it they are written.
const maxHeld = 64 << 10

// cork holds complete frames until the matching uncork, so that a burst
// goes out in one write. Corks nest; the caller must not wait for the
// network between cork and uncork (the held frames are not sent yet).
func (f *frameWriter) cork() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.corked++
}

// uncork ends a cork and writes every frame held, whoever wrote them:
// another goroutine's frame is held at most until the uncork of the cork
// that held it, so nested corks never starve a frame.
func (f *frameWriter) uncork() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.corked--
	if len(f.held) == 0 {
		return f.err
	}
	held := f.held
	f.held = f.held[:0]
	return f.write(held)
}

// write writes b, which holds whole frames, in one go.
func (f *frameWriter) write(b []byte) error {
	if f.err != nil {
		return f.err
	}
	var err error
	if f.batch != nil {
		err = f.batch.WriteBatch(func() error {
			_, err := f.w.Write(b)
			return err
		})
	} else {
		_, err = f.w.Write(b)
	}
	if err != nil {
		f.err = err
	}
	return err
}

// flush writes the collected frame, or holds it while corked, and starts
// the next one.
func (f *frameWriter) flush() error {
	frame := f.buf
	if f.deflate != nil && frame[0]&0x80 != 0 {
		if off := headerOffset(binary.BigEndian.Uint16(frame[2:4])); off >= 0 && len(frame) >= frameHeaderSize+off {
			at := frameHeaderSize + off
			out := f.deflate.deflate(append(make([]byte, 0, len(frame)+16), frame[:at]...), frame[at:])
			putLength(out, len(out)-frameHeaderSize)
			frame = out
		}
	}
	var err error
	switch {
	case f.corked > 0 && len(f.held)+len(frame) <= maxHeld:
		f.held = append(f.held, frame...)
		err = f.err
	case len(f.held) > 0:
		f.held = append(f.held, frame...)
		held := f.held
		f.held = f.held[:0]
		err = f.write(held)
	default:
		err = f.write(frame)
	}
	if cap(f.buf) > maxKeptBuffer {
		f.buf = nil
	} else {
		f.buf = f.buf[:0]
	}
	f.need = 0
	return err
}

// endTracker follows the frames the server sends, as they are read and
// before spdystream handles them, and records which streams the server
// finished with a FIN. spdystream ends a stream's reads with the same EOF
// whether the server finished it, reset it, or the connection died
// (docs/protocol.md §7), so a FIN seen here is the only proof of a clean end:
// the frame is read here before spdystream queues it, so by the time a
// reader sees the EOF its FIN, if there was one, is recorded.
//
// Only the reading goroutine calls feed; mu guards fins against the
// stream goroutines that ask.
type endTracker struct {
	hdr  [frameHeaderSize]byte
	nhdr int // bytes of hdr filled

	left int // payload bytes of the current frame still to come

	// A SYN_REPLY or HEADERS frame carrying FIN names its stream in the
	// first 4 bytes of its payload.
	idWant bool
	id     [4]byte
	nid    int

	mu      sync.Mutex
	watched map[uint32]bool // stream id → finished, for the streams asked about
	// early keeps the last FINs of streams not watched yet, in case a FIN
	// is read before the goroutine that created the stream got to watch
	// it (a reply needs a round trip, so this is a formality).
	early  [16]uint32
	nearly int
}

// SPDY/3.1 control frame types and flags that the wire layer reads.
const (
	typeSynStream = 1 // carries a header block
	typeSynReply  = 2 // carries a header block, and can carry FIN
	typeHeaders   = 8 // carries a header block, and can carry FIN
	flagFin       = 0x01
)

// feed follows the frame boundaries in b, the next bytes read.
func (t *endTracker) feed(b []byte) {
	for len(b) > 0 {
		if t.nhdr < frameHeaderSize {
			k := copy(t.hdr[t.nhdr:], b)
			t.nhdr += k
			b = b[k:]
			if t.nhdr < frameHeaderSize {
				return
			}
			t.startFrame()
			continue
		}
		if t.idWant {
			k := copy(t.id[t.nid:], b)
			t.nid += k
			t.left -= k
			b = b[k:]
			if t.nid == len(t.id) {
				t.idWant = false
				t.fin(binary.BigEndian.Uint32(t.id[:]) & 0x7fffffff)
			}
		} else {
			k := min(t.left, len(b))
			t.left -= k
			b = b[k:]
		}
		if t.left <= 0 {
			t.nhdr, t.idWant = 0, false
		}
	}
}

// startFrame reads a complete frame header.
func (t *endTracker) startFrame() {
	flags := t.hdr[4]
	t.left = int(binary.BigEndian.Uint32(t.hdr[4:8]) & 0xffffff)
	if t.hdr[0]&0x80 == 0 { // a data frame: the stream id is in the header
		if flags&flagFin != 0 {
			t.fin(binary.BigEndian.Uint32(t.hdr[0:4]) & 0x7fffffff)
		}
	} else if typ := binary.BigEndian.Uint16(t.hdr[2:4]); (typ == typeSynReply || typ == typeHeaders) && flags&flagFin != 0 && t.left >= len(t.id) {
		t.idWant, t.nid = true, 0
	}
	if t.left == 0 {
		t.nhdr = 0
	}
}

func (t *endTracker) fin(id uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.watched[id]; ok {
		t.watched[id] = true
		return
	}
	t.early[t.nearly%len(t.early)] = id
	t.nearly++
}

// watch starts recording how stream id ends; only watched streams are
// recorded, so a FIN that arrives after forget leaves nothing behind.
func (t *endTracker) watch(id uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.watched == nil {
		t.watched = map[uint32]bool{}
	}
	t.watched[id] = slices.Contains(t.early[:], id) && id != 0
}

// finished reports whether the server finished stream id with a FIN.
func (t *endTracker) finished(id uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.watched[id]
}

// forget stops watching stream id.
func (t *endTracker) forget(id uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.watched, id)
}
