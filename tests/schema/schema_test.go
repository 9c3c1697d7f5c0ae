// Package schema checks schema.json against the examples and against
// tunnels validate: editors and the CLI must agree on what is valid.
package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

const (
	schemaPath  = "../../schema.json"
	examplesDir = "../../examples"
	invalidDir  = "../../config/testdata/invalid"
)

// compile compiles the repository's schema.json as Draft 2020-12.
func compile(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	sch, err := c.Compile(schemaPath)
	if err != nil {
		t.Fatalf("compile %s: %v", schemaPath, err)
	}
	return sch
}

// instance reads a YAML file as the JSON value an editor validates.
func instance(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// Round-trip through encoding/json so the value has exactly JSON's
	// types (yaml.v3 gives ints and, for non-string keys, map[any]any).
	j, err := json.Marshal(jsonCompatible(v))
	if err != nil {
		t.Fatalf("%s: to JSON: %v", path, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return inst
}

// jsonCompatible turns map[any]any (YAML allows non-string keys) into
// map[string]any, recursively.
func jsonCompatible(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonCompatible(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = jsonCompatible(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = jsonCompatible(e)
		}
		return v
	}
	return v
}

// binDir holds the tunnels binary, built once for every test.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tunnels-schema-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// buildTunnels builds the tunnels binary from the main module, once.
func buildTunnels(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "tunnels")
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/tunnels")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/tunnels: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

// validate runs tunnels validate -f path and returns its exit code and
// stderr.
func validate(t *testing.T, bin, path string) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), bin, "validate", "-f", path)
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stderr.String()
	}
	t.Fatalf("run tunnels validate: %v", err)
	return -1, ""
}

func TestExamplesMatchSchema(t *testing.T) {
	sch := compile(t)
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d examples in %s, want at least 3", len(files), examplesDir)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			if err := sch.Validate(instance(t, path)); err != nil {
				t.Errorf("schema rejects %s, want it valid: %v", path, err)
			}
		})
	}
}

// schemaDetectable lists the invalid samples that have a mistake the schema
// can see (the others need tunnels validate: port conflicts, selector
// grammar, YAML syntax, duplicate keys).
var schemaDetectable = []string{
	"unknown-key",
	"two-targets",
	"no-target",
	"bad-port-specs",
	"missing-version",
	"wrong-version",
	"missing-tunnels",
	"empty-ports",
	"tunnel-name",
	"namespace",
	"types",
	"tunnels-list",
	"tunnels-null",
	"target-names",
	"address",
	"empty-context",
	"five-mistakes",
}

// TestInvalidRejectedByBoth checks that schema.json and tunnels validate both
// reject each schema-detectable invalid sample.
func TestInvalidRejectedByBoth(t *testing.T) {
	sch := compile(t)
	bin := buildTunnels(t)
	for _, name := range schemaDetectable {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(invalidDir, name+".yaml")
			if err := sch.Validate(instance(t, path)); err == nil {
				t.Errorf("schema accepts %s, want it rejected", path)
			}
			code, stderr := validate(t, bin, path)
			if code != 1 || !strings.HasPrefix(stderr, path+":") {
				t.Errorf("tunnels validate -f %s: exit %d, stderr %q; want exit 1 and FILE:LINE:COLUMN problems", path, code, stderr)
			}
		})
	}
}

// TestSchemaCases checks single mistakes, one file each, against both.
func TestSchemaCases(t *testing.T) {
	sch := compile(t)
	bin := buildTunnels(t)
	const ok = "version: 1\ntunnels:\n  api:\n    pod: api-0\n    ports: [8080]\n"
	tests := []struct {
		name  string
		yaml  string
		valid bool
	}{
		{"valid", ok, true},
		{"every form of port spec", "version: 1\ntunnels:\n  a: {pod: a, ports: [1, 65535, '2', '3:4', ':5', '0:6', http, ':web', '7:metrics-v2', '0065534']}\n", true},
		{"address list", "version: 1\naddress: [127.0.0.1, '::1']\ntunnels: {}\n", true},
		{"empty tunnels", "version: 1\ntunnels: {}\n", true},
		{"unknown top-level key", ok + "extra: 1\n", false},
		{"unknown tunnel key", strings.Replace(ok, "pod:", "pods:", 1), false},
		{"no target", strings.Replace(ok, "    pod: api-0\n", "", 1), false},
		{"two targets", strings.Replace(ok, "pod: api-0", "pod: api-0\n    service: api", 1), false},
		{"port 0", strings.Replace(ok, "8080", "0", 1), false},
		{"port 65536", strings.Replace(ok, "8080", "65536", 1), false},
		{"negative port", strings.Replace(ok, "8080", "-1", 1), false},
		{"port a:b:c", strings.Replace(ok, "8080", "'a:b:c'", 1), false},
		{"local port 65536", strings.Replace(ok, "8080", "'65536:80'", 1), false},
		{"port name too long", strings.Replace(ok, "8080", "abcdefghijklmnop", 1), false},
		{"empty ports", strings.Replace(ok, "[8080]", "[]", 1), false},
		{"no version", strings.Replace(ok, "version: 1\n", "", 1), false},
		{"version 2", strings.Replace(ok, "version: 1", "version: 2", 1), false},
		{"bad namespace", ok + "namespace: Shop\n", false},
		{"hostname address", ok + "address: example.com\n", false},
		{"disabled not a boolean", ok + "    disabled: 'yes'\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tunnels.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			schemaErr := sch.Validate(instance(t, path))
			if (schemaErr == nil) != tt.valid {
				t.Errorf("schema: valid = %v (%v); want %v", schemaErr == nil, schemaErr, tt.valid)
			}
			code, stderr := validate(t, bin, path)
			if (code == 0) != tt.valid {
				t.Errorf("tunnels validate: exit %d (%s); want valid = %v", code, stderr, tt.valid)
			}
		})
	}
}
