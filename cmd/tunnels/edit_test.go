package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEditCommands drives add, rm, enable and disable through the CLI on a
// commented file, checking each result and that the comments survive.
func TestEditCommands(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tunnels.yaml")
	orig := "# dev tunnels\nversion: 1\ntunnels:\n  # the database\n  db:\n    pod: db-0   # primary\n    ports: [5432]\n"
	if err := os.WriteFile(file, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		args []string
		code int
		want string // the file after the step ("" when unchanged)
	}{
		{[]string{"add", "cache", "svc/redis", ":6379", "-n", "infra", "-f", file}, exitOK,
			orig + "  cache:\n    service: redis\n    namespace: infra\n    ports: [\":6379\"]\n"},
		{[]string{"add", "-f", file, "db", "6432:5432"}, exitOK,
			strings.Replace(orig, "[5432]", "[5432, \"6432:5432\"]", 1) + "  cache:\n    service: redis\n    namespace: infra\n    ports: [\":6379\"]\n"},
		{[]string{"disable", "cache", "-f", file}, exitOK,
			strings.Replace(orig, "[5432]", "[5432, \"6432:5432\"]", 1) + "  cache:\n    service: redis\n    namespace: infra\n    ports: [\":6379\"]\n    disabled: true\n"},
		{[]string{"enable", "-f", file, "cache"}, exitOK,
			strings.Replace(orig, "[5432]", "[5432, \"6432:5432\"]", 1) + "  cache:\n    service: redis\n    namespace: infra\n    ports: [\":6379\"]\n"},
		{[]string{"rm", "db", "6432:5432", "-f", file}, exitOK,
			orig + "  cache:\n    service: redis\n    namespace: infra\n    ports: [\":6379\"]\n"},
		{[]string{"rm", "cache", "-f", file}, exitOK, orig},
		// Mistakes: nothing written.
		{[]string{"add", "db", "pod/x", "1", "-f", file}, exitUsage, ""},      // "pod/x" is no port spec
		{[]string{"add", "new", "pod/x", "1:2:3", "-f", file}, exitUsage, ""}, // bad port spec
		{[]string{"add", "Bad_Name", "pod/x", "1", "-f", file}, exitFail, ""}, // invalid tunnel name
		{[]string{"add", "new", "pod/x", "5432", "-f", file}, exitFail, ""},   // port 5432 taken by db
		{[]string{"rm", "db", "5432", "-f", file}, exitFail, ""},              // its last port
		{[]string{"rm", "nope", "-f", file}, exitFail, ""},
		{[]string{"enable", "nope", "-f", file}, exitFail, ""},
	}
	for _, st := range steps {
		before, _ := os.ReadFile(file)
		var stdout, stderr bytes.Buffer
		e := &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
		if code := run(t.Context(), e, st.args); code != st.code {
			t.Fatalf("%v: exit %d, want %d; stderr:\n%s", st.args, code, st.code, stderr.String())
		}
		after, _ := os.ReadFile(file)
		want := st.want
		if want == "" {
			want = string(before)
		}
		if string(after) != want {
			t.Fatalf("%v: file is\n%s\nwant\n%s", st.args, after, want)
		}
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after edits: %v, %v; want 0640 kept", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".tunnels.yaml.tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestAddCreatesFile: add on a missing file starts one.
func TestAddCreatesFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tunnels.yaml")
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	if code := run(t.Context(), e, []string{"add", "-f", file, "api", "deploy/api", "8080"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	got, _ := os.ReadFile(file)
	if want := "version: 1\ntunnels:\n  api:\n    deployment: api\n    ports: [8080]\n"; string(got) != want {
		t.Errorf("created\n%s\nwant\n%s", got, want)
	}
}
