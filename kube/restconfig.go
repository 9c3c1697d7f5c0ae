package kube

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
)

// RestConfig is a fully resolved connection to one cluster as one user (what
// clientcmd calls a rest.Config). Its String, GoString and LogValue methods
// never show a token, key or password.
type RestConfig struct {
	Context   string // context name it came from ("" for hand-built)
	Namespace string // the context's namespace, "default" if unset

	Server        string // https://host:port[/prefix]
	TLSServerName string // overrides the host name used to verify the server certificate
	Insecure      bool   // skip server certificate verification
	CAData        []byte // PEM; empty means the system roots

	CertData, KeyData []byte // client certificate and key, PEM
	CertFile, KeyFile string // where CertData and KeyData were read from, if files

	BearerToken     string
	BearerTokenFile string // re-read when it changes (projected tokens rotate); wins over BearerToken once readable

	Username, Password string // basic auth

	Impersonate       string
	ImpersonateUID    string
	ImpersonateGroups []string
	ImpersonateExtra  map[string][]string

	Exec *ExecConfig // exec credential plugin, nil if none

	ProxyURL string // http, https or socks5 proxy; "" means none
	User     string // the kubeconfig user name, for error messages
}

// ExecConfig is a kubeconfig exec credential plugin (users[].user.exec).
type ExecConfig struct {
	APIVersion string // client.authentication.k8s.io/v1 or v1beta1
	// Command is the plugin program: a path (relative ones were resolved
	// against the kubeconfig's directory at load time) or a bare name looked
	// up in $PATH.
	Command            string
	Args               []string
	Env                []ExecEnvVar
	InstallHint        string // shown when Command cannot be found
	ProvideClusterInfo bool   // pass the cluster in KUBERNETES_EXEC_INFO
	// InteractiveMode is Never, IfAvailable or Always. tunnels never gives a
	// plugin the terminal, so Always fails.
	InteractiveMode string
	// ClusterConfig is the cluster's "client.authentication.k8s.io/exec"
	// extension as JSON, passed as spec.cluster.config; nil if unset.
	ClusterConfig []byte
}

// ExecEnvVar is one environment variable set for an exec plugin.
type ExecEnvVar struct {
	Name  string
	Value string
}

const redacted = "[redacted]"

// authKinds lists the kinds of credential a config carries, for logs.
func (rc *RestConfig) authKinds() []string {
	var kinds []string
	if len(rc.CertData) > 0 || rc.CertFile != "" {
		kinds = append(kinds, "client-certificate")
	}
	if rc.BearerToken != "" || rc.BearerTokenFile != "" {
		kinds = append(kinds, "token")
	}
	if rc.Username != "" || rc.Password != "" {
		kinds = append(kinds, "basic")
	}
	if rc.Exec != nil {
		kinds = append(kinds, "exec")
	}
	if len(kinds) == 0 {
		kinds = append(kinds, "none")
	}
	return kinds
}

// String describes the config without any secret.
func (rc RestConfig) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "RestConfig{Context:%q Namespace:%q Server:%q User:%q Auth:%s", rc.Context, rc.Namespace, rc.Server, rc.User, strings.Join(rc.authKinds(), "+"))
	if rc.TLSServerName != "" {
		fmt.Fprintf(&b, " TLSServerName:%q", rc.TLSServerName)
	}
	if rc.Insecure {
		b.WriteString(" Insecure:true")
	}
	if rc.BearerTokenFile != "" {
		fmt.Fprintf(&b, " BearerTokenFile:%q", rc.BearerTokenFile)
	}
	if rc.CertFile != "" {
		fmt.Fprintf(&b, " CertFile:%q", rc.CertFile)
	}
	if rc.Impersonate != "" {
		fmt.Fprintf(&b, " Impersonate:%q", rc.Impersonate)
	}
	if rc.Exec != nil {
		fmt.Fprintf(&b, " Exec:%q", rc.Exec.Command)
	}
	if rc.ProxyURL != "" {
		fmt.Fprintf(&b, " ProxyURL:%q", redactURL(rc.ProxyURL))
	}
	b.WriteString("}")
	return b.String()
}

// GoString is String, so that %#v does not print secrets either.
func (rc RestConfig) GoString() string { return rc.String() }

// LogValue renders the config for slog without any secret.
func (rc RestConfig) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("context", rc.Context),
		slog.String("namespace", rc.Namespace),
		slog.String("server", rc.Server),
		slog.String("user", rc.User),
		slog.String("auth", strings.Join(rc.authKinds(), "+")),
	}
	if rc.ProxyURL != "" {
		attrs = append(attrs, slog.String("proxy", redactURL(rc.ProxyURL)))
	}
	return slog.GroupValue(attrs...)
}

// String describes the plugin without its environment values.
func (e ExecConfig) String() string {
	names := make([]string, len(e.Env))
	for i, v := range e.Env {
		names[i] = v.Name + "=" + redacted
	}
	return fmt.Sprintf("ExecConfig{APIVersion:%q Command:%q Args:%q Env:%v InteractiveMode:%q ProvideClusterInfo:%t}",
		e.APIVersion, e.Command, e.Args, names, e.InteractiveMode, e.ProvideClusterInfo)
}

// GoString is String, so that %#v does not print secrets either.
func (e ExecConfig) GoString() string { return e.String() }

// String hides the value, which may be a secret.
func (v ExecEnvVar) String() string { return v.Name + "=" + redacted }

// GoString is String, so that %#v does not print secrets either.
func (v ExecEnvVar) GoString() string { return v.String() }

// LogValue renders the plugin for slog without its environment values.
func (e ExecConfig) LogValue() slog.Value {
	names := make([]string, len(e.Env))
	for i, v := range e.Env {
		names[i] = v.Name
	}
	return slog.GroupValue(
		slog.String("apiVersion", e.APIVersion),
		slog.String("command", e.Command),
		slog.Any("args", e.Args),
		slog.Any("env", names),
	)
}

// MarshalJSON hides the value, so that encoding a config shows no secret.
func (v ExecEnvVar) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"name": v.Name, "value": redacted})
}

// MarshalJSON encodes what LogValue shows, so that encoding a config (by
// mistake, in a debug dump) shows no secret.
func (rc RestConfig) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	for _, a := range rc.LogValue().Group() {
		m[a.Key] = a.Value.Any()
	}
	return json.Marshal(m)
}
