package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Stream headers of the port-forward protocol, lowercase as SPDY/3
// requires (the kubelet reads them as streamType, port and requestID).
const (
	headerStreamType = "streamtype"
	headerPort       = "port"
	headerRequestID  = "requestid"
	streamTypeError  = "error"
	streamTypeData   = "data"
)

// copyBufferSize is the local read size, and so the largest DATA frame we
// send. io.Copy's 32 KiB makes frames of at most 32 KiB, and per-frame costs
// dominate (docs/protocol.md §13.3); 128 KiB
// frames cut them by four while the kubelet's worst-case queue memory (250
// frames) stays small. The buffers are pooled and held only while a read
// has data to return (see waitReadable), so an idle connection holds none.
const copyBufferSize = 128 << 10

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// errorStreamGrace bounds how long a connection whose pod side finished
// its data waits for the server to close the error stream, which decides
// whether the end was clean.
const errorStreamGrace = 5 * time.Second

// maxErrorMessage caps what is kept of an error stream.
const maxErrorMessage = 64 << 10

// maxReplay is how many bytes of a local connection are kept for sending
// again while nothing has come back from the pod, so that a connection whose
// first attempt never reached the pod can be retried on the next connection
// to it. A client that sends more before the pod answers is not retried.
const maxReplay = 64 << 10

// errStreamReset means the server ended a stream without finishing it: a
// reset, or a connection that ended before the stream's FIN.
var errStreamReset = errors.New("the server reset the stream")

// localError is a failure of the local connection itself (the local client
// reset it, say): nothing is owed to a local peer that is gone.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// retryError is the outcome of a pair that never reached the pod: nothing
// came back, and what the local client sent (sent, then EOF if eof) can be
// sent again on another connection. The local connection is left open.
type retryError struct {
	err  error
	sent []byte
	eof  bool
	// verify: the runtime failed the connection inside the pod (refused,
	// reset while connecting, ...). That is final if the pod is still the
	// one to use; but a pod being replaced fails connections too (its app
	// stopped first), and then the connection belongs on the next pod. The
	// caller decides, asking the API.
	verify bool
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// replay is what a retried local connection carries over from its earlier
// attempts.
type replay struct {
	sent []byte // sent to the pod before, to send first
	eof  bool   // the local client had finished sending
}

// Forward serves one local connection to completion over this connection,
// to remotePort in the pod, and closes local. Each direction is half-closed
// on its own: when local stops sending, the pod sees EOF; when the pod stops
// sending, local gets CloseWrite (or Close, if it cannot half-close).
//
// The ending is honest: local gets a FIN only when the pod side finished
// cleanly (its data stream ended with a FIN and its error stream ended
// empty). Any other end (a message on the error stream, a stream reset, the
// connection lost or closed) reaches local as a TCP reset, after every byte
// that had arrived, never as a clean EOF.
//
// It returns nil when both sides finished cleanly, an error wrapping
// *RemoteError when the server reported a failure on the error stream (the
// connection is failed, the Conn carries on), an error wrapping
// ErrLostConnection or ErrClosed when the whole Conn ended, and ctx's error
// when ctx ended first.
func (c *Conn) Forward(ctx context.Context, local net.Conn, remotePort int) error {
	err := c.forward(ctx, local, remotePort, nil, replay{})
	if r, ok := errors.AsType[*retryError](err); ok {
		// Nothing to retry on here: the connection failed.
		c.Stats.Failed.Add(1)
		resetAfterSent(ctx, local)
		return r.err
	}
	return err
}

// forward is Forward counting bytes also into extra, sending what rp
// replays first, and returning a *retryError, with local still open, when
// the connection never reached the pod and can be tried again elsewhere.
func (c *Conn) forward(ctx context.Context, local net.Conn, remotePort int, extra counterSet, rp replay) (err error) {
	if remotePort < 1 || remotePort > 65535 {
		_ = local.Close()
		return fmt.Errorf("forward to port %d: port out of range 1-65535", remotePort)
	}
	if c.ctx.Err() != nil {
		return notReached(fmt.Errorf("forward to port %d: %w", remotePort, c.Err()), rp)
	}
	c.acquire()
	defer c.release()
	stats := append(counterSet{&c.Stats}, extra...)
	c.Stats.Active.Add(1)
	c.Stats.Total.Add(1)
	p := &pair{
		c:        c,
		ctx:      ctx,
		local:    local,
		port:     remotePort,
		id:       c.nextRequestID.Add(1) - 1,
		stats:    stats,
		buf:      newStreamBuffer(c.opts.StreamBuffer, c.opts.SpillLimit),
		rp:       rp,
		quit:     make(chan struct{}),
		upC:      make(chan error, 1),
		downC:    make(chan error, 1),
		errEnd:   make(chan struct{}),
		recvDone: make(chan struct{}),
		remote:   strconv.Itoa(remotePort),
	}
	if rp.sent != nil {
		p.sent = append(make([]byte, 0, len(rp.sent)), rp.sent...)
	}
	if sc, ok := local.(syscall.Conn); ok {
		p.localRaw, _ = sc.SyscallConn()
	}
	err = p.run()
	c.Stats.Active.Add(-1)
	// A connection cut by its owner's shutdown, or retried elsewhere, has
	// not failed.
	_, retry := errors.AsType[*retryError](err)
	if err != nil && !retry && !errIs(err, context.Canceled, ErrClosed) {
		c.Stats.Failed.Add(1)
	}
	log := c.log.With("local", local.LocalAddr().String(), "remote", remotePort)
	switch {
	case err == nil:
		log.Debug("connection done")
	case retry:
		log.Debug("connection did not reach the pod; it will be retried", "err", err)
	default:
		if _, ok := errors.AsType[*RemoteError](err); ok {
			log.Warn("connection failed in the pod", "err", err)
		} else {
			log.Debug("connection ended", "err", err)
		}
	}
	return err
}

// notReached is the outcome of a connection that could not even start on
// a Conn: retried elsewhere when it may be, else reset.
func notReached(err error, rp replay) error {
	return &retryError{err: err, sent: rp.sent, eof: rp.eof}
}

// pair is one forwarded local connection: an error stream and a data stream
// sharing a requestID.
type pair struct {
	c      *Conn
	ctx    context.Context
	local  net.Conn
	port   int
	remote string
	id     uint64
	stats  counterSet
	rp     replay

	localRaw        syscall.RawConn // local's socket, for writeNow; nil if none
	errStream, data *stream
	replyTimer      *time.Timer // bounds the wait for the server's replies
	buf             *streamBuffer
	gotData         atomic.Bool // a byte came back from the pod

	// sent keeps what local sent while nothing came back, for a retry;
	// nil once more than maxReplay was sent. Written by send only, read
	// after the goroutines ended.
	sent     []byte
	localEOF bool        // local finished sending; like sent
	earlyErr error       // sendEarly's write failed; send reports it
	overflow atomic.Bool // too much was sent, or data came back: no retry

	quit     chan struct{} // closed when run has decided the outcome
	failOnce sync.Once
	wg       sync.WaitGroup

	upC   chan error // local → pod ended: nil after a clean EOF
	downC chan error // pod → local ended: nil after a clean end

	recvDone chan struct{} // closed when the data stream ended
	errEnd   chan struct{} // closed when the error stream ended; then errFinal holds
	errFinal error         // nil: the error stream ended empty with a FIN
}

// headers returns the plain header block of the pair's stream of type
// streamType.
func (p *pair) headers(streamType string) []byte {
	return headerBlock(headerStreamType, streamType, headerPort, p.remote, headerRequestID, strconv.FormatUint(p.id, 10))
}

// outcome is how a pair ends for the local connection.
type outcome int

const (
	endClean outcome = iota // FIN already sent to local; close it
	endReset                // drain what arrived, then reset local
	endLocal                // local itself failed: close it, drop the rest
	endRetry                // never reached the pod: leave local open
)

// run opens the streams, copies both ways and decides the outcome.
func (p *pair) run() error {
	c := p.c
	// Error stream first, then data stream, as the kubelet expects. Their
	// SYN_REPLYs are not awaited (client-go waits for each in turn, two
	// round trips per connection): the frame reader notes them, and a
	// timer (startReplyTimer) bounds how long they may take. The server
	// handles a SYN_STREAM before any later frame of that stream, so data
	// may follow the SYN_STREAM at once.
	// The two SYN_STREAMs, the error stream's FIN and whatever the local
	// client has sent already go out in one write.
	c.wire.w.cork()
	corked := true
	uncork := func() {
		if corked {
			corked = false
			if err := c.wire.w.uncork(); err != nil {
				c.lost("write: %v", err)
			}
		}
	}
	defer uncork()
	p.errStream = &stream{p: p, isErr: true}
	p.data = &stream{p: p}
	p.startReplyTimer()
	if err := c.open(p.errStream, p.headers(streamTypeError)); err != nil {
		// Nothing was sent. A Conn that cannot open streams (ids used up,
		// GOAWAY) is only cured by a new one.
		p.replyTimer.Stop()
		c.stale("create stream: %v", err)
		return notReached(fmt.Errorf("forward to port %d: create error stream: %w", p.port, c.streamErr(err)), p.rp)
	}
	// We never write on the error stream.
	_ = p.errStream.closeWrite(c)
	if err := c.open(p.data, p.headers(streamTypeData)); err != nil {
		uncork()
		close(p.quit)
		p.replyTimer.Stop()
		// The error stream went out (with the data stream's failure, in
		// the same cork): reset it, or the server holds it until its
		// stream-creation timeout.
		_ = p.errStream.cancel(c)
		c.unregister(p.errStream)
		c.stale("create stream: %v", err)
		p.buf.abort()
		return notReached(fmt.Errorf("forward to port %d: create data stream: %w", p.port, c.streamErr(err)), p.rp)
	}
	p.sendEarly()
	uncork()

	p.wg.Add(2)
	go p.deliver()
	go p.send()

	end, err := p.wait()
	if end == endReset && p.retryable(err) {
		end = endRetry
	}
	p.finish(end)
	if end == endRetry {
		// Only now has send stopped: if it had to drop what it kept, or
		// the pod answered after all, a retry would lose or repeat bytes.
		if p.overflow.Load() || p.gotData.Load() {
			resetAfterSent(p.ctx, p.local)
			return err
		}
		re, _ := errors.AsType[*RemoteError](err)
		return &retryError{err: err, sent: p.sent, eof: p.localEOF, verify: re != nil && !re.PodGone()}
	}
	return err
}

// streamErr explains a failure to write a stream frame.
func (c *Conn) streamErr(err error) error {
	if cause := c.Err(); cause != nil {
		return cause
	}
	return err
}

// wait decides the outcome from the goroutines' reports.
func (p *pair) wait() (outcome, error) {
	var upDone, downDone bool
	errEnd, connDone := p.errEnd, p.c.Done()
	for {
		if upDone && downDone {
			return endClean, nil
		}
		select {
		case err := <-p.upC:
			upDone = true
			if err != nil {
				return p.failed(fmt.Errorf("forward to port %d: local to pod: %w", p.port, err))
			}
		case err := <-p.downC:
			downDone = true
			if err != nil {
				if _, local := errors.AsType[*localError](err); !local {
					err = p.explain(err)
				}
				return p.failed(fmt.Errorf("forward to port %d: pod to local: %w", p.port, err))
			}
			if !upDone {
				// The pod side finished cleanly and takes no more data:
				// local got its FIN; end its sending too.
				p.stopSend()
			}
		case <-errEnd:
			errEnd = nil
			if p.errFinal != nil {
				return p.failed(fmt.Errorf("forward to port %d: %w", p.port, p.errFinal))
			}
			// Clean so far; the data stream's FIN follows (the kubelet
			// closes the error stream first).
		case <-p.ctx.Done():
			return p.failed(fmt.Errorf("forward to port %d: %w", p.port, p.ctx.Err()))
		case <-connDone:
			if p.podFinished() {
				// The pod side ended cleanly before the connection did:
				// what it sent is all here, and goes out with a FIN.
				connDone = nil
				continue
			}
			return p.failed(fmt.Errorf("forward to port %d: %w", p.port, p.c.Err()))
		}
	}
}

// podFinished reports whether the server ended the pair cleanly: its error
// stream ended empty and its data stream with a FIN.
func (p *pair) podFinished() bool {
	select {
	case <-p.errEnd:
		return p.errFinal == nil && p.data.finished()
	default:
		return false
	}
}

// explainWait bounds how long explain waits for the error stream.
const explainWait = time.Second

// explain returns the error stream's message for a data stream that ended
// badly, if one comes: the kubelet writes the message and then resets the
// data stream, from different goroutines (and through different frame
// workers of its spdystream), so the reset can arrive first. Otherwise it
// returns err.
func (p *pair) explain(err error) error {
	t := time.NewTimer(explainWait)
	defer t.Stop()
	select {
	case <-p.errEnd:
		if re, ok := errors.AsType[*RemoteError](p.errFinal); ok {
			return re
		}
	case <-t.C:
	}
	return err
}

// failed starts ending the pair after err: the pod is told with a reset,
// local stops being read, and what arrived keeps going to local (unless
// local itself failed). It returns the outcome to finish with.
func (p *pair) failed(err error) (outcome, error) {
	end := endReset
	if _, ok := errors.AsType[*localError](err); ok {
		end = endLocal
	}
	p.failOnce.Do(func() {
		if end == endReset && p.serverFailed(err) {
			// The kubelet writes its message and then resets the data
			// stream, after the data it had sent: let that data in (it
			// may still be on the way, and once the pair has decided
			// nothing more reaches local) before resetting it ourselves.
			t := time.NewTimer(explainWait)
			select {
			case <-p.recvDone:
			case <-t.C:
			case <-p.ctx.Done():
			}
			t.Stop()
		}
		// A reset even after our FIN, so that the pod stops sending.
		_ = p.data.cancel(p.c)
		p.stopSend()
		if end == endLocal {
			p.buf.abort()
			_ = p.local.Close()
		}
	})
	return end, err
}

// serverFailed reports whether err is the server's report of a failure (a
// message on the error stream, or a stream it reset), not the end of the
// connection, the pair's owner or the local side.
func (p *pair) serverFailed(err error) bool {
	if _, ok := errors.AsType[*RemoteError](err); ok {
		return true
	}
	return errors.Is(err, errStreamReset)
}

// stopSend makes send's wait for local data return at once, without
// closing local (which still gets what arrived, or a retry).
func (p *pair) stopSend() { _ = p.local.SetReadDeadline(time.Now()) }

// retryable reports whether a pair that failed with err never reached the
// pod, and what local sent is kept, so it can be tried again elsewhere.
func (p *pair) retryable(err error) bool {
	if p.overflow.Load() || p.gotData.Load() || p.ctx.Err() != nil {
		return false
	}
	if _, ok := errors.AsType[*RemoteError](err); ok {
		return true // a pod-gone message, or else verified by the caller
	}
	return errIs(err, ErrLostConnection, ErrClosed, ErrStreamTimeout, ErrProtocol, errStreamReset)
}

// finish ends the pair as decided: it resets both streams (before anything
// waits, so a frame blocked on them cannot stall the connection,
// docs/protocol.md §8), waits for the pair's goroutines, and ends local.
func (p *pair) finish(end outcome) {
	close(p.quit)
	p.replyTimer.Stop()
	if end == endRetry {
		// Nothing was written to local: drop what little arrived (an
		// empty buffer, by retryable) and stop delivering.
		p.buf.abort()
	}
	// From here the frame reader hands nothing more to local (a retried
	// connection must have been sent nothing), and drops the server's
	// later frames for the pair.
	p.data.detach()
	_ = p.data.reset(p.c)
	p.c.unregister(p.data)
	p.c.unregister(p.errStream)
	// What arrived still goes to local (unless aborted); then deliver
	// ends. The error stream's write side is closed already, so nothing
	// is sent for it.
	p.data.end(errStreamReset)
	p.errStream.end(errStreamReset)
	// After a failure a paused local reader gets every byte that arrived
	// whenever it reads again; the drain is bounded only once the pair's
	// owner ends it (the port removed, the session closed), by CloseTimeout.
	drainCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(p.ctx, func() {
		_ = p.local.SetWriteDeadline(time.Now().Add(p.c.opts.CloseTimeout))
		time.AfterFunc(p.c.opts.CloseTimeout, cancel)
	})
	defer stop()
	p.wg.Wait()
	p.buf.abort() // frees memory and the spill file
	switch end {
	case endClean, endLocal:
		_ = p.local.Close()
	case endReset:
		resetAfterSent(drainCtx, p.local)
	case endRetry:
		_ = p.local.SetDeadline(time.Time{})
	}
}

// deliver writes buffered data to the local connection. When the pod's
// side finished, it half-closes local, but only once the error stream has
// ended empty too; any other end is reported on downC for wait to decide
// (finish then resets local, after what was delivered here).
func (p *pair) deliver() {
	defer p.wg.Done()
	// WriteTo consumes what it is given; keep holds the array for the next
	// batch, and the batch's own chunks stay intact for release.
	var keep net.Buffers
	for {
		bt, err := p.buf.take()
		if err == io.EOF {
			p.downC <- p.halfCloseLocal()
			return
		}
		if err != nil {
			if err == errBufferAborted {
				err = nil // the outcome is decided already
			}
			p.downC <- err
			return
		}
		keep = append(keep[:0], bt.chunks...)
		bufs := keep
		n, err := bufs.WriteTo(p.local)
		p.stats.in(int(n))
		p.buf.release(bt)
		if err != nil {
			p.downC <- &localError{fmt.Errorf("write local: %w", err)}
			return
		}
	}
}

// halfCloseLocal ends the pod → local direction cleanly, if the error
// stream says it was clean.
func (p *pair) halfCloseLocal() error {
	t := time.NewTimer(errorStreamGrace)
	defer t.Stop()
	select {
	case <-p.errEnd:
		if p.errFinal != nil {
			return p.errFinal
		}
	case <-t.C:
		return fmt.Errorf("%w: the error stream did not end within %s of the data", errStreamReset, errorStreamGrace)
	case <-p.quit:
		return nil
	}
	if cw, ok := p.local.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return &localError{fmt.Errorf("half-close local: %w", err)}
		}
	}
	// A connection that cannot half-close is closed by finish.
	return nil
}

// sendEarly sends what the local client has sent already, if anything,
// with the frames that open the pair (under their cork): one TLS record
// and one frame read fewer for the server per connection whose client
// speaks first. It reads without waiting, before send starts, and send
// carries on from there; while others send, it takes no more than a
// shared frame (frameSize): a hundred connections opening at once would
// otherwise each put up to 128 KiB ahead of the streams already running.
func (p *pair) sendEarly() {
	if p.localRaw == nil || len(p.rp.sent) > 0 || p.rp.eof {
		return
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	n := readNow(p.localRaw, (*bp)[:p.c.frameSize()])
	if n == 0 {
		return
	}
	p.keep((*bp)[:n])
	if err := p.data.write(p.c, (*bp)[:n]); err != nil {
		p.earlyErr = err
		return
	}
	p.stats.out(n)
}

// send copies the local connection to the data stream in frames of up to
// copyBufferSize, after what earlier attempts sent, and half-closes the
// stream at local EOF.
func (p *pair) send() {
	defer p.wg.Done()
	if p.earlyErr != nil {
		p.upC <- p.c.streamErr(p.earlyErr)
		return
	}
	if len(p.rp.sent) > 0 {
		if err := p.data.write(p.c, p.rp.sent); err != nil {
			p.upC <- p.c.streamErr(err)
			return
		}
	}
	if p.rp.eof {
		p.upC <- p.closeData()
		return
	}
	for {
		// Wait for data before taking a buffer, so that an idle connection
		// holds none.
		if err := waitReadable(p.local); err != nil {
			p.upC <- p.localReadErr(err)
			return
		}
		// The payload is read behind room for the frame header, so that
		// the frame is written from this buffer without a copy.
		bp := copyBuffers.Get().(*[]byte)
		n, rerr := p.local.Read((*bp)[frameHeaderSize : frameHeaderSize+p.c.frameSize()])
		if n > 0 {
			p.keep((*bp)[frameHeaderSize : frameHeaderSize+n])
			err := p.data.writeFrame(p.c, (*bp)[:frameHeaderSize+n])
			copyBuffers.Put(bp)
			if err != nil {
				p.upC <- p.c.streamErr(err)
				return
			}
			p.stats.out(n)
		} else {
			copyBuffers.Put(bp)
		}
		if rerr == io.EOF {
			p.localEOF = true
			p.upC <- p.closeData()
			return
		}
		if rerr != nil {
			p.upC <- p.localReadErr(rerr)
			return
		}
	}
}

// keep records b for a retry while nothing has come back from the pod.
func (p *pair) keep(b []byte) {
	if p.overflow.Load() || p.gotData.Load() {
		p.sent = nil
		p.overflow.Store(true)
		return
	}
	if len(p.sent)+len(b) > maxReplay {
		p.sent = nil
		p.overflow.Store(true)
		return
	}
	p.sent = append(p.sent, b...)
}

// closeData half-closes the data stream: the pod sees EOF.
func (p *pair) closeData() error {
	if err := p.data.closeWrite(p.c); err != nil {
		return p.c.streamErr(err)
	}
	return nil
}

// localReadErr classifies a failed local read: the deadline stopSend set
// is no failure.
func (p *pair) localReadErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return &localError{fmt.Errorf("read local: %w", err)}
}
