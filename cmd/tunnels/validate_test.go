package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCmd runs tunnels with args and returns its exit code and output.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
	code = run(t.Context(), e, args)
	return code, out.String(), errOut.String()
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	one := write("one.yaml", "version: 1\ntunnels:\n  api: {pod: api-0, ports: [8080]}\n")
	none := write("none.yaml", "version: 1\ntunnels: {}\n")
	bad := write("bad.yaml", "version: 1\ntunnels:\n  api: {pod: api-0, service: api, ports: ['a:b:c']}\n")
	missing := filepath.Join(dir, "missing.yaml")

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string // a substring; "" means stderr must be empty
	}{
		{"full example", []string{"validate", "-f", "../../examples/full.yaml"}, exitOK,
			"../../examples/full.yaml: valid, 4 tunnels (1 disabled), 5 ports\n", ""},
		{"one tunnel", []string{"validate", "-f", one}, exitOK, one + ": valid, 1 tunnel, 1 port\n", ""},
		{"no tunnels", []string{"validate", "-f", none}, exitOK, none + ": valid, 0 tunnels, 0 ports\n", ""},
		{"problems", []string{"validate", "-f", bad}, exitFail, "",
			bad + `:3:21: tunnel "api": two targets, pod and service; want exactly one of pod, service, deployment, statefulset, selector` + "\n" +
				bad + `:3:43: tunnel "api": port spec "a:b:c": too many colons, want [LOCAL:]REMOTE` + "\n"},
		{"missing file", []string{"validate", "-f", missing}, exitFail, "", "tunnels validate: load tunnels file: open " + missing + ": no such file or directory\n"},
		{"extra argument", []string{"validate", "x.yaml"}, exitUsage, "", `unexpected argument "x.yaml"`},
		{"bad flag", []string{"validate", "--nope"}, exitUsage, "", "flag provided but not defined: -nope"},
		{"help", []string{"validate", "--help"}, exitOK, "Usage: tunnels validate [-f FILE]", ""},
		{"help command", []string{"help", "validate"}, exitOK, "Usage: tunnels validate [-f FILE]", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d; want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if !strings.HasPrefix(stdout, tt.wantStdout) || (tt.wantStdout == "" && stdout != "") {
				t.Errorf("stdout = %q; want %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) || (tt.wantStderr == "" && stderr != "") {
				t.Errorf("stderr = %q; want %q", stderr, tt.wantStderr)
			}
		})
	}
}

// TestValidateDefaultFile checks that -f defaults to ./tunnels.yaml.
func TestValidateDefaultFile(t *testing.T) {
	t.Chdir(t.TempDir())
	code, _, stderr := runCmd(t, "validate")
	if code != exitFail || !strings.Contains(stderr, "open tunnels.yaml: no such file or directory") {
		t.Errorf("validate without tunnels.yaml: code %d, stderr %q; want %d and a missing tunnels.yaml", code, stderr, exitFail)
	}
	if err := os.WriteFile("tunnels.yaml", []byte("version: 1\ntunnels: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := runCmd(t, "validate")
	if code != exitOK || stdout != "tunnels.yaml: valid, 0 tunnels, 0 ports\n" {
		t.Errorf("validate: code %d, stdout %q; want %d and a summary of tunnels.yaml", code, stdout, exitOK)
	}
}

// TestValidateFiveMistakes checks the promise of the docs: the sample with
// five mistakes gives five FILE:LINE:COLUMN lines and exit 1.
func TestValidateFiveMistakes(t *testing.T) {
	const path = "../../config/testdata/invalid/five-mistakes.yaml"
	code, stdout, stderr := runCmd(t, "validate", "-f", path)
	if code != exitFail || stdout != "" {
		t.Errorf("code %d, stdout %q; want %d and no stdout", code, stdout, exitFail)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d lines, want 5:\n%s", len(lines), stderr)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, path+":") {
			t.Errorf("line %q does not start with %s:LINE:COLUMN", l, path)
		}
	}
}

func TestExamplesValidate(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		if code, _, stderr := runCmd(t, "validate", "-f", f); code != exitOK {
			t.Errorf("validate -f %s: code %d, stderr %q; want %d", f, code, stderr, exitOK)
		}
	}
}

func TestSummary(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"version: 1\ntunnels: {}\n", "0 tunnels, 0 ports"},
		{"version: 1\ntunnels: {a: {pod: a, ports: [1, 2]}}\n", "1 tunnel, 2 ports"},
		{"version: 1\ntunnels: {a: {pod: a, ports: [1]}, b: {pod: b, ports: [2], disabled: true}}\n", "2 tunnels (1 disabled), 2 ports"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "t.yaml")
		if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		_, stdout, _ := runCmd(t, "validate", "-f", path)
		if want := path + ": valid, " + tt.want + "\n"; stdout != want {
			t.Errorf("validate %q: got %q, want %q", tt.yaml, stdout, want)
		}
	}
}

// TestValidateLocalOverride: validate checks the file with its override
// and the environment, and locates problems in the file they are in.
func TestValidateLocalOverride(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tunnels.yaml")
	local := filepath.Join(dir, "tunnels.local.yaml")
	os.WriteFile(file, []byte("version: 1\ntunnels:\n  api: {pod: api-0, ports: [8080]}\n"), 0o644)
	os.WriteFile(local, []byte("namespace: ${NS:-dev}\ntunnels:\n  mine: {pod: \"${USER}-debug\", ports: [9000]}\n"), 0o644)
	e := func(vars map[string]string) *env {
		return &env{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{},
			getenv:    func(k string) string { return vars[k] },
			lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
	}
	ok := e(map[string]string{"USER": "ann"})
	if code := run(t.Context(), ok, []string{"validate", "-f", file}); code != exitOK {
		t.Fatalf("exit %d: %s", code, ok.stderr)
	}
	if got, want := ok.stdout.(*bytes.Buffer).String(), file+" with "+local+": valid, 2 tunnels, 2 ports\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	bad := e(nil)
	if code := run(t.Context(), bad, []string{"validate", "-f", file}); code != exitFail {
		t.Fatalf("exit %d, want %d", code, exitFail)
	}
	if got := bad.stderr.(*bytes.Buffer).String(); !strings.HasPrefix(got, local+":3:15: environment variable USER is not set") {
		t.Errorf("stderr %q, want the unset variable at %s:3:15", got, local)
	}
}
