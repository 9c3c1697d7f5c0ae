package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/kube"
)

// Client is what the applier needs of the API server of one kube context:
// resolve a target to a pod, watch a namespace's pods, and open the
// port-forward upgrades. *kube.Client does it through KubeClient; tests use
// fakes.
type Client interface {
	// Resolve resolves target to a Ready pod and maps remotes to port
	// numbers on it, keeping current while it is still a good choice.
	Resolve(ctx context.Context, namespace string, target config.Target, remotes []config.RemotePort, current string) (forward.Resolved, error)
	// WatchPods watches the pods of namespace from now on; the channel is
	// closed when the watch ends.
	WatchPods(ctx context.Context, namespace string) (<-chan kube.PodEvent, error)
	// Upgrade performs an HTTP upgrade (forward.Upgrader).
	Upgrade(ctx context.Context, method, path string, h http.Header) (net.Conn, http.Header, error)
	// Reachable reports whether the API server accepts connections
	// (forward.Prober).
	Reachable(ctx context.Context) error
	// Close releases idle connections.
	Close()
}

// Clients returns the client of a kube context.
type Clients func(context string) (Client, error)

// KubeClients returns the clients of kc's contexts, made with opts.
func KubeClients(kc *kube.Kubeconfig, opts kube.ClientOptions) Clients {
	return func(name string) (Client, error) {
		rc, err := kc.RestConfig(name)
		if err != nil {
			return nil, err
		}
		c, err := kube.NewClient(rc, opts)
		if err != nil {
			return nil, fmt.Errorf("context %q: %w", name, err)
		}
		return KubeClient(c), nil
	}
}

// KubeClient adapts a *kube.Client to Client.
func KubeClient(c *kube.Client) Client { return kubeClient{c} }

type kubeClient struct{ c *kube.Client }

// Resolve keeps the session's current pod while it is still Ready, so that
// mapping a newly added port does not move the session's open connections
// to a newer pod.
func (k kubeClient) Resolve(ctx context.Context, namespace string, t config.Target, remotes []config.RemotePort, current string) (forward.Resolved, error) {
	r, err := k.c.Resolve(ctx, namespace, t, remotes, current)
	if err != nil {
		return forward.Resolved{}, err
	}
	return forward.Resolved{Pod: r.Pod, UID: r.UID, Ports: r.Ports, NotReady: r.NotReady}, nil
}

func (k kubeClient) WatchPods(ctx context.Context, namespace string) (<-chan kube.PodEvent, error) {
	return k.c.WatchPods(ctx, namespace, "", "")
}

func (k kubeClient) Upgrade(ctx context.Context, method, path string, h http.Header) (net.Conn, http.Header, error) {
	conn, err := k.c.Upgrade(ctx, method, path, h)
	if err != nil {
		return nil, nil, err
	}
	return conn, conn.Header, nil
}

func (k kubeClient) Selector(ctx context.Context, namespace string, t config.Target) (string, error) {
	return k.c.Selector(ctx, namespace, t)
}

func (k kubeClient) Reachable(ctx context.Context) error { return k.c.Reachable(ctx) }

func (k kubeClient) Close() { k.c.Close() }

// resolver resolves key's target with c.
func resolver(c Client, key config.Session) forward.ResolveFunc {
	return func(ctx context.Context, remotes []forward.RemotePort, current string) (forward.Resolved, error) {
		rs := make([]config.RemotePort, len(remotes))
		for i, r := range remotes {
			rs[i] = config.RemotePort(r)
		}
		return c.Resolve(ctx, key.Namespace, key.Target, rs, current)
	}
}

// discard is the default logger.
var discard = slog.New(slog.DiscardHandler)
