package kube

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/tunnels-dev/tunnels/config"
)

// loadInCluster returns the pod's service account configuration when
// KUBERNETES_SERVICE_HOST and _PORT are set and the token file exists, as
// client-go's in-cluster config; nil otherwise.
func loadInCluster(getenv func(string) string, dir string) (*RestConfig, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, nil
	}
	tokenFile := filepath.Join(dir, "token")
	st, err := os.Stat(tokenFile)
	if err != nil || st.IsDir() {
		return nil, nil
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("in-cluster config: read service account token: %w", err)
	}
	rc := &RestConfig{
		Context:         InClusterContext,
		Server:          "https://" + net.JoinHostPort(host, port),
		BearerToken:     strings.TrimSpace(string(tok)),
		BearerTokenFile: tokenFile,
		User:            "serviceaccount",
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	switch {
	case err == nil:
		rc.CAData = ca
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("in-cluster config: read service account CA: %w", err)
	}
	rc.Namespace = getenv("POD_NAMESPACE")
	if rc.Namespace == "" {
		if b, err := os.ReadFile(filepath.Join(dir, "namespace")); err == nil {
			rc.Namespace = strings.TrimSpace(string(b))
		}
	}
	if rc.Namespace == "" {
		rc.Namespace = config.DefaultNamespace
	}
	return rc, nil
}
