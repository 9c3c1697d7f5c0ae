package main

import (
	"context"
	"fmt"

	"github.com/tunnels-dev/tunnels/config"
)

func init() {
	register(command{name: "schema", summary: "print the JSON Schema of tunnels.yaml", run: runSchema})
}

// runSchema prints the JSON Schema that editors use to check tunnels.yaml
// while it is typed; it is the same as schema.json at the repository root.
func runSchema(_ context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "schema", "schema",
		"Print the JSON Schema (Draft 2020-12) of the tunnels file format. Point an\n"+
			"editor at it, e.g. with a first line\n"+
			"  # yaml-language-server: $schema=schema.json")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "tunnels schema: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if _, err := e.stdout.Write(config.Schema()); err != nil {
		fmt.Fprintf(e.stderr, "tunnels schema: write: %v\n", err)
		return exitFail
	}
	return exitOK
}
