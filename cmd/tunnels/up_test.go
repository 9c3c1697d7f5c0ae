package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpInvalidFirstLoad: an invalid file stops `tunnels up` before it
// touches a cluster, with every problem as FILE:LINE:COLUMN and exit 1 —
// even when no kubeconfig exists.
func TestUpInvalidFirstLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tunnels.yaml")
	if err := os.WriteFile(file, []byte("version: 2\ntunnels:\n  db:\n    pod: db-0\n    ports: [\"1:2:3\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(k string) string {
		if k == "HOME" {
			return dir // no ~/.kube/config here
		}
		return ""
	}}
	if code := run(t.Context(), e, []string{"up", "-f", file}); code != exitFail {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitFail, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d problem lines, want 2:\n%s", len(lines), stderr.String())
	}
	for _, want := range []string{file + ":1:", file + ":5:"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}

	stderr.Reset()
	if code := run(t.Context(), e, []string{"up", "-f", filepath.Join(dir, "missing.yaml")}); code != exitFail {
		t.Fatalf("missing file: exit code %d, want %d", code, exitFail)
	}
	if !strings.Contains(stderr.String(), "does not exist") {
		t.Errorf("missing file: stderr %q does not say the file does not exist", stderr.String())
	}
}
