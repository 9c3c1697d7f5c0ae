package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/kube"
)

// fakeClient is a Client whose targets have no Ready pod (unless ready is
// set, and then upgrades fail), and whose pod watches are channels the
// test feeds.
type fakeClient struct {
	mu       sync.Mutex
	resolves int                                        // Resolve calls
	watches  map[string]int                             // namespace → WatchPods calls
	open     map[string]int                             // namespace → watches not yet ended
	events   chan kube.PodEvent                         // every watch reads from it
	resolve  func() error                               // the error Resolve returns; nil: no Ready pod
	hold     func(ctx context.Context, t config.Target) // if set, Resolve calls it first, without the lock
	closed   bool
	ends     chan struct{} // a send ends one watch
	changed  chan struct{} // closed and replaced on every call
}

func newFakeClient() *fakeClient {
	return &fakeClient{watches: map[string]int{}, open: map[string]int{}, events: make(chan kube.PodEvent), ends: make(chan struct{}), changed: make(chan struct{})}
}

func (f *fakeClient) noteLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeClient) Resolve(ctx context.Context, namespace string, t config.Target, remotes []config.RemotePort, current string) (forward.Resolved, error) {
	if f.hold != nil {
		f.hold(ctx, t)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolves++
	f.noteLocked()
	if f.resolve != nil {
		if err := f.resolve(); err != nil {
			return forward.Resolved{}, err
		}
	}
	return forward.Resolved{}, fmt.Errorf("%s in %s: %w", t, namespace, kube.ErrNoReadyPod)
}

func (f *fakeClient) WatchPods(ctx context.Context, namespace string) (<-chan kube.PodEvent, error) {
	f.mu.Lock()
	f.watches[namespace]++
	f.open[namespace]++
	f.noteLocked()
	f.mu.Unlock()
	ch := make(chan kube.PodEvent)
	go func() {
		defer func() {
			f.mu.Lock()
			f.open[namespace]--
			f.noteLocked()
			f.mu.Unlock()
			close(ch)
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-f.ends:
				return
			case ev := <-f.events:
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, nil
}

func (f *fakeClient) Upgrade(context.Context, string, string, http.Header) (net.Conn, http.Header, error) {
	return nil, nil, errors.New("fake: no upgrades")
}

func (f *fakeClient) Reachable(context.Context) error { return nil }

func (f *fakeClient) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
}

// snapshot returns the counters under the lock.
func (f *fakeClient) snapshot() (resolves int, watches, open map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, o := map[string]int{}, map[string]int{}
	for k, v := range f.watches {
		w[k] = v
	}
	for k, v := range f.open {
		o[k] = v
	}
	return f.resolves, w, o
}

func fmtForbidden() error {
	return fmt.Errorf("get pods in dev: %w", kube.ErrForbidden)
}

func fmtNamespaceMissing() error {
	return fmt.Errorf("resolve pod/db in namespace \"dev\": %w", kube.ErrNamespaceNotFound)
}
