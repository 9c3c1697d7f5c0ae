package kube

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tokenGate accepts only the tokens in its set.
type tokenGate struct {
	mu      sync.Mutex
	allowed map[string]bool
	seen    []string
}

func (g *tokenGate) allow(toks ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.allowed = map[string]bool{}
	for _, t := range toks {
		g.allowed[t] = true
	}
}

func (g *tokenGate) check(r *http.Request) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	g.seen = append(g.seen, tok)
	if !g.allowed[tok] {
		return http.StatusUnauthorized
	}
	return 0
}

func execFakeAPI(t *testing.T) (*fakeAPI, *tokenGate) {
	f := newFakeAPI(t)
	f.addPod(mkPod("dev", "web-1", nil))
	g := &tokenGate{}
	f.auth = g.check
	return f, g
}

func execConfig(f *fakeAPI, x *ExecConfig) *RestConfig {
	rc := f.config()
	rc.BearerToken = ""
	rc.Exec = x
	return rc
}

func TestExecMissingPluginShowsInstallHint(t *testing.T) {
	leakcheck.Check(t)
	f, _ := execFakeAPI(t)
	hint := "tunnels-test-auth is missing: install it with `brew install tunnels-test-auth`"
	for _, cmd := range []string{"tunnels-no-such-plugin-0b7c", filepath.Join(t.TempDir(), "bin", "plugin")} {
		t.Run(cmd, func(t *testing.T) {
			c := f.client(t, execConfig(f, &ExecConfig{APIVersion: execV1, Command: cmd, InstallHint: hint, InteractiveMode: "Never"}))
			_, err := c.GetPod(t.Context(), "dev", "web-1")
			if !errors.Is(err, exec.ErrNotFound) {
				t.Fatalf("GetPod error %v, want one matching exec.ErrNotFound", err)
			}
			if !strings.Contains(err.Error(), hint) {
				t.Errorf("error %q does not show the install hint", err)
			}
			_, err = c.Upgrade(t.Context(), http.MethodPost, "/api/v1/namespaces/dev/pods/web-1/portforward", nil)
			if !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), hint) {
				t.Errorf("Upgrade error %v, want exec.ErrNotFound with the hint", err)
			}
		})
	}
}

func TestExecExpiredCredentialIsRefreshed(t *testing.T) {
	leakcheck.Check(t)
	f, gate := execFakeAPI(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "expiry"), "1h")
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, err := NewClient(execConfig(f, pluginExec(t, dir)), ClientOptions{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	gate.allow("tok-1")
	for i := 0; i < 3; i++ {
		if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
			t.Fatalf("GetPod %d: %v", i, err)
		}
	}
	if n := pluginCount(t, dir); n != 1 {
		t.Fatalf("plugin ran %d times for 3 calls within the expiry, want 1 (cached)", n)
	}

	// An hour and a bit later the credential has expired: the same client,
	// not restarted, runs the plugin again, and the server now wants tok-2.
	mu.Lock()
	now = now.Add(61 * time.Minute)
	mu.Unlock()
	gate.allow("tok-2")
	if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
		t.Fatalf("GetPod after expiry: %v", err)
	}
	if n := pluginCount(t, dir); n != 2 {
		t.Fatalf("plugin ran %d times, want 2", n)
	}
	// The refresh came from the expiry, before any request: the server
	// never saw the expired token again (no 401 round trip).
	gate.mu.Lock()
	defer gate.mu.Unlock()
	if got := strings.Join(gate.seen, ","); got != "tok-1,tok-1,tok-1,tok-2" {
		t.Errorf("tokens sent %s, want tok-1 three times then tok-2", got)
	}
}

func TestExecPastExpiryRunsEveryTime(t *testing.T) {
	leakcheck.Check(t)
	f, gate := execFakeAPI(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "expiry"), "-1m")
	c := f.client(t, execConfig(f, pluginExec(t, dir)))
	gate.allow("tok-1", "tok-2")
	for i := 0; i < 2; i++ {
		if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
			t.Fatalf("GetPod %d: %v", i, err)
		}
	}
	if n := pluginCount(t, dir); n != 2 {
		t.Errorf("plugin ran %d times, want 2 (its credential was already expired)", n)
	}
}

func TestExecRerunOn401(t *testing.T) {
	leakcheck.Check(t)
	f, gate := execFakeAPI(t)
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/portforward") {
			if gate.check(r) != 0 {
				writeStatus(w, 401, "Unauthorized", "Unauthorized")
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n"))
			brw.Flush()
			conn.Close()
			return
		}
		f.serve(w, r)
	})
	dir := t.TempDir()
	c := f.client(t, execConfig(f, pluginExec(t, dir)))

	gate.allow("tok-1")
	if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
		t.Fatalf("GetPod: %v", err)
	}
	// The server revokes tok-1 (the plugin would now mint tok-2): the next
	// call gets a 401, runs the plugin again and succeeds, once.
	gate.allow("tok-2")
	if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
		t.Fatalf("GetPod after revocation: %v", err)
	}
	if n := pluginCount(t, dir); n != 2 {
		t.Fatalf("plugin ran %d times, want 2", n)
	}
	gate.allow("tok-3")
	conn, err := c.Upgrade(t.Context(), http.MethodPost, "/api/v1/namespaces/dev/pods/web-1/portforward", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}})
	if err != nil {
		t.Fatalf("Upgrade after revocation: %v", err)
	}
	conn.Close()
	if n := pluginCount(t, dir); n != 3 {
		t.Fatalf("plugin ran %d times, want 3", n)
	}

	// A server that accepts nothing: one retry per call, then a 401 error.
	gate.allow()
	_, err = c.GetPod(t.Context(), "dev", "web-1")
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("GetPod error %v, want ErrUnauthorized", err)
	}
	for _, want := range []string{`"test-user"`, `"test-ctx"`, "credentials"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if n := pluginCount(t, dir); n != 4 {
		t.Errorf("plugin ran %d times, want 4 (one retry)", n)
	}
	_, err = c.Upgrade(t.Context(), http.MethodPost, "/api/v1/namespaces/dev/pods/web-1/portforward", nil)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Upgrade error %v, want ErrUnauthorized", err)
	}
	if n := pluginCount(t, dir); n != 5 {
		t.Errorf("plugin ran %d times, want 5 (one retry)", n)
	}
}

func TestExecClusterInfoAndEnv(t *testing.T) {
	leakcheck.Check(t)
	f, gate := execFakeAPI(t)
	gate.allow("tok-1")
	dir := t.TempDir()
	x := pluginExec(t, dir)
	x.ProvideClusterInfo = true
	x.ClusterConfig = []byte(`{"audience":"k8s"}`)
	rc := execConfig(f, x)
	rc.TLSServerName = "localhost"
	c := f.client(t, rc)
	if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "info-1"))
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		APIVersion, Kind string
		Spec             struct {
			Interactive bool
			Cluster     struct {
				Server                   string          `json:"server"`
				TLSServerName            string          `json:"tls-server-name"`
				CertificateAuthorityData string          `json:"certificate-authority-data"`
				Config                   json.RawMessage `json:"config"`
			}
		}
	}
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("KUBERNETES_EXEC_INFO %s: %v", b, err)
	}
	ca, _ := base64.StdEncoding.DecodeString(info.Spec.Cluster.CertificateAuthorityData)
	if info.Kind != "ExecCredential" || info.APIVersion != execV1 || info.Spec.Interactive ||
		info.Spec.Cluster.Server != f.srv.URL || info.Spec.Cluster.TLSServerName != "localhost" ||
		string(ca) != string(f.pki.PEM) || string(info.Spec.Cluster.Config) != `{"audience":"k8s"}` {
		t.Errorf("KUBERNETES_EXEC_INFO = %s", b)
	}
}

func TestExecErrors(t *testing.T) {
	leakcheck.Check(t)
	f, gate := execFakeAPI(t)
	gate.allow("tok-1")

	t.Run("interactive always", func(t *testing.T) {
		x := pluginExec(t, t.TempDir())
		x.InteractiveMode = "Always"
		_, err := f.client(t, execConfig(f, x)).GetPod(t.Context(), "dev", "web-1")
		if !errors.Is(err, ErrExecInteractive) {
			t.Errorf("error %v, want ErrExecInteractive", err)
		}
	})
	t.Run("plugin fails", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "fail"), "error: you must log in with `tunnels-auth login`")
		_, err := f.client(t, execConfig(f, pluginExec(t, dir))).GetPod(t.Context(), "dev", "web-1")
		if err == nil || !strings.Contains(err.Error(), "you must log in") {
			t.Errorf("error %v, want the plugin's stderr", err)
		}
	})
	t.Run("apiVersion mismatch", func(t *testing.T) {
		x := pluginExec(t, t.TempDir())
		x.APIVersion = execV1beta1
		_, err := f.client(t, execConfig(f, x)).GetPod(t.Context(), "dev", "web-1")
		if err == nil || !strings.Contains(err.Error(), "apiVersion") {
			t.Errorf("error %v, want an apiVersion mismatch", err)
		}
	})
	t.Run("v1beta1", func(t *testing.T) {
		x := pluginExec(t, t.TempDir())
		x.APIVersion = execV1beta1
		x.InteractiveMode = ""
		x.Env = append(x.Env, ExecEnvVar{Name: "TUNNELS_TEST_PLUGIN_VERSION", Value: execV1beta1})
		if _, err := f.client(t, execConfig(f, x)).GetPod(t.Context(), "dev", "web-1"); err != nil {
			t.Errorf("v1beta1 plugin: %v", err)
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := f.client(t, execConfig(f, pluginExec(t, t.TempDir()))).GetPod(ctx, "dev", "web-1")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	})
}

func TestExecClientCertificate(t *testing.T) {
	leakcheck.Check(t)
	f := newFakeAPI(t)
	f.addPod(mkPod("dev", "web-1", nil))
	f.auth = func(r *http.Request) int {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "exec-user" {
			return http.StatusUnauthorized
		}
		return 0
	}
	dir := t.TempDir()
	cert, key := f.pki.ClientCert(t, "exec-user")
	writeFile(t, filepath.Join(dir, "cert"), string(cert))
	writeFile(t, filepath.Join(dir, "key"), string(key))
	c := f.client(t, execConfig(f, pluginExec(t, dir)))
	if _, err := c.GetPod(t.Context(), "dev", "web-1"); err != nil {
		t.Fatalf("GetPod with the plugin's client certificate: %v", err)
	}
}
