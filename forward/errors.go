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
// exists on the node, so the target should be resolved again. The kubelet
// and container runtimes only say so in text; these are the phrases they use.
func (e *RemoteError) PodGone() bool {
	m := strings.ToLower(e.Message)
	for _, phrase := range []string{"no such container", "failed to find sandbox", "pod not found", "could not find sandbox"} {
		if strings.Contains(m, phrase) {
			return true
		}
	}
	return false
}
