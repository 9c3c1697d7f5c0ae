package forward

import (
	"time"
)

// The pool: while many local connections are open at once, a session keeps
// more than one connection to its pod.
//
// One SPDY connection is one TCP (and TLS) connection, read by one frame
// reader on each side and written under one lock on each side: its
// encryption, decryption and framing run on one core at a time, on the
// client and on the kubelet alike. A hundred concurrent transfers over one
// connection therefore move about what one moves. Spread over a few
// connections, they use the cores there are, and on the kubelet each
// connection's write lock is contended by fewer streams: through the
// kubelet's own server code on 2 cores, a hundred concurrent downloads
// moved 0.9-1.2x client-go's rate over one connection and 1.4-1.9x over up
// to four, and as many uploads 1.2-1.3x and 1.4-1.6x, with 10-25% less
// server CPU per GiB (tests/protocol BenchmarkTable, three alternating
// runs of each; pools of 2 and 8 did as well as 4 on these 2 cores).
//
// The pool grows only under load: when every connection already carries
// poolGrowAt local connections or more, the next local connection still
// takes the least busy one at once, and another connection to the same pod
// is dialed in the background, one at a time, up to SessionOptions.Pool.
// New local connections go to the least busy connection. A connection
// added this way that has carried nothing for poolIdle is closed; the
// first one, the session's own, stays. All of them go to the same pod and
// leave together: when the session moves on (another pod, a lost or stale
// first connection), the others drain as it does.
const (
	defaultPool    = 4
	poolGrowAt     = 4
	poolIdle       = time.Minute
	poolRetryAfter = 10 * time.Second
)

// pooled is one connection of the session's pool and what it carries.
type pooled struct {
	conn *Conn
	// load counts the local connections handed this connection by
	// connFor and not yet done with it; idleSince is when it last
	// dropped to 0.
	load      int
	idleSince time.Time
}

// usable reports whether c can take a new local connection.
func usable(c *Conn) bool { return c.Err() == nil && !c.isStale() }

// inPoolLocked returns conn's entry in the pool, or nil.
func (s *Session) inPoolLocked(conn *Conn) *pooled {
	for _, pc := range s.pool {
		if pc.conn == conn {
			return pc
		}
	}
	return nil
}

// pickLocked hands out the least busy usable connection of the pool other
// than avoid (the first connection wins ties), and starts growing the pool
// if even that one is crowded. The first connection is usable: connFor
// checked.
func (s *Session) pickLocked(avoid *Conn) *Conn {
	var best *pooled
	for _, pc := range s.pool {
		if pc.conn == avoid || !usable(pc.conn) {
			continue
		}
		if best == nil || pc.load < best.load {
			best = pc
		}
	}
	best.load++
	if best.load > poolGrowAt && len(s.pool) < s.opts.Pool && !s.growing && time.Now().After(s.growAfter) {
		s.growing = true
		s.drains.Add(1)
		go s.grow(s.conn, s.retire)
	}
	return best.conn
}

// doneWith records that a local connection handed conn by connFor is done
// with it.
func (s *Session) doneWith(conn *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pc := s.inPoolLocked(conn); pc != nil {
		pc.load--
		if pc.load == 0 {
			pc.idleSince = time.Now()
		}
	}
}

// grow dials one more connection to first's pod and adds it to the pool,
// if first is still the session's connection when the dial is done.
// retire is closed when first leaves the pool.
func (s *Session) grow(first *Conn, retire <-chan struct{}) {
	defer s.drains.Done()
	opts := s.opts.Conn
	opts.Transport = first.Transport()
	conn, err := Dial(s.ctx, s.opts.Upgrader, first.namespace, first.pod, opts)
	pod := first.namespace + "/" + first.pod
	s.mu.Lock()
	s.growing = false
	if err != nil {
		s.growAfter = time.Now().Add(poolRetryAfter)
		s.mu.Unlock()
		if s.ctx.Err() == nil {
			s.log.Warn("could not add a connection to the pod; carrying on with fewer", "pod", pod, "err", err)
		}
		return
	}
	if s.closed || s.conn != first || !usable(first) {
		s.mu.Unlock()
		_ = conn.Close() // outside s.mu: its GOAWAY may take CloseTimeout
		return
	}
	pc := &pooled{conn: conn, idleSince: time.Now()}
	s.pool = append(s.pool, pc)
	n := len(s.pool)
	s.drains.Add(1)
	go s.watchPooled(pc, retire)
	s.mu.Unlock()
	s.log.Debug("added a connection to the pod", "pod", pod, "connections", n)
}

// watchPooled looks after a connection grow added: it leaves the pool when
// it fails, goes stale, has been idle for poolIdle, or the session's first
// connection leaves (retire), and is closed once what it carries is done.
func (s *Session) watchPooled(pc *pooled, retire <-chan struct{}) {
	defer s.drains.Done()
	c := pc.conn
	tick := time.NewTicker(s.poolIdle / 4)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			s.leavePool(pc)
			_ = c.Close()
			return
		case <-c.Done():
			s.leavePool(pc)
			return
		case <-c.Stale():
		case <-retire:
		case now := <-tick.C:
			s.mu.Lock()
			idle := pc.load == 0 && now.Sub(pc.idleSince) >= s.poolIdle
			if idle {
				s.leavePoolLocked(pc)
			}
			s.mu.Unlock()
			if !idle {
				continue
			}
			s.log.Debug("closing an idle extra connection to the pod", "pod", c.namespace+"/"+c.pod)
		}
		s.leavePool(pc)
		c.Drain(s.ctx)
		return
	}
}

// leavePool takes pc out of the pool, if it is still in it.
func (s *Session) leavePool(pc *pooled) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leavePoolLocked(pc)
}

func (s *Session) leavePoolLocked(pc *pooled) {
	for i, q := range s.pool {
		if q == pc {
			s.pool = append(s.pool[:i], s.pool[i+1:]...)
			return
		}
	}
}

// retirePoolLocked ends the pool as the session's first connection leaves
// it: the connections added to it drain.
func (s *Session) retirePoolLocked() {
	if s.retire != nil {
		close(s.retire)
		s.retire = nil
	}
	s.pool = nil
}
