package doctor

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/internal/leakcheck"
	"github.com/tunnels-dev/tunnels/kube"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// fakeClient answers from tables; its upgrades fail with upErr per method.
type fakeClient struct {
	version    error
	allowed    map[string]bool // Access.String() + " in " + namespace
	resolveErr error
	upErr      map[string]error // by HTTP method
}

func (f *fakeClient) ServerVersion(context.Context) (string, error) {
	return "v1.37.2", f.version
}

func (f *fakeClient) WhoAmI(context.Context) (string, error) { return "alice", nil }

func (f *fakeClient) CanI(_ context.Context, a kube.Access) (kube.AccessReview, error) {
	return kube.AccessReview{Allowed: f.allowed[a.String()+" in "+a.Namespace]}, nil
}

func (f *fakeClient) Resolve(_ context.Context, _ string, _ config.Target, _ []config.RemotePort, _ string) (*kube.Resolved, error) {
	if f.resolveErr != nil {
		return nil, f.resolveErr
	}
	return &kube.Resolved{Pod: "web-0", Ports: []int{80}}, nil
}

func (f *fakeClient) Upgrade(_ context.Context, method, _ string, _ http.Header) (net.Conn, http.Header, error) {
	return nil, nil, f.upErr[method]
}

// refused is an upgrade refusal, as kube.UpgradeError without a Status.
type refused struct{}

func (refused) Error() string        { return "proxy said no" }
func (refused) UpgradeRefused() bool { return true }

func specs(t *testing.T, yaml string) []config.Spec {
	t.Helper()
	f, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return f.Specs(config.Defaults{Context: "dev"})
}

func find(checks []Check, tunnel, check string) (Check, bool) {
	for _, c := range checks {
		if c.Tunnel == tunnel && c.Check == check {
			return c, true
		}
	}
	return Check{}, false
}

func TestRunPermissionsGetOneRulePerResource(t *testing.T) {
	fc := &fakeClient{
		allowed:    map[string]bool{"get pods in shop": true, "get services in shop": true},
		resolveErr: kube.ErrForbidden,
	}
	checks := Run(t.Context(), specs(t, "version: 1\nnamespace: shop\ntunnels:\n  db: {service: pg, ports: [5432]}\n"),
		Options{Clients: func(string) (Client, error) { return fc, nil }})
	var got []string
	for _, c := range checks {
		got = append(got, c.Check+"="+string(c.Result))
	}
	want := "api server=ok can get pods/portforward=FAIL can create pods/portforward=FAIL can get pods=ok can list pods=FAIL can watch pods=FAIL can get services=ok pod for svc/pg=FAIL transport auto=skip"
	if strings.Join(got, " ") != want {
		t.Fatalf("checks:\ngot  %s\nwant %s", strings.Join(got, " "), want)
	}
	pf, _ := find(checks, "", "can create pods/portforward")
	if !strings.Contains(pf.Fix, `resources: ["pods/portforward"], verbs: ["get", "create"]`) ||
		!strings.Contains(pf.Fix, "kubectl create role tunnels-pods-portforward -n shop --verb=get,create --resource=pods/portforward") ||
		!strings.Contains(pf.Fix, "--user=alice") {
		t.Errorf("pods/portforward fix: got %q, want one rule with both verbs for alice", pf.Fix)
	}
	pods, _ := find(checks, "", "can watch pods")
	if !strings.Contains(pods.Fix, `verbs: ["list", "watch"]`) {
		t.Errorf("pods fix: got %q, want the two verbs denied only", pods.Fix)
	}
}

func TestRunUnreachableServerStopsTheContext(t *testing.T) {
	fc := &fakeClient{version: errors.New("dial tcp: connection refused")}
	checks := Run(t.Context(), specs(t, "version: 1\ntunnels:\n  a: {pod: a, ports: [1]}\n"),
		Options{Clients: func(string) (Client, error) { return fc, nil }})
	if len(checks) != 1 || checks[0].Result != Fail || !strings.Contains(checks[0].Fix, "HTTPS_PROXY") {
		t.Fatalf("got %+v, want the api server check alone, failed, with what to check", checks)
	}
}

func TestRunTransportOutcomes(t *testing.T) {
	allowed := map[string]bool{}
	for _, a := range kube.NeededAccess("default", config.Target{Kind: config.KindPod}) {
		allowed[a.String()+" in default"] = true
	}
	tests := []struct {
		name, transport string
		ws, spdy        error
		want            Result
		fix             string
	}{
		{"both refused", "auto", refused{}, refused{}, Fail, "proxy"},
		{"websocket forbidden", "auto", kube.ErrForbidden, kube.ErrForbidden, Fail, "grant get and create on pods/portforward"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := &fakeClient{allowed: allowed, upErr: map[string]error{http.MethodGet: tt.ws, http.MethodPost: tt.spdy}}
			checks := Run(t.Context(), specs(t, "version: 1\ntransport: "+tt.transport+"\ntunnels:\n  a: {pod: a, ports: [1]}\n"),
				Options{Clients: func(string) (Client, error) { return fc, nil }})
			c, ok := find(checks, "a", "transport "+tt.transport)
			if !ok || c.Result != tt.want || !strings.Contains(c.Fix, tt.fix) {
				t.Fatalf("transport check: got %+v, want %s with a fix about %q", c, tt.want, tt.fix)
			}
		})
	}
}
