package kube

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
	"github.com/tunnels-dev/tunnels/internal/testpki"
)

// upgradeHandler answers 101 and, in the same write, the greeting; then it
// echoes what it reads until EOF.
func upgradeHandler(t *testing.T, greeting string, check func(r *http.Request) int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code := check(r); code != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"web-1\" is forbidden: User \"limited\" cannot create resource \"pods/portforward\"","reason":"Forbidden","code":403}`)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n"+greeting); err != nil {
			t.Errorf("write 101: %v", err)
			return
		}
		io.Copy(conn, brw)
	})
}

func TestUpgrade(t *testing.T) {
	leakcheck.Check(t)
	pki := testpki.New(t)
	gotReq := make(chan *http.Request, 1)
	srv := pki.StartServer(t, upgradeHandler(t, "HELLO", func(r *http.Request) int {
		gotReq <- r
		return 0
	}), "127.0.0.1", "localhost")
	c, err := NewClient(&RestConfig{Server: srv.URL + "/prefix/", CAData: pki.PEM, BearerToken: "secret-token", Impersonate: "alice", ImpersonateGroups: []string{"g1", "g2"}}, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	h := http.Header{}
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "SPDY/3.1")
	h.Set("X-Stream-Protocol-Version", "portforward.k8s.io")
	conn, err := c.Upgrade(ctx, http.MethodPost, "/api/v1/namespaces/dev/pods/web-1/portforward", h)
	if err != nil {
		t.Fatalf("Upgrade: %v", err)
	}
	defer conn.Close()
	cancel() // the connection must outlive the handshake's context

	r := <-gotReq
	if r.Method != http.MethodPost || r.URL.Path != "/prefix/api/v1/namespaces/dev/pods/web-1/portforward" {
		t.Errorf("request %s %s, want POST /prefix/api/v1/namespaces/dev/pods/web-1/portforward", r.Method, r.URL.Path)
	}
	if r.ProtoMajor != 1 || r.TLS == nil || r.TLS.NegotiatedProtocol != "http/1.1" {
		t.Errorf("request proto %s, ALPN %q, want HTTP/1.1 over TLS with http/1.1", r.Proto, r.TLS.NegotiatedProtocol)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer secret-token" {
		t.Errorf("Authorization %q, want the bearer token", got)
	}
	if got := r.Header.Get("Impersonate-User"); got != "alice" {
		t.Errorf("Impersonate-User %q, want alice", got)
	}
	if got := r.Header.Values("Impersonate-Group"); strings.Join(got, ",") != "g1,g2" {
		t.Errorf("Impersonate-Group %q, want g1,g2", got)
	}
	if got := conn.Header.Get("X-Stream-Protocol-Version"); got != "portforward.k8s.io" {
		t.Errorf("X-Stream-Protocol-Version %q, want portforward.k8s.io", got)
	}

	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	greeting := make([]byte, 5)
	if _, err := io.ReadFull(conn, greeting); err != nil || string(greeting) != "HELLO" {
		t.Fatalf("read greeting sent with the 101: %q, %v; want HELLO", greeting, err)
	}
	if _, err := io.WriteString(conn, "ping\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo %q, %v; want ping", line, err)
	}
	// A read deadline in the past unblocks a reader at once.
	if err := conn.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("read after a past deadline succeeded, want a timeout")
	}
}

func TestUpgradeRefused(t *testing.T) {
	leakcheck.Check(t)
	pki := testpki.New(t)
	srv := pki.StartServer(t, upgradeHandler(t, "", func(r *http.Request) int { return http.StatusForbidden }), "127.0.0.1", "localhost")
	c, err := NewClient(&RestConfig{Context: "kind-dev", User: "limited", Server: srv.URL, CAData: pki.PEM, BearerToken: "secret-token"}, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Upgrade(t.Context(), http.MethodPost, "/api/v1/namespaces/dev/pods/web-1/portforward", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}})
	var ue *UpgradeError
	if !errors.As(err, &ue) {
		t.Fatalf("Upgrade error %v, want *UpgradeError", err)
	}
	if !errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound) {
		t.Errorf("errors.Is(ErrForbidden) false for %v", err)
	}
	if ue.StatusCode != 403 || !strings.Contains(ue.Message, "cannot create resource") {
		t.Errorf("status %d message %q", ue.StatusCode, ue.Message)
	}
	msg := err.Error()
	for _, want := range []string{"403 Forbidden", `"limited"`, `"kind-dev"`, "pods/portforward", `"create"`, `"get"`, `namespace "dev"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "secret-token") {
		t.Errorf("error %q shows the token", msg)
	}
}

// TestUpgradeHangingServer: a server that accepts and never answers does
// not hang Upgrade past its timeout, nor past a cancelled context.
func TestUpgradeHangingServer(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	var held []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	defer func() { ln.Close(); <-done }()
	c, err := NewClient(&RestConfig{Server: "https://" + ln.Addr().String(), Insecure: true}, ClientOptions{Timeout: 300 * time.Millisecond, TLSHandshakeTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Upgrade(t.Context(), http.MethodPost, "/x", nil); err == nil {
		t.Fatal("Upgrade to a silent server succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Upgrade took %s with a 300ms timeout", d)
	}

	c2, err := NewClient(&RestConfig{Server: "https://" + ln.Addr().String(), Insecure: true}, ClientOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c2.Upgrade(ctx, http.MethodPost, "/x", nil)
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Upgrade after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Upgrade did not return after its context was cancelled")
	}
}
