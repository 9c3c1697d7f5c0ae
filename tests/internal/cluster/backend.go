package cluster

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"

	"github.com/tunnels-dev/tunnels/tests/cluster/podserver"
)

// The backends a data-path test runs against.
const (
	// BackendKwok is kwok's fake node: the pod servers run in the test
	// process and kwok routes the pod's ports to them. It is not a runtime:
	// it never half-closes toward the target, serves a deleted pod's streams
	// while its PortForward object exists, and writes its own error texts.
	BackendKwok = "kwok"
	// BackendNode is the real node: the pod servers run in containers
	// (kubelet, containerd, runc), and a port-forward enters the pod's
	// network namespace as on any cluster.
	BackendNode = "node"
)

// Backends lists every backend, for the table of a data-path test.
var Backends = []string{BackendKwok, BackendNode}

// Backend creates server pods on one kind of node.
type Backend struct {
	// Name is BackendKwok or BackendNode.
	Name string
	*Cluster
}

// Backend returns the named backend. For the real node it skips the test,
// loudly, when this machine runs none (or fails it when TUNNELS_REQUIRE_NODE=1).
func (c *Cluster) Backend(t testing.TB, name string) *Backend {
	t.Helper()
	switch name {
	case BackendKwok:
	case BackendNode:
		c.RequireNode(t)
	default:
		t.Fatalf("unknown backend %q", name)
	}
	return &Backend{Name: name, Cluster: c}
}

// RequireNode skips the test when the cluster runs no real node, saying
// why, or fails it when the environment demands the node (CI does).
func (c *Cluster) RequireNode(t testing.TB) {
	t.Helper()
	if c.Node != nil {
		return
	}
	why := c.NodeError
	if why == "" {
		why = "the cluster in " + c.Dir + " was started without one"
	}
	if requireNode() {
		t.Fatalf("NO REAL NODE, and %s=1 requires one: %s", RequireNodeEnv, why)
	}
	t.Skipf("SKIPPING REAL-NODE TEST: %s (set %s=1 to make this a failure)", why, RequireNodeEnv)
}

// ServerPodOptions describe a server pod.
type ServerPodOptions struct {
	Labels map[string]string
	// ID is what the pod answers on podserver.HelloPort; empty means the
	// pod's name. Give a re-created pod a new ID to tell the two apart.
	ID string
}

// ServerPod is a pod running podserver's ports (and nothing on
// podserver.ClosedPort) on a backend.
type ServerPod struct {
	*corev1.Pod
	b *Backend
	// stop ends the in-process servers of a kwok pod.
	stop func()
}

// serverPorts are the container ports of a server pod, named so services
// and port specs can use the names.
var serverPorts = []corev1.ContainerPort{
	{Name: "echo", ContainerPort: podserver.EchoPort},
	{Name: "hello", ContainerPort: podserver.HelloPort},
	{Name: "halfclose", ContainerPort: podserver.HalfClosePort},
	{Name: "events", ContainerPort: podserver.EventsPort},
	{Name: "greet", ContainerPort: podserver.GreetPort},
}

// ServerPod creates a server pod and waits until it is Ready and, on kwok,
// routed. It is deleted when the test ends.
func (b *Backend) ServerPod(t testing.TB, ns, name string, o ServerPodOptions) *ServerPod {
	t.Helper()
	if o.ID == "" {
		o.ID = name
	}
	if b.Name == BackendKwok {
		return b.kwokServerPod(t, ns, name, o)
	}
	no := false
	grace := int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: o.Labels},
		Spec: corev1.PodSpec{
			NodeName: RealNodeName,
			// No controller-manager creates service accounts, and the kubelet
			// must not wait for its service informer to build env vars.
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           PodServerImage,
				ImagePullPolicy: corev1.PullNever,
				Env:             []corev1.EnvVar{{Name: "PODSERVER_ID", Value: o.ID}},
				Ports:           serverPorts,
				// Ready means listening, not just started.
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(podserver.HelloPort)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
	cs := b.Kube(t)
	if _, err := cs.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s on the real node: %v", ns, name, err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		cs.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	return &ServerPod{Pod: b.WaitPodReady(t, ns, name), b: b, stop: func() {}}
}

// kwokServerPod runs the pod's servers in the test process, one loopback
// listener per port, and routes the pod's ports to them.
func (b *Backend) kwokServerPod(t testing.TB, ns, name string, o ServerPodOptions) *ServerPod {
	t.Helper()
	srv := &podserver.Server{ID: o.ID}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	forward := map[int32]string{podserver.ClosedPort: ClosedPort(t)}
	for _, port := range podserver.Ports {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen on loopback: %v", err)
		}
		forward[int32(port)] = l.Addr().String()
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.Serve(ctx, l, port)
		}()
	}
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	// kwok learns a PortForward as a whole, so one routed port shows all
	// are: the closed one, whose refusal comes back at once (waiting on the
	// others would take kwok's missing half-close, seconds each).
	b.SetForward(t, ns, name, forward)
	b.Pod(t, ns, name, PodOptions{Labels: o.Labels, Ports: serverPorts})
	b.waitForwarded(t, ns, name, podserver.ClosedPort)
	pod, err := b.Kube(t).CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod %s/%s: %v", ns, name, err)
	}
	return &ServerPod{Pod: pod, b: b, stop: stop}
}

// Delete deletes the pod at once (grace period 0) and waits until the API
// no longer has it. On kwok it also removes the pod's PortForward and stops
// its servers, as a real pod's would stop: kwok alone would keep serving a
// deleted pod's streams.
func (p *ServerPod) Delete(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	cs := p.b.Kube(t)
	if p.b.Name == BackendKwok {
		dc := p.b.dynamic(t)
		if err := dc.Resource(portForwardGVR).Namespace(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("delete PortForward %s/%s: %v", p.Namespace, p.Name, err)
		}
		p.stop()
	}
	zero := int64(0)
	if err := cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("delete pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	err := poll(ctx, 30*time.Second, func() error {
		got, err := cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil && got.UID != p.UID {
			return nil // already re-created by someone else
		}
		return fmt.Errorf("pod %s/%s still exists (%v)", p.Namespace, p.Name, err)
	})
	if err != nil {
		t.Fatalf("delete pod: %v", err)
	}
}

func (c *Cluster) dynamic(t testing.TB) dynamic.Interface {
	t.Helper()
	dc, err := dynamic.NewForConfig(c.Rest())
	if err != nil {
		t.Fatalf("dynamic client: %v", err)
	}
	return dc
}
