package kube

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

// TestMain doubles as an exec credential plugin: run with
// TUNNELS_TEST_PLUGIN_DIR set, the test binary prints an ExecCredential
// instead of running tests (see fakePlugin).
func TestMain(m *testing.M) {
	if dir := os.Getenv("TUNNELS_TEST_PLUGIN_DIR"); dir != "" {
		os.Exit(fakePlugin(dir))
	}
	leakcheck.VerifyTestMain(m)
}

// fakePlugin is an exec credential plugin driven by files in dir:
//   - it increments dir/count and returns token "<prefix><count>";
//   - dir/expiry, if present, is a Go duration added to now for
//     expirationTimestamp (negative for an already expired credential);
//   - dir/cert and dir/key, if present, are returned as the client cert;
//   - dir/fail, if present, makes it print that text to stderr and exit 1;
//   - KUBERNETES_EXEC_INFO is saved to dir/info-<count>.
//
// The token prefix comes from TUNNELS_TEST_PLUGIN_PREFIX (default "tok-"),
// the apiVersion from TUNNELS_TEST_PLUGIN_VERSION (default v1).
func fakePlugin(dir string) int {
	if b, err := os.ReadFile(filepath.Join(dir, "fail")); err == nil {
		fmt.Fprint(os.Stderr, string(b))
		return 1
	}
	n := 0
	if b, err := os.ReadFile(filepath.Join(dir, "count")); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	n++
	if err := os.WriteFile(filepath.Join(dir, "count"), []byte(strconv.Itoa(n)), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("info-%d", n)), []byte(os.Getenv("KUBERNETES_EXEC_INFO")), 0o600)
	prefix := os.Getenv("TUNNELS_TEST_PLUGIN_PREFIX")
	if prefix == "" {
		prefix = "tok-"
	}
	version := os.Getenv("TUNNELS_TEST_PLUGIN_VERSION")
	if version == "" {
		version = execV1
	}
	status := map[string]any{}
	if cert, err := os.ReadFile(filepath.Join(dir, "cert")); err == nil {
		key, _ := os.ReadFile(filepath.Join(dir, "key"))
		status["clientCertificateData"] = string(cert)
		status["clientKeyData"] = string(key)
	} else {
		status["token"] = prefix + strconv.Itoa(n)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "expiry")); err == nil {
		d, err := time.ParseDuration(strings.TrimSpace(string(b)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		status["expirationTimestamp"] = time.Now().Add(d).UTC().Format(time.RFC3339)
	}
	out, _ := json.Marshal(map[string]any{"apiVersion": version, "kind": "ExecCredential", "status": status})
	os.Stdout.Write(out)
	return 0
}

// pluginExec returns an ExecConfig running the test binary as fakePlugin
// with state in dir.
func pluginExec(t testing.TB, dir string) *ExecConfig {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &ExecConfig{
		APIVersion:      execV1,
		Command:         self,
		Env:             []ExecEnvVar{{Name: "TUNNELS_TEST_PLUGIN_DIR", Value: dir}},
		InteractiveMode: "Never",
	}
}

// pluginCount returns how many times the plugin ran.
func pluginCount(t testing.TB, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "count"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(string(b))
	return n
}
