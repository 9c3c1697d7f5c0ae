package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestValidateOutput(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("version: 1\ntunnels:\n  a: {pod: a, ports: [1, 2]}\n  b: {pod: b, ports: [3], disabled: true}\n"), 0o644)
	os.WriteFile(bad, []byte("version: 1\ntunnels:\n  a: {pod: a, ports: ['1:2:3']}\n"), 0o644)

	// Flags after the file flag's value and in any order.
	code, stdout, _ := runCmd(t, "validate", "-o", "json", "-f", good)
	var v validation
	if err := json.Unmarshal([]byte(stdout), &v); err != nil || code != exitOK {
		t.Fatalf("validate -o json: exit %d, %v:\n%s", code, err, stdout)
	}
	if !v.Valid || v.Tunnels != 2 || v.Disabled != 1 || v.Ports != 3 {
		t.Errorf("validate -o json: %+v, want valid, 2 tunnels, 1 disabled, 3 ports", v)
	}
	code, stdout, _ = runCmd(t, "validate", "-f", bad, "-o", "yaml")
	var y struct {
		Valid    bool
		Problems []struct {
			File         string
			Line, Column int
			Message      string
		}
	}
	if err := yaml.Unmarshal([]byte(stdout), &y); err != nil || code != exitFail {
		t.Fatalf("validate -o yaml: exit %d, %v:\n%s", code, err, stdout)
	}
	if y.Valid || len(y.Problems) != 1 || y.Problems[0].Line != 3 || y.Problems[0].File != bad {
		t.Errorf("validate -o yaml of a bad file: %+v", y)
	}
	if code, _, stderr := runCmd(t, "validate", "-o", "xml"); code != exitUsage || !strings.Contains(stderr, "table, json or yaml") {
		t.Errorf("validate -o xml: exit %d, %q", code, stderr)
	}
}

func TestStatusAndPortOutput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tunnels.yaml")
	srv, err := startControl(file, func() statusReport {
		return statusReport{File: file, PID: 7, Tunnels: []portRow{{Tunnel: "db", Remote: "5432", Local: []string{"127.0.0.1:6000"}, State: "ready"}}}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	code, stdout, stderr := runCmd(t, "status", "-o", "yaml", "-f", file)
	if code != exitOK || !strings.Contains(stdout, "pid: 7") || !strings.Contains(stdout, "tunnel: db") {
		t.Errorf("status -o yaml: exit %d, stdout:\n%s\nstderr: %s", code, stdout, stderr)
	}
	// Flags after the positional arguments, as kubectl takes them.
	code, stdout, stderr = runCmd(t, "port", "db", "5432", "-f", file)
	if code != exitOK || stdout != "127.0.0.1:6000\n" {
		t.Errorf("port db 5432 -f FILE: exit %d, %q, %q", code, stdout, stderr)
	}
}

func TestHelpListsExitCodes(t *testing.T) {
	code, stdout, _ := runCmd(t, "--help")
	for _, want := range []string{"Exit codes:", "0  success", "1  failure", "2  usage", "tunnels plan", "tunnels run"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--help lacks %q:\n%s", want, stdout)
		}
	}
	if code != exitOK {
		t.Errorf("--help: exit %d", code)
	}
	for _, c := range commands {
		if c.summary == "" {
			continue
		}
		if !strings.Contains(stdout, "  "+c.name+" ") {
			t.Errorf("--help does not list %s", c.name)
		}
	}
}
