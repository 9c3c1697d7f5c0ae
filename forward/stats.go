package forward

import "sync/atomic"

// Counters count forwarded connections and bytes. Every field is updated
// atomically while connections run, so a status display can read them at
// any time.
type Counters struct {
	Active   atomic.Int64 // local connections being forwarded now
	Total    atomic.Int64 // local connections forwarded since the start
	Failed   atomic.Int64 // connections that ended with an error
	BytesIn  atomic.Int64 // bytes from the pod to local connections
	BytesOut atomic.Int64 // bytes from local connections to the pod
}

// Snapshot is a copy of Counters at one moment.
type Snapshot struct {
	Active, Total, Failed, BytesIn, BytesOut int64
}

// Snapshot returns the current values.
func (c *Counters) Snapshot() Snapshot {
	return Snapshot{
		Active:   c.Active.Load(),
		Total:    c.Total.Load(),
		Failed:   c.Failed.Load(),
		BytesIn:  c.BytesIn.Load(),
		BytesOut: c.BytesOut.Load(),
	}
}

// counterSet updates several Counters at once: a connection counts towards
// its Conn, and in a Session also towards its Port and the Session.
type counterSet []*Counters

func (s counterSet) start() {
	for _, c := range s {
		c.Active.Add(1)
		c.Total.Add(1)
	}
}

func (s counterSet) end(failed bool) {
	for _, c := range s {
		c.Active.Add(-1)
		if failed {
			c.Failed.Add(1)
		}
	}
}

func (s counterSet) in(n int) {
	for _, c := range s {
		c.BytesIn.Add(int64(n))
	}
}

func (s counterSet) out(n int) {
	for _, c := range s {
		c.BytesOut.Add(int64(n))
	}
}
