package reconcile

import (
	"testing"
	"testing/synctest"
	"time"
)

// fires runs events at the given offsets (from the start of the bubble) and
// returns the offsets at which the debouncer fired, until horizon.
func fires(t *testing.T, quiet, max time.Duration, events []time.Duration, horizon time.Duration) []time.Duration {
	t.Helper()
	var got []time.Duration
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		d := newDebouncer(quiet, max)
		defer d.stop()
		next := 0
		for {
			now := time.Since(start)
			if now > horizon {
				return
			}
			// Wait for the next event or the timer, whichever is first.
			var eventC <-chan time.Time
			if next < len(events) {
				eventC = time.After(events[next] - now)
			}
			select {
			case <-eventC:
				d.event(time.Now())
				next++
			case <-d.C():
				first := d.fired()
				if first.IsZero() {
					t.Errorf("fired with no burst at %v", time.Since(start))
				}
				got = append(got, time.Since(start))
			case <-time.After(horizon - now + time.Nanosecond):
			}
		}
	})
	return got
}

func every(from, to, step time.Duration) []time.Duration {
	var out []time.Duration
	for d := from; d <= to; d += step {
		out = append(out, d)
	}
	return out
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestDebounce(t *testing.T) {
	tests := []struct {
		name   string
		events []time.Duration
		want   []time.Duration
	}{
		{name: "no events never fire", events: nil, want: nil},
		{name: "one event fires after the quiet period", events: []time.Duration{ms(10)}, want: []time.Duration{ms(110)}},
		{name: "a burst fires once after its last event", events: []time.Duration{0, ms(20), ms(50), ms(90)}, want: []time.Duration{ms(190)}},
		{name: "two bursts fire twice", events: []time.Duration{0, ms(50), ms(500), ms(520)}, want: []time.Duration{ms(150), ms(620)}},
		{
			// Events every 30 ms for 2.5 s never leave 100 ms of quiet:
			// the cap fires 1 s after the first event of each burst (0,
			// then 1020), and the quiet period after the last (2490).
			name:   "a continuous stream fires once per cap",
			events: every(0, ms(2500), ms(30)),
			want:   []time.Duration{ms(1000), ms(2020), ms(2590)},
		},
		{name: "an event just before the quiet deadline extends the burst", events: []time.Duration{0, ms(99)}, want: []time.Duration{ms(199)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fires(t, ms(100), time.Second, tt.events, 5*time.Second)
			if !equalDurations(got, tt.want) {
				t.Errorf("fired at %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDebounceCapBelowQuiet(t *testing.T) {
	// A cap shorter than the quiet period wins.
	got := fires(t, time.Second, ms(300), []time.Duration{0, ms(100)}, 5*time.Second)
	if want := []time.Duration{ms(300)}; !equalDurations(got, want) {
		t.Errorf("fired at %v, want %v", got, want)
	}
}

func TestDebounceFiredReturnsFirstEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		d := newDebouncer(ms(100), time.Second)
		defer d.stop()
		time.Sleep(ms(30))
		d.event(time.Now())
		time.Sleep(ms(60))
		d.event(time.Now())
		<-d.C()
		if got, want := d.fired().Sub(start), ms(30); got != want {
			t.Errorf("first event at %v, want %v", got, want)
		}
		if got, want := time.Since(start), ms(190); got != want {
			t.Errorf("fired at %v, want %v", got, want)
		}
		// A new burst starts from its own first event.
		d.event(time.Now())
		<-d.C()
		if got, want := d.fired().Sub(start), ms(190); got != want {
			t.Errorf("second burst's first event at %v, want %v", got, want)
		}
	})
}

func TestDebounceStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(ms(100), time.Second)
		d.event(time.Now())
		d.stop()
		select {
		case <-d.C():
			t.Errorf("stopped debouncer fired")
		case <-time.After(5 * time.Second):
		}
	})
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
