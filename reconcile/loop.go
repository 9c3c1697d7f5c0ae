package reconcile

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tunnels-dev/tunnels/config"
)

// Default timings of Options.
const (
	DefaultDebounce     = 100 * time.Millisecond
	DefaultMaxDelay     = time.Second
	DefaultPollInterval = 2 * time.Second
)

// Applier converges the running forwards on a plan.
//
// The loop calls Apply from its own goroutine only, one plan at a time, and
// from then on considers the plan's Desired set as running, whatever Apply
// returns: when Apply returns, every Stop spec must be stopped and every
// Start spec must be owned by the applier, running or failed (a failed spec
// is kept, reported, and retried by the applier's own backoff or on a plan
// with Retry set). Keep specs must not be touched, except failed ones when
// Retry is set. The error, if any, is reported, never retried by the loop.
//
// Apply should return once listeners are bound, not wait for pods: the loop
// reads no file event while it runs.
type Applier interface {
	Apply(ctx context.Context, p Plan) error
}

// ApplierFunc adapts a function to Applier.
type ApplierFunc func(ctx context.Context, p Plan) error

// Apply calls f(ctx, p).
func (f ApplierFunc) Apply(ctx context.Context, p Plan) error { return f(ctx, p) }

// Options configures a Loop. Zero values are the documented defaults.
type Options struct {
	// Path is the tunnels file to load and watch. Required.
	Path string

	// Also lists more files watched with Path (its local override): a
	// change of one reloads as a change of Path does, and Parse, which
	// reads them itself, is called again. A missing one is not an error.
	Also []string

	// Parse turns the file's bytes into specs; filename is Path, for
	// problem locations. Its error is reported as it is, one problem per
	// line: return config.Problems. Required.
	Parse func(filename string, data []byte) ([]config.Spec, error)

	// Applier applies each plan. Required.
	Applier Applier

	// Logger receives state changes (Info), rejected configs (Error, one
	// record per problem) and watcher trouble (Warn). nil discards.
	Logger *slog.Logger

	// Reload forces a reload on each receive (tunnels up sends on SIGHUP):
	// the file is reread and reparsed even if its bytes did not change, and
	// the plan, all Keep if nothing changed, is applied with Retry set so
	// that failed tunnels are retried. A file that is missing or invalid
	// then is reported and nothing is applied. nil: no forced reloads.
	Reload <-chan struct{}

	// Debounce is the quiet period after the last file event before the
	// file is read. 0 means DefaultDebounce.
	Debounce time.Duration
	// MaxDelay caps the wait from the first event of a burst, so a file
	// that keeps changing is still read at least once per MaxDelay. 0 means
	// DefaultMaxDelay.
	MaxDelay time.Duration
	// PollInterval is how often the file is read and hashed when polling.
	// 0 means DefaultPollInterval.
	PollInterval time.Duration
	// Poll watches the file by polling only, without file notifications.
	// The loop falls back to polling by itself when notifications are
	// unavailable; this forces it (file systems without notifications,
	// tests).
	Poll bool

	// OnReload, if set, is called from the loop's goroutine after the first
	// apply and after each reload attempt, with what happened. It must not
	// block for long: the loop waits for it.
	OnReload func(Result)
}

// Cause says what triggered a reload.
type Cause int

// The causes of a reload.
const (
	CauseStart  Cause = iota + 1 // the first apply, of the config read by Open
	CauseFile                    // a change of the file (a notification or a poll)
	CauseReload                  // a receive on Options.Reload
)

// String returns "start", "file" or "reload".
func (c Cause) String() string {
	switch c {
	case CauseStart:
		return "start"
	case CauseFile:
		return "file"
	case CauseReload:
		return "reload"
	}
	return fmt.Sprintf("Cause(%d)", int(c))
}

// Status says what a reload did.
type Status int

// The outcomes of a reload.
const (
	// StatusApplied: the file was valid and its plan was applied (Apply
	// may have failed: see Result.Err).
	StatusApplied Status = iota + 1
	// StatusUnchanged: the file's bytes are those last read; nothing done.
	StatusUnchanged
	// StatusRejected: the file could not be read or parsed; the last good
	// config keeps running. Result.Err holds every problem.
	StatusRejected
	// StatusRemoved: the file is gone; the last good config keeps running
	// until it comes back.
	StatusRemoved
)

// String returns "applied", "unchanged", "rejected" or "removed".
func (s Status) String() string {
	switch s {
	case StatusApplied:
		return "applied"
	case StatusUnchanged:
		return "unchanged"
	case StatusRejected:
		return "rejected"
	case StatusRemoved:
		return "removed"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Result reports one reload, for a UI and for benchmarks.
type Result struct {
	Cause  Cause
	Status Status
	// Plan is the plan applied; zero unless Status is StatusApplied.
	Plan Plan
	// Err is the error Apply returned (StatusApplied), the parse problems
	// or read error (StatusRejected), or the not-exist error
	// (StatusRemoved).
	Err error
	// Trigger is when the reload was triggered: the first file event of
	// the burst (or the poll that saw the change), the receive on Reload,
	// or Open's read for CauseStart.
	Trigger time.Time
	// Latency is the time from Trigger to Apply returning, debounce
	// included; zero unless Status is StatusApplied. With an Applier that
	// returns once the new listeners accept, it is save-to-accepting.
	Latency time.Duration
}

// Loop keeps the running forwards converged on the tunnels file. It is the
// one owner of the running set: Run's goroutine reads the file, diffs and
// calls Apply, so Apply never runs concurrently with itself.
//
// A Loop is used once: Open, then Run (or Close if Run is not called). Its
// methods are not safe for concurrent use; stop Run by cancelling its
// context.
type Loop struct {
	opts Options
	log  *slog.Logger
	w    *watcher
	deb  *debouncer

	specs  []config.Spec // read by Open, applied first by Run
	opened time.Time     // when Open read the file

	running   []config.Spec // the Desired set of the last applied plan
	lastKey   string        // readKey of the last file read processed
	pollKey   string        // readKey seen by the last poll tick
	held      time.Time     // trigger of a burst whose empty read was held back
	heldEmpty bool          // the pending burst follows an empty read held back
	used      bool          // Run was called
	closed    bool
}

// Open sets up the watch on opts.Path, then reads and parses the file. It
// watches first, so that a save made right after the read is not missed.
// If the file cannot be read it returns the read error (wrapping
// fs.ErrNotExist for a missing file); if it does not parse it returns
// Parse's error unwrapped (config.Problems), for the caller to print. Only
// this first load can fail: later bad saves are reported and change nothing.
func Open(opts Options) (*Loop, error) {
	switch {
	case opts.Path == "":
		return nil, errors.New("open reconcile loop: no config path")
	case opts.Parse == nil:
		return nil, errors.New("open reconcile loop: no Parse function")
	case opts.Applier == nil:
		return nil, errors.New("open reconcile loop: no Applier")
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("open reconcile loop: resolve %s: %w", opts.Path, err)
	}
	l := &Loop{
		opts: opts,
		log:  log,
		deb:  newDebouncer(opts.Debounce, opts.MaxDelay),
		w:    newWatcher(abs, opts.Poll, opts.PollInterval, log),
	}
	for _, p := range opts.Also {
		a, err := filepath.Abs(p)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("open reconcile loop: resolve %s: %w", p, err)
		}
		l.w.also = append(l.w.also, a)
	}
	l.w.sync()
	l.opened = time.Now()
	data, err := os.ReadFile(opts.Path)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("read config: %w", err)
	}
	specs, err := opts.Parse(opts.Path, data)
	if err != nil {
		l.Close()
		return nil, err
	}
	l.specs = sortedSpecs(specs)
	l.lastKey = readKey(data, nil) + l.alsoKey()
	l.pollKey = l.lastKey
	return l, nil
}

// Run applies the config read by Open (a plan that starts every spec), then
// watches the file and applies each valid change until ctx is done, and
// returns nil. It does not stop the running forwards when it returns: they
// belong to the applier. It releases the watch before returning.
func (l *Loop) Run(ctx context.Context) error {
	if l.used || l.closed {
		return errors.New("run reconcile loop: loop already run or closed")
	}
	l.used = true
	defer l.Close()
	if ctx.Err() != nil {
		return nil
	}
	l.apply(ctx, CauseStart, l.opened, Diff(l.specs, nil))
	reload := l.opts.Reload
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-l.w.events():
			if !ok {
				l.w.startPolling(errors.New("file watcher stopped"))
				continue
			}
			if l.w.relevant(ev.Name) {
				l.log.Debug("config file event", "file", ev.Name, "op", ev.Op.String())
				l.deb.event(time.Now())
			}
		case err, ok := <-l.w.errors():
			if !ok {
				l.w.startPolling(errors.New("file watcher stopped"))
				continue
			}
			// Events may have been lost (a queue overflow): reread.
			l.log.Warn("file watcher error; rereading the config file", "file", l.opts.Path, "err", err)
			l.deb.event(time.Now())
		case now := <-l.w.ticks():
			l.poll(now)
		case <-l.deb.C():
			trigger := l.deb.fired()
			if !l.held.IsZero() {
				trigger, l.held = l.held, time.Time{}
			}
			l.reload(ctx, CauseFile, trigger)
		case _, ok := <-reload:
			if !ok {
				reload = nil
				continue
			}
			l.reload(ctx, CauseReload, time.Now())
		}
	}
}

// Close releases the watch of a Loop whose Run is not called. Run closes the
// loop itself when it returns. Close is idempotent and returns nil.
func (l *Loop) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	l.deb.stop()
	l.w.close()
	return nil
}

// poll checks the file on a poll tick. A change since the previous tick is
// an event: it starts or extends a debounced burst, so that a file caught
// mid-write is read again once quiet. A tick that sees what the previous
// one saw is quiet, even if the loop has not read that content yet.
func (l *Loop) poll(now time.Time) {
	data, err := os.ReadFile(l.opts.Path)
	key := readKey(data, err) + l.alsoKey()
	if key == l.pollKey {
		return
	}
	l.pollKey = key
	if key != l.lastKey {
		l.deb.event(now)
	}
}

// reload rereads the file and, if it changed and is valid, applies the plan
// from the running set to its specs.
func (l *Loop) reload(ctx context.Context, cause Cause, trigger time.Time) {
	if ctx.Err() != nil {
		return
	}
	// Re-add the watches a rename or removal dropped before reading, so
	// that a change made after this read is seen.
	l.w.sync()
	data, err := os.ReadFile(l.opts.Path)
	key := readKey(data, err) + l.alsoKey()
	forced := cause == CauseReload
	wasHeld := l.heldEmpty
	l.heldEmpty = false

	if key == l.lastKey && !forced {
		l.log.Debug("config file unchanged", "file", l.opts.Path)
		l.report(Result{Cause: cause, Status: StatusUnchanged, Trigger: trigger})
		return
	}
	if err == nil && len(data) == 0 && !forced && !wasHeld {
		// Most likely a writer truncated the file and has not written
		// yet: read again after one more quiet period. If the file is
		// still empty then, it is parsed like any other.
		l.log.Debug("config file empty; reading again once quiet", "file", l.opts.Path)
		l.heldEmpty = true
		l.held = trigger
		l.deb.event(time.Now())
		return
	}
	l.lastKey = key

	switch {
	case errors.Is(err, fs.ErrNotExist):
		l.log.Warn("config file removed; keeping "+tunnelCount(l.running)+" running", "file", l.opts.Path)
		l.report(Result{Cause: cause, Status: StatusRemoved, Err: err, Trigger: trigger})
		return
	case err != nil:
		l.reject(cause, trigger, fmt.Errorf("read config: %w", err))
		return
	}
	specs, err := l.opts.Parse(l.opts.Path, data)
	if err != nil {
		l.reject(cause, trigger, err)
		return
	}
	plan := Diff(specs, l.running)
	plan.Retry = forced
	l.apply(ctx, cause, trigger, plan)
}

// reject reports a config that cannot be used: one Error record, then one
// per problem line (FILE:LINE:COLUMN: message).
func (l *Loop) reject(cause Cause, trigger time.Time, err error) {
	l.log.Error("config rejected; keeping "+tunnelCount(l.running)+" running", "file", l.opts.Path)
	for _, line := range problemLines(err) {
		l.log.Error("config problem", "err", line)
	}
	l.report(Result{Cause: cause, Status: StatusRejected, Err: err, Trigger: trigger})
}

// apply hands plan to the applier and takes its desired set as running.
func (l *Loop) apply(ctx context.Context, cause Cause, trigger time.Time, plan Plan) {
	err := l.opts.Applier.Apply(ctx, plan)
	latency := time.Since(trigger)
	// Whatever Apply returned, the applier now owns exactly the desired
	// set (see Applier), so the next plan is computed from it.
	l.running = plan.Desired()
	if err != nil {
		l.log.Error("apply config", "file", l.opts.Path, "err", err)
	} else {
		l.log.Info("config applied", "file", l.opts.Path, "cause", cause.String(),
			"start", len(plan.Start), "stop", len(plan.Stop), "keep", len(plan.Keep), "retry", plan.Retry)
	}
	l.report(Result{Cause: cause, Status: StatusApplied, Plan: plan, Err: err, Trigger: trigger, Latency: latency})
}

func (l *Loop) report(r Result) {
	if l.opts.OnReload != nil {
		l.opts.OnReload(r)
	}
}

// tunnelCount says how many tunnels specs belong to: "1 tunnel", "3 tunnels".
func tunnelCount(specs []config.Spec) string {
	names := map[string]bool{}
	for _, s := range specs {
		names[s.Tunnel] = true
	}
	if len(names) == 1 {
		return "1 tunnel"
	}
	return fmt.Sprintf("%d tunnels", len(names))
}

// readKey identifies the outcome of reading the file, so that a byte-identical
// save (or the same failure again) is recognised.
func readKey(data []byte, err error) string {
	switch {
	case err == nil:
		sum := sha256.Sum256(data)
		return "sha256:" + string(sum[:])
	case errors.Is(err, fs.ErrNotExist):
		return "missing"
	default:
		return "error:" + err.Error()
	}
}

// alsoKey is the readKey of each of Options.Also, so that a change of one
// of them is a change.
func (l *Loop) alsoKey() string {
	var b strings.Builder
	for _, p := range l.opts.Also {
		data, err := os.ReadFile(p)
		b.WriteString("|" + readKey(data, err))
	}
	return b.String()
}

// problemLines splits an error into its lines: config.Problems and
// errors.Join put one problem per line.
func problemLines(err error) []string {
	var lines []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if strings.TrimSpace(line) != "" {
			lines = append(lines, line)
		}
	}
	return lines
}
