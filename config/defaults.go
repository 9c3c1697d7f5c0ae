package config

import (
	"path/filepath"
	"slices"
	"strings"
)

// DefaultNamespace is the namespace used when neither the file nor the
// kubeconfig context names one.
const DefaultNamespace = "default"

// Defaults is what the file does not say and the kubeconfig does. The zero
// value is usable: no current context, namespace "default".
type Defaults struct {
	// Context is the kubeconfig's current-context, used by tunnels for
	// which neither the tunnel nor the file sets a context.
	Context string
	// Namespace returns the namespace of a kubeconfig context, used by
	// tunnels for which neither the tunnel nor the file sets a namespace.
	// Nil, or an empty result, means "default".
	Namespace func(context string) string
	// Override, when not empty, is the context of every tunnel, whatever
	// the file and the tunnel say: the CLI's --context flag. Namespaces
	// the file does not set then come from this context.
	Override string
	// Transport, when not empty, is the transport of every tunnel,
	// whatever the file says: the CLI's --transport flag.
	Transport string
	// NoWebSocket makes auto mean spdy (KUBECTL_PORT_FORWARD_WEBSOCKETS=false,
	// as kubectl reads it); a tunnel that asks for websocket keeps it.
	NoWebSocket bool
}

// Specs returns one Spec per port of every enabled tunnel, every default
// applied: a tunnel's context is Defaults.Override, else its own, else the
// file's, else Defaults.Context; its namespace is its own, else the file's,
// else Defaults.Namespace of its context, else "default"; its address is
// its own, else the file's, else localhost; its transport is
// Defaults.Transport, else its own, else the file's, else auto (spdy
// instead of auto with Defaults.NoWebSocket). Specs are sorted by tunnel name,
// then in the order the ports are written. Specs of a file are distinct.
// Session.Context is empty only when nothing names a context (no
// current-context in the kubeconfig): the caller reports that.
func (f *File) Specs(d Defaults) []Spec {
	var specs []Spec
	for _, t := range f.Tunnels {
		if t.Disabled {
			continue
		}
		session := Session{
			Context:   firstNonEmpty(d.Override, t.Context, f.Context, d.Context),
			Namespace: firstNonEmpty(t.Namespace, f.Namespace),
			Target:    t.Target,
			Transport: firstNonEmpty(d.Transport, t.Transport, f.Transport, TransportAuto),
		}
		if session.Transport == TransportAuto && d.NoWebSocket {
			session.Transport = TransportSPDY
		}
		if session.Namespace == "" && d.Namespace != nil {
			session.Namespace = d.Namespace(session.Context)
		}
		if session.Namespace == "" {
			session.Namespace = DefaultNamespace
		}
		address := strings.Join(effectiveAddress(f, t), ",")
		for _, port := range t.Ports {
			specs = append(specs, Spec{
				Tunnel:    t.Name,
				Session:   session,
				Address:   address,
				LocalPort: port.Local,
				Remote:    port.Remote,
			})
		}
	}
	slices.SortStableFunc(specs, func(a, b Spec) int { return strings.Compare(a.Tunnel, b.Tunnel) })
	return specs
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// StateDir is the directory that tunnels keeps next to a tunnels file: the
// local ports it chose and the control socket of its `tunnels up`.
const StateDir = ".tunnels"

// StateDirOf returns the StateDir of the tunnels file at path.
func StateDirOf(path string) string { return filepath.Join(filepath.Dir(path), StateDir) }
