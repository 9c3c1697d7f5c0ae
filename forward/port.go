package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// RemotePort is a port inside the pod: a number, or a name that the
// session's ResolveFunc maps to a number. Exactly one of Number and Name is
// set. (It mirrors config.RemotePort, converting to and from it, so that
// this package needs nothing of the file format.)
type RemotePort struct {
	Number int
	Name   string
}

// String returns the port as written in a port spec.
func (p RemotePort) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(p.Number)
}

// Port is one listener of a session, forwarding to one remote port.
type Port struct {
	// Stats counts this port's local connections.
	Stats Counters

	s      *Session
	l      *Listener
	remote RemotePort
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and the handlers
	once   sync.Once

	mu      sync.Mutex
	lastErr error // the last connection failure
}

// PortOptions configures a port of a session. The zero value gives the
// documented defaults.
type PortOptions struct {
	// Tunnel is the value of the tunnel key in the port's logs, which a
	// session shared by several tunnels (every port to one pod) needs to
	// tell its ports apart. Default: the session's Tunnel.
	Tunnel string
}

// AddPort starts serving l, forwarding its connections to remote on the
// session's pod, over the session's connection. The session owns l from
// then on and closes it in RemovePort or Close. A remote port the last
// resolve did not cover makes the session resolve again.
func (s *Session) AddPort(l *Listener, remote RemotePort, opts PortOptions) (*Port, error) {
	if opts.Tunnel == "" {
		opts.Tunnel = s.opts.Tunnel
	}
	p := &Port{s: s, l: l, remote: remote, log: s.opts.Logger.With("tunnel", opts.Tunnel, "target", s.opts.Target)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = l.Close()
		return nil, fmt.Errorf("add port %s: session: %w", remote, ErrClosed)
	}
	p.ctx, p.cancel = context.WithCancel(s.ctx)
	s.ports = append(s.ports, p)
	if s.conn != nil {
		if _, ok := s.podPorts[remote]; !ok {
			s.requestRefreshLocked()
		}
	}
	p.wg.Add(1)
	go p.serve(p.ctx)
	s.mu.Unlock()
	p.log.Info("listening", "local", addrList(l.Addrs()), "remote", remote.String())
	return p, nil
}

// RemovePort stops p: its listener closes and its connections end; the
// session's other ports and its connection to the pod carry on.
func (s *Session) RemovePort(p *Port) {
	s.mu.Lock()
	s.ports = slices.DeleteFunc(s.ports, func(q *Port) bool { return q == p })
	s.mu.Unlock()
	_ = p.l.Close()
	p.stop()
	p.log.Info("stopped listening", "local", addrList(p.l.Addrs()), "remote", p.remote.String())
}

// stop ends the port's connections and waits for its goroutines; the
// listener must be closed already.
func (p *Port) stop() {
	p.once.Do(func() {
		p.cancel()
		p.wg.Wait()
	})
}

func addrList(addrs []net.Addr) string {
	s := ""
	for i, a := range addrs {
		if i > 0 {
			s += ","
		}
		s += a.String()
	}
	return s
}

// Listener returns the port's listener.
func (p *Port) Listener() *Listener { return p.l }

// Remote returns the remote port as given to AddPort.
func (p *Port) Remote() RemotePort { return p.remote }

// PortStatus is one port's state for a status display.
type PortStatus struct {
	Addrs   []net.Addr // the local addresses listened on
	Local   int        // the local port
	Remote  RemotePort // as given to AddPort
	PodPort int        // Remote's number on the pod, while ready
	State   State      // the session's state
	Err     error      // why the session is retrying or failed
	LastErr error      // the last failure of one of this port's connections
	Stats   Snapshot
}

// Status returns the port's current status.
func (p *Port) Status() PortStatus {
	st := PortStatus{Addrs: p.l.Addrs(), Local: p.l.Port(), Remote: p.remote, Stats: p.Stats.Snapshot()}
	p.s.mu.Lock()
	st.State, st.Err = p.s.state, p.s.err
	if p.s.conn != nil {
		st.PodPort = p.s.podPorts[p.remote]
	}
	p.s.mu.Unlock()
	p.mu.Lock()
	st.LastErr = p.lastErr
	p.mu.Unlock()
	return st
}

// serve accepts local connections until the listener closes.
func (p *Port) serve(ctx context.Context) {
	defer p.wg.Done()
	for {
		local, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.handle(ctx, local)
	}
}

// handle forwards one local connection over the session's current
// connection, waiting for one if the session is reconnecting. A connection
// that never reached the pod (the pod was gone, the link dead, the stream
// unanswered) is not failed: it waits for the session's next connection and
// is tried again there, with what it had sent, until ConnectWait has passed
// since it was accepted.
func (p *Port) handle(ctx context.Context, local net.Conn) {
	defer p.wg.Done()
	log := p.log.With("local", local.LocalAddr().String(), "remote", p.remote.String())
	stats := counterSet{&p.Stats, &p.s.Stats}
	stats.start()
	deadline := time.Now().Add(p.s.opts.ConnectWait)
	var (
		rp    replay
		avoid *Conn
		err   error
	)
	for {
		var conn *Conn
		var podPort int
		conn, podPort, err = p.s.connFor(ctx, p.remote, avoid, deadline)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("closing local connection: no connection to the pod", "err", err)
			}
			resetAfterSent(ctx, local)
			break
		}
		err = conn.forward(ctx, local, podPort, stats, rp)
		p.s.doneWith(conn)
		r, retry := errors.AsType[*retryError](err)
		if retry && r.verify && p.s.podStillGood(ctx, conn) {
			// A genuine failure in the pod (its app is not listening, say).
			err = r.err
			log.Warn("connection failed in the pod", "err", err)
			resetAfterSent(ctx, local)
			retry = false
		}
		if !retry {
			p.afterFailure(conn, err)
			break
		}
		log.Debug("connection did not reach the pod; retrying on the next connection", "err", err)
		p.afterFailure(conn, r.err)
		// The retry waits for another connection, so make sure one comes:
		// a connection that failed a stream this way is not trusted with
		// new ones (a lost one is being replaced already).
		conn.stale("a connection failed before reaching the pod: %v", r.err)
		rp, avoid = replay{sent: r.sent, eof: r.eof}, conn
	}
	failed := err != nil && ctx.Err() == nil
	stats.end(failed)
	if failed {
		p.noteErr(err)
	}
}

// afterFailure lets the session react to how a connection over conn
// failed: a pod that is gone needs a new connection, and any other failure
// inside the pod but a refused connection is a reason to ask the API
// whether the pod is still the one to use.
func (p *Port) afterFailure(conn *Conn, err error) {
	re, ok := errors.AsType[*RemoteError](err)
	switch {
	case !ok:
	case re.PodGone():
		p.s.podGone(conn, err)
		p.s.Refresh()
	case !re.Refused():
		p.s.Refresh()
	}
}

func (p *Port) noteErr(err error) {
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
}
