package main

import (
	"bytes"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/config"
)

// TestUpArgs: the background up gets every flag given except those that
// asked for the background, and logs instead of drawing a table.
func TestUpArgs(t *testing.T) {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.String("f", "tunnels.yaml", "")
	fs.String("context", "", "")
	fs.String("output", "auto", "")
	fs.Bool("v", false, "")
	fs.Bool("wait", false, "")
	fs.Duration("timeout", time.Minute, "")
	if err := fs.Parse([]string{"--wait", "-f", "dev.yaml", "--timeout", "5s", "-v", "--output", "table", "--context", "a b"}); err != nil {
		t.Fatal(err)
	}
	got := upArgs(fs, "d", "wait", "timeout")
	want := []string{"up", "-context=a b", "-f=dev.yaml", "-v=true", "--output=log"}
	if !slices.Equal(got, want) {
		t.Errorf("upArgs = %q, want %q", got, want)
	}
}

// TestNotReady: what --wait reports while it waits.
func TestNotReady(t *testing.T) {
	f, err := config.Parse("t.yaml", []byte("version: 1\ntunnels:\n  a: {pod: a, ports: [1, 2]}\n  b: {pod: b, ports: [3]}\n  c: {pod: c, ports: [4], disabled: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	load := func() (*config.File, error) { return f, nil }
	r := &statusReport{Tunnels: []portRow{
		{Tunnel: "a", Remote: "1", State: "ready"},
		{Tunnel: "a", Remote: "2", State: "retrying", LastError: "pod \"a\" not found"},
	}}
	got := strings.Join(notReady(load, r), "\n")
	want := "a 2: retrying: pod \"a\" not found\nb: not started yet"
	if got != want {
		t.Errorf("notReady =\n%s\nwant\n%s", got, want)
	}
	r.Tunnels = append(r.Tunnels, portRow{Tunnel: "a", Remote: "2", State: "ready"}, portRow{Tunnel: "b", Remote: "3", State: "ready"})
	r.Tunnels = slices.Delete(r.Tunnels, 1, 2)
	if got := notReady(load, r); len(got) != 0 {
		t.Errorf("all ready: notReady = %q, want none", got)
	}
}

// TestUpDetachInvalidFile: up -d reports the file's problems itself, before
// starting anything in the background.
func TestUpDetachInvalidFile(t *testing.T) {
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	dir := t.TempDir()
	if code := run(t.Context(), e, []string{"up", "-d", "-f", dir + "/missing.yaml"}); code != exitFail {
		t.Fatalf("exit %d, want %d", code, exitFail)
	}
	if !strings.Contains(stderr.String(), "does not exist") {
		t.Errorf("stderr %q, want it to say the file does not exist", stderr.String())
	}
}
