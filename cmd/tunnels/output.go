package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"gopkg.in/yaml.v3"
)

// outputFormats are the values of -o on status, plan and validate.
var outputFormats = []string{"table", "json", "yaml"}

// checkOutput reports a usage error for an unknown -o value.
func checkOutput(e *env, cmd, format string) bool {
	if slices.Contains(outputFormats, format) {
		return true
	}
	fmt.Fprintf(e.stderr, "tunnels %s: -o must be table, json or yaml, not %q\n", cmd, format)
	return false
}

// writeData writes v as JSON or YAML. YAML is made from the JSON, so both
// use the same field names.
func writeData(w io.Writer, format string, v any) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	var generic any
	if err := yaml.Unmarshal(j, &generic); err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(generic); err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	return enc.Close()
}
