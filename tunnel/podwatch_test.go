package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/kube"
)

// fakeRefresher is a session as the pod watch sees it.
type fakeRefresher struct {
	st        forward.SessionStatus
	refreshes int
	deleted   int // PodDeleted calls for the session's own pod
}

func (f *fakeRefresher) Status() forward.SessionStatus { return f.st }
func (f *fakeRefresher) Refresh()                      { f.refreshes++ }
func (f *fakeRefresher) PodDeleted(pod, uid string) {
	if pod == f.st.Pod && uid == f.st.UID {
		f.deleted++
	}
	f.refreshes++
}

func podEvent(typ, name, uid string, ready bool) kube.PodEvent {
	p := &kube.Pod{}
	p.Metadata.Name, p.Metadata.UID = name, uid
	p.Status.Phase = "Running"
	status := "False"
	if ready {
		status = "True"
	}
	p.Status.Conditions = []kube.PodCondition{{Type: "Ready", Status: status}}
	return kube.PodEvent{Type: typ, Pod: p}
}

// TestPodWatchTellsPodsByUID: the watch asks the session to resolve again
// when its pod goes away or is re-created under its name, and not for
// events of other pods or of its own pod staying Ready. Only a deletion is
// reported as one (the session then takes no new connections there): a pod
// that stops being Ready may blink back. A second session on the same
// watch, connected to another pod, is told nothing.
func TestPodWatchTellsPodsByUID(t *testing.T) {
	ready := forward.SessionStatus{State: forward.StateReady, Pod: "db-0", UID: "uid-1"}
	for _, tt := range []struct {
		name    string
		events  []kube.PodEvent
		want    int // refreshes, PodDeleted calls included
		deleted int // PodDeleted calls for the session's pod
	}{
		{"own pod stays ready", []kube.PodEvent{podEvent(kube.EventModified, "db-0", "uid-1", true)}, 0, 0},
		{"another pod changes", []kube.PodEvent{podEvent(kube.EventModified, "db-1", "uid-9", false)}, 0, 0},
		{"own pod deleted", []kube.PodEvent{podEvent(kube.EventDeleted, "db-0", "uid-1", true)}, 1, 1},
		{"own pod not ready", []kube.PodEvent{podEvent(kube.EventModified, "db-0", "uid-1", false)}, 1, 0},
		{"re-created, deletion seen", []kube.PodEvent{
			podEvent(kube.EventDeleted, "db-0", "uid-1", true),
			podEvent(kube.EventAdded, "db-0", "uid-2", false),
			podEvent(kube.EventModified, "db-0", "uid-2", true),
		}, 2, 1}, // going away; then the replacement Ready (the second is deferred to the interval's end)
		{"re-created, deletion missed", []kube.PodEvent{
			podEvent(kube.EventModified, "db-0", "uid-2", true),
		}, 1, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeRefresher{st: ready}
			other := &fakeRefresher{st: forward.SessionStatus{State: forward.StateReady, Pod: "web-0", UID: "uid-7"}}
			w := newPodWatch(nil, "ns", slog.New(slog.DiscardHandler))
			w.ready["uid-1"] = true
			w.add(f, config.Target{Kind: config.KindPod, Name: "db-0"}, w.log)
			w.add(other, config.Target{Kind: config.KindPod, Name: "web-0"}, w.log)
			for _, ev := range tt.events {
				w.handle(t.Context(), ev)
			}
			deferred := 0
			if !w.subs[f].due.IsZero() {
				deferred++ // a refresh deferred to the end of refreshInterval
			}
			if got := f.refreshes + deferred; got != tt.want {
				t.Errorf("refreshes = %d (%d deferred), want %d", got, deferred, tt.want)
			}
			if f.deleted != tt.deleted {
				t.Errorf("PodDeleted calls for the session's pod = %d, want %d", f.deleted, tt.deleted)
			}
			if other.refreshes != 0 || !w.subs[other].due.IsZero() {
				t.Errorf("the other session was refreshed %d times (deferred: %v), want 0", other.refreshes, !w.subs[other].due.IsZero())
			}
		})
	}
}

// selectorClient is a fakeClient that counts resolves per target and reads
// the selectors of services, as kubeClient does through the API server.
type selectorClient struct {
	*fakeClient
	services map[string]string // service name → its selector

	mu        sync.Mutex
	resolved  map[string]int // target → Resolve calls
	selectors int            // Selector calls
}

func (c *selectorClient) Resolve(ctx context.Context, namespace string, t config.Target, remotes []config.RemotePort, current string) (forward.Resolved, error) {
	c.mu.Lock()
	c.resolved[t.String()]++
	c.mu.Unlock()
	return c.fakeClient.Resolve(ctx, namespace, t, remotes, current)
}

func (c *selectorClient) Selector(_ context.Context, namespace string, t config.Target) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.selectors++
	if sel, ok := c.services[t.Name]; ok && t.Kind == config.KindService {
		return sel, nil
	}
	return "", fmt.Errorf("%s in %s: %w", t, namespace, kube.ErrNotFound)
}

func (c *selectorClient) counts() (resolved map[string]int, selectors int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.resolved), c.selectors
}

func labeled(ev kube.PodEvent, labels map[string]string) kube.PodEvent {
	ev.Pod.Metadata.Labels = labels
	return ev
}

// TestPodWatchFiltersPerTarget: sessions waiting for a pod, sharing one
// watch as the applier's do, hear only of the pods their target may
// resolve to: a pod target of its own name, a selector or service target
// of the pods its selector matches. A pod of the namespace that concerns
// none of them makes no session resolve, and none logs about it; one that
// concerns a session makes it resolve exactly once, with no second
// refresh after the throttle's interval.
func TestPodWatchFiltersPerTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &selectorClient{fakeClient: newFakeClient(), services: map[string]string{"api": "app=api"}, resolved: map[string]int{}}
		logs := &logRecords{}
		log := slog.New(logs)
		w := newPodWatch(c, "dev", log)
		ctx, cancel := context.WithCancel(context.Background())
		targets := []config.Target{
			{Kind: config.KindPod, Name: "db"},
			{Kind: config.KindSelector, Name: "app=web"},
			{Kind: config.KindService, Name: "api"},
			{Kind: config.KindService, Name: "gone"}, // no such service
		}
		var running sync.WaitGroup
		for _, target := range targets {
			key := config.Session{Context: "kind", Namespace: "dev", Target: target}
			s := NewSession(ctx, c, key, SessionOptions{Backoff: forward.Backoff{Initial: time.Hour, Max: time.Hour}})
			w.add(s, target, log.With("target", target.String()))
			running.Go(func() { _ = s.Run() })
		}
		w.start(ctx)
		defer func() { cancel(); w.stop(); running.Wait() }()
		synctest.Wait()

		want := map[string]int{"pod/db": 1, "selector/app=web": 1, "svc/api": 1, "svc/gone": 1} // the first attempts
		check := func(after string) {
			t.Helper()
			time.Sleep(3 * refreshInterval) // any deferred refresh falls due
			synctest.Wait()
			if got, _ := c.counts(); !maps.Equal(got, want) {
				t.Fatalf("after %s: resolves %v, want %v", after, got, want)
			}
		}
		check("start")

		c.events <- labeled(podEvent(kube.EventAdded, "other-1", "uid-o1", false), map[string]string{"app": "other"})
		c.events <- labeled(podEvent(kube.EventModified, "other-1", "uid-o1", true), map[string]string{"app": "other"})
		check("another pod became Ready")
		if strings.Contains(logs.String(), "other-1") {
			t.Errorf("the log names a pod no tunnel targets:\n%s", logs.String())
		}

		c.events <- labeled(podEvent(kube.EventModified, "web-1", "uid-w1", true), map[string]string{"app": "web", "tier": "front"})
		want["selector/app=web"]++
		check("a pod of the selector became Ready")

		c.events <- labeled(podEvent(kube.EventModified, "api-1", "uid-a1", true), map[string]string{"app": "api"})
		want["svc/api"]++
		check("a pod of the service became Ready")

		c.events <- podEvent(kube.EventModified, "db", "uid-d1", true)
		want["pod/db"]++
		check("the pod became Ready")

		// Three pods of the selector within one interval: one refresh at
		// once, one at the interval's end, and the third joins it.
		for i := range 3 {
			c.events <- labeled(podEvent(kube.EventModified, fmt.Sprintf("web-%d", i+2), fmt.Sprintf("uid-w%d", i+2), true), map[string]string{"app": "web"})
		}
		want["selector/app=web"] += 2
		check("three pods of the selector became Ready at once")
		if got := strings.Count(logs.String(), "a pod became ready; resolving the target again"); got != 3+2 {
			t.Errorf("%d refreshes logged, want 5 (one for each refresh made):\n%s", got, logs.String())
		}
	})
}

// logRecords is a slog.Handler that keeps each record as its message and
// own attributes (those added with With are dropped).
type logRecords struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }

func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	return nil
}

func (l *logRecords) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
