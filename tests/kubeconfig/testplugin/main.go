// Command testplugin is a kubeconfig exec credential plugin for tests: it
// prints an ExecCredential and counts its invocations.
//
// Flags (args in the kubeconfig) and environment (env in the kubeconfig):
//
//	--token T / TESTPLUGIN_TOKEN       token to return (default: $TUNNELS_TEST_TOKEN,
//	                                   as the e2e harness sets it, else "plugin-token")
//	--cert F --key F / TESTPLUGIN_CERT, TESTPLUGIN_KEY
//	                                   return this client certificate instead
//	--expiry D / TESTPLUGIN_EXPIRY     expirationTimestamp = now + D (Go duration)
//	--state DIR / TESTPLUGIN_STATE     count invocations in DIR/count and save
//	                                   KUBERNETES_EXEC_INFO to DIR/info-N.json
//	TESTPLUGIN_API_VERSION             apiVersion to answer with; default:
//	                                   the one in KUBERNETES_EXEC_INFO
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testplugin:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("testplugin", flag.ContinueOnError)
	token := fs.String("token", env("TESTPLUGIN_TOKEN", env("TUNNELS_TEST_TOKEN", "plugin-token")), "token")
	cert := fs.String("cert", os.Getenv("TESTPLUGIN_CERT"), "client certificate file")
	key := fs.String("key", os.Getenv("TESTPLUGIN_KEY"), "client key file")
	expiry := fs.String("expiry", os.Getenv("TESTPLUGIN_EXPIRY"), "expiry duration")
	state := fs.String("state", os.Getenv("TESTPLUGIN_STATE"), "state directory")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	info := os.Getenv("KUBERNETES_EXEC_INFO")
	version := os.Getenv("TESTPLUGIN_API_VERSION")
	if version == "" {
		var in struct {
			APIVersion string `json:"apiVersion"`
		}
		if err := json.Unmarshal([]byte(info), &in); err != nil {
			return fmt.Errorf("KUBERNETES_EXEC_INFO: %w", err)
		}
		version = in.APIVersion
	}
	if *state != "" {
		n := 0
		if b, err := os.ReadFile(filepath.Join(*state, "count")); err == nil {
			n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		n++
		if err := os.WriteFile(filepath.Join(*state, "count"), []byte(strconv.Itoa(n)), 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*state, fmt.Sprintf("info-%d.json", n)), []byte(info), 0o600); err != nil {
			return err
		}
	}
	status := map[string]any{}
	if *cert != "" {
		c, err := os.ReadFile(*cert)
		if err != nil {
			return err
		}
		k, err := os.ReadFile(*key)
		if err != nil {
			return err
		}
		status["clientCertificateData"] = string(c)
		status["clientKeyData"] = string(k)
	} else {
		status["token"] = *token
	}
	if *expiry != "" {
		d, err := time.ParseDuration(*expiry)
		if err != nil {
			return err
		}
		status["expirationTimestamp"] = time.Now().Add(d).UTC().Format(time.RFC3339)
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"apiVersion": version,
		"kind":       "ExecCredential",
		"status":     status,
	})
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
