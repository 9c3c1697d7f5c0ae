package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/kube"
	"github.com/tunnels-dev/tunnels/reconcile"
)

// manager applies reconcile plans to running forwards: one forward.Session
// per config.Session (context, namespace, target), shared by every port
// that forwards to it, and one forward.Port per config.Spec. The reconcile
// loop calls Apply from one goroutine; mu guards the maps for the status
// readers.
type manager struct {
	log     *slog.Logger
	kc      *kube.Kubeconfig
	getenv  func(string) string
	state   *reconcile.State // chosen random ports; nil disables remembering
	ctx     context.Context  // sessions and bind retries run under it
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	backoff forward.Backoff

	mu       sync.Mutex
	clients  map[string]*kube.Client
	sessions map[config.Session]*sessionEntry
	ports    map[config.Spec]*portEntry
}

// sessionEntry is a running session and how many specs use it.
type sessionEntry struct {
	s      *forward.Session
	cancel context.CancelFunc
	done   chan struct{}
	refs   int
	err    error // the session could not be created (unknown context, say)
}

// portEntry is one spec: bound and served by its session, or waiting to
// bind again after a failure (a port in use, say).
type portEntry struct {
	spec  config.Spec
	port  *forward.Port // nil while not bound
	err   error         // why binding failed
	retry context.CancelFunc
	done  chan struct{} // closed when the bind retry ends
	now   chan struct{} // a send makes the retry try at once
}

type managerOptions struct {
	Logger     *slog.Logger
	Kubeconfig *kube.Kubeconfig
	Getenv     func(string) string
	State      *reconcile.State
	Backoff    forward.Backoff
}

func newManager(o managerOptions) *manager {
	ctx, cancel := context.WithCancel(context.Background())
	return &manager{
		log: o.Logger, kc: o.Kubeconfig, getenv: o.Getenv, state: o.State, backoff: o.Backoff,
		ctx: ctx, cancel: cancel,
		clients:  map[string]*kube.Client{},
		sessions: map[config.Session]*sessionEntry{},
		ports:    map[config.Spec]*portEntry{},
	}
}

// Apply stops what the plan stops (first, to free ports), then starts what
// it starts. A spec that fails to start is recorded and retried; it never
// affects the others, so Apply itself does not fail.
func (m *manager) Apply(_ context.Context, p reconcile.Plan) error {
	for _, spec := range p.Stop {
		m.stop(spec)
	}
	for _, spec := range p.Start {
		m.start(spec)
	}
	if p.Retry {
		m.retryAll()
	}
	if m.state != nil {
		m.state.Prune(p.Desired())
		if err := m.state.Save(); err != nil {
			m.log.Warn("cannot remember chosen local ports", "err", err)
		}
	}
	return nil
}

func (m *manager) stop(spec config.Spec) {
	m.mu.Lock()
	pe := m.ports[spec]
	delete(m.ports, spec)
	se := m.sessions[spec.Session]
	m.mu.Unlock()
	if pe == nil {
		return
	}
	if pe.retry != nil {
		pe.retry()
		<-pe.done
	}
	m.mu.Lock()
	port := pe.port
	m.mu.Unlock()
	if port != nil && se != nil && se.s != nil {
		se.s.RemovePort(port)
	}
	if se == nil {
		return
	}
	m.mu.Lock()
	se.refs--
	last := se.refs == 0
	if last {
		delete(m.sessions, spec.Session)
	}
	m.mu.Unlock()
	if last && se.s != nil {
		_ = se.s.Close()
		se.cancel()
		<-se.done
	}
}

func (m *manager) start(spec config.Spec) {
	pe := &portEntry{spec: spec}
	m.mu.Lock()
	m.ports[spec] = pe
	se := m.sessions[spec.Session]
	if se == nil {
		se = m.newSession(spec)
		m.sessions[spec.Session] = se
	}
	se.refs++
	m.mu.Unlock()
	if se.err != nil {
		m.mu.Lock()
		pe.err = se.err
		m.mu.Unlock()
		m.log.Error("cannot start tunnel", "tunnel", spec.Tunnel, "context", spec.Session.Context, "err", se.err)
		return
	}
	if err := m.bind(se, pe); err != nil {
		m.log.Warn("cannot listen; retrying", "tunnel", spec.Tunnel, "local", localString(spec), "err", err)
		m.startRetry(se, pe)
	}
}

// bind listens for pe and adds the port to its session.
func (m *manager) bind(se *sessionEntry, pe *portEntry) error {
	spec := pe.spec
	port := spec.LocalPort
	remembered := false
	if port == 0 && m.state != nil {
		port, remembered = m.state.Get(spec)
	}
	l, err := forward.Listen(spec.Addresses(), port)
	if err != nil && remembered {
		// The remembered port is taken now: pick a new one.
		l, err = forward.Listen(spec.Addresses(), 0)
	}
	if err != nil {
		m.mu.Lock()
		pe.err = fmt.Errorf("tunnel %q: listen: %w", spec.Tunnel, err)
		m.mu.Unlock()
		return err
	}
	p, err := se.s.AddPort(l, spec.Remote)
	if err != nil {
		m.mu.Lock()
		pe.err = fmt.Errorf("tunnel %q: %w", spec.Tunnel, err)
		m.mu.Unlock()
		return err
	}
	if spec.LocalPort == 0 && m.state != nil {
		m.state.Set(spec, l.Port())
	}
	m.mu.Lock()
	pe.port, pe.err = p, nil
	m.mu.Unlock()
	return nil
}

// startRetry binds pe again with backoff until it binds or is stopped.
func (m *manager) startRetry(se *sessionEntry, pe *portEntry) {
	ctx, cancel := context.WithCancel(m.ctx)
	pe.retry, pe.done, pe.now = cancel, make(chan struct{}), make(chan struct{}, 1)
	m.wg.Add(1)
	go m.retryBind(ctx, se, pe)
}

func (m *manager) retryBind(ctx context.Context, se *sessionEntry, pe *portEntry) {
	defer m.wg.Done()
	defer close(pe.done)
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(m.backoff.Delay(attempt, rand.Float64()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-pe.now:
			t.Stop()
		case <-t.C:
		}
		if err := m.bind(se, pe); err == nil {
			m.log.Info("listening after retry", "tunnel", pe.spec.Tunnel, "local", localString(pe.spec))
			return
		}
	}
}

// retryAll makes every waiting bind retry and every session resolve again
// now (SIGHUP).
func (m *manager) retryAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, pe := range m.ports {
		if pe.now != nil && pe.port == nil {
			select {
			case pe.now <- struct{}{}:
			default:
			}
		}
	}
	for _, se := range m.sessions {
		if se.s != nil {
			se.s.Refresh()
		}
	}
}

// newSession creates and runs the session for spec's target; m.mu is held.
func (m *manager) newSession(spec config.Spec) *sessionEntry {
	key := spec.Session
	client, err := m.client(key.Context)
	if err != nil {
		return &sessionEntry{err: err}
	}
	log := m.log.With("context", key.Context)
	s := forward.NewSession(forward.SessionOptions{
		Upgrader:  upgrader{client},
		Namespace: key.Namespace,
		Resolve:   resolver(client, key),
		Tunnel:    spec.Tunnel,
		Target:    key.Target.String(),
		Logger:    log,
		Backoff:   m.backoff,
	})
	ctx, cancel := context.WithCancel(m.ctx)
	se := &sessionEntry{s: s, cancel: cancel, done: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(se.done)
		_ = s.Run(ctx)
	}()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		watchPods(ctx, client, key.Namespace, s, log.With("tunnel", spec.Tunnel, "target", key.Target.String()))
	}()
	return se
}

// client returns the API client for a kube context, creating it once.
func (m *manager) client(name string) (*kube.Client, error) {
	if c, ok := m.clients[name]; ok {
		return c, nil
	}
	rc, err := m.kc.RestConfig(name)
	if err != nil {
		return nil, err
	}
	c, err := kube.NewClient(rc, kube.ClientOptions{Logger: m.log, Getenv: m.getenv})
	if err != nil {
		return nil, fmt.Errorf("context %q: %w", name, err)
	}
	m.clients[name] = c
	return c, nil
}

// Close stops accepting, gives open connections up to drain to finish, then
// closes every session.
func (m *manager) Close(drain time.Duration) {
	m.mu.Lock()
	var ports []*forward.Port
	for _, pe := range m.ports {
		if pe.retry != nil {
			pe.retry()
		}
		if pe.port != nil {
			ports = append(ports, pe.port)
		}
	}
	sessions := make([]*sessionEntry, 0, len(m.sessions))
	for _, se := range m.sessions {
		sessions = append(sessions, se)
	}
	m.mu.Unlock()
	for _, p := range ports {
		_ = p.Listener().Close()
	}
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) && slices.ContainsFunc(ports, func(p *forward.Port) bool { return p.Stats.Active.Load() > 0 }) {
		time.Sleep(20 * time.Millisecond) // polling the counters with a deadline
	}
	for _, se := range sessions {
		if se.s != nil {
			_ = se.s.Close()
			se.cancel()
		}
	}
	m.cancel()
	m.wg.Wait()
	if m.state != nil {
		_ = m.state.Save()
	}
}

// report returns one row per spec, sorted by tunnel and port.
func (m *manager) report() []portRow {
	m.mu.Lock()
	entries := make([]*portEntry, 0, len(m.ports))
	for _, pe := range m.ports {
		entries = append(entries, pe)
	}
	sessions := map[config.Session]*sessionEntry{}
	for k, v := range m.sessions {
		sessions[k] = v
	}
	type snap struct {
		spec config.Spec
		port *forward.Port
		err  error
	}
	snaps := make([]snap, len(entries))
	for i, pe := range entries {
		snaps[i] = snap{pe.spec, pe.port, pe.err}
	}
	m.mu.Unlock()
	slices.SortFunc(snaps, func(a, b snap) int { return compareSpecs(a.spec, b.spec) })
	rows := make([]portRow, 0, len(snaps))
	for _, sn := range snaps {
		row := portRow{
			Tunnel: sn.spec.Tunnel, Context: sn.spec.Session.Context, Namespace: sn.spec.Session.Namespace,
			Target: sn.spec.Session.Target.String(), Remote: sn.spec.Remote.String(), State: "failed",
		}
		if sn.err != nil {
			row.LastError = sn.err.Error()
		}
		if sn.port != nil {
			st := sn.port.Status()
			for _, a := range st.Addrs {
				row.Local = append(row.Local, a.String())
			}
			row.LocalPort = st.Local
			row.State = st.State.String()
			row.Active, row.Total = st.Stats.Active, st.Stats.Total
			row.BytesIn, row.BytesOut = st.Stats.BytesIn, st.Stats.BytesOut
			switch {
			case st.Err != nil:
				row.LastError = st.Err.Error()
			case st.LastErr != nil:
				row.LastError = st.LastErr.Error()
			}
			if se := sessions[sn.spec.Session]; se != nil && se.s != nil {
				row.Pod = se.s.Status().Pod
			}
		} else if sn.err != nil {
			row.State = "retrying"
		}
		rows = append(rows, row)
	}
	return rows
}

func compareSpecs(a, b config.Spec) int {
	if a.Tunnel != b.Tunnel {
		if a.Tunnel < b.Tunnel {
			return -1
		}
		return 1
	}
	if a.LocalPort != b.LocalPort {
		return a.LocalPort - b.LocalPort
	}
	if a.Remote.String() < b.Remote.String() {
		return -1
	}
	if a.Remote.String() > b.Remote.String() {
		return 1
	}
	return 0
}

func localString(s config.Spec) string { return fmt.Sprintf("%s:%d", s.Address, s.LocalPort) }
