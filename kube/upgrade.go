package kube

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// UpgradedConn is a connection switched to another protocol by a 101
// response. Reads first return any bytes the server sent right after the
// 101. SetDeadline, SetReadDeadline and SetWriteDeadline act on the
// underlying TCP or TLS connection, so a caller can bound a hanging write
// (say a GOAWAY on shutdown) and Close always returns.
type UpgradedConn struct {
	net.Conn
	// Header is the 101 response's header; the caller checks the negotiated
	// protocol (X-Stream-Protocol-Version, Sec-WebSocket-Protocol) in it.
	Header http.Header
}

// NetConn returns the connection UpgradedConn wraps, so that a caller can
// reach the TCP connection underneath (through tls.Conn's NetConn too).
func (u *UpgradedConn) NetConn() net.Conn { return u.Conn }

// Upgrade sends an HTTP/1.1 request for path (e.g.
// /api/v1/namespaces/NS/pods/POD/portforward) with method, header and the
// client's credentials, and returns the connection once the server answers
// 101 Switching Protocols. header must carry the Connection and Upgrade (or
// WebSocket) headers of the protocol asked for.
//
// HTTP/1.1 is forced: an HTTP/2 connection cannot be upgraded. The dial, TLS
// handshake and response wait are bounded by ctx and the client's timeouts;
// after it returns, ctx no longer affects the connection. A proxy from
// proxy-url (http, https or socks5) or the environment is honoured.
//
// Any other status gives an *UpgradeError, which matches ErrUnauthorized,
// ErrForbidden and ErrNotFound. A 401 with an exec plugin's credential runs
// the plugin again and retries once.
func (c *Client) Upgrade(ctx context.Context, method, path string, header http.Header) (*UpgradedConn, error) {
	for attempt := 0; ; attempt++ {
		h := header.Clone()
		if h == nil {
			h = http.Header{}
		}
		if h.Get("User-Agent") == "" {
			h.Set("User-Agent", userAgent)
		}
		gen, err := c.auth.apply(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("upgrade %s %s: %w", method, path, err)
		}
		conn, err := c.upgradeOnce(ctx, method, path, h)
		var ue *UpgradeError
		if errors.As(err, &ue) && ue.StatusCode == http.StatusUnauthorized && attempt == 0 && c.auth.unauthorized(gen) {
			c.log.Debug("server rejected the exec credential, running the plugin again", "context", c.rc.Context)
			continue
		}
		return conn, err
	}
}

func (c *Client) upgradeOnce(ctx context.Context, method, path string, h http.Header) (_ *UpgradedConn, err error) {
	u := *c.server
	p, query, _ := strings.Cut(path, "?")
	u.Path = c.server.Path + p
	u.RawQuery = query
	what := fmt.Sprintf("upgrade %s %s", method, path)
	hctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	host := u.Hostname()
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	addr := net.JoinHostPort(host, port)
	proxy, err := c.proxyFor(nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var raw net.Conn
	if proxy != nil {
		raw, err = dialThroughProxy(hctx, c.dialer, proxy, addr, c.tlsConf)
	} else {
		raw, err = c.dialer.DialContext(hctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: dial %s: %w", what, addr, err)
	}
	// Until the 101 arrives everything is bounded by hctx: its deadline now,
	// and an immediate deadline if it is cancelled.
	if dl, ok := hctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	stop := context.AfterFunc(hctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() && err == nil {
			// hctx ended just as the handshake finished: the deadline may
			// already be set in the past, so give the conn up.
			err = fmt.Errorf("%s: %w", what, context.Cause(hctx))
		}
		if err != nil {
			raw.Close()
		}
	}()

	conn := raw
	if u.Scheme == "https" {
		cfg := c.tlsConf.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		// Upgraded connections carry SPDY frames far larger than a TLS
		// record: batchConn lets package forward write each frame's
		// records with one syscall.
		tc := tls.Client(&batchConn{Conn: raw}, cfg)
		tctx, tcancel := context.WithTimeout(hctx, c.tlsTime)
		err := tc.HandshakeContext(tctx)
		tcancel()
		if err != nil {
			return nil, fmt.Errorf("%s: tls handshake with %s: %w", what, addr, err)
		}
		conn = tc
	}

	req := &http.Request{
		Method:     method,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       u.Host,
	}
	bw := bufio.NewWriter(conn)
	if err := req.Write(bw); err != nil {
		return nil, fmt.Errorf("%s: send request: %w", what, err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("%s: send request: %w", what, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		if hctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("%s: no response within %s: %w", what, c.timeout, err)
		}
		return nil, fmt.Errorf("%s: read response: %w", what, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		return nil, c.upgradeError(resp, body, method, p)
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("%s: clear deadline: %w", what, err)
	}
	return &UpgradedConn{Conn: withPending(conn, br), Header: resp.Header}, nil
}

func (c *Client) upgradeError(resp *http.Response, body []byte, method, path string) *UpgradeError {
	msg, _ := parseStatus(body)
	ns, res, name := parseAPIPath(path)
	return &UpgradeError{
		StatusCode: resp.StatusCode,
		Status:     resp.Status,
		Body:       body,
		Message:    msg,
		Header:     resp.Header,
		Method:     method,
		Path:       path,
		Namespace:  ns,
		Resource:   res,
		Name:       name,
		Context:    c.rc.Context,
		User:       c.rc.User,
	}
}
