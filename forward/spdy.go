package forward

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the client side of SPDY/3.1 as port-forward uses it, and
// nothing more: we open streams (odd ids, SYN_STREAM), the server answers
// them (SYN_REPLY), both sides send DATA, half-close with FIN and reset
// with RST_STREAM, and both send PING and GOAWAY. The server never opens
// a stream here; one that tries is refused. SETTINGS, WINDOW_UPDATE and
// the headers of HEADERS and SYN_REPLY frames mean nothing to
// port-forward and are skipped (neither the kubelet nor spdystream
// implements flow control, docs/protocol.md §14).
//
// One goroutine reads every frame (Conn.serve) and hands the DATA of a
// stream straight to its pair: small frames to the local socket when it
// takes them at once, the rest into the stream's buffer, which never
// waits for the local reader for long (streamBuffer). There is no frame
// queue and no worker goroutine; why, with the profile, is in the package
// documentation.

// SPDY/3.1 frame types, flags and status codes that we use.
const (
	spdyVersion = 3

	typeSynStream    = 1
	typeSynReply     = 2
	typeRstStream    = 3
	typeSettings     = 4
	typePing         = 6
	typeGoAway       = 7
	typeHeaders      = 8
	typeWindowUpdate = 9

	flagFin = 0x01

	statusRefusedStream = 3
	statusCancel        = 5

	// maxStreamID is the largest stream id: 31 bits.
	maxStreamID = 0x7fffffff
	// maxFrameLength is the largest payload a frame header can declare.
	maxFrameLength = 0xffffff
)

// frameHeaderSize is the size of every SPDY/3.1 frame header, control or
// data: 4 bytes of stream id or version/type, then 1 byte of flags and 3 of
// payload length.
const frameHeaderSize = 8

// errGoneAway means the server sent GOAWAY: it takes no new streams on
// this connection.
var errGoneAway = errors.New("the server is going away (GOAWAY)")

// errStreamIDs means the connection has used up its stream ids.
var errStreamIDs = errors.New("stream ids used up")

// stream is one of our streams, as the frame reader and its pair share it.
// A pair has two: its error stream, which collects the server's message,
// and its data stream, whose data goes to the pair's local connection.
type stream struct {
	id    uint32
	p     *pair
	isErr bool // the error stream; else the data stream

	// sentEnd: our side is finished (FIN or RST sent); sentRst: RST sent.
	sentEnd, sentRst atomic.Bool

	// mu guards the server's side of the stream, which the frame reader
	// changes, and against which the pair decides its outcome.
	mu       sync.Mutex
	replied  bool   // SYN_REPLY read
	fin      bool   // the server finished the stream with a FIN
	ended    bool   // the server's side ended (FIN, reset, lost) or was given up
	detached bool   // the pair has decided: data no longer reaches local
	msg      []byte // the error stream's message so far
}

// end ends the server's side of s, once: err nil is a FIN. The data
// stream's buffer gets err as its end (deliver then finishes), the error
// stream's outcome is set for the pair to read.
func (s *stream) end(err error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	if err == nil {
		s.fin = true
	}
	msg := s.msg
	s.mu.Unlock()
	p := s.p
	if !s.isErr {
		p.buf.closeWrite(err)
		close(p.recvDone)
		return
	}
	switch {
	case len(msg) > 0:
		p.errFinal = &RemoteError{Port: p.port, Message: string(msg)}
	case err != nil:
		p.errFinal = fmt.Errorf("error stream: %w", err)
	}
	close(p.errEnd)
}

// isReplied reports whether the server answered s (or s ended).
func (s *stream) isReplied() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replied || s.ended
}

// finished reports whether the server finished s with a FIN.
func (s *stream) finished() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fin
}

// open sends s's SYN_STREAM with headers and registers it, so that the
// server's frames for it find it; the stream id is assigned as the frame
// is written, because ids must reach the server in increasing order.
func (c *Conn) open(s *stream, block []byte) error {
	return c.wire.w.synStream(block, func(id uint32) error {
		s.id = id
		return c.register(s)
	})
}

// register makes s known to the frame reader, unless the connection ended
// or the server is going away.
func (c *Conn) register(s *stream) error {
	c.streamsMu.Lock()
	defer c.streamsMu.Unlock()
	switch {
	case c.streams == nil:
		return c.endErr()
	case c.goneAway:
		return errGoneAway
	}
	c.streams[s.id] = s
	return nil
}

// unregister forgets s: the server's later frames for it are dropped.
func (c *Conn) unregister(s *stream) {
	c.streamsMu.Lock()
	defer c.streamsMu.Unlock()
	if c.streams != nil {
		delete(c.streams, s.id)
	}
}

// lookup returns our stream id, or nil.
func (c *Conn) lookup(id uint32) *stream {
	c.streamsMu.Lock()
	defer c.streamsMu.Unlock()
	return c.streams[id]
}

// endStreams ends every stream with the connection's end and takes no new
// ones. The connection's cause is set before, so the pairs read it.
func (c *Conn) endStreams() {
	c.streamsMu.Lock()
	streams := c.streams
	c.streams = nil
	c.streamsMu.Unlock()
	err := c.endErr()
	for _, s := range streams {
		s.end(err)
	}
}

// write sends data on s; nothing once we reset s.
func (s *stream) write(c *Conn, b []byte) error {
	if s.sentRst.Load() {
		return nil
	}
	return c.wire.w.data(s.id, b, false)
}

// writeFrame sends a DATA frame on s built in place: frame[:8] is room
// for the header, the rest the payload. Nothing once we reset s. While
// other local connections send too, how long the frame waited for its turn
// and its write steers the size of the next shared frames (frameSize).
func (s *stream) writeFrame(c *Conn, frame []byte) error {
	if s.sentRst.Load() {
		return nil
	}
	others := c.senders.Add(1) > 1
	defer c.senders.Add(-1)
	if !others {
		return c.wire.w.dataInPlace(s.id, frame)
	}
	start := time.Now()
	err := c.wire.w.dataInPlace(s.id, frame)
	c.adaptSharedFrame(time.Since(start))
	return err
}

// Shared frames: the DATA frames local connections send while others are
// sending too. Every stream's frames queue for the one connection, and a
// frame holds all the others for as long as it takes to write: with a
// hundred uploads at once over a slow path (the race detector, a
// WebSocket), 128 KiB frames let a stream wait most of a second between
// two of its frames, long enough for a server with a read timeout to give
// up on it, or for an interactive stream to stall. Small frames cost more
// per byte, on both sides (docs/protocol.md §13.3): 100 concurrent uploads
// through the kubelet's code moved about 15% more with 120 KiB frames than
// with 32 KiB. So the size adapts to the wait itself: it starts at
// minSharedFrame, doubles while a frame's turn and write take under a
// quarter of sharedFrameWait, and halves when they take more, between
// minSharedFrame and the local read size. A lone upload always uses the
// local read size.
const (
	minSharedFrame  = 32 << 10
	sharedFrameWait = 100 * time.Millisecond
)

// adaptSharedFrame steers the shared frame size by how long a shared frame
// waited for its turn and its write.
func (c *Conn) adaptSharedFrame(took time.Duration) {
	size := c.sharedFrame.Load()
	switch {
	case took > sharedFrameWait && size > minSharedFrame:
		c.sharedFrame.CompareAndSwap(size, max(size/2, minSharedFrame))
	case took < sharedFrameWait/4 && size < maxSharedFrame:
		c.sharedFrame.CompareAndSwap(size, min(size*2, maxSharedFrame))
	}
}

// maxSharedFrame is the largest shared frame: all a local read takes.
const maxSharedFrame = copyBufferSize - frameHeaderSize

// frameSize returns how much local data the next DATA frame may carry.
func (c *Conn) frameSize() int {
	if c.senders.Load() > 0 {
		return int(c.sharedFrame.Load())
	}
	return maxSharedFrame
}

// closeWrite half-closes s: an empty DATA frame with FIN. Once our side is
// finished it sends nothing.
func (s *stream) closeWrite(c *Conn) error {
	if s.sentEnd.Swap(true) {
		return nil
	}
	return c.wire.w.data(s.id, nil, true)
}

// reset resets s unless our side is finished already (a FIN or a reset
// sent): the server then knows all it needs.
func (s *stream) reset(c *Conn) error {
	if s.sentEnd.Swap(true) {
		return nil
	}
	s.sentRst.Store(true)
	return c.wire.w.rst(s.id, statusCancel)
}

// cancel resets s even after our FIN, so that the server stops sending
// too; a second reset sends nothing.
func (s *stream) cancel(c *Conn) error {
	s.sentEnd.Store(true)
	if s.sentRst.Swap(true) {
		return nil
	}
	return c.wire.w.rst(s.id, statusCancel)
}

// serve reads the server's frames until the connection ends, then ends
// every stream with the connection.
func (c *Conn) serve() {
	defer c.wg.Done()
	err := c.readFrames()
	if c.ctx.Err() == nil {
		switch rerr := c.wire.lastReadErr(); {
		case rerr == io.EOF:
			c.lost("connection closed by the server")
		case rerr != nil:
			c.lost("read: %v", rerr)
		default:
			c.lost("%v", err)
		}
	}
	c.endStreams()
	c.pingsMu.Lock()
	c.pings = nil
	c.pingsMu.Unlock()
}

// readFrames reads and handles frames until a read fails or the server
// breaks the protocol.
func (c *Conn) readFrames() error {
	r := c.wire.r
	var hdr [frameHeaderSize]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		flags := hdr[4]
		length := int(binary.BigEndian.Uint32(hdr[4:8]) & maxFrameLength)
		var err error
		if hdr[0]&0x80 == 0 {
			err = c.onData(binary.BigEndian.Uint32(hdr[0:4])&maxStreamID, flags, length)
		} else {
			if v := binary.BigEndian.Uint16(hdr[0:2]) & 0x7fff; v != spdyVersion {
				return fmt.Errorf("%w: SPDY version %d", ErrProtocol, v)
			}
			err = c.onControl(binary.BigEndian.Uint16(hdr[2:4]), flags, length)
		}
		if err != nil {
			return err
		}
	}
}

// controlFields is how many payload bytes of each control frame type we
// read; the rest of the payload (header blocks, settings) is skipped.
func controlFields(typ uint16) int {
	switch typ {
	case typeSynStream, typeSynReply, typeHeaders, typeRstStream, typeGoAway:
		return 4 // stream id (the last good one for GOAWAY)
	case typePing:
		return 4 // ping id
	}
	return 0
}

// onControl handles a control frame whose payload is length bytes.
func (c *Conn) onControl(typ uint16, flags byte, length int) error {
	r := c.wire.r
	want := controlFields(typ)
	if length < want {
		return fmt.Errorf("%w: control frame type %d of %d bytes", ErrProtocol, typ, length)
	}
	var f [8]byte
	if _, err := io.ReadFull(r, f[:want]); err != nil {
		return err
	}
	if err := discard(r, length-want); err != nil {
		return err
	}
	word := binary.BigEndian.Uint32(f[0:4])
	id := word & maxStreamID // a stream id: 31 bits (a PING id has 32)
	switch typ {
	case typeSynReply:
		s := c.lookup(id)
		if s == nil {
			return nil
		}
		s.mu.Lock()
		s.replied = true
		s.mu.Unlock()
		s.p.replied()
		if flags&flagFin != 0 {
			s.end(nil)
		}
	case typeHeaders:
		if s := c.lookup(id); s != nil && flags&flagFin != 0 {
			s.end(nil)
		}
	case typeRstStream:
		if s := c.lookup(id); s != nil {
			if s.isReplied() {
				s.end(errStreamReset)
			} else {
				s.end(fmt.Errorf("%w: the server refused the stream", ErrProtocol))
			}
		}
	case typePing:
		if word&1 == 1 { // ours: client pings are odd
			c.pong(word)
			return nil
		}
		return c.answer(func() error { return c.wire.w.ping(word) })
	case typeGoAway:
		c.goAway(id)
	case typeSynStream:
		// The server never opens streams in this protocol; refuse any.
		// Its ids are even: an odd one names a stream of ours, which a
		// refusal would reset.
		if id == 0 || id&1 == 1 {
			return fmt.Errorf("%w: the server opened stream %d, which is not a server stream id", ErrProtocol, id)
		}
		return c.answer(func() error { return c.wire.w.rst(id, statusRefusedStream) })
	}
	// Everything else (SETTINGS, WINDOW_UPDATE, NOOP) means nothing here.
	return nil
}

// maxPendingAnswers bounds the answers to the server's pings and streams
// that wait to be written: a server that keeps sending them while it does
// not read what we write is broken, and would otherwise grow our memory
// without end.
const maxPendingAnswers = 1024

// answer queues the answer to a server's frame for a goroutine that writes
// the answers in order: the frame reader never waits for a write, or a
// server that cannot write to us until we read (its own frame workers
// blocked on our connection) and cannot read until we finish our write
// would deadlock both. The goroutine runs only while answers wait (the
// kubelet sends no pings or streams at all). Past maxPendingAnswers the
// connection fails.
func (c *Conn) answer(write func() error) error {
	c.answersMu.Lock()
	defer c.answersMu.Unlock()
	if len(c.answers) >= maxPendingAnswers {
		return fmt.Errorf("%w: the server sent %d pings or streams that wait for an answer, and does not read", ErrProtocol, len(c.answers))
	}
	c.answers = append(c.answers, write)
	if !c.answering {
		c.answering = true
		c.wg.Add(1)
		go c.writeAnswers()
	}
	return nil
}

// writeAnswers writes the queued answers until none is left.
func (c *Conn) writeAnswers() {
	defer c.wg.Done()
	for {
		c.answersMu.Lock()
		if len(c.answers) == 0 {
			c.answers = nil
			c.answering = false
			c.answersMu.Unlock()
			return
		}
		write := c.answers[0]
		c.answers = c.answers[1:]
		c.answersMu.Unlock()
		if err := write(); err != nil {
			c.lost("write: %v", err)
		}
	}
}

// discard skips n bytes of r.
func discard(r *bufio.Reader, n int) error {
	if n == 0 {
		return nil
	}
	_, err := r.Discard(n)
	return err
}

// goAway handles the server's GOAWAY: it takes no new streams, and the
// streams it had not taken (above lastGood) never will be, so they end as
// refused (their pairs retry on another connection). The streams it took
// carry on; the connection is stale, so its owner drains it.
func (c *Conn) goAway(lastGood uint32) {
	c.streamsMu.Lock()
	c.goneAway = true
	var refused []*stream
	for id, s := range c.streams {
		if id > lastGood {
			refused = append(refused, s)
		}
	}
	c.streamsMu.Unlock()
	c.stale("the server sent GOAWAY")
	for _, s := range refused {
		s.end(fmt.Errorf("%w: the server went away before taking the stream", ErrProtocol))
	}
}

// maxWriteNow is the largest frame the frame reader writes to the local
// socket itself, while nothing waits in the stream's buffer; larger frames
// are bulk transfer, and go through the buffer so that deliver writes one
// while the reader reads the next.
const maxWriteNow = 8 << 10

// onData handles a DATA frame whose payload is length bytes.
func (c *Conn) onData(id uint32, flags byte, length int) error {
	r := c.wire.r
	s := c.lookup(id)
	if s == nil {
		return discard(r, length)
	}
	if length > 0 {
		var err error
		if s.isErr {
			err = c.errorData(s, length)
		} else {
			err = c.streamData(s, length)
		}
		if err != nil {
			return err
		}
	}
	if flags&flagFin != 0 {
		s.end(nil)
	}
	return nil
}

// errorData appends a DATA frame's payload to the error stream's message.
func (c *Conn) errorData(s *stream, length int) error {
	b, err := c.payload(length)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if room := maxErrorMessage - len(s.msg); room > 0 && !s.ended {
		s.msg = append(s.msg, b[:min(len(b), room)]...)
	}
	return nil
}

// payload reads a payload of length bytes that is used before the next
// read: small ones stay in the read buffer (valid until the next read),
// larger ones get a slice of their own.
func (c *Conn) payload(length int) ([]byte, error) {
	r := c.wire.r
	if length <= r.Size() {
		b, err := r.Peek(length)
		if err != nil {
			return nil, err
		}
		_, _ = r.Discard(length)
		return b, nil
	}
	b := make([]byte, length)
	_, err := io.ReadFull(r, b)
	return b, err
}

// streamData hands a DATA frame's payload to the data stream's pair: a
// small one is written to the local socket at once if the socket takes it
// and nothing waits before it, one goroutine hop fewer per small frame;
// the rest is copied into the stream buffer for deliver. A larger payload
// is read in pieces of at most frameBufferSize, each into a pooled buffer:
// a frame of any length (a header may declare up to 16 MiB; the kubelet
// sends at most 32 KiB) costs one such buffer beyond what the stream
// buffer holds.
func (c *Conn) streamData(s *stream, length int) error {
	r := c.wire.r
	if length <= maxWriteNow {
		b, err := r.Peek(length)
		if err != nil {
			return err
		}
		defer r.Discard(length) //nolint:errcheck // the bytes were peeked
		c.toPair(s, b, false)
		return nil
	}
	for length > 0 {
		b := getFrameBuffer(min(length, frameBufferSize))
		if _, err := io.ReadFull(r, b); err != nil {
			putFrameBuffer(b)
			return err
		}
		length -= len(b)
		c.toPair(s, b, true)
	}
	return nil
}

// toPair hands b, received on s, to its pair. If owned, b is a pooled
// frame buffer that the pair now owns; otherwise it is the read buffer,
// copied if it cannot be written at once.
func (c *Conn) toPair(s *stream, b []byte, owned bool) {
	p := s.p
	// Under s.mu the pair cannot decide meanwhile: once it has (detached),
	// nothing more reaches local, so that a connection it retries
	// elsewhere has been sent nothing.
	s.mu.Lock()
	if s.detached || s.ended {
		s.mu.Unlock()
		if owned {
			putFrameBuffer(b)
		}
		return
	}
	p.gotData.Store(true)
	if !owned && p.localRaw != nil && p.buf.empty() {
		n := writeNow(p.localRaw, b)
		p.stats.in(n)
		b = b[n:]
	}
	s.mu.Unlock()
	if len(b) == 0 {
		return
	}
	if !owned {
		b = append(make([]byte, 0, len(b)), b...)
	}
	// A full buffer waits briefly for the local reader, then spills to
	// disk; only a full spill file stops this reader (see streamBuffer).
	p.buf.push(b, c.blockedReader)
}

// newPing registers a ping and returns its id and the channel its pong
// closes; ok is false once the connection has ended.
func (c *Conn) newPing() (id uint32, pong chan struct{}, ok bool) {
	c.pingsMu.Lock()
	defer c.pingsMu.Unlock()
	if c.pings == nil {
		return 0, nil, false
	}
	if c.pingID == 0 || c.pingID > maxStreamID-2 {
		c.pingID = 1 // our pings are odd, the server's even
	} else {
		c.pingID += 2
	}
	pong = make(chan struct{})
	c.pings[c.pingID] = pong
	return c.pingID, pong, true
}

// dropPing forgets ping id.
func (c *Conn) dropPing(id uint32) {
	c.pingsMu.Lock()
	defer c.pingsMu.Unlock()
	delete(c.pings, id)
}

// pong handles the answer to our ping id.
func (c *Conn) pong(id uint32) {
	c.pingsMu.Lock()
	defer c.pingsMu.Unlock()
	if ch, ok := c.pings[id]; ok {
		close(ch)
		delete(c.pings, id)
	}
}

// ping sends one ping and reports the outcome on pong (buffered). It
// returns when the pong arrives or the connection ends.
func (c *Conn) ping(pong chan<- error) {
	defer c.wg.Done()
	id, ch, ok := c.newPing()
	if !ok {
		pong <- errors.New("connection closed")
		return
	}
	defer c.dropPing(id)
	if err := c.wire.w.ping(id); err != nil {
		pong <- err
		return
	}
	select {
	case <-ch:
		pong <- nil
	case <-c.ctx.Done():
		pong <- errors.New("connection closed")
	}
}

// sendGoAway tells the server we are going, as spdystream's Close does:
// last good stream 0 (we accept none), status OK.
func (c *Conn) sendGoAway() error { return c.wire.w.goAway(0, 0) }

// replyTimer bounds the wait for the server's SYN_REPLYs of a pair.
func (p *pair) startReplyTimer() {
	p.replyTimer = time.AfterFunc(p.c.opts.StreamCreationTimeout, p.replyTimeout)
}

// replied stops the reply timer once both streams are answered.
func (p *pair) replied() {
	if p.errStream.isReplied() && p.data.isReplied() {
		p.replyTimer.Stop()
	}
}

// replyTimeout ends the streams the server did not answer in time. A
// server that does not answer within StreamCreationTimeout has stopped
// opening streams on this connection (containerd 1.6 does after three
// failed streams): the Conn is marked stale, so the session dials a fresh
// one, and the pair is retried there. Once the pair has decided, nobody
// waits for the answer, and nothing is marked.
func (p *pair) replyTimeout() {
	select {
	case <-p.quit:
		return
	default:
	}
	var late []*stream
	for _, s := range []*stream{p.errStream, p.data} {
		if s != nil && !s.isReplied() {
			late = append(late, s)
		}
	}
	if len(late) == 0 {
		return
	}
	p.c.stale("no answer to a new stream within %s", p.c.opts.StreamCreationTimeout)
	for _, s := range late {
		s.end(fmt.Errorf("%w (%s)", ErrStreamTimeout, p.c.opts.StreamCreationTimeout))
	}
}

// detach marks the pair decided: the frame reader hands s's data to
// nobody from now on.
func (s *stream) detach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detached = true
}
