package tunnel

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/internal/leakcheck"
	"github.com/tunnels-dev/tunnels/reconcile"
)

// onIPv4 is a spec listening on 127.0.0.1 only, so a test can hold its port.
func onIPv4(spec config.Spec) config.Spec {
	spec.Address = "127.0.0.1"
	return spec
}

func startApplier(t *testing.T, f *fakeClient, o Options) *Applier {
	t.Helper()
	if o.Clients == nil {
		o.Clients = func(string) (Client, error) { return f, nil }
	}
	if o.Backoff == (forward.Backoff{}) {
		o.Backoff = forward.Backoff{Initial: time.Hour, Max: time.Hour}
	}
	a := Start(t.Context(), o)
	t.Cleanup(func() { a.Close(0) })
	return a
}

func apply(t *testing.T, a *Applier, p reconcile.Plan) {
	t.Helper()
	if err := a.Apply(t.Context(), p); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func statusOf(t *testing.T, a *Applier, spec config.Spec) PortStatus {
	t.Helper()
	for _, ps := range a.Status() {
		if ps.Spec == spec {
			return ps
		}
	}
	t.Fatalf("no status for %v", names([]config.Spec{spec}))
	return PortStatus{}
}

// until polls cond until it holds or the deadline passes.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

// TestApplierStopsBeforeStarting: a plan that moves a local port from one
// tunnel to another frees it before binding it again, in one Apply.
func TestApplierStopsBeforeStarting(t *testing.T) {
	leakcheck.Check(t)
	a := startApplier(t, newFakeClient(), Options{})
	old := onIPv4(sp("old", "dev", 0, 80))
	apply(t, a, reconcile.Plan{Start: []config.Spec{old}})
	st := statusOf(t, a, old)
	if len(st.Addrs) == 0 {
		t.Fatalf("old: state %s, err %v; want bound", st.State, st.Err)
	}
	port := st.LocalPort
	nu := onIPv4(sp("new", "dev", port, 81))
	apply(t, a, reconcile.Plan{Stop: []config.Spec{old}, Start: []config.Spec{nu}})
	st = statusOf(t, a, nu)
	if st.LocalPort != port || len(st.Addrs) == 0 {
		t.Errorf("new: state %s, local port %d, err %v; want bound on %d at once", st.State, st.LocalPort, st.Err, port)
	}
	if got := len(a.Status()); got != 1 {
		t.Errorf("%d ports reported, want 1", got)
	}
}

// TestApplierBindRetry: a port in use is retried with backoff and bound
// once it is free, without any further plan.
func TestApplierBindRetry(t *testing.T) {
	leakcheck.Check(t)
	a := startApplier(t, newFakeClient(), Options{Backoff: forward.Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond}})
	blocker, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := blocker.Addr().(*net.TCPAddr).Port
	spec := onIPv4(sp("db", "dev", port, 5432))
	apply(t, a, reconcile.Plan{Start: []config.Spec{spec}})
	if st := statusOf(t, a, spec); st.State != StateRetrying || st.Err == nil || st.RetryAt.IsZero() {
		t.Fatalf("state %s, err %v, next retry %v; want %s with the reason and the time of the retry", st.State, st.Err, st.RetryAt, StateRetrying)
	}
	blocker.Close()
	until(t, "the port to be bound after its retry", func() bool { return statusOf(t, a, spec).LocalPort == port })
}

// TestApplierRetryPlanBindsAtOnce: a plan with Retry (SIGHUP) binds a
// waiting port at once, long before its backoff ends.
func TestApplierRetryPlanBindsAtOnce(t *testing.T) {
	leakcheck.Check(t)
	a := startApplier(t, newFakeClient(), Options{}) // an hour's backoff
	blocker, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := blocker.Addr().(*net.TCPAddr).Port
	spec := onIPv4(sp("db", "dev", port, 5432))
	apply(t, a, reconcile.Plan{Start: []config.Spec{spec}})
	blocker.Close()
	apply(t, a, reconcile.Plan{Keep: []config.Spec{spec}})
	if st := statusOf(t, a, spec); st.State != StateRetrying {
		t.Fatalf("a plan without Retry: state %s, want still %s", st.State, StateRetrying)
	}
	apply(t, a, reconcile.Plan{Keep: []config.Spec{spec}, Retry: true})
	if st := statusOf(t, a, spec); st.LocalPort != port || len(st.Addrs) == 0 {
		t.Errorf("after a Retry plan: state %s, local port %d; want bound on %d", st.State, st.LocalPort, port)
	}
}

// TestApplierSharesPodWatches: the sessions of one (context, namespace)
// share one pod watch, which ends with the last of them.
func TestApplierSharesPodWatches(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeClient()
	a := startApplier(t, f, Options{})
	x, y, z := sp("x", "a", 0, 80), sp("y", "a", 0, 80), sp("z", "b", 0, 80)
	y2 := y
	y2.Remote.Number = 81
	apply(t, a, reconcile.Plan{Start: []config.Spec{x, y, y2, z}})
	until(t, "a watch per namespace", func() bool {
		_, w, _ := f.snapshot()
		return w["a"] >= 1 && w["b"] >= 1
	})
	apply(t, a, reconcile.Plan{Stop: []config.Spec{z, x}, Keep: []config.Spec{y, y2}})
	until(t, "the watch of b to end", func() bool {
		_, _, o := f.snapshot()
		return o["b"] == 0
	})
	_, w, o := f.snapshot()
	if w["a"] != 1 || w["b"] != 1 || o["a"] != 1 {
		t.Errorf("watches started %v, open %v; want one each, a's still open", w, o)
	}
	a.Close(0)
	if _, _, o := f.snapshot(); o["a"] != 0 || !f.closed {
		t.Errorf("after Close: open watches %v, client closed %v; want none open, closed", o, f.closed)
	}
}

// TestApplierClosesRemovedSessionsAtOnce: a plan that removes several
// tunnels tells all their sessions to close before it waits for any: here
// each session is stuck in a resolve that outlives its context, and both
// see their context end while the plan is still being applied.
func TestApplierClosesRemovedSessionsAtOnce(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeClient()
	entered := make(chan string, 2)
	cancelled := make(chan string, 2)
	release := make(chan struct{})
	f.hold = func(ctx context.Context, t config.Target) {
		entered <- t.Name
		<-ctx.Done()
		cancelled <- t.Name
		<-release // a resolve that does not return at once
	}
	a := startApplier(t, f, Options{})
	x, y := sp("x", "dev", 0, 80), sp("y", "dev", 0, 80)
	apply(t, a, reconcile.Plan{Start: []config.Spec{x, y}})
	<-entered
	<-entered
	applied := make(chan error, 1)
	go func() { applied <- a.Apply(context.Background(), reconcile.Plan{Stop: []config.Spec{x, y}}) }()
	for range 2 {
		select {
		case <-cancelled:
		case <-time.After(10 * time.Second):
			close(release)
			t.Fatal("the plan waited for one session to close before telling the other")
		}
	}
	close(release)
	if err := <-applied; err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// TestApplierClientErrorFailsAloneAndRetries: a context without a client
// fails its tunnels only; a Retry plan tries again.
func TestApplierClientErrorFailsAloneAndRetries(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeClient()
	broken := true
	a := startApplier(t, f, Options{Clients: func(name string) (Client, error) {
		if name == "nope" && broken {
			return nil, errors.New(`context "nope" not found`)
		}
		return f, nil
	}})
	good, bad := sp("good", "dev", 0, 80), sp("bad", "dev", 0, 80)
	bad.Session.Context = "nope"
	apply(t, a, reconcile.Plan{Start: []config.Spec{bad, good}})
	if st := statusOf(t, a, bad); st.State != StateFailed || st.Err == nil || !strings.Contains(st.Err.Error(), "nope") {
		t.Errorf("bad: state %s, err %v; want %s naming the context", st.State, st.Err, StateFailed)
	}
	if st := statusOf(t, a, good); len(st.Addrs) == 0 {
		t.Errorf("good: state %s, err %v; want bound", st.State, st.Err)
	}
	broken = false // read by the applier's goroutine only after the next Apply's send
	apply(t, a, reconcile.Plan{Keep: []config.Spec{bad, good}, Retry: true})
	if st := statusOf(t, a, bad); len(st.Addrs) == 0 {
		t.Errorf("bad after Retry: state %s, err %v; want bound", st.State, st.Err)
	}
}

// TestApplierPermanentFailureWaits: a forbidden target, or one in a
// namespace that does not exist, shows failed with its reason and no retry
// time (see TestSessionForbiddenWaits and TestSessionMissingNamespaceWaits
// for the waiting), and tries again when a plan changes something.
func TestApplierPermanentFailureWaits(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  func() error
		want string
	}{
		{"forbidden", fmtForbidden, "forbidden"},
		{"namespace missing", fmtNamespaceMissing, "namespace not found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leakcheck.Check(t)
			f := newFakeClient()
			f.resolve = tt.err
			a := startApplier(t, f, Options{Backoff: forward.Backoff{Initial: time.Millisecond, Max: time.Millisecond}})
			spec := sp("db", "dev", 0, 80)
			apply(t, a, reconcile.Plan{Start: []config.Spec{spec}})
			until(t, "failed", func() bool { return statusOf(t, a, spec).State == forward.StateFailed.String() })
			if st := statusOf(t, a, spec); st.Err == nil || !strings.Contains(st.Err.Error(), tt.want) || !st.RetryAt.IsZero() {
				t.Errorf("err %v, next retry %v; want %q and no retry", st.Err, st.RetryAt, tt.want)
			}
			r1, _, _ := f.snapshot()
			apply(t, a, reconcile.Plan{Keep: []config.Spec{spec}, Start: []config.Spec{sp("other", "dev", 0, 80)}})
			until(t, "a resolve after the change", func() bool { r, _, _ := f.snapshot(); return r > r1+1 })
		})
	}
}

// TestApplierPortReaddedWhileResolving: a save that gives db a fixed local
// port and adds cache, another tunnel to db's pod, stops db's port and
// starts cache's and db's new one on the same session. cache's remote port
// is new, so the session resolves again; db's, removed and added again
// while that resolve runs, must be in the map the session ends up with, or
// db's connections are accepted and then wait for a port number that never
// comes. In `tunnels up` the resolve (a request to the API server) reads
// the remote ports before db's is added again in about half such saves
// (TestUpPortChangeWithNewTunnelToSamePod repeats the save); here the
// resolve is held and db's port added by a second plan, so that this
// interleaving happens every time.
func TestApplierPortReaddedWhileResolving(t *testing.T) {
	leakcheck.Check(t)
	c := newPodClient(t)
	a := startApplier(t, nil, Options{Clients: func(string) (Client, error) { return c, nil }})
	db := onIPv4(sp("db", "dev", 0, 5432))
	cache := onIPv4(sp("cache", "dev", 0, 6379))
	cache.Session = db.Session
	apply(t, a, reconcile.Plan{Start: []config.Spec{db}})
	until(t, "db ready", func() bool { return statusOf(t, a, db).State == forward.StateReady.String() })
	echoes(t, a, db)

	asked, release := c.hold()
	defer release()
	moved := db
	moved.LocalPort = freePort(t)
	apply(t, a, reconcile.Plan{Stop: []config.Spec{db}, Start: []config.Spec{cache}})
	select {
	case got := <-asked:
		if want := []config.RemotePort{{Number: 6379}}; !slices.Equal(got, want) {
			t.Fatalf("the resolve for cache's port asked for %v, want %v", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no resolve for cache's new remote port")
	}
	apply(t, a, reconcile.Plan{Keep: []config.Spec{cache}, Start: []config.Spec{moved}})
	release()

	echoes(t, a, moved)
	echoes(t, a, cache)
}

// TestApplierLogsPortsByTunnel: tunnels to one pod share its session, yet
// each port's lines (listening, a local connection given up, stopped
// listening) name the port's own tunnel, not the one that started the
// session.
func TestApplierLogsPortsByTunnel(t *testing.T) {
	leakcheck.Check(t)
	// A file, which the applier's goroutines may write while the test reads.
	logs, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	a := startApplier(t, newFakeClient(), Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), ConnectWait: time.Millisecond})
	db := onIPv4(sp("db", "dev", 0, 5432))
	cache := onIPv4(sp("cache", "dev", 0, 6379))
	cache.Session = db.Session
	apply(t, a, reconcile.Plan{Start: []config.Spec{db}})
	apply(t, a, reconcile.Plan{Keep: []config.Spec{db}, Start: []config.Spec{cache}})
	// No pod is Ready: the connection waits ConnectWait, then is given up
	// (it may be reset before the dial returns).
	if c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(statusOf(t, a, cache).LocalPort))); err == nil {
		defer c.Close()
	}
	until(t, "the connection to be given up", func() bool { return statusOf(t, a, cache).Stats.Failed > 0 })
	apply(t, a, reconcile.Plan{Keep: []config.Spec{db}, Stop: []config.Spec{cache}})

	out, err := os.ReadFile(logs.Name())
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for line := range strings.Lines(string(out)) {
		if !strings.Contains(line, "remote=6379") {
			continue
		}
		if !strings.Contains(line, "tunnel=cache") {
			t.Errorf("a line about cache's port names another tunnel: %s", line)
		}
		_, msg, _ := strings.Cut(line, "msg=")
		msg, _, _ = strings.Cut(msg, " context=")
		msgs = append(msgs, msg)
	}
	want := []string{"listening", `"closing local connection: no connection to the pod"`, `"stopped listening"`}
	if !slices.Equal(msgs, want) {
		t.Errorf("lines about cache's port: %q, want %q", msgs, want)
	}
}
