package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Sentinels for the API statuses callers branch on; *APIError and
// *UpgradeError match them with errors.Is.
var (
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrNotFound     = errors.New("not found")
)

// maxErrorBody caps how much of an error response body is kept.
const maxErrorBody = 64 << 10

// APIError is a non-2xx answer of the API server, with what was asked so
// that the message can say what to do.
type APIError struct {
	StatusCode int
	Reason     string // the Status's reason, e.g. Forbidden, NotFound
	Message    string // the Status's message, or the start of the body
	Verb       string // get, list, watch, create
	Resource   string // pods, services, deployments, pods/portforward
	Namespace  string
	Name       string
	Context    string // kubeconfig context, for 401 messages
	User       string // kubeconfig user, for 401 messages
}

// Error says what failed and, for 401, 403 and 404, what to do about it.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Verb, e.object(), e.StatusCode, statusText(e.StatusCode, e.Reason))
	// A 404's message only restates the object.
	if e.Message != "" && e.StatusCode != http.StatusNotFound {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if hint := statusHint(e.StatusCode, e.Verb, e.Resource, e.Namespace, e.Name, e.Context, e.User); hint != "" {
		b.WriteString("; ")
		b.WriteString(hint)
	}
	return b.String()
}

// Is matches ErrUnauthorized, ErrForbidden and ErrNotFound by status code.
func (e *APIError) Is(target error) bool { return statusIs(e.StatusCode, target) }

func (e *APIError) object() string {
	return requestInfo{resource: e.Resource, namespace: e.Namespace, name: e.Name}.object()
}

// UpgradeError is a refused HTTP upgrade: any status other than 101.
type UpgradeError struct {
	StatusCode int
	Status     string      // the status line's text, e.g. "403 Forbidden"
	Body       []byte      // the start of the body (capped)
	Message    string      // the Kubernetes Status's message, if the body is one
	Header     http.Header // the response header (X-Accepted-Stream-Protocol-Versions, ...)

	Method    string
	Path      string
	Namespace string // parsed from Path, for hints
	Resource  string // parsed from Path, e.g. pods/portforward
	Name      string // parsed from Path
	Context   string
	User      string
}

// Error quotes the status and the server's message and, for 401, 403 and
// 404, says what to do.
func (e *UpgradeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upgrade %s %s: %s", e.Method, e.Path, e.Status)
	if e.Message != "" {
		fmt.Fprintf(&b, ": %q", e.Message)
	} else if len(e.Body) > 0 {
		body := strings.TrimSpace(string(e.Body))
		if len(body) > 200 {
			body = body[:200] + "…"
		}
		fmt.Fprintf(&b, ": %q", body)
	}
	if !e.fromAPIServer() {
		b.WriteString("; not an answer of the API server (no Kubernetes Status): a proxy or load balancer on the way, or a server that does not speak this protocol, refused the upgrade")
		return b.String()
	}
	verb := "create"
	if e.Method == http.MethodGet {
		verb = "get"
	}
	if hint := statusHint(e.StatusCode, verb, e.Resource, e.Namespace, e.Name, e.Context, e.User); hint != "" {
		b.WriteString("; ")
		b.WriteString(hint)
	}
	return b.String()
}

// UpgradeRefused reports whether the upgrade was refused as such rather
// than the request: true unless the answer is the API server's own
// Kubernetes Status (a 403 for missing RBAC, a 404 for a missing pod),
// which another kind of upgrade would get too. A proxy or load balancer
// that does not pass an upgrade answers without one, and so does a server
// that does not speak the protocol asked for. forward.UpgradeRefused reads
// it to fall back from WebSocket to SPDY.
func (e *UpgradeError) UpgradeRefused() bool { return !e.fromAPIServer() }

// fromAPIServer reports whether the body is a Kubernetes Status.
func (e *UpgradeError) fromAPIServer() bool {
	var st status
	return json.Unmarshal(e.Body, &st) == nil && st.Kind == "Status"
}

// Is matches ErrUnauthorized, ErrForbidden and ErrNotFound by status code.
func (e *UpgradeError) Is(target error) bool { return statusIs(e.StatusCode, target) }

func statusIs(code int, target error) bool {
	switch target {
	case ErrUnauthorized:
		return code == http.StatusUnauthorized
	case ErrForbidden:
		return code == http.StatusForbidden
	case ErrNotFound:
		return code == http.StatusNotFound
	}
	return false
}

func statusText(code int, reason string) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return reason
}

// statusHint says what to do about a 401, 403 or 404.
func statusHint(code int, verb, resource, namespace, name, context, user string) string {
	who := "the user"
	if user != "" {
		who = fmt.Sprintf("user %q", user)
	}
	if context != "" {
		who += fmt.Sprintf(" (context %q)", context)
	}
	switch code {
	case http.StatusUnauthorized:
		return fmt.Sprintf("the server did not accept the credentials of %s: check them in your kubeconfig (an expired token or certificate? for an exec plugin, log in again)", who)
	case http.StatusForbidden:
		where := "cluster-wide"
		if namespace != "" {
			where = fmt.Sprintf("in namespace %q", namespace)
		}
		hint := fmt.Sprintf("ask for an RBAC Role granting %q on %q %s to %s", verb, resource, where, who)
		if resource == "pods/portforward" {
			hint += "; port-forwarding needs both \"create\" and \"get\" on pods/portforward (create for SPDY; WebSocket is authorized as get and, since Kubernetes 1.35, also checked for create)"
		}
		return hint
	case http.StatusNotFound:
		return "check the name, the namespace and the context"
	}
	return ""
}

// status is the part of a Kubernetes Status object we read.
type status struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

// parseStatus returns the message and reason of a Status body, if it is one.
func parseStatus(body []byte) (message, reason string) {
	var st status
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
		return st.Message, st.Reason
	}
	return "", ""
}

// apiError builds the error for a non-2xx API answer.
func (c *Client) apiError(code int, body []byte, info requestInfo) *APIError {
	msg, reason := parseStatus(body)
	if msg == "" && code != http.StatusNotFound {
		msg = strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
	}
	return &APIError{
		StatusCode: code,
		Reason:     reason,
		Message:    msg,
		Verb:       info.verb,
		Resource:   info.resource,
		Namespace:  info.namespace,
		Name:       info.name,
		Context:    c.rc.Context,
		User:       c.rc.User,
	}
}

// parseAPIPath extracts namespace, resource (with subresource) and name from
// /api/v1/namespaces/NS/RES/NAME[/SUB] or /apis/G/V/namespaces/NS/RES/NAME[/SUB].
func parseAPIPath(path string) (namespace, resource, name string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == "namespaces" {
			namespace = parts[i+1]
			rest := parts[i+2:]
			if len(rest) > 0 {
				resource = rest[0]
			}
			if len(rest) > 1 {
				name = rest[1]
			}
			if len(rest) > 2 {
				resource += "/" + rest[2]
			}
			return
		}
	}
	return "", "", ""
}
