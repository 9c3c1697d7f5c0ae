// Package testproxy runs loopback HTTP CONNECT and SOCKS5 proxies for tests.
package testproxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/tunnels-dev/tunnels/internal/testnet"
)

// Options configure a proxy. The zero value is an HTTP CONNECT proxy over
// plain TCP that asks for no credentials.
type Options struct {
	// SOCKS5 serves SOCKS5 CONNECT instead of HTTP CONNECT.
	SOCKS5 bool
	// TLS, if set, serves HTTP CONNECT over TLS with this configuration: an
	// "https" proxy. It cannot be combined with SOCKS5.
	TLS *tls.Config
	// User, if set, is the user name the proxy requires, with Password:
	// Basic Proxy-Authorization for HTTP CONNECT, username/password
	// authentication (RFC 1929) for SOCKS5. A client with other credentials
	// or none is refused.
	User     string
	Password string
}

// Proxy is a running proxy. It sends every target, whatever its host, to
// the target's port on 127.0.0.1, so a test can use names that only the
// proxy "resolves" to prove that traffic went through it.
type Proxy struct {
	opts    Options
	addr    string
	tunnels atomic.Int32
}

// Start starts a proxy on 127.0.0.1. When the test ends it stops listening,
// closes every connection and waits for its goroutines.
func Start(t testing.TB, opts Options) *Proxy {
	t.Helper()
	if opts.SOCKS5 && opts.TLS != nil {
		t.Fatal("testproxy: SOCKS5 over TLS is not supported")
	}
	p := &Proxy{opts: opts}
	p.addr = testnet.Serve(t, p.serve)
	return p
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// URL returns the proxy's URL: scheme http, https or socks5, with the
// credentials from Options if any.
func (p *Proxy) URL() string {
	u := &url.URL{Scheme: "http", Host: p.addr}
	switch {
	case p.opts.SOCKS5:
		u.Scheme = "socks5"
	case p.opts.TLS != nil:
		u.Scheme = "https"
	}
	if p.opts.User != "" {
		u.User = url.UserPassword(p.opts.User, p.opts.Password)
	}
	return u.String()
}

// Tunnels returns how many tunnels to a target the proxy has opened.
func (p *Proxy) Tunnels() int { return int(p.tunnels.Load()) }

// serve handles one client connection: the handshake, then a tunnel to the
// target that ends when both directions have.
func (p *Proxy) serve(tc *net.TCPConn) {
	c := net.Conn(tc)
	if p.opts.TLS != nil {
		c = tls.Server(tc, p.opts.TLS)
		defer c.Close()
	}
	br := bufio.NewReader(c)
	var target string
	if p.opts.SOCKS5 {
		target = p.socks5(br, c)
	} else {
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
	defer up.Close()
	p.tunnels.Add(1)
	// Closing up when the client's side ends also ends the copy below
	// when the test closes the client's connection.
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(up, br)
		up.Close()
	}()
	io.Copy(c, up)
	c.Close()
	<-done
}
