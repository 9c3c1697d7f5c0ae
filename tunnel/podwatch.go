package tunnel

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/kube"
)

// refreshInterval caps how often a watch asks one session to resolve again,
// so a busy namespace does not turn into a stream of re-resolutions; a
// refresh asked for within it is made at its end, not dropped.
const refreshInterval = time.Second

// selectorTTL is how long the pod watch trusts the selector it read for a
// service or workload target before reading it again, so a namespace where
// pods come and go costs one GET a target every selectorTTL at most. A
// selector changed meanwhile may make a waiting tunnel miss a pod's event;
// its own backoff (30 s at most) then finds the pod.
const selectorTTL = 10 * time.Second

// selectorTimeout bounds reading a target's selector: the watch handles no
// other event meanwhile.
const selectorTimeout = 5 * time.Second

// minWatchGap is the least time between two starts of the pod watch, so a
// watch that ends at once (a proxy that cuts streams, say) cannot spin.
const minWatchGap = time.Second

// refresher is the part of a forward.Session the pod watch drives.
type refresher interface {
	Status() forward.SessionStatus
	Refresh()
	PodDeleted(pod, uid string)
}

// podWatch follows the pods of one namespace through one kube context, for
// every session there (one watch on the API server, however many sessions),
// and asks each session to resolve its target again:
//   - when the pod it is connected to is deleted, starts terminating or
//     stops being Ready, so it moves to a replacement before a connection
//     fails (and again when a pod becomes Ready, if no replacement was
//     Ready then); pods are told apart by UID, so a pod re-created under
//     the same name (a StatefulSet's) is a replacement, not the same pod;
//   - when a pod becomes Ready while the session waits because its target
//     had no Ready pod, so a waiting tunnel starts at once instead of after
//     its backoff. Other failures (forbidden, say) keep their backoff.
//
// A session hears only of the pods its target may resolve to: a pod target
// of its pod's name, a selector target of the pods its selector matches,
// and a service or workload target of the pods its selector matches, read
// from the API server (see selectorReader) and kept for selectorTTL.
type podWatch struct {
	client    Client
	namespace string
	log       *slog.Logger

	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	// mu guards subs: the applier adds and removes subscribers while run
	// reads them. A leaf lock: no session is called while it is held.
	mu   sync.Mutex
	subs map[refresher]*subscriber

	// Owned by the goroutine that runs the watch.
	ready map[string]bool // UIDs of pods seen Running and Ready, kept across re-watches
	timer *time.Timer     // fires at the earliest deferred refresh
}

// subscriber is one session of a podWatch. Its fields other than s, target
// and log are owned by the watch's goroutine.
type subscriber struct {
	s      refresher
	target config.Target // zero: unknown, every pod concerns it
	log    *slog.Logger

	selector   string    // a service's or workload's selector, read at selectorAt
	selectorAt time.Time // zero: not read yet
	selectErr  error     // why reading it failed

	dying string    // the connected pod, seen going away
	last  time.Time // the last refresh asked for
	due   time.Time // a refresh deferred to the end of refreshInterval; zero if none
}

func newPodWatch(c Client, namespace string, log *slog.Logger) *podWatch {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &podWatch{client: c, namespace: namespace, log: log, subs: map[refresher]*subscriber{}, ready: map[string]bool{}, timer: t}
}

// start runs the watch until ctx ends or stop is called.
func (w *podWatch) start(ctx context.Context) {
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	go w.run(ctx)
}

// stop ends the watch and waits for it.
func (w *podWatch) stop() {
	w.cancel()
	<-w.done
}

// add subscribes s, the session of target; log carries its tunnel and
// target.
func (w *podWatch) add(s refresher, target config.Target, log *slog.Logger) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.subs[s] = &subscriber{s: s, target: target, log: log}
}

// remove unsubscribes s and reports how many subscribers are left.
func (w *podWatch) remove(s refresher) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.subs, s)
	return len(w.subs)
}

func (w *podWatch) subscribers() []*subscriber {
	w.mu.Lock()
	defer w.mu.Unlock()
	subs := make([]*subscriber, 0, len(w.subs))
	for _, sub := range w.subs {
		subs = append(subs, sub)
	}
	return subs
}

// run watches until ctx ends, restarting a watch that fails or ends.
func (w *podWatch) run(ctx context.Context) {
	defer close(w.done)
	defer w.timer.Stop()
	backoff := forward.Backoff{}
	attempt := 0
	for {
		started := time.Now()
		events, err := w.client.WatchPods(ctx, w.namespace)
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
			w.log.Debug("watch of the pods in "+w.namespace+" failed; retrying in "+delay.Round(time.Millisecond).String(), "err", err)
		} else {
			attempt = 0
		}
		if delay > 0 && !w.sleep(ctx, delay) {
			return
		}
	}
}

// sleep waits for d or the end of ctx, making the deferred refreshes that
// fall due meanwhile; false if ctx ended.
func (w *podWatch) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-w.timer.C:
			w.refreshDue()
		case <-t.C:
			return true
		}
	}
}

// follow handles one watch's events until it ends; it reports whether any
// pod event arrived.
func (w *podWatch) follow(ctx context.Context, events <-chan kube.PodEvent) (delivered bool) {
	for {
		select {
		case <-ctx.Done():
			// The watch ends with ctx: wait for its channel to close, so
			// that when stop returns the request to the API server is over.
			for range events {
			}
			return delivered
		case <-w.timer.C:
			w.refreshDue()
		case ev, ok := <-events:
			if !ok {
				return delivered
			}
			if ev.Type == kube.EventError {
				if !errors.Is(ev.Err, kube.ErrResourceExpired) {
					w.log.Debug("watch of the pods in "+w.namespace+" ended", "err", ev.Err)
				}
				continue // the channel closes next; watch again
			}
			if ev.Pod == nil {
				continue
			}
			delivered = true
			w.handle(ctx, ev)
		}
	}
}

// handle passes one pod event to every subscriber.
func (w *podWatch) handle(ctx context.Context, ev kube.PodEvent) {
	name, uid := ev.Pod.Metadata.Name, ev.Pod.Metadata.UID
	gone := ev.Type == kube.EventDeleted || ev.Pod.Terminating() || !ev.Pod.Ready()
	nowReady := !gone && ev.Pod.Running()
	becameReady := nowReady && !w.ready[uid]
	if nowReady {
		w.ready[uid] = true
	} else {
		delete(w.ready, uid)
	}
	e := podChange{typ: ev.Type, name: name, uid: uid, labels: ev.Pod.Metadata.Labels, gone: gone, nowReady: nowReady, becameReady: becameReady}
	for _, sub := range w.subscribers() {
		w.handleFor(ctx, sub, e)
	}
	w.arm()
}

// podChange is a pod event as the subscribers see it.
type podChange struct {
	typ, name, uid              string
	labels                      map[string]string
	gone, nowReady, becameReady bool
}

func (w *podWatch) handleFor(ctx context.Context, sub *subscriber, e podChange) {
	st := sub.s.Status()
	if sub.dying != "" && st.Pod != sub.dying {
		sub.dying = "" // the session has moved on
	}
	connected := st.State == forward.StateReady && e.name == st.Pod
	// A pod under the session's pod's name but with another UID means the
	// session's pod was deleted and re-created (the deletion's event may
	// have been missed across a re-watch).
	recreated := connected && st.UID != "" && e.uid != st.UID
	switch {
	case recreated:
		sub.dying = e.name
		if e.nowReady {
			w.refresh(sub, "pod was re-created under its name", e.name)
		}
	case connected && e.typ == kube.EventDeleted:
		// Nothing can serve through a deleted pod: new connections wait
		// for the next one. Not throttled: the session re-resolves once.
		sub.dying = e.name
		sub.log.Info("pod was deleted; resolving the target again", "pod", w.namespace+"/"+e.name)
		sub.s.PodDeleted(e.name, e.uid)
	case connected && e.gone:
		sub.dying = e.name
		w.refresh(sub, "pod is going away", e.name)
	// Last, as it may ask the API server: is the pod one the target may
	// resolve to?
	case st.State == forward.StateReady && sub.dying != "" && e.becameReady && w.concerns(ctx, sub, e):
		w.refresh(sub, "a replacement pod became ready", e.name)
	case (st.State == forward.StateRetrying || st.State == forward.StateFailed) && e.becameReady && waitsForPod(st.Err) && (errors.Is(st.Err, kube.ErrNamespaceNotFound) || w.concerns(ctx, sub, e)):
		// A Ready pod in a namespace that was missing shows it exists now:
		// the session leaves failed and, if its target is not there yet,
		// backs off as usual.
		w.refresh(sub, "a pod became ready", e.name)
	}
}

// selectorReader is implemented by a Client that can read the selector of
// a target's pods (kubeClient, with kube.Client.Selector). Without it, a
// service or workload target hears of every pod of its namespace.
type selectorReader interface {
	Selector(ctx context.Context, namespace string, t config.Target) (string, error)
}

// concerns reports whether the pod of e is one sub's target may resolve to.
// When the target's selector cannot be read for a reason a pod event could
// change (the API server did not answer, say), every pod concerns it.
func (w *podWatch) concerns(ctx context.Context, sub *subscriber, e podChange) bool {
	switch sub.target.Kind {
	case "":
		return true
	case config.KindPod:
		return e.name == sub.target.Name
	case config.KindSelector:
		ok, err := config.MatchSelector(sub.target.Name, e.labels)
		return ok || err != nil
	}
	r, ok := w.client.(selectorReader)
	if !ok {
		return true
	}
	if sub.selectorAt.IsZero() || time.Since(sub.selectorAt) >= selectorTTL {
		rctx, cancel := context.WithTimeout(ctx, selectorTimeout)
		sub.selector, sub.selectErr = r.Selector(rctx, w.namespace, sub.target)
		cancel()
		sub.selectorAt = time.Now()
		if sub.selectErr != nil {
			sub.log.Debug("cannot read the selector of the target", "err", sub.selectErr)
		}
	}
	if err := sub.selectErr; err != nil {
		// A missing service or workload, or one that selects nothing, is
		// not cured by a pod: the session's backoff finds it once it is.
		return !errors.Is(err, kube.ErrNotFound) && !errors.Is(err, kube.ErrNoReadyPod)
	}
	ok, err := config.MatchSelector(sub.selector, e.labels)
	return ok || err != nil
}

// waitsForPod reports whether a session failed only for want of a pod: a
// pod becoming Ready in its namespace is worth a resolve then, even for a
// failed session whose namespace was missing (a Ready pod there means it
// exists now).
func waitsForPod(err error) bool {
	return errors.Is(err, kube.ErrNoReadyPod) || errors.Is(err, kube.ErrNotFound) || errors.Is(err, kube.ErrPodNotReady) || errors.Is(err, kube.ErrNamespaceNotFound)
}

// refresh asks sub's session to resolve again, at once or at the end of
// its current refreshInterval. A refresh already deferred is left as it
// is: made later, it sees this pod too.
func (w *podWatch) refresh(sub *subscriber, why, pod string) {
	if !sub.due.IsZero() {
		return
	}
	sub.log.Info(why+"; resolving the target again", "pod", w.namespace+"/"+pod)
	now := time.Now()
	if next := sub.last.Add(refreshInterval); now.Before(next) {
		sub.due = next
		return
	}
	sub.due = time.Time{}
	sub.last = now
	sub.s.Refresh()
}

// refreshDue makes the deferred refreshes that are due, and re-arms the
// timer for the next one.
func (w *podWatch) refreshDue() {
	now := time.Now()
	for _, sub := range w.subscribers() {
		if !sub.due.IsZero() && !now.Before(sub.due) {
			sub.due = time.Time{}
			sub.last = now
			sub.s.Refresh()
		}
	}
	w.arm()
}

// arm sets the timer to the earliest deferred refresh, if any.
func (w *podWatch) arm() {
	var next time.Time
	for _, sub := range w.subscribers() {
		if !sub.due.IsZero() && (next.IsZero() || sub.due.Before(next)) {
			next = sub.due
		}
	}
	w.timer.Stop()
	if !next.IsZero() {
		w.timer.Reset(time.Until(next))
	}
}
