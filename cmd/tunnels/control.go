package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tunnels-dev/tunnels/config"
)

// The control socket lets `tunnels status` and `tunnels port` ask a running
// `tunnels up` for its state. It is a Unix socket next to the config file
// (.tunnels/control.sock), in a directory only its owner can enter, with
// mode 0600, serving JSON over HTTP.

// socketPath returns the control socket of the `tunnels up` that runs file.
// Unix socket paths are limited to about 100 bytes; a longer one moves to a
// private directory under the system temp dir, named by the file's path.
func socketPath(file string) (string, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", fmt.Errorf("resolve config path: %w", err)
	}
	p := filepath.Join(config.StateDirOf(abs), "control.sock")
	if len(p) <= 100 {
		return p, nil
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(os.TempDir(), fmt.Sprintf("tunnels-%d", os.Getuid()), hex.EncodeToString(sum[:8])+".sock"), nil
}

// errAlreadyRunning reports a live `tunnels up` on the same file.
var errAlreadyRunning = errors.New("another tunnels up is already running for this file")

// controlServer serves the status of a running `tunnels up`.
type controlServer struct {
	path string
	srv  *http.Server
	l    net.Listener
	done chan struct{}
}

// startControl listens on the control socket of file and serves report,
// and whatever more routes registers on its mux (stop, plan).
func startControl(file string, report func() statusReport, routes ...func(*http.ServeMux)) (*controlServer, error) {
	path, err := socketPath(file)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create control socket dir: %w", err)
	}
	// The directory may predate us with wider permissions; tighten it.
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("restrict control socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, errAlreadyRunning)
	}
	_ = os.Remove(path) // a stale socket of a process that died
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("restrict control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(report())
	})
	for _, r := range routes {
		r(mux)
	}
	c := &controlServer{path: path, l: l, done: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go c.serve()
	return c, nil
}

func (c *controlServer) serve() {
	defer close(c.done)
	_ = c.srv.Serve(c.l)
}

// Close stops serving and removes the socket.
func (c *controlServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	<-c.done
	_ = os.Remove(c.path)
	return err
}

// fetchStatus asks the `tunnels up` running file for its status.
func fetchStatus(ctx context.Context, file string) (*statusReport, error) {
	var r statusReport
	if err := callControl(ctx, file, http.MethodGet, "/status", nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// errNotRunning wraps the error of a control call that found no `tunnels up`
// listening (no socket, or nobody behind it).
var errNotRunning = errors.New("no tunnels up is running for this file")

// callControl sends a request to the control socket of the `tunnels up`
// running file and decodes its JSON answer into out (if not nil).
func callControl(ctx context.Context, file, method, route string, body io.Reader, out any) error {
	path, err := socketPath(file)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, method, "http://tunnels"+route, body)
	if err != nil {
		return fmt.Errorf("ask the running tunnels up for %s: %w", file, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("ask the running tunnels up for %s (is it running?): %w: %w", file, errNotRunning, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("ask the running tunnels up for %s: %s: %s", file, resp.Status, strings.TrimSpace(string(msg)))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode the answer of the running tunnels up: %w", err)
	}
	return nil
}
