package tunnel

import (
	"net"
	"slices"
	"time"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
)

// The states of a port that is not bound (PortStatus.State); once bound, a
// port has its session's state (forward.State's names).
const (
	// StateStarting: not bound yet.
	StateStarting = "starting"
	// StateRetrying: binding failed (the port is in use, say) and is
	// retried with backoff, or at once on SIGHUP.
	StateRetrying = "retrying"
	// StateFailed: the session could not be created (an unknown context,
	// say); a save or SIGHUP tries again.
	StateFailed = "failed"
)

// PortStatus is one spec's status.
type PortStatus struct {
	Spec config.Spec
	// Pod is the pod the session is connected to, while it is.
	Pod string
	// PodNotReady: Pod is Running but not Ready (a pod target's pod,
	// forwarded to as kubectl does).
	PodNotReady bool
	// Transport is what the session's connection runs over, while
	// connected: websocket or spdy (Spec.Session.Transport is what was
	// asked, auto included).
	Transport string
	// PodConns is how many connections to the pod the session holds,
	// while connected: 1, up to 4 while many local connections are open.
	PodConns int
	// Addrs are the bound addresses, LocalPort their port.
	Addrs     []net.Addr
	LocalPort int
	// State is the session's state once the port is bound (ready,
	// connecting, retrying, failed, closed), else StateStarting,
	// StateRetrying or StateFailed.
	State string
	// Err is why the port or its session failed last; nil if it did not.
	Err error
	// RetryAt is when a port that waits to bind, or its retrying session,
	// tries again by its backoff; zero if neither waits. SIGHUP, a save or
	// a pod event may make it sooner.
	RetryAt time.Time
	Stats   forward.Snapshot
}

// entry is a spec as the status snapshot holds it: immutable, apart from
// the live counters of port and session.
type entry struct {
	spec    config.Spec
	port    *forward.Port
	session *forward.Session
	err     error
	retryAt time.Time // the next bind retry
}

// publish stores a snapshot of the ports for Status; run calls it after
// every change.
func (a *Applier) publish() {
	entries := make([]entry, 0, len(a.ports))
	for _, spec := range a.sortedSpecs() {
		pe := a.ports[spec]
		e := entry{spec: spec, port: pe.port, err: pe.err, retryAt: pe.retryAt}
		if se := a.sessions[spec.Session]; se != nil {
			e.session = se.s
		}
		entries = append(entries, e)
	}
	a.snap.Store(&entries)
}

// Status returns one PortStatus per spec, sorted by tunnel and port. It
// reads the last snapshot and never waits for the applier.
func (a *Applier) Status() []PortStatus {
	entries := *a.snap.Load()
	out := make([]PortStatus, 0, len(entries))
	for _, e := range entries {
		ps := PortStatus{Spec: e.spec, State: StateStarting, Err: e.err}
		switch {
		case e.port != nil:
			st := e.port.Status()
			ps.Addrs = slices.Clone(st.Addrs)
			ps.LocalPort = st.Local
			ps.State = st.State.String()
			ps.Stats = st.Stats
			switch {
			case st.Err != nil:
				ps.Err = st.Err
			case st.LastErr != nil:
				ps.Err = st.LastErr
			}
			if e.session != nil {
				sst := e.session.Status()
				ps.Pod, ps.RetryAt, ps.PodNotReady, ps.Transport = sst.Pod, sst.RetryAt, sst.PodNotReady, string(sst.Transport)
				ps.PodConns = sst.Conns
			}
		case !e.retryAt.IsZero():
			ps.State, ps.RetryAt = StateRetrying, e.retryAt
		case e.err != nil:
			ps.State = StateFailed
		}
		out = append(out, ps)
	}
	return out
}
