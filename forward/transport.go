package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
)

// Transport is how a connection reaches the pod's port-forward endpoint.
type Transport string

// The transports. Both carry the same SPDY/3.1 frames and the same stream
// logic (docs/protocol.md §1); they differ only in the HTTP upgrade.
const (
	// TransportSPDY is a POST upgraded to SPDY/3.1, what every API server
	// and kubelet speaks.
	TransportSPDY Transport = "spdy"
	// TransportWebSocket is a GET upgraded to WebSocket with subprotocol
	// SPDY/3.1+portforward.k8s.io: the SPDY frames travel in binary
	// WebSocket messages, which the API server (1.31 and later) unwraps.
	// Proxies and load balancers that refuse SPDY upgrades usually pass it.
	TransportWebSocket Transport = "websocket"
	// TransportAuto tries WebSocket and falls back to SPDY when the
	// WebSocket upgrade itself is refused (see UpgradeRefused), as kubectl
	// does since 1.31. Any other error (a 403 from the API server, a
	// timeout) is returned as it is.
	TransportAuto Transport = "auto"
)

// ParseTransport parses "auto", "websocket" or "spdy".
func ParseTransport(s string) (Transport, error) {
	switch t := Transport(s); t {
	case TransportAuto, TransportWebSocket, TransportSPDY:
		return t, nil
	}
	return "", fmt.Errorf("unknown transport %q, want auto, websocket or spdy", s)
}

// UpgradeRefused reports whether err means that the upgrade asked for was
// refused as such, by the server or by a proxy on the way, rather than the
// request itself (credentials, permissions, a missing pod): a non-101
// answer that is not the API server's own Status, a proxy that would not
// tunnel, or a 101 that did not agree to the protocol. Errors of an
// Upgrader say so by having a method UpgradeRefused() bool (package kube's
// UpgradeError and ProxyError do).
func UpgradeRefused(err error) bool {
	var r interface{ UpgradeRefused() bool }
	return errors.As(err, &r) && r.UpgradeRefused()
}

// refusedError marks an error as an upgrade refusal (UpgradeRefused).
type refusedError struct{ err error }

func (e *refusedError) Error() string        { return e.err.Error() }
func (e *refusedError) Unwrap() error        { return e.err }
func (e *refusedError) UpgradeRefused() bool { return true }

// portForwardPath is the port-forward subresource of a pod.
func portForwardPath(namespace, pod string) string {
	return "/api/v1/namespaces/" + url.PathEscape(namespace) + "/pods/" + url.PathEscape(pod) + "/portforward"
}

// upgrade opens the upgraded connection for opts.Transport: the raw
// connection SPDY runs over, and the transport that answered.
func upgrade(ctx context.Context, up Upgrader, namespace, pod string, opts Options) (net.Conn, Transport, error) {
	path := portForwardPath(namespace, pod)
	switch opts.Transport {
	case TransportWebSocket:
		c, err := dialWebSocket(ctx, up, path)
		return c, TransportWebSocket, err
	case TransportAuto:
		c, err := dialWebSocket(ctx, up, path)
		if err == nil {
			return c, TransportWebSocket, nil
		}
		if !UpgradeRefused(err) || ctx.Err() != nil {
			return nil, TransportWebSocket, err
		}
		opts.Logger.Debug("websocket upgrade refused; falling back to spdy", "tunnel", opts.Tunnel, "pod", namespace+"/"+pod, "err", err)
		c, serr := dialSPDY(ctx, up, path)
		if serr != nil {
			return nil, TransportSPDY, fmt.Errorf("%w (after the websocket upgrade was refused: %v)", serr, err)
		}
		return c, TransportSPDY, nil
	default:
		c, err := dialSPDY(ctx, up, path)
		return c, TransportSPDY, err
	}
}

// dialSPDY is the SPDY/3.1 upgrade (docs/protocol.md §3).
func dialSPDY(ctx context.Context, up Upgrader, path string) (net.Conn, error) {
	h := http.Header{}
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "SPDY/3.1")
	h.Set(protocolHeader, protocolName)
	raw, resp, err := up.Upgrade(ctx, http.MethodPost, path, h)
	if err != nil {
		return nil, err
	}
	if got := resp.Get(protocolHeader); got != protocolName {
		raw.Close()
		return nil, &refusedError{fmt.Errorf("%w: server chose stream protocol %q, want %q", ErrProtocol, got, protocolName)}
	}
	return raw, nil
}
