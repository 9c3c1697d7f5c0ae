package tunnel

import (
	"fmt"

	"github.com/tunnels-dev/tunnels/config"
)

// sp builds a spec for tunnel forwarding local to remote, to pod/tunnel in
// namespace ns of context "kind", on localhost.
func sp(tunnel, ns string, local, remote int) config.Spec {
	return config.Spec{
		Tunnel:    tunnel,
		Session:   config.Session{Context: "kind", Namespace: ns, Target: config.Target{Kind: config.KindPod, Name: tunnel}},
		Address:   config.Localhost,
		LocalPort: local,
		Remote:    config.RemotePort{Number: remote},
	}
}

// names renders specs compactly: tunnel/namespace:local->remote.
func names(specs []config.Spec) []string {
	out := []string{}
	for _, s := range specs {
		out = append(out, fmt.Sprintf("%s/%s/%s/%s@%s:%d->%s", s.Tunnel, s.Session.Context, s.Session.Namespace, s.Session.Target, s.Address, s.LocalPort, s.Remote))
	}
	return out
}
