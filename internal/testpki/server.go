package testpki

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

// StartServer starts an HTTPS server for h on 127.0.0.1 with a certificate
// from the CA valid for exactly hosts, and closes it when the test ends. It
// offers HTTP/2, as an apiserver does, and verifies a client certificate
// signed by the CA when one is presented.
func (ca *CA) StartServer(t testing.TB, h http.Handler, hosts ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.ServerTLS(t, hosts...)},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		NextProtos:   []string{"h2", "http/1.1"},
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}
