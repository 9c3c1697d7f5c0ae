package reconcile

import "time"

// debouncer coalesces a burst of file events into one trigger. It fires once
// the events have been quiet for the quiet period, and at the latest max
// after the first event of the burst, so a file rewritten continuously (a
// log-like writer, a sync tool) is still picked up at least once per max.
//
// It owns no goroutine: the loop selects on C next to its other channels,
// and calls fired when C delivers.
type debouncer struct {
	quiet time.Duration
	max   time.Duration
	timer *time.Timer
	first time.Time // first event of the pending burst; zero when idle
}

func newDebouncer(quiet, max time.Duration) *debouncer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &debouncer{quiet: quiet, max: max, timer: t}
}

// event records an event seen at now and (re)arms the timer.
func (d *debouncer) event(now time.Time) {
	if d.first.IsZero() {
		d.first = now
	}
	deadline := now.Add(d.quiet)
	if limit := d.first.Add(d.max); deadline.After(limit) {
		deadline = limit
	}
	// Since Go 1.23 a Reset timer never delivers a value from before the
	// Reset, so there is no stale tick to drain.
	d.timer.Reset(deadline.Sub(now))
}

// C delivers when the pending burst is due.
func (d *debouncer) C() <-chan time.Time { return d.timer.C }

// fired ends the pending burst, after C delivered, and returns the time of
// its first event.
func (d *debouncer) fired() time.Time {
	first := d.first
	d.first = time.Time{}
	return first
}

// stop drops the pending burst, if any.
func (d *debouncer) stop() {
	d.timer.Stop()
	d.first = time.Time{}
}
