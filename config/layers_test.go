package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLayers(t *testing.T) {
	base := Layer{Name: "tunnels.yaml", Data: []byte(`version: 1
namespace: shop
tunnels:
  api:
    pod: api-0
    ports: [8080]
  db:
    service: postgres
    ports: ["5432"]
`)}
	local := &Layer{Name: "tunnels.local.yaml", Data: []byte(`# mine
namespace: ${NS:-dev}
tunnels:
  api:
    selector: app=${APP}
    disabled: true
  db:
    ports: ["${PGPORT:-6432}:5432"]
  mine:
    pod: ${USER}-debug
    ports: [9000]
`)}
	env := map[string]string{"APP": "api", "USER": "ann"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	f, err := ParseLayers(base, local, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if f.Namespace != "dev" {
		t.Errorf("namespace %q, want dev (the override's default)", f.Namespace)
	}
	got := map[string]Tunnel{}
	for _, tn := range f.Tunnels {
		got[tn.Name] = tn
	}
	if a := got["api"]; a.Target != (Target{Kind: KindSelector, Name: "app=api"}) || !a.Disabled || len(a.Ports) != 1 || a.Ports[0].Local != 8080 {
		t.Errorf("api: %+v, want the override's selector and disabled, the file's ports", a)
	}
	if d := got["db"]; d.Target.Kind != KindService || len(d.Ports) != 1 || d.Ports[0].Local != 6432 {
		t.Errorf("db: %+v, want the file's service, the override's port 6432:5432", d)
	}
	if m := got["mine"]; m.Target.Name != "ann-debug" || m.Line != 9 {
		t.Errorf("mine: %+v, want pod ann-debug from the override's line 9", m)
	}

	// Without an override, the file alone (and env expansion still).
	if f, err := ParseLayers(base, nil, getenv); err != nil || len(f.Tunnels) != 2 || f.Namespace != "shop" {
		t.Errorf("no override: %+v, %v", f, err)
	}
	// An override of comments only overrides nothing.
	if _, err := ParseLayers(base, &Layer{Name: "l.yaml", Data: []byte("# nothing yet\n")}, nil); err != nil {
		t.Errorf("blank override: %v", err)
	}
}

// TestParseLayersProblems: each problem is at its own file, line and column.
func TestParseLayersProblems(t *testing.T) {
	base := Layer{Name: "tunnels.yaml", Data: []byte("version: 1\ntunnels:\n  api:\n    pod: api-0\n    ports: [\"1:2:3\"]\n")}
	local := &Layer{Name: "tunnels.local.yaml", Data: []byte("tunnels:\n  db:\n    pod: ${MISSING}\n    ports: [5432]\n  api:\n    bogus: 1\n")}
	_, err := ParseLayers(base, local, func(string) (string, bool) { return "", false })
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("got %v, want Problems", err)
	}
	text := ps.Error()
	for _, want := range []string{
		"tunnels.yaml:5:",
		"tunnels.local.yaml:3:10: environment variable MISSING is not set",
		"tunnels.local.yaml:6:5:",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("problems lack %q:\n%s", want, text)
		}
	}
	if !strings.HasPrefix(text, "tunnels.yaml:") {
		t.Errorf("the file's problems should come first:\n%s", text)
	}
	// A syntax error in the override is the override's.
	_, err = ParseLayers(base, &Layer{Name: "x.local.yaml", Data: []byte("tunnels: [\n")}, nil)
	if err == nil || !strings.Contains(err.Error(), "x.local.yaml:") {
		t.Errorf("syntax error in the override: %v", err)
	}
}

func TestLoadLayers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dev.yaml")
	if LocalPath(path) != filepath.Join(dir, "dev.local.yaml") {
		t.Errorf("LocalPath(%s) = %s", path, LocalPath(path))
	}
	os.WriteFile(path, []byte("version: 1\ntunnels:\n  a: {pod: a, ports: [1]}\n"), 0o644)
	if f, err := LoadLayers(path, nil); err != nil || len(f.Tunnels) != 1 {
		t.Fatalf("without an override: %+v, %v", f, err)
	}
	os.WriteFile(LocalPath(path), []byte("tunnels:\n  a: {disabled: true}\n"), 0o644)
	if f, err := LoadLayers(path, nil); err != nil || !f.Tunnels[0].Disabled {
		t.Fatalf("with an override: %+v, %v", f, err)
	}
}
