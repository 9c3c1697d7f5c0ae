package reconcile

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tunnels-dev/tunnels/config"
)

// sp builds a spec for tunnel forwarding local to remote, to pod/tunnel in
// namespace ns of context "kind", on localhost.
func sp(tunnel, ns string, local, remote int) config.Spec {
	return config.Spec{
		Tunnel:    tunnel,
		Session:   session(ns, tunnel),
		Address:   "localhost",
		LocalPort: local,
		Remote:    config.RemotePort{Number: remote},
	}
}

func session(ns, pod string) config.Session {
	return config.Session{Context: "kind", Namespace: ns, Target: config.Target{Kind: config.KindPod, Name: pod}}
}

func specs(s ...config.Spec) []config.Spec { return s }

func TestDiff(t *testing.T) {
	db := sp("db", "dev", 5432, 5432)
	dbMetrics := sp("db", "dev", 9187, 9187)
	web := sp("web", "dev", 8080, 80)
	webProd := sp("web", "prod", 8080, 80)
	webCtx := web
	webCtx.Session.Context = "prod-cluster"
	webSvc := web
	webSvc.Session.Target = config.Target{Kind: config.KindService, Name: "web"}
	webAny := web
	webAny.Address = "0.0.0.0"
	webNamed := web
	webNamed.Remote = config.RemotePort{Name: "http"}
	webLocal := web
	webLocal.LocalPort = 8081
	webRandom := web
	webRandom.LocalPort = 0
	site := web
	site.Tunnel = "site"

	tests := []struct {
		name             string
		desired, running []config.Spec
		want             Plan
	}{
		{name: "nothing", want: Plan{}},
		{
			name:    "first start",
			desired: specs(web, db, dbMetrics),
			want:    Plan{Start: specs(db, dbMetrics, web)},
		},
		{
			name:    "unchanged file keeps all",
			desired: specs(db, dbMetrics, web),
			running: specs(web, dbMetrics, db),
			want:    Plan{Keep: specs(db, dbMetrics, web)},
		},
		{
			name:    "add a port",
			desired: specs(db, dbMetrics, web),
			running: specs(db, web),
			want:    Plan{Start: specs(dbMetrics), Keep: specs(db, web)},
		},
		{
			name:    "remove a port",
			desired: specs(db, web),
			running: specs(db, dbMetrics, web),
			want:    Plan{Stop: specs(dbMetrics), Keep: specs(db, web)},
		},
		{
			name:    "remove a tunnel stops its specs",
			desired: specs(web),
			running: specs(db, dbMetrics, web),
			want:    Plan{Stop: specs(db, dbMetrics), Keep: specs(web)},
		},
		{
			name:    "add a tunnel",
			desired: specs(db, dbMetrics, web),
			running: specs(web),
			want:    Plan{Start: specs(db, dbMetrics), Keep: specs(web)},
		},
		{
			name:    "change namespace restarts the tunnel",
			desired: specs(db, webProd),
			running: specs(db, web),
			want:    Plan{Start: specs(webProd), Stop: specs(web), Keep: specs(db)},
		},
		{
			name:    "change namespace of a tunnel with two ports restarts both",
			desired: specs(withNS(db, "prod"), withNS(dbMetrics, "prod"), web),
			running: specs(db, dbMetrics, web),
			want:    Plan{Start: specs(withNS(db, "prod"), withNS(dbMetrics, "prod")), Stop: specs(db, dbMetrics), Keep: specs(web)},
		},
		{
			name:    "change context",
			desired: specs(webCtx),
			running: specs(web),
			want:    Plan{Start: specs(webCtx), Stop: specs(web)},
		},
		{
			name:    "change target",
			desired: specs(webSvc),
			running: specs(web),
			want:    Plan{Start: specs(webSvc), Stop: specs(web)},
		},
		{
			name:    "change address",
			desired: specs(webAny),
			running: specs(web),
			want:    Plan{Start: specs(webAny), Stop: specs(web)},
		},
		{
			name:    "change remote port to a name",
			desired: specs(webNamed),
			running: specs(web),
			want:    Plan{Start: specs(webNamed), Stop: specs(web)},
		},
		{
			name:    "change local port",
			desired: specs(webLocal, db),
			running: specs(web, db),
			want:    Plan{Start: specs(webLocal), Stop: specs(web), Keep: specs(db)},
		},
		{
			name:    "fixed local port to random",
			desired: specs(webRandom),
			running: specs(web),
			want:    Plan{Start: specs(webRandom), Stop: specs(web)},
		},
		{
			name:    "rename a tunnel",
			desired: specs(site, db),
			running: specs(web, db),
			want:    Plan{Start: specs(site), Stop: specs(web), Keep: specs(db)},
		},
		{
			name:    "empty desired stops all",
			running: specs(db, dbMetrics, web),
			want:    Plan{Stop: specs(db, dbMetrics, web)},
		},
		{
			name:    "duplicate desired start once",
			desired: specs(db, db, web, db),
			want:    Plan{Start: specs(db, web)},
		},
		{
			name:    "duplicate desired keep once",
			desired: specs(db, db),
			running: specs(db),
			want:    Plan{Keep: specs(db)},
		},
		{
			name:    "duplicate running stop once",
			running: specs(db, db),
			want:    Plan{Stop: specs(db)},
		},
		{
			name:    "replace everything",
			desired: specs(webProd, site),
			running: specs(db, dbMetrics, web),
			want:    Plan{Start: specs(site, webProd), Stop: specs(db, dbMetrics, web)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(tt.desired, tt.running)
			if !plansEqual(got, tt.want) {
				t.Errorf("Diff(%v, %v)\n got %s\nwant %s", names(tt.desired), names(tt.running), fmtPlan(got), fmtPlan(tt.want))
			}
			if got.Retry {
				t.Errorf("Diff set Retry")
			}
			// Applying the plan gives the desired set.
			if got, want := got.Desired(), sortedSpecs(tt.desired); !slices.Equal(got, want) {
				t.Errorf("Desired() = %v, want %v", names(got), names(want))
			}
			// Diff of the result against itself is all Keep.
			if again := Diff(tt.desired, got.Desired()); again.Changed() {
				t.Errorf("second Diff changed: %s", fmtPlan(again))
			}
		})
	}
}

func TestDiffDeterministic(t *testing.T) {
	var desired, running []config.Spec
	for i := range 20 {
		desired = append(desired, sp(fmt.Sprintf("t%d", i%7), "dev", 1000+i, 80))
		running = append(running, sp(fmt.Sprintf("t%d", i%5), "dev", 1000+2*i, 80))
	}
	want := Diff(desired, running)
	for range 20 {
		rand.Shuffle(len(desired), func(i, j int) { desired[i], desired[j] = desired[j], desired[i] })
		rand.Shuffle(len(running), func(i, j int) { running[i], running[j] = running[j], running[i] })
		if got := Diff(desired, running); !plansEqual(got, want) {
			t.Fatalf("Diff of shuffled input\n got %s\nwant %s", fmtPlan(got), fmtPlan(want))
		}
	}
}

func TestCompareSpecsTotal(t *testing.T) {
	a := sp("web", "dev", 8080, 80)
	variants := []config.Spec{a}
	for _, f := range []func(*config.Spec){
		func(s *config.Spec) { s.Tunnel = "x" },
		func(s *config.Spec) { s.Session.Context = "x" },
		func(s *config.Spec) { s.Session.Namespace = "x" },
		func(s *config.Spec) { s.Session.Target.Kind = config.KindService },
		func(s *config.Spec) { s.Session.Target.Name = "x" },
		func(s *config.Spec) { s.Address = "x" },
		func(s *config.Spec) { s.LocalPort = 1 },
		func(s *config.Spec) { s.Remote.Number = 1 },
		func(s *config.Spec) { s.Remote = config.RemotePort{Name: "x"} },
	} {
		v := a
		f(&v)
		variants = append(variants, v)
	}
	for _, x := range variants {
		for _, y := range variants {
			c, r := compareSpecs(x, y), compareSpecs(y, x)
			if (x == y) != (c == 0) || c != -r {
				t.Errorf("compareSpecs(%+v, %+v) = %d, reversed %d", x, y, c, r)
			}
		}
	}
}

func withNS(s config.Spec, ns string) config.Spec {
	s.Session.Namespace = ns
	return s
}

func plansEqual(a, b Plan) bool {
	return slices.Equal(a.Start, b.Start) && slices.Equal(a.Stop, b.Stop) && slices.Equal(a.Keep, b.Keep) && a.Retry == b.Retry
}

// names renders specs compactly: tunnel/namespace:local->remote.
func names(specs []config.Spec) []string {
	out := []string{}
	for _, s := range specs {
		out = append(out, fmt.Sprintf("%s/%s/%s/%s@%s:%d->%s", s.Tunnel, s.Session.Context, s.Session.Namespace, s.Session.Target, s.Address, s.LocalPort, s.Remote))
	}
	return out
}

func fmtPlan(p Plan) string {
	return fmt.Sprintf("{Start: %v, Stop: %v, Keep: %v, Retry: %v}", names(p.Start), names(p.Stop), names(p.Keep), p.Retry)
}
