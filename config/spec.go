// Package config parses and validates tunnels.yaml into comparable Spec values.
package config

import (
	"cmp"
	"strconv"
	"strings"
)

// Kind is the kind of object a tunnel targets.
type Kind string

// The target kinds a tunnel may name; exactly one is set per tunnel.
const (
	KindPod         Kind = "pod"
	KindService     Kind = "service"
	KindDeployment  Kind = "deployment"
	KindStatefulSet Kind = "statefulset"
	KindSelector    Kind = "selector"
)

// Target is what a tunnel forwards to. For KindSelector, Name holds the
// label selector in canonical form (terms sorted, no spaces).
type Target struct {
	Kind Kind
	Name string
}

// String renders the target the way kubectl names objects: pod/NAME,
// svc/NAME, deploy/NAME, sts/NAME, or selector/SELECTOR.
func (t Target) String() string {
	switch t.Kind {
	case KindPod:
		return "pod/" + t.Name
	case KindService:
		return "svc/" + t.Name
	case KindDeployment:
		return "deploy/" + t.Name
	case KindStatefulSet:
		return "sts/" + t.Name
	case KindSelector:
		return "selector/" + t.Name
	}
	return string(t.Kind) + "/" + t.Name
}

// Session identifies one port-forward session: every forward to the same
// target in the same namespace through the same kube context shares one SPDY
// connection to the pod the target resolves to.
type Session struct {
	Context   string // kubeconfig context; never empty after defaults are applied
	Namespace string
	Target    Target
	// Transport is how the session reaches the pod: TransportAuto,
	// TransportWebSocket or TransportSPDY; never empty after defaults.
	Transport string
}

// The transports a tunnel may ask for (the file's transport key).
const (
	// TransportAuto tries WebSocket and falls back to SPDY when the
	// WebSocket upgrade is refused; the default.
	TransportAuto = "auto"
	// TransportWebSocket is the SPDY protocol inside a WebSocket.
	TransportWebSocket = "websocket"
	// TransportSPDY is the SPDY/3.1 upgrade.
	TransportSPDY = "spdy"
)

// Transports lists the valid transport values.
var Transports = []string{TransportAuto, TransportWebSocket, TransportSPDY}

// RemotePort is a port inside the pod: a number, or a name that is resolved
// against the pod's container ports (or the service's ports) at connect time.
// Exactly one of Number and Name is set.
type RemotePort struct {
	Number int
	Name   string
}

// String returns the port as written in a port spec.
func (p RemotePort) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(p.Number)
}

// Spec is one forwarded port with every default applied. Specs are
// comparable: a reconciler tells an unchanged forward from a changed one with
// ==, and a file that omits a default equals one that spells it out.
type Spec struct {
	Tunnel  string
	Session Session
	// Address holds the listen addresses, comma-separated, in the order
	// written: "localhost" (127.0.0.1 and ::1, either may fail), or IPs.
	Address string
	// LocalPort is the local port; 0 asks for a free port chosen at start.
	LocalPort int
	Remote    RemotePort
}

// Addresses returns the listen addresses of the spec.
func (s Spec) Addresses() []string { return strings.Split(s.Address, ",") }

// Compare orders sessions by context, namespace and target, for display
// and for deterministic plans.
func (s Session) Compare(o Session) int {
	return cmp.Or(
		cmp.Compare(s.Context, o.Context),
		cmp.Compare(s.Namespace, o.Namespace),
		cmp.Compare(s.Target.Kind, o.Target.Kind),
		cmp.Compare(s.Target.Name, o.Target.Name),
		cmp.Compare(s.Transport, o.Transport),
	)
}

// Compare orders specs by tunnel, session, address, local port and remote
// port: a total order over every field, for display and for deterministic
// plans.
func (s Spec) Compare(o Spec) int {
	return cmp.Or(
		cmp.Compare(s.Tunnel, o.Tunnel),
		s.Session.Compare(o.Session),
		cmp.Compare(s.Address, o.Address),
		cmp.Compare(s.LocalPort, o.LocalPort),
		cmp.Compare(s.Remote.Number, o.Remote.Number),
		cmp.Compare(s.Remote.Name, o.Remote.Name),
	)
}
