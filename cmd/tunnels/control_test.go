package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

func TestControlSocket(t *testing.T) {
	leakcheck.Check(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "tunnels.yaml")
	want := statusReport{File: file, PID: 42, Tunnels: []portRow{{Tunnel: "db", Remote: "5432", Local: []string{"127.0.0.1:6000"}, State: "ready"}}}
	srv, err := startControl(file, func() statusReport { return want })
	if err != nil {
		t.Fatal(err)
	}
	path, _ := socketPath(file)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("socket mode %o, want 600", got)
	}
	di, _ := os.Stat(filepath.Dir(path))
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("socket dir mode %o, want 700", got)
	}

	got, err := fetchStatus(t.Context(), file)
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != 42 || len(got.Tunnels) != 1 || got.Tunnels[0].Local[0] != "127.0.0.1:6000" {
		t.Errorf("got %+v, want %+v", got, want)
	}

	// A second `tunnels up` on the same file is refused.
	if _, err := startControl(file, func() statusReport { return want }); !errors.Is(err, errAlreadyRunning) {
		t.Errorf("second server: got %v, want errAlreadyRunning", err)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind after Close: %v", err)
	}
	if _, err := fetchStatus(t.Context(), file); err == nil || !strings.Contains(err.Error(), "is it running") {
		t.Errorf("status with nothing running: got %v, want an error asking whether it runs", err)
	}
}

func TestControlSocketLongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := socketPath(filepath.Join(dir, "tunnels.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p) > 100 {
		t.Errorf("socket path %q is %d bytes, want at most 100", p, len(p))
	}
	srv, err := startControl(filepath.Join(dir, "tunnels.yaml"), func() statusReport { return statusReport{} })
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	writeTable(&b, statusReport{File: "t.yaml", Config: configState{Error: "t.yaml:3:5: bad"}, Tunnels: []portRow{
		{Tunnel: "db", Namespace: "shop", Target: "svc/postgres", Pod: "pg-0", Transport: "websocket", Local: []string{"127.0.0.1:5432"}, Remote: "5432", State: "ready", Active: 1, Total: 3, BytesIn: 2048, BytesOut: 10},
	}})
	out := b.String()
	for _, want := range []string{"TUNNEL", "VIA", "shop/svc/postgres", "pg-0  websocket", "127.0.0.1:5432", "ready", "1/3", "2.0KiB", "10B", "t.yaml:3:5: bad"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
