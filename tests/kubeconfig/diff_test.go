// Package kubeconfig checks that package kube resolves kubeconfig files as
// client-go's clientcmd does: the same server, CA, client certificate,
// credentials on the wire, TLS server name, proxy, impersonation, namespace
// and current-context, for a corpus of kubeconfigs in testdata/.
package kubeconfig

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tunnels-dev/tunnels/internal/testpki"
	"github.com/tunnels-dev/tunnels/internal/testproxy"
	"github.com/tunnels-dev/tunnels/kube"
)

// pluginPath is the testplugin binary built by TestMain.
var pluginPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kubeconfig-diff-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginPath = filepath.Join(dir, "testplugin")
	goBin := filepath.Join(goruntime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	build := exec.Command(goBin, "build", "-o", pluginPath, "./testplugin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build testplugin:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// caseSpec is a testdata/<case>/case.yaml.
type caseSpec struct {
	Description   string   `yaml:"description"`
	Kubeconfig    string   `yaml:"kubeconfig"`    // --kubeconfig, relative to the case
	KubeconfigEnv []string `yaml:"kubeconfigEnv"` // KUBECONFIG entries, relative to the case ("" kept)
	Home          bool     `yaml:"home"`          // HOME=<case>/home
	Context       string   `yaml:"context"`       // --context
	WantError     bool     `yaml:"wantError"`
	Proxy         string   `yaml:"proxy"` // http, https or socks5: that proxy must carry both clients
}

// tmplData fills the kubeconfig templates.
type tmplData struct {
	Server, NamedServer, HTTPServer string
	Port                            string // port of Server
	HTTPHostPort                    string // host:port of HTTPServer
	CAData                          string
	AliceCertData, AliceKeyData     string
	PKI, Plugin, State              string
	ProxyHTTP, ProxyHTTPS           string
	ProxySOCKS                      string
}

type env struct {
	pki     *testpki.CA
	rec     *recorder
	data    tmplData
	proxies map[string]*testproxy.Proxy
	files   map[string][]byte // pki files, by name
}

func setup(t *testing.T) *env {
	e := &env{pki: testpki.New(t), rec: newRecorder(), proxies: map[string]*testproxy.Proxy{}, files: map[string][]byte{}}
	main := e.pki.StartServer(t, e.rec, "127.0.0.1", "localhost", "kube.proxied.test")
	named := e.pki.StartServer(t, e.rec, "kube.internal")
	plain := httptest.NewServer(e.rec)
	t.Cleanup(plain.Close)
	_, port, _ := net.SplitHostPort(main.Listener.Addr().String())

	e.files["ca.crt"] = e.pki.PEM
	ac, ak := e.pki.ClientCert(t, "alice")
	bc, bk := e.pki.ClientCert(t, "bob")
	e.files["alice.crt"], e.files["alice.key"] = ac, ak
	e.files["bob.crt"], e.files["bob.key"] = bc, bk

	proxyCert := e.pki.ServerTLS(t, "127.0.0.1")
	e.proxies["http"] = testproxy.Start(t, testproxy.Options{})
	e.proxies["https"] = testproxy.Start(t, testproxy.Options{TLS: &tls.Config{Certificates: []tls.Certificate{proxyCert}}})
	e.proxies["socks5"] = testproxy.Start(t, testproxy.Options{SOCKS5: true})

	b64 := base64.StdEncoding.EncodeToString
	e.data = tmplData{
		Server:        main.URL,
		NamedServer:   named.URL,
		HTTPServer:    plain.URL,
		Port:          port,
		HTTPHostPort:  plain.Listener.Addr().String(),
		CAData:        b64(e.pki.PEM),
		AliceCertData: b64(ac),
		AliceKeyData:  b64(ak),
		Plugin:        pluginPath,
		ProxyHTTP:     e.proxies["http"].URL(),
		ProxyHTTPS:    e.proxies["https"].URL(),
		ProxySOCKS:    e.proxies["socks5"].URL(),
	}
	return e
}

// render copies a case into dir, filling templates, and adds pki/ and
// bin/testplugin next to it.
func (e *env) render(t *testing.T, src, dir string) tmplData {
	data := e.data
	data.PKI = filepath.Join(dir, "pki")
	data.State = filepath.Join(dir, "state")
	for _, d := range []string{data.PKI, data.State, filepath.Join(dir, "bin")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range e.files {
		if err := os.WriteFile(filepath.Join(data.PKI, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(pluginPath, filepath.Join(dir, "bin", "testplugin")); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "case.yaml" {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		tmpl, err := template.New(rel).Option("missingkey=error").Parse(string(raw))
		if err != nil {
			return err
		}
		var out bytes.Buffer
		if err := tmpl.Execute(&out, data); err != nil {
			return err
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		return os.WriteFile(dst, out.Bytes(), 0o600)
	})
	if err != nil {
		t.Fatalf("render %s: %v", src, err)
	}
	return data
}

func TestDifferential(t *testing.T) {
	e := setup(t)
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ent := range entries {
		if !ent.IsDir() {
			continue
		}
		n++
		t.Run(ent.Name(), func(t *testing.T) { e.runCase(t, filepath.Join("testdata", ent.Name())) })
	}
	if n < 15 {
		t.Errorf("corpus has %d cases, want at least 15", n)
	}
}

func (e *env) runCase(t *testing.T, src string) {
	raw, err := os.ReadFile(filepath.Join(src, "case.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var spec caseSpec
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatalf("case.yaml: %v", err)
	}
	t.Log(spec.Description)
	dir := t.TempDir()
	data := e.render(t, src, dir)

	// The same inputs for both: an environment for kube.Load, loading
	// rules for clientcmd (built as NewDefaultClientConfigLoadingRules
	// would from that environment).
	environ := map[string]string{"HOME": filepath.Join(dir, "home")}
	rules := &clientcmd.ClientConfigLoadingRules{}
	var explicit string
	if spec.Kubeconfig != "" {
		explicit = filepath.Join(dir, spec.Kubeconfig)
		rules.ExplicitPath = explicit
	}
	if len(spec.KubeconfigEnv) > 0 {
		var list []string
		for _, p := range spec.KubeconfigEnv {
			if p != "" {
				p = filepath.Join(dir, p)
			}
			list = append(list, p)
		}
		environ["KUBECONFIG"] = strings.Join(list, string(filepath.ListSeparator))
		if explicit == "" {
			seen := map[string]bool{}
			for _, p := range filepath.SplitList(environ["KUBECONFIG"]) {
				if !seen[p] {
					seen[p] = true
					rules.Precedence = append(rules.Precedence, p)
				}
			}
		}
	}
	if explicit == "" && len(spec.KubeconfigEnv) == 0 {
		rules.Precedence = []string{filepath.Join(dir, "home", ".kube", "config")}
	}

	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: spec.Context})
	theirs, theirErr := cc.ClientConfig()

	k, ourErr := kube.Load(kube.LoadOptions{
		Kubeconfig:   explicit,
		Getenv:       func(k string) string { return environ[k] },
		InClusterDir: filepath.Join(dir, "no-service-account"),
	})
	var ours *kube.RestConfig
	if ourErr == nil {
		ours, ourErr = k.RestConfig(spec.Context)
	}
	if (theirErr != nil) != (ourErr != nil) {
		t.Fatalf("clientcmd error: %v\nkube error: %v", theirErr, ourErr)
	}
	if spec.WantError != (ourErr != nil) {
		t.Fatalf("wantError %t, but error: %v", spec.WantError, ourErr)
	}
	if ourErr != nil {
		t.Logf("both refuse:\n  clientcmd: %v\n  kube:      %v", theirErr, ourErr)
		return
	}

	compareConfig(t, cc, theirs, k, ours, spec.Context)
	e.compareWire(t, theirs, ours, data, spec)
}

func compareConfig(t *testing.T, cc clientcmd.ClientConfig, theirs *rest.Config, k *kube.Kubeconfig, ours *kube.RestConfig, context string) {
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: kube %#v, clientcmd %#v", what, got, want)
		}
	}
	raw, err := cc.RawConfig()
	if err != nil {
		t.Fatal(err)
	}
	check("current-context", k.CurrentContext(), raw.CurrentContext)
	ns, _, err := cc.Namespace()
	if err != nil {
		t.Fatal(err)
	}
	check("namespace", k.Namespace(context), ns)
	check("RestConfig.Namespace", ours.Namespace, ns)

	base, _, err := rest.DefaultServerUrlFor(theirs)
	if err != nil {
		t.Fatal(err)
	}
	check("server", ours.Server, strings.TrimSuffix(base.String(), "/"))

	files := rest.CopyConfig(theirs)
	if err := rest.LoadTLSFiles(files); err != nil {
		t.Fatal(err)
	}
	check("CA PEM", string(ours.CAData), string(files.CAData))
	check("client certificate leaf", leaf(t, ours.CertData), leaf(t, files.CertData))
	check("client key", string(ours.KeyData), string(files.KeyData))
	check("tls-server-name", ours.TLSServerName, theirs.ServerName)
	check("insecure", ours.Insecure, theirs.Insecure)
	check("bearer token", ours.BearerToken, strings.TrimSpace(theirs.BearerToken))
	check("bearer token file", ours.BearerTokenFile, theirs.BearerTokenFile)
	check("username", ours.Username, theirs.Username)
	check("password", ours.Password, theirs.Password)
	check("impersonate user", ours.Impersonate, theirs.Impersonate.UserName)
	check("impersonate uid", ours.ImpersonateUID, theirs.Impersonate.UID)
	check("impersonate groups", nilIfEmpty(ours.ImpersonateGroups), nilIfEmpty(theirs.Impersonate.Groups))
	check("impersonate extra", len(ours.ImpersonateExtra) == 0, len(theirs.Impersonate.Extra) == 0)
	if len(theirs.Impersonate.Extra) > 0 {
		check("impersonate extra", ours.ImpersonateExtra, theirs.Impersonate.Extra)
	}

	proxy := ""
	if theirs.Proxy != nil {
		req, _ := http.NewRequest("GET", base.String(), nil)
		u, err := theirs.Proxy(req)
		if err != nil {
			t.Fatal(err)
		}
		if u != nil {
			proxy = u.String()
		}
	}
	check("proxy-url", ours.ProxyURL, proxy)

	check("exec set", ours.Exec != nil, theirs.ExecProvider != nil)
	if ours.Exec != nil && theirs.ExecProvider != nil {
		x, y := ours.Exec, theirs.ExecProvider
		check("exec apiVersion", x.APIVersion, y.APIVersion)
		check("exec command", x.Command, y.Command)
		check("exec args", nilIfEmpty(x.Args), nilIfEmpty(y.Args))
		var env []string
		for _, v := range x.Env {
			env = append(env, v.Name+"="+v.Value)
		}
		var wantEnv []string
		for _, v := range y.Env {
			wantEnv = append(wantEnv, v.Name+"="+v.Value)
		}
		check("exec env", env, wantEnv)
		check("exec installHint", x.InstallHint, y.InstallHint)
		check("exec provideClusterInfo", x.ProvideClusterInfo, y.ProvideClusterInfo)
		check("exec interactiveMode", x.InteractiveMode, string(y.InteractiveMode))
		check("exec cluster config", jsonValue(t, x.ClusterConfig), jsonValue(t, objectJSON(t, y.Config)))
	}
}

// compareWire sends one request with each client to the recording server
// and compares what arrived: path prefix, Authorization, impersonation
// headers and client certificate. Exec plugins run for real, and the
// KUBERNETES_EXEC_INFO they got is compared too.
func (e *env) compareWire(t *testing.T, theirs *rest.Config, ours *kube.RestConfig, data tmplData, spec caseSpec) {
	e.rec.reset()
	var before int
	if spec.Proxy != "" {
		before = e.proxies[spec.Proxy].Tunnels()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	c, err := kube.NewClient(ours, kube.ClientOptions{})
	if err != nil {
		t.Fatalf("kube.NewClient: %v", err)
	}
	defer c.Close()
	_, ourErr := c.GetPod(ctx, "ours", "probe")
	ourRuns := pluginRuns(data.State)

	hc, err := rest.HTTPClientFor(theirs)
	if err != nil {
		t.Fatalf("rest.HTTPClientFor: %v", err)
	}
	defer hc.CloseIdleConnections()
	base, _, _ := rest.DefaultServerUrlFor(theirs)
	req, _ := http.NewRequestWithContext(ctx, "GET", strings.TrimSuffix(base.String(), "/")+"/api/v1/namespaces/theirs/pods/probe", nil)
	var theirErr error
	resp, err := hc.Do(req)
	if err != nil {
		theirErr = err
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			theirErr = fmt.Errorf("status %s", resp.Status)
		}
	}
	theirRuns := pluginRuns(data.State)
	if (ourErr != nil) != (theirErr != nil) {
		t.Fatalf("request: kube %v, client-go %v", ourErr, theirErr)
	}
	if ourErr != nil {
		t.Fatalf("both requests failed: kube %v, client-go %v", ourErr, theirErr)
	}
	got, ok1 := e.rec.get("ours")
	want, ok2 := e.rec.get("theirs")
	if !ok1 || !ok2 {
		t.Fatalf("server saw kube %t, client-go %t", ok1, ok2)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("on the wire:\n  kube      %+v\n  client-go %+v", got, want)
	}
	t.Logf("on the wire: %+v", redactSeen(got))

	if ourRuns > 0 || theirRuns > ourRuns {
		if ourRuns != 1 || theirRuns != 2 {
			t.Errorf("exec plugin runs: kube %d, client-go %d; want 1 each", ourRuns, theirRuns-ourRuns)
		} else {
			check := func(n int) any {
				b, err := os.ReadFile(filepath.Join(data.State, "info-"+strconv.Itoa(n)+".json"))
				if err != nil {
					t.Fatal(err)
				}
				return jsonValue(t, b)
			}
			if a, b := check(1), check(2); !reflect.DeepEqual(a, b) {
				t.Errorf("KUBERNETES_EXEC_INFO:\n  kube      %v\n  client-go %v", a, b)
			}
		}
	}
	if spec.Proxy != "" {
		if n := e.proxies[spec.Proxy].Tunnels() - before; n < 2 {
			t.Errorf("%s proxy carried %d connections, want one per client", spec.Proxy, n)
		}
	}
}

func redactSeen(s seen) seen {
	if s.Authorization != "" {
		s.Authorization = s.Authorization[:strings.IndexByte(s.Authorization+" ", ' ')] + " …"
	}
	return s
}

func pluginRuns(state string) int {
	b, err := os.ReadFile(filepath.Join(state, "count"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func leaf(t *testing.T, pemBytes []byte) []byte {
	if len(pemBytes) == 0 {
		return nil
	}
	b, _ := pem.Decode(pemBytes)
	if b == nil {
		t.Fatalf("client certificate is not PEM")
	}
	return b.Bytes
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func jsonValue(t *testing.T, b []byte) any {
	if len(b) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("json %s: %v", b, err)
	}
	return v
}

func objectJSON(t *testing.T, o runtime.Object) []byte {
	if o == nil {
		return nil
	}
	if u, ok := o.(*runtime.Unknown); ok {
		return u.Raw
	}
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
