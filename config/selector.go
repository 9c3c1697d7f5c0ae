package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalidSelector is the sentinel every *SelectorError matches with
// errors.Is.
var ErrInvalidSelector = errors.New("invalid label selector")

// SelectorError reports a label selector that does not parse.
type SelectorError struct {
	Selector string // the selector as written
	Reason   string // what is wrong with it
}

// Error returns `selector "SELECTOR": REASON`.
func (e *SelectorError) Error() string {
	return fmt.Sprintf("selector %q: %s", e.Selector, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidSelector) true for every SelectorError.
func (e *SelectorError) Is(target error) bool { return target == ErrInvalidSelector }

// selectorTerm is one requirement of a label selector.
type selectorTerm struct {
	key    string
	text   string   // canonical rendering
	op     string   // "", "!", "=", "!=", "in" or "notin"
	values []string // the value of =, != (one), or the set of in, notin
}

// ParseSelector checks a Kubernetes label selector and returns it in
// canonical form: terms sorted by key, duplicates dropped, "==" written "=",
// set values sorted, no spaces but those around in/notin. Selectors that
// select the same pods the same way therefore compare equal.
//
// The grammar is kubectl's: comma-separated terms, each one of key=value,
// key==value, key!=value, key in (v1,v2), key notin (v1,v2), key (the label
// exists) or !key (it does not). Keys and values follow the Kubernetes label
// rules. An empty selector is an error: it would select every pod. Errors are
// *SelectorError.
func ParseSelector(s string) (string, error) {
	p := selectorParser{src: s}
	terms, reason := p.parse()
	if reason != "" {
		return "", &SelectorError{Selector: s, Reason: reason}
	}
	slices.SortFunc(terms, func(a, b selectorTerm) int {
		return cmp.Or(strings.Compare(a.key, b.key), strings.Compare(a.text, b.text))
	})
	terms = slices.CompactFunc(terms, func(a, b selectorTerm) bool { return a.text == b.text })
	texts := make([]string, len(terms))
	for i, t := range terms {
		texts[i] = t.text
	}
	return strings.Join(texts, ","), nil
}

// MatchSelector reports whether a pod with labels is selected by selector
// (kubectl's grammar, as ParseSelector takes it), with the API server's
// rules: key!=value and key notin (...) also select a pod without the key.
// Errors are *SelectorError.
func MatchSelector(selector string, labels map[string]string) (bool, error) {
	p := selectorParser{src: selector}
	terms, reason := p.parse()
	if reason != "" {
		return false, &SelectorError{Selector: selector, Reason: reason}
	}
	for _, t := range terms {
		if !t.matches(labels) {
			return false, nil
		}
	}
	return true, nil
}

// matches reports whether labels satisfy the term.
func (t selectorTerm) matches(labels map[string]string) bool {
	v, ok := labels[t.key]
	switch t.op {
	case "":
		return ok
	case "!":
		return !ok
	case "=", "in":
		return ok && slices.Contains(t.values, v)
	case "!=", "notin":
		return !ok || !slices.Contains(t.values, v)
	}
	return false
}

// selectorParser is a recursive-descent parser over the selector text.
type selectorParser struct {
	src string
	pos int
}

// tokEnd is the token next returns at the end of the selector; it cannot be
// an identifier, which never holds a space.
const tokEnd = "end of selector"

// selectorSpecial reports the characters that end an identifier.
func selectorSpecial(c byte) bool {
	return strings.IndexByte(" \t\n\r!=,()<>", c) >= 0
}

// next returns the next token: an operator, "(", ")", ",", tokEnd, or an
// identifier (ident=true).
func (p *selectorParser) next() (tok string, ident bool) {
	for p.pos < len(p.src) && strings.IndexByte(" \t\n\r", p.src[p.pos]) >= 0 {
		p.pos++
	}
	if p.pos == len(p.src) {
		return tokEnd, false
	}
	rest := p.src[p.pos:]
	for _, op := range []string{"==", "!=", "=", "!", ",", "(", ")", "<", ">"} {
		if strings.HasPrefix(rest, op) {
			p.pos += len(op)
			return op, false
		}
	}
	start := p.pos
	for p.pos < len(p.src) && !selectorSpecial(p.src[p.pos]) {
		p.pos++
	}
	return p.src[start:p.pos], true
}

// peek returns the next token without consuming it.
func (p *selectorParser) peek() (tok string, ident bool) {
	pos := p.pos
	tok, ident = p.next()
	p.pos = pos
	return tok, ident
}

func (p *selectorParser) parse() ([]selectorTerm, string) {
	if strings.TrimSpace(p.src) == "" {
		return nil, "empty, it would select every pod; want terms like app=web"
	}
	var terms []selectorTerm
	for {
		t, reason := p.term()
		if reason != "" {
			return nil, reason
		}
		terms = append(terms, t)
		switch tok, _ := p.next(); tok {
		case tokEnd:
			return terms, ""
		case ",":
		default:
			return nil, fmt.Sprintf("unexpected %q after term %q, want ',' between terms", tok, t.text)
		}
	}
}

func (p *selectorParser) term() (selectorTerm, string) {
	tok, ident := p.next()
	if tok == "!" {
		key, ident := p.next()
		if !ident {
			return selectorTerm{}, fmt.Sprintf("want a label key after '!', got %s", describeToken(key))
		}
		if r := labelKeyProblem(key); r != "" {
			return selectorTerm{}, r
		}
		return selectorTerm{key: key, text: "!" + key, op: "!"}, ""
	}
	if !ident {
		return selectorTerm{}, fmt.Sprintf("want a label key, got %s", describeToken(tok))
	}
	key := tok
	if r := labelKeyProblem(key); r != "" {
		return selectorTerm{}, r
	}
	op, ident := p.peek()
	switch {
	case op == tokEnd || op == ",":
		return selectorTerm{key: key, text: key}, ""
	case op == "=" || op == "==" || op == "!=":
		p.next()
		value, ident := p.peek()
		if ident {
			p.next()
		} else {
			value = "" // key= selects the empty value, as in kubectl
		}
		if !isLabelValue(value) {
			return selectorTerm{}, fmt.Sprintf("label value %q must be empty or %s", value, labelNameRule)
		}
		if op == "==" {
			op = "="
		}
		return selectorTerm{key: key, text: key + op + value, op: op, values: []string{value}}, ""
	case ident && (op == "in" || op == "notin"):
		p.next()
		values, reason := p.set(key, op)
		if reason != "" {
			return selectorTerm{}, reason
		}
		return selectorTerm{key: key, text: key + " " + op + " (" + strings.Join(values, ",") + ")", op: op, values: values}, ""
	case op == "<" || op == ">":
		return selectorTerm{}, fmt.Sprintf("operator %q is not supported, want =, ==, !=, in or notin", op)
	}
	return selectorTerm{}, fmt.Sprintf("unexpected %s after label key %q, want =, ==, !=, in, notin, ',' or the end", describeToken(op), key)
}

// set parses "(v1, v2)" after in/notin and returns the values sorted.
func (p *selectorParser) set(key, op string) ([]string, string) {
	if tok, _ := p.next(); tok != "(" {
		return nil, fmt.Sprintf("want '(' after %q %s, got %s", key, op, describeToken(tok))
	}
	var values []string
	for {
		value, ident := p.next()
		if !ident {
			return nil, fmt.Sprintf("want a label value in %q %s (...), got %s", key, op, describeToken(value))
		}
		if !isLabelValue(value) {
			return nil, fmt.Sprintf("label value %q must be %s", value, labelNameRule)
		}
		values = append(values, value)
		switch tok, _ := p.next(); tok {
		case ")":
			slices.Sort(values)
			return slices.Compact(values), ""
		case ",":
		default:
			return nil, fmt.Sprintf("want ',' or ')' in %q %s (...), got %s", key, op, describeToken(tok))
		}
	}
}

func describeToken(tok string) string {
	if tok == tokEnd {
		return tokEnd
	}
	return fmt.Sprintf("%q", tok)
}
