package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/spdystream"
)

// Stream headers of the port-forward protocol.
const (
	headerStreamType = "streamType"
	headerPort       = "port"
	headerRequestID  = "requestID"
	streamTypeError  = "error"
	streamTypeData   = "data"
)

// copyBufferSize is the local read size, and so the largest DATA frame we
// send. io.Copy's 32 KiB makes frames of at most 32 KiB, and per-frame costs
// dominate (PROTOCOL.md, "Where the reference client is slow", 3); 128 KiB
// frames cut them by four while the kubelet's worst-case queue memory (250
// frames) stays small.
const copyBufferSize = 128 << 10

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// errorStreamGrace bounds how long a connection whose data has finished
// both ways waits for the server to close the error stream.
const errorStreamGrace = 5 * time.Second

// maxErrorMessage caps what is kept of an error stream.
const maxErrorMessage = 64 << 10

// Forward serves one local connection to completion over this connection,
// to remotePort in the pod, and closes local. Each direction is half-closed
// on its own: when local stops sending, the pod sees EOF; when the pod stops
// sending, local gets CloseWrite (or Close, if it cannot half-close).
//
// It returns nil when both sides finished cleanly, an error wrapping
// *RemoteError when the server reported a failure on the error stream (the
// connection is failed, the Conn carries on), an error wrapping
// ErrLostConnection or ErrClosed when the whole Conn ended, and ctx's error
// when ctx ended first.
func (c *Conn) Forward(ctx context.Context, local net.Conn, remotePort int) error {
	return c.forward(ctx, local, remotePort, nil)
}

// forward is Forward counting also into extra.
func (c *Conn) forward(ctx context.Context, local net.Conn, remotePort int, extra counterSet) error {
	defer local.Close()
	if remotePort < 1 || remotePort > 65535 {
		return fmt.Errorf("forward to port %d: port out of range 1-65535", remotePort)
	}
	if c.ctx.Err() != nil {
		return fmt.Errorf("forward to port %d: %w", remotePort, c.Err())
	}
	stats := append(counterSet{&c.Stats}, extra...)
	stats.start()
	p := &pair{
		c:      c,
		ctx:    ctx,
		local:  local,
		port:   remotePort,
		id:     c.nextRequestID.Add(1) - 1,
		stats:  stats,
		buf:    newStreamBuffer(c.opts.StreamBuffer),
		quit:   make(chan struct{}),
		upC:    make(chan error, 1),
		downC:  make(chan error, 1),
		errC:   make(chan errResult, 1),
		remote: strconv.Itoa(remotePort),
	}
	err := p.run()
	// A connection cut by its owner's shutdown has not failed.
	stats.end(err != nil && !errIs(err, context.Canceled, ErrClosed))
	log := c.log.With("local", local.LocalAddr().String(), "remote", remotePort)
	var remoteErr *RemoteError
	switch {
	case err == nil:
		log.Debug("connection done")
	case errors.As(err, &remoteErr):
		log.Warn("connection failed in the pod", "err", err)
	default:
		log.Debug("connection ended", "err", err)
	}
	return err
}

// errResult is what the error stream carried.
type errResult struct {
	msg []byte
	err error
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

	errStream, data *spdystream.Stream
	buf             *streamBuffer
	finSent         atomic.Bool // the data stream's write side was closed
	localClosed     atomic.Bool // we closed local on purpose

	quit      chan struct{} // closed when run has decided the outcome
	abortOnce sync.Once
	wg        sync.WaitGroup

	upC   chan error     // local → pod ended: nil after a clean EOF
	downC chan error     // pod → local ended: nil after a clean EOF
	errC  chan errResult // the error stream ended
}

func (p *pair) headers(streamType string) http.Header {
	h := http.Header{}
	h.Set(headerStreamType, streamType)
	h.Set(headerPort, p.remote)
	h.Set(headerRequestID, strconv.FormatUint(p.id, 10))
	return h
}

// run opens the streams, copies both ways and decides the outcome.
func (p *pair) run() error {
	c := p.c
	// Error stream first, then data stream, as the kubelet expects. Their
	// SYN_REPLYs are awaited in the background rather than one after the
	// other (which costs client-go two round trips per connection): the
	// server handles a SYN_STREAM before any later frame of that stream, so
	// data may follow the SYN_STREAM at once.
	es, err := c.spdy.CreateStream(p.headers(streamTypeError), nil, false)
	if err != nil {
		return fmt.Errorf("forward to port %d: create error stream: %w", p.port, c.streamErr(err))
	}
	p.errStream = es
	// We never write on the error stream.
	_ = es.Close()
	ds, err := c.spdy.CreateStream(p.headers(streamTypeData), nil, false)
	if err != nil {
		p.wg.Add(1)
		go p.readErrors() // still owns the error stream's reply
		p.finish()
		return fmt.Errorf("forward to port %d: create data stream: %w", p.port, c.streamErr(err))
	}
	p.data = ds

	p.wg.Add(4)
	go p.readErrors()
	go p.receive()
	go p.deliver()
	go p.send()

	result := p.wait()
	p.finish()
	return result
}

// streamErr explains a failure to write a stream frame.
func (c *Conn) streamErr(err error) error {
	if cause := c.Err(); cause != nil {
		return cause
	}
	return err
}

// wait decides the outcome from the goroutines' reports.
func (p *pair) wait() error {
	var upDone, downDone, errDone bool
	var grace *time.Timer
	defer func() {
		if grace != nil {
			grace.Stop()
		}
	}()
	var graceC <-chan time.Time
	for {
		if upDone && downDone && errDone {
			return nil
		}
		// Once the data is done both ways, the server gets errorStreamGrace
		// to close the error stream. (When the error stream ends first, the
		// data stream's end is on its way: the kubelet closes the error
		// stream first, and the two travel through different frame
		// workers.)
		if graceC == nil && upDone && downDone {
			grace = time.NewTimer(errorStreamGrace)
			graceC = grace.C
		}
		select {
		case err := <-p.upC:
			upDone = true
			if err != nil {
				p.abort()
				return fmt.Errorf("forward to port %d: local to pod: %w", p.port, err)
			}
		case err := <-p.downC:
			downDone = true
			if err != nil {
				p.abort()
				return fmt.Errorf("forward to port %d: pod to local: %w", p.port, err)
			}
			if errDone && !upDone {
				// The server is done with this pair and takes no more data:
				// end the local side too.
				p.closeLocal()
			}
		case r := <-p.errC:
			errDone = true
			switch {
			case r.err != nil:
				p.abort()
				return fmt.Errorf("forward to port %d: %w", p.port, r.err)
			case len(r.msg) > 0:
				p.abort()
				return fmt.Errorf("forward to port %d: %w", p.port, &RemoteError{Port: p.port, Message: string(r.msg)})
			}
			if downDone && !upDone {
				p.closeLocal()
			}
		case <-graceC:
			// The server did not finish the pair in time; the data is done
			// as far as it goes, and finish resets the streams.
			return nil
		case <-p.ctx.Done():
			p.abort()
			return fmt.Errorf("forward to port %d: %w", p.port, p.ctx.Err())
		case <-p.c.Done():
			p.abort()
			return fmt.Errorf("forward to port %d: %w", p.port, p.c.Err())
		}
	}
}

// abort ends the pair early: the pod is told with a reset (even when our
// FIN already went out, since the pod may still be sending), buffered data
// is dropped, and the local connection is closed.
func (p *pair) abort() {
	p.abortOnce.Do(func() {
		p.closeLocal()
		if p.finSent.Load() {
			// Reset sends nothing once our side is finished; Cancel does.
			_ = p.data.Cancel()
		}
		_ = p.data.Reset()
		p.buf.abort()
	})
}

// closeLocal closes the local connection; the goroutines then see their
// local reads and writes fail and treat that as the end they were told of.
func (p *pair) closeLocal() {
	p.localClosed.Store(true)
	_ = p.local.Close()
}

// finish releases everything once the outcome is decided and waits for the
// pair's goroutines. The data stream is reset before anything waits, so a
// frame blocked on it cannot stall the connection (PROTOCOL.md 9).
func (p *pair) finish() {
	close(p.quit)
	p.closeLocal()
	if p.data != nil {
		_ = p.data.Reset()
	}
	// The error stream's write side is closed already, so Reset sends
	// nothing: it only unblocks our reader and forgets the stream.
	_ = p.errStream.Reset()
	p.buf.abort()
	p.wg.Wait()
}

// lateReplyWait is how long waitReply keeps waiting after the pair has
// been decided and its streams reset. spdystream forgets a reset stream, so
// only a frame handler already holding the stream can still hand over a
// reset; this covers that window.
const lateReplyWait = time.Second

// waitReply waits for the server's SYN_REPLY to s. It must run for every
// stream we create until the reply, the end of the connection, or the
// stream's reset: spdystream hands a reset that arrives before the reply
// over on an unbuffered channel, and without a waiter that frame worker,
// and with it the connection, blocks forever. spdystream offers only a
// timed wait that a dead connection does not interrupt, so it waits in
// short steps and checks between them.
func (p *pair) waitReply(s *spdystream.Stream) error {
	deadline := time.Now().Add(p.c.opts.StreamCreationTimeout)
	quit := p.quit
	for {
		step := min(time.Until(deadline), 100*time.Millisecond)
		if step <= 0 {
			if quit == nil {
				return errBufferAborted // nobody is waiting for the answer
			}
			return fmt.Errorf("%w (%s)", ErrStreamTimeout, p.c.opts.StreamCreationTimeout)
		}
		err := s.WaitTimeout(step)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, spdystream.ErrReset):
			return fmt.Errorf("%w: the server refused the stream", ErrProtocol)
		case err != spdystream.ErrTimeout:
			return err
		}
		select {
		case <-p.c.served:
			// spdystream's frame workers have all stopped.
			return p.c.Err()
		case <-quit:
			quit = nil
			deadline = time.Now().Add(lateReplyWait)
		default:
		}
	}
}

// readErrors reads the error stream to its end. The server writes a
// message there when forwarding failed; an empty stream means success.
func (p *pair) readErrors() {
	defer p.wg.Done()
	if err := p.waitReply(p.errStream); err != nil {
		p.errC <- errResult{err: fmt.Errorf("error stream: %w", err)}
		return
	}
	var msg []byte
	for {
		b, err := p.errStream.ReadData()
		if err != nil {
			break
		}
		if room := maxErrorMessage - len(msg); room > 0 {
			msg = append(msg, b[:min(len(b), room)]...)
		}
	}
	if cause := p.c.Err(); cause != nil && len(msg) == 0 {
		p.errC <- errResult{err: cause}
		return
	}
	p.errC <- errResult{msg: msg}
}

// receive moves the data stream's frames into the stream buffer as fast as
// they arrive, so spdystream's frame worker is never held up by the local
// connection (until the buffer is full; see streamBuffer).
func (p *pair) receive() {
	defer p.wg.Done()
	if err := p.waitReply(p.data); err != nil {
		p.buf.closeWrite(fmt.Errorf("data stream: %w", err))
		return
	}
	for {
		b, err := p.data.ReadData()
		if err != nil {
			// EOF: the server closed or reset the stream, or the connection
			// ended; the error stream or the Conn says which.
			if cause := p.c.Err(); cause != nil {
				p.buf.closeWrite(cause)
			} else {
				p.buf.closeWrite(nil)
			}
			return
		}
		if len(b) > 0 && !p.buf.push(b) {
			return
		}
	}
}

// deliver writes buffered data to the local connection, then half-closes
// it when the pod's side ended.
func (p *pair) deliver() {
	defer p.wg.Done()
	for {
		chunks, err := p.buf.take()
		if err == io.EOF {
			if cw, ok := p.local.(interface{ CloseWrite() error }); ok {
				if err := cw.CloseWrite(); err != nil && !p.localClosed.Load() {
					p.downC <- fmt.Errorf("half-close local: %w", err)
					return
				}
			} else {
				p.closeLocal()
			}
			p.downC <- nil
			return
		}
		if err != nil {
			if err == errBufferAborted {
				err = nil // the outcome is decided already
			}
			p.downC <- err
			return
		}
		size := 0
		for _, c := range chunks {
			size += len(c)
		}
		bufs := net.Buffers(chunks)
		n, err := bufs.WriteTo(p.local)
		p.stats.in(int(n))
		p.buf.release(size)
		if err != nil {
			if p.localClosed.Load() {
				err = nil
			}
			p.downC <- err
			return
		}
	}
}

// send copies the local connection to the data stream in frames of up to
// copyBufferSize, and half-closes the stream at local EOF.
func (p *pair) send() {
	defer p.wg.Done()
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := p.local.Read(buf)
		if n > 0 {
			if err := p.data.WriteData(buf[:n], false); err != nil {
				p.upC <- p.c.streamErr(err)
				return
			}
			p.stats.out(n)
		}
		if rerr == io.EOF {
			p.finSent.Store(true)
			if err := p.data.Close(); err != nil && !errors.Is(err, spdystream.ErrWriteClosedStream) {
				p.upC <- p.c.streamErr(err)
				return
			}
			p.upC <- nil
			return
		}
		if rerr != nil {
			if p.localClosed.Load() {
				rerr = nil
			}
			p.upC <- rerr
			return
		}
	}
}
