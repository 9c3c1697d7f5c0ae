package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/internal/testpki"
	"github.com/tunnels-dev/tunnels/internal/testproxy"
	"github.com/tunnels-dev/tunnels/kube"
	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// refusingProxy is a TLS reverse proxy in front of the test apiserver, as
// corporate proxies, ingress controllers and load balancers are: it passes
// requests and upgrades through, except upgrades whose Upgrade header
// names refuse, which it answers with 403 and a plain-text body of its own.
type refusingProxy struct {
	srv      *http.Server
	url      string
	ca       *testpki.CA
	refused  atomic.Int32
	upgrades atomic.Int32 // upgrades passed through
}

// refusalText is the body of the proxy's refusal.
const refusalText = "upgrade refused by the corporate proxy"

func startRefusingProxy(t *testing.T, c *cluster.Cluster, refuse string) *refusingProxy {
	t.Helper()
	api, err := url.Parse(c.Server)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(c.Dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	p := &refusingProxy{ca: testpki.New(t)}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(api) },
		// HTTP/1.1 to the apiserver: an upgrade cannot cross HTTP/2.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
	}
	srv := p.ca.StartServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if up := r.Header.Get("Upgrade"); up != "" {
			if strings.Contains(strings.ToLower(up), refuse) {
				p.refused.Add(1)
				http.Error(w, refusalText, http.StatusForbidden)
				return
			}
			p.upgrades.Add(1)
		}
		rp.ServeHTTP(w, r)
	}), "127.0.0.1")
	p.url = srv.URL
	return p
}

// kubeconfig writes a kubeconfig for the limited (token) user that reaches
// the apiserver through the proxy: the proxy ends TLS, so a client
// certificate could not pass it, and a bearer token does.
func (p *refusingProxy) kubeconfig(t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "proxy-ca.crt")
	writeFile(t, ca, string(p.ca.PEM))
	path := filepath.Join(dir, "kubeconfig")
	writeFile(t, path, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: behind-proxy
  cluster: {server: %q, certificate-authority: %q}
users:
- name: limited
  user: {token: %q}
contexts:
- name: behind-proxy
  context: {cluster: behind-proxy, user: limited, namespace: %s}
current-context: behind-proxy
`, p.url, ca, c.LimitedToken, c.LimitedNamespace))
	return path
}

// limitedEchoPod starts an echo pod in the limited user's namespace.
func limitedEchoPod(t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	pod := uniqueName("echo")
	echo := cluster.EchoServer(t)
	c.Pod(t, c.LimitedNamespace, pod, cluster.PodOptions{
		Ports:   []corev1.ContainerPort{{Name: "echo", ContainerPort: 80}},
		Forward: map[int32]string{80: echo},
	})
	return pod
}

func TestTransportBehindAProxyRefusingSPDY(t *testing.T) {
	c := cluster.Start(t)
	pod := limitedEchoPod(t, c)
	p := startRefusingProxy(t, c, "spdy")
	kc := kubeClient(t, p.kubeconfig(t, c))
	for _, tr := range []forward.Transport{forward.TransportWebSocket, forward.TransportAuto} {
		t.Run(string(tr), func(t *testing.T) {
			conn := dialTransport(t, upgrader(kc), c.LimitedNamespace, pod, tr)
			if got := conn.Transport(); got != forward.TransportWebSocket {
				t.Fatalf("transport: got %s, want websocket", got)
			}
			hashEcho(t, serveLocal(t, conn, 80), 1<<20, 7)
		})
	}
	t.Run("spdy", func(t *testing.T) {
		refused := p.refused.Load()
		_, err := forward.Dial(t.Context(), upgrader(kc), c.LimitedNamespace, pod, forward.Options{Transport: forward.TransportSPDY})
		if err == nil {
			t.Fatal("dial over spdy through a proxy that refuses SPDY: got a connection")
		}
		var ue *kube.UpgradeError
		if !errors.As(err, &ue) || ue.StatusCode != http.StatusForbidden ||
			!strings.Contains(err.Error(), refusalText) || !strings.Contains(err.Error(), "not an answer of the API server") {
			t.Fatalf("dial over spdy: got %v, want the proxy's 403 quoted and named as not the API server's", err)
		}
		if p.refused.Load() != refused+1 {
			t.Fatalf("the proxy refused %d upgrades, want exactly the SPDY one", p.refused.Load()-refused)
		}
	})
}

func TestTransportAutoFallsBackBehindAProxyRefusingWebSocket(t *testing.T) {
	c := cluster.Start(t)
	pod := limitedEchoPod(t, c)
	p := startRefusingProxy(t, c, "websocket")
	kubeconfig := p.kubeconfig(t, c)

	t.Run("websocket fails", func(t *testing.T) {
		_, err := forward.Dial(t.Context(), upgrader(kubeClient(t, kubeconfig)), c.LimitedNamespace, pod, forward.Options{Transport: forward.TransportWebSocket})
		if err == nil || !strings.Contains(err.Error(), refusalText) {
			t.Fatalf("dial over websocket through a proxy that refuses it: got %v, want the proxy's refusal", err)
		}
	})
	t.Run("tunnels up with auto uses spdy", func(t *testing.T) {
		dir := t.TempDir()
		up := startUp(t, c, dir, fmt.Sprintf("version: 1\ntunnels:\n  echo: {pod: %s, ports: [':80']}\n", pod), "--kubeconfig", kubeconfig)
		addr := up.waitReady("echo", "80")
		d := up.waitStatus("transport", func(d *statusDoc) bool { r, ok := d.row("echo", "80"); return ok && r.Transport != "" })
		if r, _ := d.row("echo", "80"); r.Transport != "spdy" {
			t.Fatalf("status transport: got %q, want spdy after the fallback", r.Transport)
		}
		hashEcho(t, addr, 1<<20, 8)
		if p.refused.Load() == 0 || p.upgrades.Load() == 0 {
			t.Fatalf("the proxy refused %d and passed %d upgrades; want the websocket refused and spdy passed", p.refused.Load(), p.upgrades.Load())
		}
		up.stop()
	})
	t.Run("KUBECTL_PORT_FORWARD_WEBSOCKETS=false skips websocket", func(t *testing.T) {
		t.Setenv("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
		refused := p.refused.Load()
		up := startUp(t, c, t.TempDir(), fmt.Sprintf("version: 1\ntunnels:\n  echo: {pod: %s, ports: [':80']}\n", pod), "--kubeconfig", kubeconfig)
		addr := up.waitReady("echo", "80")
		d := up.waitStatus("transport", func(d *statusDoc) bool { r, ok := d.row("echo", "80"); return ok && r.Transport != "" })
		if r, _ := d.row("echo", "80"); r.Transport != "spdy" {
			t.Fatalf("status transport: got %q, want spdy", r.Transport)
		}
		hashEcho(t, addr, 1<<20, 12)
		if got := p.refused.Load() - refused; got != 0 {
			t.Fatalf("the proxy refused %d websocket upgrades, want none tried", got)
		}
		up.stop()
	})
}

// TestTransportThroughForwardingProxies: both transports through a real
// forwarding proxy, HTTP CONNECT and SOCKS5, named by the kubeconfig's
// proxy-url; TLS goes end to end, so the admin's client certificate works.
func TestTransportThroughForwardingProxies(t *testing.T) {
	c := cluster.Start(t)
	ns, pod := echoPod(t, c)
	admin, err := os.ReadFile(c.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, socks := range []bool{false, true} {
		p := testproxy.Start(t, testproxy.Options{SOCKS5: socks})
		kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
		writeFile(t, kubeconfig, strings.Replace(string(admin), "    server: ", "    proxy-url: "+p.URL()+"\n    server: ", 1))
		kc := kubeClient(t, kubeconfig)
		for _, tr := range []forward.Transport{forward.TransportWebSocket, forward.TransportSPDY} {
			t.Run(fmt.Sprintf("%s/%s", strings.Split(p.URL(), ":")[0], tr), func(t *testing.T) {
				before := p.Tunnels()
				conn := dialTransport(t, upgrader(kc), ns, pod, tr)
				if conn.Transport() != tr {
					t.Fatalf("transport: got %s, want %s", conn.Transport(), tr)
				}
				hashEcho(t, serveLocal(t, conn, 80), 1<<20, 9)
				if p.Tunnels() <= before {
					t.Fatalf("the proxy opened no tunnel: the connection did not go through it")
				}
			})
		}
	}
}

// TestForwardHonoursHTTPSProxy: `tunnels forward` takes HTTPS_PROXY from
// its environment. The server is named kubernetes.default.svc, which only
// the proxy resolves (to 127.0.0.1): nothing reaches it except through the
// proxy. Loopback servers are never proxied, so the name matters.
func TestForwardHonoursHTTPSProxy(t *testing.T) {
	c := cluster.Start(t)
	ns, pod := echoPod(t, c)
	p := testproxy.Start(t, testproxy.Options{})
	admin, err := os.ReadFile(c.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	api, err := url.Parse(c.Server)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	writeFile(t, kubeconfig, strings.Replace(string(admin), c.Server, "https://kubernetes.default.svc:"+api.Port(), 1))
	t.Setenv("HTTPS_PROXY", p.URL())
	t.Setenv("NO_PROXY", "")
	for _, tr := range []string{"websocket", "spdy"} {
		t.Run(tr, func(t *testing.T) {
			before := p.Tunnels()
			f := startForwardWith(t, cluster.TunnelsBinary(t), c, 1, "--kubeconfig", kubeconfig, "--transport", tr, "-n", ns, "pod/"+pod, ":80")
			hashEcho(t, f.addr("80"), 1<<20, 10)
			if p.Tunnels() <= before {
				t.Fatal("the proxy opened no tunnel")
			}
			f.interrupt()
		})
	}
}
