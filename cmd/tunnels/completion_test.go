package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestComplete(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "dev.yaml")
	if err := os.WriteFile(file, []byte("version: 1\ntunnels:\n  api: {pod: api, ports: [80]}\n  db: {pod: db, ports: [5432]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		words   []string // after "tunnels"; the last is the word being completed
		want    []string // all of these
		notWant []string
	}{
		{[]string{""}, []string{"up", "down", "run", "plan", "add", "rm", "completion"}, []string{"__complete"}},
		{[]string{"rm", "-f", file, ""}, []string{"api", "db"}, nil},
		{[]string{"enable", "--f=" + file, "api", ""}, []string{"api", "db"}, nil},
		{[]string{"port", "-f", file, "a"}, []string{"api", "db"}, nil}, // the shell filters by prefix
		{[]string{"status", "-"}, []string{"-f", "-o"}, nil},
		{[]string{"up", "--"}, []string{"-d", "-wait", "-timeout", "-kubeconfig", "-context"}, nil},
		{[]string{"completion", ""}, []string{"bash", "zsh", "fish"}, nil},
		{[]string{"port", "-f", file, "api", ""}, nil, []string{"api"}},
		{[]string{"run", "-f", file, "--", ""}, nil, []string{"api"}},
	}
	for _, tc := range tests {
		code, stdout, _ := runCmd(t, append([]string{"__complete"}, tc.words...)...)
		got := strings.Fields(stdout)
		if code != exitOK {
			t.Errorf("%q: exit %d", tc.words, code)
		}
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("%q: candidates %q lack %q", tc.words, got, w)
			}
		}
		for _, w := range tc.notWant {
			if slices.Contains(got, w) {
				t.Errorf("%q: candidates %q include %q", tc.words, got, w)
			}
		}
	}
}

// TestCompletionScripts: each script is valid for its shell (where the shell
// is installed), and unknown shells are a usage error.
func TestCompletionScripts(t *testing.T) {
	for shell, flag := range map[string]string{"bash": "-n", "zsh": "-n", "fish": "--no-execute"} {
		code, stdout, stderr := runCmd(t, "completion", shell)
		if code != exitOK || !strings.Contains(stdout, "__complete") {
			t.Fatalf("completion %s: exit %d, %q", shell, code, stderr)
		}
		path, err := exec.LookPath(shell)
		if err != nil {
			t.Logf("%s not installed: its script is not syntax-checked", shell)
			continue
		}
		cmd := exec.Command(path, flag)
		cmd.Stdin = strings.NewReader(stdout)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s %s on its completion script: %v\n%s", shell, flag, err, out)
		}
	}
	if code, _, _ := runCmd(t, "completion", "tcsh"); code != exitUsage {
		t.Errorf("completion tcsh: exit %d, want %d", code, exitUsage)
	}
}
