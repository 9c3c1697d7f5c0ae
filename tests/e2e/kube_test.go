package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/kube"
	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// kubeClient loads a kubeconfig file with package kube, as tunnels does.
func kubeClient(t *testing.T, path string) *kube.Client { t.Helper(); return kubeClientTB(t, path) }

// kubeClientTB is kubeClient for benchmarks too.
func kubeClientTB(t testing.TB, path string) *kube.Client {
	t.Helper()
	k, err := kube.Load(kube.LoadOptions{Kubeconfig: path})
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	rc, err := k.RestConfig("")
	if err != nil {
		t.Fatalf("rest config from %s: %v", path, err)
	}
	c, err := kube.NewClient(rc, kube.ClientOptions{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("client for %s: %v", path, err)
	}
	t.Cleanup(c.Close)
	return c
}

var (
	pluginOnce sync.Once
	pluginBin  string
	pluginErr  error
)

// testPlugin builds tests/kubeconfig/testplugin once per test binary.
func testPlugin(t *testing.T) string {
	t.Helper()
	pluginOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tunnels-e2e-plugin-")
		if err != nil {
			pluginErr = err
			return
		}
		pluginBin = filepath.Join(dir, "testplugin")
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		out, err := exec.Command(goBin, "build", "-o", pluginBin, "github.com/tunnels-dev/tunnels/tests/kubeconfig/testplugin").CombinedOutput()
		if err != nil {
			pluginErr = errors.New(string(out))
		}
	})
	if pluginErr != nil {
		t.Fatalf("build test plugin: %v", pluginErr)
	}
	return pluginBin
}

func uniqueName(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

var portForwardHeader = http.Header{
	"Connection":                {"Upgrade"},
	"Upgrade":                   {"SPDY/3.1"},
	"X-Stream-Protocol-Version": {"portforward.k8s.io"},
}

// TestKubeAuthKinds authenticates with a client certificate (admin), a
// token (limited) and an exec plugin (printing the limited token), and
// upgrades a port-forward with each.
func TestKubeAuthKinds(t *testing.T) {
	c := cluster.Start(t)
	ns := c.LimitedNamespace
	pod := uniqueName("auth")
	c.Pod(t, ns, pod, cluster.PodOptions{Labels: map[string]string{"test": pod}, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}})

	for _, tc := range []struct {
		name, kubeconfig string
	}{
		{"client certificate", c.AdminKubeconfig},
		{"token", c.LimitedKubeconfig},
		{"exec plugin", c.ExecKubeconfig(t, testPlugin(t))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kc := kubeClient(t, tc.kubeconfig)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			p, err := kc.GetPod(ctx, ns, pod)
			if err != nil {
				t.Fatalf("get pod: %v", err)
			}
			if p.Metadata.Name != pod || !p.Running() || !p.Ready() || p.Spec.NodeName != cluster.NodeName {
				t.Errorf("pod %+v, want %s Running and Ready on %s", p.Metadata, pod, cluster.NodeName)
			}
			conn, err := kc.Upgrade(ctx, http.MethodPost, "/api/v1/namespaces/"+ns+"/pods/"+pod+"/portforward", portForwardHeader)
			if err != nil {
				t.Fatalf("upgrade port-forward: %v", err)
			}
			defer conn.Close()
			if got := conn.Header.Get("X-Stream-Protocol-Version"); got != "portforward.k8s.io" {
				t.Errorf("negotiated protocol %q, want portforward.k8s.io", got)
			}
		})
	}
}

// TestKubeRBACErrors checks the 403 and 404 messages against real RBAC.
func TestKubeRBACErrors(t *testing.T) {
	c := cluster.Start(t)
	other := c.Namespace(t)
	pod := uniqueName("rbac")
	c.Pod(t, other, pod, cluster.PodOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	limited := kubeClient(t, c.LimitedKubeconfig)
	_, err := limited.GetPod(ctx, other, pod)
	if !errors.Is(err, kube.ErrForbidden) {
		t.Fatalf("limited user outside its namespace: %v, want ErrForbidden", err)
	}
	t.Logf("403: %v", err)
	for _, want := range []string{`"limited"`, `"get"`, `"pods"`, `namespace "` + other + `"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	_, err = limited.Upgrade(ctx, http.MethodPost, "/api/v1/namespaces/"+other+"/pods/"+pod+"/portforward", portForwardHeader)
	var ue *kube.UpgradeError
	if !errors.As(err, &ue) || !errors.Is(err, kube.ErrForbidden) {
		t.Fatalf("limited port-forward outside its namespace: %v, want a 403 *UpgradeError", err)
	}
	t.Logf("403 upgrade: %v", err)
	for _, want := range []string{"403", "pods/portforward", `"create"`, `"get"`, `namespace "` + other + `"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	_, err = limited.Resolve(ctx, other, config.Target{Kind: config.KindService, Name: "web"}, []config.RemotePort{{Number: 80}}, "")
	if !errors.Is(err, kube.ErrForbidden) || !strings.Contains(err.Error(), `"services"`) {
		t.Errorf("limited resolve outside its namespace: %v, want ErrForbidden on services", err)
	}

	nobody := kubeClient(t, c.NoRightsKubeconfig)
	_, err = nobody.GetPod(ctx, other, pod)
	if !errors.Is(err, kube.ErrForbidden) || !strings.Contains(err.Error(), `"nobody"`) {
		t.Errorf("no-rights user: %v, want ErrForbidden naming the user", err)
	}

	admin := kubeClient(t, c.AdminKubeconfig)
	_, err = admin.GetPod(ctx, other, "no-such-pod")
	t.Logf("404: %v", err)
	if !errors.Is(err, kube.ErrNotFound) || !strings.Contains(err.Error(), `"no-such-pod"`) || !strings.Contains(err.Error(), `namespace "`+other+`"`) {
		t.Errorf("missing pod: %v, want ErrNotFound naming the pod and namespace", err)
	}
	_, err = admin.Resolve(ctx, other, config.Target{Kind: config.KindDeployment, Name: "ghost"}, []config.RemotePort{{Number: 80}}, "")
	if !errors.Is(err, kube.ErrNotFound) || !strings.Contains(err.Error(), `"ghost"`) {
		t.Errorf("missing deployment: %v, want ErrNotFound naming it", err)
	}
}

// TestKubeMissingNamespace checks against the real apiserver what Resolve
// makes of a namespace that does not exist, which the apiserver does not
// say itself (a list of pods there is empty, a GET a 404 for the object):
// for admin, ErrNamespaceNotFound, for a pod and a selector target alike;
// for the limited user, who may not get namespaces (403 whether or not
// they exist), a missing pod in its own namespace stays ErrNotFound.
func TestKubeMissingNamespace(t *testing.T) {
	c := cluster.Start(t)
	missing := cluster.NewNamespaceName()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	admin := kubeClient(t, c.AdminKubeconfig)
	for _, target := range []config.Target{{Kind: config.KindPod, Name: "web"}, {Kind: config.KindSelector, Name: "app=web"}} {
		_, err := admin.Resolve(ctx, missing, target, []config.RemotePort{{Number: 80}}, "")
		t.Logf("%s: %v", target, err)
		if !errors.Is(err, kube.ErrNamespaceNotFound) || !strings.Contains(err.Error(), missing) {
			t.Errorf("%s in a missing namespace: %v, want ErrNamespaceNotFound naming %s", target, err, missing)
		}
	}
	limited := kubeClient(t, c.LimitedKubeconfig)
	_, err := limited.Resolve(ctx, c.LimitedNamespace, config.Target{Kind: config.KindPod, Name: "no-such-pod"}, []config.RemotePort{{Number: 80}}, "")
	if !errors.Is(err, kube.ErrNotFound) || errors.Is(err, kube.ErrNamespaceNotFound) {
		t.Errorf("limited user, missing pod in its namespace: %v, want ErrNotFound, not ErrNamespaceNotFound", err)
	}
}

// TestKubeResolve resolves every target kind against real objects: the
// newest Ready pod wins, and a service's named targetPort is looked up on
// that pod.
func TestKubeResolve(t *testing.T) {
	c := cluster.Start(t)
	ns := c.Namespace(t)
	web := map[string]string{"app": "web"}
	// The older pod names its port "http" = 80, the newer "http" = 8080, so
	// the resolved number shows which pod was used.
	old := c.Pod(t, ns, "web-z-old", cluster.PodOptions{Labels: web, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}})
	// creationTimestamp has one-second resolution: let a second boundary
	// pass so the second pod is strictly newer. This waits for the clock,
	// not for another goroutine.
	for deadline := time.Now().Add(5 * time.Second); !time.Now().After(old.CreationTimestamp.Add(time.Second)); {
		if time.Now().After(deadline) {
			t.Fatal("clock did not advance")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Pod(t, ns, "web-a-new", cluster.PodOptions{Labels: web, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}})
	c.Service(t, ns, "web", web, []corev1.ServicePort{
		{Name: "http", Port: 8000, TargetPort: intstr.FromString("http")},
		{Name: "metrics", Port: 9000, TargetPort: intstr.FromInt32(9090)},
	})
	c.Service(t, ns, "empty", map[string]string{"app": "nothing"}, []corev1.ServicePort{{Port: 80}})
	c.Deployment(t, ns, "web", web)
	c.StatefulSet(t, ns, "web", web)

	admin := kubeClient(t, c.AdminKubeconfig)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	tests := []struct {
		name     string
		target   config.Target
		remotes  []config.RemotePort
		wantPod  string
		wantPort []int
		wantErr  error
	}{
		{"pod named port", config.Target{Kind: config.KindPod, Name: "web-z-old"}, []config.RemotePort{{Name: "http"}, {Number: 5000}}, "web-z-old", []int{80, 5000}, nil},
		{"service named targetPort", config.Target{Kind: config.KindService, Name: "web"}, []config.RemotePort{{Number: 8000}, {Name: "http"}, {Name: "metrics"}}, "web-a-new", []int{8080, 8080, 9090}, nil},
		{"service number not a service port", config.Target{Kind: config.KindService, Name: "web"}, []config.RemotePort{{Number: 8080}}, "", nil, kube.ErrPortNotFound},
		{"service without pods", config.Target{Kind: config.KindService, Name: "empty"}, []config.RemotePort{{Number: 80}}, "", nil, kube.ErrNoReadyPod},
		{"deployment", config.Target{Kind: config.KindDeployment, Name: "web"}, []config.RemotePort{{Name: "http"}}, "web-a-new", []int{8080}, nil},
		{"statefulset", config.Target{Kind: config.KindStatefulSet, Name: "web"}, []config.RemotePort{{Number: 7000}}, "web-a-new", []int{7000}, nil},
		{"selector", config.Target{Kind: config.KindSelector, Name: "app=web"}, []config.RemotePort{{Name: "http"}}, "web-a-new", []int{8080}, nil},
		{"udp port", config.Target{Kind: config.KindSelector, Name: "app=web"}, []config.RemotePort{{Name: "dns"}}, "", nil, kube.ErrUDPPort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := admin.Resolve(ctx, ns, tt.target, tt.remotes, "")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got.Pod != tt.wantPod || len(got.Ports) != len(tt.wantPort) || got.UID == "" {
				t.Fatalf("resolved %+v, want pod %s ports %v", got, tt.wantPod, tt.wantPort)
			}
			for i := range got.Ports {
				if got.Ports[i] != tt.wantPort[i] {
					t.Errorf("ports %v, want %v", got.Ports, tt.wantPort)
				}
			}
		})
	}
	if _, err := admin.Resolve(ctx, ns, config.Target{Kind: config.KindService, Name: "empty"}, []config.RemotePort{{Number: 80}}, ""); err == nil || !strings.Contains(err.Error(), `service "empty"`) {
		t.Errorf("no-pod error %v does not name the service", err)
	}
}

// TestKubeWatch lists then watches pods from the list's resourceVersion and
// sees a new pod arrive.
func TestKubeWatch(t *testing.T) {
	c := cluster.Start(t)
	ns := c.Namespace(t)
	admin := kubeClient(t, c.AdminKubeconfig)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	list, err := admin.ListPods(ctx, ns, "app=watched")
	if err != nil {
		t.Fatal(err)
	}
	events, err := admin.WatchPods(ctx, ns, "app=watched", list.Metadata.ResourceVersion)
	if err != nil {
		t.Fatal(err)
	}
	c.Pod(t, ns, "watched-1", cluster.PodOptions{Labels: map[string]string{"app": "watched"}, NoWait: true})
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("watch ended before the pod became Ready")
			}
			if ev.Err != nil {
				t.Fatalf("watch error: %v", ev.Err)
			}
			if ev.Pod != nil && ev.Pod.Metadata.Name == "watched-1" && ev.Pod.Ready() {
				cancel()
				for range events {
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("no Ready event for watched-1")
		}
	}
}
