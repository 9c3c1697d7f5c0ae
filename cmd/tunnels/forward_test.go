package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/spdystream"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in   string
		want config.Target
	}{
		{"web-0", config.Target{Kind: config.KindPod, Name: "web-0"}},
		{"pod/web-0", config.Target{Kind: config.KindPod, Name: "web-0"}},
		{"pods/web-0", config.Target{Kind: config.KindPod, Name: "web-0"}},
		{"svc/web", config.Target{Kind: config.KindService, Name: "web"}},
		{"service/web", config.Target{Kind: config.KindService, Name: "web"}},
		{"deploy/web", config.Target{Kind: config.KindDeployment, Name: "web"}},
		{"deployment/web", config.Target{Kind: config.KindDeployment, Name: "web"}},
		{"sts/db", config.Target{Kind: config.KindStatefulSet, Name: "db"}},
		{"statefulset/db", config.Target{Kind: config.KindStatefulSet, Name: "db"}},
	}
	for _, tt := range tests {
		got, err := parseTarget(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseTarget(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "svc/", "job/x", "pod/a/b", "/x"} {
		if got, err := parseTarget(bad); err == nil {
			t.Errorf("parseTarget(%q) = %v, want an error", bad, got)
		}
	}
}

func TestForwardUsageErrors(t *testing.T) {
	tests := []struct {
		args     []string
		wantErrs []string
	}{
		{[]string{"forward", "pod/web", "80:"}, []string{`port spec "80:"`, "missing remote port"}},
		{[]string{"forward", "pod/web", "8080", "70000"}, []string{`port spec "70000"`, "out of range"}},
		{[]string{"forward", "job/web", "80"}, []string{`"job/web"`, "unknown kind"}},
		{[]string{"forward", "pod/web"}, []string{"at least one port spec"}},
		{[]string{"forward", "--address", "example.com", "pod/web", "80"}, []string{`"example.com"`}},
		{[]string{"forward", "--nope", "pod/web", "80"}, []string{"nope"}},
	}
	for _, tt := range tests {
		code, _, stderr := runCmd(t, tt.args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d", tt.args, code, exitUsage)
		}
		for _, s := range tt.wantErrs {
			if !strings.Contains(stderr, s) {
				t.Errorf("%v: stderr %q does not contain %q", tt.args, stderr, s)
			}
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: &out, getenv: func(string) string { return "" }}
	fs := newFlagSet(e, "x", "x", "x")
	n := fs.String("n", "", "")
	var addrs addressList
	fs.Var(&addrs, "address", "")
	pos, _, done := parseInterspersed(e, fs, []string{"svc/web", "-n", "dev", "80", "--address", "127.0.0.1,::1", "--", "-9"})
	if done {
		t.Fatalf("parse stopped: %s", out.String())
	}
	if got := strings.Join(pos, " "); got != "svc/web 80 -9" || *n != "dev" || addrs.String() != "127.0.0.1,::1" {
		t.Errorf("positional %q, -n %q, --address %q", got, *n, addrs.String())
	}
}

// fakeAPI is an API server with one pod, "web" in "default", whose port 80
// echoes, over the port-forward protocol.
type fakeAPI struct {
	srv    *httptest.Server
	mu     sync.Mutex
	sc     []*spdystream.Connection
	closed bool
	wg     sync.WaitGroup
}

func newFakeAPI(t *testing.T) *fakeAPI {
	a := &fakeAPI{}
	a.srv = httptest.NewTLSServer(a)
	t.Cleanup(func() {
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()
		a.srv.Close()
		a.mu.Lock()
		for _, c := range a.sc {
			c.Close()
		}
		a.mu.Unlock()
		a.wg.Wait()
	})
	return a
}

const fakePod = `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web","namespace":"default","uid":"u1"},
"spec":{"nodeName":"n1","containers":[{"name":"c","ports":[{"name":"http","containerPort":80,"protocol":"TCP"}]}]},
"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}`

// ServeHTTP serves namespace default, the pod and its port-forward
// endpoint. (A missing pod makes the resolver ask for its namespace.)
func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/default":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"default"}}`)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/default/pods/web":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, fakePod)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/default/pods/web/portforward":
		// A server that speaks SPDY only refuses the WebSocket upgrade
		// without a Kubernetes Status: auto falls back to SPDY.
		http.Error(w, "unable to upgrade: websocket not supported", http.StatusBadRequest)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/namespaces/default/pods/web/portforward":
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n")
		// httptest does not wait for hijacked connections: wg.Add happens
		// under mu, before the cleanup marks the server closed and waits.
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			conn.Close()
			return
		}
		sc, err := spdystream.NewConnection(&readerConn{Conn: conn, r: brw.Reader}, true)
		if err != nil {
			a.mu.Unlock()
			conn.Close()
			return
		}
		a.sc = append(a.sc, sc)
		a.wg.Add(1)
		a.mu.Unlock()
		go func() {
			defer a.wg.Done()
			var streams sync.WaitGroup
			sc.Serve(func(s *spdystream.Stream) {
				if s.SendReply(http.Header{}, false) != nil {
					// Broken connection: forget the stream, or spdystream's
					// handler blocks for ever on the client's reset of it.
					_ = s.Reset()
					return
				}
				streams.Add(1)
				go func() {
					// Echo the data stream; the error stream stays empty.
					defer streams.Done()
					if s.Headers().Get("streamType") == "data" {
						io.Copy(s, s)
					} else {
						io.Copy(io.Discard, s)
					}
					s.Close()
				}()
			})
			sc.Close()
			conn.Close()
			sc.Wait(time.Second)
			streams.Wait()
		}()
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"kind":"Status","message":"%s not found","reason":"NotFound"}`, r.URL.Path)
	}
}

type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (a *fakeAPI) kubeconfig(t *testing.T) string {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
	path := filepath.Join(t.TempDir(), "kubeconfig")
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: u
  user:
    token: secret-token
contexts:
- name: fake
  context: {cluster: fake, user: u, namespace: default}
current-context: fake
`, a.srv.URL, b64(ca))
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var forwardingLine = regexp.MustCompile(`Forwarding from (\S+) -> (\S+)`)

func TestForwardCommand(t *testing.T) {
	leakcheck.Check(t)
	a := newFakeAPI(t)
	kubeconfig := a.kubeconfig(t)
	var stdout, stderr syncBuffer
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, e, []string{"forward", "--kubeconfig", kubeconfig, "pod/web", ":http", "--address", "127.0.0.1"})
	}()

	var local string
	deadline := time.Now().Add(10 * time.Second)
	for local == "" {
		if m := forwardingLine.FindStringSubmatch(stdout.String()); m != nil {
			if m[2] != "80" {
				t.Fatalf("forwarding to %s, want the number behind http, 80", m[2])
			}
			local = m[1]
			break
		}
		select {
		case code := <-exit:
			t.Fatalf("exited %d early; stderr: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Forwarding line; stdout %q, stderr %q", stdout.String(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := net.Dial("tcp", local)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "hello")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo = %q, %v", got, err)
	}

	cancel()
	select {
	case code := <-exit:
		if code != exitOK {
			t.Errorf("exit %d after interrupt, want 0; stderr: %s", code, stderr.String())
		}
	case <-time.After(2 * time.Second):
		t.Fatal("did not exit within 2s of the interrupt")
	}
	if strings.Contains(stderr.String(), "secret-token") {
		t.Error("the token appeared in the output")
	}
}

func TestForwardCommandFirstDialFails(t *testing.T) {
	leakcheck.Check(t)
	a := newFakeAPI(t)
	kubeconfig := a.kubeconfig(t)
	code, _, stderr := runCmd(t, "forward", "--kubeconfig", kubeconfig, "pod/missing", ":80", "--address", "127.0.0.1")
	if code != exitFail {
		t.Errorf("exit %d, want %d", code, exitFail)
	}
	if !strings.Contains(stderr, "missing") || !strings.Contains(stderr, "404") {
		t.Errorf("stderr %q does not explain the failure", stderr)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
