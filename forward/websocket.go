package forward

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
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
		Body:       &frameCoalescer{Conn: conn},
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

// frameCoalescer sits between the WebSocket library and the upgraded
// connection and writes each WebSocket frame with one Write. The library
// writes a client frame through a 4 KiB bufio.Writer (it must mask the
// payload into a buffer), so a 32 KiB SPDY frame would reach TLS as nine
// writes: nine TLS records and nine syscalls. Collecting the frame by the
// length its header declares, as frameWriter does for SPDY, measured
// upload through the API server from 163 to about 240 MB/s (make bench,
// then BenchmarkTransportUpload; tests/e2e BenchmarkBinaries now). The
// library writes frames one at a time, under its own lock; mu makes the
// coalescer safe on its own anyway.
type frameCoalescer struct {
	net.Conn
	mu   sync.Mutex
	buf  []byte // the start of a frame not yet complete
	pass int    // bytes of a frame too large to collect still to pass through
}

// maxCoalesced is the largest frame collected whole; the bytes of a larger
// one are written as they come. SPDY frames from this package are far
// smaller.
const maxCoalesced = 1 << 20

// Write collects p and writes every frame it completes.
func (c *frameCoalescer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := len(p)
	if c.pass > 0 {
		k := min(c.pass, len(p))
		if _, err := c.Conn.Write(p[:k]); err != nil {
			return 0, err
		}
		c.pass -= k
		p = p[k:]
	}
	if len(p) == 0 {
		return total, nil
	}
	if len(c.buf) == 0 && wsFrameLen(p) == len(p) {
		// One whole frame, the common case for small frames.
		if _, err := c.Conn.Write(p); err != nil {
			return 0, err
		}
		return total, nil
	}
	if c.buf == nil {
		c.buf = (*coalescePool.Get().(*[]byte))[:0]
	}
	c.buf = append(c.buf, p...)
	defer c.release()
	for len(c.buf) > 0 {
		n := wsFrameLen(c.buf)
		switch {
		case n < 0 || (n > len(c.buf) && n <= maxCoalesced):
			return total, nil // wait for the rest of the frame
		case n > len(c.buf):
			// Too large to hold: pass it through as it comes.
			if _, err := c.Conn.Write(c.buf); err != nil {
				return 0, err
			}
			c.pass = n - len(c.buf)
			c.buf = c.buf[:0]
			return total, nil
		}
		if _, err := c.Conn.Write(c.buf[:n]); err != nil {
			return 0, err
		}
		c.buf = c.buf[:copy(c.buf, c.buf[n:])]
	}
	return total, nil
}

// coalescePool holds the buffers of frames being collected, so that an
// idle or downloading connection holds none.
var coalescePool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// release returns the buffer to the pool once no frame is being collected.
func (c *frameCoalescer) release() {
	if c.buf != nil && len(c.buf) == 0 {
		if cap(c.buf) <= maxCoalesced {
			b := c.buf
			coalescePool.Put(&b)
		}
		c.buf = nil
	}
}

// wsFrameLen returns the length of the WebSocket frame starting b (RFC
// 6455 §5.2: 2 header bytes, an extended length of 0, 2 or 8 bytes, a
// 4-byte mask key if masked, the payload), or -1 while b is too short to
// tell.
func wsFrameLen(b []byte) int {
	if len(b) < 2 {
		return -1
	}
	hdr, n := 2, uint64(b[1]&0x7f)
	switch n {
	case 126:
		hdr += 2
		if len(b) < hdr {
			return -1
		}
		n = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		hdr += 8
		if len(b) < hdr {
			return -1
		}
		n = binary.BigEndian.Uint64(b[2:10])
	}
	if b[1]&0x80 != 0 {
		hdr += 4
	}
	return hdr + int(min(n, 1<<40))
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
	// writeBy is the write deadline last set (UnixNano), 0 for none:
	// Close keeps it when it is sooner than its own bound.
	writeBy atomic.Int64
}

// NetConn returns the upgraded connection the WebSocket runs on.
func (c *wsConn) NetConn() net.Conn { return c.under }

// LocalAddr returns the local address of the upgraded connection.
func (c *wsConn) LocalAddr() net.Addr { return c.under.LocalAddr() }

// RemoteAddr returns the remote address of the upgraded connection.
func (c *wsConn) RemoteAddr() net.Addr { return c.under.RemoteAddr() }

// SetDeadline sets the deadline of the upgraded connection.
func (c *wsConn) SetDeadline(t time.Time) error {
	c.noteWriteDeadline(t)
	return c.under.SetDeadline(t)
}

// SetReadDeadline sets the read deadline of the upgraded connection.
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.under.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of the upgraded connection.
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.noteWriteDeadline(t)
	return c.under.SetWriteDeadline(t)
}

func (c *wsConn) noteWriteDeadline(t time.Time) {
	if t.IsZero() {
		c.writeBy.Store(0)
	} else {
		c.writeBy.Store(t.UnixNano())
	}
}

// Close sends a normal close and waits for the peer's, within
// wsCloseTimeout or a sooner deadline already set (a deadline on the
// connection underneath, since the library would wait 5 s for each), then
// closes the connection.
func (c *wsConn) Close() error {
	by := time.Now().Add(wsCloseTimeout)
	if set := c.writeBy.Load(); set != 0 && set < by.UnixNano() {
		by = time.Unix(0, set)
	}
	_ = c.under.SetDeadline(by)
	err := c.Conn.Close()
	if cerr := c.under.Close(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close websocket: %w", err)
	}
	return nil
}
