package tunnel

import (
	"log/slog"
	"testing"

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
// events of other pods or of its own pod staying Ready. A second session
// on the same watch, connected to another pod, is told nothing.
func TestPodWatchTellsPodsByUID(t *testing.T) {
	ready := forward.SessionStatus{State: forward.StateReady, Pod: "db-0", UID: "uid-1"}
	for _, tt := range []struct {
		name   string
		events []kube.PodEvent
		want   int
	}{
		{"own pod stays ready", []kube.PodEvent{podEvent(kube.EventModified, "db-0", "uid-1", true)}, 0},
		{"another pod changes", []kube.PodEvent{podEvent(kube.EventModified, "db-1", "uid-9", false)}, 0},
		{"own pod deleted", []kube.PodEvent{podEvent(kube.EventDeleted, "db-0", "uid-1", true)}, 1},
		{"own pod not ready", []kube.PodEvent{podEvent(kube.EventModified, "db-0", "uid-1", false)}, 1},
		{"re-created, deletion seen", []kube.PodEvent{
			podEvent(kube.EventDeleted, "db-0", "uid-1", true),
			podEvent(kube.EventAdded, "db-0", "uid-2", false),
			podEvent(kube.EventModified, "db-0", "uid-2", true),
		}, 2}, // going away; then the replacement Ready (the second is deferred to the interval's end)
		{"re-created, deletion missed", []kube.PodEvent{
			podEvent(kube.EventModified, "db-0", "uid-2", true),
		}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeRefresher{st: ready}
			other := &fakeRefresher{st: forward.SessionStatus{State: forward.StateReady, Pod: "web-0", UID: "uid-7"}}
			w := newPodWatch(nil, "ns", slog.New(slog.DiscardHandler))
			w.ready["uid-1"] = true
			w.add(f, w.log)
			w.add(other, w.log)
			for _, ev := range tt.events {
				w.handle(ev)
			}
			deferred := 0
			if !w.subs[f].due.IsZero() {
				deferred++ // a refresh deferred to the end of refreshInterval
			}
			if got := f.refreshes + deferred; got != tt.want {
				t.Errorf("refreshes = %d (%d deferred), want %d", got, deferred, tt.want)
			}
			if other.refreshes != 0 || !w.subs[other].due.IsZero() {
				t.Errorf("the other session was refreshed %d times (deferred: %v), want 0", other.refreshes, !w.subs[other].due.IsZero())
			}
		})
	}
}
