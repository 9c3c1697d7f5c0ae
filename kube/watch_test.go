package kube

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

func TestWatchPods(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeAPI(t)
	c := f.client(t, f.config())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	events, err := c.WatchPods(ctx, "dev", "app=web", "100")
	if err != nil {
		t.Fatal(err)
	}
	pod := mkPod("dev", "web-1", map[string]string{"app": "web"})
	raw, _ := json.Marshal(pod)
	status, _ := json.Marshal(map[string]any{"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version: 1 (100)"})
	go func() {
		for _, ev := range []rawEvent{{Type: EventAdded, Object: raw}, {Type: EventDeleted, Object: raw}, {Type: EventError, Object: status}} {
			select {
			case f.watch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	for i, want := range []string{EventAdded, EventDeleted, EventError} {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("channel closed before event %d", i)
			}
			if ev.Type != want {
				t.Fatalf("event %d type %s, want %s", i, ev.Type, want)
			}
			if want != EventError && (ev.Pod == nil || ev.Pod.Metadata.Name != "web-1") {
				t.Errorf("event %d pod %+v, want web-1", i, ev.Pod)
			}
			if want == EventError && !errors.Is(ev.Err, ErrResourceExpired) {
				t.Errorf("error event %v, want ErrResourceExpired", ev.Err)
			}
		case <-ctx.Done():
			t.Fatal("timed out waiting for events")
		}
	}
	// Cancelling the context ends the watch and closes the channel.
	cancel()
	for range events {
	}
}

func TestWatchEndsWithStream(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeAPI(t)
	c := f.client(t, f.config())
	events, err := c.WatchPods(t.Context(), "dev", "", "")
	if err != nil {
		t.Fatal(err)
	}
	close(f.watch) // the server ends the watch, as apiservers do after minutes
	select {
	case _, ok := <-events:
		if ok {
			t.Error("got an event, want the channel closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("channel not closed after the stream ended")
	}
}
