package config

import (
	"bytes"
	_ "embed" // for the schema
)

//go:generate go test -run=TestRootSchemaUpToDate -update .

// schemaJSON is the JSON Schema of the file format. The repository's root
// schema.json, which editors load, is a copy that a test keeps equal
// (go generate ./config rewrites it).
//
//go:embed schema.json
var schemaJSON []byte

// Schema returns the JSON Schema (Draft 2020-12) of the tunnels file
// format. The schema catches what an editor can show while typing (unknown
// keys, targets, port spec syntax, types); Parse checks more (port
// conflicts, selector syntax, address overlaps).
func Schema() []byte { return bytes.Clone(schemaJSON) }
