package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// proc is a tunnels subprocess started by a test, killed at cleanup, its
// output kept and shown when the test fails.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	exited chan struct{}
	err    error
}

// startProc runs bin with args until the test ends.
func startProc(t testing.TB, bin string, args ...string) *proc {
	t.Helper()
	return startProcEnv(t, nil, bin, args...)
}

// startProcEnv is startProc with env ("KEY=value") added to the
// environment bin inherits.
func startProcEnv(t testing.TB, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start tunnels %s: %v", args[0], err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			t.Logf("tunnels %s stdout:\n%s\nstderr:\n%s", args[0], p.stdout.String(), p.stderr.String())
		}
	})
	return p
}

func (p *proc) signal(s os.Signal) {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(s)
	}
}

// upProc is a running `tunnels up` started by a test.
type upProc struct {
	*proc
	bin  string
	file string
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startUp writes yaml to dir/tunnels.yaml and runs `tunnels up` on it.
func startUp(t testing.TB, c *cluster.Cluster, dir, yaml string, extra ...string) *upProc {
	t.Helper()
	return startUpWith(t, cluster.TunnelsBinary(t), c, dir, yaml, extra...)
}

// startUpWith is startUp with a given tunnels binary.
func startUpWith(t testing.TB, bin string, c *cluster.Cluster, dir, yaml string, extra ...string) *upProc {
	t.Helper()
	file := filepath.Join(dir, "tunnels.yaml")
	if yaml != "" {
		writeFile(t, file, yaml)
	}
	args := append([]string{"up", "-f", file, "--kubeconfig", c.AdminKubeconfig, "--output", "log"}, extra...)
	return &upProc{proc: startProc(t, bin, args...), bin: bin, file: file}
}

// stop sends SIGINT and checks that tunnels up exits 0 within its 2 s of
// draining plus slack for a race-instrumented binary on a loaded machine.
// (Connections through kwok stay open until the target closes, so the
// drain usually runs its full 2 s here.)
func (p *upProc) stop() {
	p.t.Helper()
	p.stopWith(syscall.SIGINT)
}

// stopWith is stop with another signal (SIGTERM).
func (p *upProc) stopWith(sig os.Signal) {
	p.t.Helper()
	p.signal(sig)
	select {
	case <-p.exited:
	case <-time.After(6 * time.Second):
		p.t.Fatalf("tunnels up did not exit within 6s of SIGINT")
	}
	if p.err != nil {
		p.t.Fatalf("tunnels up exited with %v; log:\n%s", p.err, p.stderr.String())
	}
}

// statusRow mirrors a row of `tunnels status -o json`.
type statusRow struct {
	Tunnel      string    `json:"tunnel"`
	Target      string    `json:"target"`
	Pod         string    `json:"pod"`
	PodNotReady bool      `json:"podNotReady"`
	Transport   string    `json:"transport"`
	PodConns    int       `json:"podConnections"`
	Local       []string  `json:"local"`
	LocalPort   int       `json:"localPort"`
	Remote      string    `json:"remote"`
	State       string    `json:"state"`
	Active      int64     `json:"activeConnections"`
	Total       int64     `json:"totalConnections"`
	BytesIn     int64     `json:"bytesIn"`
	BytesOut    int64     `json:"bytesOut"`
	LastError   string    `json:"lastError"`
	NextRetry   time.Time `json:"nextRetry"`
}

type statusDoc struct {
	File   string `json:"file"`
	Config struct {
		Error      string    `json:"error"`
		LastReload time.Time `json:"lastReload"`
	} `json:"config"`
	Tunnels []statusRow `json:"tunnels"`
}

// status runs `tunnels status -o json`.
func (p *upProc) status() (*statusDoc, error) {
	out, err := exec.Command(p.bin, "status", "-f", p.file, "-o", "json").Output()
	if err != nil {
		return nil, fmt.Errorf("tunnels status: %w", err)
	}
	var d statusDoc
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("decode status: %w: %s", err, out)
	}
	return &d, nil
}

// waitStatus polls the status until ok accepts it.
func (p *upProc) waitStatus(what string, ok func(*statusDoc) bool) *statusDoc {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last *statusDoc
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			p.t.Fatalf("tunnels up exited (%v) while waiting for %s; log:\n%s", p.err, what, p.stderr.String())
		default:
		}
		d, err := p.status()
		if err == nil && ok(d) {
			return d
		}
		last, lastErr = d, err
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	p.t.Fatalf("timed out waiting for %s; last status (%v):\n%s", what, lastErr, b)
	return nil
}

// row finds the status row of tunnel's remote port.
func (d *statusDoc) row(tunnel, remote string) (statusRow, bool) {
	for _, r := range d.Tunnels {
		if r.Tunnel == tunnel && r.Remote == remote {
			return r, true
		}
	}
	return statusRow{}, false
}

// waitReady waits until tunnel's remote port is bound and its session
// connected, and returns its IPv4 address.
func (p *upProc) waitReady(tunnel, remote string) string {
	p.t.Helper()
	d := p.waitStatus(fmt.Sprintf("%s:%s ready", tunnel, remote), func(d *statusDoc) bool {
		r, ok := d.row(tunnel, remote)
		return ok && r.State == "ready" && len(r.Local) > 0
	})
	r, _ := d.row(tunnel, remote)
	return r.Local[0]
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// longEcho is an echo server whose connections stay open while idle, for
// tests that keep a connection across edits.
func longEcho(t testing.TB) string {
	return cluster.Handler(t, func(conn net.Conn) {
		conn.SetDeadline(time.Now().Add(2 * time.Minute))
		io.Copy(conn, conn)
	})
}

// echoLine sends a line on conn and reads it back.
func echoLine(t testing.TB, conn net.Conn, r *bufio.Reader, msg string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s\n", msg); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read back %q: %v", msg, err)
	}
	if strings.TrimSpace(got) != msg {
		t.Fatalf("got %q, want %q", got, msg)
	}
}

// dialEcho connects to addr and checks one echoed line.
func dialEcho(t testing.TB, addr, msg string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	echoLine(t, conn, bufio.NewReader(conn), msg)
}

// freeLocalPort returns a port free on 127.0.0.1 and ::1 right now.
func freeLocalPort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", port))
		l.Close()
		if err == nil {
			l6.Close()
			return port
		}
	}
	t.Fatal("no free port on both loopback families")
	return 0
}

var _ = context.Background
