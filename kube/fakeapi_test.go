package kube

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tunnels-dev/tunnels/internal/testpki"
)

// fakeAPI is a tiny API server serving canned objects over TLS.
type fakeAPI struct {
	t   testing.TB
	pki *testpki.CA
	srv *httptest.Server

	// auth, if set, returns the status to answer instead of serving (0 to
	// serve); it sees every request.
	auth func(r *http.Request) int
	// watch receives the events served to watch requests.
	watch chan rawEvent

	mu         sync.Mutex
	namespaces map[string]bool      // guarded by mu; those that exist ("dev" and "default" at first)
	pods       []Pod                // guarded by mu
	services   map[string]*Service  // guarded by mu; by namespace/name
	workloads  map[string]*Workload // guarded by mu; by resource/namespace/name
	selectors  []string             // guarded by mu; labelSelectors asked for
}

func newFakeAPI(t testing.TB) *fakeAPI { return newFakeAPIHosts(t) }

// newFakeAPIHosts is newFakeAPI with a certificate valid for extra hosts too.
func newFakeAPIHosts(t testing.TB, hosts ...string) *fakeAPI {
	f := &fakeAPI{t: t, pki: testpki.New(t), namespaces: map[string]bool{"dev": true, "default": true}, services: map[string]*Service{}, workloads: map[string]*Workload{}, watch: make(chan rawEvent)}
	f.srv = f.pki.StartServer(t, http.HandlerFunc(f.serve), append([]string{"127.0.0.1", "localhost"}, hosts...)...)
	return f
}

// config returns a RestConfig for the fake server with a token.
func (f *fakeAPI) config() *RestConfig {
	return &RestConfig{Context: "test-ctx", User: "test-user", Namespace: "default", Server: f.srv.URL, CAData: f.pki.PEM, BearerToken: "secret-token"}
}

func (f *fakeAPI) client(t testing.TB, rc *RestConfig) *Client {
	t.Helper()
	c, err := NewClient(rc, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func (f *fakeAPI) addPod(p Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods = append(f.pods, p)
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "reason": reason, "code": code})
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	if f.auth != nil {
		if code := f.auth(r); code != 0 {
			writeStatus(w, code, http.StatusText(code), "denied by test")
			return
		}
	}
	if strings.HasSuffix(r.URL.Path, "/portforward") {
		f.serveUpgrade(w, r)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// /api/v1/namespaces/NS/RES[/NAME] or /apis/apps/v1/namespaces/NS/RES/NAME
	if parts[0] == "apis" && len(parts) > 2 {
		parts = parts[2:] // drop group so indexes match
	} else if parts[0] == "api" {
		parts = parts[1:]
	}
	if len(parts) == 3 && parts[1] == "namespaces" {
		f.mu.Lock()
		ok := f.namespaces[parts[2]]
		f.mu.Unlock()
		if !ok {
			writeStatus(w, 404, "NotFound", `namespaces "`+parts[2]+`" not found`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"kind": "Namespace", "apiVersion": "v1", "metadata": map[string]any{"name": parts[2]}})
		return
	}
	if len(parts) < 4 || parts[1] != "namespaces" {
		writeStatus(w, 404, "NotFound", "the server could not find the requested resource")
		return
	}
	ns, res := parts[2], parts[3]
	name := ""
	if len(parts) > 4 {
		name = parts[4]
	}
	f.mu.Lock()
	var obj any
	switch {
	case res == "pods" && name == "" && r.URL.Query().Get("watch") == "true":
		f.mu.Unlock()
		f.serveWatch(w, r)
		return
	case res == "pods" && name == "":
		sel := r.URL.Query().Get("labelSelector")
		f.selectors = append(f.selectors, sel)
		var l PodList
		l.Metadata.ResourceVersion = "100"
		for _, p := range f.pods {
			if p.Metadata.Namespace == ns && matchSelector(sel, p.Metadata.Labels) {
				l.Items = append(l.Items, p)
			}
		}
		obj = &l
	case res == "pods":
		for i := range f.pods {
			if p := &f.pods[i]; p.Metadata.Namespace == ns && p.Metadata.Name == name {
				obj = p
			}
		}
	case res == "services":
		if s, ok := f.services[ns+"/"+name]; ok {
			obj = s
		}
	case res == "deployments" || res == "statefulsets":
		if wl, ok := f.workloads[res+"/"+ns+"/"+name]; ok {
			obj = wl
		}
	}
	f.mu.Unlock()
	if obj == nil {
		writeStatus(w, 404, "NotFound", res+` "`+name+`" not found`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(obj)
}

// serveUpgrade switches to an echo protocol, greeting with HELLO in the
// same write as the 101.
func (f *fakeAPI) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		f.t.Errorf("hijack: %v", err)
		return
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\nHELLO"); err != nil {
		return
	}
	io.Copy(conn, brw)
}

func (f *fakeAPI) serveWatch(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(200)
	http.NewResponseController(w).Flush()
	enc := json.NewEncoder(w)
	for {
		select {
		case ev, ok := <-f.watch:
			if !ok {
				return
			}
			enc.Encode(ev)
			http.NewResponseController(w).Flush()
		case <-r.Context().Done():
			return
		}
	}
}

// matchSelector implements enough of the label selector grammar for tests:
// k=v, k!=v, k in (a,b), k notin (a,b), k, !k.
func matchSelector(sel string, labels map[string]string) bool {
	if sel == "" {
		return true
	}
	for _, term := range splitTerms(sel) {
		term = strings.TrimSpace(term)
		switch {
		case strings.Contains(term, " notin "):
			k, vs, _ := strings.Cut(term, " notin ")
			if v, ok := labels[k]; ok && inSet(v, vs) {
				return false
			}
		case strings.Contains(term, " in "):
			k, vs, _ := strings.Cut(term, " in ")
			if v, ok := labels[k]; !ok || !inSet(v, vs) {
				return false
			}
		case strings.Contains(term, "!="):
			k, v, _ := strings.Cut(term, "!=")
			if labels[k] == v {
				return false
			}
		case strings.Contains(term, "="):
			k, v, _ := strings.Cut(term, "=")
			if got, ok := labels[k]; !ok || got != v {
				return false
			}
		case strings.HasPrefix(term, "!"):
			if _, ok := labels[term[1:]]; ok {
				return false
			}
		default:
			if _, ok := labels[term]; !ok {
				return false
			}
		}
	}
	return true
}

func splitTerms(sel string) []string {
	var terms []string
	depth, start := 0, 0
	for i, c := range sel {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				terms = append(terms, sel[start:i])
				start = i + 1
			}
		}
	}
	return append(terms, sel[start:])
}

func inSet(v, set string) bool {
	set = strings.Trim(strings.TrimSpace(set), "()")
	for _, s := range strings.Split(set, ",") {
		if strings.TrimSpace(s) == v {
			return true
		}
	}
	return false
}
