package main

import (
	"context"
	"net"
	"net/http"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/kube"
)

// resolver resolves a session's target with the kube client. A
// re-resolution keeps the session's current pod while it is still Ready, so
// that mapping a newly added port does not move the session's open
// connections to a newer pod.
func resolver(c *kube.Client, key config.Session) forward.ResolveFunc {
	return func(ctx context.Context, remotes []config.RemotePort, current string) (forward.Resolved, error) {
		r, err := c.ResolvePreferring(ctx, key.Namespace, key.Target, remotes, current)
		if err != nil {
			return forward.Resolved{}, err
		}
		return forward.Resolved{Pod: r.Pod, UID: r.UID, Ports: r.Ports}, nil
	}
}

// upgrader adapts *kube.Client to forward.Upgrader.
type upgrader struct{ c *kube.Client }

func (u upgrader) Upgrade(ctx context.Context, method, path string, h http.Header) (net.Conn, http.Header, error) {
	conn, err := u.c.Upgrade(ctx, method, path, h)
	if err != nil {
		return nil, nil, err
	}
	return conn, conn.Header, nil
}

// Reachable makes upgrader a forward.Prober.
func (u upgrader) Reachable(ctx context.Context) error { return u.c.Reachable(ctx) }
