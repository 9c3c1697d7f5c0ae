package forward

import "time"

// Backoff is a capped exponential backoff with jitter. The zero value gives
// the documented defaults.
type Backoff struct {
	// Initial is the delay before the first retry. Default 500ms.
	Initial time.Duration
	// Max caps the delay. Default 30s.
	Max time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = 500 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	return b
}

// Delay returns the wait before retry number attempt (0 for the first):
// Initial doubled attempt times, capped at Max, then scaled into
// [d/2, d) by jitter, a number in [0, 1), so that many clients that failed
// together do not retry together.
func (b Backoff) Delay(attempt int, jitter float64) time.Duration {
	b = b.withDefaults()
	d := b.Initial
	for i := 0; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	jitter = min(max(jitter, 0), 1)
	return d/2 + time.Duration(jitter*float64(d/2))
}
