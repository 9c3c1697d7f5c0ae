package kube

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/tunnels-dev/tunnels/config"
)

// Kubeconfig errors, for errors.Is.
var (
	// ErrNoConfig: no kubeconfig file was found and not running in a pod.
	ErrNoConfig = errors.New("no kubeconfig")
	// ErrNoCurrentContext: no context was asked for and none is current.
	ErrNoCurrentContext = errors.New("no current-context")
	// ErrContextNotFound: the context asked for does not exist.
	ErrContextNotFound = errors.New("context not found")
	// ErrInvalidConfig: the context, its cluster or its user is unusable.
	ErrInvalidConfig = errors.New("invalid kubeconfig")
)

// InClusterContext is the context name given to the in-cluster service
// account configuration.
const InClusterContext = "in-cluster"

// DefaultInClusterDir is where a pod's service account token, CA and
// namespace are mounted.
const DefaultInClusterDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// LoadOptions says where to look for kubeconfig files.
type LoadOptions struct {
	// Kubeconfig is the --kubeconfig file; it wins over everything and must
	// exist.
	Kubeconfig string
	// Getenv supplies KUBECONFIG, HOME, KUBERNETES_SERVICE_HOST,
	// KUBERNETES_SERVICE_PORT and POD_NAMESPACE. Nil means an empty
	// environment (never the process's).
	Getenv func(string) string
	// InClusterDir holds the service account's token, ca.crt and namespace
	// files. Empty means DefaultInClusterDir.
	InClusterDir string
}

// Kubeconfig is the merged view of the kubeconfig files, resolved as kubectl
// does.
type Kubeconfig struct {
	files    []string // files loaded, in precedence order
	searched []string // files looked for, for messages
	current  string
	clusters map[string]*kcCluster
	users    map[string]*kcUser
	contexts map[string]*kcContext

	inCluster *RestConfig // set when the in-cluster config is used
}

// Load finds and merges the kubeconfig files: opts.Kubeconfig alone if set;
// else the files of $KUBECONFIG (split by the OS path list separator, empty
// entries and missing files skipped); else ~/.kube/config. The first file to
// define a cluster, user or context name wins for that whole entry, and
// current-context comes from the first file that sets it. With no
// configuration at all and KUBERNETES_SERVICE_HOST/PORT set, the pod's
// service account is used. A file that exists but cannot be parsed is an
// error, as in kubectl.
func Load(opts LoadOptions) (*Kubeconfig, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	k := &Kubeconfig{
		clusters: map[string]*kcCluster{},
		users:    map[string]*kcUser{},
		contexts: map[string]*kcContext{},
	}
	var paths []string
	switch {
	case opts.Kubeconfig != "":
		if _, err := os.Stat(opts.Kubeconfig); err != nil {
			return nil, fmt.Errorf("load kubeconfig: %w", err)
		}
		paths = []string{opts.Kubeconfig}
	case getenv("KUBECONFIG") != "":
		seen := map[string]bool{}
		for _, p := range filepath.SplitList(getenv("KUBECONFIG")) {
			if p != "" && !seen[p] {
				seen[p] = true
				paths = append(paths, p)
			}
		}
	case getenv("HOME") != "":
		paths = []string{filepath.Join(getenv("HOME"), ".kube", "config")}
	}
	k.searched = paths
	var errs []error
	for _, p := range paths {
		pf, err := readKubeconfigFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k.files = append(k.files, p)
		k.merge(pf)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if k.empty() {
		dir := opts.InClusterDir
		if dir == "" {
			dir = DefaultInClusterDir
		}
		rc, err := loadInCluster(getenv, dir)
		if err != nil {
			return nil, err
		}
		k.inCluster = rc
	}
	return k, nil
}

// merge adds a file's entries under kubectl's rule: what is already there
// (from a file earlier in the list) wins.
func (k *Kubeconfig) merge(pf *parsedFile) {
	if k.current == "" {
		k.current = pf.currentContext
	}
	for _, n := range pf.clusterNames {
		if _, ok := k.clusters[n]; !ok {
			k.clusters[n] = pf.clusters[n]
		}
	}
	for _, n := range pf.userNames {
		if _, ok := k.users[n]; !ok {
			k.users[n] = pf.users[n]
		}
	}
	for _, n := range pf.contextNames {
		if _, ok := k.contexts[n]; !ok {
			k.contexts[n] = pf.contexts[n]
		}
	}
}

func (k *Kubeconfig) empty() bool {
	return k.current == "" && len(k.clusters) == 0 && len(k.users) == 0 && len(k.contexts) == 0
}

// Files returns the kubeconfig files that were loaded, in precedence order.
func (k *Kubeconfig) Files() []string { return slices.Clone(k.files) }

// Contexts returns the names of the known contexts, sorted.
func (k *Kubeconfig) Contexts() []string {
	if k.inCluster != nil {
		return []string{InClusterContext}
	}
	names := make([]string, 0, len(k.contexts))
	for n := range k.contexts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CurrentContext returns the current-context ("" if none is set), or
// InClusterContext for the in-cluster configuration.
func (k *Kubeconfig) CurrentContext() string {
	if k.inCluster != nil {
		return InClusterContext
	}
	return k.current
}

// Namespace returns a context's namespace ("" means the current context),
// "default" if it sets none or does not exist.
func (k *Kubeconfig) Namespace(context string) string {
	if k.inCluster != nil {
		return k.inCluster.Namespace
	}
	if context == "" {
		context = k.current
	}
	if c, ok := k.contexts[context]; ok && c.Namespace != "" {
		return c.Namespace
	}
	return config.DefaultNamespace
}

// where describes the loaded files for messages.
func (k *Kubeconfig) where() string {
	if len(k.files) == 0 {
		return "no kubeconfig file"
	}
	return "kubeconfig " + strings.Join(k.files, string(filepath.ListSeparator))
}

// RestConfig resolves a context ("" means the current one) into a
// connection: cluster, credentials (files read, relative paths resolved
// against the file that defined the entry) and namespace. The checks are
// clientcmd's; all problems of the context are reported at once.
func (k *Kubeconfig) RestConfig(context string) (*RestConfig, error) {
	if k.inCluster != nil && (context == "" || context == InClusterContext) {
		rc := *k.inCluster
		return &rc, nil
	}
	if k.empty() {
		looked := "set KUBECONFIG or --kubeconfig"
		if len(k.searched) > 0 {
			looked = "looked for " + strings.Join(k.searched, ", ") + "; set KUBECONFIG or --kubeconfig"
		}
		return nil, fmt.Errorf("no configuration to reach a cluster (%s, and not running in a pod): %w", looked, ErrNoConfig)
	}
	name := context
	if name == "" {
		name = k.current
	}
	if name == "" {
		return nil, fmt.Errorf("%s sets no current-context; name a context (known: %s): %w", k.where(), k.knownContexts(), ErrNoCurrentContext)
	}
	ctx, ok := k.contexts[name]
	if !ok {
		return nil, fmt.Errorf("context %q does not exist in %s (known: %s): %w", name, k.where(), k.knownContexts(), ErrContextNotFound)
	}

	// clientcmd checks the context's cluster and user, not the context
	// itself: a user name that does not exist means no credentials (requests
	// go out anonymous, and a 401 names the user), a missing cluster means
	// no server.
	var errs []error
	if ctx.Cluster == "" {
		errs = append(errs, fmt.Errorf("cluster was not specified for context %q", name))
	} else if _, ok := k.clusters[ctx.Cluster]; !ok {
		errs = append(errs, fmt.Errorf("cluster %q was not found for context %q", ctx.Cluster, name))
	}
	cluster := k.clusters[ctx.Cluster]
	if cluster == nil {
		cluster = &kcCluster{}
	}
	user := k.users[ctx.User]
	if user == nil {
		user = &kcUser{}
	}
	if len(errs) == 0 {
		errs = append(errs, validateCluster(ctx.Cluster, cluster)...)
	}
	errs = append(errs, validateUser(ctx.User, user)...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("context %q in %s: %w: %w", name, k.where(), ErrInvalidConfig, errors.Join(errs...))
	}

	rc, err := buildRestConfig(name, ctx, cluster, user)
	if err != nil {
		return nil, fmt.Errorf("context %q in %s: %w", name, k.where(), err)
	}
	return rc, nil
}

func (k *Kubeconfig) knownContexts() string {
	names := k.Contexts()
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// validateCluster is clientcmd's validateClusterInfo.
func validateCluster(name string, c *kcCluster) []error {
	var errs []error
	if c.Server == "" {
		if c.CertificateAuthority == "" && len(c.caData) == 0 && !c.InsecureSkipTLSVerify && c.TLSServerName == "" && c.ProxyURL == "" && len(c.Extensions) == 0 {
			return []error{errors.New("cluster has no server defined")}
		}
		errs = append(errs, fmt.Errorf("no server found for cluster %q", name))
	}
	if c.ProxyURL != "" {
		if _, err := parseProxyURL(c.ProxyURL); err != nil {
			errs = append(errs, fmt.Errorf("invalid proxy-url for cluster %q: %w", name, err))
		}
	}
	if c.CertificateAuthority != "" && len(c.caData) > 0 {
		errs = append(errs, fmt.Errorf("certificate-authority-data and certificate-authority are both specified for cluster %q", name))
	}
	return errs
}

// validateUser is clientcmd's validateAuthInfo.
func validateUser(name string, u *kcUser) []error {
	var errs []error
	var methods []string
	if u.Token != "" {
		methods = append(methods, "token")
	}
	if u.Username != "" || u.Password != "" {
		methods = append(methods, "basicAuth")
	}
	if u.ClientCertificate != "" || len(u.certData) > 0 {
		if u.ClientCertificate != "" && len(u.certData) > 0 {
			errs = append(errs, fmt.Errorf("client-certificate-data and client-certificate are both specified for user %q", name))
		}
		if u.ClientKey != "" && len(u.keyData) > 0 {
			errs = append(errs, fmt.Errorf("client-key-data and client-key are both specified for user %q", name))
		}
		if u.ClientKey == "" && len(u.keyData) == 0 {
			errs = append(errs, fmt.Errorf("client-key-data or client-key must be specified for user %q to use a client certificate", name))
		}
	}
	if u.Exec != nil {
		if u.AuthProvider != nil {
			errs = append(errs, fmt.Errorf("auth-provider cannot be combined with an exec plugin for user %q", name))
		}
		if u.Exec.Command == "" {
			errs = append(errs, fmt.Errorf("command must be specified for user %q to use an exec plugin", name))
		}
		if u.Exec.APIVersion == "" {
			errs = append(errs, fmt.Errorf("apiVersion must be specified for user %q to use an exec plugin", name))
		}
		for _, v := range u.Exec.Env {
			if v.Name == "" {
				errs = append(errs, fmt.Errorf("env variable name must be specified for user %q to use an exec plugin", name))
			}
		}
		switch execInteractiveMode(u.Exec) {
		case "":
			errs = append(errs, fmt.Errorf("interactiveMode must be specified for user %q to use an exec plugin", name))
		case "Never", "IfAvailable", "Always":
		default:
			errs = append(errs, fmt.Errorf("invalid interactiveMode for user %q: %q", name, u.Exec.InteractiveMode))
		}
	}
	if len(methods) > 1 {
		errs = append(errs, fmt.Errorf("more than one authentication method found for user %q; found %v, only one is allowed", name, methods))
	}
	if (u.ImpersonateUID != "" || len(u.ImpersonateGroups) > 0 || len(u.ImpersonateUserExtra) > 0) && u.Impersonate == "" {
		errs = append(errs, fmt.Errorf("requesting uid, groups or user-extra for user %q without impersonating a user", name))
	}
	return errs
}

// execInteractiveMode applies the kubeconfig defaulting: v1beta1 plugins
// default to IfAvailable; v1 ones must say.
func execInteractiveMode(e *kcExec) string {
	if e.InteractiveMode == "" && e.APIVersion != execV1 {
		return "IfAvailable"
	}
	return e.InteractiveMode
}

// buildRestConfig reads the files a context refers to.
func buildRestConfig(name string, ctx *kcContext, cluster *kcCluster, user *kcUser) (*RestConfig, error) {
	rc := &RestConfig{
		Context:   name,
		Namespace: ctx.Namespace,
		User:      ctx.User,
		ProxyURL:  cluster.ProxyURL,
	}
	if rc.Namespace == "" {
		rc.Namespace = config.DefaultNamespace
	}
	if user.Impersonate != "" {
		rc.Impersonate = user.Impersonate
		rc.ImpersonateUID = user.ImpersonateUID
		rc.ImpersonateGroups = slices.Clone(user.ImpersonateGroups)
		if len(user.ImpersonateUserExtra) > 0 {
			rc.ImpersonateExtra = make(map[string][]string, len(user.ImpersonateUserExtra))
			for k, v := range user.ImpersonateUserExtra {
				rc.ImpersonateExtra[k] = slices.Clone(v)
			}
		}
	}

	hasCert := user.ClientCertificate != "" || len(user.certData) > 0
	server, isTLS, err := normalizeServer(cluster.Server)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", ctx.Cluster, err)
	}
	rc.Server = server
	if !isTLS {
		// As clientcmd: no credentials and no TLS settings for a plain
		// http:// server.
		return rc, nil
	}

	rc.TLSServerName = cluster.TLSServerName
	rc.Insecure = cluster.InsecureSkipTLSVerify
	rc.CAData = cluster.caData
	if len(rc.CAData) == 0 && cluster.CertificateAuthority != "" {
		if rc.CAData, err = os.ReadFile(cluster.CertificateAuthority); err != nil {
			return nil, fmt.Errorf("read certificate-authority of cluster %q: %w", ctx.Cluster, err)
		}
	}

	if hasCert {
		rc.CertFile, rc.KeyFile = user.ClientCertificate, user.ClientKey
		rc.CertData, rc.KeyData = user.certData, user.keyData
		if len(rc.CertData) == 0 {
			if rc.CertData, err = os.ReadFile(rc.CertFile); err != nil {
				return nil, fmt.Errorf("read client-certificate of user %q: %w", ctx.User, err)
			}
		}
		if len(rc.KeyData) == 0 {
			if rc.KeyData, err = os.ReadFile(rc.KeyFile); err != nil {
				// The *PathError names the file, never its content.
				return nil, fmt.Errorf("read client-key of user %q: %w", ctx.User, err)
			}
		}
	}
	rc.BearerToken = user.Token
	if user.TokenFile != "" {
		rc.BearerTokenFile = user.TokenFile
		if rc.BearerToken == "" {
			b, err := os.ReadFile(user.TokenFile)
			if err != nil {
				return nil, fmt.Errorf("read tokenFile of user %q: %w", ctx.User, err)
			}
			rc.BearerToken = strings.TrimSpace(string(b))
		}
	}
	rc.Username, rc.Password = user.Username, user.Password
	if user.AuthProvider != nil {
		return nil, fmt.Errorf("user %q: auth-provider is not supported (kubectl removed its providers; use an exec credential plugin such as kubelogin or gke-gcloud-auth-plugin)", ctx.User)
	}
	if user.Exec != nil {
		x := user.Exec
		rc.Exec = &ExecConfig{
			APIVersion:         x.APIVersion,
			Command:            x.Command,
			Args:               slices.Clone(x.Args),
			InstallHint:        cleanANSI(x.InstallHint),
			ProvideClusterInfo: x.ProvideClusterInfo,
			InteractiveMode:    execInteractiveMode(x),
		}
		for _, v := range x.Env {
			rc.Exec.Env = append(rc.Exec.Env, ExecEnvVar{Name: v.Name, Value: v.Value})
		}
		if rc.Exec.ClusterConfig, err = cluster.extensionJSON("client.authentication.k8s.io/exec"); err != nil {
			return nil, fmt.Errorf("cluster %q: exec extension: %w", ctx.Cluster, err)
		}
	}
	return rc, nil
}

// normalizeServer turns a kubeconfig server into a URL with a scheme, as
// client-go does: "host:port" means http, because clientcmd decides whether
// the server is TLS before it reads any TLS setting. Query and fragment are
// dropped.
func normalizeServer(server string) (string, bool, error) {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil {
		return "", false, fmt.Errorf("server %q: %w", server, err)
	}
	if u.Host == "" {
		return "", false, fmt.Errorf("server %q has no host", server)
	}
	switch u.Scheme {
	case "https":
	case "http":
	default:
		return "", false, fmt.Errorf("server %q: scheme must be https or http", server)
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String(), u.Scheme == "https", nil
}

// cleanANSI replaces control characters other than whitespace (escape
// sequences could mess up the terminal) with their U+ form, as clientcmd
// does for installHint.
func cleanANSI(s string) string {
	var b strings.Builder
	for _, r := range s {
		if (r < 0x20 && (r < 0x09 || r > 0x0d)) || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			fmt.Fprintf(&b, "%U", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
