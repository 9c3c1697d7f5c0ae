package main

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/kube"
)

// refreshInterval caps how often a watch asks a session to resolve again,
// so a busy namespace does not turn into a stream of re-resolutions.
const refreshInterval = time.Second

// refresher is the part of a forward.Session the pod watch drives.
type refresher interface {
	Status() forward.SessionStatus
	Refresh()
}

// watchPods follows the pods of a session's namespace and asks the session
// to resolve its target again when the pod it is connected to is deleted,
// starts terminating or stops being Ready (so it moves to a replacement
// before a connection fails), and when a pod becomes Ready while the
// session has none (so a waiting tunnel starts at once instead of after its
// backoff). It runs until ctx ends; a failed or expired watch is restarted
// with backoff.
func watchPods(ctx context.Context, c *kube.Client, namespace string, s refresher, log *slog.Logger) {
	var last time.Time
	refresh := func(why string, pod *kube.Pod) {
		if time.Since(last) < refreshInterval {
			return
		}
		last = time.Now()
		log.Info(why+"; resolving the target again", "pod", namespace+"/"+pod.Metadata.Name)
		s.Refresh()
	}
	ready := map[string]bool{} // pods seen Running and Ready, kept across re-watches
	backoff := forward.Backoff{}
	for attempt := 0; ctx.Err() == nil; {
		events, err := c.WatchPods(ctx, namespace, "", "")
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			delay := backoff.Delay(attempt, rand.Float64())
			attempt++
			log.Debug("watch pods failed; retrying", "err", err, "delay", delay)
			if !sleepCtx(ctx, delay) {
				return
			}
			continue
		}
		attempt = 0
		for ev := range events {
			if ev.Type == kube.EventError {
				if !errors.Is(ev.Err, kube.ErrResourceExpired) {
					log.Debug("watch pods ended", "err", ev.Err)
				}
				continue // the channel closes next; watch again
			}
			if ev.Pod == nil {
				continue
			}
			name := ev.Pod.Metadata.Name
			gone := ev.Type == kube.EventDeleted || ev.Pod.Terminating() || !ev.Pod.Ready()
			nowReady := !gone && ev.Pod.Running()
			becameReady := nowReady && !ready[name]
			if nowReady {
				ready[name] = true
			} else {
				delete(ready, name)
			}
			st := s.Status()
			switch {
			case st.State == forward.StateReady && name == st.Pod && gone:
				refresh("pod is going away", ev.Pod)
			case st.State != forward.StateReady && st.State != forward.StateClosed && becameReady:
				refresh("a pod became ready", ev.Pod)
			}
		}
	}
}

// sleepCtx waits for d or the end of ctx; false if ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
