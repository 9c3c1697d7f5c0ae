package config

import (
	"fmt"
	"strings"
)

// The rules for Kubernetes names, as a user should read them in a message.
const (
	dns1123LabelRule     = "at most 63 characters: lowercase letters, digits and '-', starting and ending with a letter or digit"
	dns1123SubdomainRule = "at most 253 characters: dot-separated parts of lowercase letters, digits and '-', each starting and ending with a letter or digit"
	dns1035LabelRule     = "at most 63 characters: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"
	portNameRule         = "at most 15 characters: lowercase letters, digits and '-', at least one letter, no leading, trailing or double '-'"
	labelNameRule        = "at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
)

// isDNS1123Label reports whether s is a DNS-1123 label, the rule for
// namespaces and tunnel names.
func isDNS1123Label(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLowerAlnum(c) && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// isDNS1123Subdomain reports whether s is a DNS-1123 subdomain, the rule for
// pod, deployment and statefulset names.
func isDNS1123Subdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for part := range strings.SplitSeq(s, ".") {
		if !isDNS1123Label(part) {
			return false
		}
	}
	return true
}

// isDNS1035Label reports whether s is a DNS-1035 label, the rule for service
// names: a DNS-1123 label that starts with a letter.
func isDNS1035Label(s string) bool {
	return isDNS1123Label(s) && s[0] >= 'a' && s[0] <= 'z'
}

// portNameProblem returns why s is not an IANA_SVC_NAME, or "".
func portNameProblem(s string) string {
	if len(s) > 15 {
		return fmt.Sprintf("longer than 15 characters; a port name is %s", portNameRule)
	}
	letter := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			letter = true
		case c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1 && s[i-1] != '-':
		default:
			return "a port name is " + portNameRule
		}
	}
	if !letter {
		return "a port name is " + portNameRule
	}
	return ""
}

// labelKeyProblem returns why s is not a label key ([PREFIX/]NAME), or "".
func labelKeyProblem(s string) string {
	name := s
	if prefix, rest, hasPrefix := strings.Cut(s, "/"); hasPrefix {
		if !isDNS1123Subdomain(prefix) {
			return fmt.Sprintf("label key %q: the prefix before '/' must be a DNS subdomain, %s", s, dns1123SubdomainRule)
		}
		name = rest
	}
	if name == "" || !isLabelValue(name) {
		return fmt.Sprintf("label key %q: the name must be %s", s, labelNameRule)
	}
	return ""
}

// isLabelValue reports whether s is a valid label value: empty, or a
// qualified name of at most 63 characters.
func isLabelValue(s string) bool {
	if len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := isLowerAlnum(c) || (c >= 'A' && c <= 'Z')
		if !alnum && (i == 0 || i == len(s)-1 || (c != '-' && c != '_' && c != '.')) {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }
