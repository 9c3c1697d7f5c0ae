package forward

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// wsProtocol is the WebSocket subprotocol of the tunnelled port-forward:
// SPDY/3.1 frames in binary messages (docs/protocol.md §1). The API server
// recognises it by its prefix SPDY/3.1+ and suffix .k8s.io.
const wsProtocol = "SPDY/3.1+" + protocolName

// wsCloseTimeout bounds the WebSocket close handshake: the close frame out
// and the peer's close frame back.
const wsCloseTimeout = 2 * time.Second

// wsAcceptGUID is RFC 6455's key suffix for Sec-WebSocket-Accept.
const wsAcceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// dialWebSocket upgrades path to a WebSocket with subprotocol wsProtocol
// through up, and returns it as a net.Conn that SPDY runs over unchanged.
//
// The WebSocket framing is github.com/coder/websocket's; the HTTP upgrade
// is up's, so that credentials, exec plugins, proxies and the error
// messages of a refused upgrade are the same as for SPDY. The library asks
// for the upgrade through an http.Client whose transport is up.
func dialWebSocket(ctx context.Context, up Upgrader, path string) (net.Conn, error) {
	rt := &upgradeTransport{up: up}
	ws, _, err := websocket.Dial(ctx, "http://apiserver"+path, &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: rt},
		Subprotocols:    []string{wsProtocol},
		CompressionMode: websocket.CompressionDisabled,
	})
	if rt.err != nil {
		// The Upgrader's error as it is, not as net/http and the library
		// re-worded it.
		return nil, rt.err
	}
	if err != nil {
		return nil, &refusedError{fmt.Errorf("%w: websocket handshake: %w", ErrProtocol, err)}
	}
	return &wsConn{Conn: websocket.NetConn(context.Background(), ws, websocket.MessageBinary), under: rt.conn}, nil
}

// upgradeTransport is an http.RoundTripper that performs the WebSocket
// handshake request with an Upgrader and checks the 101 it gets: the
// library checks it too, but a bad answer found there costs a 3 s wait for
// a body the server never sends.
type upgradeTransport struct {
	up   Upgrader
	conn net.Conn // the upgraded connection, after a good 101
	err  error    // the Upgrader's or the check's error
}

// RoundTrip sends req's headers as a GET upgrade of req's path.
func (t *upgradeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	path := req.URL.EscapedPath()
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	conn, h, err := t.up.Upgrade(req.Context(), http.MethodGet, path, req.Header)
	if err != nil {
		t.err = err
		return nil, err
	}
	if err := checkWebSocketAccept(req.Header, h); err != nil {
		conn.Close()
		t.err = &refusedError{fmt.Errorf("%w: %w", ErrProtocol, err)}
		return nil, t.err
	}
	t.conn = conn
	return &http.Response{
		Status:     "101 Switching Protocols",
		StatusCode: http.StatusSwitchingProtocols,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       conn,
		Request:    req,
	}, nil
}

// checkWebSocketAccept checks a 101's headers against the request's (RFC
// 6455 §4.1): the upgrade to websocket, the accept key derived from our
// key, and the subprotocol we asked for, not merely any (the library lets
// a server choose none).
func checkWebSocketAccept(req, resp http.Header) error {
	if !headerHasToken(resp, "Upgrade", "websocket") {
		return fmt.Errorf("websocket handshake: Upgrade header %q, want websocket", resp.Get("Upgrade"))
	}
	if !headerHasToken(resp, "Connection", "upgrade") {
		return fmt.Errorf("websocket handshake: Connection header %q, want Upgrade", resp.Get("Connection"))
	}
	if got, want := resp.Get("Sec-WebSocket-Accept"), wsAcceptKey(req.Get("Sec-WebSocket-Key")); got != want {
		return fmt.Errorf("websocket handshake: Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if got := resp.Get("Sec-WebSocket-Protocol"); got != wsProtocol {
		return fmt.Errorf("websocket handshake: server chose subprotocol %q, want %q", got, wsProtocol)
	}
	return nil
}

// wsAcceptKey is the Sec-WebSocket-Accept value for key.
func wsAcceptKey(key string) string {
	sum := sha1.Sum([]byte(key + wsAcceptGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// headerHasToken reports whether a comma-separated header has token.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// wsConn is the WebSocket as the SPDY layer sees it: the library's
// net.Conn (each Write one binary message; a non-binary message is a read
// error; a normal close reads as io.EOF), with deadlines, addresses and
// NetConn taken from the upgraded connection underneath. The library's own
// deadlines close the WebSocket from a timer; ours act on the TCP (or TLS)
// connection, which is what the teardown's bound on a hanging write needs,
// and NetConn lets the keepalive and the socket checks reach the TCP
// socket as they do for SPDY.
type wsConn struct {
	net.Conn
	under net.Conn
}

// NetConn returns the upgraded connection the WebSocket runs on.
func (c *wsConn) NetConn() net.Conn { return c.under }

// LocalAddr returns the local address of the upgraded connection.
func (c *wsConn) LocalAddr() net.Addr { return c.under.LocalAddr() }

// RemoteAddr returns the remote address of the upgraded connection.
func (c *wsConn) RemoteAddr() net.Addr { return c.under.RemoteAddr() }

// SetDeadline sets the deadline of the upgraded connection.
func (c *wsConn) SetDeadline(t time.Time) error { return c.under.SetDeadline(t) }

// SetReadDeadline sets the read deadline of the upgraded connection.
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.under.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of the upgraded connection.
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.under.SetWriteDeadline(t) }

// Close sends a normal close and waits for the peer's, within
// wsCloseTimeout (a deadline on the connection underneath, since the
// library would wait 5 s for each), then closes the connection.
func (c *wsConn) Close() error {
	_ = c.under.SetDeadline(time.Now().Add(wsCloseTimeout))
	err := c.Conn.Close()
	if cerr := c.under.Close(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close websocket: %w", err)
	}
	return nil
}
