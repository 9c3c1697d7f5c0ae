package kube

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

// testProxy is a loopback HTTP CONNECT or SOCKS5 proxy that sends every
// host name to 127.0.0.1 and counts the tunnels it opened.
type testProxy struct {
	ln      net.Listener
	tunnels atomic.Int32
	user    string // required credentials, if set
	pass    string
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]bool
}

func startProxy(t *testing.T, kind string, tlsConf *tls.Config, user, pass string) (*testProxy, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := kind
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
		scheme = "https"
	}
	p := &testProxy{ln: ln, user: user, pass: pass, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept(t, kind)
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	u := &url.URL{Scheme: scheme, Host: ln.Addr().String()}
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return p, u.String()
}

func (p *testProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *testProxy) accept(t *testing.T, kind string) {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(c)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			var target string
			var br *bufio.Reader
			if kind == "socks5" {
				br = bufio.NewReader(c)
				target = p.socks5(br, c)
			} else {
				br = bufio.NewReader(c)
				target = p.connect(br, c)
			}
			if target == "" {
				return
			}
			_, port, _ := net.SplitHostPort(target)
			up, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
			if err != nil {
				return
			}
			p.track(up)
			defer up.Close()
			p.tunnels.Add(1)
			done := make(chan struct{})
			go func() {
				defer close(done)
				io.Copy(up, br)
				up.Close()
			}()
			io.Copy(c, up)
			c.Close()
			<-done
		}()
	}
}

func (p *testProxy) connect(br *bufio.Reader, c net.Conn) string {
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return ""
	}
	if p.user != "" {
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(p.user+":"+p.pass))
		if req.Header.Get("Proxy-Authorization") != want {
			io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
			return ""
		}
	}
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	return req.Host
}

func (p *testProxy) socks5(br *bufio.Reader, c net.Conn) string {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != 5 {
		return ""
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return ""
	}
	want := byte(0)
	if p.user != "" {
		want = 2
	}
	if !strings.Contains(string(methods), string([]byte{want})) {
		c.Write([]byte{5, 0xff})
		return ""
	}
	c.Write([]byte{5, want})
	if want == 2 {
		var v [2]byte
		io.ReadFull(br, v[:])
		u := make([]byte, v[1])
		io.ReadFull(br, u)
		var pl [1]byte
		io.ReadFull(br, pl[:])
		pw := make([]byte, pl[0])
		io.ReadFull(br, pw)
		if string(u) != p.user || string(pw) != p.pass {
			c.Write([]byte{1, 1})
			return ""
		}
		c.Write([]byte{1, 0})
	}
	var req [4]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[1] != 1 {
		return ""
	}
	var host string
	switch req[3] {
	case 1:
		b := make([]byte, 4)
		io.ReadFull(br, b)
		host = net.IP(b).String()
	case 4:
		b := make([]byte, 16)
		io.ReadFull(br, b)
		host = net.IP(b).String()
	case 3:
		var l [1]byte
		io.ReadFull(br, l[:])
		b := make([]byte, l[0])
		io.ReadFull(br, b)
		host = string(b)
	}
	var port [2]byte
	io.ReadFull(br, port[:])
	c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:]))))
}

func TestProxies(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeAPIHosts(t, "kube.test")
	f.addPod(mkPod("dev", "web-1", nil))
	proxyCert, proxyKey := f.pki.issue(t, "proxy", true, "127.0.0.1")
	pc, err := tls.X509KeyPair(proxyCert, proxyKey)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(f.srv.Listener.Addr().String())
	// A name only the proxies can resolve: proves the traffic went through
	// them.
	server := "https://kube.test:" + port

	tests := []struct {
		kind, user, pass string
		tls              bool
	}{
		{kind: "http"},
		{kind: "http", user: "u", pass: "p@ss"},
		{kind: "http", tls: true},
		{kind: "socks5"},
		{kind: "socks5", user: "u", pass: "p"},
	}
	for _, tt := range tests {
		name := tt.kind
		if tt.tls {
			name = "https"
		}
		if tt.user != "" {
			name += "-auth"
		}
		t.Run(name, func(t *testing.T) {
			var tc *tls.Config
			if tt.tls {
				tc = &tls.Config{Certificates: []tls.Certificate{pc}}
			}
			p, proxyURL := startProxy(t, tt.kind, tc, tt.user, tt.pass)
			rc := f.config()
			rc.Server = server
			rc.ProxyURL = proxyURL
			c := f.client(t, rc)
			if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
				t.Fatalf("GetPod through %s proxy: %v", name, err)
			}
			conn, err := c.Upgrade(t.Context(), http.MethodPost, "/api/v1/namespaces/dev/pods/web-1/portforward", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}})
			if err != nil {
				t.Fatalf("Upgrade through %s proxy: %v", name, err)
			}
			b := make([]byte, 5)
			if _, err := io.ReadFull(conn, b); err != nil || string(b) != "HELLO" {
				t.Errorf("greeting through proxy %q, %v", b, err)
			}
			conn.Close()
			c.Close()
			if n := p.tunnels.Load(); n < 2 {
				t.Errorf("proxy opened %d tunnels, want 2 (API call and upgrade)", n)
			}
		})
	}

	t.Run("wrong proxy credentials", func(t *testing.T) {
		_, proxyURL := startProxy(t, "http", nil, "u", "right")
		rc := f.config()
		rc.Server = server
		rc.ProxyURL = strings.Replace(proxyURL, "right", "wrong", 1)
		c := f.client(t, rc)
		_, err := c.Upgrade(t.Context(), http.MethodPost, "/api/v1/namespaces/dev/pods/web-1/portforward", nil)
		var pe *ProxyError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "407") {
			t.Errorf("Upgrade error %v, want a *ProxyError with 407", err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("error %q shows the proxy password", err)
		}
	})

	t.Run("environment", func(t *testing.T) {
		p, proxyURL := startProxy(t, "http", nil, "", "")
		env := map[string]string{"HTTPS_PROXY": proxyURL}
		rc := f.config()
		rc.Server = server
		c, err := NewClient(rc, ClientOptions{Getenv: func(k string) string { return env[k] }})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
			t.Fatalf("GetPod through HTTPS_PROXY: %v", err)
		}
		conn, err := c.Upgrade(t.Context(), http.MethodPost, "/api/v1/namespaces/dev/pods/web-1/portforward", nil)
		if err != nil {
			t.Fatalf("Upgrade through HTTPS_PROXY: %v", err)
		}
		conn.Close()
		if n := p.tunnels.Load(); n != 2 {
			t.Errorf("proxy opened %d tunnels, want 2", n)
		}
	})
}

func TestNoProxy(t *testing.T) {
	tests := []struct {
		noProxy, host, port string
		want                bool
	}{
		{"*", "a.b", "443", true},
		{"kube.test", "kube.test", "443", true},
		{"kube.test", "api.kube.test", "443", true},
		{".kube.test", "api.kube.test", "443", true},
		{"kube.test", "notkube.test", "443", false},
		{"10.0.0.0/8", "10.1.2.3", "443", true},
		{"10.0.0.0/8", "11.1.2.3", "443", false},
		{"10.1.2.3", "10.1.2.3", "443", true},
		{"kube.test:6443", "kube.test", "443", false},
		{"kube.test:6443", "kube.test", "6443", true},
		{"", "kube.test", "443", false},
	}
	for _, tt := range tests {
		if got := noProxyMatches(tt.noProxy, tt.host, tt.port); got != tt.want {
			t.Errorf("noProxyMatches(%q, %q, %q) = %t, want %t", tt.noProxy, tt.host, tt.port, got, tt.want)
		}
	}
	env := map[string]string{"HTTPS_PROXY": "proxy:3128", "NO_PROXY": "internal"}
	get := func(k string) string { return env[k] }
	for _, tt := range []struct {
		server string
		want   string
	}{
		{"https://kube.example:6443", "http://proxy:3128"},
		{"https://127.0.0.1:6443", ""},
		{"https://localhost:6443", ""},
		{"https://api.internal:6443", ""},
		{"http://kube.example:8080", ""},
	} {
		u, _ := url.Parse(tt.server)
		got, err := envProxy(get, u)
		gs := ""
		if got != nil {
			gs = got.String()
		}
		if err != nil || gs != tt.want {
			t.Errorf("envProxy(%s) = %q, %v; want %q", tt.server, gs, err, tt.want)
		}
	}
}
