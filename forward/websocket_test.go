package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsServer serves one WebSocket handler on loopback for the test.
func wsServer(t *testing.T, handle func(*websocket.Conn)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{wsProtocol}})
		if err != nil {
			return
		}
		handle(c)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// rawServer answers every request with resp, as written, and keeps the
// connection open until the test ends; resp may refer to the request's
// key as {accept}, replaced by the right Sec-WebSocket-Accept.
func rawServer(t *testing.T, resp string) string {
	t.Helper()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString(strings.ReplaceAll(resp, "{accept}", wsAcceptKey(r.Header.Get("Sec-WebSocket-Key"))))
		brw.Flush()
		<-done
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.Listener.Addr().String()
}

func TestWebSocketHandshakeChecks(t *testing.T) {
	const ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	tests := []struct {
		name, resp, want string
	}{
		{"wrong accept key", ok + "Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: " + wsProtocol + "\r\n\r\n", "Sec-WebSocket-Accept"},
		{"no subprotocol", ok + "Sec-WebSocket-Accept: {accept}\r\n\r\n", "subprotocol"},
		{"other subprotocol", ok + "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n", "subprotocol"},
		{"not websocket", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: " + wsProtocol + "\r\n\r\n", "Upgrade header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := rawServer(t, tt.resp)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			start := time.Now()
			c, err := dialWebSocket(ctx, testUpgrader{addr: addr}, "/api/v1/namespaces/default/pods/web/portforward")
			if err == nil {
				c.Close()
				t.Fatal("dial: got a connection, want a handshake error")
			}
			if !errors.Is(err, ErrProtocol) || !UpgradeRefused(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("dial: got %v, want an ErrProtocol upgrade refusal about %s", err, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("dial took %s to fail, want no wait for a body", d)
			}
		})
	}
}

func TestWebSocketConnReads(t *testing.T) {
	tests := []struct {
		name    string
		serve   func(*websocket.Conn)
		want    string
		wantErr func(error) bool
	}{
		{
			name: "binary then normal close is EOF",
			serve: func(c *websocket.Conn) {
				c.Write(context.Background(), websocket.MessageBinary, []byte("hello"))
				c.Close(websocket.StatusNormalClosure, "")
			},
			want:    "hello",
			wantErr: func(err error) bool { return err == io.EOF },
		},
		{
			name: "a text message is an error",
			serve: func(c *websocket.Conn) {
				c.Write(context.Background(), websocket.MessageBinary, []byte("hello"))
				c.Write(context.Background(), websocket.MessageText, []byte("not spdy"))
				c.Close(websocket.StatusNormalClosure, "")
			},
			want: "hello",
			wantErr: func(err error) bool {
				return err != nil && err != io.EOF && strings.Contains(err.Error(), "MessageText")
			},
		},
		{
			name: "an abnormal close is not EOF",
			serve: func(c *websocket.Conn) {
				c.Write(context.Background(), websocket.MessageBinary, []byte("hello"))
				c.Close(websocket.StatusInternalError, "kubelet gone")
			},
			want:    "hello",
			wantErr: func(err error) bool { return err != nil && err != io.EOF },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := wsServer(t, tt.serve)
			c, err := dialWebSocket(t.Context(), testUpgrader{addr: addr}, "/portforward")
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			got, err := readAll(c)
			if string(got) != tt.want {
				t.Errorf("read: got %q, want %q", got, tt.want)
			}
			if !tt.wantErr(err) {
				t.Errorf("read ended with %v (%T)", err, err)
			}
		})
	}
}

// readAll reads c until an error, and returns what came and that error as
// it is (io.ReadAll would turn io.EOF into nil).
func readAll(c net.Conn) ([]byte, error) {
	var out []byte
	buf := make([]byte, 1024)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

// tcpUpgrader is testUpgrader with the TCP connection reachable through
// NetConn, as kube's upgraded connections have it.
type tcpUpgrader struct{ testUpgrader }

func (u tcpUpgrader) Upgrade(ctx context.Context, method, path string, h http.Header) (net.Conn, http.Header, error) {
	c, rh, err := u.testUpgrader.Upgrade(ctx, method, path, h)
	if err != nil {
		return nil, nil, err
	}
	bc := c.(*bufferedConn)
	return netConnOf{Conn: bc, under: bc.Conn}, rh, nil
}

type netConnOf struct {
	net.Conn
	under net.Conn
}

func (c netConnOf) NetConn() net.Conn { return c.under }

func TestWebSocketConnWritesBinaryAndReachesTCP(t *testing.T) {
	got := make(chan string, 1)
	addr := wsServer(t, func(c *websocket.Conn) {
		typ, b, err := c.Read(context.Background())
		if err != nil || typ != websocket.MessageBinary {
			got <- "error"
			return
		}
		got <- string(b)
		c.Close(websocket.StatusNormalClosure, "")
	})
	c, err := dialWebSocket(t.Context(), tcpUpgrader{testUpgrader{addr: addr}}, "/portforward")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if rawTCP(c) == nil {
		t.Error("rawTCP: the TCP socket under the websocket cannot be reached")
	}
	if _, err := c.Write([]byte("frame")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if g := <-got; g != "frame" {
		t.Errorf("server read %q, want one binary message %q", g, "frame")
	}
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if d := time.Since(start); d > wsCloseTimeout+time.Second {
		t.Errorf("close took %s", d)
	}
}

// TestWebSocketCloseIsBounded: a peer that accepted the upgrade and then
// never reads or answers cannot hold Close past wsCloseTimeout.
func TestWebSocketCloseIsBounded(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			wsAcceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\nSec-WebSocket-Protocol: " + wsProtocol + "\r\n\r\n")
		brw.Flush()
		<-stop
	}))
	defer srv.Close()
	defer close(stop)
	c, err := dialWebSocket(t.Context(), testUpgrader{addr: srv.Listener.Addr().String()}, "/portforward")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > wsCloseTimeout+time.Second {
		t.Fatalf("close with a silent peer took %s, want at most about %s", d, wsCloseTimeout)
	}
	// A sooner deadline already set (Conn's teardown sets CloseTimeout)
	// bounds Close instead.
	c, err = dialWebSocket(t.Context(), testUpgrader{addr: srv.Listener.Addr().String()}, "/portforward")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	start = time.Now()
	c.SetDeadline(start.Add(200 * time.Millisecond))
	c.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("close after a 200ms deadline took %s", d)
	}
}

// recordConn records each Write it gets.
type recordConn struct {
	net.Conn
	writes [][]byte
}

func (c *recordConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

// wsFrame builds a masked client frame header for an n-byte payload, and
// the payload.
func wsFrame(n int, fill byte) []byte {
	var h []byte
	switch {
	case n < 126:
		h = []byte{0x82, 0x80 | byte(n)}
	case n < 1<<16:
		h = []byte{0x82, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		h = []byte{0x82, 0x80 | 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	h = append(h, 1, 2, 3, 4) // mask key
	return append(h, bytes.Repeat([]byte{fill}, n)...)
}

func TestFrameCoalescer(t *testing.T) {
	small, medium, big, huge := wsFrame(5, 'a'), wsFrame(300, 'b'), wsFrame(40000, 'c'), wsFrame(maxCoalesced+10, 'd')
	stream := slices.Concat(small, medium, big, huge, small)
	for _, chunk := range []int{1, 3, 4096, 7000, len(stream)} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			rc := &recordConn{}
			fc := &frameCoalescer{Conn: rc}
			for p := stream; len(p) > 0; {
				k := min(chunk, len(p))
				if n, err := fc.Write(p[:k]); n != k || err != nil {
					t.Fatalf("Write(%d bytes) = %d, %v", k, n, err)
				}
				p = p[k:]
			}
			if got := bytes.Join(rc.writes, nil); !bytes.Equal(got, stream) {
				t.Fatalf("wrote %d bytes, want the %d given, in order", len(got), len(stream))
			}
			// The frames up to the huge one each went out in one Write.
			for i, want := range [][]byte{small, medium, big} {
				if i >= len(rc.writes) || !bytes.Equal(rc.writes[i], want) {
					t.Fatalf("write %d is not frame %d whole", i, i)
				}
			}
		})
	}
}
