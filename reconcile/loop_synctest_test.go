package reconcile

import (
	"context"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tunnels-dev/tunnels/config"
)

// These tests run the loop in polling mode inside a synctest bubble, where
// the clock only moves when every goroutine waits: each step happens at an
// exact time, so the debounce, the empty-read hold and the latency are
// checked to the millisecond. The loop polls every second with a 100 ms
// quiet period; the ticker starts at bubble time 0.

// fakeHarness opens and runs a polling loop in the current bubble, waits
// for its start, and stops it when the test ends.
func fakeHarness(t *testing.T, h *harness) {
	opts := testOptions(h)
	opts.Poll = true
	opts.PollInterval = time.Second
	opts.Debounce = 100 * time.Millisecond
	opts.MaxDelay = time.Second
	l, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
	if r := <-h.results; r.Cause != CauseStart || r.Status != StatusApplied {
		t.Fatalf("first result = %+v, want the start", r)
	}
}

// drain returns the results reported so far.
func drain(h *harness) []Result {
	var out []Result
	for {
		select {
		case r := <-h.results:
			out = append(out, r)
		default:
			return out
		}
	}
}

// sleepUntil sleeps until offset from start, then waits for the bubble to
// settle.
func sleepUntil(start time.Time, offset time.Duration) {
	time.Sleep(time.Until(start.Add(offset)))
	synctest.Wait()
}

func TestLoopPollLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		h := newHarness(t, plainFile(t, t.TempDir(), v1))
		h.applier.delay = 30 * time.Millisecond
		fakeHarness(t, h)

		sleepUntil(start, 500*time.Millisecond)
		mustWrite(t, h.path, v2)
		// The tick at 1 s sees the change; the quiet period ends at 1.1 s;
		// Apply takes 30 ms.
		sleepUntil(start, 1099*time.Millisecond)
		if r := drain(h); len(r) != 0 {
			t.Fatalf("results before the quiet period ended: %+v", r)
		}
		sleepUntil(start, 1200*time.Millisecond)
		r := drain(h)
		if len(r) != 1 || r[0].Status != StatusApplied {
			t.Fatalf("results = %+v, want one applied", r)
		}
		if got, want := r[0].Trigger.Sub(start), time.Second; got != want {
			t.Errorf("trigger at %v, want %v (the poll that saw the change)", got, want)
		}
		if got, want := r[0].Latency, 130*time.Millisecond; got != want {
			t.Errorf("latency = %v, want %v (quiet period + Apply)", got, want)
		}
		if !equalSets(h.applier.runningSpecs(), []config.Spec{a1, b3, c4}) {
			t.Errorf("running %v, want v2", names(h.applier.runningSpecs()))
		}
		// Later ticks see nothing new.
		sleepUntil(start, 5*time.Second)
		if r := drain(h); len(r) != 0 {
			t.Errorf("results from idle ticks: %+v", r)
		}
	})
}

func TestLoopEmptyReadHeldBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		h := newHarness(t, plainFile(t, t.TempDir(), v1))
		fakeHarness(t, h)

		// A writer truncates, and writes 230 ms later: the tick at 1 s
		// sees the empty file, the read at 1.1 s is held back, and the
		// read at 1.2 s sees the new content.
		sleepUntil(start, 900*time.Millisecond)
		if err := os.Truncate(h.path, 0); err != nil {
			t.Fatal(err)
		}
		sleepUntil(start, 1130*time.Millisecond)
		if r := drain(h); len(r) != 0 {
			t.Fatalf("results while held back: %+v", r)
		}
		mustWrite(t, h.path, v2)
		sleepUntil(start, 1300*time.Millisecond)
		r := drain(h)
		if len(r) != 1 || r[0].Status != StatusApplied {
			t.Fatalf("results = %+v, want one applied (no rejected empty file)", r)
		}
		if got, want := r[0].Latency, 200*time.Millisecond; got != want {
			t.Errorf("latency = %v, want %v (from the first tick, hold included)", got, want)
		}
		if !equalSets(h.applier.runningSpecs(), []config.Spec{a1, b3, c4}) {
			t.Errorf("running %v, want v2", names(h.applier.runningSpecs()))
		}
	})
}

func TestLoopReallyEmptyFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		h := newHarness(t, plainFile(t, t.TempDir(), v1))
		fakeHarness(t, h)

		sleepUntil(start, 900*time.Millisecond)
		if err := os.Truncate(h.path, 0); err != nil {
			t.Fatal(err)
		}
		// Held back at 1.1 s, parsed like any file at 1.2 s.
		sleepUntil(start, 1199*time.Millisecond)
		if r := drain(h); len(r) != 0 {
			t.Fatalf("results while held back: %+v", r)
		}
		sleepUntil(start, 1200*time.Millisecond)
		r := drain(h)
		if len(r) != 1 || r[0].Status != StatusRejected || r[0].Err == nil || !strings.Contains(r[0].Err.Error(), "empty file") {
			t.Fatalf("results = %+v, want one rejected with Parse's empty file error", r)
		}
		if n := h.applier.planCount(); n != 1 {
			t.Errorf("%d plans applied, want only the first", n)
		}
		// It stays empty: nothing more is reported.
		sleepUntil(start, 5*time.Second)
		if r := drain(h); len(r) != 0 {
			t.Errorf("results from later ticks: %+v", r)
		}
	})
}

func TestLoopPollRemovedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		h := newHarness(t, plainFile(t, t.TempDir(), v1))
		fakeHarness(t, h)

		if err := os.Remove(h.path); err != nil {
			t.Fatal(err)
		}
		sleepUntil(start, 5*time.Second)
		r := drain(h)
		if len(r) != 1 || r[0].Status != StatusRemoved {
			t.Fatalf("results = %+v, want one removed", r)
		}
		if n := strings.Count(h.logs.String(), "config file removed"); n != 1 {
			t.Errorf("removal logged %d times, want once", n)
		}
	})
}
