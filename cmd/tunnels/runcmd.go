package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func init() {
	register(command{name: "run", summary: "bring the tunnels up, run a command with their addresses, then stop them", run: runRun})
}

func runRun(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "run", "run [-f FILE] [--timeout D] [--context C] [--kubeconfig K] -- CMD [ARGS...]",
		`Start every enabled tunnel of FILE (a tunnels up in the background, its log in
.tunnels/run.log), wait until all are ready, then run CMD with each port's local address in
its environment, stop the tunnels when CMD exits and exit with CMD's status. SIGINT, SIGTERM
and SIGHUP are passed on to CMD, except a Ctrl-C at the terminal, which reaches CMD directly.
If a tunnel is not ready within --timeout, CMD does not run and the exit code is 1.

The variable of each port is TUNNELS_<TUNNEL>_<REMOTE>: the tunnel's name and the remote port
as written in the file (a number or a port name), upper-cased, each '-' made '_'. Its value is
HOST:PORT, the first address the port listens on (127.0.0.1 for localhost):

  tunnels run -- sh -c 'psql -h 127.0.0.1 -p "${TUNNELS_DB_5432##*:}"'   # tunnel db, port 5432
  TUNNELS_MY_API_HTTP=127.0.0.1:8080                                     # tunnel my-api, port http`)
	file := fs.String("f", "tunnels.yaml", "the tunnels file to run")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then ~/.kube/config)")
	kctx := fs.String("context", "", "kube context for every tunnel, overriding the file")
	timeout := fs.Duration("timeout", defaultWaitTimeout, "how long to wait for every tunnel to be ready")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(e.stderr, "tunnels run: want a command to run: tunnels run [flags] -- CMD [ARGS...]\n")
		return exitUsage
	}
	_, _ = kubeconfig, kctx // passed on to the up by upArgs
	b, err := startBackground(e, *file, upArgs(fs, "timeout"), "run.log")
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels run: %v\n", err)
		return exitFail
	}
	// From here on the tunnels are ours to stop, whatever happens.
	defer b.stop(e)
	res, err := b.waitRunning(ctx, true, *timeout)
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels run: %v\n", err)
		for _, l := range res.notReady {
			fmt.Fprintf(e.stderr, "  %s\n", l)
		}
		return exitFail
	}
	vars, err := tunnelEnv(res.report)
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels run: %v\n", err)
		return exitFail
	}
	return runChild(e, fs.Args(), vars)
}

// tunnelEnv returns TUNNELS_<TUNNEL>_<REMOTE>=ADDRESS for every port of r.
func tunnelEnv(r *statusReport) ([]string, error) {
	var vars []string
	owner := map[string]string{}
	for _, row := range r.Tunnels {
		if len(row.Local) == 0 {
			continue
		}
		name := envName(row.Tunnel, row.Remote)
		if prev, dup := owner[name]; dup {
			return nil, fmt.Errorf("tunnels %s and %s port %s both give the variable %s; rename one", prev, row.Tunnel, row.Remote, name)
		}
		owner[name] = row.Tunnel + " port " + row.Remote
		vars = append(vars, name+"="+row.Local[0])
	}
	return vars, nil
}

// envName is the variable of a tunnel's remote port: TUNNELS_DB_5432 for
// tunnel db port 5432, TUNNELS_MY_API_HTTP for tunnel my-api port http.
func envName(tunnel, remote string) string {
	up := func(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
	return "TUNNELS_" + up(tunnel) + "_" + up(remote)
}

// runChild runs argv with the variables added to this process's
// environment, passing on SIGINT, SIGTERM and SIGHUP, and returns its exit
// code (128+N when a signal N ended it, as shells report it).
func runChild(e *env, argv []string, vars []string) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
	cmd.Env = append(os.Environ(), vars...)
	// Catch the signals before starting, so none is lost in between; from
	// here on they are CMD's to act on, not ours.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(e.stderr, "tunnels run: %v\n", err)
		return 127
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			// Ctrl-C at the terminal signals its whole foreground group,
			// CMD included: passing it on would give CMD a second SIGINT,
			// which many programs take as "quit now, skip the clean-up".
			if s == syscall.SIGINT && foregroundOf(e.stdin, e.stdout, e.stderr) {
				continue
			}
			_ = cmd.Process.Signal(s)
		case err := <-done:
			return childExitCode(e, err)
		}
	}
}

func childExitCode(e *env, err error) int {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	}
	fmt.Fprintf(e.stderr, "tunnels run: %v\n", err)
	return exitFail
}

// stop ends the background up: through its control socket, or with SIGTERM
// if it does not answer, then waits for it to exit.
func (b *bgUp) stop(e *env) {
	select {
	case <-b.exited:
		return
	default:
	}
	// A fresh context: ours may be the one a signal cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), downTimeout)
	defer cancel()
	// Through the socket only if ours is the up answering on it: another
	// up of the same file is not ours to stop.
	r, err := fetchStatus(ctx, b.file)
	if err != nil || r.PID != b.pid || callControl(ctx, b.file, http.MethodPost, "/stop", nil, nil) != nil {
		if p, ferr := os.FindProcess(b.pid); ferr == nil {
			_ = p.Signal(syscall.SIGTERM)
		}
	}
	select {
	case <-b.exited:
	case <-time.After(downTimeout):
		fmt.Fprintf(e.stderr, "tunnels run: the tunnels (pid %d) did not stop within %s\n", b.pid, downTimeout)
	}
}
