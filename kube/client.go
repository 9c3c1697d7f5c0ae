// Package kube loads kubeconfig files, authenticates as kubectl does, and
// calls the Kubernetes API without client-go.
package kube

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// ClientOptions configures a Client. The zero value is usable.
type ClientOptions struct {
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
	// Timeout bounds each API call (not watches, which run until their
	// context ends) and each upgrade handshake. Zero means 30s.
	Timeout time.Duration
	// DialTimeout bounds the TCP dial. Zero means 30s.
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds the TLS handshake. Zero means 10s.
	TLSHandshakeTimeout time.Duration
	// Getenv is the environment used for HTTPS_PROXY, HTTP_PROXY and
	// NO_PROXY when the kubeconfig sets no proxy-url, as kubectl does. Nil
	// means an empty environment: no proxy unless the kubeconfig names one.
	Getenv func(string) string
	// Environ is the base environment of exec credential plugins, to which
	// the kubeconfig's env entries and KUBERNETES_EXEC_INFO are added. Nil
	// means the process's environment (what os/exec gives a child).
	Environ []string
	// Now is the clock used for exec credential expiry. Nil means time.Now.
	Now func() time.Time
}

// Client talks to one cluster as one user.
type Client struct {
	rc      *RestConfig
	log     *slog.Logger
	timeout time.Duration
	server  *url.URL
	proxy   *url.URL // from proxy-url; nil means the environment's, if any
	getenv  func(string) string
	auth    *authenticator
	dialer  *net.Dialer
	tlsConf *tls.Config // base config for API calls and upgrades; nil for http://
	tlsTime time.Duration
	http    *http.Client
	tr      *http.Transport

	reachMu  sync.Mutex // guards reachAt and reachErr, and is held while probing
	reachAt  time.Time
	reachErr error
}

// NewClient checks rc and builds a client for it. It reads no file except
// BearerTokenFile and runs no plugin: credentials are fetched on first use.
func NewClient(rc *RestConfig, opts ClientOptions) (*Client, error) {
	if rc == nil {
		return nil, errors.New("new client: no config")
	}
	rcCopy := *rc
	rc = &rcCopy
	what := "new client"
	if rc.Context != "" {
		what = fmt.Sprintf("new client for context %q", rc.Context)
	}
	if rc.Server == "" {
		return nil, fmt.Errorf("%s: no server", what)
	}
	u, err := url.Parse(rc.Server)
	if err != nil {
		return nil, fmt.Errorf("%s: parse server %q: %w", what, rc.Server, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("%s: server %q: scheme must be https or http", what, rc.Server)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%s: server %q has no host", what, rc.Server)
	}
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	c := &Client{
		rc:      rc,
		log:     opts.Logger,
		timeout: opts.Timeout,
		server:  u,
		getenv:  opts.Getenv,
		tlsTime: opts.TLSHandshakeTimeout,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.timeout == 0 {
		c.timeout = 30 * time.Second
	}
	if c.tlsTime == 0 {
		c.tlsTime = 10 * time.Second
	}
	dialTimeout := opts.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = 30 * time.Second
	}
	c.dialer = &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	if rc.ProxyURL != "" {
		if c.proxy, err = parseProxyURL(rc.ProxyURL); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	if u.Scheme == "https" {
		// As client-go: credentials only ever go over TLS.
		if c.auth, err = newAuthenticator(rc, opts, c.closeIdle); err != nil {
			return nil, fmt.Errorf("%s (user %q): %w", what, rc.User, err)
		}
		c.tlsConf = &tls.Config{
			ServerName:         rc.TLSServerName,
			InsecureSkipVerify: rc.Insecure, //nolint:gosec // the kubeconfig asked for it
			MinVersion:         tls.VersionTLS12,
		}
		if len(rc.CAData) > 0 {
			if rc.Insecure {
				return nil, fmt.Errorf("%s: specifying a root certificate authority with insecure-skip-tls-verify is not allowed", what)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(rc.CAData) {
				return nil, fmt.Errorf("%s: certificate authority of cluster: no PEM certificate found", what)
			}
			c.tlsConf.RootCAs = pool
		}
		if c.auth.needsClientCert() {
			c.tlsConf.GetClientCertificate = c.auth.clientCertificate
		}
	} else {
		// Impersonation is applied even without TLS, as client-go does.
		c.auth = &authenticator{rc: &RestConfig{
			Impersonate:       rc.Impersonate,
			ImpersonateUID:    rc.ImpersonateUID,
			ImpersonateGroups: rc.ImpersonateGroups,
			ImpersonateExtra:  rc.ImpersonateExtra,
		}}
	}
	c.tr = &http.Transport{
		Proxy:       c.proxyFor,
		DialContext: c.dialer.DialContext,
		// A copy: net/http adds "h2" to the NextProtos of the config it is
		// given, while Upgrade clones c.tlsConf concurrently.
		TLSClientConfig:       c.tlsConf.Clone(),
		TLSHandshakeTimeout:   c.tlsTime,
		ResponseHeaderTimeout: c.timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   25,
		ForceAttemptHTTP2:     true,
	}
	c.http = &http.Client{Transport: c.tr}
	return c, nil
}

// Config returns the config the client was built from. Do not modify it.
func (c *Client) Config() *RestConfig { return c.rc }

// Close releases idle connections. Streams and upgraded connections already
// handed out are not affected.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// closeIdle drops pooled connections, so that a new client certificate from
// an exec plugin is used by the next request.
func (c *Client) closeIdle() {
	if c.tr != nil {
		c.tr.CloseIdleConnections()
	}
}

// proxyFor returns the proxy for requests to the server: the kubeconfig's
// proxy-url, else the environment's.
func (c *Client) proxyFor(*http.Request) (*url.URL, error) {
	if c.proxy != nil {
		return c.proxy, nil
	}
	return envProxy(c.getenv, c.server)
}

// url returns the server URL for an API path and query.
func (c *Client) url(path string, query url.Values) string {
	u := *c.server
	u.Path = c.server.Path + path
	u.RawQuery = query.Encode()
	return u.String()
}

// requestInfo names what a request was about, for error messages.
type requestInfo struct {
	verb      string // get, list, watch, create
	resource  string // pods, services, pods/portforward
	namespace string
	name      string
}

// object names what a request is about: pods "web-1" in namespace "dev".
func (i requestInfo) object() string {
	o := i.resource
	if i.name != "" {
		o += fmt.Sprintf(" %q", i.name)
	}
	if i.namespace != "" {
		o += fmt.Sprintf(" in namespace %q", i.namespace)
	}
	return o
}

// do sends a GET for path with credentials, retries once with a fresh
// credential after a 401 from an exec plugin's credential, and returns the
// response when its status is 2xx; otherwise the body is read and an
// *APIError returned, which says what was asked. Other errors are wrapped
// with the same. The caller closes the body.
func (c *Client) do(ctx context.Context, path string, query url.Values, info requestInfo) (*http.Response, error) {
	return c.send(ctx, http.MethodGet, path, query, nil, info)
}

// send is do with any method and a JSON body (nil for none).
func (c *Client) send(ctx context.Context, method, path string, query url.Values, body []byte, info requestInfo) (*http.Response, error) {
	resp, err := c.doOnce(ctx, method, path, query, body, info)
	var ae *APIError
	if err != nil && !errors.As(err, &ae) {
		err = fmt.Errorf("%s %s: %w", info.verb, info.object(), err)
	}
	return resp, err
}

func (c *Client) doOnce(ctx context.Context, method, path string, query url.Values, body []byte, info requestInfo) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.url(path, query), rd)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("User-Agent", userAgent)
		gen, err := c.auth.apply(ctx, req.Header)
		if err != nil {
			return nil, err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return resp, nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && c.auth.unauthorized(gen) {
			c.log.Debug("server rejected the exec credential, running the plugin again", "context", c.rc.Context)
			continue
		}
		return nil, c.apiError(resp.StatusCode, body, info)
	}
}

const userAgent = "tunnels"

// Reachable reports whether the first hop to the API server (its proxy, if
// one applies, else the server itself) accepts a TCP connection. It sends
// nothing and costs no credentials, so a caller waiting to retry can poll it
// to notice at once when a server that was down is back.
//
// Many sessions of one client poll at once while the server is down: one
// dial answers all callers within reachableTTL.
func (c *Client) Reachable(ctx context.Context) error {
	c.reachMu.Lock()
	defer c.reachMu.Unlock()
	if time.Since(c.reachAt) < reachableTTL {
		return c.reachErr
	}
	c.reachErr = c.reach(ctx)
	c.reachAt = time.Now()
	return c.reachErr
}

// reachableTTL is how long one Reachable answer serves.
const reachableTTL = 200 * time.Millisecond

func (c *Client) reach(ctx context.Context) error {
	hop := c.server
	if p, err := c.proxyFor(nil); err == nil && p != nil {
		hop = p
	}
	port := hop.Port()
	if port == "" {
		switch hop.Scheme {
		case "http":
			port = "80"
		case "socks5", "socks5h":
			port = "1080"
		default:
			port = "443"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := c.dialer.DialContext(ctx, "tcp", net.JoinHostPort(hop.Hostname(), port))
	if err != nil {
		return fmt.Errorf("reach %s: %w", hop.Host, err)
	}
	return conn.Close()
}
