package kube

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type podOpt func(*Pod)

func notReady(p *Pod)    { p.Status.Conditions[0].Status = "False" }
func pending(p *Pod)     { p.Status.Phase = "Pending"; notReady(p) }
func terminating(p *Pod) { d := t0.Add(time.Hour); p.Metadata.DeletionTimestamp = &d }
func created(d time.Duration) podOpt {
	return func(p *Pod) { p.Metadata.CreationTimestamp = t0.Add(d) }
}
func ports(ps ...ContainerPort) podOpt {
	return func(p *Pod) { p.Spec.Containers = append(p.Spec.Containers, Container{Name: "c", Ports: ps}) }
}

func mkPod(ns, name string, labels map[string]string, opts ...podOpt) Pod {
	p := Pod{
		Metadata: ObjectMeta{Name: name, Namespace: ns, UID: "uid-" + name, Labels: labels, CreationTimestamp: t0},
		Spec:     PodSpec{NodeName: "node-1"},
		Status:   PodStatus{Phase: "Running", Conditions: []PodCondition{{Type: "Ready", Status: "True", LastTransitionTime: t0}}},
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func num(n int) config.RemotePort     { return config.RemotePort{Number: n} }
func name(s string) config.RemotePort { return config.RemotePort{Name: s} }

func TestResolve(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeAPI(t)
	web := map[string]string{"app": "web"}
	f.addPod(mkPod("dev", "solo", nil, ports(ContainerPort{Name: "http", ContainerPort: 8080}, ContainerPort{Name: "dns", ContainerPort: 53, Protocol: "UDP"}, ContainerPort{Name: "both", ContainerPort: 5353, Protocol: "UDP"}, ContainerPort{Name: "both", ContainerPort: 5353, Protocol: "TCP"})))
	f.addPod(mkPod("dev", "sleepy", nil, notReady))
	f.addPod(mkPod("dev", "starting", nil, pending))
	f.addPod(mkPod("dev", "dying", nil, terminating))
	f.addPod(mkPod("dev", "web-old", web, created(0), ports(ContainerPort{Name: "web", ContainerPort: 8080})))
	f.addPod(mkPod("dev", "web-new", web, created(time.Minute), ports(ContainerPort{Name: "web", ContainerPort: 9090})))
	f.addPod(mkPod("dev", "web-newest-unready", web, created(2*time.Minute), notReady, ports(ContainerPort{Name: "web", ContainerPort: 7070})))
	f.addPod(mkPod("dev", "web-newest-dying", web, created(3*time.Minute), terminating, ports(ContainerPort{Name: "web", ContainerPort: 7070})))
	f.addPod(mkPod("dev", "db-0", map[string]string{"app": "db", "tier": "data"}, ports(ContainerPort{Name: "pg", ContainerPort: 5432})))
	f.addPod(mkPod("dev", "broken-1", map[string]string{"app": "broken"}, notReady))
	f.addPod(mkPod("dev", "broken-2", map[string]string{"app": "broken"}, terminating))
	f.services["dev/web"] = &Service{Metadata: ObjectMeta{Name: "web", Namespace: "dev"}, Spec: ServiceSpec{
		Selector: web,
		Ports: []ServicePort{
			{Name: "http", Port: 80, TargetPort: IntOrString{StrVal: "web", IsString: true}},
			{Name: "admin", Port: 81, TargetPort: IntOrString{IntVal: 8081}},
			{Name: "same", Port: 82},
			{Name: "syslog", Port: 514, Protocol: "UDP"},
			{Name: "missing", Port: 83, TargetPort: IntOrString{StrVal: "nope", IsString: true}},
		},
	}}
	f.services["dev/headless"] = &Service{Metadata: ObjectMeta{Name: "headless", Namespace: "dev"}, Spec: ServiceSpec{
		Selector: web, ClusterIP: "None", Ports: []ServicePort{{Name: "http", Port: 80, TargetPort: IntOrString{IntVal: 8080}}},
	}}
	f.services["dev/broken"] = &Service{Metadata: ObjectMeta{Name: "broken", Namespace: "dev"}, Spec: ServiceSpec{
		Selector: map[string]string{"app": "broken"}, Ports: []ServicePort{{Port: 80}},
	}}
	f.services["dev/external"] = &Service{Metadata: ObjectMeta{Name: "external", Namespace: "dev"}, Spec: ServiceSpec{Ports: []ServicePort{{Port: 80}}}}
	var dep Workload
	dep.Metadata.Name = "db"
	dep.Spec.Selector = &LabelSelector{MatchLabels: map[string]string{"app": "db"}, MatchExpressions: []LabelSelectorRequirement{{Key: "tier", Operator: "In", Values: []string{"data", "cache"}}}}
	f.workloads["deployments/dev/db"] = &dep
	f.workloads["statefulsets/dev/db"] = &dep
	c := f.client(t, f.config())

	tests := []struct {
		name     string
		target   config.Target
		remotes  []config.RemotePort
		wantPod  string
		wantPort []int
		wantErr  error
		wantMsg  []string
		// wantNotReady: Resolved.NotReady is set.
		wantNotReady bool
	}{
		{name: "pod numeric and named", target: config.Target{Kind: config.KindPod, Name: "solo"}, remotes: []config.RemotePort{num(9000), name("http")}, wantPod: "solo", wantPort: []int{9000, 8080}},
		{name: "pod port on TCP and UDP", target: config.Target{Kind: config.KindPod, Name: "solo"}, remotes: []config.RemotePort{name("both"), num(5353)}, wantPod: "solo", wantPort: []int{5353, 5353}},
		{name: "pod UDP-only name", target: config.Target{Kind: config.KindPod, Name: "solo"}, remotes: []config.RemotePort{name("dns")}, wantErr: ErrUDPPort, wantMsg: []string{`"dns"`, "UDP"}},
		{name: "pod UDP-only number", target: config.Target{Kind: config.KindPod, Name: "solo"}, remotes: []config.RemotePort{num(53)}, wantErr: ErrUDPPort},
		{name: "pod unknown name", target: config.Target{Kind: config.KindPod, Name: "solo"}, remotes: []config.RemotePort{name("grpc")}, wantErr: ErrPortNotFound, wantMsg: []string{`"grpc"`, "http=8080"}},
		{name: "pod Running but not Ready, forwarded to as by kubectl", target: config.Target{Kind: config.KindPod, Name: "sleepy"}, remotes: []config.RemotePort{num(80)}, wantPod: "sleepy", wantPort: []int{80}, wantNotReady: true},
		{name: "pod pending", target: config.Target{Kind: config.KindPod, Name: "starting"}, remotes: []config.RemotePort{num(80)}, wantErr: ErrPodNotReady, wantMsg: []string{"Pending"}},
		{name: "pod terminating", target: config.Target{Kind: config.KindPod, Name: "dying"}, remotes: []config.RemotePort{num(80)}, wantErr: ErrPodNotReady, wantMsg: []string{"terminating"}},
		{name: "pod missing", target: config.Target{Kind: config.KindPod, Name: "ghost"}, remotes: []config.RemotePort{num(80)}, wantErr: ErrNotFound, wantMsg: []string{`"ghost"`, `namespace "dev"`}},
		{name: "service named targetPort on newest ready pod", target: config.Target{Kind: config.KindService, Name: "web"}, remotes: []config.RemotePort{num(80), name("http"), name("admin"), num(82)}, wantPod: "web-new", wantPort: []int{9090, 9090, 8081, 82}},
		{name: "service number not a service port", target: config.Target{Kind: config.KindService, Name: "web"}, remotes: []config.RemotePort{num(8080)}, wantErr: ErrPortNotFound, wantMsg: []string{`service "web"`, "8080", "http=80"}},
		{name: "service unknown port name", target: config.Target{Kind: config.KindService, Name: "web"}, remotes: []config.RemotePort{name("grpc")}, wantErr: ErrPortNotFound},
		{name: "service UDP port", target: config.Target{Kind: config.KindService, Name: "web"}, remotes: []config.RemotePort{name("syslog")}, wantErr: ErrUDPPort},
		{name: "service targetPort name missing on pod", target: config.Target{Kind: config.KindService, Name: "web"}, remotes: []config.RemotePort{num(83)}, wantErr: ErrPortNotFound, wantMsg: []string{`"nope"`, "web-new"}},
		{name: "headless service", target: config.Target{Kind: config.KindService, Name: "headless"}, remotes: []config.RemotePort{num(80)}, wantPod: "web-new", wantPort: []int{80}},
		{name: "service without ready pod", target: config.Target{Kind: config.KindService, Name: "broken"}, remotes: []config.RemotePort{num(80)}, wantErr: ErrNoReadyPod, wantMsg: []string{`service "broken"`, "no Ready pod", "1 Running but not Ready", "1 terminating"}},
		{name: "service without selector", target: config.Target{Kind: config.KindService, Name: "external"}, remotes: []config.RemotePort{num(80)}, wantErr: ErrNoReadyPod, wantMsg: []string{"no selector"}},
		{name: "service missing", target: config.Target{Kind: config.KindService, Name: "nope"}, remotes: []config.RemotePort{num(80)}, wantErr: ErrNotFound, wantMsg: []string{`services "nope"`, `namespace "dev"`}},
		{name: "deployment", target: config.Target{Kind: config.KindDeployment, Name: "db"}, remotes: []config.RemotePort{name("pg"), num(9187)}, wantPod: "db-0", wantPort: []int{5432, 9187}},
		{name: "statefulset", target: config.Target{Kind: config.KindStatefulSet, Name: "db"}, remotes: []config.RemotePort{num(5432)}, wantPod: "db-0", wantPort: []int{5432}},
		{name: "deployment missing", target: config.Target{Kind: config.KindDeployment, Name: "nope"}, remotes: []config.RemotePort{num(80)}, wantErr: ErrNotFound, wantMsg: []string{`deployments.apps "nope"`}},
		{name: "selector", target: config.Target{Kind: config.KindSelector, Name: "app=web"}, remotes: []config.RemotePort{name("web")}, wantPod: "web-new", wantPort: []int{9090}},
		{name: "selector matching nothing", target: config.Target{Kind: config.KindSelector, Name: "app=none"}, remotes: []config.RemotePort{num(80)}, wantErr: ErrNoReadyPod, wantMsg: []string{"no pod matches app=none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Resolve(t.Context(), "dev", tt.target, tt.remotes, "")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Resolve error %v, want %v", err, tt.wantErr)
				}
				for _, m := range tt.wantMsg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not mention %q", err, m)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got.Pod != tt.wantPod || got.UID != "uid-"+tt.wantPod {
				t.Errorf("pod %s (uid %s), want %s", got.Pod, got.UID, tt.wantPod)
			}
			if got.NotReady != tt.wantNotReady {
				t.Errorf("NotReady %v, want %v", got.NotReady, tt.wantNotReady)
			}
			if len(got.Ports) != len(tt.wantPort) {
				t.Fatalf("ports %v, want %v", got.Ports, tt.wantPort)
			}
			for i := range got.Ports {
				if got.Ports[i] != tt.wantPort[i] {
					t.Errorf("ports %v, want %v", got.Ports, tt.wantPort)
				}
			}
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	found := false
	for _, s := range f.selectors {
		found = found || s == "app=db,tier in (cache,data)"
	}
	if !found {
		t.Errorf("selectors asked %q, want one to be %q", f.selectors, "app=db,tier in (cache,data)")
	}
}

func TestSelectorString(t *testing.T) {
	tests := []struct {
		sel  *LabelSelector
		want string
	}{
		{nil, ""},
		{&LabelSelector{}, ""},
		{&LabelSelector{MatchLabels: map[string]string{"b": "2", "a": "1"}}, "a=1,b=2"},
		{&LabelSelector{MatchExpressions: []LabelSelectorRequirement{
			{Key: "z", Operator: "DoesNotExist"},
			{Key: "env", Operator: "NotIn", Values: []string{"qa", "dev"}},
			{Key: "has", Operator: "Exists"},
		}, MatchLabels: map[string]string{"app": "x"}}, "app=x,env notin (dev,qa),has,!z"},
	}
	for _, tt := range tests {
		got, err := tt.sel.SelectorString()
		if err != nil || got != tt.want {
			t.Errorf("SelectorString(%+v) = %q, %v; want %q", tt.sel, got, err, tt.want)
		}
	}
	if _, err := (&LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}).SelectorString(); err == nil {
		t.Error("unknown operator accepted")
	}
}

func TestPickPodTieBreak(t *testing.T) {
	a := mkPod("dev", "a", nil)
	b := mkPod("dev", "b", nil)
	b.Status.Conditions[0].LastTransitionTime = t0.Add(time.Second)
	for _, pods := range [][]Pod{{a, b}, {b, a}} {
		got, err := pickPod(pods, "x=y", "test", "")
		if err != nil || got.Metadata.Name != "b" {
			t.Errorf("pickPod chose %v, %v; want b (ready most recently)", got, err)
		}
	}
}

func TestPickPodPrefersCurrent(t *testing.T) {
	a := mkPod("dev", "a", nil)
	b := mkPod("dev", "b", nil)
	b.Status.Conditions[0].LastTransitionTime = t0.Add(time.Second)
	for _, tt := range []struct {
		prefer, want string
	}{
		{"", "b"},     // newest Ready
		{"a", "a"},    // the current pod, still Ready, is kept
		{"gone", "b"}, // a current pod that no longer matches is left
	} {
		got, err := pickPod([]Pod{a, b}, "x=y", "test", tt.prefer)
		if err != nil || got.Metadata.Name != tt.want {
			t.Errorf("pickPod(prefer %q) = %v, %v; want %s", tt.prefer, got, err, tt.want)
		}
	}
	// A preferred pod that is terminating is not kept.
	a.Metadata.DeletionTimestamp = &t0
	if got, _ := pickPod([]Pod{a, b}, "x=y", "test", "a"); got.Metadata.Name != "b" {
		t.Errorf("pickPod kept terminating pod a; want b")
	}
}

// TestSelector: the pod watch filters pod events with the selector of a
// target: its own, its service's or its workload's.
func TestSelector(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeAPI(t)
	f.services["dev/web"] = &Service{Metadata: ObjectMeta{Name: "web", Namespace: "dev"}, Spec: ServiceSpec{Selector: map[string]string{"tier": "front", "app": "web"}}}
	f.services["dev/external"] = &Service{Metadata: ObjectMeta{Name: "external", Namespace: "dev"}}
	var dep Workload
	dep.Metadata.Name = "db"
	dep.Spec.Selector = &LabelSelector{MatchLabels: map[string]string{"app": "db"}}
	f.workloads["deployments/dev/db"] = &dep
	f.workloads["statefulsets/dev/db"] = &dep
	c := f.client(t, f.config())
	for _, tt := range []struct {
		target  config.Target
		want    string
		wantErr error
	}{
		{target: config.Target{Kind: config.KindPod, Name: "db-0"}, want: ""},
		{target: config.Target{Kind: config.KindSelector, Name: "app=web"}, want: "app=web"},
		{target: config.Target{Kind: config.KindService, Name: "web"}, want: "app=web,tier=front"},
		{target: config.Target{Kind: config.KindService, Name: "external"}, wantErr: ErrNoReadyPod},
		{target: config.Target{Kind: config.KindService, Name: "nope"}, wantErr: ErrNotFound},
		{target: config.Target{Kind: config.KindDeployment, Name: "db"}, want: "app=db"},
		{target: config.Target{Kind: config.KindStatefulSet, Name: "db"}, want: "app=db"},
		{target: config.Target{Kind: config.KindStatefulSet, Name: "nope"}, wantErr: ErrNotFound},
	} {
		got, err := c.Selector(t.Context(), "dev", tt.target)
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("Selector(%s) = %q, %v; want %q, %v", tt.target, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestResolveMissingNamespace: a target in a namespace that does not exist
// fails with ErrNamespaceNotFound, which the API server does not say itself
// (a list there is empty, a GET a 404 for the object); a user who may not
// read namespaces keeps the error about the target, as does a target
// missing from a namespace that exists.
func TestResolveMissingNamespace(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeAPI(t)
	var denyNamespaces atomic.Bool
	f.auth = func(r *http.Request) int {
		if denyNamespaces.Load() && strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 3 {
			return http.StatusForbidden // GET /api/v1/namespaces/NS
		}
		return 0
	}
	c := f.client(t, f.config())
	tests := []struct {
		name      string
		namespace string
		target    config.Target
		deny      bool
		want      error
		wantNot   error
	}{
		{name: "pod", namespace: "gone", target: config.Target{Kind: config.KindPod, Name: "web"}, want: ErrNamespaceNotFound},
		{name: "service", namespace: "gone", target: config.Target{Kind: config.KindService, Name: "web"}, want: ErrNamespaceNotFound},
		{name: "selector", namespace: "gone", target: config.Target{Kind: config.KindSelector, Name: "app=web"}, want: ErrNamespaceNotFound},
		{name: "pod, namespaces unreadable", namespace: "gone", target: config.Target{Kind: config.KindPod, Name: "web"}, deny: true, want: ErrNotFound, wantNot: ErrNamespaceNotFound},
		{name: "selector, namespaces unreadable", namespace: "gone", target: config.Target{Kind: config.KindSelector, Name: "app=web"}, deny: true, want: ErrNoReadyPod, wantNot: ErrNamespaceNotFound},
		{name: "pod missing from a namespace that exists", namespace: "dev", target: config.Target{Kind: config.KindPod, Name: "web"}, want: ErrNotFound, wantNot: ErrNamespaceNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			denyNamespaces.Store(tt.deny)
			_, err := c.Resolve(t.Context(), tt.namespace, tt.target, []config.RemotePort{num(80)}, "")
			if !errors.Is(err, tt.want) || (tt.wantNot != nil && errors.Is(err, tt.wantNot)) {
				t.Fatalf("Resolve error %v, want %v (and not %v)", err, tt.want, tt.wantNot)
			}
			if tt.want == ErrNamespaceNotFound && !strings.Contains(err.Error(), `namespace "gone"`) {
				t.Errorf("error %q does not name the namespace", err)
			}
		})
	}
}
