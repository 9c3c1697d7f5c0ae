package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files and the root schema.json")

// TestInvalidGolden parses every testdata/invalid/NAME.yaml and compares its
// problems, one per line, with NAME.golden.
func TestInvalidGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("found %d invalid samples, want at least 10", len(files))
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(name, data)
			var problems Problems
			if !errors.As(err, &problems) {
				t.Fatalf("Parse(%s) = %v, %v; want Problems", name, f, err)
			}
			if f != nil {
				t.Errorf("Parse(%s) returned a File with problems", name)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("Parse(%s) problems:\n%s\nwant (%s):\n%s", name, got, golden, want)
			}
			for _, p := range problems {
				if p.File != name || p.Line < 1 || p.Column < 1 || p.Message == "" {
					t.Errorf("problem %+v: want file %s, line and column >= 1, a message", p, name)
				}
			}
		})
	}
}

// TestFiveMistakes checks the sample the docs promise: five different
// mistakes give five FILE:LINE:COLUMN lines.
func TestFiveMistakes(t *testing.T) {
	data, err := os.ReadFile("testdata/invalid/five-mistakes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("five-mistakes.yaml", data)
	var problems Problems
	if !errors.As(err, &problems) {
		t.Fatalf("Parse: got %v, want Problems", err)
	}
	wantLines := []int{3, 7, 9, 13, 16}
	if len(problems) != len(wantLines) {
		t.Fatalf("got %d problems, want %d:\n%v", len(problems), len(wantLines), err)
	}
	for i, p := range problems {
		if p.Line != wantLines[i] {
			t.Errorf("problem %d at line %d, want line %d: %v", i, p.Line, wantLines[i], p)
		}
	}
}

// TestExamplesValid parses every examples/*.yaml.
func TestExamplesValid(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d examples, want at least 3", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := Load(path)
			if err != nil {
				t.Fatalf("Load(%s): %v", path, err)
			}
			if len(f.Specs(Defaults{Context: "current"})) == 0 {
				t.Errorf("Load(%s): got no Specs, want some", path)
			}
		})
	}
}
