package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/tunnels-dev/tunnels/config"
)

func init() {
	register(command{name: "validate", summary: "check a tunnels file and report every mistake", run: runValidate})
}

// runValidate parses the file without touching any cluster: exit 0 and a
// summary on stdout when it is valid, exit 1 and one FILE:LINE:COLUMN line
// per problem on stderr when it is not.
func runValidate(_ context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "validate", "validate [-f FILE] [-o table|json|yaml]",
		"Check a tunnels file without contacting any cluster. Prints a summary and\n"+
			"exits 0 when the file is valid; prints every problem as FILE:LINE:COLUMN:\n"+
			"message and exits 1 when it is not. With -o json or yaml, the result and the\n"+
			"problems are one document on stdout.")
	file := fs.String("f", "tunnels.yaml", "the tunnels `FILE` to check")
	output := fs.String("o", "table", "output format: table (text), json or yaml")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if !checkOutput(e, "validate", *output) {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "tunnels validate: unexpected argument %q (the file is given with -f)\n", fs.Arg(0))
		return exitUsage
	}
	f, err := loadFile(e, *file)
	if *output != "table" {
		return writeValidation(e, *file, *output, f, err)
	}
	var problems config.Problems
	switch {
	case errors.As(err, &problems):
		for _, p := range problems {
			fmt.Fprintln(e.stderr, p)
		}
		return exitFail
	case err != nil:
		fmt.Fprintf(e.stderr, "tunnels validate: %v\n", err)
		return exitFail
	}
	name := *file
	if local, _ := config.ReadLocal(*file); local != nil {
		name += " with " + local.Name
	}
	fmt.Fprintf(e.stdout, "%s: valid, %s\n", name, summary(f))
	return exitOK
}

// validation is the JSON of `tunnels validate -o json`.
type validation struct {
	File     string           `json:"file"`
	Valid    bool             `json:"valid"`
	Tunnels  int              `json:"tunnels"`
	Disabled int              `json:"disabled"`
	Ports    int              `json:"ports"`
	Problems []config.Problem `json:"problems,omitempty"`
}

// writeValidation prints the result of Load as one document.
func writeValidation(e *env, file, format string, f *config.File, err error) int {
	v := validation{File: file, Valid: err == nil}
	var problems config.Problems
	switch {
	case errors.As(err, &problems):
		v.Problems = problems
	case err != nil:
		v.Problems = []config.Problem{{File: file, Message: err.Error()}}
	default:
		v.Tunnels = len(f.Tunnels)
		for _, t := range f.Tunnels {
			if t.Disabled {
				v.Disabled++
			}
			v.Ports += len(t.Ports)
		}
	}
	if werr := writeData(e.stdout, format, v); werr != nil {
		fmt.Fprintf(e.stderr, "tunnels validate: %v\n", werr)
		return exitFail
	}
	if !v.Valid {
		return exitFail
	}
	return exitOK
}

// summary describes a valid file: "4 tunnels (1 disabled), 5 ports".
func summary(f *config.File) string {
	disabled, ports := 0, 0
	for _, t := range f.Tunnels {
		if t.Disabled {
			disabled++
		}
		ports += len(t.Ports)
	}
	s := plural(len(f.Tunnels), "tunnel")
	if disabled > 0 {
		s += fmt.Sprintf(" (%d disabled)", disabled)
	}
	return s + ", " + plural(ports, "port")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
