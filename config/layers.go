package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// A tunnels file may have a local override next to it, tunnels.local.yaml
// for tunnels.yaml, that users keep out of version control: its file-wide
// keys replace the file's, and its tunnels are merged into the file's by
// name, key by key (a target key replaces the tunnel's target, whatever its
// kind). String values of both may use ${VAR} and ${VAR:-default}. Problems
// are reported at the file, line and column they come from.

// Layer is one file of a layered tunnels file: its name, for problem
// locations, and its bytes.
type Layer struct {
	Name string
	Data []byte
}

// LocalPath returns the path of the local override of the tunnels file at
// path: tunnels.local.yaml for tunnels.yaml, dev.local.yml for dev.yml.
func LocalPath(path string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + ".local" + ext
}

// LoadLayers reads the tunnels file at path and its local override, if
// there is one, and parses them with ParseLayers. A missing file is an
// error wrapping fs.ErrNotExist; a missing override is not.
func LoadLayers(path string, getenv func(string) (string, bool)) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tunnels file: %w", err)
	}
	local, err := ReadLocal(path)
	if err != nil {
		return nil, err
	}
	return ParseLayers(Layer{Name: path, Data: data}, local, getenv)
}

// ReadLocal reads the local override of the tunnels file at path: nil if
// there is none.
func ReadLocal(path string) (*Layer, error) {
	lp := LocalPath(path)
	data, err := os.ReadFile(lp)
	switch {
	case os.IsNotExist(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("load local override: %w", err)
	}
	return &Layer{Name: lp, Data: data}, nil
}

// ParseLayers parses base with local (nil for none) merged over it, after
// expanding ${VAR} and ${VAR:-default} in string values with getenv (nil:
// no expansion). Like Parse, it returns every problem of both files as
// Problems, each at its own file's line and column.
func ParseLayers(base Layer, local *Layer, getenv func(string) (string, bool)) (*File, error) {
	p := &parser{filename: base.Name}
	root := p.document(base.Data)
	if local != nil && !blank(local.Data) {
		lp := &parser{filename: local.Name}
		lroot := lp.document(local.Data)
		p.problems = append(p.problems, lp.problems...)
		if root != nil && lroot != nil {
			p.origin = map[*yaml.Node]string{}
			markOrigin(p.origin, lroot, local.Name)
			p.merge(root, lroot)
		}
	}
	if root == nil || len(p.problems) > 0 {
		return nil, p.result()
	}
	if getenv != nil {
		p.expand(root, getenv)
	}
	f := p.file(root)
	if len(p.problems) > 0 {
		return nil, p.result()
	}
	return f, nil
}

// blank reports whether data holds no YAML value (nothing, or comments):
// an empty override overrides nothing.
func blank(data []byte) bool {
	var n yaml.Node
	return yaml.Unmarshal(data, &n) == nil && len(n.Content) == 0
}

// markOrigin records that n and everything under it come from file.
func markOrigin(origin map[*yaml.Node]string, n *yaml.Node, file string) {
	origin[n] = file
	for _, c := range n.Content {
		markOrigin(origin, c, file)
	}
}

// merge merges the local root mapping into base's.
func (p *parser) merge(base, local *yaml.Node) {
	if local.Kind != yaml.MappingNode {
		p.at(local, "want a mapping of keys to override, got %s", describe(local))
		return
	}
	if base.Kind != yaml.MappingNode {
		return // reported when base is walked
	}
	for i := 0; i+1 < len(local.Content); i += 2 {
		k, v := local.Content[i], local.Content[i+1]
		_, bv := mapGet(base, k.Value)
		if k.Value == "tunnels" && bv != nil && bv.Kind == yaml.MappingNode && v.Kind == yaml.MappingNode {
			p.mergeTunnels(bv, v)
			continue
		}
		setKey(base, k, v, nil)
	}
}

// mergeTunnels merges local tunnels into base's, by name.
func (p *parser) mergeTunnels(base, local *yaml.Node) {
	for i := 0; i+1 < len(local.Content); i += 2 {
		k, v := local.Content[i], local.Content[i+1]
		_, bv := mapGet(base, k.Value)
		if bv == nil || bv.Kind != yaml.MappingNode || v.Kind != yaml.MappingNode {
			setKey(base, k, v, nil) // a new tunnel, or a whole replacement
			continue
		}
		for j := 0; j+1 < len(v.Content); j += 2 {
			var drop []string
			if isTargetKey(v.Content[j].Value) {
				// One target per tunnel: the override's replaces the file's.
				for _, t := range targetKeys {
					drop = append(drop, string(t))
				}
			}
			setKey(bv, v.Content[j], v.Content[j+1], drop)
		}
	}
}

func isTargetKey(s string) bool {
	for _, t := range targetKeys {
		if string(t) == s {
			return true
		}
	}
	return false
}

// setKey sets key k to v in mapping m, in place of an entry with the same
// key (or with a key in drop), else at the end.
func setKey(m, k, v *yaml.Node, drop []string) {
	out := m.Content[:0:0]
	replaced := false
	for i := 0; i+1 < len(m.Content); i += 2 {
		key := m.Content[i].Value
		if key == k.Value || contains(drop, key) {
			if !replaced {
				out = append(out, k, v)
				replaced = true
			}
			continue
		}
		out = append(out, m.Content[i], m.Content[i+1])
	}
	if !replaced {
		out = append(out, k, v)
	}
	m.Content = out
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// envRef matches $$ (a literal $), ${VAR} and ${VAR:-default}.
var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expand replaces environment references in the string values under n
// (not in keys), reporting unset variables without a default.
func (p *parser) expand(n *yaml.Node, getenv func(string) (string, bool)) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			p.expand(n.Content[i], getenv)
		}
		return
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, c := range n.Content {
			p.expand(c, getenv)
		}
		return
	case yaml.ScalarNode:
	default:
		return
	}
	if !strings.Contains(n.Value, "$") || n.ShortTag() != "!!str" {
		return
	}
	n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		m := envRef.FindStringSubmatch(ref)
		if v, ok := getenv(m[1]); ok && (v != "" || m[2] == "") {
			return v
		}
		if m[2] != "" {
			return m[3] // ${VAR:-default}: unset or empty
		}
		p.at(n, "environment variable %s is not set (write ${%s:-DEFAULT} for a default)", m[1], m[1])
		if p.unset == nil {
			p.unset = map[*yaml.Node]bool{}
		}
		p.unset[n] = true
		return ""
	})
	// A value that became a number (ports: ["${PORT}"]) is read as one.
	if isDigits(n.Value) && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
		n.Tag = "!!int"
	}
}
