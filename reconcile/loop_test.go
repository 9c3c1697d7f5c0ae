package reconcile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// waitFor bounds every wait of these tests.
const waitFor = 10 * time.Second

// parseLines is the Parse of these tests: one "TUNNEL NAMESPACE PORT" per
// line, # comments. Its errors are FILE:LINE:COLUMN lines, like config's.
func parseLines(filename string, data []byte) ([]config.Spec, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%s:1:1: empty file", filename)
	}
	var specs []config.Spec
	var errs []error
	for i, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			errs = append(errs, fmt.Errorf("%s:%d:1: want TUNNEL NAMESPACE PORT", filename, i+1))
			continue
		}
		port, err := strconv.Atoi(f[2])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d:%d: bad port %q", filename, i+1, strings.Index(line, f[2])+1, f[2]))
			continue
		}
		specs = append(specs, sp(f[0], f[1], port, port))
	}
	return specs, errors.Join(errs...)
}

// fakeApplier records plans and checks that the loop keeps its contract:
// one Apply at a time, never a start of a running spec nor a stop or keep
// of one that is not running.
type fakeApplier struct {
	t        *testing.T
	inFlight atomic.Int32

	mu      sync.Mutex
	running map[config.Spec]bool
	plans   []Plan
	err     error         // returned by Apply
	delay   time.Duration // Apply's duration (in a synctest bubble)
}

func (a *fakeApplier) Apply(ctx context.Context, p Plan) error {
	if n := a.inFlight.Add(1); n != 1 {
		a.t.Errorf("%d concurrent Apply calls", n)
	}
	defer a.inFlight.Add(-1)
	time.Sleep(a.delay)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running == nil {
		a.running = map[config.Spec]bool{}
	}
	for _, s := range p.Stop {
		if !a.running[s] {
			a.t.Errorf("plan stops %v, which is not running", names([]config.Spec{s}))
		}
		delete(a.running, s)
	}
	for _, s := range p.Keep {
		if !a.running[s] {
			a.t.Errorf("plan keeps %v, which is not running", names([]config.Spec{s}))
		}
	}
	for _, s := range p.Start {
		if a.running[s] {
			a.t.Errorf("plan starts %v, which is running", names([]config.Spec{s}))
		}
		a.running[s] = true
	}
	a.plans = append(a.plans, p)
	return a.err
}

func (a *fakeApplier) setErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.err = err
}

func (a *fakeApplier) runningSpecs() []config.Spec {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []config.Spec
	for s := range a.running {
		out = append(out, s)
	}
	return sortedSpecs(out)
}

func (a *fakeApplier) planCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.plans)
}

// stoppedEver reports whether a plan stopped s.
func (a *fakeApplier) stoppedEver(s config.Spec) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.plans {
		for _, x := range p.Stop {
			if x == s {
				return true
			}
		}
	}
	return false
}

// syncBuffer is a log sink safe for the loop's goroutine and the test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// harness runs a Loop on a file in a temporary directory.
type harness struct {
	t       *testing.T
	path    string
	applier *fakeApplier
	results chan Result
	reload  chan struct{}
	logs    *syncBuffer
}

func testOptions(h *harness) Options {
	return Options{
		Path:         h.path,
		Parse:        parseLines,
		Applier:      h.applier,
		Logger:       slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Reload:       h.reload,
		Debounce:     50 * time.Millisecond,
		MaxDelay:     500 * time.Millisecond,
		PollInterval: 20 * time.Millisecond,
		OnReload:     func(r Result) { h.results <- r },
	}
}

func newHarness(t *testing.T, path string) *harness {
	return &harness{
		t:       t,
		path:    path,
		applier: &fakeApplier{t: t},
		results: make(chan Result, 1000),
		reload:  make(chan struct{}),
		logs:    &syncBuffer{},
	}
}

// start opens and runs the loop on h.path, which must hold a valid config,
// and waits for the first apply. The loop is stopped, and waited for, when
// the test ends.
func (h *harness) start(tweak func(*Options)) {
	t := h.t
	t.Helper()
	opts := testOptions(h)
	if tweak != nil {
		tweak(&opts)
	}
	l, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(waitFor):
			t.Errorf("Run did not return after cancel")
		}
		if t.Failed() {
			t.Logf("logs:\n%s", h.logs)
		}
	})
	r := h.next()
	if r.Cause != CauseStart || r.Status != StatusApplied || r.Err != nil || len(r.Plan.Stop)+len(r.Plan.Keep) > 0 {
		t.Fatalf("first result = %+v, want a start plan", r)
	}
}

// next returns the next result.
func (h *harness) next() Result {
	h.t.Helper()
	select {
	case r := <-h.results:
		return r
	case <-time.After(waitFor):
		h.t.Fatalf("no reload result within %v", waitFor)
		return Result{}
	}
}

// until returns the first result for which ok holds, and fails the test if
// a result before it is one of forbidden.
func (h *harness) until(ok func(Result) bool, forbidden ...Status) Result {
	h.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case r := <-h.results:
			if ok(r) {
				return r
			}
			for _, f := range forbidden {
				if r.Status == f {
					h.t.Fatalf("unexpected result %v (err %v, plan %s)", r.Status, r.Err, fmtPlan(r.Plan))
				}
			}
		case <-deadline:
			h.t.Fatalf("no matching reload result within %v; running %v", waitFor, names(h.applier.runningSpecs()))
			return Result{}
		}
	}
}

// untilRunning waits until the applier runs exactly want.
func (h *harness) untilRunning(want []config.Spec) Result {
	h.t.Helper()
	return h.until(func(r Result) bool {
		return r.Status == StatusApplied && equalSets(h.applier.runningSpecs(), want)
	})
}

func status(s Status) func(Result) bool { return func(r Result) bool { return r.Status == s } }

func equalSets(a, b []config.Spec) bool {
	a, b = sortedSpecs(a), sortedSpecs(b)
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

const (
	v1 = "a dev 1\nb dev 2\n"
	v2 = "a dev 1\nb dev 3\nc dev 4\n"
	v3 = "# only a\na dev 1\n"
)

var (
	a1 = sp("a", "dev", 1, 1)
	b2 = sp("b", "dev", 2, 2)
	b3 = sp("b", "dev", 3, 3)
	c4 = sp("c", "dev", 4, 4)
)

// A saveStyle lays out a config file the way some writer does, and saves
// new contents the way that writer does.
type saveStyle struct {
	name  string
	setup func(t *testing.T, dir, data string) (path string)
	save  func(t *testing.T, dir, path, data string)
}

// editorPause stands for the time an editor takes between two steps of a
// save. No assertion depends on it.
const editorPause = 30 * time.Millisecond

func plainFile(t *testing.T, dir, data string) string {
	p := filepath.Join(dir, "tunnels.yaml")
	mustWrite(t, p, data)
	return p
}

var saveStyles = []saveStyle{
	{
		name:  "in-place write",
		setup: plainFile,
		save:  func(t *testing.T, _, path, data string) { mustWrite(t, path, data) },
	},
	{
		name:  "truncate then write",
		setup: plainFile,
		save: func(t *testing.T, _, path, data string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			time.Sleep(editorPause)
			if _, err := f.WriteString(data); err != nil {
				t.Fatal(err)
			}
		},
	},
	{
		name:  "write temp then rename (VS Code, sed -i)",
		setup: plainFile,
		save: func(t *testing.T, dir, path, data string) {
			tmp := filepath.Join(dir, ".tunnels.yaml.tmp")
			mustWrite(t, tmp, data)
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		},
	},
	{
		name:  "backup then write (vim)",
		setup: plainFile,
		save: func(t *testing.T, _, path, data string) {
			if err := os.Rename(path, path+"~"); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, path, data)
			if err := os.Remove(path + "~"); err != nil {
				t.Fatal(err)
			}
		},
	},
	{
		name:  "delete and recreate",
		setup: plainFile,
		save: func(t *testing.T, _, path, data string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			time.Sleep(editorPause)
			mustWrite(t, path, data)
		},
	},
	{
		name: "configmap symlink swap",
		setup: func(t *testing.T, dir, data string) string {
			mustMkdir(t, filepath.Join(dir, "..v0"))
			mustWrite(t, filepath.Join(dir, "..v0", "tunnels.yaml"), data)
			mustSymlink(t, "..v0", filepath.Join(dir, "..data"))
			mustSymlink(t, "..data/tunnels.yaml", filepath.Join(dir, "tunnels.yaml"))
			return filepath.Join(dir, "tunnels.yaml")
		},
		save: func(t *testing.T, dir, _, data string) {
			// What kubelet's atomic writer does: a new timestamped
			// directory, a new ..data link renamed over the old one,
			// then the old directory removed.
			old, err := os.Readlink(filepath.Join(dir, "..data"))
			if err != nil {
				t.Fatal(err)
			}
			n, _ := strconv.Atoi(strings.TrimPrefix(old, "..v"))
			next := fmt.Sprintf("..v%d", n+1)
			mustMkdir(t, filepath.Join(dir, next))
			mustWrite(t, filepath.Join(dir, next, "tunnels.yaml"), data)
			mustSymlink(t, next, filepath.Join(dir, "..data_tmp"))
			if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
				t.Fatal(err)
			}
		},
	},
	{
		name: "symlink to a file elsewhere edited in place",
		setup: func(t *testing.T, dir, data string) string {
			mustMkdir(t, filepath.Join(dir, "real"))
			mustMkdir(t, filepath.Join(dir, "cfg"))
			mustWrite(t, filepath.Join(dir, "real", "tunnels.yaml"), data)
			link := filepath.Join(dir, "cfg", "tunnels.yaml")
			mustSymlink(t, filepath.Join(dir, "real", "tunnels.yaml"), link)
			return link
		},
		save: func(t *testing.T, dir, _, data string) {
			mustWrite(t, filepath.Join(dir, "real", "tunnels.yaml"), data)
		},
	},
	{
		name: "symlink repointed (ln -sf)",
		setup: func(t *testing.T, dir, data string) string {
			mustWrite(t, filepath.Join(dir, "t0.yaml"), data)
			mustSymlink(t, "t0.yaml", filepath.Join(dir, "tunnels.yaml"))
			return filepath.Join(dir, "tunnels.yaml")
		},
		save: func(t *testing.T, dir, path, data string) {
			old, err := os.Readlink(path)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(old, "t"), ".yaml"))
			next := fmt.Sprintf("t%d.yaml", n+1)
			mustWrite(t, filepath.Join(dir, next), data)
			mustSymlink(t, next, path+".tmp")
			if err := os.Rename(path+".tmp", path); err != nil {
				t.Fatal(err)
			}
		},
	},
	{
		name: "config directory removed and recreated",
		setup: func(t *testing.T, dir, data string) string {
			mustMkdir(t, filepath.Join(dir, "cfg"))
			return plainFile(t, filepath.Join(dir, "cfg"), data)
		},
		save: func(t *testing.T, dir, path, data string) {
			if err := os.RemoveAll(filepath.Join(dir, "cfg")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(editorPause)
			mustMkdir(t, filepath.Join(dir, "cfg"))
			mustWrite(t, path, data)
		},
	},
}

func TestLoopSaveStyles(t *testing.T) {
	for _, poll := range []bool{false, true} {
		for _, style := range saveStyles {
			name := style.name
			if poll {
				name = "polling/" + name
			}
			t.Run(name, func(t *testing.T) {
				leakcheck.Check(t)
				dir := realTempDir(t)
				h := newHarness(t, style.setup(t, dir, v1))
				h.start(func(o *Options) { o.Poll = poll })

				// Each save is seen, the watch surviving the previous one,
				// and converges without touching the tunnel that did not
				// change.
				for _, step := range []struct {
					data string
					want []config.Spec
				}{
					{v2, []config.Spec{a1, b3, c4}},
					{v3, []config.Spec{a1}},
					{v1, []config.Spec{a1, b2}},
				} {
					style.save(t, dir, h.path, step.data)
					r := h.untilRunning(step.want)
					if r.Cause != CauseFile {
						t.Errorf("cause = %v, want file", r.Cause)
					}
					if r.Trigger.IsZero() || r.Latency <= 0 {
						t.Errorf("trigger %v, latency %v: want both set", r.Trigger, r.Latency)
					}
				}
				if h.applier.stoppedEver(a1) {
					t.Errorf("the unchanged tunnel a was stopped")
				}
				if poll && !strings.Contains(h.logs.String(), "polling the config file") {
					t.Errorf("polling not logged")
				}
			})
		}
	}
}

func TestLoopInvalidSaveKeepsLastGood(t *testing.T) {
	leakcheck.Check(t)
	h := newHarness(t, plainFile(t, realTempDir(t), v1))
	h.start(nil)

	mustWrite(t, h.path, "a dev 1\nbogus\nc dev x\n")
	r := h.until(status(StatusRejected), StatusApplied)
	wantLines := []string{
		h.path + ":2:1: want TUNNEL NAMESPACE PORT",
		h.path + ":3:7: bad port \"x\"",
	}
	for _, w := range wantLines {
		if r.Err == nil || !strings.Contains(r.Err.Error(), w) {
			t.Errorf("result error %v, want it to hold %q", r.Err, w)
		}
		if logs := h.logs.String(); !strings.Contains(logs, "level=ERROR msg=\"config problem\" err=\""+strings.ReplaceAll(w, `"`, `\"`)+"\"") {
			t.Errorf("no Error record for %q in logs:\n%s", w, logs)
		}
	}
	if !strings.Contains(h.logs.String(), "config rejected; keeping 2 tunnels running") {
		t.Errorf("rejection not logged:\n%s", h.logs)
	}
	if n := h.applier.planCount(); n != 1 {
		t.Errorf("%d plans applied, want only the first", n)
	}

	// The next good save applies from what runs (v1), not from the
	// rejected file.
	mustWrite(t, h.path, "a dev 1\nc dev 4\n")
	r = h.until(status(StatusApplied))
	want := Plan{Start: specs(c4), Stop: specs(b2), Keep: specs(a1)}
	if !plansEqual(r.Plan, want) {
		t.Errorf("plan after the good save\n got %s\nwant %s", fmtPlan(r.Plan), fmtPlan(want))
	}
}

func TestLoopIdenticalSaveDoesNothing(t *testing.T) {
	leakcheck.Check(t)
	h := newHarness(t, plainFile(t, realTempDir(t), v1))
	h.start(nil)

	mustWrite(t, h.path, v1)
	h.until(status(StatusUnchanged), StatusApplied, StatusRejected)
	now := time.Now()
	if err := os.Chtimes(h.path, now, now); err != nil {
		t.Fatal(err)
	}
	h.until(status(StatusUnchanged), StatusApplied, StatusRejected)
	if n := h.applier.planCount(); n != 1 {
		t.Errorf("%d plans applied, want only the first", n)
	}
}

func TestLoopRemovedFileKeepsRunning(t *testing.T) {
	leakcheck.Check(t)
	h := newHarness(t, plainFile(t, realTempDir(t), v1))
	h.start(nil)

	if err := os.Remove(h.path); err != nil {
		t.Fatal(err)
	}
	r := h.until(status(StatusRemoved), StatusApplied, StatusRejected)
	if !errors.Is(r.Err, fs.ErrNotExist) {
		t.Errorf("removed result error = %v, want fs.ErrNotExist", r.Err)
	}
	if logs := h.logs.String(); !strings.Contains(logs, `level=WARN msg="config file removed; keeping 2 tunnels running"`) {
		t.Errorf("removal not logged at Warn:\n%s", logs)
	}
	if n := h.applier.planCount(); n != 1 {
		t.Errorf("%d plans applied, want only the first", n)
	}

	mustWrite(t, h.path, v2)
	r = h.untilRunning([]config.Spec{a1, b3, c4})
	if want := (Plan{Start: specs(b3, c4), Stop: specs(b2), Keep: specs(a1)}); !plansEqual(r.Plan, want) {
		t.Errorf("plan after recreation\n got %s\nwant %s", fmtPlan(r.Plan), fmtPlan(want))
	}
}

func TestLoopZeroTunnelsStopsAll(t *testing.T) {
	leakcheck.Check(t)
	h := newHarness(t, plainFile(t, realTempDir(t), v1))
	h.start(nil)

	mustWrite(t, h.path, "# nothing to forward\n")
	r := h.untilRunning(nil)
	if want := (Plan{Stop: specs(a1, b2)}); !plansEqual(r.Plan, want) {
		t.Errorf("plan\n got %s\nwant %s", fmtPlan(r.Plan), fmtPlan(want))
	}
}

func TestLoopReloadSignal(t *testing.T) {
	leakcheck.Check(t)
	h := newHarness(t, plainFile(t, realTempDir(t), v1))
	h.start(nil)

	// Same bytes: an all-Keep plan with Retry, so failed tunnels retry.
	h.reload <- struct{}{}
	r := h.next()
	want := Plan{Keep: specs(a1, b2), Retry: true}
	if r.Cause != CauseReload || r.Status != StatusApplied || !plansEqual(r.Plan, want) {
		t.Errorf("forced reload = %v %v %s, want reload applied %s", r.Cause, r.Status, fmtPlan(r.Plan), fmtPlan(want))
	}

	// An invalid file on a forced reload applies nothing.
	mustWrite(t, h.path, "bogus\n")
	h.until(status(StatusRejected), StatusApplied) // from the file event
	h.reload <- struct{}{}
	if r := h.until(func(r Result) bool { return r.Cause == CauseReload }, StatusApplied); r.Status != StatusRejected {
		t.Errorf("forced reload of an invalid file = %v, want rejected", r.Status)
	}
	if n := h.applier.planCount(); n != 2 {
		t.Errorf("%d plans applied, want 2", n)
	}
}

func TestLoopApplyErrorStillOwned(t *testing.T) {
	leakcheck.Check(t)
	h := newHarness(t, plainFile(t, realTempDir(t), v1))
	h.start(nil)

	errBusy := errors.New("port 3 busy")
	h.applier.setErr(errBusy)
	mustWrite(t, h.path, v2)
	r := h.until(status(StatusApplied))
	if !errors.Is(r.Err, errBusy) {
		t.Errorf("result error = %v, want %v", r.Err, errBusy)
	}
	if !strings.Contains(h.logs.String(), "level=ERROR msg=\"apply config\"") {
		t.Errorf("apply error not logged:\n%s", h.logs)
	}
	// The failed specs belong to the applier: the next plan keeps them
	// rather than starting them again.
	h.applier.setErr(nil)
	mustWrite(t, h.path, v2+"d dev 5\n")
	r = h.until(status(StatusApplied))
	if want := (Plan{Start: specs(sp("d", "dev", 5, 5)), Keep: specs(a1, b3, c4)}); !plansEqual(r.Plan, want) {
		t.Errorf("plan after a failed apply\n got %s\nwant %s", fmtPlan(r.Plan), fmtPlan(want))
	}
}

func TestLoopDuplicateSpecsStartOnce(t *testing.T) {
	leakcheck.Check(t)
	h := newHarness(t, plainFile(t, realTempDir(t), "a dev 1\na dev 1\n"))
	h.start(nil)
	if got := h.applier.runningSpecs(); !equalSets(got, specs(a1)) {
		t.Errorf("running %v, want only a", names(got))
	}
}

func TestLoopStateDirIgnored(t *testing.T) {
	leakcheck.Check(t)
	h := newHarness(t, plainFile(t, realTempDir(t), v1))
	h.start(nil)

	// A state write as the applier makes it: a temporary file renamed
	// into place in the state directory.
	dir := config.StateDirOf(h.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "state.json.tmp")
	if err := os.WriteFile(tmp, []byte(`{"version":1,"ports":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "state.json")); err != nil {
		t.Fatal(err)
	}
	// Events are handled in order: once the config save that follows is
	// applied, the state write's events have been seen, and dropped: the
	// loop logs every relevant event at Debug.
	mustWrite(t, h.path, v2)
	h.untilRunning([]config.Spec{a1, b3, c4})
	if logs := h.logs.String(); strings.Contains(logs, ".tunnels") || !strings.Contains(logs, "config file event") {
		t.Errorf("a state write was taken for a config event:\n%s", logs)
	}
}

func TestLoopFallsBackToPolling(t *testing.T) {
	leakcheck.Check(t)
	defer func(f func() (*fsnotify.Watcher, error)) { newNotifier = f }(newNotifier)
	newNotifier = func() (*fsnotify.Watcher, error) { return nil, errors.New("too many open files") }

	h := newHarness(t, plainFile(t, realTempDir(t), v1))
	h.start(nil)
	if logs := h.logs.String(); !strings.Contains(logs, `level=WARN msg="file notifications unavailable; polling the config file"`) ||
		!strings.Contains(logs, "too many open files") {
		t.Errorf("fallback not logged at Warn with its cause:\n%s", logs)
	}
	mustWrite(t, h.path, v2)
	h.untilRunning([]config.Spec{a1, b3, c4})
}

func TestLoopCountsTunnelsNotPorts(t *testing.T) {
	leakcheck.Check(t)
	h := newHarness(t, plainFile(t, realTempDir(t), "a dev 1\na dev 2\na dev 3\n"))
	h.start(nil)
	if err := os.Remove(h.path); err != nil {
		t.Fatal(err)
	}
	h.until(status(StatusRemoved), StatusApplied)
	if logs := h.logs.String(); !strings.Contains(logs, `"config file removed; keeping 1 tunnel running"`) {
		t.Errorf("want 1 tunnel (of 3 ports) in logs:\n%s", logs)
	}
}

func TestOpenErrors(t *testing.T) {
	leakcheck.Check(t)
	dir := realTempDir(t)
	applier := &fakeApplier{t: t}

	_, err := Open(Options{Path: filepath.Join(dir, "missing.yaml"), Parse: parseLines, Applier: applier})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) error = %v, want fs.ErrNotExist", err)
	}

	bad := plainFile(t, dir, "a dev 1\nbogus\n")
	_, err = Open(Options{Path: bad, Parse: parseLines, Applier: applier})
	if want := bad + ":2:1: want TUNNEL NAMESPACE PORT"; err == nil || err.Error() != want {
		t.Errorf("Open(invalid) error = %v, want exactly Parse's %q", err, want)
	}

	empty := filepath.Join(dir, "empty.yaml")
	mustWrite(t, empty, "")
	if _, err := Open(Options{Path: empty, Parse: parseLines, Applier: applier}); err == nil || !strings.Contains(err.Error(), "empty file") {
		t.Errorf("Open(empty) error = %v, want Parse's empty file error", err)
	}

	for _, o := range []Options{
		{Parse: parseLines, Applier: applier},
		{Path: bad},
		{Path: bad, Parse: parseLines},
	} {
		if _, err := Open(o); err == nil {
			t.Errorf("Open(%+v) succeeded, want an error", o)
		}
	}
	if n := applier.planCount(); n != 0 {
		t.Errorf("%d plans applied by failed Opens", n)
	}
}

func TestLoopRunOnce(t *testing.T) {
	leakcheck.Check(t)
	path := plainFile(t, realTempDir(t), v1)
	applier := &fakeApplier{t: t}
	l, err := Open(Options{Path: path, Parse: parseLines, Applier: applier})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.specs; !equalSets(got, specs(a1, b2)) {
		t.Errorf("Open read %v, want a and b", names(got))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Run(ctx); err != nil {
		t.Errorf("Run(cancelled) = %v, want nil", err)
	}
	if err := l.Run(context.Background()); err == nil {
		t.Errorf("second Run succeeded, want an error")
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close after Run = %v", err)
	}
	if n := applier.planCount(); n != 0 {
		t.Errorf("Run with a cancelled context applied %d plans", n)
	}
}

func TestOpenClose(t *testing.T) {
	leakcheck.Check(t)
	path := plainFile(t, realTempDir(t), v1)
	l, err := Open(Options{Path: path, Parse: parseLines, Applier: &fakeApplier{t: t}})
	if err != nil {
		t.Fatal(err)
	}
	// Close without Run releases the watcher (leakcheck checks).
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSaveToApply measures, with the default timings, the time from an
// in-place save to Apply returning (Result.Latency, which starts at the
// file event) and the wall time of a whole save-to-apply round.
func BenchmarkSaveToApply(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "tunnels.yaml")
	if err := os.WriteFile(path, []byte(v1), 0o644); err != nil {
		b.Fatal(err)
	}
	results := make(chan Result, 16)
	l, err := Open(Options{
		Path:     path,
		Parse:    parseLines,
		Applier:  ApplierFunc(func(context.Context, Plan) error { return nil }),
		OnReload: func(r Result) { results <- r },
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-results // the start

	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		data := v2
		if i%2 == 1 {
			data = v1
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			b.Fatal(err)
		}
		for r := range results {
			if r.Status == StatusApplied {
				total += r.Latency
				break
			}
		}
	}
	b.ReportMetric(total.Seconds()*1000/float64(b.N), "ms-latency/op")
}

// TestLoopAlsoWatched: a change of a file in Options.Also (a local
// override) reloads, created, changed or removed, with notifications and
// when polling; Parse reads it itself.
func TestLoopAlsoWatched(t *testing.T) {
	for _, poll := range []bool{false, true} {
		t.Run(fmt.Sprintf("poll=%v", poll), func(t *testing.T) {
			leakcheck.Check(t)
			dir := realTempDir(t)
			h := newHarness(t, plainFile(t, dir, v3))
			extra := filepath.Join(dir, "tunnels.local.yaml")
			// The override's lines are added to the file's.
			parse := func(name string, data []byte) ([]config.Spec, error) {
				more, err := os.ReadFile(extra)
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					return nil, err
				}
				return parseLines(name, append(append(data, '\n'), more...))
			}
			h.start(func(o *Options) { o.Also, o.Parse, o.Poll = []string{extra}, parse, poll })

			mustWrite(t, extra, "b dev 2\n")
			h.untilRunning([]config.Spec{a1, b2})
			mustWrite(t, extra, "c dev 4\n")
			h.untilRunning([]config.Spec{a1, c4})
			if err := os.Remove(extra); err != nil {
				t.Fatal(err)
			}
			h.untilRunning([]config.Spec{a1})
		})
	}
}
