package kube

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// The kubeconfig file format (clientcmd/api/v1), as much of it as tunnels
// uses. Unknown fields are ignored, as clientcmd does.

type kcFile struct {
	CurrentContext string         `yaml:"current-context"`
	Clusters       []kcNamedEntry `yaml:"clusters"`
	Users          []kcNamedEntry `yaml:"users"`
	Contexts       []kcNamedEntry `yaml:"contexts"`
}

// kcNamedEntry is {name, cluster|user|context} with the payload kept as a
// node, decoded once we know which list it came from.
type kcNamedEntry struct {
	Name    string    `yaml:"name"`
	Cluster yaml.Node `yaml:"cluster"`
	User    yaml.Node `yaml:"user"`
	Context yaml.Node `yaml:"context"`
}

type kcCluster struct {
	Server                   string             `yaml:"server"`
	TLSServerName            string             `yaml:"tls-server-name"`
	InsecureSkipTLSVerify    bool               `yaml:"insecure-skip-tls-verify"`
	CertificateAuthority     string             `yaml:"certificate-authority"`
	CertificateAuthorityData string             `yaml:"certificate-authority-data"`
	ProxyURL                 string             `yaml:"proxy-url"`
	DisableCompression       bool               `yaml:"disable-compression"`
	Extensions               []kcNamedExtension `yaml:"extensions"`

	origin string // the file that defined it
	caData []byte // decoded CertificateAuthorityData
}

type kcNamedExtension struct {
	Name      string    `yaml:"name"`
	Extension yaml.Node `yaml:"extension"`
}

type kcUser struct {
	ClientCertificate     string              `yaml:"client-certificate"`
	ClientCertificateData string              `yaml:"client-certificate-data"`
	ClientKey             string              `yaml:"client-key"`
	ClientKeyData         string              `yaml:"client-key-data"`
	Token                 string              `yaml:"token"`
	TokenFile             string              `yaml:"tokenFile"`
	Impersonate           string              `yaml:"as"`
	ImpersonateUID        string              `yaml:"as-uid"`
	ImpersonateGroups     []string            `yaml:"as-groups"`
	ImpersonateUserExtra  map[string][]string `yaml:"as-user-extra"`
	Username              string              `yaml:"username"`
	Password              string              `yaml:"password"`
	AuthProvider          *yaml.Node          `yaml:"auth-provider"`
	Exec                  *kcExec             `yaml:"exec"`

	origin   string
	certData []byte
	keyData  []byte
}

type kcExec struct {
	Command            string     `yaml:"command"`
	Args               []string   `yaml:"args"`
	Env                []kcEnvVar `yaml:"env"`
	APIVersion         string     `yaml:"apiVersion"`
	InstallHint        string     `yaml:"installHint"`
	ProvideClusterInfo bool       `yaml:"provideClusterInfo"`
	InteractiveMode    string     `yaml:"interactiveMode"`
}

type kcEnvVar struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

type kcContext struct {
	Cluster   string `yaml:"cluster"`
	User      string `yaml:"user"`
	Namespace string `yaml:"namespace"`

	origin string
}

// parsedFile is one kubeconfig file, entries in file order, paths resolved.
type parsedFile struct {
	path           string
	currentContext string
	clusterNames   []string
	clusters       map[string]*kcCluster
	userNames      []string
	users          map[string]*kcUser
	contextNames   []string
	contexts       map[string]*kcContext
}

// yamlError reports a parse error without quoting values: yaml.v3's type
// errors quote the offending value in backquotes, and it may be a secret.
func yamlError(path string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = quotedValue.ReplaceAllString(m, "(value hidden)")
		}
		return fmt.Errorf("parse kubeconfig %s: %s", path, strings.Join(msgs, "; "))
	}
	return fmt.Errorf("parse kubeconfig %s: %w", path, err)
}

var quotedValue = regexp.MustCompile("`[^`]*`")

// readKubeconfigFile reads and parses one kubeconfig file, resolving the
// relative paths in it against its directory, as clientcmd does.
func readKubeconfigFile(path string) (*parsedFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read kubeconfig: %w", err) // the *PathError names the file
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	base := filepath.Dir(abs)
	pf := &parsedFile{
		path:     path,
		clusters: map[string]*kcCluster{},
		users:    map[string]*kcUser{},
		contexts: map[string]*kcContext{},
	}
	var f kcFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, yamlError(path, err)
	}
	pf.currentContext = f.CurrentContext
	resolve := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	for _, e := range f.Clusters {
		var c kcCluster
		if !e.Cluster.IsZero() {
			if err := e.Cluster.Decode(&c); err != nil {
				return nil, yamlError(path, err)
			}
		}
		c.origin = path
		if c.caData, err = decodeBase64(c.CertificateAuthorityData); err != nil {
			return nil, fmt.Errorf("parse kubeconfig %s: cluster %q: certificate-authority-data: %w", path, e.Name, err)
		}
		resolve(&c.CertificateAuthority)
		if _, dup := pf.clusters[e.Name]; !dup {
			pf.clusterNames = append(pf.clusterNames, e.Name)
		}
		pf.clusters[e.Name] = &c
	}
	for _, e := range f.Users {
		var u kcUser
		if !e.User.IsZero() {
			if err := e.User.Decode(&u); err != nil {
				return nil, yamlError(path, err)
			}
		}
		u.origin = path
		if u.certData, err = decodeBase64(u.ClientCertificateData); err != nil {
			return nil, fmt.Errorf("parse kubeconfig %s: user %q: client-certificate-data: %w", path, e.Name, err)
		}
		if u.keyData, err = decodeBase64(u.ClientKeyData); err != nil {
			return nil, fmt.Errorf("parse kubeconfig %s: user %q: client-key-data: %w", path, e.Name, err)
		}
		resolve(&u.ClientCertificate)
		resolve(&u.ClientKey)
		resolve(&u.TokenFile)
		if u.Exec != nil && strings.ContainsRune(u.Exec.Command, filepath.Separator) {
			resolve(&u.Exec.Command)
		}
		if _, dup := pf.users[e.Name]; !dup {
			pf.userNames = append(pf.userNames, e.Name)
		}
		pf.users[e.Name] = &u
	}
	for _, e := range f.Contexts {
		var c kcContext
		if !e.Context.IsZero() {
			if err := e.Context.Decode(&c); err != nil {
				return nil, yamlError(path, err)
			}
		}
		c.origin = path
		if _, dup := pf.contexts[e.Name]; !dup {
			pf.contextNames = append(pf.contextNames, e.Name)
		}
		pf.contexts[e.Name] = &c
	}
	return pf, nil
}

// decodeBase64 decodes a kubeconfig *-data field as encoding/json decodes
// []byte: standard base64, newlines ignored. The error never quotes the
// value.
func decodeBase64(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	s = strings.NewReplacer("\n", "", "\r", "").Replace(s)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("invalid base64 at byte %d", int64(ce))
		}
		return nil, errors.New("invalid base64")
	}
	return b, nil
}

// extensionJSON returns a cluster extension as JSON, or nil.
func (c *kcCluster) extensionJSON(name string) ([]byte, error) {
	for _, e := range c.Extensions {
		if e.Name != name || e.Extension.IsZero() {
			continue
		}
		var v any
		if err := e.Extension.Decode(&v); err != nil {
			return nil, err
		}
		return json.Marshal(jsonable(v))
	}
	return nil, nil
}

// jsonable converts yaml.v3's decoded maps (map[string]any, but
// map[any]any for non-string keys) into something encoding/json takes.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = jsonable(x)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = jsonable(x)
		}
		return m
	case []any:
		for i, x := range t {
			t[i] = jsonable(x)
		}
		return t
	}
	return v
}
