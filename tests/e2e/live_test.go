package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"

	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// ptyUp is `tunnels up` drawing its live view on a pseudo-terminal.
type ptyUp struct {
	t      *testing.T
	cmd    *exec.Cmd
	tty    *os.File
	out    *syncBuffer
	ended  chan struct{} // closed when the terminal's output ends
	exited chan struct{}
	err    error
}

// startPtyUp runs `tunnels up -f file` on a terminal cols wide, with env
// added to the test's environment (from which NO_COLOR is removed).
func startPtyUp(t *testing.T, c *cluster.Cluster, file string, cols int, env ...string) *ptyUp {
	t.Helper()
	cmd := exec.Command(cluster.TunnelsBinary(t), "up", "-f", file, "--kubeconfig", c.AdminKubeconfig)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NO_COLOR=") && !strings.HasPrefix(kv, "TERM=") && !strings.HasPrefix(kv, "COLUMNS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, append([]string{"TERM=xterm-256color"}, env...)...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: uint16(cols), Rows: 30})
	if err != nil {
		t.Fatalf("start tunnels up on a pty: %v", err)
	}
	p := &ptyUp{t: t, cmd: cmd, tty: tty, out: &syncBuffer{}, ended: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		// Reading ends with EIO once the process and its terminal are gone.
		_, _ = io.Copy(p.out, tty)
		close(p.ended)
	}()
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		tty.Close()
		<-p.ended
		if t.Failed() {
			t.Logf("terminal output (%d columns):\n%q", cols, p.out.String())
		}
	})
	return p
}

// escapes matches the terminal control sequences the view writes.
var escapes = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")

// screen returns the last whole frame drawn (it starts with cursor-home
// and ends with erase-below), as lines without control sequences.
func (p *ptyUp) screen() []string {
	frames := strings.Split(p.out.String(), "\x1b[H")
	for i := len(frames) - 1; i > 0; i-- {
		frame, whole := strings.CutSuffix(strings.SplitAfter(frames[i], "\x1b[J")[0], "\x1b[J")
		if !whole {
			continue
		}
		text := escapes.ReplaceAllString(strings.ReplaceAll(frame, "\r\n", "\n"), "")
		return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	}
	return nil
}

// waitScreen polls the screen until ok accepts it.
func (p *ptyUp) waitScreen(what string, ok func(screen string) bool) []string {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		lines := p.screen()
		if ok(strings.Join(lines, "\n")) {
			return lines
		}
		select {
		case <-p.exited:
			p.t.Fatalf("tunnels up exited (%v) while waiting for %s; last screen:\n%s", p.err, what, strings.Join(lines, "\n"))
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s; last screen:\n%s", what, strings.Join(lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// interrupt sends SIGINT and waits for tunnels up to exit 0.
func (p *ptyUp) interrupt() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("tunnels up did not exit within 10s of SIGINT")
	}
	if p.err != nil {
		p.t.Fatalf("tunnels up exited with %v", p.err)
	}
}

// logNoise matches what a raw slog record would show: time=…, level=…,
// or one of the fixed keys as key=value.
var logNoise = regexp.MustCompile(`(^|\s)(time|level|msg|err|tunnel|target|pod|local|remote|context|delay|file|cause)=`)

// dbWoken matches a recent event of tunnel db woken by a pod becoming
// Ready.
var dbWoken = regexp.MustCompile(`\d\d:\d\d:\d\d db\s+a pod became ready[^\r\n]*`)

// recentLine is a line of the recent events: indented, time, tunnel, text.
var recentLine = regexp.MustCompile(`^  \d\d:\d\d:\d\d \S*\s+\S`)

// TestLiveViewOnATerminal drives `tunnels up` in a pseudo-terminal at 80
// and 160 columns with a tunnel that works, one whose pod does not exist
// (a long error), and one waiting for a pod created later, and reads the
// screen: no line wider than the terminal; the long error cut with an
// ellipsis in the table and whole in `tunnels status -o json`; the recent
// events short lines without key=value noise, newest last; colour codes
// only without NO_COLOR; and the pod created later, while waking the
// tunnel it belongs to, not named by the tunnel whose pod is missing.
func TestLiveViewOnATerminal(t *testing.T) {
	for _, tc := range []struct {
		cols    int
		noColor bool
	}{{80, true}, {160, false}} {
		t.Run(fmt.Sprintf("%d columns", tc.cols), func(t *testing.T) {
			c := cluster.Start(t)
			ns := c.Namespace(t)
			c.Pod(t, ns, "web-0", cluster.PodOptions{Forward: map[int32]string{8080: cluster.EchoServer(t)}})
			ghost := "db-" + strings.Repeat("missing-", 7) + "0" // long, so is its error
			file := filepath.Join(t.TempDir(), "tunnels.yaml")
			writeFile(t, file, fmt.Sprintf(`version: 1
namespace: %s
tunnels:
  web:
    pod: web-0
    ports: [":8080"]
  db:
    pod: %s
    ports: [":5432"]
  late:
    selector: app=late
    ports: [":9000"]
`, ns, ghost))
			var env []string
			if tc.noColor {
				env = append(env, "NO_COLOR=1")
			}
			p := startPtyUp(t, c, file, tc.cols, env...)
			p.waitScreen("web connected", func(s string) bool { return strings.Contains(s, "connected to pod web-0") })

			// A connection through web, so that the counts move.
			status := &upProc{bin: cluster.TunnelsBinary(t), file: file}
			var local string
			var dbErr string
			deadline := time.Now().Add(30 * time.Second)
			for local == "" || dbErr == "" {
				if time.Now().After(deadline) {
					t.Fatalf("timed out waiting for web ready and db's error in tunnels status")
				}
				if d, err := status.status(); err == nil {
					if r, ok := d.row("web", "8080"); ok && r.State == "ready" && len(r.Local) > 0 {
						local = r.Local[0]
					}
					if r, ok := d.row("db", "5432"); ok {
						dbErr = r.LastError
					}
				}
				time.Sleep(20 * time.Millisecond) // polling with a deadline
			}
			dialEcho(t, local, "hello")
			if !strings.Contains(dbErr, "404 Not Found") || strings.Contains(dbErr, "…") || utf8.RuneCountInString(dbErr) <= tc.cols/2 {
				t.Errorf("tunnels status -o json: db's last error %q, want it whole (long, with 404 Not Found)", dbErr)
			}

			// A pod for late: it wakes late, and db, which shares the pod
			// watch, is not told (its pod is another). late's session
			// connects only after the watch has handled the pod's event
			// for every tunnel, db included, so its line comes after any
			// line the event could make db write (dbWoken checks that
			// there is none); db's own backoff retries go on regardless.
			c.Pod(t, ns, "late-1", cluster.PodOptions{Labels: map[string]string{"app": "late"}})
			lines := p.waitScreen("late connected", func(s string) bool {
				return strings.Contains(s, "connected to pod late-1")
			})
			screen := strings.Join(lines, "\n")
			t.Logf("the screen at %d columns:\n%s", tc.cols, screen)
			_ = os.WriteFile(filepath.Join(t.ArtifactDir(), fmt.Sprintf("screen-%d.txt", tc.cols)), []byte(screen+"\n"), 0o644)

			for _, l := range lines {
				if n := utf8.RuneCountInString(l); n > tc.cols {
					t.Errorf("a line of %d runes on a terminal of %d columns:\n%s", n, tc.cols, l)
				}
			}
			dbRow := ""
			for _, l := range lines {
				if strings.HasPrefix(l, "db ") {
					dbRow = l
				}
			}
			if !strings.Contains(dbRow, "…") || !strings.Contains(dbRow, "resolve pod/db-") {
				t.Errorf("db's row %q: want its long error cut with an ellipsis", dbRow)
			}
			if m := logNoise.FindString(screen); m != "" {
				t.Errorf("the screen shows log noise %q:\n%s", m, screen)
			}
			recent := false
			var events []string
			for _, l := range lines {
				switch {
				case l == "recent:":
					recent = true
				case recent:
					events = append(events, l)
				}
			}
			if len(events) == 0 {
				t.Fatalf("no recent events on the screen:\n%s", screen)
			}
			for _, l := range events {
				if !recentLine.MatchString(l) {
					t.Errorf("recent event %q: want '  HH:MM:SS TUNNEL  text'", l)
				}
			}
			// Newest last. db keeps retrying on its own backoff, so a retry
			// of its may land after late's connection; leave its lines out.
			var others []string
			for _, l := range events {
				if f := strings.Fields(l); len(f) < 2 || f[1] != "db" {
					others = append(others, l)
				}
			}
			if len(others) == 0 || !strings.Contains(others[len(others)-1], "connected to pod late-1") {
				t.Errorf("recent events %q: want late's connection the newest but for db's retries", events)
			}
			for _, want := range []string{"web", "connected to pod web-0", "localhost:"} {
				if !strings.Contains(screen, want) {
					t.Errorf("the screen lacks %q:\n%s", want, screen)
				}
			}

			p.interrupt()
			<-p.ended
			raw := p.out.String()
			if m := dbWoken.FindString(escapes.ReplaceAllString(raw, "")); m != "" {
				t.Errorf("db, whose pod does not exist, was woken by another pod: %q", m)
			}
			colored := regexp.MustCompile("\x1b\\[[0-9;]*m").MatchString(raw)
			if tc.noColor && colored {
				t.Errorf("colour codes with NO_COLOR set")
			}
			if !tc.noColor && !colored {
				t.Errorf("no colour codes on a terminal without NO_COLOR")
			}
		})
	}
}
