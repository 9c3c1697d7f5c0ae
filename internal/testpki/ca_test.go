package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"testing"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestServerCert(t *testing.T) {
	ca := New(t)
	certPEM, keyPEM := ca.ServerCert(t, "127.0.0.1", "kube.test")
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("key pair: %v", err)
	}
	cert := parse(t, certPEM)
	tests := []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1", true},
		{"kube.test", true},
		{"localhost", false},
		{"::1", false},
	}
	for _, tt := range tests {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: tt.host, Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if got := err == nil; got != tt.ok {
			t.Errorf("verify for %s: %v, want ok %t", tt.host, err, tt.ok)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("a server certificate verifies for client authentication")
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "kube.test", Roots: New(t).Pool()}); err == nil {
		t.Error("a certificate verifies against another CA")
	}
}

func TestClientCert(t *testing.T) {
	ca := New(t)
	a, _ := ca.ClientCert(t, "alice")
	b, _ := ca.ClientCert(t, "bob")
	alice, bob := parse(t, a), parse(t, b)
	if _, err := alice.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify client certificate: %v", err)
	}
	if alice.Subject.CommonName != "alice" || len(alice.Subject.Organization) != 1 || alice.Subject.Organization[0] != "test-group" {
		t.Errorf("subject = %v, want CN alice, O test-group", alice.Subject)
	}
	if alice.SerialNumber.Cmp(bob.SerialNumber) == 0 || alice.SerialNumber.Cmp(ca.Cert.SerialNumber) == 0 {
		t.Errorf("serial numbers repeat: CA %v, alice %v, bob %v", ca.Cert.SerialNumber, alice.SerialNumber, bob.SerialNumber)
	}
}

func TestStartServer(t *testing.T) {
	leakcheck.Check(t)
	ca := New(t)
	srv := ca.StartServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := "anonymous"
		if len(r.TLS.PeerCertificates) > 0 {
			user = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		io.WriteString(w, r.Proto+" "+user)
	}), "127.0.0.1")
	certPEM, keyPEM := ca.ClientCert(t, "alice")
	clientCert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		certs []tls.Certificate
		want  string
	}{
		{"anonymous", nil, "HTTP/2.0 anonymous"},
		{"client certificate", []tls.Certificate{clientCert}, "HTTP/2.0 alice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: tt.certs}, ForceAttemptHTTP2: true}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if got := string(b); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
