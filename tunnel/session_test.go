package tunnel

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/kube"
)

// runSession runs a session of f for pod/db in dev with its own pod watch,
// as `tunnels forward` does, until the test ends.
func runSession(t *testing.T, f *fakeClient, backoff time.Duration) *forward.Session {
	key := config.Session{Context: "kind", Namespace: "dev", Target: config.Target{Kind: config.KindPod, Name: "db"}}
	ctx, cancel := context.WithCancel(context.Background())
	s := NewSession(ctx, f, key, SessionOptions{Backoff: forward.Backoff{Initial: backoff, Max: backoff}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = RunSession(ctx, f, key, s, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// TestSessionPodReadyWakesWaitingSession: a session that waits for a Ready
// pod resolves again as soon as the pod watch sees one, not after its
// backoff.
func TestSessionPodReadyWakesWaitingSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeClient()
		s := runSession(t, f, time.Hour)
		synctest.Wait()
		if st := s.Status(); st.State != forward.StateRetrying {
			t.Fatalf("state %s (err %v), want retrying for want of a pod", st.State, st.Err)
		}
		start := time.Now()
		podReadyResolves(t, f)
		if waited := time.Since(start); waited != 0 {
			t.Errorf("the resolve came after %v, want at once", waited)
		}
	})
}

// TestSessionForbiddenWaits: an error retrying cannot cure leaves the
// session failed, resolving nothing more until it is refreshed; a pod
// event does not wake it either (no pod will cure it).
func TestSessionForbiddenWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeClient()
		f.resolve = fmtForbidden
		s := runSession(t, f, time.Millisecond)
		synctest.Wait()
		if st := s.Status(); st.State != forward.StateFailed {
			t.Fatalf("state %s (err %v), want failed", st.State, st.Err)
		}
		f.events <- podEvent(kube.EventModified, "db", "uid-1", true)
		time.Sleep(time.Hour)
		synctest.Wait()
		if r, _, _ := f.snapshot(); r != 1 {
			t.Fatalf("resolved %d times in an hour while failed, want 1", r)
		}
		s.Refresh()
		synctest.Wait()
		if r, _, _ := f.snapshot(); r != 2 {
			t.Errorf("resolved %d times after Refresh, want 2", r)
		}
	})
}

// TestSessionMissingNamespaceWaits: a namespace that does not exist leaves
// the session failed, resolving nothing more in an hour, until a pod
// becomes Ready there (the namespace exists then).
func TestSessionMissingNamespaceWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeClient()
		f.resolve = fmtNamespaceMissing
		s := runSession(t, f, time.Millisecond)
		synctest.Wait()
		if st := s.Status(); st.State != forward.StateFailed || !errors.Is(st.Err, kube.ErrNamespaceNotFound) {
			t.Fatalf("state %s (err %v), want failed, namespace not found", st.State, st.Err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if r, _, _ := f.snapshot(); r != 1 {
			t.Fatalf("resolved %d times in an hour while failed, want 1", r)
		}
		podReadyResolves(t, f)
	})
}

// podReadyResolves checks, inside a synctest bubble, that a session of f
// that has resolved once resolves again when the pod watch sees a pod
// become Ready, and not for a pod that is not Ready.
func podReadyResolves(t *testing.T, f *fakeClient) {
	t.Helper()
	f.events <- podEvent(kube.EventModified, "db", "uid-1", false) // not Ready: nothing
	synctest.Wait()
	if r, _, _ := f.snapshot(); r != 1 {
		t.Fatalf("resolved %d times after a pod event that is not Ready, want 1", r)
	}
	f.events <- podEvent(kube.EventModified, "db", "uid-1", true)
	synctest.Wait()
	if r, _, _ := f.snapshot(); r != 2 {
		t.Errorf("resolved %d times after a pod became Ready, want 2", r)
	}
}

// TestPodWatchDefersAndRewatches: a second refresh within refreshInterval
// is made at its end, and a watch that ends is started again no sooner
// than minWatchGap.
func TestPodWatchDefersAndRewatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeClient()
		w := newPodWatch(f, "dev", slog.New(slog.DiscardHandler))
		r := &countingRefresher{st: forward.SessionStatus{State: forward.StateReady, Pod: "db-0", UID: "uid-1"}}
		w.add(r, config.Target{Kind: config.KindPod, Name: "db-0"}, w.log)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		defer w.stop()
		w.start(ctx)
		synctest.Wait()
		f.events <- podEvent(kube.EventModified, "db-0", "uid-1", false) // going away: at once
		synctest.Wait()
		if got := r.count(); got != 1 {
			t.Fatalf("refreshes = %d after the pod stopped being Ready, want 1", got)
		}
		f.events <- podEvent(kube.EventModified, "db-0", "uid-2", true) // re-created: deferred
		synctest.Wait()
		if got := r.count(); got != 1 {
			t.Fatalf("refreshes = %d within refreshInterval, want still 1", got)
		}
		time.Sleep(refreshInterval)
		synctest.Wait()
		if got := r.count(); got != 2 {
			t.Fatalf("refreshes = %d at the end of refreshInterval, want 2", got)
		}
		watches := func() int { _, w, _ := f.snapshot(); return w["dev"] }
		if got := watches(); got != 1 {
			t.Fatalf("%d watches, want 1", got)
		}
		// A watch that had delivered for a while ends: watch again at once.
		f.ends <- struct{}{}
		synctest.Wait()
		if got := watches(); got != 2 {
			t.Fatalf("%d watches after the first ended, want 2", got)
		}
		// One that ends at once is started again no sooner than minWatchGap.
		f.ends <- struct{}{}
		synctest.Wait()
		time.Sleep(minWatchGap - time.Millisecond)
		synctest.Wait()
		if got := watches(); got != 2 {
			t.Fatalf("%d watches within minWatchGap of a failed one, want 2", got)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := watches(); got != 3 {
			t.Fatalf("%d watches a minute later, want 3", got)
		}
	})
}

// countingRefresher is a session as the pod watch sees it, safe for the
// watch's goroutine and the test's.
type countingRefresher struct {
	st forward.SessionStatus
	mu sync.Mutex
	n  int
}

func (c *countingRefresher) Status() forward.SessionStatus { return c.st }
func (c *countingRefresher) Refresh()                      { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *countingRefresher) PodDeleted(string, string)     { c.Refresh() }
func (c *countingRefresher) count() int                    { c.mu.Lock(); defer c.mu.Unlock(); return c.n }
