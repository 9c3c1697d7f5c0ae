package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxPort is the largest TCP port number.
const MaxPort = 65535

// ErrInvalidPortSpec is the sentinel every *PortSpecError matches with
// errors.Is.
var ErrInvalidPortSpec = errors.New("invalid port spec")

// PortSpecError reports a port spec that does not follow [LOCAL:]REMOTE.
type PortSpecError struct {
	Spec   string // the spec as written
	Reason string // what is wrong with it
}

// Error returns `port spec "SPEC": REASON`.
func (e *PortSpecError) Error() string {
	return fmt.Sprintf("port spec %q: %s", e.Spec, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidPortSpec) true for every PortSpecError.
func (e *PortSpecError) Is(target error) bool { return target == ErrInvalidPortSpec }

// PortSpec is one forwarded port: a local port (0 for a free port chosen at
// start) and a port in the pod.
type PortSpec struct {
	Local  int
	Remote RemotePort
}

// String returns the spec in the canonical form ParsePortSpec reads back:
// "5000" when both sides are equal, ":5000" or ":http" for a free local port,
// "6000:5000" or "6000:http" otherwise.
func (p PortSpec) String() string {
	switch {
	case p.Remote.Name == "" && p.Local == p.Remote.Number:
		return strconv.Itoa(p.Local)
	case p.Local == 0:
		return ":" + p.Remote.String()
	}
	return strconv.Itoa(p.Local) + ":" + p.Remote.String()
}

// ParsePortSpec parses a port spec in kubectl port-forward's grammar,
// [LOCAL:]REMOTE:
//
//	5000        local 5000 to remote 5000
//	6000:5000   local 6000 to remote 5000
//	:5000       a free local port to remote 5000 (so is 0:5000)
//	8080:http   local 8080 to the port named http
//	http        a free local port to the port named http: the number behind
//	            the name is only known once the pod is resolved
//
// REMOTE is 1-65535 or a port name (IANA_SVC_NAME: at most 15 characters,
// lowercase letters, digits and '-', at least one letter, no leading,
// trailing or double '-'). LOCAL is 0-65535 or empty. Errors are
// *PortSpecError and name the spec and the reason.
func ParsePortSpec(s string) (PortSpec, error) {
	fail := func(format string, args ...any) (PortSpec, error) {
		return PortSpec{}, &PortSpecError{Spec: s, Reason: fmt.Sprintf(format, args...)}
	}
	if strings.TrimSpace(s) == "" {
		return fail("empty, want [LOCAL:]REMOTE")
	}
	if strings.TrimSpace(s) != s {
		return fail("leading or trailing space")
	}
	localText, remoteText, hasLocal := strings.Cut(s, ":")
	if !hasLocal {
		remoteText = s
	}
	if strings.Contains(remoteText, ":") {
		return fail("too many colons, want [LOCAL:]REMOTE")
	}
	if remoteText == "" {
		return fail("missing remote port after ':', want [LOCAL:]REMOTE")
	}

	var p PortSpec
	if isDigits(remoteText) {
		n, ok := portNumber(remoteText)
		if !ok || n < 1 {
			return fail("remote port %s is out of range 1-%d", remoteText, MaxPort)
		}
		p.Remote.Number = n
	} else if isNegative(remoteText) {
		return fail("negative remote port %s, want 1-%d or a port name", remoteText, MaxPort)
	} else if reason := portNameProblem(remoteText); reason != "" {
		return fail("remote port %q is neither a number nor a valid port name: %s", remoteText, reason)
	} else {
		p.Remote.Name = remoteText
	}

	switch {
	case !hasLocal:
		// A bare number forwards the same port on both sides; a bare name
		// takes a free local port, since its number is not known yet.
		p.Local = p.Remote.Number
	case localText == "":
		p.Local = 0
	case isDigits(localText):
		n, ok := portNumber(localText)
		if !ok {
			return fail("local port %s is out of range 0-%d", localText, MaxPort)
		}
		p.Local = n
	case isNegative(localText):
		return fail("negative local port %s, want 0-%d or empty for a free port", localText, MaxPort)
	default:
		return fail("local port %q is not a number, want 0-%d or empty for a free port", localText, MaxPort)
	}
	return p, nil
}

// portNumber parses decimal digits; ok is false above MaxPort.
func portNumber(digits string) (n int, ok bool) {
	v, err := strconv.ParseUint(digits, 10, 32)
	if err != nil || v > MaxPort {
		return 0, false
	}
	return int(v), true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isNegative(s string) bool { return len(s) > 1 && s[0] == '-' && isDigits(s[1:]) }
