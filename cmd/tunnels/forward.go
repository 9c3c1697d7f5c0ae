package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/kube"
	"github.com/tunnels-dev/tunnels/tunnel"
)

func init() {
	register(command{
		name:    "forward",
		summary: "forward local ports to a pod, like kubectl port-forward",
		run:     runForward,
	})
}

const forwardSynopsis = "forward [--kubeconfig FILE] [--context NAME] [-n NAMESPACE] [--address ADDR] [--transport T] TARGET [LOCAL:]REMOTE..."

const forwardDescription = `Forward local ports to a pod until interrupted, like kubectl port-forward,
over one connection to the pod that is re-established (and the target
resolved again) when it drops. A connection that fails inside the pod (say,
nothing listens on the port yet) fails alone; the others carry on.

TARGET is POD, pod/NAME, svc/NAME (service/NAME), deploy/NAME
(deployment/NAME) or sts/NAME (statefulset/NAME).

Each port spec is [LOCAL:]REMOTE: 5000, 6000:5000, :5000 (a free local
port), or a port name such as 8080:http.`

// addressList is a repeatable, comma-separated --address flag.
type addressList []string

func (a *addressList) String() string { return strings.Join(*a, ",") }

func (a *addressList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		addr, err := config.CanonicalAddress(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		if !slices.Contains(*a, addr) {
			*a = append(*a, addr)
		}
	}
	return nil
}

func runForward(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "forward", forwardSynopsis, forwardDescription)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig `file` (default: $KUBECONFIG, then ~/.kube/config)")
	kctx := fs.String("context", "", "kubeconfig context `name` (default: the current context)")
	var namespace string
	fs.StringVar(&namespace, "namespace", "", "`namespace` of the target (default: the context's)")
	fs.StringVar(&namespace, "n", "", "shorthand for --namespace")
	var addresses addressList
	fs.Var(&addresses, "address", "local `address`es to listen on: localhost or IPs, comma-separated or repeated (default localhost)")
	verbose := fs.Bool("v", false, "log every connection")
	transport := transportFlag(fs, "auto")

	pos, code, done := parseInterspersed(e, fs, args)
	if done {
		return code
	}
	if len(pos) < 2 {
		fmt.Fprintf(e.stderr, "tunnels forward: want a target and at least one port spec\n\nUsage: tunnels %s\n", forwardSynopsis)
		return exitUsage
	}
	if err := checkTransport(*transport); err != nil {
		fmt.Fprintf(e.stderr, "tunnels forward: %v\n", err)
		return exitUsage
	}
	target, err := parseTarget(pos[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels forward: %v\n", err)
		return exitUsage
	}
	var specs []config.PortSpec
	for _, s := range pos[1:] {
		spec, err := config.ParsePortSpec(s)
		if err != nil {
			// A *PortSpecError names the spec and the reason.
			fmt.Fprintf(e.stderr, "tunnels forward: %v\n", err)
			return exitUsage
		}
		specs = append(specs, spec)
	}
	if len(addresses) == 0 {
		addresses = addressList{config.Localhost}
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))

	kc, err := kube.Load(kube.LoadOptions{Kubeconfig: *kubeconfig, Getenv: e.getenv})
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels forward: %v\n", err)
		return exitFail
	}
	rc, err := kc.RestConfig(*kctx)
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels forward: %v\n", err)
		return exitFail
	}
	if namespace == "" {
		namespace = rc.Namespace
	}
	client, err := kube.NewClient(rc, kube.ClientOptions{Logger: log, Getenv: e.getenv})
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels forward: %v\n", err)
		return exitFail
	}
	defer client.Close()

	key := config.Session{Context: rc.Context, Namespace: namespace, Target: target, Transport: transportFor(e, *transport)}
	c := tunnel.KubeClient(client)
	slog := log.With("context", rc.Context)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := tunnel.NewSession(ctx, c, key, tunnel.SessionOptions{Tunnel: "forward", Logger: slog, FailFast: true})
	var ports []*forward.Port
	for _, spec := range specs {
		l, err := forward.Listen(addresses, spec.Local)
		if err == nil {
			var p *forward.Port
			p, err = s.AddPort(l, forward.RemotePort(spec.Remote), forward.PortOptions{})
			ports = append(ports, p)
		}
		if err != nil {
			_ = s.Close() // it never ran
			fmt.Fprintf(e.stderr, "tunnels forward: %s: %v\n", spec, err)
			return exitFail
		}
	}

	runErr := make(chan error, 1)
	go func() {
		runErr <- tunnel.RunSession(ctx, c, key, s, slog.With("tunnel", "forward", "target", target.String()))
	}()

	// Print kubectl's lines once the first connection is up, when the
	// numbers behind named ports are known.
	for ready := false; !ready; {
		changed := s.Changed()
		switch st := s.Status(); st.State {
		case forward.StateReady:
			ready = true
			continue
		case forward.StateClosed:
			return forwardExit(e, <-runErr)
		}
		select {
		case <-changed:
		case err := <-runErr:
			return forwardExit(e, err)
		}
	}
	for _, p := range ports {
		st := p.Status()
		remote := st.Remote.String()
		if st.PodPort != 0 {
			remote = fmt.Sprint(st.PodPort)
		}
		for _, a := range st.Addrs {
			fmt.Fprintf(e.stdout, "Forwarding from %s -> %s\n", a, remote)
		}
	}
	return forwardExit(e, <-runErr)
}

// forwardExit turns Run's result into an exit code: nil when interrupted.
func forwardExit(e *env, err error) int {
	if err != nil {
		fmt.Fprintf(e.stderr, "tunnels forward: %v\n", err)
		return exitFail
	}
	return exitOK
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, as kubectl allows; "--" ends the flags.
func parseInterspersed(e *env, fs *flag.FlagSet, args []string) (pos []string, code int, done bool) {
	for {
		if code, done := parseFlags(e, fs, args); done {
			return nil, code, true
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), exitOK, false
		}
		if len(rest) == 0 {
			return pos, exitOK, false
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// errBadTarget is the sentinel of target parse errors.
var errBadTarget = errors.New("invalid target")

// parseTarget reads TARGET as kubectl names objects.
func parseTarget(s string) (config.Target, error) {
	kindText, name, hasKind := strings.Cut(s, "/")
	if !hasKind {
		kindText, name = "pod", s
	}
	var kind config.Kind
	switch strings.ToLower(kindText) {
	case "pod", "pods", "po":
		kind = config.KindPod
	case "svc", "service", "services":
		kind = config.KindService
	case "deploy", "deployment", "deployments":
		kind = config.KindDeployment
	case "sts", "statefulset", "statefulsets":
		kind = config.KindStatefulSet
	default:
		return config.Target{}, fmt.Errorf("%w %q: unknown kind %q, want pod, svc, deploy or sts", errBadTarget, s, kindText)
	}
	if name == "" || strings.ContainsAny(name, "/ \t") {
		return config.Target{}, fmt.Errorf("%w %q: want KIND/NAME with a non-empty name", errBadTarget, s)
	}
	return config.Target{Kind: kind, Name: name}, nil
}
