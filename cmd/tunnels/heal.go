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
// so a busy namespace does not turn into a stream of re-resolutions; a
// refresh asked for within it is made at its end, not dropped.
const refreshInterval = time.Second

// minWatchGap is the least time between two starts of the pod watch, so a
// watch that ends at once (a proxy that cuts streams, say) cannot spin.
const minWatchGap = time.Second

// refresher is the part of a forward.Session the pod watch drives.
type refresher interface {
	Status() forward.SessionStatus
	Refresh()
	PodDeleted(pod, uid string)
}

// podWatch follows the pods of a session's namespace and asks the session
// to resolve its target again:
//   - when the pod it is connected to is deleted, starts terminating or
//     stops being Ready, so it moves to a replacement before a connection
//     fails (and again when a pod becomes Ready, if no replacement was
//     Ready then); pods are told apart by UID, so a pod re-created under
//     the same name (a StatefulSet's) is a replacement, not the same pod;
//   - when a pod becomes Ready while the session waits because its target
//     had no Ready pod, so a waiting tunnel starts at once instead of after
//     its backoff. Other failures (forbidden, say) keep their backoff.
type podWatch struct {
	client    *kube.Client
	namespace string
	s         refresher
	log       *slog.Logger

	ready   map[string]bool // UIDs of pods seen Running and Ready, kept across re-watches
	dying   string          // the connected pod, seen going away
	last    time.Time       // the last refresh asked for
	pending *time.Timer     // a refresh deferred to the end of refreshInterval
}

// run watches until ctx ends, restarting a watch that fails or ends.
func (w *podWatch) run(ctx context.Context) {
	w.ready = map[string]bool{}
	w.pending = time.NewTimer(time.Hour)
	w.pending.Stop()
	defer w.pending.Stop()
	backoff := forward.Backoff{}
	attempt := 0
	for {
		started := time.Now()
		events, err := w.client.WatchPods(ctx, w.namespace, "", "")
		delivered := false
		if err == nil {
			delivered = w.follow(ctx, events)
		}
		if ctx.Err() != nil {
			return
		}
		// A watch that delivered nothing and ended soon is failing: back off.
		delay := minWatchGap - time.Since(started)
		if !delivered && time.Since(started) < 10*time.Second {
			delay = max(delay, backoff.Delay(attempt, rand.Float64()))
			attempt++
			w.log.Debug("watch pods failed; retrying", "err", err, "delay", delay)
		} else {
			attempt = 0
		}
		if delay > 0 && !sleepCtx(ctx, delay) {
			return
		}
	}
}

// follow handles one watch's events until it ends; it reports whether any
// pod event arrived.
func (w *podWatch) follow(ctx context.Context, events <-chan kube.PodEvent) (delivered bool) {
	for {
		select {
		case <-ctx.Done():
			return delivered
		case <-w.pending.C:
			w.refreshNow()
		case ev, ok := <-events:
			if !ok {
				return delivered
			}
			if ev.Type == kube.EventError {
				if !errors.Is(ev.Err, kube.ErrResourceExpired) {
					w.log.Debug("watch pods ended", "err", ev.Err)
				}
				continue // the channel closes next; watch again
			}
			if ev.Pod == nil {
				continue
			}
			delivered = true
			w.handle(ev)
		}
	}
}

func (w *podWatch) handle(ev kube.PodEvent) {
	name, uid := ev.Pod.Metadata.Name, ev.Pod.Metadata.UID
	gone := ev.Type == kube.EventDeleted || ev.Pod.Terminating() || !ev.Pod.Ready()
	nowReady := !gone && ev.Pod.Running()
	becameReady := nowReady && !w.ready[uid]
	if nowReady {
		w.ready[uid] = true
	} else {
		delete(w.ready, uid)
	}
	st := w.s.Status()
	if w.dying != "" && st.Pod != w.dying {
		w.dying = "" // the session has moved on
	}
	connected := st.State == forward.StateReady && name == st.Pod
	// A pod under the session's pod's name but with another UID means the
	// session's pod was deleted and re-created (the deletion's event may
	// have been missed across a re-watch).
	recreated := connected && st.UID != "" && uid != st.UID
	switch {
	case recreated:
		w.dying = name
		if nowReady {
			w.refresh("pod was re-created under its name", name)
		}
	case connected && ev.Type == kube.EventDeleted:
		// Nothing can serve through a deleted pod: new connections wait
		// for the next one. Not throttled: the session re-resolves once.
		w.dying = name
		w.log.Info("pod was deleted; resolving the target again", "pod", w.namespace+"/"+name)
		w.s.PodDeleted(name, uid)
	case connected && gone:
		w.dying = name
		w.refresh("pod is going away", name)
	case st.State == forward.StateReady && w.dying != "" && becameReady:
		w.refresh("a replacement pod became ready", name)
	case (st.State == forward.StateRetrying || st.State == forward.StateFailed) && becameReady && waitsForPod(st.Err):
		w.refresh("a pod became ready", name)
	}
}

// waitsForPod reports whether a session failed only for want of a pod.
func waitsForPod(err error) bool {
	return errors.Is(err, kube.ErrNoReadyPod) || errors.Is(err, kube.ErrNotFound) || errors.Is(err, kube.ErrPodNotReady)
}

// refresh asks the session to resolve again, at once or at the end of the
// current refreshInterval.
func (w *podWatch) refresh(why, pod string) {
	w.log.Info(why+"; resolving the target again", "pod", w.namespace+"/"+pod)
	if wait := refreshInterval - time.Since(w.last); wait > 0 {
		w.pending.Reset(wait)
		return
	}
	w.refreshNow()
}

func (w *podWatch) refreshNow() {
	w.last = time.Now()
	w.s.Refresh()
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
