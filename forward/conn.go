package forward

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Upgrader performs the HTTP/1.1 upgrade of a request to the API server. It
// returns the upgraded connection, whose first reads must yield any bytes
// already read past the 101 response, and the response headers. A response
// other than 101 must be an error that quotes the server's status and
// message. Package kube's client provides this (through a small adapter).
type Upgrader interface {
	Upgrade(ctx context.Context, method, path string, header http.Header) (net.Conn, http.Header, error)
}

// Protocol header and value negotiated in the SPDY handshake.
const (
	protocolHeader = "X-Stream-Protocol-Version"
	protocolName   = "portforward.k8s.io"
)

// Options configures a Conn. The zero value gives the documented defaults.
type Options struct {
	// PingInterval is how often a keepalive ping is sent; a connection that
	// shows no sign of life for two intervals is declared lost. Default 5s,
	// as client-go; negative disables pings.
	PingInterval time.Duration
	// StreamCreationTimeout bounds the wait for the server to accept the
	// streams of a new local connection. A server that does not answer in
	// time has stopped opening streams on this connection (containerd 1.6
	// does so after three failed streams): the connection is marked stale,
	// so that the session dials a fresh one, and the local connection is
	// retried there. Default 10s (client-go waits 30s and then fails).
	StreamCreationTimeout time.Duration
	// DialTimeout bounds the HTTP upgrade. Default 30s.
	DialTimeout time.Duration
	// CloseTimeout bounds the GOAWAY write and the teardown of Close.
	// Default 2s.
	CloseTimeout time.Duration
	// StreamBuffer is how many bytes received for one local connection may
	// wait in memory for it to read them; past that they spill to disk.
	// Default 256 KiB.
	StreamBuffer int
	// SpillLimit is how many more bytes of one local connection may wait
	// on disk, in an unlinked temporary file, before that stream stops
	// being read, which stalls the whole connection (see the package
	// documentation). Default 1 GiB; negative disables spilling.
	SpillLimit int
	// Logger receives per-connection events with the keys tunnel, pod,
	// local, remote and err. Default: discard.
	Logger *slog.Logger
	// Tunnel is the value of the tunnel key in logs. Default empty.
	Tunnel string
	// Transport is how to reach the pod. Default TransportSPDY, which
	// every API server and kubelet speaks; the WebSocket transport needs
	// an API server to unwrap it (package tunnel defaults to auto).
	Transport Transport
}

func (o Options) withDefaults() Options {
	if o.PingInterval == 0 {
		o.PingInterval = 5 * time.Second
	}
	if o.StreamCreationTimeout <= 0 {
		o.StreamCreationTimeout = 10 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 30 * time.Second
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 2 * time.Second
	}
	if o.StreamBuffer <= 0 {
		o.StreamBuffer = 256 << 10
	}
	if o.SpillLimit == 0 {
		o.SpillLimit = 1 << 30
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Transport == "" {
		o.Transport = TransportSPDY
	}
	return o
}

// Conn is one SPDY port-forward connection to one pod. It carries every
// forwarded local connection to that pod, on any port, as a pair of
// streams. A failure on one forwarded connection does not affect the
// others; when the SPDY connection itself dies, Done fires and Err says why.
type Conn struct {
	// Stats counts the local connections forwarded over this connection.
	Stats Counters

	namespace, pod string
	opts           Options
	log            *slog.Logger

	transport Transport

	raw  net.Conn
	tcp  syscall.RawConn // the TCP connection under raw, if it can be reached
	wire *wireConn

	// streams are our open streams by id, for the frame reader; nil once
	// the connection has ended. goneAway: the server sent GOAWAY.
	streamsMu sync.Mutex
	streams   map[uint32]*stream
	goneAway  bool

	// pings are our pings awaiting their pong, by id; nil once the
	// connection has ended.
	pingsMu sync.Mutex
	pings   map[uint32]chan struct{}
	pingID  uint32

	nextRequestID atomic.Uint64

	// answers are the answers to the server's pings and streams waiting to
	// be written by the one goroutine that writes them (see answer).
	answersMu sync.Mutex
	answers   []func() error
	answering bool

	// senders counts the local connections writing a DATA frame now (see
	// frameSize).
	senders atomic.Int32
	// sharedFrame is the payload size of a DATA frame sent while others
	// are sending (see adaptSharedFrame).
	sharedFrame atomic.Int32

	// blocked counts streams whose reader waits for local backpressure (a
	// full stream buffer): the connection is then not read, so a missing
	// pong is no sign of death.
	blocked atomic.Int32

	// staleC is closed, once, when the connection should take no new
	// local connections; see stale.
	staleC    chan struct{}
	staleOnce sync.Once
	staleWhy  atomic.Pointer[string]

	mu     sync.Mutex
	active int           // forwarded connections running
	idle   chan struct{} // closed when active drops to 0, if set

	// ctx ends when the connection fails or is closed; its cause is Err.
	ctx    context.Context
	cancel context.CancelCauseFunc

	teardownOnce sync.Once
	closeOnce    sync.Once
	wg           sync.WaitGroup // serve, keepalive, pings
}

// Dial opens a port-forward connection to pod in namespace over
// opts.Transport: a POST to /api/v1/namespaces/NS/pods/POD/portforward
// upgraded to SPDY/3.1, or a GET upgraded to a WebSocket that carries the
// same SPDY frames. ctx bounds the dial only; the connection lives until
// Close or until it fails.
func Dial(ctx context.Context, up Upgrader, namespace, pod string, opts Options) (*Conn, error) {
	opts = opts.withDefaults()
	dctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	raw, transport, err := upgrade(dctx, up, namespace, pod, opts)
	if err != nil {
		return nil, fmt.Errorf("dial pod %s/%s over %s: %w", namespace, pod, transport, err)
	}
	c, err := newConn(raw, namespace, pod, opts)
	if err != nil {
		return nil, err
	}
	c.transport = transport
	return c, nil
}

// Transport returns the transport the connection runs over.
func (c *Conn) Transport() Transport { return c.transport }

// newConn runs SPDY over an upgraded connection.
func newConn(raw net.Conn, namespace, pod string, opts Options) (*Conn, error) {
	opts = opts.withDefaults()
	c := &Conn{
		namespace: namespace,
		pod:       pod,
		opts:      opts,
		log:       opts.Logger.With("tunnel", opts.Tunnel, "pod", namespace+"/"+pod),
		transport: TransportSPDY,
		raw:       raw,
		wire:      newWireConn(raw),
		tcp:       rawTCP(raw),
		staleC:    make(chan struct{}),
		streams:   map[uint32]*stream{},
		pings:     map[uint32]chan struct{}{},
	}
	c.sharedFrame.Store(minSharedFrame)
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	c.wg.Add(1)
	go c.serve()
	if opts.PingInterval > 0 {
		c.wg.Add(1)
		go c.keepalive(c.ctx)
	}
	return c, nil
}

// Namespace returns the namespace of the pod.
func (c *Conn) Namespace() string { return c.namespace }

// Pod returns the name of the pod.
func (c *Conn) Pod() string { return c.pod }

// Done is closed when the connection has failed or was closed.
func (c *Conn) Done() <-chan struct{} { return c.ctx.Done() }

// Err returns nil while the connection is up, then why it ended: an error
// wrapping ErrLostConnection when it died, ErrClosed after Close.
func (c *Conn) Err() error {
	if c.ctx.Err() == nil {
		return nil
	}
	return context.Cause(c.ctx)
}

// Stale is closed when the connection, though alive, should take no new
// local connections: it failed to open a stream, or the server stopped
// answering new ones. Its open connections carry on; the owner should dial
// a fresh connection and drain this one (see Drain).
func (c *Conn) Stale() <-chan struct{} { return c.staleC }

// StaleReason says why Stale fired, or "" if it has not.
func (c *Conn) StaleReason() string {
	if p := c.staleWhy.Load(); p != nil {
		return *p
	}
	return ""
}

// isStale reports whether Stale has fired.
func (c *Conn) isStale() bool {
	select {
	case <-c.staleC:
		return true
	default:
		return false
	}
}

// stale marks the connection stale with a reason.
func (c *Conn) stale(format string, args ...any) {
	c.staleOnce.Do(func() {
		why := fmt.Sprintf(format, args...)
		c.staleWhy.Store(&why)
		if c.Err() == nil {
			c.log.Warn("connection to pod takes no new streams", "err", why)
		}
		close(c.staleC)
	})
}

// acquire and release count the forwarded connections running.
func (c *Conn) acquire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active++
}

func (c *Conn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active--
	if c.active == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
}

// Drain closes the connection once its forwarded connections have ended,
// the connection has failed, or ctx ends, whichever comes first. The owner
// calls it for a connection it no longer hands out (the target moved to
// another pod, or the connection went stale), so that the connections
// already open on it are not cut.
func (c *Conn) Drain(ctx context.Context) {
	c.mu.Lock()
	var idle chan struct{}
	if c.active > 0 {
		idle = make(chan struct{})
		c.idle = idle
	}
	c.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-c.Done():
		case <-ctx.Done():
		}
	}
	_ = c.Close()
}

// blockedReader counts the streams waiting for local backpressure.
func (c *Conn) blockedReader(waiting bool) {
	if waiting {
		c.blocked.Add(1)
	} else {
		c.blocked.Add(-1)
	}
}

// Close resets every forwarded connection, sends GOAWAY and closes the
// network connection, each step bounded by Options.CloseTimeout, and waits
// for the connection's goroutines. It returns nil; Err says whether the
// connection had failed before.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.teardown(ErrClosed)
		c.wg.Wait()
	})
	return nil
}

// teardown ends the connection with cause, once: the network connection
// gets a deadline first, so that the GOAWAY, or a write already blocked
// behind a peer that stopped reading, cannot hold it up for longer than
// CloseTimeout. Closing the network connection ends the frame reader,
// which then ends every stream.
func (c *Conn) teardown(cause error) {
	c.teardownOnce.Do(func() {
		c.cancel(cause)
		c.stopWaiting()
		_ = c.raw.SetDeadline(time.Now().Add(c.opts.CloseTimeout))
		_ = c.sendGoAway()
		_ = c.raw.Close()
	})
}

// stopWaiting wakes the frame reader if it waits on a stream buffer that is
// full (a local reader stopped, and its spill file is full or unusable):
// closing the network connection alone would not, and Close would wait for
// that local reader.
func (c *Conn) stopWaiting() {
	c.streamsMu.Lock()
	defer c.streamsMu.Unlock()
	for _, s := range c.streams {
		if !s.isErr {
			s.p.buf.stopWaiting()
		}
	}
}

// lost ends the connection as lost, with what was seen.
func (c *Conn) lost(format string, args ...any) {
	c.teardown(fmt.Errorf("pod %s/%s: %w: %s", c.namespace, c.pod, ErrLostConnection, fmt.Sprintf(format, args...)))
}

// endErr explains the end of a stream that the server did not finish
// because the connection ended: the Conn's cause, which is set before the
// streams are ended.
func (c *Conn) endErr() error {
	if cause := c.Err(); cause != nil {
		return cause
	}
	return fmt.Errorf("pod %s/%s: %w: the server ended the connection", c.namespace, c.pod, ErrLostConnection)
}

// keepalive pings the server every PingInterval. A ping that gets no answer
// within an interval, while nothing else showed life either, means the
// connection is dead, so a dead link is noticed within two intervals. Life
// is any byte read (a pong can queue behind data frames on a busy
// connection), a steady flow of our bytes acknowledged by the peer (a
// server busy reading an upload may be slow to pong), or a stream reader
// held up by local backpressure (the connection is then not read, so its
// pong cannot arrive; the peer is not at fault).
func (c *Conn) keepalive(ctx context.Context) {
	defer c.wg.Done()
	interval := c.opts.PingInterval
	next := time.NewTimer(interval)
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-next.C:
		}
		seen := c.life()
		pong := make(chan error, 1)
		c.wg.Add(1)
		go c.ping(pong)
		deadline := time.NewTimer(interval)
	wait:
		for {
			select {
			case <-ctx.Done():
				deadline.Stop()
				return
			case err := <-pong:
				deadline.Stop()
				if err != nil {
					c.lost("ping: %v", err)
					return
				}
				break wait
			case <-deadline.C:
				if now := c.life(); now.alive(seen) || c.blocked.Load() > 0 {
					seen = now
					deadline.Reset(interval)
					continue
				}
				c.lost("no answer to a ping within %s", interval)
				return
			}
		}
		next.Reset(interval)
	}
}

// minAckedLife is how many of our bytes the peer must have acknowledged
// while a pong is awaited for that to count as life. A few kilobytes do
// not: the kernel of a frozen server acknowledges them until its receive
// buffer is full. A steady upload does: the server is reading.
const minAckedLife = 256 << 10

// life is what the keepalive compares between two looks.
type life struct {
	read  uint64 // bytes read
	acked uint64 // our bytes the peer's TCP acknowledged (0 if unknown)
}

// life returns the connection's signs of life so far.
func (c *Conn) life() life {
	l := life{read: c.wire.bytesRead.Load()}
	if c.tcp != nil {
		l.acked = tcpAcked(c.tcp)
	}
	return l
}

// alive reports whether now shows life since then.
func (now life) alive(then life) bool {
	return now.read != then.read || now.acked-then.acked >= minAckedLife
}
