package kube

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The ExecCredential API versions tunnels speaks.
const (
	execV1      = "client.authentication.k8s.io/v1"
	execV1beta1 = "client.authentication.k8s.io/v1beta1"
)

// ErrExecInteractive is returned for an exec plugin whose interactiveMode is
// Always: tunnels never hands a plugin the terminal.
var ErrExecInteractive = errors.New("exec plugin requires an interactive terminal (interactiveMode: Always), which tunnels cannot provide; log in with the plugin first, or set interactiveMode to IfAvailable")

// execCredential is one credential returned by a plugin.
type execCredential struct {
	token  string
	cert   *tls.Certificate
	expiry time.Time // zero: never expires
	gen    uint64    // increases with every plugin run
}

// execAuth runs an exec credential plugin and caches what it returns until
// it expires or the server rejects it.
type execAuth struct {
	rc          *RestConfig
	cfg         *ExecConfig
	environ     []string // base environment; nil means the process's
	log         *slog.Logger
	now         func() time.Time
	certChanged func() // called when a plugin returns a new client certificate

	sem  chan struct{} // held while reading or refreshing cred; a ctx-aware mutex
	cred *execCredential
	gen  uint64
}

func newExecAuth(rc *RestConfig, opts ClientOptions, certChanged func()) (*execAuth, error) {
	cfg := rc.Exec
	switch cfg.APIVersion {
	case execV1, execV1beta1:
	default:
		return nil, fmt.Errorf("exec plugin of user %q: unsupported apiVersion %q, want %s or %s", rc.User, cfg.APIVersion, execV1, execV1beta1)
	}
	if cfg.Command == "" {
		return nil, fmt.Errorf("exec plugin of user %q: no command", rc.User)
	}
	switch cfg.InteractiveMode {
	case "", "Never", "IfAvailable", "Always":
	default:
		return nil, fmt.Errorf("exec plugin of user %q: invalid interactiveMode %q, want Never, IfAvailable or Always", rc.User, cfg.InteractiveMode)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &execAuth{
		rc:          rc,
		cfg:         cfg,
		environ:     opts.Environ,
		log:         opts.Logger,
		now:         now,
		certChanged: certChanged,
		sem:         make(chan struct{}, 1),
	}, nil
}

// get returns the cached credential, running the plugin if there is none or
// it has expired.
func (e *execAuth) get(ctx context.Context) (*execCredential, error) {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for exec credential plugin of user %q: %w", e.rc.User, ctx.Err())
	}
	defer func() { <-e.sem }()
	if c := e.cred; c != nil && (c.expiry.IsZero() || e.now().Before(c.expiry)) {
		return c, nil
	}
	c, err := e.run(ctx)
	if err != nil {
		return nil, err
	}
	e.gen++
	c.gen = e.gen
	old := e.cred
	e.cred = c
	if c.cert != nil && e.certChanged != nil && (old == nil || old.cert == nil || !bytes.Equal(old.cert.Certificate[0], c.cert.Certificate[0])) {
		e.certChanged()
	}
	return c, nil
}

// handshakeCert returns the client certificate for a TLS handshake. A
// plugin that last returned a token is not run again here: the request's
// own credential lookup does that, and running it twice per request would
// mint two credentials.
func (e *execAuth) handshakeCert(ctx context.Context) (*tls.Certificate, error) {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for exec credential plugin of user %q: %w", e.rc.User, ctx.Err())
	}
	c := e.cred
	<-e.sem
	if c != nil && c.cert == nil {
		return nil, nil
	}
	c, err := e.get(ctx)
	if err != nil {
		return nil, err
	}
	return c.cert, nil
}

// invalidate drops credential generation gen, if still cached, so the next
// get runs the plugin again.
func (e *execAuth) invalidate(gen uint64) {
	e.sem <- struct{}{}
	if e.cred != nil && e.cred.gen == gen {
		e.cred = nil
	}
	<-e.sem
}

// execInfo is the KUBERNETES_EXEC_INFO environment variable's content.
type execInfo struct {
	Kind       string       `json:"kind"`
	APIVersion string       `json:"apiVersion"`
	Spec       execInfoSpec `json:"spec"`
}

type execInfoSpec struct {
	Cluster     *execCluster `json:"cluster,omitempty"`
	Interactive bool         `json:"interactive"`
}

type execCluster struct {
	Server                   string          `json:"server"`
	TLSServerName            string          `json:"tls-server-name,omitempty"`
	InsecureSkipTLSVerify    bool            `json:"insecure-skip-tls-verify,omitempty"`
	CertificateAuthorityData []byte          `json:"certificate-authority-data,omitempty"`
	ProxyURL                 string          `json:"proxy-url,omitempty"`
	DisableCompression       bool            `json:"disable-compression,omitempty"`
	Config                   json.RawMessage `json:"config,omitempty"`
}

// execOutput is the ExecCredential a plugin prints.
type execOutput struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Status     *struct {
		ExpirationTimestamp   *time.Time `json:"expirationTimestamp"`
		Token                 string     `json:"token"`
		ClientCertificateData string     `json:"clientCertificateData"`
		ClientKeyData         string     `json:"clientKeyData"`
	} `json:"status"`
}

// maxPluginStderr caps the plugin's stderr kept for error messages.
const maxPluginStderr = 4 << 10

// run executes the plugin once and parses its credential. Its stdout, which
// holds the secret, never appears in an error or a log.
func (e *execAuth) run(ctx context.Context) (*execCredential, error) {
	cfg := e.cfg
	what := fmt.Sprintf("exec credential plugin %q of user %q", cfg.Command, e.rc.User)
	if cfg.InteractiveMode == "Always" {
		return nil, fmt.Errorf("%s: %w", what, ErrExecInteractive)
	}
	path, err := lookCommand(cfg.Command)
	if err != nil {
		msg := fmt.Sprintf("%s: %v", what, err)
		if cfg.InstallHint != "" {
			msg += "\n\n" + cfg.InstallHint
		}
		return nil, &execNotFoundError{msg: msg, err: err}
	}
	info := execInfo{Kind: "ExecCredential", APIVersion: cfg.APIVersion}
	if cfg.ProvideClusterInfo {
		info.Spec.Cluster = &execCluster{
			Server:                   e.rc.Server,
			TLSServerName:            e.rc.TLSServerName,
			InsecureSkipTLSVerify:    e.rc.Insecure,
			CertificateAuthorityData: e.rc.CAData,
			ProxyURL:                 e.rc.ProxyURL,
			Config:                   json.RawMessage(cfg.ClusterConfig),
		}
	}
	infoJSON, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("%s: encode KUBERNETES_EXEC_INFO: %w", what, err)
	}
	cmd := exec.CommandContext(ctx, path, cfg.Args...)
	if e.environ != nil {
		cmd.Env = append([]string(nil), e.environ...)
	} else {
		cmd.Env = cmd.Environ()
	}
	for _, v := range cfg.Env {
		cmd.Env = append(cmd.Env, v.Name+"="+v.Value)
	}
	cmd.Env = append(cmd.Env, "KUBERNETES_EXEC_INFO="+string(infoJSON))
	var stdout bytes.Buffer
	stderr := &cappedBuffer{max: maxPluginStderr}
	cmd.Stdin = nil // never the user's terminal: interactive mode is not offered
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	if e.log != nil {
		e.log.Debug(fmt.Sprintf("running exec credential plugin %s for user %q", cfg.Command, e.rc.User), "context", e.rc.Context)
	}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("%s: %w; stderr: %s", what, err, msg)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var out execOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		// Not %w: a json.SyntaxError is harmless, but an UnmarshalTypeError
		// can quote the value, and the output holds secrets.
		return nil, fmt.Errorf("%s: its output is not an ExecCredential (invalid JSON)", what)
	}
	if out.APIVersion != cfg.APIVersion {
		return nil, fmt.Errorf("%s: the plugin returned apiVersion %q, the kubeconfig asks for %q", what, out.APIVersion, cfg.APIVersion)
	}
	if out.Kind != "ExecCredential" {
		return nil, fmt.Errorf("%s: the plugin returned kind %q, want ExecCredential", what, out.Kind)
	}
	if out.Status == nil {
		return nil, fmt.Errorf("%s: the plugin returned an ExecCredential without status", what)
	}
	st := out.Status
	cred := &execCredential{token: st.Token}
	if st.ExpirationTimestamp != nil {
		cred.expiry = *st.ExpirationTimestamp
	}
	if (st.ClientCertificateData == "") != (st.ClientKeyData == "") {
		return nil, fmt.Errorf("%s: the plugin returned only one of clientCertificateData and clientKeyData", what)
	}
	if st.ClientCertificateData != "" {
		cert, err := tls.X509KeyPair([]byte(st.ClientCertificateData), []byte(st.ClientKeyData))
		if err != nil {
			return nil, fmt.Errorf("%s: the plugin returned an invalid client certificate: %w", what, err)
		}
		cred.cert = &cert
	}
	if cred.token == "" && cred.cert == nil {
		return nil, fmt.Errorf("%s: the plugin returned neither a token nor a client certificate and key", what)
	}
	if e.log != nil {
		exp := "never"
		if !cred.expiry.IsZero() {
			exp = cred.expiry.Format(time.RFC3339)
		}
		e.log.Debug(fmt.Sprintf("exec credential plugin %s returned a credential for user %q, expiring %s", cfg.Command, e.rc.User, exp), "context", e.rc.Context)
	}
	return cred, nil
}

// lookCommand finds the plugin program: a name with a path separator is used
// as is (relative ones were made absolute at load), a bare name is looked up
// in $PATH.
func lookCommand(name string) (string, error) {
	if strings.ContainsRune(name, '/') || strings.ContainsRune(name, filepath.Separator) {
		st, err := os.Stat(name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("%w: %s does not exist", exec.ErrNotFound, name)
			}
			return "", err
		}
		if st.IsDir() {
			return "", fmt.Errorf("%w: %s is a directory", exec.ErrNotFound, name)
		}
		return name, nil
	}
	return exec.LookPath(name)
}

// execNotFoundError is a missing plugin program: its message carries the
// kubeconfig's installHint, and it matches exec.ErrNotFound.
type execNotFoundError struct {
	msg string
	err error
}

func (e *execNotFoundError) Error() string { return e.msg }
func (e *execNotFoundError) Unwrap() error { return e.err }

// cappedBuffer keeps the first max bytes written to it.
type cappedBuffer struct {
	max int
	buf bytes.Buffer
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string { return b.buf.String() }
