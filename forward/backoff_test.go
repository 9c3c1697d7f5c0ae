package forward

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 10 * time.Second}
	tests := []struct {
		attempt int
		jitter  float64
		want    time.Duration
	}{
		{0, 0, 500 * time.Millisecond},
		{0, 0.999999999, time.Second - time.Nanosecond},
		{1, 0, time.Second},
		{2, 0.5, 3 * time.Second},
		{3, 0, 4 * time.Second},
		{4, 0, 5 * time.Second}, // capped at 10s before jitter
		{100, 0, 5 * time.Second},
		{100, 1, 10 * time.Second},
		{0, -3, 500 * time.Millisecond}, // jitter clamped
	}
	for _, tt := range tests {
		if got := b.Delay(tt.attempt, tt.jitter); got < tt.want-time.Microsecond || got > tt.want+time.Microsecond {
			t.Errorf("Delay(%d, %v) = %v, want %v", tt.attempt, tt.jitter, got, tt.want)
		}
	}
	if got := (Backoff{}).Delay(0, 1); got != 500*time.Millisecond {
		t.Errorf("default Delay(0, 1) = %v, want 500ms", got)
	}
	if got := (Backoff{}).Delay(50, 1); got != 30*time.Second {
		t.Errorf("default Delay(50, 1) = %v, want the 30s cap", got)
	}
}
