package kube

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
	"github.com/tunnels-dev/tunnels/internal/testproxy"
)

func TestProxies(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeAPIHosts(t, "kube.test")
	f.addPod(mkPod("dev", "web-1", nil))
	pc := f.pki.ServerTLS(t, "127.0.0.1")
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
			p := testproxy.Start(t, testproxy.Options{SOCKS5: tt.kind == "socks5", TLS: tc, User: tt.user, Password: tt.pass})
			proxyURL := p.URL()
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
			if n := p.Tunnels(); n < 2 {
				t.Errorf("proxy opened %d tunnels, want 2 (API call and upgrade)", n)
			}
		})
	}

	t.Run("wrong proxy credentials", func(t *testing.T) {
		proxyURL := testproxy.Start(t, testproxy.Options{User: "u", Password: "right"}).URL()
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
		p := testproxy.Start(t, testproxy.Options{})
		env := map[string]string{"HTTPS_PROXY": p.URL()}
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
		if n := p.Tunnels(); n != 2 {
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
