package kubeconfig

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// seen is what a request carried that authenticates or impersonates.
type seen struct {
	Prefix        string // server path prefix before /api
	Authorization string
	Impersonation []string // Impersonate-* headers, "Name: value", sorted
	ClientCert    string   // sha256 of the leaf certificate presented, "" if none
}

// recorder is an API server that answers GET .../namespaces/NS/pods/probe
// with a pod and remembers the last request per namespace.
type recorder struct {
	mu   sync.Mutex
	last map[string]seen
}

func newRecorder() *recorder { return &recorder{last: map[string]seen{}} }

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	prefix, rest, ok := strings.Cut(req.URL.Path, "/api/v1/namespaces/")
	if !ok {
		http.NotFound(w, req)
		return
	}
	ns, _, _ := strings.Cut(rest, "/")
	s := seen{Prefix: prefix, Authorization: req.Header.Get("Authorization")}
	for k, vv := range req.Header {
		if strings.HasPrefix(k, "Impersonate-") {
			for _, v := range vv {
				s.Impersonation = append(s.Impersonation, k+": "+v)
			}
		}
	}
	sort.Strings(s.Impersonation)
	if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
		sum := sha256.Sum256(req.TLS.PeerCertificates[0].Raw)
		s.ClientCert = hex.EncodeToString(sum[:])
	}
	r.mu.Lock()
	r.last[ns] = s
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"kind": "Pod", "apiVersion": "v1",
		"metadata": map[string]any{"name": "probe", "namespace": ns, "uid": "u-1"},
		"status":   map[string]any{"phase": "Running"},
	})
}

func (r *recorder) get(ns string) (seen, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.last[ns]
	return s, ok
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.last = map[string]seen{}
	r.mu.Unlock()
}
