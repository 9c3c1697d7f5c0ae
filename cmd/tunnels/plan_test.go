package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/reconcile"
)

func spec(tunnel string, local, remote int) config.Spec {
	return config.Spec{Tunnel: tunnel, Session: config.Session{Context: "dev", Namespace: "shop",
		Target: config.Target{Kind: config.KindPod, Name: tunnel}}, Address: "localhost", LocalPort: local,
		Remote: config.RemotePort{Number: remote}}
}

func TestNewPlanReport(t *testing.T) {
	running := []config.Spec{spec("db", 5432, 5432), spec("api", 8080, 80), spec("old", 0, 1)}
	desired := []config.Spec{spec("db", 6432, 5432), spec("api", 8080, 80), spec("api", 0, 81), spec("new", 0, 2)}
	r := newPlanReport(reconcile.Diff(desired, running), true)
	var got []string
	for _, c := range r.Changes {
		got = append(got, c.Action+" "+c.Tunnel+" "+c.Remote)
	}
	want := []string{"keep api 80", "start api 81", "restart db 5432", "start new 2", "stop old 1"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("got %q, want %q", got, want)
	}
	if !r.changed() {
		t.Error("changed() = false, want true")
	}
	if c := r.Changes[2]; c.From.LocalPort != 5432 || c.To.LocalPort != 6432 || describeChange(c) != "local port 5432 -> 6432" {
		t.Errorf("restart %+v, %+v: described %q", c.From, c.To, describeChange(c))
	}
	same := newPlanReport(reconcile.Diff(running, running), true)
	if same.changed() || len(same.Changes) != 3 {
		t.Errorf("plan of the running set: %+v, want 3 keeps", same.Changes)
	}
}

// TestPlanNothingRunning: with no up, every port starts (exit 2); an
// invalid candidate exits 1 with its problems; an unchanged one is -o yaml.
func TestPlanNothingRunning(t *testing.T) {
	dir := t.TempDir()
	cand := filepath.Join(dir, "next.yaml")
	if err := os.WriteFile(cand, []byte("version: 1\ntunnels:\n  db:\n    pod: db-0\n    ports: [5432]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(k string) string {
		if k == "HOME" {
			return dir
		}
		return ""
	}}
	file := filepath.Join(dir, "tunnels.yaml")
	if code := run(t.Context(), e, []string{"plan", "-f", file, "-o", "yaml", cand}); code != exitChanges {
		t.Fatalf("exit %d, want %d; stderr %s", code, exitChanges, stderr.String())
	}
	for _, want := range []string{"running: false", "action: start", "tunnel: db"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("plan -o yaml lacks %q:\n%s", want, stdout.String())
		}
	}
	stdout.Reset()
	e.stdin = strings.NewReader("version: 1\ntunnels:\n  db:\n    pod: db-0\n    ports: [\"1:2:3\"]\n")
	if code := run(t.Context(), e, []string{"plan", "-f", file, "-"}); code != exitFail {
		t.Fatalf("invalid candidate: exit %d, want %d", code, exitFail)
	}
	if !strings.HasPrefix(stderr.String(), "<stdin>:5:") {
		t.Errorf("invalid candidate: stderr %q, want <stdin>:5:...", stderr.String())
	}
	e.stdin = strings.NewReader("version: 1\ntunnels: {}\n")
	if code := run(t.Context(), e, []string{"plan", "-f", file, "-"}); code != exitOK {
		t.Fatalf("empty candidate with nothing running: exit %d, want %d", code, exitOK)
	}
}

func TestEnvName(t *testing.T) {
	for _, tc := range []struct{ tunnel, remote, want string }{
		{"db", "5432", "TUNNELS_DB_5432"},
		{"my-api", "http", "TUNNELS_MY_API_HTTP"},
		{"a-b", "grpc-web", "TUNNELS_A_B_GRPC_WEB"},
	} {
		if got := envName(tc.tunnel, tc.remote); got != tc.want {
			t.Errorf("envName(%q, %q) = %q, want %q", tc.tunnel, tc.remote, got, tc.want)
		}
	}
	_, err := tunnelEnv(&statusReport{Tunnels: []portRow{
		{Tunnel: "a-b", Remote: "c", Local: []string{"127.0.0.1:1"}},
		{Tunnel: "a", Remote: "b-c", Local: []string{"127.0.0.1:2"}},
	}})
	if err == nil || !strings.Contains(err.Error(), "TUNNELS_A_B_C") {
		t.Errorf("colliding names: got %v, want an error naming TUNNELS_A_B_C", err)
	}
}

// TestPlanTableColour: coloured, each action has its colour and the table
// reads the same once the codes are taken out; plain, no codes at all.
func TestPlanTableColour(t *testing.T) {
	r := newPlanReport(reconcile.Diff([]config.Spec{spec("db", 6432, 5432), spec("new", 0, 1)}, []config.Spec{spec("db", 5432, 5432), spec("old", 0, 2)}), true)
	var plain, coloured bytes.Buffer
	writePlanTable(&plain, "t.yaml", r, false)
	writePlanTable(&coloured, "t.yaml", r, true)
	if strings.Contains(plain.String(), "\x1b[") {
		t.Errorf("plain table has colour codes:\n%q", plain.String())
	}
	for _, want := range []string{"\x1b[32mstart", "\x1b[31mstop", "\x1b[33mrestart"} {
		if !strings.Contains(coloured.String(), want) {
			t.Errorf("coloured table lacks %q:\n%q", want, coloured.String())
		}
	}
	stripped := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(coloured.String(), "")
	if stripped != plain.String() {
		t.Errorf("coloured table without its codes:\n%s\ndiffers from the plain one:\n%s", stripped, plain.String())
	}
	e := &env{getenv: func(k string) string {
		if k == "NO_COLOR" {
			return "1"
		}
		return ""
	}}
	if colorOK(e, os.Stdout) || colorOK(&env{getenv: func(string) string { return "" }}, &plain) {
		t.Error("colorOK with NO_COLOR set, or on a buffer: true, want false")
	}
}
