package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/kube"
	"github.com/tunnels-dev/tunnels/reconcile"
)

// ErrClosed is returned by Apply after the applier has stopped.
var ErrClosed = errors.New("applier closed")

// Options configures an Applier. Clients is required; every other zero
// value is a documented default.
type Options struct {
	// Logger receives state changes. Default: discard.
	Logger *slog.Logger
	// Clients gives the client of each kube context; each is made once,
	// when a tunnel first needs it, and closed by Close.
	Clients Clients
	// Memory remembers the local ports chosen for ":REMOTE" specs. Nil:
	// they are not remembered.
	Memory *PortMemory
	// Backoff spaces bind retries and session redials. Default: see
	// forward.Backoff.
	Backoff forward.Backoff
	// ConnectWait is forward.SessionOptions.ConnectWait. Default 30s.
	ConnectWait time.Duration
}

// Applier applies reconcile plans to running forwards: one forward.Session
// per config.Session (context, namespace, target), shared by every port
// that forwards to it, one forward.Port per config.Spec, and one pod watch
// per (context, namespace) shared by the sessions there. It implements
// reconcile.Applier. See the package doc for who owns what.
type Applier struct {
	opts Options
	log  *slog.Logger

	reqs chan request  // to run
	done chan struct{} // closed when run returns
	snap atomic.Pointer[[]entry]

	// Owned by run.
	clients  map[string]Client
	sessions map[config.Session]*sessionEntry
	ports    map[config.Spec]*portEntry
	watches  map[watchKey]*podWatch
	timer    *time.Timer    // the next bind retry
	running  sync.WaitGroup // the sessions' Run goroutines
}

// request is a message to run: a plan to apply, or Close.
type request struct {
	plan  reconcile.Plan
	close bool
	drain time.Duration
	done  chan struct{}
}

// watchKey names a shared pod watch.
type watchKey struct{ context, namespace string }

// sessionEntry is a session and how many specs use it. s is nil while the
// session could not be created (err says why: an unknown context, say);
// SIGHUP and the next plan that starts one of its specs try again.
type sessionEntry struct {
	key    config.Session
	s      *forward.Session
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	watch  *podWatch
	refs   int
	err    error
}

// portEntry is one spec: bound and served by its session, or waiting to
// bind again after a failure (a port in use, say).
type portEntry struct {
	spec    config.Spec
	port    *forward.Port // nil while not bound
	err     error         // why binding failed, or why the session could not be created
	attempt int           // failed binds in a row
	retryAt time.Time     // the next bind retry; zero if none is scheduled
}

// Start returns an applier running until ctx ends or Close is called.
func Start(ctx context.Context, opts Options) *Applier {
	if opts.Logger == nil {
		opts.Logger = discard
	}
	a := &Applier{
		opts: opts, log: opts.Logger,
		reqs: make(chan request), done: make(chan struct{}),
		clients:  map[string]Client{},
		sessions: map[config.Session]*sessionEntry{},
		ports:    map[config.Spec]*portEntry{},
		watches:  map[watchKey]*podWatch{},
		timer:    time.NewTimer(time.Hour),
	}
	a.timer.Stop()
	a.publish()
	go a.run(ctx)
	return a
}

// Apply stops what the plan stops (first, to free ports), then starts
// what it starts, and returns once the listeners are bound or scheduled for
// a retry. A spec that fails to start is recorded and retried; it never
// affects the others, so Apply fails only once the applier has stopped.
func (a *Applier) Apply(ctx context.Context, p reconcile.Plan) error {
	return a.send(ctx, request{plan: p})
}

// Close stops accepting, gives open connections up to drain to finish,
// then closes every session and waits for them.
func (a *Applier) Close(drain time.Duration) {
	_ = a.send(context.Background(), request{close: true, drain: drain})
	<-a.done
}

func (a *Applier) send(ctx context.Context, r request) error {
	r.done = make(chan struct{})
	select {
	case a.reqs <- r:
	case <-a.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.done:
		return nil
	case <-a.done:
		return ErrClosed
	}
}

// run owns the applier's state: it applies plans, retries binds when
// they fall due, and publishes a status snapshot after each.
func (a *Applier) run(ctx context.Context) {
	defer close(a.done)
	defer a.timer.Stop()
	for {
		select {
		case <-ctx.Done():
			a.shutdown(0)
			return
		case r := <-a.reqs:
			if r.close {
				a.shutdown(r.drain)
				close(r.done)
				return
			}
			a.apply(ctx, r.plan)
			a.publish()
			close(r.done)
		case <-a.timer.C:
			a.retryBinds(false)
			a.publish()
		}
	}
}

func (a *Applier) apply(ctx context.Context, p reconcile.Plan) {
	for _, spec := range p.Stop {
		a.stop(spec)
	}
	for _, spec := range p.Start {
		a.start(ctx, spec)
	}
	if p.Retry {
		a.retryAll(ctx)
	}
	// A change may be what a failed session waited for (a Role granted
	// with the save, say): let it try again.
	if p.Retry || p.Changed() {
		for _, se := range a.sessions {
			if se.s != nil && se.s.Status().State == forward.StateFailed {
				se.s.Refresh()
			}
		}
	}
	// Only now close sessions no spec uses: a session whose every port
	// changed in this plan keeps its connection to the pod.
	a.closeUnused()
	if m := a.opts.Memory; m != nil {
		m.Prune(p.Desired())
		if err := m.Save(); err != nil {
			a.log.Warn("cannot remember chosen local ports", "err", err)
		}
	}
}

func (a *Applier) stop(spec config.Spec) {
	pe := a.ports[spec]
	if pe == nil {
		return
	}
	delete(a.ports, spec)
	se := a.sessions[spec.Session]
	if se == nil {
		return
	}
	se.refs--
	if pe.port != nil && se.s != nil {
		se.s.RemovePort(pe.port)
	}
}

func (a *Applier) start(ctx context.Context, spec config.Spec) {
	pe := &portEntry{spec: spec}
	a.ports[spec] = pe
	se := a.sessions[spec.Session]
	if se == nil {
		se = &sessionEntry{key: spec.Session}
		a.sessions[spec.Session] = se
		a.connect(ctx, se, spec.Tunnel)
	}
	se.refs++
	if se.s == nil {
		pe.err = se.err
		return
	}
	a.bindOrSchedule(se, pe)
}

// connect creates and runs the session of se, subscribed to the pod watch
// of its context and namespace. If it cannot (an unknown context,
// unreadable credentials), it records why on se.
func (a *Applier) connect(ctx context.Context, se *sessionEntry, tunnel string) {
	key := se.key
	client, err := a.client(key.Context)
	if err != nil {
		se.err = err
		a.log.Error("cannot start tunnel", "tunnel", tunnel, "context", key.Context, "err", err)
		return
	}
	log := a.log.With("context", key.Context)
	// tunnel names the session's own lines (connected, lost, moved): the
	// tunnel that first needed it. Each port names its own (bind).
	sctx, cancel := context.WithCancel(ctx)
	s := NewSession(sctx, client, key, SessionOptions{
		Tunnel: tunnel, Logger: log, Backoff: a.opts.Backoff, ConnectWait: a.opts.ConnectWait,
	})
	done := make(chan struct{})
	a.running.Add(1)
	go func() {
		defer a.running.Done()
		defer close(done)
		_ = s.Run()
	}()
	wk := watchKey{key.Context, key.Namespace}
	w := a.watches[wk]
	if w == nil {
		w = newPodWatch(client, key.Namespace, log)
		w.start(ctx)
		a.watches[wk] = w
	}
	w.add(s, key.Target, log.With("tunnel", tunnel, "target", key.Target.String()))
	se.s, se.cancel, se.done, se.watch, se.err = s, cancel, done, w, nil
}

// Permanent reports the errors that retrying cannot cure: the session then
// shows failed and waits for a save, SIGHUP or a pod event instead of
// backing off forever. Forbidden is one (only a change of RBAC cures it),
// and a namespace that does not exist another (someone must create it; the
// pod watch sees its first Ready pod).
func Permanent(err error) bool {
	return errors.Is(err, kube.ErrForbidden) || errors.Is(err, kube.ErrNamespaceNotFound)
}

// bindOrSchedule binds pe now, or schedules its first retry.
func (a *Applier) bindOrSchedule(se *sessionEntry, pe *portEntry) {
	if err := a.bind(se, pe); err != nil {
		a.log.Warn("cannot listen; retrying", "tunnel", pe.spec.Tunnel, "local", localString(pe.spec), "err", err)
		a.schedule(pe)
	}
}

// bind listens for pe and adds the port to its session.
func (a *Applier) bind(se *sessionEntry, pe *portEntry) error {
	spec := pe.spec
	port := spec.LocalPort
	remembered := false
	if port == 0 && a.opts.Memory != nil {
		port, remembered = a.opts.Memory.Get(spec)
	}
	l, err := forward.Listen(spec.Addresses(), port)
	if err != nil && remembered {
		// The remembered port is taken now: pick a new one.
		l, err = forward.Listen(spec.Addresses(), 0)
	}
	if err == nil {
		err = halfBound(spec, l)
	}
	if err != nil {
		pe.err = fmt.Errorf("tunnel %q: listen: %w", spec.Tunnel, err)
		return err
	}
	p, err := se.s.AddPort(l, forward.RemotePort(spec.Remote), forward.PortOptions{Tunnel: spec.Tunnel})
	if err != nil {
		pe.err = fmt.Errorf("tunnel %q: %w", spec.Tunnel, err)
		return err
	}
	if spec.LocalPort == 0 && a.opts.Memory != nil {
		a.opts.Memory.Set(spec, l.Port())
	}
	pe.port, pe.err, pe.attempt, pe.retryAt = p, nil, 0, time.Time{}
	return nil
}

// schedule sets pe's next bind retry with backoff.
func (a *Applier) schedule(pe *portEntry) {
	pe.attempt++
	pe.retryAt = time.Now().Add(a.opts.Backoff.Delay(pe.attempt, rand.Float64()))
	a.arm()
}

// arm sets the timer to the earliest scheduled bind retry.
func (a *Applier) arm() {
	var next time.Time
	for _, pe := range a.ports {
		if !pe.retryAt.IsZero() && (next.IsZero() || pe.retryAt.Before(next)) {
			next = pe.retryAt
		}
	}
	a.timer.Stop()
	if !next.IsZero() {
		a.timer.Reset(time.Until(next))
	}
}

// retryBinds binds the ports whose retry is due (all with a scheduled
// retry if now is set).
func (a *Applier) retryBinds(now bool) {
	t := time.Now()
	for _, spec := range a.sortedSpecs() {
		pe := a.ports[spec]
		if pe.retryAt.IsZero() || (!now && t.Before(pe.retryAt)) {
			continue
		}
		se := a.sessions[spec.Session]
		if err := a.bind(se, pe); err != nil {
			pe.attempt++
			pe.retryAt = t.Add(a.opts.Backoff.Delay(pe.attempt, rand.Float64()))
			continue
		}
		a.log.Info("listening after retry", "tunnel", spec.Tunnel, "local", localString(spec))
	}
	a.arm()
}

// retryAll (SIGHUP) tries again now what failed: sessions that could not
// be created, binds that wait for their port, and sessions that are not
// connected. Connected sessions are left alone: re-resolving them could
// move their open connections to another pod.
func (a *Applier) retryAll(ctx context.Context) {
	for _, spec := range a.sortedSpecs() {
		pe := a.ports[spec]
		se := a.sessions[spec.Session]
		if se.s == nil && se.err != nil {
			a.connect(ctx, se, spec.Tunnel)
		}
		if se.s == nil {
			pe.err = se.err
			continue
		}
		if pe.port == nil && pe.retryAt.IsZero() {
			a.bindOrSchedule(se, pe)
		}
	}
	a.retryBinds(true)
	for _, se := range a.sessions {
		if se.s != nil && se.s.Status().State != forward.StateReady {
			se.s.Refresh()
		}
	}
}

// closeUnused closes the sessions that no spec uses any more, all at
// once: a save that removes many tunnels waits for the slowest session to
// close, not for the sum of them.
func (a *Applier) closeUnused() {
	var closing []*sessionEntry
	for key, se := range a.sessions {
		if se.refs == 0 {
			delete(a.sessions, key)
			if a.release(se) {
				closing = append(closing, se)
			}
		}
	}
	for _, se := range closing {
		<-se.done
	}
}

// release unsubscribes se's session from its pod watch, stopping the watch
// if no other session uses it, and tells the session to close: its Run
// closes it as it returns and then closes se.done. It reports whether
// there was a session to wait for.
func (a *Applier) release(se *sessionEntry) bool {
	if se.s == nil {
		return false
	}
	if se.watch.remove(se.s) == 0 {
		se.watch.stop()
		delete(a.watches, watchKey{se.key.Context, se.key.Namespace})
	}
	se.cancel()
	return true
}

// client returns the client of a kube context, creating it once.
func (a *Applier) client(name string) (Client, error) {
	if c, ok := a.clients[name]; ok {
		return c, nil
	}
	c, err := a.opts.Clients(name)
	if err != nil {
		return nil, err
	}
	a.clients[name] = c
	return c, nil
}

// shutdown closes the listeners, lets open connections run for up to
// drain, then closes every session, watch and client.
func (a *Applier) shutdown(drain time.Duration) {
	var ports []*forward.Port
	for _, pe := range a.ports {
		pe.retryAt = time.Time{}
		if pe.port != nil {
			ports = append(ports, pe.port)
		}
	}
	for _, p := range ports {
		_ = p.Listener().Close()
	}
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) && slices.ContainsFunc(ports, func(p *forward.Port) bool { return p.Stats.Active.Load() > 0 }) {
		time.Sleep(20 * time.Millisecond) // polling the counters with a deadline
	}
	// Every session closes at once, as in closeUnused; the last session
	// of a watch stops it.
	for _, se := range a.sessions {
		a.release(se)
	}
	clear(a.sessions)
	a.running.Wait()
	for _, c := range a.clients {
		c.Close()
	}
	clear(a.ports)
	if m := a.opts.Memory; m != nil {
		_ = m.Save()
	}
	a.publish()
}

func (a *Applier) sortedSpecs() []config.Spec {
	specs := make([]config.Spec, 0, len(a.ports))
	for spec := range a.ports {
		specs = append(specs, spec)
	}
	slices.SortFunc(specs, config.Spec.Compare)
	return specs
}

func localString(s config.Spec) string { return fmt.Sprintf("%s:%d", s.Address, s.LocalPort) }
