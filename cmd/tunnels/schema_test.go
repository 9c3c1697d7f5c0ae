package main

import (
	"bytes"
	"os"
	"testing"
)

// TestSchemaCommand checks that `tunnels schema` prints the repository's
// schema.json byte for byte.
func TestSchemaCommand(t *testing.T) {
	want, err := os.ReadFile("../../schema.json")
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd(t, "schema")
	if code != exitOK || stderr != "" {
		t.Fatalf("schema: code %d, stderr %q; want %d and no stderr", code, stderr, exitOK)
	}
	if !bytes.Equal([]byte(stdout), want) {
		t.Errorf("tunnels schema differs from schema.json; run: go generate ./config")
	}
	if code, _, _ := runCmd(t, "schema", "extra"); code != exitUsage {
		t.Errorf("schema extra: code %d; want %d", code, exitUsage)
	}
	if code, stdout, _ := runCmd(t, "schema", "--help"); code != exitOK || !bytes.Contains([]byte(stdout), []byte("Usage: tunnels schema")) {
		t.Errorf("schema --help: code %d, stdout %q; want usage", code, stdout)
	}
}
