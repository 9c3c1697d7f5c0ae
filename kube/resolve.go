package kube

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tunnels-dev/tunnels/config"
)

// Resolution failures, for errors.Is; the errors name the object and say why.
var (
	// ErrPodNotReady: a pod target is not Running, or is terminating.
	ErrPodNotReady = errors.New("pod not ready")
	// ErrNoReadyPod: no pod behind a service, workload or selector is Running
	// and Ready and not terminating.
	ErrNoReadyPod = errors.New("no ready pod")
	// ErrPortNotFound: a remote port names no port of the service or pod.
	ErrPortNotFound = errors.New("port not found")
	// ErrUDPPort: the remote port is UDP only; port-forward carries TCP.
	ErrUDPPort = errors.New("udp port")
	// ErrNamespaceNotFound: the target's namespace does not exist. Unlike
	// a missing pod, which a rollout may bring, this waits for a person.
	ErrNamespaceNotFound = errors.New("namespace not found")
)

// Resolved is the pod a target resolves to now.
type Resolved struct {
	Pod   string // pod name
	UID   string // pod UID
	Ports []int  // container port numbers, in the order of the remotes asked
	// NotReady is set for a pod target that is Running but not Ready: it
	// is forwarded to all the same, as kubectl does, since a pod that is
	// not Ready is often the one to debug.
	NotReady bool
}

// Resolve picks the pod a target forwards to and maps the remote ports to
// container ports, with kubectl's rules (docs/protocol.md §11): a pod target must
// be Running and not terminating, Ready or not (Resolved.NotReady); a service, deployment, statefulset
// or selector resolves to its newest Running and Ready pod that is not
// terminating; a service port (number or name) maps through its targetPort
// to a container port of that pod; UDP-only ports are refused.
//
// For a service, deployment, statefulset or selector target it keeps the
// pod named prefer ("" for none) while that pod is still one of the
// target's Running and Ready pods: a tunnel that re-resolves (to map a
// newly added port, say) stays on the pod its open connections use rather
// than moving to a newer one.
//
// When the target is not found, or no pod matches it, Resolve asks whether
// the namespace exists, and if the API server says it does not, the error
// matches ErrNamespaceNotFound instead. The API server does not say so
// itself: a list of pods in a missing namespace is an empty list, and a
// GET of a pod or service there a 404 for that object.
func (c *Client) Resolve(ctx context.Context, namespace string, t config.Target, remotes []config.RemotePort, prefer string) (*Resolved, error) {
	what := fmt.Sprintf("resolve %s in namespace %q", t, namespace)
	r, err := c.resolve(ctx, what, namespace, t, remotes, prefer)
	if err != nil && (errors.Is(err, ErrNotFound) || errors.Is(err, ErrNoReadyPod)) && c.namespaceMissing(ctx, namespace) {
		return nil, fmt.Errorf("%s: %w; create it, or check the namespace and the context", what, ErrNamespaceNotFound)
	}
	return r, err
}

// namespaceMissing reports whether the API server answers 404 to a GET of
// namespace. Any other answer says nothing: a user who may not read
// namespaces gets 403 whether it exists or not, and a failed request is
// not an answer.
func (c *Client) namespaceMissing(ctx context.Context, namespace string) bool {
	info := requestInfo{verb: "get", resource: "namespaces", name: namespace}
	var ns struct{}
	err := c.get(ctx, "/api/v1/namespaces/"+url.PathEscape(namespace), nil, info, &ns)
	return errors.Is(err, ErrNotFound)
}

// resolve is Resolve without the namespace check; what starts its errors.
func (c *Client) resolve(ctx context.Context, what, namespace string, t config.Target, remotes []config.RemotePort, prefer string) (*Resolved, error) {
	var (
		pod *Pod
		err error
	)
	switch t.Kind {
	case config.KindPod:
		pod, err = c.GetPod(ctx, namespace, t.Name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if err := usable(pod); err != nil && !errors.Is(err, errRunningNotReady) {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		ports, err := podPorts(pod, remotes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return &Resolved{Pod: pod.Metadata.Name, UID: pod.Metadata.UID, Ports: ports, NotReady: !pod.Ready()}, nil
	case config.KindService:
		svc, err := c.GetService(ctx, namespace, t.Name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if len(svc.Spec.Selector) == 0 {
			return nil, fmt.Errorf("%s: service %q has no selector, so no pod to forward to: %w", what, t.Name, ErrNoReadyPod)
		}
		// Check the service ports before choosing a pod, so that a typo is
		// reported as such even when no pod is ready.
		svcPorts := make([]*ServicePort, len(remotes))
		for i, r := range remotes {
			if svcPorts[i], err = servicePort(svc, r); err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
		}
		pod, err = c.choosePod(ctx, namespace, mapSelector(svc.Spec.Selector), "service "+strconv.Quote(t.Name), prefer)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		ports := make([]int, len(remotes))
		for i, sp := range svcPorts {
			if ports[i], err = targetPort(svc, sp, pod); err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
		}
		return &Resolved{Pod: pod.Metadata.Name, UID: pod.Metadata.UID, Ports: ports}, nil
	case config.KindDeployment, config.KindStatefulSet:
		var sel string
		if sel, err = c.workloadSelector(ctx, namespace, t); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		pod, err = c.choosePod(ctx, namespace, sel, workloadKind(t)+" "+strconv.Quote(t.Name), prefer)
	case config.KindSelector:
		if t.Name == "" {
			return nil, fmt.Errorf("%s: empty selector", what)
		}
		pod, err = c.choosePod(ctx, namespace, t.Name, "selector "+strconv.Quote(t.Name), prefer)
	default:
		return nil, fmt.Errorf("%s: unknown target kind %q", what, t.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ports, err := podPorts(pod, remotes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return &Resolved{Pod: pod.Metadata.Name, UID: pod.Metadata.UID, Ports: ports}, nil
}

// Selector returns the label selector of the pods t may resolve to: a
// selector target's own, a service's, or a workload's, read from the API
// server. A pod target names its pod and has none: "".
func (c *Client) Selector(ctx context.Context, namespace string, t config.Target) (string, error) {
	what := fmt.Sprintf("selector of %s in namespace %q", t, namespace)
	switch t.Kind {
	case config.KindPod:
		return "", nil
	case config.KindSelector:
		return t.Name, nil
	case config.KindService:
		svc, err := c.GetService(ctx, namespace, t.Name)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		if len(svc.Spec.Selector) == 0 {
			return "", fmt.Errorf("%s: service %q has no selector: %w", what, t.Name, ErrNoReadyPod)
		}
		return mapSelector(svc.Spec.Selector), nil
	case config.KindDeployment, config.KindStatefulSet:
		sel, err := c.workloadSelector(ctx, namespace, t)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		return sel, nil
	}
	return "", fmt.Errorf("%s: unknown target kind %q", what, t.Kind)
}

// workloadKind names a deployment or statefulset target's kind in errors.
func workloadKind(t config.Target) string {
	if t.Kind == config.KindDeployment {
		return "deployment"
	}
	return "statefulset"
}

// workloadSelector reads the pod selector of a deployment or statefulset.
func (c *Client) workloadSelector(ctx context.Context, namespace string, t config.Target) (string, error) {
	var (
		w   *Workload
		err error
	)
	kind := workloadKind(t)
	if t.Kind == config.KindDeployment {
		w, err = c.GetDeployment(ctx, namespace, t.Name)
	} else {
		w, err = c.GetStatefulSet(ctx, namespace, t.Name)
	}
	if err != nil {
		return "", err
	}
	sel, err := w.Spec.Selector.SelectorString()
	if err != nil {
		return "", fmt.Errorf("%s selector: %w", kind, err)
	}
	if sel == "" {
		return "", fmt.Errorf("%s %q has an empty selector: %w", kind, t.Name, ErrNoReadyPod)
	}
	return sel, nil
}

// errRunningNotReady marks usable's error for a pod that is Running but not
// Ready: a pod target forwards to it anyway.
var errRunningNotReady = errors.New("running but not ready")

// usable says why a pod should not be forwarded to, or nil.
func usable(p *Pod) error {
	name := strconv.Quote(p.Metadata.Name)
	switch {
	case p.Terminating():
		return fmt.Errorf("pod %s is terminating: %w", name, ErrPodNotReady)
	case !p.Running():
		phase := p.Status.Phase
		if phase == "" {
			phase = "Unknown"
		}
		return fmt.Errorf("pod %s is %s, not Running: %w", name, phase, ErrPodNotReady)
	case !p.Ready():
		return fmt.Errorf("pod %s is Running but not Ready: %w: %w", name, ErrPodNotReady, errRunningNotReady)
	}
	return nil
}

// choosePod lists the pods matching selector and returns the newest one that
// is Running, Ready and not terminating. what names the owner for errors.
func (c *Client) choosePod(ctx context.Context, namespace, selector, what, prefer string) (*Pod, error) {
	list, err := c.ListPods(ctx, namespace, selector)
	if err != nil {
		return nil, err
	}
	return pickPod(list.Items, selector, what, prefer)
}

// pickPod is choosePod's pure part.
func pickPod(pods []Pod, selector, what, prefer string) (*Pod, error) {
	var candidates []*Pod
	var notRunning, notReady, terminating int
	for i := range pods {
		p := &pods[i]
		switch {
		case p.Terminating():
			terminating++
		case !p.Running():
			notRunning++
		case !p.Ready():
			notReady++
		default:
			candidates = append(candidates, p)
		}
	}
	if len(candidates) == 0 {
		if len(pods) == 0 {
			return nil, fmt.Errorf("%s has no Ready pod: no pod matches %s: %w", what, selector, ErrNoReadyPod)
		}
		var why []string
		if notRunning > 0 {
			why = append(why, fmt.Sprintf("%d not Running", notRunning))
		}
		if notReady > 0 {
			why = append(why, fmt.Sprintf("%d Running but not Ready", notReady))
		}
		if terminating > 0 {
			why = append(why, fmt.Sprintf("%d terminating", terminating))
		}
		return nil, fmt.Errorf("%s has no Ready pod: %d pod(s) match %s (%s): %w", what, len(pods), selector, strings.Join(why, ", "), ErrNoReadyPod)
	}
	if prefer != "" {
		for _, p := range candidates {
			if p.Metadata.Name == prefer {
				return p, nil
			}
		}
	}
	// Newest first: the most recently created pod is the one a rollout
	// keeps. Ties (same second) go to the one Ready most recently, then to
	// the name, so that the choice is deterministic.
	sort.SliceStable(candidates, func(i, j int) bool {
		a, b := candidates[i], candidates[j]
		if !a.Metadata.CreationTimestamp.Equal(b.Metadata.CreationTimestamp) {
			return a.Metadata.CreationTimestamp.After(b.Metadata.CreationTimestamp)
		}
		ra, rb := readySince(a), readySince(b)
		if !ra.Equal(rb) {
			return ra.After(rb)
		}
		return a.Metadata.Name > b.Metadata.Name
	})
	return candidates[0], nil
}

func readySince(p *Pod) (t time.Time) {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.LastTransitionTime
		}
	}
	return t
}

// isTCP reports whether a protocol field means TCP (the default).
func isTCP(proto string) bool { return proto == "" || proto == "TCP" }

// podPorts maps remote ports to the pod's container ports: numbers as is
// (any port may be forwarded, declared or not), names looked up among the
// containers' TCP ports. A number declared only as UDP is refused.
func podPorts(p *Pod, remotes []config.RemotePort) ([]int, error) {
	ports := make([]int, len(remotes))
	for i, r := range remotes {
		if r.Name != "" {
			n, err := namedContainerPort(p, r.Name)
			if err != nil {
				return nil, err
			}
			ports[i] = n
			continue
		}
		if r.Number < 1 || r.Number > 65535 {
			return nil, fmt.Errorf("remote port %d out of range 1-65535", r.Number)
		}
		if err := checkContainerPortTCP(p, r.Number); err != nil {
			return nil, err
		}
		ports[i] = r.Number
	}
	return ports, nil
}

// namedContainerPort looks a port name up among the pod's containers.
func namedContainerPort(p *Pod, name string) (int, error) {
	udp := false
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name != name {
				continue
			}
			if isTCP(cp.Protocol) {
				return cp.ContainerPort, nil
			}
			udp = udp || cp.Protocol == "UDP"
		}
	}
	if udp {
		return 0, fmt.Errorf("port %q of pod %q is UDP; port-forward carries only TCP: %w", name, p.Metadata.Name, ErrUDPPort)
	}
	return 0, fmt.Errorf("pod %q has no container port named %q%s: %w", p.Metadata.Name, name, knownPodPorts(p), ErrPortNotFound)
}

func knownPodPorts(p *Pod) string {
	var names []string
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name != "" {
				names = append(names, fmt.Sprintf("%s=%d", cp.Name, cp.ContainerPort))
			}
		}
	}
	if len(names) == 0 {
		return " (it names none)"
	}
	return " (it has " + strings.Join(names, ", ") + ")"
}

// checkContainerPortTCP refuses a port number the pod declares only as UDP,
// as kubectl does; a port declared for both TCP and UDP is fine.
func checkContainerPortTCP(p *Pod, port int) error {
	udp := false
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.ContainerPort != port {
				continue
			}
			if isTCP(cp.Protocol) {
				return nil
			}
			udp = udp || cp.Protocol == "UDP"
		}
	}
	if udp {
		return fmt.Errorf("port %d of pod %q is UDP; port-forward carries only TCP: %w", port, p.Metadata.Name, ErrUDPPort)
	}
	return nil
}

// servicePort finds the service port a remote names: by name, or by
// number. A number that is not a service port is an error, as in kubectl.
// UDP-only service ports are refused.
func servicePort(svc *Service, r config.RemotePort) (*ServicePort, error) {
	var match []*ServicePort
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		if (r.Name != "" && sp.Name == r.Name) || (r.Name == "" && sp.Port == r.Number) {
			match = append(match, sp)
		}
	}
	for _, sp := range match {
		if isTCP(sp.Protocol) {
			return sp, nil
		}
	}
	if len(match) > 0 {
		return nil, fmt.Errorf("port %s of service %q is %s; port-forward carries only TCP: %w", r, svc.Metadata.Name, match[0].Protocol, ErrUDPPort)
	}
	kind := "port"
	if r.Name != "" {
		kind = "port named"
	}
	return nil, fmt.Errorf("service %q has no %s %s%s: %w", svc.Metadata.Name, kind, r, knownServicePorts(svc), ErrPortNotFound)
}

func knownServicePorts(svc *Service) string {
	var ports []string
	for _, sp := range svc.Spec.Ports {
		s := strconv.Itoa(sp.Port)
		if sp.Name != "" {
			s = sp.Name + "=" + s
		}
		ports = append(ports, s)
	}
	if len(ports) == 0 {
		return " (it has no ports)"
	}
	return " (it has " + strings.Join(ports, ", ") + ")"
}

// targetPort maps a service port to a container port of pod, as kubectl's
// LookupContainerPortNumberByServicePort: a headless service forwards the
// port itself, a numeric targetPort (0 means the port) is used as is, and a
// named one is looked up on the chosen pod.
func targetPort(svc *Service, sp *ServicePort, pod *Pod) (int, error) {
	if svc.Spec.ClusterIP == "None" {
		return sp.Port, checkContainerPortTCP(pod, sp.Port)
	}
	if !sp.TargetPort.IsString {
		n := sp.TargetPort.IntVal
		if n == 0 {
			n = sp.Port
		}
		return n, checkContainerPortTCP(pod, n)
	}
	n, err := namedContainerPort(pod, sp.TargetPort.StrVal)
	if err != nil {
		return 0, fmt.Errorf("service %q port %d targets port %q: %w", svc.Metadata.Name, sp.Port, sp.TargetPort.StrVal, err)
	}
	return n, nil
}
