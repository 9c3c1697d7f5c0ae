package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// downTimeout is how long `tunnels down` waits for the up to exit: its 2 s
// drain of open connections, and slack.
const downTimeout = 10 * time.Second

func init() {
	register(command{name: "down", summary: "stop the running `tunnels up` of a file (foreground or background)", run: runDown})
}

func runDown(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "down", "down [-f FILE]",
		`Stop the tunnels up running for FILE, in the background (up -d) or in another terminal,
through its control socket, as SIGTERM would: listeners close, open connections get up to 2 s
to finish. Exits 0 once it has exited, and also when none was running.`)
	file := fs.String("f", "tunnels.yaml", "the config file the running `tunnels up` watches")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "tunnels down: unexpected argument %q (the file is given with -f)\n", fs.Arg(0))
		return exitUsage
	}
	r, err := fetchStatus(ctx, *file)
	if errors.Is(err, errNotRunning) {
		fmt.Fprintf(e.stderr, "tunnels down: no tunnels up is running for %s\n", *file)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels down: %v\n", err)
		return exitFail
	}
	if err := stopUp(ctx, *file); err != nil {
		fmt.Fprintf(e.stderr, "tunnels down: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(e.stdout, "stopped tunnels up (pid %d) for %s\n", r.PID, *file)
	return exitOK
}

// stopUp asks the up running file to stop and waits until its control
// socket is gone, which it removes last.
func stopUp(ctx context.Context, file string) error {
	if err := callControl(ctx, file, http.MethodPost, "/stop", nil, nil); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, downTimeout)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		_, err := fetchStatus(ctx, file)
		if errors.Is(err, errNotRunning) && ctx.Err() == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for tunnels up to exit: %w", ctx.Err())
		case <-tick.C:
		}
	}
}
