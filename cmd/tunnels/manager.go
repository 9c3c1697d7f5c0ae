package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"syscall"
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

// sessionEntry is a session and how many specs use it. s is nil while the
// session could not be created (err says why: an unknown context, say);
// the next spec that needs it and SIGHUP try again.
type sessionEntry struct {
	s      *forward.Session
	cancel context.CancelFunc
	done   chan struct{} // closed when Run and the pod watch have returned
	refs   int
	err    error
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
	// Only now close sessions no spec uses: a session whose every port
	// changed in this plan keeps its connection to the pod.
	m.closeUnused()
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
	if se != nil {
		se.refs--
	}
	m.mu.Unlock()
	if port != nil && se != nil && se.s != nil {
		se.s.RemovePort(port)
	}
}

// closeUnused closes the sessions that no spec uses any more.
func (m *manager) closeUnused() {
	m.mu.Lock()
	var unused []*sessionEntry
	for key, se := range m.sessions {
		if se.refs == 0 {
			unused = append(unused, se)
			delete(m.sessions, key)
		}
	}
	m.mu.Unlock()
	for _, se := range unused {
		se.close()
	}
}

// close stops the session and waits for its goroutines.
func (se *sessionEntry) close() {
	if se.s == nil {
		return
	}
	_ = se.s.Close()
	se.cancel()
	<-se.done
}

func (m *manager) start(spec config.Spec) {
	pe := &portEntry{spec: spec}
	m.mu.Lock()
	m.ports[spec] = pe
	se := m.sessions[spec.Session]
	if se == nil {
		se = &sessionEntry{}
		m.sessions[spec.Session] = se
	}
	se.refs++
	m.mu.Unlock()
	if se.s == nil && !m.connectSession(se, spec) {
		return
	}
	if err := m.bind(se, pe); err != nil {
		m.log.Warn("cannot listen; retrying", "tunnel", spec.Tunnel, "local", localString(spec), "err", err)
		m.startRetry(se, pe)
	}
}

// connectSession creates and runs the session of se, for spec's target. If
// it cannot (an unknown context, unreadable credentials), it records why on
// se and on every port of the session, and returns false.
func (m *manager) connectSession(se *sessionEntry, spec config.Spec) bool {
	key := spec.Session
	client, err := m.client(key.Context)
	if err != nil {
		m.mu.Lock()
		se.err = err
		for _, pe := range m.ports {
			if pe.spec.Session == key {
				pe.err = err
			}
		}
		m.mu.Unlock()
		m.log.Error("cannot start tunnel", "tunnel", spec.Tunnel, "context", key.Context, "err", err)
		return false
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
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = s.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		w := &podWatch{client: client, namespace: key.Namespace, s: s, log: log.With("tunnel", spec.Tunnel, "target", key.Target.String())}
		w.run(ctx)
	}()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		wg.Wait()
		close(done)
	}()
	m.mu.Lock()
	se.s, se.cancel, se.done, se.err = s, cancel, done, nil
	m.mu.Unlock()
	return true
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
	if err == nil {
		err = halfBound(spec, l)
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

// halfBound fails a localhost listener that got ::1 only because another
// server on this machine holds 127.0.0.1 on the port (a local Postgres on
// 5432, say): kubectl accepts that, and clients that connect to 127.0.0.1
// then reach the other server. The tunnel fails instead, and is retried
// like any port in use. It closes l when it fails it.
func halfBound(spec config.Spec, l *forward.Listener) error {
	if !slices.Contains(spec.Addresses(), "localhost") {
		return nil
	}
	for _, a := range l.Addrs() {
		if ta, ok := a.(*net.TCPAddr); ok && ta.IP.To4() != nil {
			return nil
		}
	}
	probe, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Port())))
	if err == nil {
		probe.Close()
		return nil // 127.0.0.1 is free now; IPv4 was unavailable, not taken
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil
	}
	_ = l.Close()
	return fmt.Errorf("127.0.0.1:%d is in use by another program, so localhost would reach it rather than the tunnel: %w", l.Port(), err)
}

// startRetry binds pe again with backoff until it binds or is stopped.
func (m *manager) startRetry(se *sessionEntry, pe *portEntry) {
	ctx, cancel := context.WithCancel(m.ctx)
	m.mu.Lock()
	pe.retry, pe.done, pe.now = cancel, make(chan struct{}), make(chan struct{}, 1)
	m.mu.Unlock()
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

// retryAll (SIGHUP) tries again now what failed: sessions that could not
// be created, binds that wait for their port, and sessions that are not
// connected. Connected sessions are left alone: re-resolving them could move
// their open connections to another pod.
func (m *manager) retryAll() {
	m.mu.Lock()
	uncreated := map[*sessionEntry]config.Spec{}
	for _, pe := range m.ports {
		if se := m.sessions[pe.spec.Session]; se != nil && se.s == nil {
			uncreated[se] = pe.spec
		}
	}
	m.mu.Unlock()
	for se, spec := range uncreated {
		if !m.connectSession(se, spec) {
			continue
		}
		m.mu.Lock()
		var waiting []*portEntry
		for _, pe := range m.ports {
			if pe.spec.Session == spec.Session && pe.port == nil && pe.retry == nil {
				waiting = append(waiting, pe)
			}
		}
		m.mu.Unlock()
		for _, pe := range waiting {
			if err := m.bind(se, pe); err != nil {
				m.startRetry(se, pe)
			}
		}
	}
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
		if se.s != nil && se.s.Status().State != forward.StateReady {
			se.s.Refresh()
		}
	}
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
	// Stop the bind retries first, so that none binds behind our back.
	m.mu.Lock()
	var retries []*portEntry
	for _, pe := range m.ports {
		if pe.retry != nil {
			retries = append(retries, pe)
		}
	}
	m.mu.Unlock()
	for _, pe := range retries {
		pe.retry()
		<-pe.done
	}
	m.mu.Lock()
	var ports []*forward.Port
	for _, pe := range m.ports {
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
	for _, c := range m.clients {
		c.Close()
	}
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
		spec     config.Spec
		port     *forward.Port
		err      error
		retrying bool // a bind retry runs
	}
	snaps := make([]snap, len(entries))
	for i, pe := range entries {
		snaps[i] = snap{pe.spec, pe.port, pe.err, pe.retry != nil}
	}
	m.mu.Unlock()
	slices.SortFunc(snaps, func(a, b snap) int { return a.spec.Compare(b.spec) })
	rows := make([]portRow, 0, len(snaps))
	for _, sn := range snaps {
		row := portRow{
			Tunnel: sn.spec.Tunnel, Context: sn.spec.Session.Context, Namespace: sn.spec.Session.Namespace,
			Target: sn.spec.Session.Target.String(), Remote: sn.spec.Remote.String(), State: "starting",
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
			// Binding is retried with backoff; a session that could not be
			// created waits for SIGHUP or an edit.
			row.State = "failed"
			if sn.retrying {
				row.State = "retrying"
			}
		}
		rows = append(rows, row)
	}
	return rows
}

func localString(s config.Spec) string { return fmt.Sprintf("%s:%d", s.Address, s.LocalPort) }
