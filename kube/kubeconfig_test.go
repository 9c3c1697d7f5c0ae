package kube

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeKubeconfig(t *testing.T, dir, name, content string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	writeFile(t, p, content)
	return p
}

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

const fileA = `apiVersion: v1
kind: Config
clusters:
- name: shared
  cluster:
    server: https://a.example:6443
    certificate-authority: ca.crt
contexts:
- name: a
  context: {cluster: shared, user: alice, namespace: team-a}
- name: both
  context: {cluster: shared, user: alice}
users:
- name: alice
  user:
    token: token-a
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: ./bin/auth
`

const fileB = `apiVersion: v1
kind: Config
current-context: b
clusters:
- name: shared
  cluster:
    server: https://b.example:6443
    insecure-skip-tls-verify: true
- name: only-b
  cluster:
    server: https://only-b.example
contexts:
- name: b
  context: {cluster: only-b, user: bob}
- name: both
  context: {cluster: only-b, user: bob, namespace: from-b}
users:
- name: alice
  user: {token: token-from-b}
- name: bob
  user: {username: bob, password: pw}
`

func TestLoadMerge(t *testing.T) {
	root := t.TempDir()
	a := writeKubeconfig(t, filepath.Join(root, "a"), "config", fileA)
	writeFile(t, filepath.Join(root, "a", "ca.crt"), "CA-A")
	b := writeKubeconfig(t, filepath.Join(root, "b"), "config", fileB)
	missing := filepath.Join(root, "missing")
	list := strings.Join([]string{"", missing, a, "", b, a}, string(filepath.ListSeparator))

	k, err := Load(LoadOptions{Getenv: envOf(map[string]string{"KUBECONFIG": list, "HOME": root})})
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Files(); len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("files %v, want [%s %s]", got, a, b)
	}
	if k.CurrentContext() != "b" {
		t.Errorf("current-context %q, want b (first file that sets it)", k.CurrentContext())
	}
	if got := strings.Join(k.Contexts(), ","); got != "a,b,both" {
		t.Errorf("contexts %s", got)
	}
	// "both" comes whole from file a: its namespace is unset although b sets one.
	if ns := k.Namespace("both"); ns != "default" {
		t.Errorf("namespace of both %q, want default", ns)
	}
	if ns := k.Namespace("a"); ns != "team-a" {
		t.Errorf("namespace of a %q, want team-a", ns)
	}
	rc, err := k.RestConfig("a")
	if err != nil {
		t.Fatal(err)
	}
	// Cluster "shared" and user "alice" come whole from a; the CA path is
	// relative to a's directory.
	if rc.Server != "https://a.example:6443" || rc.Insecure || string(rc.CAData) != "CA-A" {
		t.Errorf("cluster from a: server %s insecure %t CA %q", rc.Server, rc.Insecure, rc.CAData)
	}
	if rc.BearerToken != "token-a" || rc.User != "alice" || rc.Namespace != "team-a" || rc.Context != "a" {
		t.Errorf("user from a: %v", rc)
	}
	if rc.Exec == nil || rc.Exec.Command != filepath.Join(root, "a", "bin", "auth") || rc.Exec.InteractiveMode != "IfAvailable" {
		t.Errorf("exec %v, want command resolved against a's directory and interactiveMode IfAvailable", rc.Exec)
	}
	rc, err = k.RestConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if rc.Context != "b" || rc.Username != "bob" || rc.Password != "pw" || rc.Server != "https://only-b.example" {
		t.Errorf("current context: %v", rc)
	}

	// --kubeconfig wins over KUBECONFIG.
	k, err = Load(LoadOptions{Kubeconfig: a, Getenv: envOf(map[string]string{"KUBECONFIG": b})})
	if err != nil {
		t.Fatal(err)
	}
	if k.CurrentContext() != "" {
		t.Errorf("explicit file: current-context %q, want none", k.CurrentContext())
	}
	_, err = k.RestConfig("")
	if !errors.Is(err, ErrNoCurrentContext) || !strings.Contains(err.Error(), "a, both") {
		t.Errorf("no current-context: %v", err)
	}
	_, err = k.RestConfig("nope")
	if !errors.Is(err, ErrContextNotFound) || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), "a, both") {
		t.Errorf("unknown context: %v", err)
	}
	if _, err := Load(LoadOptions{Kubeconfig: missing}); err == nil {
		t.Error("a missing --kubeconfig file was accepted")
	}

	// ~/.kube/config when KUBECONFIG is unset.
	writeKubeconfig(t, filepath.Join(root, ".kube"), "config", fileB)
	k, err = Load(LoadOptions{Getenv: envOf(map[string]string{"HOME": root})})
	if err != nil || k.CurrentContext() != "b" {
		t.Errorf("home config: %v, current %q", err, k.CurrentContext())
	}
}

func TestLoadNothingAndInCluster(t *testing.T) {
	root := t.TempDir()
	k, err := Load(LoadOptions{Getenv: envOf(map[string]string{"HOME": root})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.RestConfig(""); !errors.Is(err, ErrNoConfig) {
		t.Errorf("no config: %v, want ErrNoConfig", err)
	}
	sa := filepath.Join(root, "sa")
	os.MkdirAll(sa, 0o700)
	writeFile(t, filepath.Join(sa, "token"), "sa-token\n")
	writeFile(t, filepath.Join(sa, "ca.crt"), "SA-CA")
	writeFile(t, filepath.Join(sa, "namespace"), "pods-ns")
	env := map[string]string{"HOME": root, "KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
	k, err = Load(LoadOptions{Getenv: envOf(env), InClusterDir: sa})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := k.RestConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if rc.Server != "https://[fd00::1]:443" || rc.BearerToken != "sa-token" || rc.BearerTokenFile != filepath.Join(sa, "token") ||
		string(rc.CAData) != "SA-CA" || rc.Namespace != "pods-ns" || k.CurrentContext() != InClusterContext || k.Namespace("") != "pods-ns" {
		t.Errorf("in-cluster config %v (CA %q)", rc, rc.CAData)
	}
	// A kubeconfig file, when there is one, wins.
	writeKubeconfig(t, filepath.Join(root, ".kube"), "config", fileB)
	k, err = Load(LoadOptions{Getenv: envOf(env), InClusterDir: sa})
	if err != nil || k.CurrentContext() != "b" {
		t.Errorf("kubeconfig with in-cluster env: %v, current %q", err, k.CurrentContext())
	}
}

func TestRestConfigValidation(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		name string
		user string
		want string
	}{
		{"token and basic", "{token: t, username: u, password: p}", "more than one authentication method"},
		{"exec v1 without interactiveMode", "{exec: {apiVersion: client.authentication.k8s.io/v1, command: x}}", "interactiveMode must be specified"},
		{"exec without command", "{exec: {apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never}}", "command must be specified"},
		{"cert without key", "{client-certificate-data: Zm9v}", "client-key"},
		{"groups without as", "{token: t, as-groups: [g]}", "without impersonating"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeKubeconfig(t, root, "kc", `current-context: c
contexts: [{name: c, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://k.example"}}]
users: [{name: u, user: `+tt.user+`}]
`)
			k, err := Load(LoadOptions{Kubeconfig: p})
			if err != nil {
				t.Fatal(err)
			}
			_, err = k.RestConfig("")
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
		})
	}
	t.Run("missing cluster", func(t *testing.T) {
		p := writeKubeconfig(t, root, "kc2", `current-context: c
contexts: [{name: c, context: {cluster: nope, user: ghost}}]
`)
		k, _ := Load(LoadOptions{Kubeconfig: p})
		_, err := k.RestConfig("")
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `cluster "nope" was not found`) {
			t.Errorf("error %v, want ErrInvalidConfig naming the cluster", err)
		}
	})
	t.Run("missing user means anonymous, as in clientcmd", func(t *testing.T) {
		p := writeKubeconfig(t, root, "kc6", `current-context: c
contexts: [{name: c, context: {cluster: c, user: ghost}}]
clusters: [{name: c, cluster: {server: "https://k.example"}}]
`)
		k, _ := Load(LoadOptions{Kubeconfig: p})
		rc, err := k.RestConfig("")
		if err != nil || rc.User != "ghost" || rc.BearerToken != "" || rc.CertData != nil {
			t.Errorf("config %v, %v; want no credentials for user ghost", rc, err)
		}
	})
	t.Run("plain http drops credentials", func(t *testing.T) {
		p := writeKubeconfig(t, root, "kc3", `current-context: c
contexts: [{name: c, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "http://127.0.0.1:8001"}}]
users: [{name: u, user: {token: t, as: admin}}]
`)
		k, _ := Load(LoadOptions{Kubeconfig: p})
		rc, err := k.RestConfig("")
		if err != nil || rc.BearerToken != "" || rc.Impersonate != "admin" {
			t.Errorf("http config %v, %v; want no token but impersonation kept", rc, err)
		}
	})
	t.Run("parse errors hide values", func(t *testing.T) {
		p := writeKubeconfig(t, root, "kc4", `users: [{name: u, user: {token: [hidden-secret-value]}}]`)
		_, err := Load(LoadOptions{Kubeconfig: p})
		if err == nil || strings.Contains(err.Error(), "hidden-secret-value") {
			t.Errorf("error %v: want a parse error without the value", err)
		}
		p = writeKubeconfig(t, root, "kc5", `clusters: [{name: c, cluster: {insecure-skip-tls-verify: hidden-secret-value}}]`)
		_, err = Load(LoadOptions{Kubeconfig: p})
		if err == nil || strings.Contains(err.Error(), "hidden-secret-value") {
			t.Errorf("error %v: want a parse error without the value", err)
		}
	})
}
