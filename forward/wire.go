package forward

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync/atomic"
)

// readBufferSize is the bufio.Reader the frame reader reads through: a
// frame header and a small payload cost no read(2) of their own
// (docs/protocol.md §13.1). Payloads larger than the buffer are read
// straight into their own slice, so this costs no extra copy for them:
// 16 KiB, below the kubelet's 32 KiB frames, so that a download's payloads
// go from TLS's record straight to the stream buffer (64 KiB copied every
// payload once more: runtime.memmove 0.25 s against 0.18 s per GiB down).
const readBufferSize = 16 << 10

// wireConn is the upgraded connection as our SPDY code uses it: reads go
// through a bufio.Reader, counted for the keepalive, and frames are
// written whole, one write per frame or per corked burst.
type wireConn struct {
	net.Conn
	r         *bufio.Reader
	w         *frameWriter
	bytesRead atomic.Uint64 // read progress, which keepalive counts as life
	readErr   atomic.Pointer[error]
}

func newWireConn(c net.Conn) *wireConn {
	wc := &wireConn{Conn: c}
	wc.r = bufio.NewReaderSize(countingReader{wc}, readBufferSize)
	wc.w = newFrameWriter(c)
	return wc
}

// countingReader reads the network connection for the bufio.Reader,
// counting bytes and keeping the first error.
type countingReader struct{ c *wireConn }

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.c.Conn.Read(p)
	r.c.bytesRead.Add(uint64(n))
	if err != nil {
		r.c.readErr.CompareAndSwap(nil, &err)
	}
	return n, err
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

// lastReadErr returns the first error a read returned, or nil.
func (c *wireConn) lastReadErr() error {
	if p := c.readErr.Load(); p != nil {
		return *p
	}
	return nil
}

// frameWriter writes whole SPDY frames, each with a single Write: a
// frame's header and payload in one piece, so that with TCP_NODELAY a
// header never leaves as a segment of its own (docs/protocol.md §13.2),
// and under TLS one record (or one batch of records) per frame.
//
// While corked (see cork), complete frames are held and go out together,
// in one write, at the next uncork: the SYN_STREAMs and FIN that open a
// forwarded connection, and whatever other streams sent meanwhile, cost
// one syscall and one TLS record instead of one each.
type frameWriter struct {
	mu      fifoMutex
	w       io.Writer
	batch   writeBatcher // under w's TLS, if any: one syscall per write
	deflate deflater     // compresses header blocks
	lastID  uint32       // the last stream id opened
	buf     []byte       // the frame being written
	corked  int          // cork depth; held frames wait while it is above 0
	held    []byte       // complete frames held by a cork
	err     error        // the first write error: the frame stream is broken
}

// fifoMutex is a mutex that goes to its waiters in the order they came.
// sync.Mutex lets a goroutine that unlocks and locks again at once go
// before those already waiting; for the frame writer, where every local
// connection queues its frames, that let one stream wait most of a second
// while a hundred others wrote (the channel's queue of blocked senders is
// first in, first out, and a freed slot goes to the first of them).
type fifoMutex struct{ c chan struct{} }

// Lock waits for the mutex. The zero value is not usable; see newFIFOMutex.
func (m *fifoMutex) Lock() { m.c <- struct{}{} }

// Unlock frees the mutex for the longest waiter.
func (m *fifoMutex) Unlock() { <-m.c }

func newFIFOMutex() fifoMutex { return fifoMutex{c: make(chan struct{}, 1)} }

// newFrameWriter returns a frame writer to w, batching its writes under
// TLS if w allows.
func newFrameWriter(w io.Writer) *frameWriter {
	f := &frameWriter{w: w, mu: newFIFOMutex()}
	if c, ok := w.(net.Conn); ok {
		f.batch = findBatcher(c)
	}
	return f
}

// maxKeptBuffer is the largest buffer kept between frames; a rare larger
// frame gets a buffer of its own that is dropped after the write.
const maxKeptBuffer = 256 << 10

// data writes a DATA frame on stream id, with FIN if fin.
func (f *frameWriter) data(id uint32, p []byte, fin bool) error {
	if len(p) > maxFrameLength {
		return fmt.Errorf("%w: a frame of %d bytes", ErrProtocol, len(p))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var flags byte
	if fin {
		flags = flagFin
	}
	b := binary.BigEndian.AppendUint32(f.buf[:0], id)
	b = binary.BigEndian.AppendUint32(b, uint32(flags)<<24|uint32(len(p)))
	f.buf = append(b, p...)
	return f.emit()
}

// dataInPlace writes a DATA frame, without FIN, on stream id from frame,
// whose first 8 bytes are room for the header and the rest the payload:
// unless frames are held, frame itself is written, without a copy.
func (f *frameWriter) dataInPlace(id uint32, frame []byte) error {
	n := len(frame) - frameHeaderSize
	if n > maxFrameLength {
		return fmt.Errorf("%w: a frame of %d bytes", ErrProtocol, n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	binary.BigEndian.PutUint32(frame[0:4], id)
	binary.BigEndian.PutUint32(frame[4:8], uint32(n))
	if f.corked > 0 || len(f.held) > 0 {
		f.buf = append(f.buf[:0], frame...)
		return f.emit()
	}
	return f.write(frame)
}

// control starts a control frame of type typ in f.buf; the caller appends
// the payload and calls emit, which sets the length. Call with mu held.
func (f *frameWriter) control(typ uint16, flags byte) {
	b := binary.BigEndian.AppendUint16(f.buf[:0], 0x8000|spdyVersion)
	b = binary.BigEndian.AppendUint16(b, typ)
	f.buf = append(b, flags, 0, 0, 0)
}

// controlWords writes a control frame of type typ whose payload is words,
// each 32-bit big-endian, as RST_STREAM, PING and GOAWAY are.
func (f *frameWriter) controlWords(typ uint16, words ...uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.control(typ, 0)
	for _, w := range words {
		f.buf = binary.BigEndian.AppendUint32(f.buf, w)
	}
	return f.emit()
}

// rst writes RST_STREAM for stream id with status.
func (f *frameWriter) rst(id, status uint32) error {
	return f.controlWords(typeRstStream, id, status)
}

// ping writes a PING with id: ours, or the server's echoed.
func (f *frameWriter) ping(id uint32) error { return f.controlWords(typePing, id) }

// goAway writes GOAWAY.
func (f *frameWriter) goAway(lastGood, status uint32) error {
	return f.controlWords(typeGoAway, lastGood, status)
}

// synStream writes a SYN_STREAM with the plain header block, opening the
// next stream id, and calls opened with that id before the frame can
// leave, so that the server's answer finds the stream. Ids go out in
// increasing order, as SPDY requires, because they are taken under the
// same lock as the write. The header block is compressed here, in wire
// order, as SPDY's one zlib stream per direction requires.
func (f *frameWriter) synStream(block []byte, opened func(id uint32) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if f.lastID+2 > maxStreamID {
		return errStreamIDs
	}
	id := f.lastID + 2
	if f.lastID == 0 {
		id = 1 // client streams are odd
	}
	if err := opened(id); err != nil {
		return err
	}
	f.lastID = id
	f.control(typeSynStream, 0)
	f.buf = binary.BigEndian.AppendUint32(f.buf, id)
	f.buf = binary.BigEndian.AppendUint32(f.buf, 0) // associated stream
	f.buf = append(f.buf, 0, 0)                     // priority, slot
	f.buf = f.deflate.deflate(f.buf, block)
	return f.emit()
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

// emit writes the frame in f.buf, or holds it while corked, after
// setting a control frame's length. Call with mu held.
func (f *frameWriter) emit() error {
	frame := f.buf
	if frame[0]&0x80 != 0 {
		putLength(frame, len(frame)-frameHeaderSize)
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
	return err
}
