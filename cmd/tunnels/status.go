package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tunnels-dev/tunnels/tunnel"
)

// statusReport is what a running `tunnels up` reports: one row per
// forwarded port. It is the JSON of `tunnels status -o json`.
type statusReport struct {
	File    string      `json:"file"`
	PID     int         `json:"pid"`
	Started time.Time   `json:"started"`
	Config  configState `json:"config"`
	Tunnels []portRow   `json:"tunnels"`
}

// configState says whether the last save of the file was applied.
type configState struct {
	// Error holds the problems of the last save when it was rejected; the
	// tunnels keep running from the last good one.
	Error      string    `json:"error,omitempty"`
	LastReload time.Time `json:"lastReload,omitzero"`
}

// portRow is one forwarded port.
type portRow struct {
	Tunnel    string `json:"tunnel"`
	Context   string `json:"context"`
	Namespace string `json:"namespace"`
	Target    string `json:"target"`
	Pod       string `json:"pod,omitempty"`
	// PodNotReady: Pod is Running but not Ready (a pod target's pod,
	// forwarded to as kubectl does).
	PodNotReady bool `json:"podNotReady,omitempty"`
	// Transport is what the session's connection runs over while
	// connected (websocket or spdy); Asked is the tunnel's transport
	// setting (auto, websocket or spdy).
	Transport string `json:"transport,omitempty"`
	Asked     string `json:"transportSetting"`
	// PodConns is how many connections to the pod the tunnel's session
	// holds while connected: 1, up to 4 while many local connections are
	// open at once.
	PodConns int `json:"podConnections,omitempty"`
	// Local lists the bound addresses ("127.0.0.1:5432", "[::1]:5432").
	Local     []string `json:"local"`
	LocalPort int      `json:"localPort"`
	Remote    string   `json:"remote"`
	// State is the session's (connecting, ready, retrying, failed, closed)
	// once the port is bound; before that starting, retrying (the port is in
	// use) or failed (the session could not be created).
	State     string `json:"state"`
	Active    int64  `json:"activeConnections"`
	Total     int64  `json:"totalConnections"`
	BytesIn   int64  `json:"bytesIn"`
	BytesOut  int64  `json:"bytesOut"`
	LastError string `json:"lastError,omitempty"`
	// NextRetry is when a port waiting to bind, or its retrying session,
	// tries again by its backoff (SIGHUP, a save or a pod event may be
	// sooner).
	NextRetry time.Time `json:"nextRetry,omitzero"`
}

// portRows renders the applier's status as the rows of the report.
func portRows(st []tunnel.PortStatus) []portRow {
	rows := make([]portRow, 0, len(st))
	for _, ps := range st {
		spec := ps.Spec
		row := portRow{
			Tunnel: spec.Tunnel, Context: spec.Session.Context, Namespace: spec.Session.Namespace,
			Target: spec.Session.Target.String(), Pod: ps.Pod, PodNotReady: ps.PodNotReady, Remote: spec.Remote.String(),
			Transport: ps.Transport, Asked: spec.Session.Transport, PodConns: ps.PodConns,
			LocalPort: ps.LocalPort, State: ps.State,
			Active: ps.Stats.Active, Total: ps.Stats.Total, BytesIn: ps.Stats.BytesIn, BytesOut: ps.Stats.BytesOut,
		}
		for _, a := range ps.Addrs {
			row.Local = append(row.Local, a.String())
		}
		if ps.Err != nil {
			row.LastError = ps.Err.Error()
		}
		row.NextRetry = ps.RetryAt
		rows = append(rows, row)
	}
	return rows
}

// writeTable prints the report as the table `tunnels up` and
// `tunnels status` show.
func writeTable(w io.Writer, r statusReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TUNNEL\tTARGET\tPOD\tVIA\tLOCAL\tREMOTE\tSTATE\tCONNS\tIN\tOUT\tLAST ERROR")
	for _, row := range r.Tunnels {
		local := strings.Join(row.Local, ",")
		if local == "" {
			local = "-"
		}
		pod := row.Pod
		if pod == "" {
			pod = "-"
		}
		if row.PodNotReady {
			pod += " (not ready)"
		}
		via := row.Transport
		if via == "" {
			via = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n",
			row.Tunnel, row.Namespace+"/"+row.Target, pod, via, local, row.Remote, row.State,
			row.Active, row.Total, humanBytes(row.BytesIn), humanBytes(row.BytesOut), oneLine(row.LastError))
	}
	tw.Flush()
	if r.Config.Error != "" {
		fmt.Fprintf(w, "\nthe last save of %s was rejected; still running the last good config:\n%s\n", r.File, r.Config.Error)
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func init() {
	register(command{name: "status", summary: "show the tunnels of a running `tunnels up`", run: runStatus})
	register(command{name: "port", summary: "print the local address of a tunnel's remote port (for scripts)", run: runPort})
}

func runStatus(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "status", "status [-f FILE] [-o table|json|yaml]",
		"Ask the `tunnels up` running for FILE for its tunnels: target, pod, local address, state,\nconnections, bytes and last error.")
	file := fs.String("f", "tunnels.yaml", "the config file the running `tunnels up` watches")
	output := fs.String("o", "table", "output format: table, json or yaml")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "tunnels status: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if !checkOutput(e, "status", *output) {
		return exitUsage
	}
	r, err := fetchStatus(ctx, *file)
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels status: %v\n", err)
		return exitFail
	}
	if *output != "table" {
		if err := writeData(e.stdout, *output, r); err != nil {
			fmt.Fprintf(e.stderr, "tunnels status: %v\n", err)
			return exitFail
		}
		return exitOK
	}
	writeTable(e.stdout, *r)
	return exitOK
}

func runPort(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "port", "port [-f FILE] TUNNEL [REMOTE]",
		"Print the local address(es) of TUNNEL's REMOTE port (a number or a port name as written in\nthe file), one per line, as `docker port` does. Without REMOTE, print every port of TUNNEL as\nREMOTE -> ADDRESS.")
	file := fs.String("f", "tunnels.yaml", "the config file the running `tunnels up` watches")
	pos, code, done := parseInterspersed(e, fs, args)
	if done {
		return code
	}
	if len(pos) < 1 || len(pos) > 2 {
		fmt.Fprintf(e.stderr, "tunnels port: want TUNNEL [REMOTE]\n")
		return exitUsage
	}
	r, err := fetchStatus(ctx, *file)
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels port: %v\n", err)
		return exitFail
	}
	name := pos[0]
	found := false
	for _, row := range r.Tunnels {
		if row.Tunnel != name {
			continue
		}
		if len(pos) == 2 {
			if row.Remote != pos[1] {
				continue
			}
			if len(row.Local) == 0 {
				fmt.Fprintf(e.stderr, "tunnels port: tunnel %q port %s is not listening (%s: %s)\n", name, row.Remote, row.State, row.LastError)
				return exitFail
			}
			for _, a := range row.Local {
				fmt.Fprintln(e.stdout, a)
			}
		} else {
			for _, a := range row.Local {
				fmt.Fprintf(e.stdout, "%s -> %s\n", row.Remote, a)
			}
		}
		found = true
	}
	if !found {
		if len(pos) == 2 {
			fmt.Fprintf(e.stderr, "tunnels port: tunnel %q has no remote port %s\n", name, pos[1])
		} else {
			fmt.Fprintf(e.stderr, "tunnels port: no tunnel %q is running\n", name)
		}
		return exitFail
	}
	return exitOK
}
