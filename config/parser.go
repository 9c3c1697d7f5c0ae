package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The keys each mapping of the file allows, in the order messages list them.
var (
	fileKeys   = []string{"version", "context", "namespace", "address", "transport", "tunnels"}
	tunnelKeys = []string{"pod", "service", "deployment", "statefulset", "selector", "ports", "context", "namespace", "address", "transport", "disabled"}
	targetKeys = []Kind{KindPod, KindService, KindDeployment, KindStatefulSet, KindSelector}
)

// targetList is the target keys for messages: "pod, service, ...".
var targetList = func() string {
	names := make([]string, len(targetKeys))
	for i, k := range targetKeys {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}()

// parser walks the yaml.Node tree of one file, collecting every problem
// instead of stopping at the first, each located at the node it is about.
type parser struct {
	filename string
	problems Problems
	// origin names the file of nodes merged in from a local override
	// (ParseLayers); nodes not in it are filename's.
	origin map[*yaml.Node]string
	// unset marks values naming an unset environment variable: reported
	// once, not again as whatever the empty value breaks.
	unset map[*yaml.Node]bool

	// tunnels parallels File.Tunnels with what the port-conflict check
	// needs and File does not keep.
	tunnels       []parsedTunnel
	fileAddressOK bool
}

// parsedTunnel is the parse state of one tunnel.
type parsedTunnel struct {
	ports     []*yaml.Node // the node of each entry of Tunnel.Ports
	addressOK bool         // false when the tunnel's own address is invalid
}

// keyValue is one entry of a YAML mapping. dup marks a key seen before,
// already reported: its value is still walked for problems where that helps.
type keyValue struct {
	key, value *yaml.Node
	dup        bool
}

// at records a problem located at n.
func (p *parser) at(n *yaml.Node, format string, args ...any) {
	if p.unset[n] {
		return
	}
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, max(n.Column, 1)
	}
	file := p.filename
	if f, ok := p.origin[n]; ok {
		file = f
	}
	p.problems = append(p.problems, Problem{File: file, Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

// result returns the problems sorted by position, each once (a node reached
// through several aliases is reported once).
func (p *parser) result() Problems {
	seen := make(map[Problem]bool, len(p.problems))
	out := p.problems[:0]
	for _, pr := range p.problems {
		if !seen[pr] {
			seen[pr] = true
			out = append(out, pr)
		}
	}
	out.sort(p.filename)
	return out
}

// parse parses data into a File, or returns nil when the file has no
// mapping to walk; the problems are in p.problems.
func (p *parser) parse(data []byte) *File {
	root := p.document(data)
	if root == nil {
		return nil
	}
	return p.file(root)
}

// document decodes data into its root node, or records why it cannot.
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := decode(dec, &doc)
	if errors.Is(err, io.EOF) {
		p.at(nil, "empty file: want a mapping with version: 1 and tunnels")
		return nil
	}
	if err != nil {
		p.syntax(data, err)
		return nil
	}
	// A file holds one document; an empty one after it (a trailing "---")
	// is harmless.
	for {
		var extra yaml.Node
		err := decode(dec, &extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.syntax(data, err)
			break
		}
		if !emptyDocument(&extra) {
			p.at(&extra, "a second YAML document starts here; a tunnels file holds one")
			break
		}
	}
	if len(doc.Content) == 0 {
		p.at(nil, "empty file: want a mapping with version: 1 and tunnels")
		return nil
	}
	return doc.Content[0]
}

// emptyDocument reports whether a document holds nothing but comments.
func emptyDocument(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}
	n := doc.Content[0]
	return len(doc.Content) == 1 && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" && n.Value == ""
}

// decode decodes the next document, turning a panic in the YAML library
// into an error: a tunnels file, however broken, must not crash tunnels.
func decode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: cannot parse: %v", r)
		}
	}()
	return dec.Decode(n)
}

// yamlErrorLine matches the line yaml.v3 puts in its syntax errors. The
// library has no structured error for syntax problems, so its text is all
// there is; golden tests (testdata/invalid/syntax-*.yaml) catch a library
// upgrade that changes it.
var yamlErrorLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlAnchorError matches the alias errors yaml.v3 reports without a line.
var yamlAnchorError = regexp.MustCompile(`^yaml: (unknown anchor '(.*)' referenced|anchor '(.*)' value contains itself)$`)

// syntax records a YAML syntax error at the best position the error allows:
// yaml.v3 gives a line but no column.
func (p *parser) syntax(data []byte, err error) {
	msg := err.Error()
	line, col := 1, 1
	if m := yamlErrorLine.FindStringSubmatch(msg); m != nil {
		msg = m[2]
		if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
			line = n
			// yaml.v3 numbers lines from 1 for scanner errors but from 0
			// for parser errors ("did not find expected ..."), which it
			// reports at the start of the enclosing block or flow.
			if strings.HasPrefix(msg, "did not find expected") || strings.HasPrefix(msg, "found duplicate %") || msg == "found incompatible YAML document" {
				line++
				if strings.HasPrefix(msg, "did not find expected") && !strings.Contains(msg, "<") {
					msg += " (in the collection starting on this line)"
				}
			}
		}
	} else if m := yamlAnchorError.FindStringSubmatch(msg); m != nil {
		msg = m[1]
		if m[2] != "" {
			line, col = locate(data, "*"+m[2])
		} else {
			line, col = locate(data, "&"+m[3])
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	p.problems = append(p.problems, Problem{File: p.filename, Line: line, Column: col, Message: "invalid YAML: " + msg})
}

// locate returns the 1-based line and column of the first occurrence of
// token in data that is not followed by more of an anchor name, or 1, 1.
func locate(data []byte, token string) (line, col int) {
	for off := 0; ; {
		i := bytes.Index(data[off:], []byte(token))
		if i < 0 {
			return 1, 1
		}
		i += off
		end := i + len(token)
		if end == len(data) || strings.IndexByte(" \t\r\n,]}", data[end]) >= 0 {
			before := data[:i]
			line = bytes.Count(before, []byte("\n")) + 1
			col = i - (bytes.LastIndexByte(before, '\n') + 1) + 1
			return line, col
		}
		off = end
	}
}

// file walks the root mapping.
func (p *parser) file(root *yaml.Node) *File {
	root = deref(root)
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		p.at(root, "empty file: want a mapping with version: 1 and tunnels")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.at(root, "want a mapping with version: 1 and tunnels, got %s", describe(root))
		return nil
	}
	f := &File{}
	p.fileAddressOK = true
	var version, tunnels *yaml.Node
	for _, kv := range p.fields(root, "", "key", fileKeys) {
		if kv.dup {
			continue
		}
		switch kv.key.Value {
		case "version":
			version = kv.value
			if p.version(kv.value) {
				f.Version = Version
			}
		case "context":
			f.Context, _ = p.context(kv.value, "")
		case "namespace":
			f.Namespace, _ = p.namespace(kv.value, "")
		case "address":
			f.Address, p.fileAddressOK = p.addresses(kv.value, "")
		case "transport":
			f.Transport = p.transport(kv.value, "")
		case "tunnels":
			tunnels = kv.value
		}
	}
	if version == nil {
		p.at(root, `missing key "version": add "version: 1"`)
	}
	if tunnels == nil {
		p.at(root, `missing key "tunnels", the mapping of tunnel names to tunnels (write "tunnels: {}" for none)`)
	} else {
		p.tunnelMap(f, tunnels)
	}
	p.checkConflicts(f)
	return f
}

// fields returns the entries of mapping n whose keys are in allowed (every
// key when allowed is nil), recording bad, duplicate and unknown keys. what
// names a key in the duplicate message ("key", "tunnel"). Duplicates are
// returned with dup set.
func (p *parser) fields(n *yaml.Node, prefix, what string, allowed []string) []keyValue {
	seen := make(map[string]*yaml.Node)
	var out []keyValue
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.at(k, "%swant a string as %s, got %s", prefix, what, describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			p.at(k, "%smerge keys (<<) are not supported; write the keys out", prefix)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.at(k, "%sduplicate %s %q, first at %d:%d", prefix, what, k.Value, first.Line, first.Column)
			out = append(out, keyValue{key: k, value: v, dup: true})
			continue
		}
		seen[k.Value] = k
		if allowed != nil && !slices.Contains(allowed, k.Value) {
			msg := fmt.Sprintf("%sunknown key %q", prefix, k.Value)
			if s := suggest(k.Value, allowed); s != "" {
				msg += fmt.Sprintf(", did you mean %q?", s)
			}
			p.at(k, "%s (allowed: %s)", msg, strings.Join(allowed, ", "))
			continue
		}
		out = append(out, keyValue{key: k, value: v})
	}
	return out
}

// version checks the version value and reports whether it is 1.
func (p *parser) version(n *yaml.Node) bool {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		p.at(n, "version: want the integer %d, got %s", Version, describe(n))
		return false
	}
	if n.Value != strconv.Itoa(Version) {
		p.at(n, "unsupported version %s: this tunnels reads version %d", n.Value, Version)
		return false
	}
	return true
}

// str returns the string value of n, or records that n is not a string.
func (p *parser) str(n *yaml.Node, prefix, key string) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.at(n, "%s%s: want a string, got %s", prefix, key, describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) context(n *yaml.Node, prefix string) (string, bool) {
	s, ok := p.str(n, prefix, "context")
	if ok && strings.TrimSpace(s) == "" {
		p.at(deref(n), "%scontext: empty; leave the key out to use the kubeconfig's current context", prefix)
		return "", false
	}
	return s, ok
}

func (p *parser) namespace(n *yaml.Node, prefix string) (string, bool) {
	s, ok := p.str(n, prefix, "namespace")
	if ok && !isDNS1123Label(s) {
		p.at(deref(n), "%snamespace %q: want a DNS-1123 label, %s", prefix, s, dns1123LabelRule)
		return "", false
	}
	return s, ok
}

// transport parses a transport value: auto, websocket or spdy.
func (p *parser) transport(n *yaml.Node, prefix string) string {
	s, ok := p.str(n, prefix, "transport")
	if !ok {
		return ""
	}
	if !slices.Contains(Transports, s) {
		p.at(deref(n), "%stransport %q: want auto, websocket or spdy", prefix, s)
		return ""
	}
	return s
}

// addresses parses an address value: one address or a list of them.
func (p *parser) addresses(n *yaml.Node, prefix string) ([]string, bool) {
	n = deref(n)
	var items []*yaml.Node
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		items = []*yaml.Node{n}
	case n.Kind == yaml.SequenceNode:
		items = n.Content
		if len(items) == 0 {
			p.at(n, "%saddress: empty list, want at least one address", prefix)
			return nil, false
		}
	default:
		p.at(n, "%saddress: want an address or a list of addresses, got %s", prefix, describe(n))
		return nil, false
	}
	ok := true
	var out []string
	var set listenSet[string] // the addresses so far, to catch overlaps
	for _, item := range items {
		item = deref(item)
		s, good := p.str(item, prefix, "address")
		if !good {
			ok = false
			continue
		}
		addr, err := CanonicalAddress(s)
		if err != nil {
			p.at(item, "%s%v", prefix, err)
			ok = false
			continue
		}
		if prev, ip, overlaps := set.findAddr(addr); overlaps {
			p.at(item, "%saddress %q overlaps %q listed before: both listen on %s", prefix, s, prev, ip)
			ok = false
			continue
		}
		set.addAddr(addr, addr)
		out = append(out, addr)
	}
	return out, ok
}

// tunnelMap walks the tunnels mapping into f.Tunnels.
func (p *parser) tunnelMap(f *File, n *yaml.Node) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		hint := ""
		switch {
		case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
			hint = `; write "tunnels: {}" for none`
		case n.Kind == yaml.SequenceNode:
			hint = "; tunnels are keyed by name (api: {pod: api-0, ports: [8080]})"
		}
		p.at(n, "tunnels: want a mapping of tunnel names to tunnels, got %s%s", describe(n), hint)
		return
	}
	for _, kv := range p.fields(n, "", "tunnel", nil) {
		t, pt := p.tunnel(kv.key, kv.value)
		if kv.dup {
			continue // reported, and its own problems too, but it takes no port
		}
		f.Tunnels = append(f.Tunnels, t)
		p.tunnels = append(p.tunnels, pt)
	}
}

// tunnel walks one tunnel.
func (p *parser) tunnel(key, n *yaml.Node) (Tunnel, parsedTunnel) {
	t := Tunnel{Name: key.Value, Line: key.Line, Column: key.Column}
	pt := parsedTunnel{addressOK: true}
	prefix := fmt.Sprintf("tunnel %q: ", t.Name)
	if !isDNS1123Label(t.Name) {
		p.at(key, "tunnel name %q: want a DNS-1123 label, %s", t.Name, dns1123LabelRule)
	}
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		p.at(n, "%swant a mapping with a target (%s) and ports, got %s", prefix, targetList, describe(n))
		return t, pt
	}
	var target, ports *yaml.Node
	for _, kv := range p.fields(n, prefix, "key", tunnelKeys) {
		if kv.dup {
			continue
		}
		switch k := kv.key.Value; k {
		case "pod", "service", "deployment", "statefulset", "selector":
			if target != nil {
				p.at(kv.key, "%stwo targets, %s and %s; want exactly one of %s", prefix, target.Value, k, targetList)
				continue
			}
			target = kv.key
			t.Target = p.target(kv.value, prefix, Kind(k))
		case "ports":
			ports = kv.value
		case "context":
			t.Context, _ = p.context(kv.value, prefix)
		case "namespace":
			t.Namespace, _ = p.namespace(kv.value, prefix)
		case "address":
			t.Address, pt.addressOK = p.addresses(kv.value, prefix)
		case "transport":
			t.Transport = p.transport(kv.value, prefix)
		case "disabled":
			t.Disabled = p.boolean(kv.value, prefix, k)
		}
	}
	if target == nil {
		p.at(key, "%sno target; want exactly one of %s", prefix, targetList)
	}
	if ports == nil {
		p.at(key, `%smissing key "ports", the list of port specs such as [8080, "9090:90"]`, prefix)
	} else {
		t.Ports, pt.ports = p.ports(ports, prefix)
	}
	return t, pt
}

// target parses the value of a target key.
func (p *parser) target(n *yaml.Node, prefix string, kind Kind) Target {
	s, ok := p.str(n, prefix, string(kind))
	if !ok {
		return Target{Kind: kind}
	}
	n = deref(n)
	switch kind {
	case KindSelector:
		canonical, err := ParseSelector(s)
		if err != nil {
			p.at(n, "%s%v", prefix, err)
		}
		s = canonical
	case KindService:
		if !isDNS1035Label(s) {
			p.at(n, "%sservice %q: want a DNS-1035 label, %s", prefix, s, dns1035LabelRule)
		}
	default:
		if !isDNS1123Subdomain(s) {
			p.at(n, "%s%s %q: want a DNS-1123 subdomain, %s", prefix, kind, s, dns1123SubdomainRule)
		}
	}
	return Target{Kind: kind, Name: s}
}

// boolean parses a true/false value.
func (p *parser) boolean(n *yaml.Node, prefix, key string) bool {
	n = deref(n)
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		p.at(n, "%s%s: want true or false, got %s", prefix, key, describe(n))
		return false
	}
	return b
}

// decimal matches the integers a port may be written as: YAML also reads
// 0x1F, 0o17, 1_000 and 017 (octal!) as integers, which would surprise.
var decimal = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// ports parses the list of port specs, returning each valid spec and its
// node.
func (p *parser) ports(n *yaml.Node, prefix string) ([]PortSpec, []*yaml.Node) {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		p.at(n, `%sports: want a list of port specs such as [8080, "9090:90"], got %s`, prefix, describe(n))
		return nil, nil
	}
	if len(n.Content) == 0 {
		p.at(n, "%sports: empty list, want at least one port spec", prefix)
		return nil, nil
	}
	var specs []PortSpec
	var nodes []*yaml.Node
	free := make(map[PortSpec]*yaml.Node) // specs with a free local port
	for _, item := range n.Content {
		item = deref(item)
		var text string
		switch {
		case item.Kind == yaml.ScalarNode && item.ShortTag() == "!!str":
			text = item.Value
		case item.Kind == yaml.ScalarNode && item.ShortTag() == "!!int" && decimal.MatchString(item.Value):
			text = item.Value
		case item.Kind == yaml.ScalarNode && item.ShortTag() == "!!int":
			p.at(item, "%sport %s: write port numbers in plain decimal (YAML reads 0x1F, 0o17 and 017 as hex or octal)", prefix, item.Value)
			continue
		default:
			p.at(item, "%sports: want a port number or a port spec string, got %s", prefix, describe(item))
			continue
		}
		spec, err := ParsePortSpec(text)
		if err != nil {
			p.at(item, "%s%v", prefix, err)
			continue
		}
		if spec.Local == 0 {
			// Two free local ports to the same remote port would be two
			// identical Specs; ports with a fixed local port are checked
			// by checkConflicts.
			if first, dup := free[spec]; dup {
				p.at(item, "%sport spec %q repeats %q (at %d:%d)", prefix, text, first.Value, first.Line, first.Column)
				continue
			}
			free[spec] = item
		}
		specs = append(specs, spec)
		nodes = append(nodes, item)
	}
	return specs, nodes
}

// deref follows aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	// yaml.v3 rejects an anchor that contains itself, so aliases do not
	// loop; the bound only guards against a library change.
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// describe names the type of a node for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", v)
		case "!!int":
			return "the integer " + v
		case "!!float":
			return "the number " + v
		case "!!bool":
			return "the boolean " + v
		case "!!null":
			return "nothing (null)"
		}
		return fmt.Sprintf("a value tagged %s", n.ShortTag())
	}
	return "nothing"
}
