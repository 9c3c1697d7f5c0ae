package kube

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// authenticator puts a RestConfig's credentials on requests and TLS
// handshakes. It follows client-go's precedence: a token (from BearerToken or
// BearerTokenFile) or basic auth, and a client certificate; an exec plugin is
// only used when none of those is configured.
type authenticator struct {
	rc         *RestConfig
	staticCert *tls.Certificate // nil if none
	tokenFile  *fileToken       // nil if no BearerTokenFile
	exec       *execAuth        // nil if no plugin, or if static credentials win
}

// newAuthenticator checks the credentials of rc and loads its static ones.
func newAuthenticator(rc *RestConfig, opts ClientOptions, certChanged func()) (*authenticator, error) {
	a := &authenticator{rc: rc}
	hasToken := rc.BearerToken != "" || rc.BearerTokenFile != ""
	hasBasic := rc.Username != "" || rc.Password != ""
	if hasToken && hasBasic {
		return nil, errors.New("username/password or bearer token may be set, but not both")
	}
	hasCert := len(rc.CertData) > 0 || len(rc.KeyData) > 0
	if hasCert {
		if len(rc.CertData) == 0 || len(rc.KeyData) == 0 {
			return nil, errors.New("client certificate and key must be given together")
		}
		cert, err := tls.X509KeyPair(rc.CertData, rc.KeyData)
		if err != nil {
			// The error of X509KeyPair names no key material.
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		a.staticCert = &cert
	}
	if rc.BearerTokenFile != "" {
		a.tokenFile = &fileToken{path: rc.BearerTokenFile, fallback: rc.BearerToken}
		if rc.BearerToken == "" {
			// Like client-go: with no token to fall back on, the file must be
			// readable now.
			if _, err := a.tokenFile.token(); err != nil {
				return nil, err
			}
		}
	}
	if rc.Exec != nil && !hasToken && !hasBasic && !hasCert {
		ea, err := newExecAuth(rc, opts, certChanged)
		if err != nil {
			return nil, err
		}
		a.exec = ea
	}
	return a, nil
}

// needsClientCert reports whether TLS handshakes may present a certificate.
func (a *authenticator) needsClientCert() bool { return a.staticCert != nil || a.exec != nil }

// clientCertificate is the tls.Config GetClientCertificate hook. An exec
// plugin may be run here, bounded by the handshake's context.
func (a *authenticator) clientCertificate(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if a.staticCert != nil {
		return a.staticCert, nil
	}
	if a.exec != nil {
		cert, err := a.exec.handshakeCert(cri.Context())
		if err != nil {
			return nil, err
		}
		if cert != nil {
			return cert, nil
		}
	}
	return &tls.Certificate{}, nil
}

// apply sets the authentication and impersonation headers of h. It returns
// the exec credential generation used, to pass to unauthorized on a 401.
func (a *authenticator) apply(ctx context.Context, h http.Header) (uint64, error) {
	rc := a.rc
	var gen uint64
	switch {
	case a.tokenFile != nil:
		tok, err := a.tokenFile.token()
		if err != nil {
			return 0, err
		}
		h.Set("Authorization", "Bearer "+tok)
	case rc.BearerToken != "":
		h.Set("Authorization", "Bearer "+rc.BearerToken)
	case rc.Username != "" || rc.Password != "":
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(rc.Username+":"+rc.Password)))
	case a.exec != nil:
		cred, err := a.exec.get(ctx)
		if err != nil {
			return 0, err
		}
		gen = cred.gen
		if cred.token != "" {
			h.Set("Authorization", "Bearer "+cred.token)
		}
	}
	if rc.Impersonate != "" || rc.ImpersonateUID != "" || len(rc.ImpersonateGroups) > 0 || len(rc.ImpersonateExtra) > 0 {
		h.Set("Impersonate-User", rc.Impersonate)
		if rc.ImpersonateUID != "" {
			h.Set("Impersonate-Uid", rc.ImpersonateUID)
		}
		for _, g := range rc.ImpersonateGroups {
			h.Add("Impersonate-Group", g)
		}
		for k, vv := range rc.ImpersonateExtra {
			for _, v := range vv {
				h.Add("Impersonate-Extra-"+headerKeyEscape(k), v)
			}
		}
	}
	return gen, nil
}

// unauthorized is called after a 401 for a request sent with exec credential
// generation gen. It drops that credential so the plugin runs again, and
// reports whether retrying the request once may succeed.
func (a *authenticator) unauthorized(gen uint64) bool {
	if a.exec == nil {
		return false
	}
	a.exec.invalidate(gen)
	return true
}

// headerKeyEscape percent-encodes the bytes of an impersonation extra key
// that are not legal in a header name, as client-go does.
func headerKeyEscape(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !isHeaderTokenByte(c) {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// isHeaderTokenByte reports whether c may appear in an HTTP header name
// (RFC 7230 tchar).
func isHeaderTokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// fileToken reads a bearer token from a file and re-reads it when the file
// changes, so that rotated (projected) service account tokens are picked up
// without a restart. The last good token is kept if a re-read fails.
type fileToken struct {
	path     string
	fallback string // BearerToken, used while the file cannot be read

	mu      sync.Mutex
	tok     string    // guarded by mu
	modTime time.Time // guarded by mu
	size    int64     // guarded by mu
	read    time.Time // guarded by mu; when tok was read
}

// token returns the file's current token.
func (f *fileToken) token() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, statErr := os.Stat(f.path)
	// Re-read when the file looks different, and at least every minute as
	// client-go's cachingTokenSource does (a same-size rewrite within the
	// mtime granularity would otherwise go unnoticed).
	if statErr == nil && f.tok != "" && st.ModTime().Equal(f.modTime) && st.Size() == f.size && time.Since(f.read) < time.Minute {
		return f.tok, nil
	}
	err := statErr
	if err == nil {
		var b []byte
		b, err = os.ReadFile(f.path)
		if err == nil {
			tok := strings.TrimSpace(string(b))
			if tok == "" {
				err = errors.New("file is empty")
			} else {
				f.tok, f.modTime, f.size, f.read = tok, st.ModTime(), st.Size(), time.Now()
				return tok, nil
			}
		}
	}
	if f.tok != "" {
		return f.tok, nil
	}
	if f.fallback != "" {
		return f.fallback, nil
	}
	return "", fmt.Errorf("read token file %s: %w", f.path, err)
}
