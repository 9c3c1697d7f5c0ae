// Package testrun runs a long-lived function in the background for the length of a test.
package testrun

import (
	"context"
	"testing"
	"time"
)

// StopTimeout is how long Background waits for run to return once the test
// has ended and run's context is cancelled.
const StopTimeout = 5 * time.Second

// Background calls run in a new goroutine with a context that is cancelled
// when the test ends (in a cleanup registered now, so it runs before those
// registered earlier). The test fails if run then returns an error, or does
// not return within StopTimeout.
func Background(t testing.TB, run func(ctx context.Context) error) {
	t.Helper()
	// Not t.Context(): that is cancelled before any cleanup runs, and run
	// must outlive the cleanups registered after this call.
	ctx, cancel := context.WithCancel(context.Background())
	Go(t, cancel, func() error { return run(ctx) })
}

// Go calls run in a new goroutine for an object that lives under a context
// (made with context.Background, not t.Context, to outlive the cleanups
// registered after this call); when the test ends, a cleanup registered now
// calls cancel, and the test fails if run then returns an error or does not
// return within StopTimeout.
func Go(t testing.TB, cancel context.CancelFunc, run func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- run() }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		case <-time.After(StopTimeout):
			t.Errorf("Run did not return within %s of cancel", StopTimeout)
		}
	})
}
