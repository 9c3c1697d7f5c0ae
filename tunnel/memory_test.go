package tunnel

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/tunnels-dev/tunnels/config"
)

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tunnels.yaml")
	web := sp("web", "dev", 0, 80)
	named := sp("api", "dev", 0, 0)
	named.Remote = config.RemotePort{Name: "http"}
	gone := sp("old", "dev", 0, 80)

	s, err := OpenPortMemory(cfg)
	if err != nil {
		t.Fatalf("OpenPortMemory on a fresh dir: %v", err)
	}
	if _, ok := s.Get(web); ok {
		t.Errorf("Get on an empty state found a port")
	}
	s.Set(web, 50001)
	s.Set(named, 50002)
	s.Set(gone, 50003)
	s.Forget(gone)
	if err := s.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}

	s2, err := OpenPortMemory(cfg)
	if err != nil {
		t.Fatalf("OpenPortMemory after Save: %v", err)
	}
	for _, tt := range []struct {
		spec   config.Spec
		want   int
		wantOK bool
	}{
		{web, 50001, true},
		{named, 50002, true},
		{gone, 0, false},
		// The key ignores LocalPort: a spec with a port set finds the same
		// entry (the applier asks with LocalPort 0 anyway).
		{sp("web", "dev", 1234, 80), 50001, true},
		// Everything else is part of the key.
		{sp("web", "prod", 0, 80), 0, false},
		{sp("web", "dev", 0, 81), 0, false},
	} {
		got, ok := s2.Get(tt.spec)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Get(%v) = %d, %v; want %d, %v", names([]config.Spec{tt.spec}), got, ok, tt.want, tt.wantOK)
		}
	}

	if runtime.GOOS != "windows" {
		fi, err := os.Stat(filepath.Join(dir, ".tunnels"))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("state dir mode = %v, want 0700", got)
		}
		fi, err = os.Stat(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("state file mode = %v, want 0600", got)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, ".tunnels"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "state.json" {
		t.Errorf(".tunnels holds %v, want only state.json (no temporary file left)", entries)
	}
}

func TestStatePrune(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "tunnels.yaml")
	s, err := OpenPortMemory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, b := sp("a", "dev", 0, 80), sp("b", "dev", 0, 80)
	s.Set(a, 50001)
	s.Set(b, 50002)
	s.Prune([]config.Spec{sp("a", "dev", 0, 80)})
	if _, ok := s.Get(a); !ok {
		t.Errorf("Prune forgot a kept spec")
	}
	if _, ok := s.Get(b); ok {
		t.Errorf("Prune kept a spec not in keep")
	}
}

func TestStateSaveOnlyWhenChanged(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "tunnels.yaml")
	s, err := OpenPortMemory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Save of an unchanged empty state wrote the file (stat: %v)", err)
	}
	s.Set(sp("a", "dev", 0, 80), 50001)
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.Path()); err != nil {
		t.Fatal(err)
	}
	s.Set(sp("a", "dev", 0, 80), 50001) // same port: no change
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Save after setting the same port wrote the file (stat: %v)", err)
	}
}

func TestStateInvalidPortForgets(t *testing.T) {
	s, err := OpenPortMemory(filepath.Join(t.TempDir(), "tunnels.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a := sp("a", "dev", 0, 80)
	s.Set(a, 50001)
	s.Set(a, 70000)
	if p, ok := s.Get(a); ok {
		t.Errorf("Get after Set(70000) = %d, want forgotten", p)
	}
}

func TestStateBadFile(t *testing.T) {
	for _, tt := range []struct{ name, content string }{
		{"not json", "{"},
		{"wrong version", `{"version": 99, "ports": []}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "tunnels.yaml")
			if err := os.MkdirAll(filepath.Join(dir, ".tunnels"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(MemoryPath(cfg), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := OpenPortMemory(cfg)
			if !errors.Is(err, ErrBadState) {
				t.Errorf("OpenPortMemory error = %v, want ErrBadState", err)
			}
			if s == nil {
				t.Fatal("OpenPortMemory returned no usable state with its error")
			}
			// The state is usable, and Save replaces the bad file.
			s.Set(sp("a", "dev", 0, 80), 50001)
			if err := s.Save(); err != nil {
				t.Fatal(err)
			}
			s2, err := OpenPortMemory(cfg)
			if err != nil {
				t.Fatalf("OpenPortMemory after Save: %v", err)
			}
			if p, ok := s2.Get(sp("a", "dev", 0, 80)); p != 50001 || !ok {
				t.Errorf("Get = %d, %v; want 50001, true", p, ok)
			}
		})
	}
}

func TestStateSkipsInvalidEntries(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tunnels.yaml")
	if err := os.MkdirAll(filepath.Join(dir, ".tunnels"), 0o700); err != nil {
		t.Fatal(err)
	}
	content := `{"version": 1, "ports": [
		{"tunnel": "a", "context": "kind", "namespace": "dev", "kind": "pod", "target": "a", "address": "localhost", "remotePort": 80, "port": 0},
		{"tunnel": "b", "context": "kind", "namespace": "dev", "kind": "pod", "target": "b", "address": "localhost", "remotePort": 80, "port": 50002}
	]}`
	if err := os.WriteFile(MemoryPath(cfg), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenPortMemory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := s.Get(sp("a", "dev", 0, 80)); ok {
		t.Errorf("entry with port 0 loaded as %d", p)
	}
	if p, ok := s.Get(sp("b", "dev", 0, 80)); p != 50002 || !ok {
		t.Errorf("Get(b) = %d, %v; want 50002, true", p, ok)
	}
}
