package testproxy

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
	"github.com/tunnels-dev/tunnels/internal/testpki"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// target is an HTTPS server on loopback (so that HTTP proxies are asked to
// CONNECT), reached as "proxied.test:PORT": a name only the proxy resolves.
func target(t *testing.T, ca *testpki.CA) string {
	t.Helper()
	srv := ca.StartServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }), "proxied.test")
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return "https://proxied.test:" + port
}

// get fetches rawURL through the proxy at proxyURL.
func get(t *testing.T, proxyURL, rawURL string, roots *tls.Config) (string, error) {
	t.Helper()
	pu, err := url.Parse(proxyURL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: roots, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(rawURL)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestProxies(t *testing.T) {
	leakcheck.Check(t)
	ca := testpki.New(t)
	proxyTLS := &tls.Config{Certificates: []tls.Certificate{ca.ServerTLS(t, "127.0.0.1")}}
	tests := []struct {
		name       string
		opts       Options
		scheme     string
		user, pass string // the client's, if not the proxy's
		wantOK     bool
	}{
		{name: "http", scheme: "http", wantOK: true},
		{name: "http auth", opts: Options{User: "u", Password: "p@ss"}, scheme: "http", wantOK: true},
		{name: "http wrong password", opts: Options{User: "u", Password: "right"}, scheme: "http", user: "u", pass: "wrong"},
		{name: "https", opts: Options{TLS: proxyTLS}, scheme: "https", wantOK: true},
		{name: "socks5", opts: Options{SOCKS5: true}, scheme: "socks5", wantOK: true},
		{name: "socks5 auth", opts: Options{SOCKS5: true, User: "u", Password: "p"}, scheme: "socks5", wantOK: true},
		{name: "socks5 wrong password", opts: Options{SOCKS5: true, User: "u", Password: "right"}, scheme: "socks5", user: "u", pass: "wrong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Start(t, tt.opts)
			u, err := url.Parse(p.URL())
			if err != nil {
				t.Fatal(err)
			}
			if u.Scheme != tt.scheme || u.Host != p.Addr() {
				t.Errorf("URL = %s, want scheme %s and host %s", u, tt.scheme, p.Addr())
			}
			if tt.user != "" {
				u.User = url.UserPassword(tt.user, tt.pass)
			}
			body, err := get(t, u.String(), target(t, ca), &tls.Config{RootCAs: ca.Pool()})
			if tt.wantOK && (err != nil || body != "hello") {
				t.Fatalf("GET through the proxy = %q, %v; want hello", body, err)
			}
			if !tt.wantOK && err == nil {
				t.Fatal("GET with the wrong credentials succeeded")
			}
			want := 0
			if tt.wantOK {
				want = 1
			}
			if got := p.Tunnels(); got != want {
				t.Errorf("Tunnels = %d, want %d", got, want)
			}
		})
	}
}

func TestSOCKS5RefusesMissingMethod(t *testing.T) {
	leakcheck.Check(t)
	p := Start(t, Options{SOCKS5: true, User: "u", Password: "p"})
	c, err := net.Dial("tcp4", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte{5, 1, socksNoAuth}) // offers no authentication only
	var reply [2]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil || reply != [2]byte{5, socksNoAcceptable} {
		t.Errorf("reply = %v, %v; want no acceptable method", reply, err)
	}
}

func TestSOCKS5IPv4Target(t *testing.T) {
	leakcheck.Check(t)
	p := Start(t, Options{SOCKS5: true})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	c, err := net.Dial("tcp4", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := []byte{5, 1, socksNoAuth, 5, 1, 0, 1, 127, 0, 0, 1, 0, 0}
	binary.BigEndian.PutUint16(req[len(req)-2:], uint16(port))
	c.Write(req)
	br := bufio.NewReader(c)
	var reply [12]byte
	if _, err := io.ReadFull(br, reply[:]); err != nil || reply[0] != 5 || reply[1] != socksNoAuth || reply[3] != 0 {
		t.Fatalf("handshake reply = %v, %v", reply, err)
	}
	io.WriteString(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" {
		t.Errorf("body = %q, want hello", b)
	}
}
