package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/internal/doctor"
	"github.com/tunnels-dev/tunnels/kube"
)

func init() {
	register(command{name: "doctor", summary: "check what the file's tunnels need: API server, RBAC, transport, pods", run: runDoctor})
}

// doctorReport is `tunnels doctor -o json`.
type doctorReport struct {
	File   string         `json:"file"`
	OK     bool           `json:"ok"`
	Checks []doctor.Check `json:"checks"`
}

func runDoctor(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "doctor", "doctor [-f FILE] [-o table|json|yaml] [--context C] [--kubeconfig K]",
		`Check, for each context and namespace of FILE's tunnels, what forwarding needs: the API
server (reachable, its version), every permission (SelfSubjectAccessReview: get and create
on pods/portforward, get/list/watch on pods, get on each target's service or workload),
the pod each tunnel resolves to, and which transports (websocket, spdy) negotiate with it.
Each failed check says what to fix, such as the RBAC rule to add. Exit 0 when every check
passes, 1 otherwise.`)
	file := fs.String("f", "tunnels.yaml", "the tunnels file to check")
	output := fs.String("o", "table", "output format: table, json or yaml")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then ~/.kube/config)")
	kctx := fs.String("context", "", "kube context for every tunnel, overriding the file")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if !checkOutput(e, "doctor", *output) {
		return exitUsage
	}
	f, err := loadFile(e, *file)
	if err != nil {
		printLoadError(e, *file, err)
		return exitFail
	}
	kc, err := kube.Load(kube.LoadOptions{Kubeconfig: *kubeconfig, Getenv: e.getenv})
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels doctor: %v\n", err)
		return exitFail
	}
	specs := f.Specs(config.Defaults{Context: kc.CurrentContext(), Namespace: kc.Namespace, Override: *kctx, NoWebSocket: noWebSocket(e)})
	var clients []*kube.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	checks := doctor.Run(ctx, specs, doctor.Options{Clients: func(name string) (doctor.Client, error) {
		rc, err := kc.RestConfig(name)
		if err != nil {
			return nil, err
		}
		c, err := kube.NewClient(rc, kube.ClientOptions{Getenv: e.getenv})
		if err != nil {
			return nil, fmt.Errorf("context %q: %w", name, err)
		}
		clients = append(clients, c)
		return doctor.KubeClient(c), nil
	}})
	r := doctorReport{File: *file, OK: true, Checks: checks}
	for _, c := range checks {
		if c.Result != doctor.OK {
			r.OK = false
		}
	}
	if *output != "table" {
		if err := writeData(e.stdout, *output, r); err != nil {
			fmt.Fprintf(e.stderr, "tunnels doctor: %v\n", err)
			return exitFail
		}
	} else {
		writeDoctorTable(e.stdout, r)
	}
	if !r.OK {
		return exitFail
	}
	return exitOK
}

// writeDoctorTable prints one line per check, then each failed check in
// full with what to fix.
func writeDoctorTable(w io.Writer, r doctorReport) {
	if len(r.Checks) == 0 {
		fmt.Fprintf(w, "%s: no enabled tunnels, nothing to check\n", r.File)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTEXT\tNAMESPACE\tTUNNEL\tCHECK\tRESULT\tDETAIL")
	failed := 0
	for _, c := range r.Checks {
		if c.Result != doctor.OK {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Context, dash(c.Namespace), dash(c.Tunnel), c.Check, c.Result, oneLine(c.Detail))
	}
	tw.Flush()
	if failed == 0 {
		fmt.Fprintf(w, "\nall %d checks passed\n", len(r.Checks))
		return
	}
	fmt.Fprintf(w, "\n%d of %d checks failed:\n", failed, len(r.Checks))
	fixes := map[string]bool{}
	for _, c := range r.Checks {
		if c.Result != doctor.Fail {
			continue
		}
		where := c.Context
		if c.Namespace != "" {
			where += "/" + c.Namespace
		}
		if c.Tunnel != "" {
			where += " tunnel " + c.Tunnel
		}
		fmt.Fprintf(w, "- %s: %s: %s\n", where, c.Check, c.Detail)
		switch {
		case c.Fix == "":
		case fixes[c.Fix]:
			fmt.Fprintf(w, "  fix: as above\n")
		default:
			fixes[c.Fix] = true
			fmt.Fprintf(w, "  fix: %s\n", c.Fix)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
