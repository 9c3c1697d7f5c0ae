package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tunnels-dev/tunnels/config"
)

// defaultWaitTimeout is how long `tunnels up --wait` and `tunnels run` wait
// for every tunnel to be ready.
const defaultWaitTimeout = 2 * time.Minute

// pollEvery is how often a waiting command asks the background up for its
// status.
const pollEvery = 50 * time.Millisecond

// bgUp is a `tunnels up` this process started in the background.
type bgUp struct {
	file   string
	load   func() (*config.File, error) // reads file as the up does
	log    string                       // its log file
	pid    int
	exited chan struct{} // closed when it exits
	err    error         // its exit error, once exited is closed
}

// upArgs are the flags of an `up` for a background child: those set on
// flags, except the ones that asked for the background, and --output=log.
func upArgs(flags *flag.FlagSet, skip ...string) []string {
	args := []string{"up"}
	flags.Visit(func(f *flag.Flag) {
		if slices.Contains(skip, f.Name) || f.Name == "output" {
			return
		}
		args = append(args, "-"+f.Name+"="+f.Value.String())
	})
	return append(args, "--output=log")
}

// startBackground starts this binary with args (an `up` of file) in its own
// session, detached from the terminal, its output in .tunnels/logName next
// to file. The caller waits for it with waitRunning.
func startBackground(e *env, file string, args []string, logName string) (*bgUp, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the tunnels binary to start in the background: %w", err)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, fmt.Errorf("resolve config path: %w", err)
	}
	dir := config.StateDirOf(abs)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir for the background log: %w", err)
	}
	logPath := filepath.Join(dir, logName)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the background log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start tunnels up in the background: %w", err)
	}
	load := func() (*config.File, error) { return loadFile(e, file) }
	b := &bgUp{file: file, load: load, log: logPath, pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() { b.err = cmd.Wait(); close(b.exited) }()
	return b, nil
}

// logText returns the background up's log, for a failure message.
func (b *bgUp) logText() string {
	data, err := os.ReadFile(b.log)
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(data))
}

// waitResult is what waitRunning saw last.
type waitResult struct {
	report   *statusReport // nil if the up never answered
	notReady []string      // "TUNNEL PORT: why", when not every port is ready
}

// errBackgroundExited: the background up exited while we waited for it.
type errBackgroundExited struct{ b *bgUp }

func (e errBackgroundExited) Error() string {
	msg := fmt.Sprintf("tunnels up exited (%v)", e.b.err)
	if l := e.b.logText(); l != "" {
		msg += ":\n" + l
	}
	return msg
}

// waitRunning polls the background up until it answers on its control
// socket and, if ready is set, until every port of every enabled tunnel of
// the file is ready. It returns what it saw last and an error when the up
// exited, ctx ended or timeout passed first.
func (b *bgUp) waitRunning(ctx context.Context, ready bool, timeout time.Duration) (waitResult, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var last waitResult
	for {
		r, err := fetchStatus(ctx, b.file)
		if err == nil && r.PID == b.pid {
			last.report = r
			last.notReady = notReady(b.load, r)
			if !ready || len(last.notReady) == 0 {
				return last, nil
			}
		}
		select {
		case <-b.exited:
			return last, errBackgroundExited{b}
		case <-ctx.Done():
			return last, fmt.Errorf("wait for tunnels up: %w", ctx.Err())
		case <-deadline.C:
			if last.report == nil {
				return last, fmt.Errorf("tunnels up did not answer within %s (log: %s)", timeout, b.log)
			}
			return last, fmt.Errorf("not every tunnel was ready within %s", timeout)
		case <-tick.C:
		}
	}
}

// notReady lists the ports of r that are not ready, and the ports of the
// file's enabled tunnels that r does not show yet (before the first apply).
func notReady(load func() (*config.File, error), r *statusReport) []string {
	var out []string
	seen := map[string]int{}
	for _, row := range r.Tunnels {
		seen[row.Tunnel]++
		if row.State == "ready" {
			continue
		}
		why := row.State
		if row.LastError != "" {
			why += ": " + oneLine(row.LastError)
		}
		out = append(out, fmt.Sprintf("%s %s: %s", row.Tunnel, row.Remote, why))
	}
	if f, err := load(); err == nil {
		for _, t := range f.Tunnels {
			if !t.Disabled && seen[t.Name] < len(t.Ports) {
				out = append(out, fmt.Sprintf("%s: not started yet", t.Name))
			}
		}
	}
	if r.Config.Error != "" {
		out = append(out, "the file was rejected: "+strings.ReplaceAll(r.Config.Error, "\n", "; "))
	}
	return out
}

// runDetached is `tunnels up -d` and `tunnels up --wait`.
func runDetached(ctx context.Context, e *env, flags *flag.FlagSet, file string, wait bool, timeout time.Duration) int {
	// The file's own problems come first, here, rather than in a log.
	if _, err := loadFile(e, file); err != nil {
		printLoadError(e, file, err)
		return exitFail
	}
	b, err := startBackground(e, file, upArgs(flags, "d", "wait", "timeout"), "up.log")
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels up: %v\n", err)
		return exitFail
	}
	res, err := b.waitRunning(ctx, wait, timeout)
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels up: %v\n", err)
		for _, l := range res.notReady {
			fmt.Fprintf(e.stderr, "  %s\n", l)
		}
		if res.report != nil {
			fmt.Fprintf(e.stderr, "tunnels up keeps running in the background (pid %d, log %s); stop it with: tunnels down -f %s\n", b.pid, b.log, file)
		}
		return exitFail
	}
	what := "running"
	if wait {
		what = "ready"
	}
	fmt.Fprintf(e.stdout, "tunnels up %s in the background (pid %d, log %s); stop it with: tunnels down -f %s\n", what, b.pid, b.log, file)
	return exitOK
}
