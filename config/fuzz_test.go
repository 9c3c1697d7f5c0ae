package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func FuzzParsePortSpec(f *testing.F) {
	for _, s := range []string{
		"5000", "6000:5000", ":5000", "0:5000", "8080:http", "http", ":http", "",
		"a:b:c", "0", "65536", "-1", "x:80", "65536:80", "80:", "Foo_Bar", " 80", "00080",
	} {
		f.Add(s)
	}
	branches := portSpecPatterns(f)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePortSpec(s)
		if got := schemaAcceptsPortSpec(branches, s); got != (err == nil) {
			t.Errorf("port spec %q: schema accepts = %v; ParsePortSpec: %v", s, got, err)
		}
		if err != nil {
			var pse *PortSpecError
			if !errors.As(err, &pse) || pse.Spec != s {
				t.Errorf("ParsePortSpec(%q) error %#v; want a *PortSpecError naming the spec", s, err)
			}
			return
		}
		if p.Local < 0 || p.Local > MaxPort {
			t.Errorf("ParsePortSpec(%q) local = %d; want 0-%d", s, p.Local, MaxPort)
		}
		if (p.Remote.Name == "") == (p.Remote.Number == 0) {
			t.Errorf("ParsePortSpec(%q) remote = %+v; want exactly one of name and number", s, p.Remote)
		}
		if p.Remote.Number < 0 || p.Remote.Number > MaxPort {
			t.Errorf("ParsePortSpec(%q) remote = %d; want 1-%d", s, p.Remote.Number, MaxPort)
		}
		back, err := ParsePortSpec(p.String())
		if err != nil || back != p {
			t.Errorf("ParsePortSpec(%q) = %+v; its String %q parses to %+v, %v", s, p, p.String(), back, err)
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"../examples/*.yaml", "testdata/invalid/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, path := range files {
			data, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("version: 1\ntunnels: {a: &t {pod: p, ports: [1]}, b: *t}\n"))
	f.Add([]byte("version: 1\ntunnels:\n  a: {selector: 'x in (a,b),!y,z!=w', ports: [':1', '2:n', 3], address: ['::', 0.0.0.0]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("f.yaml", data)
		if err != nil {
			var problems Problems
			if !errors.As(err, &problems) || len(problems) == 0 {
				t.Fatalf("Parse error %#v; want non-empty Problems", err)
			}
			if file != nil {
				t.Errorf("Parse returned a File and problems")
			}
			for _, p := range problems {
				if p.File != "f.yaml" || p.Line < 1 || p.Column < 1 || p.Message == "" {
					t.Errorf("problem %+v: want file f.yaml, line and column >= 1 and a message", p)
				}
			}
			return
		}
		if file.Version != Version {
			t.Errorf("valid file has version %d", file.Version)
		}
		specs := file.Specs(Defaults{Context: "c"})
		seen := make(map[Spec]bool, len(specs))
		for _, s := range specs {
			if seen[s] {
				t.Errorf("Spec %+v appears twice", s)
			}
			seen[s] = true
			if s.Session.Context == "" || s.Session.Namespace == "" || s.Address == "" {
				t.Errorf("Spec %+v: a default is missing", s)
			}
			if s.LocalPort < 0 || s.LocalPort > MaxPort {
				t.Errorf("Spec %+v: local port out of range", s)
			}
		}
	})
}
