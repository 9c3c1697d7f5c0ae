// Command tunnels manages Kubernetes port-forwards declared in tunnels.yaml.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// Exit codes shared by every subcommand.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed (invalid file, lost cluster, ...)
	exitUsage = 2 // bad flags, arguments or port specs
)

// exitCodesHelp lists the exit codes in --help (and the README).
const exitCodesHelp = `
Exit codes:
  0  success
  1  failure: an invalid file, a lost cluster, a tunnel not ready in time, ...
  2  usage: an unknown command or flag, a bad argument or port spec;
     for 'tunnels plan', also: the candidate would change something
  N  for 'tunnels run', the command's own exit status (128+SIGNAL if a signal ended it)
`

// env is everything a subcommand may take from the process: only package
// main reads flags and the environment, and only main calls os.Exit.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// lookupEnv tells an unset variable from an empty one (for ${VAR} in
	// the file); nil: getenv, an empty value taken as unset.
	lookupEnv func(string) (string, bool)
}

// command is one subcommand of tunnels.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) int
}

// commands lists the subcommands in the order --help shows them. Each one's
// file registers it in an init function.
var commands []command

func register(c command) { commands = append(commands, c) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, lookupEnv: os.LookupEnv}
	code := run(ctx, e, os.Args[1:])
	stop()
	os.Exit(code)
}

// run dispatches args to a subcommand and returns the exit code.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		if len(args) > 1 {
			return run(ctx, e, []string{args[1], "--help"})
		}
		usage(e.stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "tunnels: unknown command %q\nRun 'tunnels --help' for the list of commands.\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "tunnels manages Kubernetes port-forwards declared in tunnels.yaml.\n\nUsage:\n  tunnels COMMAND [flags]\n\nCommands:\n")
	// Files register their commands in file-name order; show them in the
	// order a user meets them.
	order := []string{"up", "down", "status", "port", "run", "plan", "add", "rm", "enable", "disable", "forward", "validate", "doctor", "completion", "schema", "version"}
	sorted := slices.Clone(commands)
	slices.SortStableFunc(sorted, func(a, b command) int {
		ia, ib := slices.Index(order, a.name), slices.Index(order, b.name)
		if ia < 0 {
			ia = len(order)
		}
		if ib < 0 {
			ib = len(order)
		}
		return ia - ib
	})
	for _, c := range sorted {
		if c.summary == "" {
			continue // hidden: __complete
		}
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'tunnels COMMAND --help' for a command's flags; flags may come before or after\narguments (for 'tunnels run', before the -- and the command).\n")
	fmt.Fprint(w, exitCodesHelp)
}

// newFlagSet returns a flag set that reports errors instead of exiting, with
// a usage line for --help.
func newFlagSet(e *env, name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: tunnels %s\n\n%s\n", synopsis, description)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(out, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args; it returns done=true with the exit code when the
// command should stop (--help printed, or a flag error reported).
func parseFlags(e *env, fs *flag.FlagSet, args []string) (code int, done bool) {
	fs.SetOutput(e.stderr)
	// The flag package prints the usage itself, to stderr, for --help as
	// well as for errors; silence it and print it below on the right stream.
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(e.stdout)
		fs.Usage()
		return exitOK, true
	}
	if err != nil {
		// The flag package has already printed the error.
		fs.Usage()
		return exitUsage, true
	}
	return exitOK, false
}
