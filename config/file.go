package config

import (
	"fmt"
	"os"
)

// Version is the only version of the file format this package reads.
const Version = 1

// File is a parsed, valid tunnels file. Fields the file leaves out are
// empty; Specs applies the defaults.
type File struct {
	Version   int
	Context   string   // kubeconfig context for every tunnel; "" for the default
	Namespace string   // namespace for every tunnel; "" for the context's
	Address   []string // canonical listen addresses; nil for localhost
	Transport string   // auto, websocket or spdy; "" for the default
	Tunnels   []Tunnel // in the order of the file
}

// Tunnel is one entry of the tunnels mapping, as written: fields it leaves
// out are empty and inherited from the File by Specs.
type Tunnel struct {
	Name      string
	Target    Target // for KindSelector, the canonical selector
	Context   string
	Namespace string
	Address   []string // canonical listen addresses; nil to inherit
	Transport string   // auto, websocket or spdy; "" to inherit
	Ports     []PortSpec
	Disabled  bool // kept in the file but not started
	Line      int  // position of the tunnel's name in the file
	Column    int
}

// Load reads and parses the tunnels file at path. An I/O error is wrapped,
// so errors.Is(err, fs.ErrNotExist) tells a missing file; a file with
// mistakes returns Problems (see Parse).
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tunnels file: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a tunnels file. filename is only used in
// problem locations. When the file has mistakes the error is Problems,
// listing every one, each located at its YAML node; get it with errors.As.
// Parse never panics, whatever data holds.
func Parse(filename string, data []byte) (*File, error) {
	p := &parser{filename: filename}
	f := p.parse(data)
	if len(p.problems) > 0 {
		return nil, p.result()
	}
	return f, nil
}
