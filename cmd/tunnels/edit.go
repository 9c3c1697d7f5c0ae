package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tunnels-dev/tunnels/config"
)

func init() {
	register(command{name: "add", summary: "add a tunnel, or ports to a tunnel, keeping the file's comments", run: runAdd})
	register(command{name: "rm", summary: "remove a tunnel, or some of its ports", run: runRm})
	register(command{name: "enable", summary: "enable a disabled tunnel", run: func(ctx context.Context, e *env, args []string) int {
		return runSetDisabled(ctx, e, "enable", false, args)
	}})
	register(command{name: "disable", summary: "disable a tunnel, keeping it in the file", run: func(ctx context.Context, e *env, args []string) int {
		return runSetDisabled(ctx, e, "disable", true, args)
	}})
}

const editNote = `The file is edited in place: comments, key order and formatting elsewhere stay as they
are. The result is validated before it is written, and written atomically (a temporary file
renamed over it), so a running tunnels up applies it at once.`

func runAdd(_ context.Context, e *env, args []string) int {
	flags := newFlagSet(e, "add", "add [-f FILE] NAME TARGET PORTSPEC... [-n NS] [--context C]\n       tunnels add [-f FILE] NAME PORTSPEC...",
		`Add tunnel NAME to TARGET (POD, pod/NAME, svc/NAME, deploy/NAME or sts/NAME) with the given
ports, or, when NAME exists, add the ports to it. PORTSPEC is as in the file: 5000,
6000:5000, :5000, 8080:http. A missing FILE is created.

`+editNote)
	file := flags.String("f", "tunnels.yaml", "the tunnels file to edit")
	ns := flags.String("n", "", "namespace of a new tunnel (default: the file's)")
	kctx := flags.String("context", "", "kube context of a new tunnel (default: the file's)")
	pos, code, done := parseInterspersed(e, flags, args)
	if done {
		return code
	}
	if len(pos) < 2 {
		fmt.Fprintf(e.stderr, "tunnels add: want NAME TARGET PORTSPEC... or NAME PORTSPEC...\n")
		return exitUsage
	}
	data, err := os.ReadFile(*file)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = []byte("version: 1\ntunnels: {}\n"), nil
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels add: %v\n", err)
		return exitFail
	}
	// The file alone: its tunnels are the ones add can extend.
	f, err := config.ParseLayers(config.Layer{Name: *file, Data: data}, nil, envLookup(e))
	if err != nil {
		fmt.Fprintf(e.stderr, "%v\n", err)
		return exitFail
	}
	name := pos[0]
	exists := false
	for _, t := range f.Tunnels {
		exists = exists || t.Name == name
	}
	var out []byte
	if exists {
		if *ns != "" || *kctx != "" {
			fmt.Fprintf(e.stderr, "tunnels add: tunnel %q exists; -n and --context are for a new tunnel (edit the file to move it)\n", name)
			return exitUsage
		}
		ports, ok := parsePorts(e, "add", pos[1:])
		if !ok {
			return exitUsage
		}
		out, err = config.AddPorts(data, name, ports)
	} else {
		if len(pos) < 3 {
			fmt.Fprintf(e.stderr, "tunnels add: no tunnel %q yet: want NAME TARGET PORTSPEC...\n", name)
			return exitUsage
		}
		target, terr := parseTarget(pos[1])
		if terr != nil {
			fmt.Fprintf(e.stderr, "tunnels add: %v\n", terr)
			return exitUsage
		}
		ports, ok := parsePorts(e, "add", pos[2:])
		if !ok {
			return exitUsage
		}
		out, err = config.AddTunnel(data, config.NewTunnel{Name: name, Target: target, Namespace: *ns, Context: *kctx, Ports: ports})
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels add: %v\n", err)
		return exitFail
	}
	return writeEdit(e, "add", *file, out)
}

func runRm(_ context.Context, e *env, args []string) int {
	flags := newFlagSet(e, "rm", "rm [-f FILE] NAME [PORTSPEC...]",
		`Remove tunnel NAME (and the comment lines right above it), or only the given ports of it.
A PORTSPEC matches a port written as the same spec (5432 matches "5432:5432"); one without
a local part (5432, http) matches every port of the tunnel to that remote port.

`+editNote)
	file := flags.String("f", "tunnels.yaml", "the tunnels file to edit")
	pos, code, done := parseInterspersed(e, flags, args)
	if done {
		return code
	}
	if len(pos) < 1 {
		fmt.Fprintf(e.stderr, "tunnels rm: want NAME [PORTSPEC...]\n")
		return exitUsage
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels rm: %v\n", err)
		return exitFail
	}
	var out []byte
	if len(pos) == 1 {
		out, err = config.RemoveTunnel(data, pos[0])
	} else {
		ports, ok := parsePorts(e, "rm", pos[1:])
		if !ok {
			return exitUsage
		}
		remoteOnly := make([]bool, len(ports))
		for i, p := range pos[1:] {
			remoteOnly[i] = !strings.Contains(p, ":")
		}
		out, err = config.RemovePorts(data, pos[0], ports, remoteOnly)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels rm: %v\n", err)
		return exitFail
	}
	return writeEdit(e, "rm", *file, out)
}

func runSetDisabled(_ context.Context, e *env, verb string, disabled bool, args []string) int {
	flags := newFlagSet(e, verb, verb+" [-f FILE] NAME...", strings.ToUpper(verb[:1])+verb[1:]+
		" the named tunnels: a running tunnels up starts or stops them; the file keeps them.\n\n"+editNote)
	file := flags.String("f", "tunnels.yaml", "the tunnels file to edit")
	pos, code, done := parseInterspersed(e, flags, args)
	if done {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintf(e.stderr, "tunnels %s: want NAME...\n", verb)
		return exitUsage
	}
	out, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels %s: %v\n", verb, err)
		return exitFail
	}
	for _, name := range pos {
		if out, err = config.SetDisabled(out, name, disabled); err != nil {
			fmt.Fprintf(e.stderr, "tunnels %s: %v\n", verb, err)
			return exitFail
		}
	}
	return writeEdit(e, verb, *file, out)
}

// parsePorts parses port specs, reporting the bad ones.
func parsePorts(e *env, cmd string, args []string) ([]config.PortSpec, bool) {
	ports := make([]config.PortSpec, 0, len(args))
	ok := true
	for _, a := range args {
		p, err := config.ParsePortSpec(a)
		if err != nil {
			fmt.Fprintf(e.stderr, "tunnels %s: %v\n", cmd, err)
			ok = false
			continue
		}
		ports = append(ports, p)
	}
	return ports, ok
}

// writeEdit validates the edited file and writes it atomically; a result
// with problems is reported and not written.
func writeEdit(e *env, cmd, file string, data []byte) int {
	f, err := parseFile(e, file, file, data)
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels %s: the result would be invalid; %s is unchanged:\n%v\n", cmd, file, err)
		return exitFail
	}
	if err := writeAtomic(file, data); err != nil {
		fmt.Fprintf(e.stderr, "tunnels %s: %v\n", cmd, err)
		return exitFail
	}
	fmt.Fprintf(e.stdout, "%s: %s\n", file, summary(f))
	return exitOK
}

// writeAtomic replaces file with data by writing a temporary file next to
// it and renaming it over the file, so that a reader (a running up's
// watcher) sees the old bytes or the new ones, never a part. A symlink is
// followed: its target is replaced, the link kept.
func writeAtomic(file string, data []byte) error {
	target := file
	if resolved, err := filepath.EvalSymlinks(file); err == nil {
		target = resolved
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(target); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}
