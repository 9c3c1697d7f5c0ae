package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tunnels-dev/tunnels/internal/testnet"
)

// Cluster is a running control plane as seen by a test.
type Cluster struct {
	*State
	// AdminKubeconfig is a client-certificate user in system:masters.
	AdminKubeconfig string
	// LimitedKubeconfig is the token user "limited", allowed to get, list and
	// watch pods and services, get workloads, and get and create
	// pods/portforward, in LimitedNamespace only.
	LimitedKubeconfig string
	// LimitedNamespace is the namespace the limited user may use.
	LimitedNamespace string
	// NoRightsKubeconfig is the client-certificate user "nobody", with no RBAC.
	NoRightsKubeconfig string

	rest *rest.Config
}

var (
	startOnce sync.Once
	started   *Cluster
	startErr  error
)

// Start starts the cluster once per test binary, or reuses one already
// running in DefaultDir("test"). It skips the test only when TUNNELS_E2E=0.
// It does not stop the cluster: `make test` stops it after every package ran.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if os.Getenv("TUNNELS_E2E") == "0" {
		t.Skip("SKIPPING END-TO-END TEST: TUNNELS_E2E=0 is set; unset it to run against a real kube-apiserver + kwok")
	}
	startOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		var st *State
		st, startErr = Up(ctx, DefaultDir("test"), Options{Log: os.Stderr})
		if startErr != nil {
			return
		}
		started = &Cluster{
			State:              st,
			AdminKubeconfig:    st.Kubeconfig("admin"),
			LimitedKubeconfig:  st.Kubeconfig("limited"),
			LimitedNamespace:   LimitedNamespace,
			NoRightsKubeconfig: st.Kubeconfig("nobody"),
		}
		started.rest, startErr = clientcmd.BuildConfigFromFlags("", st.Kubeconfig("admin"))
	})
	if startErr != nil {
		t.Fatalf("start cluster: %v", startErr)
	}
	return started
}

// Rest returns the admin rest.Config.
func (c *Cluster) Rest() *rest.Config { return rest.CopyConfig(c.rest) }

// Kube returns an admin clientset.
func (c *Cluster) Kube(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Rest())
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return cs
}

func randSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Namespace creates a fresh namespace, deleted when the test ends. Deleted
// namespaces stay Terminating (no controller-manager), so names are unique.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	return c.NamespaceNamed(t, NewNamespaceName())
}

// NewNamespaceName returns a fresh namespace name, for a test that creates
// the namespace later (NamespaceNamed) or never.
func NewNamespaceName() string { return "t-" + randSuffix() }

// NamespaceNamed creates namespace name, deleted when the test ends.
func (c *Cluster) NamespaceNamed(t testing.TB, name string) string {
	t.Helper()
	cs := c.Kube(t)
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// PodOptions describe a fixture pod.
type PodOptions struct {
	Labels map[string]string
	Ports  []corev1.ContainerPort
	// Forward maps a pod port to a local address ("127.0.0.1:N") that kwok
	// forwards its port-forward streams to. A port with no entry is refused
	// by kwok ("no forward found for port").
	Forward map[int32]string
	// NoWait returns without waiting for the pod to become Ready.
	NoWait bool
}

var portForwardGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "portforwards"}

// Pod creates a pod bound to the fake node, with its PortForward routing, and
// waits until kwok reports it Running and Ready. It is deleted at cleanup.
func (c *Cluster) Pod(t testing.TB, ns, name string, o PodOptions) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	if len(o.Forward) > 0 {
		c.SetForward(t, ns, name, o.Forward)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: o.Labels},
		Spec: corev1.PodSpec{
			NodeName:    NodeName,
			Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpEqual, Value: "fake", Effect: corev1.TaintEffectNoSchedule}},
			Containers:  []corev1.Container{{Name: "app", Image: "fake", Ports: o.Ports}},
		},
	}
	cs := c.Kube(t)
	created, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		cs.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	if o.NoWait {
		return created
	}
	ready := c.WaitPodReady(t, ns, name)
	for port := range o.Forward {
		c.waitForwarded(t, ns, name, port)
	}
	return ready
}

// WaitPodReady polls until the pod is Running and Ready.
func (c *Cluster) WaitPodReady(t testing.TB, ns, name string) *corev1.Pod {
	t.Helper()
	cs := c.Kube(t)
	var last *corev1.Pod
	err := poll(context.Background(), 60*time.Second, func() error {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		last = p
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not Ready")
	})
	if err != nil {
		t.Fatalf("pod %s/%s did not become Ready: %v", ns, name, err)
	}
	return last
}

// SetForward creates or replaces the kwok PortForward that routes the pod's
// ports to local addresses.
func (c *Cluster) SetForward(t testing.TB, ns, pod string, forward map[int32]string) {
	t.Helper()
	dc, err := dynamic.NewForConfig(c.Rest())
	if err != nil {
		t.Fatalf("dynamic client: %v", err)
	}
	var forwards []any
	for port, addr := range forward {
		host, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("forward address %q: %v", addr, err)
		}
		var n int64
		fmt.Sscan(p, &n)
		forwards = append(forwards, map[string]any{
			"ports":  []any{int64(port)},
			"target": map[string]any{"address": host, "port": n},
		})
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "PortForward",
		"metadata":   map[string]any{"name": pod, "namespace": ns},
		"spec":       map[string]any{"forwards": forwards},
	}}
	res := dc.Resource(portForwardGVR).Namespace(ns)
	ctx := context.Background()
	existing, err := res.Get(ctx, pod, metav1.GetOptions{})
	switch {
	case err == nil:
		obj.SetResourceVersion(existing.GetResourceVersion())
		_, err = res.Update(ctx, obj, metav1.UpdateOptions{})
	case apierrors.IsNotFound(err):
		if _, err = res.Create(ctx, obj, metav1.CreateOptions{}); err == nil {
			t.Cleanup(func() { res.Delete(context.Background(), pod, metav1.DeleteOptions{}) })
		}
	}
	if err != nil {
		t.Fatalf("set PortForward %s/%s: %v", ns, pod, err)
	}
}

// Service creates a service with the given selector and ports.
func (c *Cluster) Service(t testing.TB, ns, name string, selector map[string]string, ports []corev1.ServicePort) *corev1.Service {
	t.Helper()
	return create(t, "service", c.Kube(t).CoreV1().Services(ns).Create, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: selector, Ports: ports},
	})
}

// Deployment creates a deployment object with the selector. No
// controller-manager runs, so it creates no pods: create matching pods with Pod.
func (c *Cluster) Deployment(t testing.TB, ns, name string, selector map[string]string) *appsv1.Deployment {
	t.Helper()
	sel, tmpl := workload(selector)
	return create(t, "deployment", c.Kube(t).AppsV1().Deployments(ns).Create, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       appsv1.DeploymentSpec{Selector: sel, Template: tmpl},
	})
}

// StatefulSet creates a statefulset object with the selector (no pods).
func (c *Cluster) StatefulSet(t testing.TB, ns, name string, selector map[string]string) *appsv1.StatefulSet {
	t.Helper()
	sel, tmpl := workload(selector)
	return create(t, "statefulset", c.Kube(t).AppsV1().StatefulSets(ns).Create, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       appsv1.StatefulSetSpec{Selector: sel, Template: tmpl},
	})
}

// workload returns the selector and pod template of a fixture workload
// whose pods carry labels: one container "app" of image "fake".
func workload(labels map[string]string) (*metav1.LabelSelector, corev1.PodTemplateSpec) {
	return &metav1.LabelSelector{MatchLabels: labels}, corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "fake"}}},
	}
}

// create creates obj with do, a clientset's Create, and fails the test on
// an error, as "create KIND NS/NAME: ERR".
func create[T metav1.Object](t testing.TB, kind string, do func(context.Context, T, metav1.CreateOptions) (T, error), obj T) T {
	t.Helper()
	created, err := do(context.Background(), obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s %s/%s: %v", kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return created
}

// ExecKubeconfig writes a kubeconfig whose user is an exec credential plugin
// (client.authentication.k8s.io/v1) run as pluginPath with TUNNELS_TEST_TOKEN
// set to the limited user's token in its environment.
func (c *Cluster) ExecKubeconfig(t testing.TB, pluginPath string) string {
	t.Helper()
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: tunnels-test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: exec
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: %s
      env:
      - name: TUNNELS_TEST_TOKEN
        value: %s
      interactiveMode: Never
      installHint: build the test plugin first
contexts:
- name: exec
  context:
    cluster: tunnels-test
    user: exec
    namespace: %s
current-context: exec
`, c.Server, filepath.Join(c.Dir, "pki", "ca.crt"), pluginPath, c.LimitedToken, LimitedNamespace)
	p := filepath.Join(t.TempDir(), "exec.kubeconfig")
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatalf("write exec kubeconfig: %v", err)
	}
	return p
}

// EchoServer starts a loopback TCP server that echoes what it reads. It
// closes a connection after it has been idle for a second, because kwok keeps
// both sides open until the target closes (see shared/CLUSTER.md).
func EchoServer(t testing.TB) string {
	t.Helper()
	return testnet.Serve(t, func(conn *net.TCPConn) {
		buf := make([]byte, 64<<10)
		for {
			conn.SetReadDeadline(time.Now().Add(time.Second))
			n, err := conn.Read(buf)
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if err == io.EOF {
					conn.CloseWrite()
				}
				return
			}
		}
	})
}

// ClosedPort returns a loopback address on which nothing listens, to make
// kwok's dial fail with "connection refused" as an app not listening yet would.
func ClosedPort(t testing.TB) string { t.Helper(); return testnet.ClosedPort(t) }

// Handler runs a custom TCP server on loopback for the test's lifetime: see
// testnet.Serve.
func Handler(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	return testnet.Serve(t, func(c *net.TCPConn) { handle(c) })
}

type builtBinary struct {
	once sync.Once
	path string
	err  error
}

var binaries = map[bool]*builtBinary{true: {}, false: {}}

// TunnelsBinary builds the tunnels command with the race detector once per
// test binary and returns its path.
func TunnelsBinary(t testing.TB) string { t.Helper(); return tunnelsBinary(t, true) }

// TunnelsBinaryPlain builds tunnels without the race detector, for
// benchmarks.
func TunnelsBinaryPlain(t testing.TB) string { t.Helper(); return tunnelsBinary(t, false) }

func tunnelsBinary(t testing.TB, race bool) string {
	t.Helper()
	b := binaries[race]
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "tunnels-e2e-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "tunnels")
		args := []string{"build", "-o", b.path}
		if race {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/tunnels")...)
		cmd.Dir = repoRoot(&Options{})
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build ./cmd/tunnels: %w: %s", err, strings.TrimSpace(string(out)))
		}
	})
	if b.err != nil {
		t.Fatalf("build tunnels: %v", b.err)
	}
	return b.path
}
