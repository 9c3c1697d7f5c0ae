package kube

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// redactURL returns u with any password replaced, for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// parseProxyURL checks a kubeconfig proxy-url the way clientcmd does: only
// http, https, socks5 and socks5h are accepted.
func parseProxyURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse proxy url %q: %w", redactURL(raw), err)
	}
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
	default:
		return nil, fmt.Errorf("proxy url %q: unsupported scheme %q, want http, https or socks5", u.Redacted(), u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("proxy url %q: no host", u.Redacted())
	}
	return u, nil
}

// envProxy chooses a proxy from HTTPS_PROXY, HTTP_PROXY and NO_PROXY (either
// case) as net/http's ProxyFromEnvironment does, but from an injected
// environment. Loopback servers are never proxied.
func envProxy(getenv func(string) string, target *url.URL) (*url.URL, error) {
	if getenv == nil {
		return nil, nil
	}
	get := func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return getenv(strings.ToLower(name))
	}
	var raw string
	switch target.Scheme {
	case "https":
		raw = get("HTTPS_PROXY")
	case "http":
		raw = get("HTTP_PROXY")
	}
	if raw == "" {
		return nil, nil
	}
	host := target.Hostname()
	if host == "localhost" {
		return nil, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil, nil
	}
	if noProxyMatches(get("NO_PROXY"), host, target.Port()) {
		return nil, nil
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	return parseProxyURL(raw)
}

// noProxyMatches reports whether host:port is excluded by a NO_PROXY list of
// "*", host names, ".domain" suffixes, IPs and CIDRs, each optionally with a
// port.
func noProxyMatches(noProxy, host, port string) bool {
	ip, ipErr := netip.ParseAddr(host)
	for _, entry := range strings.Split(noProxy, ",") {
		entry = strings.ToLower(strings.TrimSpace(entry))
		if entry == "" {
			continue
		}
		if entry == "*" {
			return true
		}
		if p, err := netip.ParsePrefix(entry); err == nil {
			if ipErr == nil && p.Contains(ip) {
				return true
			}
			continue
		}
		if h, p, err := net.SplitHostPort(entry); err == nil {
			if p != port {
				continue
			}
			entry = h
		}
		if e, err := netip.ParseAddr(entry); err == nil {
			if ipErr == nil && e == ip {
				return true
			}
			continue
		}
		h := strings.ToLower(host)
		entry = strings.TrimPrefix(entry, "*")
		if strings.HasPrefix(entry, ".") {
			if strings.HasSuffix(h, entry) || h == entry[1:] {
				return true
			}
			continue
		}
		if h == entry || strings.HasSuffix(h, "."+entry) {
			return true
		}
	}
	return false
}

// dialThroughProxy opens a TCP connection to addr (host:port) through proxy,
// for the upgrade path, which does its own HTTP/1.1 handshake and so cannot
// use net/http's proxy support. tlsConf is the cluster TLS config; net/http
// also uses it to talk TLS to an https proxy, and so do we.
func dialThroughProxy(ctx context.Context, d *net.Dialer, proxy *url.URL, addr string, tlsConf *tls.Config) (net.Conn, error) {
	port := proxy.Port()
	if port == "" {
		switch proxy.Scheme {
		case "https":
			port = "443"
		case "socks5", "socks5h":
			port = "1080"
		default:
			port = "80"
		}
	}
	proxyAddr := net.JoinHostPort(proxy.Hostname(), port)
	conn, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("dial proxy %s: %w", proxy.Redacted(), err)
	}
	// Bound the proxy handshake by ctx: a deadline now, and an immediate one
	// if ctx ends first.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	out, err := proxyHandshake(ctx, conn, proxy, addr, tlsConf)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: %w", proxy.Redacted(), err)
	}
	_ = out.SetDeadline(time.Time{})
	return out, nil
}

func proxyHandshake(ctx context.Context, conn net.Conn, proxy *url.URL, addr string, tlsConf *tls.Config) (net.Conn, error) {
	switch proxy.Scheme {
	case "socks5", "socks5h":
		if err := socks5Connect(conn, proxy.User, addr); err != nil {
			return nil, err
		}
		return conn, nil
	case "https":
		cfg := tlsConf.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = proxy.Hostname()
		}
		cfg.NextProtos = nil
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
		fallthrough
	case "http":
		return httpConnect(conn, proxy.User, addr)
	}
	return nil, fmt.Errorf("unsupported proxy scheme %q", proxy.Scheme)
}

// httpConnect asks an HTTP proxy for a tunnel to addr with CONNECT.
func httpConnect(conn net.Conn, user *url.Userinfo, addr string) (net.Conn, error) {
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: http.Header{},
	}
	if user != nil {
		pw, _ := user.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user.Username()+":"+pw)))
	}
	if err := req.Write(conn); err != nil {
		return nil, fmt.Errorf("send CONNECT %s: %w", addr, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fmt.Errorf("read CONNECT %s response: %w", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("CONNECT %s: %w", addr, &ProxyError{Status: resp.Status})
	}
	return withPending(conn, br), nil
}

// ProxyError is a proxy's refusal to open a tunnel to the cluster.
type ProxyError struct {
	Status string // the proxy's HTTP status line, or the SOCKS5 reply
}

// Error implements error.
func (e *ProxyError) Error() string { return "proxy refused: " + e.Status }

// UpgradeRefused is true: a proxy that would not tunnel refused the
// upgrade, not the API server (forward.UpgradeRefused).
func (e *ProxyError) UpgradeRefused() bool { return true }

var socks5Replies = map[byte]string{
	1: "general SOCKS server failure",
	2: "connection not allowed by ruleset",
	3: "network unreachable",
	4: "host unreachable",
	5: "connection refused",
	6: "TTL expired",
	7: "command not supported",
	8: "address type not supported",
}

// socks5Connect runs the RFC 1928 CONNECT exchange (with RFC 1929
// username/password if the URL has a user) for addr. Host names are sent to
// the proxy unresolved, as net/http does for socks5 and socks5h.
func socks5Connect(conn net.Conn, user *url.Userinfo, addr string) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return fmt.Errorf("port %q: %w", portStr, err)
	}
	methods := []byte{0x00}
	if user != nil {
		methods = []byte{0x00, 0x02}
	}
	if _, err := conn.Write(append([]byte{5, byte(len(methods))}, methods...)); err != nil {
		return fmt.Errorf("socks5 greeting: %w", err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(conn, sel[:]); err != nil {
		return fmt.Errorf("socks5 greeting reply: %w", err)
	}
	if sel[0] != 5 {
		return fmt.Errorf("socks5: unexpected protocol version %d", sel[0])
	}
	switch sel[1] {
	case 0x00:
	case 0x02:
		if user == nil {
			return errors.New("socks5: proxy asks for a username and password, the proxy url has none")
		}
		pw, _ := user.Password()
		name := user.Username()
		if len(name) > 255 || len(pw) > 255 {
			return errors.New("socks5: username or password longer than 255 bytes")
		}
		msg := []byte{1, byte(len(name))}
		msg = append(msg, name...)
		msg = append(msg, byte(len(pw)))
		msg = append(msg, pw...)
		if _, err := conn.Write(msg); err != nil {
			return fmt.Errorf("socks5 authentication: %w", err)
		}
		var st [2]byte
		if _, err := io.ReadFull(conn, st[:]); err != nil {
			return fmt.Errorf("socks5 authentication reply: %w", err)
		}
		if st[1] != 0 {
			return fmt.Errorf("socks5: %w", &ProxyError{Status: "username/password rejected"})
		}
	default:
		return fmt.Errorf("socks5: %w", &ProxyError{Status: "no acceptable authentication method"})
	}
	req := []byte{5, 1, 0}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is4() {
			req = append(req, 1)
			b := ip.As4()
			req = append(req, b[:]...)
		} else {
			req = append(req, 4)
			b := ip.As16()
			req = append(req, b[:]...)
		}
	} else {
		if len(host) > 255 {
			return errors.New("socks5: host name longer than 255 bytes")
		}
		req = append(req, 3, byte(len(host)))
		req = append(req, host...)
	}
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("socks5 connect: %w", err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return fmt.Errorf("socks5 connect reply: %w", err)
	}
	if hdr[1] != 0 {
		msg, ok := socks5Replies[hdr[1]]
		if !ok {
			msg = fmt.Sprintf("reply code %d", hdr[1])
		}
		return fmt.Errorf("socks5 connect %s: %w", addr, &ProxyError{Status: msg})
	}
	var skip int
	switch hdr[3] {
	case 1:
		skip = 4
	case 4:
		skip = 16
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			return fmt.Errorf("socks5 connect reply: %w", err)
		}
		skip = int(l[0])
	default:
		return fmt.Errorf("socks5: unknown bound address type %d", hdr[3])
	}
	if _, err := io.CopyN(io.Discard, conn, int64(skip+2)); err != nil {
		return fmt.Errorf("socks5 connect reply: %w", err)
	}
	return nil
}
