package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/kube"
	"github.com/tunnels-dev/tunnels/reconcile"
	"github.com/tunnels-dev/tunnels/tunnel"
)

// drainTimeout is how long open connections may run on after SIGINT/SIGTERM.
const drainTimeout = 2 * time.Second

func init() {
	register(command{name: "up", summary: "start every tunnel in tunnels.yaml and follow edits to it", run: runUp})
}

func runUp(ctx context.Context, e *env, args []string) int {
	flags := newFlagSet(e, "up", "up [-f FILE] [--context C] [--kubeconfig K] [--transport auto|websocket|spdy] [-d | --wait [--timeout D]]",
		`Start every enabled tunnel of FILE and keep them converged on it: each save starts what
was added, stops what was removed, restarts what changed, and leaves the rest alone.
A save with errors changes nothing; SIGHUP reloads and retries failed tunnels now.
On a terminal it shows a live table; otherwise it logs one line per change.
With -d it runs in the background, its log in .tunnels/up.log next to FILE; --wait also
waits until every enabled tunnel is ready (exit 0) or --timeout passes (exit 1, naming the
tunnels that are not ready; they keep retrying). 'tunnels down' stops it.`)
	file := flags.String("f", "tunnels.yaml", "the tunnels file to run and watch")
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then ~/.kube/config)")
	kctx := flags.String("context", "", "kube context for every tunnel, overriding the file")
	transport := transportFlag(flags, "the file's, else auto; overrides the file")
	output := flags.String("output", "auto", "auto (a live table on a terminal, logs otherwise), table, or log")
	logFormat := flags.String("log-format", "text", "log format: text or json")
	verbose := flags.Bool("v", false, "log every forwarded connection (debug)")
	poll := flags.Bool("poll", false, "watch the file by polling instead of file notifications")
	detach := flags.Bool("d", false, "run in the background (log in .tunnels/up.log) and return once it runs")
	wait := flags.Bool("wait", false, "run in the background and return once every enabled tunnel is ready (implies -d)")
	timeout := flags.Duration("timeout", defaultWaitTimeout, "with --wait, how long to wait for every tunnel to be ready")
	if code, done := parseFlags(e, flags, args); done {
		return code
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(e.stderr, "tunnels up: unexpected argument %q (the file is given with -f)\n", flags.Arg(0))
		return exitUsage
	}
	table := *output == "table" || (*output == "auto" && isTerminal(e.stdout))
	if *output != "auto" && *output != "table" && *output != "log" {
		fmt.Fprintf(e.stderr, "tunnels up: --output must be auto, table or log, not %q\n", *output)
		return exitUsage
	}
	if err := checkTransport(*transport); err != nil {
		fmt.Fprintf(e.stderr, "tunnels up: %v\n", err)
		return exitUsage
	}
	if *logFormat != "text" && *logFormat != "json" {
		fmt.Fprintf(e.stderr, "tunnels up: --log-format must be text or json, not %q\n", *logFormat)
		return exitUsage
	}

	if *detach || *wait {
		return runDetached(ctx, e, flags, *file, *wait, *timeout)
	}
	// tunnels down stops this up through its control socket.
	ctx, cancelUp := context.WithCancel(ctx)
	defer cancelUp()

	// Logs go to stderr, or under the table, as short lines, when it is
	// drawn.
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	var handler slog.Handler = slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})
	if *logFormat == "json" {
		handler = slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level})
	}
	var events *eventLog
	if table {
		events = newEventLog(level)
		handler = events
	}
	log := slog.New(handler)

	// The file's own problems come first: they are what a user edits.
	if _, err := loadFile(e, *file); err != nil {
		printLoadError(e, *file, err)
		return exitFail
	}
	kc, err := kube.Load(kube.LoadOptions{Kubeconfig: *kubeconfig, Getenv: e.getenv})
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels up: %v\n", err)
		return exitFail
	}
	defaults := config.Defaults{Context: kc.CurrentContext(), Namespace: kc.Namespace, Override: *kctx,
		Transport: *transport, NoWebSocket: noWebSocket(e)}
	parse := func(name string, data []byte) ([]config.Spec, error) {
		f, err := parseFile(e, *file, name, data)
		if err != nil {
			return nil, err
		}
		return f.Specs(defaults), nil
	}

	// A state file that cannot be read still gives a usable, empty state:
	// the remembered ports are only a preference.
	memory, err := tunnel.OpenPortMemory(*file)
	if err != nil {
		log.Warn("ignoring the remembered local ports", "err", err)
	}
	m := tunnel.Start(context.WithoutCancel(ctx), tunnel.Options{
		Logger:  log,
		Clients: tunnel.KubeClients(kc, kube.ClientOptions{Logger: log, Getenv: e.getenv}),
		Memory:  memory,
	})

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{})
	reloadCtx, stopReload := context.WithCancel(ctx)
	reloadDone := make(chan struct{})
	defer func() { stopReload(); <-reloadDone }()
	go func() {
		defer close(reloadDone)
		for {
			select {
			case <-reloadCtx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				case <-reloadCtx.Done():
					return
				}
			}
		}
	}()

	var statusMu sync.Mutex
	cfgState := configState{}
	var running []config.Spec // what the last applied plan runs, for tunnels plan
	started := time.Now()
	loop, err := reconcile.Open(reconcile.Options{
		Path: *file, Also: []string{config.LocalPath(*file)},
		Parse: parse, Applier: m, Logger: log, Reload: reload, Poll: *poll,
		OnReload: func(r reconcile.Result) {
			statusMu.Lock()
			defer statusMu.Unlock()
			switch r.Status {
			case reconcile.StatusApplied:
				cfgState = configState{LastReload: time.Now()}
				running = r.Plan.Desired()
			case reconcile.StatusRejected:
				cfgState.Error = r.Err.Error()
			}
		},
	})
	if err != nil {
		printLoadError(e, *file, err)
		return exitFail
	}
	report := func() statusReport {
		statusMu.Lock()
		cs := cfgState
		statusMu.Unlock()
		return statusReport{File: *file, PID: os.Getpid(), Started: started, Config: cs, Tunnels: portRows(m.Status())}
	}
	ctl, err := startControl(*file, report, upControl{
		stop: cancelUp,
		plan: func(name string, data []byte) (*planReport, error) {
			specs, err := parse(name, data)
			if err != nil {
				return nil, err
			}
			statusMu.Lock()
			defer statusMu.Unlock()
			return newPlanReport(reconcile.Diff(specs, running), true), nil
		},
	}.routes)
	if err != nil {
		loop.Close()
		m.Close(0)
		fmt.Fprintf(e.stderr, "tunnels up: %v\n", err)
		return exitFail
	}

	var uiDone chan struct{}
	uiCtx, stopUI := context.WithCancel(ctx)
	if table {
		view := newLiveView(e, report, events)
		uiDone = make(chan struct{})
		go func() {
			defer close(uiDone)
			view.run(uiCtx)
		}()
	}

	runErr := loop.Run(ctx)
	stopUI()
	if uiDone != nil {
		<-uiDone
	}
	stopReload()
	m.Close(drainTimeout)
	_ = ctl.Close()
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		fmt.Fprintf(e.stderr, "tunnels up: %v\n", runErr)
		return exitFail
	}
	log.Info("stopped")
	if table {
		fmt.Fprintln(e.stdout, "tunnels stopped")
	}
	return exitOK
}

// printLoadError reports why the first load of file failed: every problem
// as FILE:LINE:COLUMN, or what to do about a missing file.
func printLoadError(e *env, file string, err error) {
	var problems config.Problems
	switch {
	case errors.As(err, &problems):
		for _, p := range problems {
			fmt.Fprintln(e.stderr, p.Error())
		}
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(e.stderr, "tunnels up: %s does not exist; create it (see examples/) or name another file with -f\n", file)
	default:
		fmt.Fprintf(e.stderr, "tunnels up: %v\n", err)
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
