package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Editing a tunnels file from the command line must keep what the user
// wrote: comments, key order, quoting and indentation. Re-encoding a
// yaml.Node tree loses some of that (indentation, blank lines, comment
// placement), so the edits below use the node tree only to find positions
// and splice new text into the original bytes: every byte outside the
// edited lines stays as it was. The caller validates the result with Parse.

// Edit errors, for errors.Is.
var (
	// ErrTunnelExists: AddTunnel names a tunnel the file already has.
	ErrTunnelExists = errors.New("tunnel already exists")
	// ErrNoTunnel: the tunnel to edit is not in the file.
	ErrNoTunnel = errors.New("no such tunnel")
	// ErrNoPort: a port to remove is not one of the tunnel's.
	ErrNoPort = errors.New("no such port")
	// ErrCannotEdit: the file is written in a way these edits do not
	// handle (a multi-line flow collection, say); edit it by hand.
	ErrCannotEdit = errors.New("cannot edit this file in place")
)

// NewTunnel is a tunnel for AddTunnel.
type NewTunnel struct {
	Name      string
	Target    Target // not KindSelector's canonical form: written as given
	Namespace string // "" to inherit
	Context   string // "" to inherit
	Ports     []PortSpec
}

// AddTunnel returns data with t appended to its tunnels, in the style of
// the tunnel before it (block or flow mapping).
func AddTunnel(data []byte, t NewTunnel) ([]byte, error) {
	d, err := newDoc(data)
	if err != nil {
		return nil, err
	}
	tk, tv := mapGet(d.root, "tunnels")
	if tk == nil {
		return nil, fmt.Errorf("add tunnel %q: the file has no tunnels key: %w", t.Name, ErrCannotEdit)
	}
	if k, _ := mapGet(tv, t.Name); k != nil {
		return nil, fmt.Errorf("add tunnel %q: %w (line %d)", t.Name, ErrTunnelExists, k.Line)
	}
	fields := []string{string(t.Target.Kind) + ": " + yamlString(t.Target.Name)}
	if t.Namespace != "" {
		fields = append(fields, "namespace: "+yamlString(t.Namespace))
	}
	if t.Context != "" {
		fields = append(fields, "context: "+yamlString(t.Context))
	}
	fields = append(fields, "ports: ["+portList(t.Ports)+"]")

	switch {
	case tv.Kind == yaml.MappingNode && len(tv.Content) > 0 && tv.Style&yaml.FlowStyle == 0:
		lastKey, lastVal := tv.Content[len(tv.Content)-2], tv.Content[len(tv.Content)-1]
		indent := strings.Repeat(" ", lastKey.Column-1)
		var text string
		if lastVal.Kind == yaml.MappingNode && lastVal.Style&yaml.FlowStyle != 0 {
			text = indent + t.Name + ": {" + strings.Join(fields, ", ") + "}\n"
		} else {
			child := indent + "  "
			if lastVal.Kind == yaml.MappingNode && len(lastVal.Content) > 0 {
				child = strings.Repeat(" ", lastVal.Content[0].Column-1)
			}
			text = indent + t.Name + ":\n" + child + strings.Join(fields, "\n"+child) + "\n"
		}
		end, err := d.end(lastVal)
		if err != nil {
			return nil, err
		}
		return d.insertLine(d.lineEnd(end), text), nil
	case (tv.Kind == yaml.MappingNode && len(tv.Content) == 0) || (tv.Kind == yaml.ScalarNode && tv.ShortTag() == "!!null"):
		// tunnels: {}, tunnels: ~ or tunnels: with nothing after it.
		indent := strings.Repeat(" ", tk.Column-1+2)
		text := indent + t.Name + ":\n" + indent + "  " + strings.Join(fields, "\n"+indent+"  ") + "\n"
		keyEnd := d.offset(tk.Line, tk.Column) + len(tk.Value) + 1 // past "tunnels:"
		valEnd := keyEnd
		if tv.Line > 0 && (tv.Kind == yaml.MappingNode || tv.Value != "") {
			if valEnd, err = d.end(tv); err != nil {
				return nil, err
			}
		}
		// Drop the empty value, keep a comment after it on the line.
		rest := d.data[valEnd:d.lineEnd(valEnd)]
		line := strings.TrimRight(string(d.data[d.lineStart(keyEnd):keyEnd])+string(rest), "\n") + "\n"
		return d.splice(d.lineStart(keyEnd), d.lineEnd(valEnd), line+text), nil
	}
	return nil, fmt.Errorf("add tunnel %q: tunnels is written as a flow mapping on line %d: %w", t.Name, tv.Line, ErrCannotEdit)
}

// AddPorts returns data with ports appended to the ports of tunnel name.
func AddPorts(data []byte, name string, ports []PortSpec) ([]byte, error) {
	d, pv, err := portsOf(data, name, "add ports to")
	if err != nil {
		return nil, err
	}
	if pv.Style&yaml.FlowStyle != 0 {
		if len(pv.Content) == 0 {
			at := d.offset(pv.Line, pv.Column) + 1 // past '['
			return d.splice(at, at, portList(ports)), nil
		}
		end, err := d.end(pv.Content[len(pv.Content)-1])
		if err != nil {
			return nil, err
		}
		return d.splice(end, end, ", "+portList(ports)), nil
	}
	last := pv.Content[len(pv.Content)-1]
	end, err := d.end(last)
	if err != nil {
		return nil, err
	}
	// The new items go under the last one, with its dash's indentation.
	itemStart := d.offset(last.Line, last.Column)
	lineStart := d.lineStart(itemStart)
	dash := bytes.LastIndexByte(d.data[lineStart:itemStart], '-')
	if dash < 0 {
		return nil, fmt.Errorf("add ports to tunnel %q: no '-' before the port on line %d: %w", name, last.Line, ErrCannotEdit)
	}
	indent := strings.Repeat(" ", utf8.RuneCount(d.data[lineStart:lineStart+dash]))
	var text strings.Builder
	for _, p := range ports {
		text.WriteString(indent + "- " + portText(p) + "\n")
	}
	return d.insertLine(d.lineEnd(end), text.String()), nil
}

// RemoveTunnel returns data without tunnel name: its lines and the comment
// lines right above it at its indentation. Removing the last tunnel leaves
// "tunnels: {}".
func RemoveTunnel(data []byte, name string) ([]byte, error) {
	d, err := newDoc(data)
	if err != nil {
		return nil, err
	}
	k, v, err := d.tunnel(name)
	if err != nil {
		return nil, err
	}
	tk, tv := mapGet(d.root, "tunnels")
	if tv.Style&yaml.FlowStyle != 0 {
		return nil, fmt.Errorf("remove tunnel %q: tunnels is written as a flow mapping on line %d: %w", name, tv.Line, ErrCannotEdit)
	}
	end, err := d.end(v)
	if err != nil {
		return nil, err
	}
	start := d.lineStart(d.offset(k.Line, k.Column))
	indent := k.Column - 1
	for start > 0 {
		prev := d.lineStart(start - 1)
		line := string(d.data[prev:start])
		trimmed := strings.TrimLeft(line, " ")
		if !strings.HasPrefix(trimmed, "#") || len(line)-len(trimmed) != indent {
			break
		}
		start = prev
	}
	stop := d.lineEnd(end)
	// A blank line that separated the tunnel from the next one goes with
	// it when nothing but a blank line or the tunnels key precedes it.
	if stop < len(d.data) && d.data[stop] == '\n' && start > 0 {
		prev := strings.TrimRight(string(d.data[d.lineStart(start-1):start]), " \n")
		if prev == "" || strings.HasSuffix(prev, ":") {
			stop++
		}
	}
	out := d.splice(start, stop, "")
	if len(tv.Content) == 2 {
		// The last one: an empty mapping, not a null, so the file stays valid.
		at := d.offset(tk.Line, tk.Column) + len(tk.Value) + 1
		out = slices.Concat(out[:at], []byte(" {}"), out[at:])
	}
	return out, nil
}

// RemovePorts returns data without the given ports of tunnel name. A port
// matches an item written as the same spec (5432 matches "5432:5432"); a
// spec without a local part also matches any item with that remote port.
func RemovePorts(data []byte, name string, ports []PortSpec, remoteOnly []bool) ([]byte, error) {
	d, pv, err := portsOf(data, name, "remove ports of")
	if err != nil {
		return nil, err
	}
	drop := make([]bool, len(pv.Content))
	for i, want := range ports {
		found := false
		for j, item := range pv.Content {
			got, err := ParsePortSpec(item.Value)
			if err != nil || drop[j] {
				continue
			}
			if got == want || (remoteOnly[i] && got.Remote == want.Remote) {
				drop[j], found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("remove port %s of tunnel %q: %w", want, name, ErrNoPort)
		}
	}
	if !slices.Contains(drop, false) {
		return nil, fmt.Errorf("remove every port of tunnel %q: a tunnel needs a port; remove the tunnel instead", name)
	}
	if pv.Style&yaml.FlowStyle != 0 {
		open := d.offset(pv.Line, pv.Column)
		closing, err := d.end(pv)
		if err != nil {
			return nil, err
		}
		if bytes.IndexByte(d.data[open:closing], '\n') >= 0 {
			return nil, fmt.Errorf("remove ports of tunnel %q: its ports list spans lines from line %d: %w", name, pv.Line, ErrCannotEdit)
		}
		var kept []string
		for j, item := range pv.Content {
			if drop[j] {
				continue
			}
			end, err := d.end(item)
			if err != nil {
				return nil, err
			}
			kept = append(kept, string(d.data[d.offset(item.Line, item.Column):end]))
		}
		return d.splice(open+1, closing-1, strings.Join(kept, ", ")), nil
	}
	out := d.data
	for j := len(pv.Content) - 1; j >= 0; j-- { // from the end, so offsets hold
		if !drop[j] {
			continue
		}
		item := pv.Content[j]
		end, err := d.end(item)
		if err != nil {
			return nil, err
		}
		start := d.lineStart(d.offset(item.Line, item.Column))
		out = slices.Concat(out[:start], out[d.lineEnd(end):])
	}
	return out, nil
}

// SetDisabled returns data with tunnel name disabled or enabled. Enabling
// removes a "disabled:" line of its own; otherwise the value is rewritten
// or a "disabled: true" added after the tunnel's last field.
func SetDisabled(data []byte, name string, disabled bool) ([]byte, error) {
	d, err := newDoc(data)
	if err != nil {
		return nil, err
	}
	_, tv, err := d.tunnel(name)
	if err != nil {
		return nil, err
	}
	if tv.Kind != yaml.MappingNode || len(tv.Content) == 0 {
		return nil, fmt.Errorf("set disabled of tunnel %q: it is not a mapping: %w", name, ErrCannotEdit)
	}
	flow := tv.Style&yaml.FlowStyle != 0
	dk, dv := mapGet(tv, "disabled")
	if dk != nil {
		end, err := d.end(dv)
		if err != nil {
			return nil, err
		}
		keyStart := d.offset(dk.Line, dk.Column)
		ownLine := strings.TrimLeft(string(d.data[d.lineStart(keyStart):keyStart]), " ") == ""
		if !disabled && !flow && ownLine {
			return d.splice(d.lineStart(keyStart), d.lineEnd(end), ""), nil
		}
		return d.splice(d.offset(dv.Line, dv.Column), end, strconv.FormatBool(disabled)), nil
	}
	if !disabled {
		return data, nil // already enabled
	}
	last := tv.Content[len(tv.Content)-1]
	end, err := d.end(last)
	if err != nil {
		return nil, err
	}
	if flow {
		return d.splice(end, end, ", disabled: true"), nil
	}
	indent := strings.Repeat(" ", tv.Content[0].Column-1)
	return d.insertLine(d.lineEnd(end), indent+"disabled: true\n"), nil
}

// doc is a tunnels file's bytes and its node tree.
type doc struct {
	data []byte
	root *yaml.Node // the top-level mapping
}

func newDoc(data []byte) (*doc, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return nil, fmt.Errorf("read the file to edit: %w", err)
	}
	if len(n.Content) == 0 || n.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("read the file to edit: not a mapping: %w", ErrCannotEdit)
	}
	return &doc{data: data, root: n.Content[0]}, nil
}

// tunnel finds the key and value of tunnel name.
// portsOf parses data and finds the ports list of tunnel name; verb says
// what was being done, for the error.
func portsOf(data []byte, name, verb string) (*doc, *yaml.Node, error) {
	d, err := newDoc(data)
	if err != nil {
		return nil, nil, err
	}
	_, tv, err := d.tunnel(name)
	if err != nil {
		return nil, nil, err
	}
	_, pv := mapGet(tv, "ports")
	if pv == nil || pv.Kind != yaml.SequenceNode {
		return nil, nil, fmt.Errorf("%s tunnel %q: its ports are not a list: %w", verb, name, ErrCannotEdit)
	}
	return d, pv, nil
}

func (d *doc) tunnel(name string) (k, v *yaml.Node, err error) {
	_, tv := mapGet(d.root, "tunnels")
	k, v = mapGet(tv, name)
	if k == nil {
		return nil, nil, fmt.Errorf("tunnel %q: %w", name, ErrNoTunnel)
	}
	return k, v, nil
}

// mapGet returns the key and value nodes of key in mapping m.
func mapGet(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

// offset turns yaml.v3's 1-based line and column (counted in characters)
// into a byte offset.
func (d *doc) offset(line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(d.data[off:], '\n')
		if i < 0 {
			return len(d.data)
		}
		off += i + 1
	}
	for c := 1; c < col && off < len(d.data); c++ {
		_, size := utf8.DecodeRune(d.data[off:])
		off += size
	}
	return off
}

// lineStart is the offset of the start of the line holding off.
func (d *doc) lineStart(off int) int { return bytes.LastIndexByte(d.data[:off], '\n') + 1 }

// lineEnd is the offset just past the newline of the line holding off
// (len(data) on a last line without one).
func (d *doc) lineEnd(off int) int {
	if i := bytes.IndexByte(d.data[off:], '\n'); i >= 0 {
		return off + i + 1
	}
	return len(d.data)
}

// end returns the offset just past n's text.
func (d *doc) end(n *yaml.Node) (int, error) {
	start := d.offset(n.Line, n.Column)
	switch {
	case n.Kind == yaml.ScalarNode:
		return d.scalarEnd(n, start)
	case n.Style&yaml.FlowStyle != 0:
		return d.flowEnd(start)
	case len(n.Content) > 0:
		return d.end(n.Content[len(n.Content)-1])
	}
	return 0, fmt.Errorf("find the end of line %d's value: %w", n.Line, ErrCannotEdit)
}

func (d *doc) scalarEnd(n *yaml.Node, start int) (int, error) {
	s := d.data
	switch {
	case n.Style&yaml.DoubleQuotedStyle != 0:
		for i := start + 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '"':
				return i + 1, nil
			}
		}
	case n.Style&yaml.SingleQuotedStyle != 0:
		for i := start + 1; i < len(s); i++ {
			if s[i] == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					i++
					continue
				}
				return i + 1, nil
			}
		}
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
	default:
		// A plain scalar on one line: it ends before a flow indicator, a
		// comment or the end of the line.
		i := start
		for i < len(s) && s[i] != '\n' && s[i] != ',' && s[i] != ']' && s[i] != '}' && !(s[i] == '#' && i > start && s[i-1] == ' ') {
			i++
		}
		for i > start && (s[i-1] == ' ' || s[i-1] == '\t' || s[i-1] == '\r') {
			i--
		}
		if string(s[start:i]) == n.Value || n.Value == "" {
			return i, nil
		}
	}
	return 0, fmt.Errorf("find the end of %q on line %d: %w", n.Value, n.Line, ErrCannotEdit)
}

// flowEnd returns the offset past the bracket closing the flow collection
// that opens at start, skipping quoted text and comments.
func (d *doc) flowEnd(start int) (int, error) {
	s, depth := d.data, 0
	for i := start; i < len(s); i++ {
		switch s[i] {
		case '[', '{':
			depth++
		case ']', '}':
			depth--
			if depth == 0 {
				return i + 1, nil
			}
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case '\'':
			for i++; i < len(s) && s[i] != '\''; i++ {
			}
		case '#':
			if i > 0 && (s[i-1] == ' ' || s[i-1] == '\t' || s[i-1] == '\n') {
				for i < len(s) && s[i] != '\n' {
					i++
				}
			}
		}
	}
	return 0, fmt.Errorf("find the end of the flow collection at byte %d: %w", start, ErrCannotEdit)
}

// splice returns a copy of data with [from, to) replaced by text.
func (d *doc) splice(from, to int, text string) []byte {
	return slices.Concat(d.data[:from], []byte(text), d.data[to:])
}

// insertLine inserts whole lines at off, the start of a line (or the end
// of a file that may lack its last newline).
func (d *doc) insertLine(off int, text string) []byte {
	if off == len(d.data) && off > 0 && d.data[off-1] != '\n' {
		text = "\n" + text
	}
	return d.splice(off, off, text)
}

// portList renders ports for a flow sequence: 5000, ":5000", "6000:http".
func portList(ports []PortSpec) string {
	texts := make([]string, len(ports))
	for i, p := range ports {
		texts[i] = portText(p)
	}
	return strings.Join(texts, ", ")
}

// portText is a port spec as YAML: a bare number when it is one, else
// quoted (":5000" unquoted is not a plain scalar in a flow sequence).
func portText(p PortSpec) string {
	s := p.String()
	if isDigits(s) {
		return s
	}
	return strconv.Quote(s)
}

// plainSafe matches strings YAML reads back as the same string unquoted.
var plainSafe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./-]*$`)

// yamlString renders s as a YAML string: plain when that reads back as the
// same string, double-quoted otherwise.
func yamlString(s string) string {
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~":
		return strconv.Quote(s)
	}
	if plainSafe.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}
