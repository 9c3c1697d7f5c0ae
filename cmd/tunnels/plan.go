package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/kube"
	"github.com/tunnels-dev/tunnels/reconcile"
)

// exitChanges is plan's exit code when saving the candidate would change
// something, as terraform plan -detailed-exitcode.
const exitChanges = 2

// The actions of a plan, per forwarded port.
const (
	actionStart   = "start"
	actionStop    = "stop"
	actionRestart = "restart"
	actionKeep    = "keep"
)

// planReport is what saving a candidate file would do: the JSON of
// `tunnels plan -o json`.
type planReport struct {
	// Running is true when a running `tunnels up` of the file answered;
	// false when the plan is against nothing running.
	Running bool         `json:"running"`
	Changes []planChange `json:"changes"`
}

// planChange is what happens to one forwarded port.
type planChange struct {
	Action string `json:"action"` // start, stop, restart or keep
	Tunnel string `json:"tunnel"`
	Remote string `json:"remote"`
	// From is the running port (stop, restart, keep), To the new one
	// (start, restart, keep).
	From *planPort `json:"from,omitempty"`
	To   *planPort `json:"to,omitempty"`
}

// planPort is one side of a change.
type planPort struct {
	Context   string `json:"context"`
	Namespace string `json:"namespace"`
	Target    string `json:"target"`
	Address   string `json:"address"`
	LocalPort int    `json:"localPort"` // 0: a free port
}

func toPlanPort(s config.Spec) *planPort {
	return &planPort{Context: s.Session.Context, Namespace: s.Session.Namespace,
		Target: s.Session.Target.String(), Address: s.Address, LocalPort: s.LocalPort}
}

// newPlanReport names the plan's changes per port: a stopped and a started
// spec of the same tunnel and remote port are one restart.
func newPlanReport(p reconcile.Plan, running bool) *planReport {
	r := &planReport{Running: running, Changes: []planChange{}}
	type key struct{ tunnel, remote string }
	started := map[key][]config.Spec{}
	for _, s := range p.Start {
		k := key{s.Tunnel, s.Remote.String()}
		started[k] = append(started[k], s)
	}
	for _, s := range p.Stop {
		k := key{s.Tunnel, s.Remote.String()}
		c := planChange{Action: actionStop, Tunnel: s.Tunnel, Remote: k.remote, From: toPlanPort(s)}
		if next := started[k]; len(next) > 0 {
			c.Action, c.To = actionRestart, toPlanPort(next[0])
			started[k] = next[1:]
		}
		r.Changes = append(r.Changes, c)
	}
	for _, s := range p.Start {
		k := key{s.Tunnel, s.Remote.String()}
		if i := slices.Index(started[k], s); i >= 0 {
			started[k] = slices.Delete(started[k], i, i+1)
			r.Changes = append(r.Changes, planChange{Action: actionStart, Tunnel: s.Tunnel, Remote: k.remote, To: toPlanPort(s)})
		}
	}
	for _, s := range p.Keep {
		r.Changes = append(r.Changes, planChange{Action: actionKeep, Tunnel: s.Tunnel, Remote: s.Remote.String(), From: toPlanPort(s), To: toPlanPort(s)})
	}
	slices.SortStableFunc(r.Changes, func(a, b planChange) int {
		return cmp.Or(cmp.Compare(a.Tunnel, b.Tunnel), cmp.Compare(a.Remote, b.Remote), cmp.Compare(a.Action, b.Action))
	})
	return r
}

// changed reports whether the plan starts, stops or restarts anything.
func (r *planReport) changed() bool {
	return slices.ContainsFunc(r.Changes, func(c planChange) bool { return c.Action != actionKeep })
}

func init() {
	register(command{name: "plan", summary: "show what saving a candidate file would start, stop and restart", run: runPlan})
}

func runPlan(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "plan", "plan [-f FILE] [-o table|json|yaml] CANDIDATE",
		`Show what saving CANDIDATE (a path, or - for standard input) over FILE would start, stop,
restart and keep in the tunnels up running FILE, asked through its control socket, without
applying anything. With no tunnels up running, the plan is against nothing running.
Exits 0 when nothing would change, 2 when something would, 1 when CANDIDATE is invalid
(every problem as CANDIDATE:LINE:COLUMN).

  git show origin/main:tunnels.yaml | tunnels plan -`)
	file := fs.String("f", "tunnels.yaml", "the config file the running `tunnels up` watches")
	output := fs.String("o", "table", "output format: table, json or yaml")
	kubeconfig := fs.String("kubeconfig", "", "with no tunnels up running, the kubeconfig for the default context and namespace")
	kctx := fs.String("context", "", "with no tunnels up running, the kube context for every tunnel")
	pos, code, done := parseInterspersed(e, fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(e.stderr, "tunnels plan: want one CANDIDATE file (or - for standard input)\n")
		return exitUsage
	}
	if !checkOutput(e, "plan", *output) {
		return exitUsage
	}
	name := pos[0]
	var data []byte
	var err error
	if name == "-" {
		name = "<stdin>"
		data, err = io.ReadAll(io.LimitReader(e.stdin, maxCandidate))
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels plan: read candidate: %v\n", err)
		return exitFail
	}
	f, err := parseFile(e, *file, name, data)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitFail
	}

	var rep planReport
	err = callControl(ctx, *file, http.MethodPost, "/plan?name="+url.QueryEscape(name), bytes.NewReader(data), &rep)
	switch {
	case errors.Is(err, errNotRunning):
		// Nothing runs: every enabled port would start, with the
		// defaults `tunnels up` would take from the kubeconfig.
		d := config.Defaults{Override: *kctx}
		if kc, kerr := kube.Load(kube.LoadOptions{Kubeconfig: *kubeconfig, Getenv: e.getenv}); kerr == nil {
			d.Context, d.Namespace = kc.CurrentContext(), kc.Namespace
		}
		rep = *newPlanReport(reconcile.Diff(f.Specs(d), nil), false)
	case err != nil:
		fmt.Fprintf(e.stderr, "tunnels plan: %v\n", err)
		return exitFail
	}

	if *output == "table" {
		writePlanTable(e.stdout, *file, &rep, colorOK(e, e.stdout))
	} else if err := writeData(e.stdout, *output, &rep); err != nil {
		fmt.Fprintf(e.stderr, "tunnels plan: %v\n", err)
		return exitFail
	}
	if rep.changed() {
		return exitChanges
	}
	return exitOK
}

// writePlanTable prints one line per port and a summary.
func writePlanTable(w io.Writer, file string, r *planReport, color bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// Every line, the header too, starts with a colour code of the same
	// length when coloured, so that tabwriter counts the same widths.
	fmt.Fprintln(tw, paint(color, "39", "ACTION\tTUNNEL\tREMOTE\tDETAIL"))
	counts := map[string]int{}
	for _, c := range r.Changes {
		counts[c.Action]++
		line := fmt.Sprintf("%s\t%s\t%s\t%s", c.Action, c.Tunnel, c.Remote, describeChange(c))
		fmt.Fprintln(tw, paint(color, actionColors[c.Action], line))
	}
	tw.Flush()
	against := "the running tunnels up of " + file
	if !r.Running {
		against = "nothing running (no tunnels up is running for " + file + ")"
	}
	fmt.Fprintf(w, "\n%d to start, %d to stop, %d to restart, %d to keep, against %s\n",
		counts[actionStart], counts[actionStop], counts[actionRestart], counts[actionKeep], against)
}

// actionColors are the SGR colours of the plan's actions, as terraform's.
var actionColors = map[string]string{actionStart: "32", actionStop: "31", actionRestart: "33", actionKeep: "39"}

// describeChange says what a port is, or for a restart what changes.
func describeChange(c planChange) string {
	switch c.Action {
	case actionStart, actionKeep:
		return describePort(c.To)
	case actionStop:
		return describePort(c.From)
	}
	var diffs []string
	field := func(name, from, to string) {
		if from != to {
			diffs = append(diffs, fmt.Sprintf("%s %s -> %s", name, from, to))
		}
	}
	field("context", c.From.Context, c.To.Context)
	field("namespace", c.From.Namespace, c.To.Namespace)
	field("target", c.From.Target, c.To.Target)
	field("address", c.From.Address, c.To.Address)
	field("local port", localPortText(c.From.LocalPort), localPortText(c.To.LocalPort))
	return strings.Join(diffs, ", ")
}

func describePort(p *planPort) string {
	return fmt.Sprintf("%s/%s on %s:%s (context %s)", p.Namespace, p.Target, p.Address, localPortText(p.LocalPort), p.Context)
}

func localPortText(n int) string {
	if n == 0 {
		return "(free port)"
	}
	return strconv.Itoa(n)
}
