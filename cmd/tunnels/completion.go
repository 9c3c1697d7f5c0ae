package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tunnels-dev/tunnels/kube"
)

func init() {
	register(command{name: "completion", summary: "print a shell completion script (bash, zsh or fish)", run: runCompletion})
	// __complete is what the scripts call; it is not listed in --help.
	register(command{name: "__complete", run: runComplete})
}

// completionScripts are the scripts of `tunnels completion SHELL`. Each asks
// `tunnels __complete WORDS...` (the words after "tunnels", the last being
// the one under the cursor) for candidates, one per line, and completes
// file names itself after -f.
var completionScripts = map[string]string{
	"bash": `# bash completion for tunnels: source <(tunnels completion bash)
_tunnels() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    case "$prev" in
        -f|--f|--kubeconfig) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    local IFS=$'\n'
    COMPREPLY=($(compgen -W "$(tunnels __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)" -- "$cur"))
}
complete -F _tunnels tunnels
`,
	"zsh": `#compdef tunnels
# zsh completion for tunnels: source <(tunnels completion zsh)
_tunnels() {
    case "${words[CURRENT-1]}" in
        -f|--f|--kubeconfig) _files; return ;;
    esac
    local -a candidates
    candidates=("${(@f)$(tunnels __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    compadd -- "${(@)candidates}"
}
compdef _tunnels tunnels
`,
	"fish": `# fish completion for tunnels: tunnels completion fish | source
function __tunnels_complete
    set -l tokens (commandline -opc) (commandline -ct)
    tunnels __complete $tokens[2..-1] 2>/dev/null
end
complete -c tunnels -f -a '(__tunnels_complete)'
complete -c tunnels -s f -r -F
complete -c tunnels -l kubeconfig -r -F
`,
}

func runCompletion(_ context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "completion", "completion bash|zsh|fish",
		`Print the completion script for a shell: subcommands, flags, tunnel names from the file and,
where the kube context answers within a second, pod and service names.

  source <(tunnels completion bash)      # in ~/.bashrc
  source <(tunnels completion zsh)       # in ~/.zshrc (after compinit)
  tunnels completion fish | source       # in ~/.config/fish/config.fish`)
	pos, code, done := parseInterspersed(e, fs, args)
	if done {
		return code
	}
	if len(pos) != 1 || completionScripts[pos[0]] == "" {
		fmt.Fprintf(e.stderr, "tunnels completion: want one shell: bash, zsh or fish\n")
		return exitUsage
	}
	fmt.Fprint(e.stdout, completionScripts[pos[0]])
	return exitOK
}

// runComplete prints the candidates for the last of args, given the words
// before it. It never fails: no candidates is an answer too.
func runComplete(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		args = []string{""}
	}
	for _, c := range complete(ctx, e, args[:len(args)-1], args[len(args)-1]) {
		fmt.Fprintln(e.stdout, c)
	}
	return exitOK
}

// complete returns the candidates for cur after the words before it.
func complete(ctx context.Context, e *env, before []string, cur string) []string {
	if len(before) == 0 {
		var names []string
		for _, c := range commands {
			if c.summary != "" {
				names = append(names, c.name)
			}
		}
		return names
	}
	cmd := before[0]
	if strings.HasPrefix(cur, "-") {
		return commandFlags(ctx, e, cmd)
	}
	// The positional arguments so far, skipping flags and their values.
	flags := commandFlags(ctx, e, cmd)
	file, kubeconfig, kctx, ns := "tunnels.yaml", "", "", ""
	var pos []string
	for i := 1; i < len(before); i++ {
		w := before[i]
		if w == "--" {
			return nil // a command of tunnels run: the shell's business
		}
		if !strings.HasPrefix(w, "-") {
			pos = append(pos, w)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
		if !hasValue && slices.Contains(flags, "-"+name) && !boolFlag(ctx, e, cmd, name) && i+1 < len(before) {
			i++
			value = before[i]
		}
		switch name {
		case "f":
			file = value
		case "kubeconfig":
			kubeconfig = value
		case "context":
			kctx = value
		case "n", "namespace":
			ns = value
		}
	}
	switch {
	case cmd == "port" && len(pos) == 0,
		cmd == "rm" && len(pos) == 0,
		cmd == "add" && len(pos) == 0,
		cmd == "enable", cmd == "disable":
		return tunnelNames(e, file)
	case cmd == "help" && len(pos) == 0:
		return complete(ctx, e, nil, cur)
	case cmd == "completion" && len(pos) == 0:
		return []string{"bash", "fish", "zsh"}
	case cmd == "forward" && len(pos) == 0,
		cmd == "add" && len(pos) == 1 && !slices.Contains(tunnelNames(e, file), pos[0]):
		return targetNames(ctx, e, kubeconfig, kctx, ns)
	}
	return nil
}

// flagLine matches a flag in PrintDefaults' output.
var flagLine = regexp.MustCompile(`(?m)^  -(\S+)`)

// commandFlags returns the flags of cmd (as -name), read from its --help
// so that they never drift from the flags it defines.
func commandFlags(ctx context.Context, e *env, cmd string) []string {
	help := commandHelp(ctx, e, cmd)
	var flags []string
	for _, m := range flagLine.FindAllStringSubmatch(help, -1) {
		flags = append(flags, "-"+m[1])
	}
	return flags
}

// boolFlag reports whether cmd's flag name takes no value.
func boolFlag(ctx context.Context, e *env, cmd, name string) bool {
	m := regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(name) + `( .*)?$`).FindStringSubmatch(commandHelp(ctx, e, cmd))
	return m != nil && m[1] == ""
}

func commandHelp(ctx context.Context, e *env, cmd string) string {
	for _, c := range commands {
		if c.name == cmd && c.summary != "" {
			var out bytes.Buffer
			c.run(ctx, &env{stdin: strings.NewReader(""), stdout: &out, stderr: io.Discard, getenv: e.getenv}, []string{"--help"})
			return out.String()
		}
	}
	return ""
}

// tunnelNames lists the tunnels of file, valid or not as a whole.
func tunnelNames(e *env, file string) []string {
	f, err := loadFile(e, file)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(f.Tunnels))
	for _, t := range f.Tunnels {
		names = append(names, t.Name)
	}
	return names
}

// completionTimeout bounds the cluster lookup of a completion: a shell
// waiting on an unreachable cluster is worse than no candidates.
const completionTimeout = time.Second

// targetNames lists the pods and services of the namespace (as pod/NAME
// and svc/NAME) if the cluster answers within completionTimeout.
func targetNames(ctx context.Context, e *env, kubeconfig, kctx, ns string) []string {
	kc, err := kube.Load(kube.LoadOptions{Kubeconfig: kubeconfig, Getenv: e.getenv})
	if err != nil {
		return nil
	}
	rc, err := kc.RestConfig(kctx)
	if err != nil {
		return nil
	}
	if ns == "" {
		ns = rc.Namespace
	}
	client, err := kube.NewClient(rc, kube.ClientOptions{Logger: slog.New(slog.DiscardHandler), Getenv: e.getenv})
	if err != nil {
		return nil
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	var names []string
	if pods, err := client.ListPods(ctx, ns, ""); err == nil {
		for _, p := range pods.Items {
			names = append(names, "pod/"+p.Metadata.Name)
		}
	}
	if svcs, err := client.ListServices(ctx, ns); err == nil {
		for _, s := range svcs.Items {
			names = append(names, "svc/"+s.Metadata.Name)
		}
	}
	return names
}
