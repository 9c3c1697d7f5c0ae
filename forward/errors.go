package forward

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinels callers branch on with errors.Is.
var (
	// ErrLostConnection means the SPDY connection to the pod ended without
	// Close: the server or a proxy closed it, a read or write failed, or a
	// keepalive ping went unanswered.
	ErrLostConnection = errors.New("lost connection to pod")
	// ErrClosed means the connection or session was closed by its owner.
	ErrClosed = errors.New("port-forward closed")
	// ErrProtocol means the server did not speak the port-forward protocol:
	// it did not agree to portforward.k8s.io or refused a stream.
	ErrProtocol = errors.New("port-forward protocol error")
	// ErrStreamTimeout means the server did not answer a new stream within
	// Options.StreamCreationTimeout.
	ErrStreamTimeout = errors.New("timed out waiting for the server to accept a stream")
	// ErrNotReady means a local connection waited SessionOptions.ConnectWait
	// for a connection to the pod and none came.
	ErrNotReady = errors.New("no connection to the pod")
)

// RemoteError is a failure the server reported on a connection's error
// stream, such as "connection refused" when nothing listens on the port
// inside the pod. It fails that one local connection only.
type RemoteError struct {
	Port    int    // the remote port the connection was for
	Message string // the text the server wrote on the error stream
}

// Error returns `remote port PORT: MESSAGE`.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("remote port %d: %s", e.Port, e.Message)
}

// Refused reports whether nothing accepted the connection inside the pod:
// the next connection may well succeed once the application listens.
func (e *RemoteError) Refused() bool {
	return strings.Contains(e.Message, "connection refused")
}

// PodGone reports whether the message says the pod or its sandbox no longer
// exists on the node (or is being torn down), so the target should be
// resolved again. The kubelet and the container runtimes say so only in
// text; these are the phrases containerd and CRI-O use (docs/protocol.md §6).
// Text is a weak signal: a session also asks the API whether its pod is
// still the same Ready pod after any failure that is not a refusal.
func (e *RemoteError) PodGone() bool {
	m := strings.ToLower(e.Message)
	for _, phrases := range podGonePhrases {
		if containsAll(m, phrases...) {
			return true
		}
	}
	return false
}

// podGonePhrases lists, lowercased, the parts of each runtime message that
// means the pod's sandbox is gone.
var podGonePhrases = [][]string{
	{"failed to find sandbox"},                        // containerd, after removal
	{"network namespace for sandbox", "closed"},       // containerd, while terminating
	{"podsandbox with id starting with", "not found"}, // CRI-O, after removal
	{"could not find sandbox"},                        // CRI-O
	{"sandbox", "is not running"},                     // CRI-O
	{"network namespace path of sandbox", "is empty"}, // CRI-O
	{"no such container"},                             // dockershim, cri-dockerd
	{"pod not found"},
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
