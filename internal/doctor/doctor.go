// Package doctor checks what the tunnels of a file need from their clusters: the API server, permissions, a transport that negotiates, and a pod to forward to.
package doctor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/kube"
)

// Result is the outcome of one check.
type Result string

// The results of a check.
const (
	OK   Result = "ok"
	Fail Result = "FAIL"
	// Skip: not tried, because a check it depends on failed.
	Skip Result = "skip"
)

// Check is one row of the report.
type Check struct {
	Context   string `json:"context"`
	Namespace string `json:"namespace,omitempty"`
	Tunnel    string `json:"tunnel,omitempty"`
	Check     string `json:"check"`
	Result    Result `json:"result"`
	Detail    string `json:"detail,omitempty"`
	// Fix says what to do about a failed check: the RBAC rule to add, the
	// setting to change.
	Fix string `json:"fix,omitempty"`
}

// Client is what the checks need of one kube context's API server.
// *kube.Client provides it through KubeClient.
type Client interface {
	ServerVersion(ctx context.Context) (string, error)
	WhoAmI(ctx context.Context) (string, error)
	CanI(ctx context.Context, a kube.Access) (kube.AccessReview, error)
	Resolve(ctx context.Context, namespace string, t config.Target, remotes []config.RemotePort, prefer string) (*kube.Resolved, error)
	forward.Upgrader
}

// KubeClient adapts a *kube.Client to Client.
func KubeClient(c *kube.Client) Client { return kubeClient{c} }

type kubeClient struct{ *kube.Client }

func (k kubeClient) Upgrade(ctx context.Context, method, path string, h http.Header) (net.Conn, http.Header, error) {
	conn, err := k.Client.Upgrade(ctx, method, path, h)
	if err != nil {
		return nil, nil, err
	}
	return conn, conn.Header, nil
}

// Options configures Run.
type Options struct {
	// Clients returns the client of a kube context. Required.
	Clients func(context string) (Client, error)
	// DialTimeout bounds each transport's upgrade. Default 10s.
	DialTimeout time.Duration
}

// tunnelInfo is one tunnel of the file as the checks need it.
type tunnelInfo struct {
	name    string
	session config.Session
	remotes []config.RemotePort
}

// Run checks specs, context by context (sorted), and returns every check
// made: per context the API server; per namespace every permission its
// tunnels' targets need; per tunnel the pod it resolves to and which
// transports negotiate.
func Run(ctx context.Context, specs []config.Spec, o Options) []Check {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	byContext := map[string][]*tunnelInfo{}
	seen := map[string]*tunnelInfo{}
	for _, s := range specs {
		t := seen[s.Tunnel]
		if t == nil {
			t = &tunnelInfo{name: s.Tunnel, session: s.Session}
			seen[s.Tunnel] = t
			byContext[s.Session.Context] = append(byContext[s.Session.Context], t)
		}
		if !slices.Contains(t.remotes, s.Remote) {
			t.remotes = append(t.remotes, s.Remote)
		}
	}
	var out []Check
	for _, name := range slices.Sorted(mapsKeys(byContext)) {
		out = append(out, checkContext(ctx, name, byContext[name], o)...)
	}
	return out
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// checkContext runs the checks of one context's tunnels.
func checkContext(ctx context.Context, name string, tunnels []*tunnelInfo, o Options) []Check {
	row := func(ns, tunnel, check string) Check {
		return Check{Context: name, Namespace: ns, Tunnel: tunnel, Check: check}
	}
	api := row("", "", "api server")
	c, err := o.Clients(name)
	if err != nil {
		api.Result, api.Detail = Fail, err.Error()
		api.Fix = "check the context's name (the file's context, or --context) and its entry in the kubeconfig"
		return []Check{api}
	}
	version, err := c.ServerVersion(ctx)
	if err != nil {
		api.Result, api.Detail = Fail, err.Error()
		api.Fix = "check the server address in the kubeconfig and the network to it; HTTPS_PROXY/NO_PROXY or the cluster's proxy-url apply"
		if errors.Is(err, kube.ErrUnauthorized) {
			api.Fix = "log in again: the API server did not accept the kubeconfig's credentials"
		}
		return []Check{api}
	}
	api.Result, api.Detail = OK, "reachable, "+version
	out := []Check{api}
	user, _ := c.WhoAmI(ctx)

	// Permissions, per namespace: the union of what its tunnels need.
	slices.SortFunc(tunnels, func(a, b *tunnelInfo) int {
		return cmp.Or(cmp.Compare(a.session.Namespace, b.session.Namespace), cmp.Compare(a.name, b.name))
	})
	for i := 0; i < len(tunnels); {
		ns := tunnels[i].session.Namespace
		var need []kube.Access
		for ; i < len(tunnels) && tunnels[i].session.Namespace == ns; i++ {
			for _, a := range kube.NeededAccess(ns, tunnels[i].session.Target) {
				if !slices.Contains(need, a) {
					need = append(need, a)
				}
			}
		}
		first := len(out)
		missing := map[string][]string{} // resource name -> verbs denied
		for _, a := range need {
			r := row(ns, "", "can "+a.String())
			rev, err := c.CanI(ctx, a)
			switch {
			case err != nil:
				r.Result, r.Detail = Fail, err.Error()
			case rev.Allowed:
				r.Result, r.Detail = OK, "allowed"
			default:
				r.Result, r.Detail = Fail, cmp.Or(rev.Reason, "denied")
				missing[a.ResourceName()] = append(missing[a.ResourceName()], a.Verb)
			}
			out = append(out, r)
		}
		// One rule per resource, with every verb it lacks, on each of its
		// denied rows.
		for j, a := range need {
			if verbs := missing[a.ResourceName()]; out[first+j].Result == Fail && len(verbs) > 0 {
				out[first+j].Fix = rbacFix(a, verbs, user)
			}
		}
	}

	slices.SortFunc(tunnels, func(a, b *tunnelInfo) int { return cmp.Compare(a.name, b.name) })
	for _, t := range tunnels {
		out = append(out, checkTunnel(ctx, c, name, t, o)...)
	}
	return out
}

// rbacFix is the RBAC rule that grants verbs on a's resource in its
// namespace, as a Role rule and the kubectl commands that make and bind it.
func rbacFix(a kube.Access, verbs []string, user string) string {
	subject := "--user=" + cmp.Or(user, "YOU")
	role := "tunnels-" + strings.NewReplacer("/", "-", ".", "-").Replace(a.ResourceName())
	quoted := make([]string, len(verbs))
	for i, v := range verbs {
		quoted[i] = fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf(`add the RBAC rule {apiGroups: [%q], resources: [%q], verbs: [%s]} in namespace %q: kubectl create role %s -n %s --verb=%s --resource=%s && kubectl create rolebinding %s -n %s --role=%s %s`,
		a.Group, a.Resource+cond(a.Subresource != "", "/"+a.Subresource, ""), strings.Join(quoted, ", "), a.Namespace,
		role, a.Namespace, strings.Join(verbs, ","), a.ResourceName(), role, a.Namespace, role, subject)
}

func cond(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

// checkTunnel resolves a tunnel's target and tries both transports on the
// pod it resolves to.
func checkTunnel(ctx context.Context, c Client, context string, t *tunnelInfo, o Options) []Check {
	ns := t.session.Namespace
	pod := Check{Context: context, Namespace: ns, Tunnel: t.name, Check: "pod for " + t.session.Target.String()}
	res, err := c.Resolve(ctx, ns, t.session.Target, t.remotes, "")
	tr := Check{Context: context, Namespace: ns, Tunnel: t.name, Check: "transport " + t.session.Transport}
	if err != nil {
		pod.Result, pod.Detail = Fail, err.Error()
		switch {
		case errors.Is(err, kube.ErrForbidden):
			pod.Fix = "grant the permissions failed above"
		case errors.Is(err, kube.ErrNotFound):
			pod.Fix = "check the target's name and namespace (and the context)"
		default:
			pod.Fix = "start a Running, Ready pod for the target, with the ports the tunnel names"
		}
		tr.Result, tr.Detail = Skip, "no pod to try"
		return []Check{pod, tr}
	}
	pod.Result, pod.Detail = OK, res.Pod
	tr.Result, tr.Detail, tr.Fix = negotiate(ctx, c, ns, res.Pod, forward.Transport(t.session.Transport), o)
	return []Check{pod, tr}
}

// negotiate tries WebSocket and SPDY on pod and says whether the tunnel's
// transport setting works with what negotiated.
func negotiate(ctx context.Context, c Client, ns, pod string, setting forward.Transport, o Options) (Result, string, string) {
	works := map[forward.Transport]error{}
	var parts []string
	for _, tr := range []forward.Transport{forward.TransportWebSocket, forward.TransportSPDY} {
		conn, err := forward.Dial(ctx, c, ns, pod, forward.Options{Transport: tr, DialTimeout: o.DialTimeout, PingInterval: -1})
		if err == nil {
			conn.Close()
			parts = append(parts, string(tr)+" ok")
		} else {
			parts = append(parts, fmt.Sprintf("%s failed: %v", tr, err))
		}
		works[tr] = err
	}
	detail := strings.Join(parts, "; ")
	wsErr, spdyErr := works[forward.TransportWebSocket], works[forward.TransportSPDY]
	switch setting {
	case forward.TransportWebSocket:
		if wsErr == nil {
			return OK, "uses websocket; " + detail, ""
		}
		if spdyErr == nil {
			return Fail, detail, "set transport: auto (or spdy) for this tunnel"
		}
	case forward.TransportSPDY:
		if spdyErr == nil {
			return OK, "uses spdy; " + detail, ""
		}
		if wsErr == nil {
			return Fail, detail, "set transport: auto (or websocket) for this tunnel"
		}
	default:
		if wsErr == nil {
			return OK, "auto uses websocket; " + detail, ""
		}
		if spdyErr == nil {
			if forward.UpgradeRefused(wsErr) {
				return OK, "auto falls back to spdy; " + detail, ""
			}
			return Fail, detail, "auto falls back to spdy only when the websocket upgrade is refused; set transport: spdy for this tunnel"
		}
	}
	fix := "see the permission rows, and check for a proxy in the way"
	if errors.Is(wsErr, kube.ErrForbidden) || errors.Is(spdyErr, kube.ErrForbidden) {
		fix = "grant get and create on pods/portforward (see the permission rows)"
	}
	return Fail, detail, fix
}
