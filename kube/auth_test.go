package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
	"github.com/tunnels-dev/tunnels/internal/testpki"
)

// headerRecorder remembers the headers of the requests a fakeAPI saw.
type headerRecorder struct {
	mu      sync.Mutex
	headers []http.Header
	cns     []string
}

func (h *headerRecorder) record(r *http.Request) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.headers = append(h.headers, r.Header.Clone())
	cn := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cn = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	h.cns = append(h.cns, cn)
	return 0
}

func (h *headerRecorder) last() (http.Header, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.headers[len(h.headers)-1], h.cns[len(h.cns)-1]
}

func TestStaticCredentials(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeAPI(t)
	f.addPod(mkPod("dev", "web-1", nil))
	rec := &headerRecorder{}
	f.auth = rec.record
	cert, key := f.pki.ClientCert(t, "alice")

	tests := []struct {
		name   string
		edit   func(rc *RestConfig)
		check  func(h http.Header, cn string) error
		wantCN string
	}{
		{name: "token", edit: func(rc *RestConfig) {}, check: wantHeader("Authorization", "Bearer secret-token")},
		{name: "basic", edit: func(rc *RestConfig) { rc.BearerToken = ""; rc.Username, rc.Password = "bob", "hunter2" },
			check: wantHeader("Authorization", "Basic Ym9iOmh1bnRlcjI=")},
		{name: "client certificate", edit: func(rc *RestConfig) { rc.BearerToken = ""; rc.CertData, rc.KeyData = cert, key },
			check: wantHeader("Authorization", ""), wantCN: "alice"},
		{name: "certificate and token", edit: func(rc *RestConfig) { rc.CertData, rc.KeyData = cert, key },
			check: wantHeader("Authorization", "Bearer secret-token"), wantCN: "alice"},
		{name: "static credentials win over exec", edit: func(rc *RestConfig) { rc.Exec = &ExecConfig{APIVersion: execV1, Command: "/nonexistent"} },
			check: wantHeader("Authorization", "Bearer secret-token")},
		{name: "impersonation", edit: func(rc *RestConfig) {
			rc.Impersonate, rc.ImpersonateUID = "carol", "uid-7"
			rc.ImpersonateGroups = []string{"devs", "ops"}
			rc.ImpersonateExtra = map[string][]string{"scopes": {"a", "b"}, "example.com/project id": {"x"}}
		}, check: func(h http.Header, _ string) error {
			if h.Get("Impersonate-User") != "carol" || h.Get("Impersonate-Uid") != "uid-7" ||
				strings.Join(h.Values("Impersonate-Group"), ",") != "devs,ops" ||
				strings.Join(h.Values("Impersonate-Extra-Scopes"), ",") != "a,b" ||
				h.Get("Impersonate-Extra-Example.com%2fproject%20id") != "x" {
				return fmt.Errorf("impersonation headers %v", h)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := f.config()
			tt.edit(rc)
			c := f.client(t, rc)
			if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
				t.Fatalf("GetPod: %v", err)
			}
			h, cn := rec.last()
			if err := tt.check(h, cn); err != nil {
				t.Error(err)
			}
			if cn != tt.wantCN {
				t.Errorf("client certificate CN %q, want %q", cn, tt.wantCN)
			}
		})
	}
}

func wantHeader(k, v string) func(http.Header, string) error {
	return func(h http.Header, _ string) error {
		if got := h.Get(k); got != v {
			return fmt.Errorf("%s: %q, want %q", k, got, v)
		}
		return nil
	}
}

func TestTokenFileRotation(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeAPI(t)
	f.addPod(mkPod("dev", "web-1", nil))
	gate := &tokenGate{}
	f.auth = gate.check
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	writeFile(t, path, "first-token\n")
	rc := f.config()
	rc.BearerToken = ""
	rc.BearerTokenFile = path
	c := f.client(t, rc)
	gate.allow("first-token")
	if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
		t.Fatalf("GetPod: %v", err)
	}
	// The kubelet rotates a projected token by swapping a symlink; a new
	// file with a later mtime is what a reader sees.
	tmp := filepath.Join(dir, "token.new")
	writeFile(t, tmp, "second-token-longer\n")
	if err := os.Chtimes(tmp, time.Now().Add(time.Minute), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	gate.allow("second-token-longer")
	if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
		t.Fatalf("GetPod after rotation: %v", err)
	}
	// A file that vanishes keeps the last good token.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
		t.Fatalf("GetPod with the file gone: %v", err)
	}

	// With no fallback token, an unreadable file fails the client up front.
	rc.BearerTokenFile = filepath.Join(dir, "missing")
	if _, err := NewClient(rc, ClientOptions{}); err == nil {
		t.Error("NewClient with a missing token file and no token succeeded")
	}
}

func TestStatusErrors(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeAPI(t)
	var code int
	f.auth = func(*http.Request) int { return code }
	c := f.client(t, f.config())
	tests := []struct {
		code int
		is   error
		want []string
	}{
		{401, ErrUnauthorized, []string{"401", `user "test-user"`, `context "test-ctx"`, "check them in your kubeconfig"}},
		{403, ErrForbidden, []string{"403", `"get"`, `"pods"`, `namespace "dev"`, `user "test-user"`}},
		{404, ErrNotFound, []string{"404", `pods "web-1"`, `namespace "dev"`, "check the name"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			code = tt.code
			_, err := c.GetPod(t.Context(), "dev", "web-1")
			var ae *APIError
			if !errors.Is(err, tt.is) || !errors.As(err, &ae) || ae.StatusCode != tt.code {
				t.Fatalf("error %v, want %v as an *APIError", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, other := range []error{ErrUnauthorized, ErrForbidden, ErrNotFound} {
				if other != tt.is && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
		})
	}
	code = 0
	_, err := c.GetPod(t.Context(), "dev", "absent")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"absent"`) {
		t.Errorf("missing pod: %v", err)
	}
}

// TestNoSecretsInOutput checks that no token, password or key appears in
// printed configs, logs or errors.
func TestNoSecretsInOutput(t *testing.T) {
	leakcheck.Check(t)
	cert, key := testpki.New(t).ClientCert(t, "alice")
	secrets := []string{"tok-SECRET-1", "pw-SECRET-2", "env-SECRET-3", "proxy-SECRET-4", string(key), strings.Split(string(key), "\n")[1]}
	rc := &RestConfig{
		Context: "c", Server: "https://127.0.0.1:1", User: "u",
		BearerToken: "tok-SECRET-1", Password: "pw-SECRET-2", Username: "bob",
		CertData: cert, KeyData: key,
		Exec:     &ExecConfig{APIVersion: execV1, Command: "x", Env: []ExecEnvVar{{Name: "TOKEN", Value: "env-SECRET-3"}}},
		ProxyURL: "http://user:proxy-SECRET-4@127.0.0.1:3128",
	}
	var out bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Info("config", "rc", rc, "value", *rc)
	log.Info("exec", "exec", rc.Exec)
	js, _ := json.Marshal(rc)
	out.Write(js)
	js, _ = json.Marshal(rc.Exec)
	out.Write(js)
	fmt.Fprintf(&out, "%v %+v %#v %s %v %+v %#v\n", rc, rc, rc, rc, *rc, *rc, *rc)
	fmt.Fprintf(&out, "%v %+v %#v\n", rc.Exec, rc.Exec, *rc.Exec)

	// Errors: basic and token together; a broken key; a plugin that fails
	// after printing a token; a 401.
	_, err := NewClient(rc, ClientOptions{Logger: log})
	fmt.Fprintln(&out, err)
	bad := *rc
	bad.BearerToken, bad.Password, bad.Username = "", "", ""
	bad.KeyData = []byte(strings.Replace(string(key), "M", "X", 3))
	_, err = NewClient(&bad, ClientOptions{Logger: log})
	fmt.Fprintln(&out, err)

	f := newFakeAPI(t)
	f.addPod(mkPod("dev", "web-1", nil))
	f.auth = func(*http.Request) int { return 401 }
	good := f.config()
	good.BearerToken = "tok-SECRET-1"
	c, err := NewClient(good, ClientOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.GetPod(t.Context(), "dev", "web-1")
	fmt.Fprintln(&out, err)
	_, err = c.Upgrade(t.Context(), "POST", "/api/v1/namespaces/dev/pods/web-1/portforward", nil)
	fmt.Fprintln(&out, err)

	dir := t.TempDir()
	x := pluginExec(t, dir)
	x.Env = append(x.Env, ExecEnvVar{Name: "TUNNELS_TEST_PLUGIN_PREFIX", Value: "tok-SECRET-1-"}, ExecEnvVar{Name: "TUNNELS_TEST_PLUGIN_VERSION", Value: "v0-bogus"})
	ec := execConfig(f, x)
	c2, err := NewClient(ec, ClientOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_, err = c2.GetPod(t.Context(), "dev", "web-1")
	if err == nil {
		t.Fatal("plugin with a wrong apiVersion accepted")
	}
	fmt.Fprintln(&out, err)

	s := out.String()
	if !strings.Contains(s, "[redacted]") || !strings.Contains(s, "401") {
		t.Fatalf("output does not look like what was printed:\n%s", s)
	}
	for _, sec := range secrets {
		if strings.Contains(s, sec) {
			t.Errorf("output shows secret %q:\n%s", sec, s)
		}
	}
}
