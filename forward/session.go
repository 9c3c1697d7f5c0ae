package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Resolved is a session's target resolved to one pod.
type Resolved struct {
	Pod string
	// UID is the pod's UID: a pod re-created under the same name (as a
	// StatefulSet does) is another pod, and the session redials for it.
	// Empty if unknown.
	UID string
	// Ports holds, for each remote port asked for, its number on Pod, in
	// the order asked.
	Ports []int
	// NotReady: Pod is Running but not Ready (a pod target is forwarded
	// to all the same, as kubectl does); shown in SessionStatus.
	NotReady bool
}

// ResolveFunc resolves a session's target to the pod to connect to, and
// the remote ports (numbers or names, possibly service ports) to port
// numbers on that pod. current is the pod the session is connected to ("" if
// none), which a resolver should keep while it is still a good choice. A
// session calls it before every dial and on Refresh, and returns its errors
// as they are: they should name the target.
type ResolveFunc func(ctx context.Context, remotes []RemotePort, current string) (Resolved, error)

// State is where a session, or one of its ports, stands.
type State int

// The states of a session.
const (
	// StateConnecting: resolving the target and dialing the pod, for the
	// first time or after the target moved to another pod.
	StateConnecting State = iota
	// StateReady: connected; local connections are forwarded.
	StateReady
	// StateRetrying: the last attempt or the connection failed (Err says
	// why); the session retries with backoff.
	StateRetrying
	// StateFailed: a permanent error (Err); the session waits for Refresh.
	StateFailed
	// StateClosed: the session has ended.
	StateClosed
)

// String returns the state's lowercase name.
func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateReady:
		return "ready"
	case StateRetrying:
		return "retrying"
	case StateFailed:
		return "failed"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// SessionOptions configures a Session. Upgrader and Resolve are required;
// every other zero value is a documented default.
type SessionOptions struct {
	// Upgrader performs the HTTP upgrade to the API server.
	Upgrader Upgrader
	// Namespace is the namespace of the target.
	Namespace string
	// Resolve picks the pod and maps the remote ports before each dial.
	Resolve ResolveFunc
	// Tunnel and Target are the values of the tunnel and target keys in
	// logs. Default empty.
	Tunnel, Target string
	// Logger receives state changes (Info), retries (Warn) and
	// per-connection events. Default: discard.
	Logger *slog.Logger
	// Conn configures each connection to the pod; its Logger and Tunnel
	// default to the session's.
	Conn Options
	// Backoff spaces the retries. Default: see Backoff.
	Backoff Backoff
	// ConnectWait is how long a local connection accepted while there is
	// no connection to the pod waits for one before it is closed, and how
	// long a connection that never reached the pod keeps being retried on
	// the next one. Default 30s.
	ConnectWait time.Duration
	// FailFast makes Run return the error of the first attempt to resolve
	// and dial instead of retrying it. Later failures are always retried.
	FailFast bool
	// Pool is the most connections to the pod the session keeps: while
	// every one carries several local connections, it dials another to
	// the same pod (see pool.go). Default 4; 1 keeps one, as kubectl does.
	Pool int
	// Permanent reports errors that retrying cannot fix (a target that
	// does not exist, say): the session then enters StateFailed and waits
	// for Refresh. Default: every error is retried.
	Permanent func(error) bool
}

// stableAfter is how long a connection must have lasted for its loss to
// restart the backoff from Initial.
const stableAfter = 30 * time.Second

// Session keeps one port-forward connection to the pod its target resolves
// to, and serves any number of ports over it: ports can be added and
// removed while it runs, and all of them share the connection. When the
// connection dies, the session resolves the target again and redials, with
// backoff; local connections accepted meanwhile wait for the new connection
// (up to ConnectWait).
//
// A session has one lifetime, its context: it lives until the context
// given to NewSession ends (or Close is called), and Run returns then.
type Session struct {
	// Stats counts the local connections of every port of the session.
	Stats Counters

	opts SessionOptions
	log  *slog.Logger

	// spdyUntil is when a session that fell back to SPDY (TransportAuto)
	// tries WebSocket again (autoFallbackTTL). Run's alone.
	spdyUntil time.Time

	// ctx is NewSession's, and ends when the session closes; Run and the
	// ports run under it.
	ctx    context.Context
	cancel context.CancelFunc

	refresh chan struct{} // capacity 1: a pending request to re-resolve

	drains sync.WaitGroup // connections left to drain after a move; Add under mu, while not closed

	// verifies makes the connections that ask podStillGood about the same
	// connection at once share one resolve, which runs in a goroutine of
	// singleflight's; verifying counts those (Add under mu, while not
	// closed) so that Close can wait for them.
	verifies  singleflight.Group
	verifying sync.WaitGroup

	mu         sync.Mutex
	state      State
	err        error // why retrying or failed
	since      time.Time
	retryAt    time.Time          // when a retrying session tries again by its backoff
	conn       *Conn              // set only while ready
	uid        string             // the pod's UID, while ready
	podPorts   map[RemotePort]int // set only while ready
	resolveErr error              // the last refresh failed
	verified   *Conn              // the first connection of the pool whose pod podStillGood last found good
	verifiedAt time.Time          // and when
	notReady   bool               // the pod is Running but not Ready, while ready
	changed    chan struct{}      // closed and replaced on every change
	ports      []*Port
	running    bool
	closed     bool
	dials      int
	closeOnce  sync.Once

	// The pool (pool.go), while ready: every connection to the pod, the
	// first one (conn) first; retire is closed when conn leaves, and
	// the connections added to it with it. growing: a dial for another
	// is under way; growAfter: none before then, after a failed one.
	pool      []*pooled
	retire    chan struct{}
	growing   bool
	growAfter time.Time
	poolIdle  time.Duration // how long an added connection may idle: poolIdle, shorter in tests
}

// NewSession returns a session that lives until ctx ends or Close is
// called. It serves ports added to it once Run runs.
func NewSession(ctx context.Context, opts SessionOptions) *Session {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ConnectWait <= 0 {
		opts.ConnectWait = 30 * time.Second
	}
	opts.Backoff = opts.Backoff.withDefaults()
	if opts.Pool == 0 {
		opts.Pool = defaultPool
	}
	s := &Session{
		poolIdle: poolIdle,
		opts:     opts,
		log:      opts.Logger.With("tunnel", opts.Tunnel, "target", opts.Target),
		refresh:  make(chan struct{}, 1),
		state:    StateConnecting,
		since:    time.Now(),
		changed:  make(chan struct{}),
	}
	if s.opts.Conn.Logger == nil {
		s.opts.Conn.Logger = opts.Logger.With("target", opts.Target)
	}
	if s.opts.Conn.Tunnel == "" {
		s.opts.Conn.Tunnel = opts.Tunnel
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	return s
}

// Run connects and keeps the session connected until the session's
// context ends or Close is called, then closes the session: its listeners,
// its connections, and the connection to the pod. It returns nil then, or,
// with FailFast, the error of the first attempt. A session runs once.
func (s *Session) Run() error {
	s.mu.Lock()
	if s.running || s.closed {
		s.mu.Unlock()
		return fmt.Errorf("run session: %w", ErrClosed)
	}
	s.running = true
	s.mu.Unlock()
	defer s.Close()
	ctx := s.ctx

	attempt := 0
	for first := true; ; first = false {
		conn, res, err := s.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if first && s.opts.FailFast {
				return err
			}
			if s.opts.Permanent != nil && s.opts.Permanent(err) {
				s.setState(StateFailed, err)
				s.log.Error("port-forward failed; waiting for a change", "err", err)
				if s.wait(ctx, -1) == wokeEnded {
					return nil
				}
				attempt = 0
				continue
			}
			delay := s.opts.Backoff.Delay(attempt, rand.Float64())
			attempt++
			s.setRetrying(err, delay)
			s.log.Warn("connect to pod failed; retrying", "err", err, "delay", delay.Round(time.Millisecond))
			switch s.wait(ctx, delay) {
			case wokeEnded:
				return nil
			case wokeReachable:
				attempt = 0
			}
			continue
		}
		if !s.setReady(conn, res) {
			conn.Close()
			return nil
		}
		s.log.Info("connected over "+string(conn.Transport()), "pod", s.opts.Namespace+"/"+res.pod)
		readyAt := time.Now()
		lost := s.serveConn(ctx, conn, res)
		if ctx.Err() != nil || lost || !s.startDrain(ctx, conn) {
			conn.Close()
		}
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(readyAt) >= stableAfter {
			attempt = 0
		}
		if lost {
			delay := s.opts.Backoff.Delay(attempt, rand.Float64())
			attempt++
			s.setRetrying(conn.Err(), delay)
			switch s.wait(ctx, delay) {
			case wokeEnded:
				return nil
			case wokeReachable:
				attempt = 0
			}
		}
	}
}

// startDrain leaves conn to the connections open on it, after the session
// moved on (to another pod, or to a fresh connection), and closes it once
// they are done; false if the session is closing. The check and the Add
// share s.mu with Close, so that Close's Wait never races an Add.
func (s *Session) startDrain(ctx context.Context, conn *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.drains.Add(1)
	go s.drain(ctx, conn)
	return true
}

// drain closes conn once its open connections are done, or ctx ends.
func (s *Session) drain(ctx context.Context, conn *Conn) {
	defer s.drains.Done()
	conn.Drain(ctx)
}

// resolution is a Resolved with its ports keyed by what was asked.
type resolution struct {
	pod   string
	uid   string
	ports map[RemotePort]int
	// notReady is Resolved.NotReady.
	notReady bool
}

// samePod reports whether r and o name the same pod: the same name, and the
// same UID when both are known.
func (r resolution) samePod(o resolution) bool {
	return r.pod == o.pod && (r.uid == "" || o.uid == "" || r.uid == o.uid)
}

// autoFallbackTTL is how long a session whose TransportAuto dial fell back
// to SPDY dials SPDY directly before it tries WebSocket again: the proxy
// or API server that refused the WebSocket upgrade will most likely refuse
// the next one too, and each refusal costs a round trip, often with its
// own TLS handshake, on every redial.
const autoFallbackTTL = 10 * time.Minute

// connect resolves the target and dials the pod.
func (s *Session) connect(ctx context.Context) (*Conn, resolution, error) {
	res, err := s.resolve(ctx)
	if err != nil {
		return nil, resolution{}, err
	}
	opts := s.opts.Conn
	if opts.Transport == TransportAuto && time.Now().Before(s.spdyUntil) {
		opts.Transport = TransportSPDY
	}
	conn, err := Dial(ctx, s.opts.Upgrader, s.opts.Namespace, res.pod, opts)
	if err != nil {
		return nil, resolution{}, err
	}
	if opts.Transport == TransportAuto && conn.Transport() == TransportSPDY {
		s.spdyUntil = time.Now().Add(autoFallbackTTL)
	}
	return conn, res, nil
}

// resolve calls Resolve with the remote ports of every current port.
func (s *Session) resolve(ctx context.Context) (resolution, error) {
	remotes := s.remotes()
	s.mu.Lock()
	current := ""
	if s.conn != nil {
		current = s.conn.pod
	}
	s.mu.Unlock()
	res, err := s.opts.Resolve(ctx, remotes, current)
	if err != nil {
		return resolution{}, err
	}
	if len(res.Ports) != len(remotes) {
		return resolution{}, fmt.Errorf("resolve %s: asked for %d ports, got %d", s.opts.Target, len(remotes), len(res.Ports))
	}
	m := make(map[RemotePort]int, len(remotes))
	for i, r := range remotes {
		m[r] = res.Ports[i]
	}
	return resolution{pod: res.Pod, uid: res.UID, ports: m, notReady: res.NotReady}, nil
}

// remotes returns the distinct remote ports of the session's ports.
func (s *Session) remotes() []RemotePort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remotesLocked()
}

// serveConn watches the ready connection until it dies (lost is true), the
// target moves to another pod, the connection goes stale, or ctx ends.
func (s *Session) serveConn(ctx context.Context, conn *Conn, res resolution) (lost bool) {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-conn.Stale():
			s.log.Warn("connection to pod takes no new streams; dialing a fresh one", "pod", s.opts.Namespace+"/"+res.pod, "err", conn.StaleReason())
			s.setState(StateConnecting, nil)
			return false
		case <-conn.Done():
			if s.ctx.Err() != nil || ctx.Err() != nil {
				// Close cancels s.ctx before it closes the connection; the
				// context.AfterFunc that cancels ctx may not have run yet.
				return false
			}
			err := conn.Err()
			s.setState(StateRetrying, err)
			s.log.Warn("lost connection to pod; reconnecting", "pod", s.opts.Namespace+"/"+res.pod, "err", err)
			return true
		case <-s.refresh:
			if conn.isStale() {
				// Staleness won the race with a refresh: handle it first
				// (the next connect resolves anyway).
				s.log.Warn("connection to pod takes no new streams; dialing a fresh one", "pod", s.opts.Namespace+"/"+res.pod, "err", conn.StaleReason())
				s.setState(StateConnecting, nil)
				return false
			}
			next, err := s.resolve(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return false
				}
				s.mu.Lock()
				s.resolveErr = err
				s.broadcastLocked()
				s.mu.Unlock()
				s.log.Warn("re-resolve failed; keeping the current pod", "pod", s.opts.Namespace+"/"+res.pod, "err", err)
				continue
			}
			if !next.samePod(res) {
				if next.pod == res.pod {
					s.log.Info("pod was re-created; reconnecting", "pod", s.opts.Namespace+"/"+next.pod)
				} else {
					s.log.Info("target moved to another pod; reconnecting", "pod", s.opts.Namespace+"/"+next.pod)
				}
				s.setState(StateConnecting, nil)
				return false
			}
			s.mu.Lock()
			if s.conn == conn {
				s.podPorts, s.notReady = next.ports, next.notReady
				s.resolveMissingLocked()
				s.broadcastLocked()
			}
			s.mu.Unlock()
			res = next
		}
	}
}

// remotesLocked is remotes with s.mu held.
func (s *Session) remotesLocked() []RemotePort {
	var rs []RemotePort
	for _, p := range s.ports {
		if !slices.Contains(rs, p.remote) {
			rs = append(rs, p.remote)
		}
	}
	return rs
}

// Prober is implemented by an Upgrader that can tell cheaply whether the
// API server accepts connections (a TCP dial, say). A session waiting to
// retry polls it, and retries at once when the server, unreachable before,
// is reachable again, instead of sleeping out a backoff that grew while the
// server was down.
type Prober interface {
	Reachable(ctx context.Context) error
}

// probeInterval is how often a waiting session polls its Prober.
const probeInterval = 250 * time.Millisecond

// wakeReason is why wait returned.
type wakeReason int

const (
	wokeEnded     wakeReason = iota // ctx ended
	wokeTimer                       // the delay passed
	wokeRefresh                     // Refresh was called
	wokeReachable                   // the API server is reachable again
)

// wait waits for delay (forever if negative), a Refresh, the end of ctx,
// or, during a backoff, the API server coming back (polling the Upgrader's
// Prober).
func (s *Session) wait(ctx context.Context, delay time.Duration) wakeReason {
	var timeout <-chan time.Time
	if delay >= 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		timeout = t.C
	}
	var probe <-chan time.Time
	prober, _ := s.opts.Upgrader.(Prober)
	if prober != nil && delay > 2*probeInterval {
		t := time.NewTicker(probeInterval)
		defer t.Stop()
		probe = t.C
	}
	down := false
	for {
		select {
		case <-ctx.Done():
			return wokeEnded
		case <-timeout:
			return wokeTimer
		case <-s.refresh:
			return wokeRefresh
		case <-probe:
			if err := prober.Reachable(ctx); err != nil {
				down = true
			} else if down {
				s.log.Info("API server is reachable again; retrying now")
				return wokeReachable
			}
		}
	}
}

// setState records a state other than ready.
func (s *Session) setState(state State, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.state, s.err, s.since, s.retryAt = state, err, time.Now(), time.Time{}
	s.conn, s.uid, s.podPorts, s.resolveErr = nil, "", nil, nil
	s.notReady = false
	s.retirePoolLocked()
	s.broadcastLocked()
}

// setRetrying records that the session waits delay, after err, before it
// tries again.
func (s *Session) setRetrying(err error, delay time.Duration) {
	s.setState(StateRetrying, err)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.retryAt = time.Now().Add(delay)
	}
}

// setReady publishes a new connection; false if the session closed.
func (s *Session) setReady(conn *Conn, res resolution) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.state, s.err, s.since, s.retryAt = StateReady, nil, time.Now(), time.Time{}
	s.conn, s.uid, s.podPorts, s.resolveErr = conn, res.uid, res.ports, nil
	s.notReady = res.notReady
	s.pool, s.retire = []*pooled{{conn: conn}}, make(chan struct{})
	s.dials++
	s.resolveMissingLocked()
	s.broadcastLocked()
	return true
}

// resolveMissingLocked asks for another resolve if a port has no number in
// the map just installed: it was added while the resolve ran, after its
// remote ports were read. AddPort cannot see that: it checks the map of
// the moment, which may still have the remote port (a port removed and
// added again, as when a tunnel's local port changes) while the resolve in
// flight leaves it out. Without this, the port's connections would wait
// for a number until ConnectWait. Both checks hold s.mu, so a port added
// during a resolve is either in s.ports here or sees the new map in
// AddPort.
func (s *Session) resolveMissingLocked() {
	for _, r := range s.remotesLocked() {
		if _, ok := s.podPorts[r]; !ok {
			s.requestRefreshLocked()
			return
		}
	}
}

func (s *Session) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Refresh asks the session to resolve its target again now: when it
// resolves to another pod, the session reconnects to that pod (closing the
// connections on the old one); a session waiting to retry, or failed,
// retries at once.
func (s *Session) Refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requestRefreshLocked()
}

func (s *Session) requestRefreshLocked() {
	s.resolveErr = nil
	select {
	case s.refresh <- struct{}{}:
	default:
	}
}

// connFor waits until deadline for a ready connection other than avoid
// (nil for any) and returns it with the pod's number for remote: the least
// busy one of the pool. The caller calls doneWith once it is done with it.
// While the session's first connection is avoid, or cannot take new local
// connections, none of the pool is used: they all go to the same pod.
func (s *Session) connFor(ctx context.Context, remote RemotePort, avoid *Conn, deadline time.Time) (*Conn, int, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, 0, fmt.Errorf("session: %w", ErrClosed)
		}
		if s.conn != nil && s.conn != avoid && usable(s.conn) {
			if n, ok := s.podPorts[remote]; ok {
				conn := s.pickLocked(avoid)
				s.mu.Unlock()
				return conn, n, nil
			}
			if err := s.resolveErr; err != nil {
				s.mu.Unlock()
				return nil, 0, fmt.Errorf("remote port %s: %w", remote, err)
			}
		}
		if s.state == StateFailed {
			err := s.err
			s.mu.Unlock()
			return nil, 0, err
		}
		changed, lastErr := s.changed, s.err
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			if lastErr != nil {
				return nil, 0, fmt.Errorf("%w within %s: %w", ErrNotReady, s.opts.ConnectWait, lastErr)
			}
			return nil, 0, fmt.Errorf("%w within %s", ErrNotReady, s.opts.ConnectWait)
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// verifyTTL is how long a check that the pod is still the one to use
// stands for further refused connections: short, since a pod being
// replaced starts refusing just before it goes, and the pod watch's
// PodDeleted ends it at once.
const verifyTTL = 250 * time.Millisecond

// podStillGood reports whether conn's pod is still the pod to use: conn is
// one of the pool's connections and resolving the target again gives the
// same pod (name and UID). If not, the session's first connection is
// marked stale so that the session moves on, with its whole pool. It is
// asked after a refused connection, which a pod being replaced gives once
// its app has stopped: then the connection is retried on the next pod
// instead of failed.
//
// A pod being replaced refuses every connection at once, so the callers
// asking about one pool share one resolve (singleflight), made under
// the session's context: a caller that gives up (its port removed) leaves
// at once without cancelling it for the others. A positive answer stands
// for verifyTTL.
func (s *Session) podStillGood(ctx context.Context, conn *Conn) bool {
	s.mu.Lock()
	first, uid := s.conn, s.uid
	current := first != nil && s.inPoolLocked(conn) != nil
	fresh := s.verified == first && time.Since(s.verifiedAt) < verifyTTL
	s.mu.Unlock()
	if !current || !usable(conn) || !usable(first) {
		return false
	}
	if fresh {
		return true
	}
	key := fmt.Sprintf("%p", first)
	verdict := s.verifies.DoChan(key, func() (any, error) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return true, nil // shutting down: nothing to retry
		}
		s.verifying.Add(1)
		s.mu.Unlock()
		defer s.verifying.Done()
		res, err := s.resolve(s.ctx)
		if s.ctx.Err() != nil {
			return true, nil // shutting down: nothing to retry
		}
		if err != nil || !res.samePod(resolution{pod: first.pod, uid: uid}) {
			first.stale("pod %s/%s is no longer the one to use after refusing a connection", first.namespace, first.pod)
			s.Refresh()
			return false, nil
		}
		s.mu.Lock()
		s.verified, s.verifiedAt = first, time.Now()
		s.mu.Unlock()
		return true, nil
	})
	select {
	case r := <-verdict:
		return r.Val.(bool)
	case <-ctx.Done():
		return true // shutting down: nothing to retry
	}
}

// PodDeleted tells the session that pod (with uid, if known) was deleted:
// if it is the session's pod, its connection takes no new local
// connections (they wait for the next pod) and the target is resolved
// again. The pod watch calls it; a pod that is only terminating may still
// serve, and is left to Refresh.
func (s *Session) PodDeleted(pod, uid string) {
	s.mu.Lock()
	conn := s.conn
	match := conn != nil && conn.pod == pod && (uid == "" || s.uid == "" || uid == s.uid)
	s.mu.Unlock()
	if match {
		conn.stale("pod %s/%s was deleted", conn.namespace, pod)
		return
	}
	s.Refresh()
}

// podGone reacts to a connection failing because the pod is gone: the
// connection takes no new streams, nor, when it is one the pool added,
// does the first (so the whole pool moves on), and the session resolves
// the target again and dials.
func (s *Session) podGone(conn *Conn, err error) {
	conn.stale("the pod is gone: %v", err)
	s.mu.Lock()
	first := s.conn
	pooled := first != nil && first != conn && s.inPoolLocked(conn) != nil
	s.mu.Unlock()
	if pooled {
		first.stale("the pod is gone: %v", err)
	}
}

// SessionStatus is a session's state for a status display.
type SessionStatus struct {
	State State
	Err   error     // why retrying or failed
	Since time.Time // when State was entered
	// RetryAt is when a retrying session tries again by its backoff (a
	// Refresh, a pod event or the API server coming back may be sooner);
	// zero in other states.
	RetryAt time.Time
	Pod     string // the pod connected to, while ready
	UID     string // that pod's UID, if the resolver knew it
	// Transport is what the connection runs over, while ready.
	Transport Transport
	// Conns is how many connections to the pod the session holds, while
	// ready: 1, or more while its pool has grown (see SessionOptions.Pool).
	Conns int
	Dials int // successful dials so far
	Stats Snapshot

	// PodNotReady: the pod connected to is Running but not Ready (as of
	// the last resolve).
	PodNotReady bool
}

// Status returns the session's current status.
func (s *Session) Status() SessionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SessionStatus{State: s.state, Err: s.err, Since: s.since, RetryAt: s.retryAt, Dials: s.dials, Stats: s.Stats.Snapshot()}
	if s.conn != nil {
		st.Pod, st.UID, st.Transport, st.PodNotReady = s.conn.pod, s.uid, s.conn.transport, s.notReady
		st.Conns = len(s.pool)
	}
	return st
}

// Changed returns a channel that is closed at the session's next change of
// state (or of its pod or port numbers); call Status after it fires, and
// Changed again for the change after that.
func (s *Session) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Close closes the session now, as the end of its context does: first its
// listeners, then its forwarded connections, then the connection to the
// pod; it makes Run return. Only a session that never ran needs it: Run
// closes the session when it returns.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.state, s.since = StateClosed, time.Now()
		ports := s.ports
		s.ports = nil
		conn := s.conn
		s.conn, s.podPorts = nil, nil
		s.retirePoolLocked()
		s.broadcastLocked()
		s.mu.Unlock()

		// Listeners first, so nothing new arrives while the rest shuts.
		for _, p := range ports {
			_ = p.l.Close()
		}
		s.cancel()
		// The connection goes before the ports are waited for: its
		// teardown deadline unblocks a forward stuck writing to a peer
		// that stopped reading.
		if conn != nil {
			_ = conn.Close()
		}
		for _, p := range ports {
			p.stop()
		}
		// The connections left draining, and a podStillGood resolve, end
		// with the session's context.
		s.drains.Wait()
		s.verifying.Wait()
	})
	return nil
}

// errIs reports whether err is one of targets.
func errIs(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
