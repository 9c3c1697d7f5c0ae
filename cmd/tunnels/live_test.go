package main

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// sgr matches the colour codes the view writes.
var sgr = regexp.MustCompile("\x1b\\[[0-9;]*m")

func liveReport() statusReport {
	long := `resolve pod/db-0 in namespace "shop": get pods "db-0" in namespace "shop": 404 Not Found; check the name, the namespace and the context`
	return statusReport{File: "tunnels.yaml", Tunnels: []portRow{
		{Tunnel: "api", Namespace: "shop", Target: "svc/api", Pod: "api-7c9f8d5b4-x2k4q", Local: []string{"127.0.0.1:8080", "[::1]:8080"}, LocalPort: 8080, Remote: "80", State: "ready", Active: 2, Total: 14, BytesIn: 5 << 20, BytesOut: 300},
		{Tunnel: "db", Namespace: "shop", Target: "pod/db-0", Local: []string{"127.0.0.1:5432", "[::1]:5432"}, LocalPort: 5432, Remote: "5432", State: "retrying", LastError: long},
	}}
}

// TestLiveFrameFitsTheWidth: at every width, no line of the view is wider
// than the terminal; from 60 columns on the ports are whole and the long
// error is cut with an ellipsis, from 80 it shows more than a word, and at
// 160 the pod and counts are shown.
func TestLiveFrameFitsTheWidth(t *testing.T) {
	r := liveReport()
	r.Config.Error = "tunnels.yaml:7:12: unknown field \"prots\" in tunnel \"web\"; did you mean \"ports\"? " + strings.Repeat("x", 200)
	events := []string{"12:03:41 db  " + strings.Repeat("connect to pod failed; retrying ", 10)}
	for _, cols := range []int{20, 40, 60, 80, 100, 160, 240} {
		for _, color := range []bool{false, true} {
			lines := renderFrame(r, events, cols, 0, color)
			screen := strings.Join(lines, "\n")
			for _, l := range lines {
				if n := utf8.RuneCountInString(sgr.ReplaceAllString(l, "")); n > cols {
					t.Errorf("%d columns: a line of %d:\n%s", cols, n, l)
				}
			}
			if hasColor := sgr.MatchString(screen); hasColor != color {
				t.Errorf("%d columns, color %v: colour codes present: %v\n%s", cols, color, hasColor, screen)
			}
			if cols < 60 {
				continue
			}
			for _, want := range []string{"localhost:8080->80", "localhost:5432->5432", "resolve p", "…"} {
				if !strings.Contains(screen, want) {
					t.Errorf("%d columns: %q missing:\n%s", cols, want, screen)
				}
			}
			if cols >= 80 && !strings.Contains(screen, "resolve pod/db-") {
				t.Errorf("%d columns: the error's start missing:\n%s", cols, screen)
			}
			if cols >= 160 {
				for _, want := range []string{"api-7c9f8d5b4-x2k4q", "2/14", "5.0MiB", "resolve pod/db-0 in namespace"} {
					if !strings.Contains(screen, want) {
						t.Errorf("%d columns: %q missing:\n%s", cols, want, screen)
					}
				}
			}
			if cols == 80 && !color {
				t.Logf("80 columns:\n%s", screen)
			}
		}
	}
}

// TestLiveFrameRecentFitsTheRows: the recent events are cut to the rows
// left under the table, newest kept.
func TestLiveFrameRecentFitsTheRows(t *testing.T) {
	events := []string{"e1", "e2", "e3", "e4", "e5"}
	lines := renderFrame(liveReport(), events, 160, 10, false)
	if len(lines) > 9 {
		t.Errorf("%d lines on 10 rows, want at most 9:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if last := lines[len(lines)-1]; strings.TrimSpace(last) != "e5" {
		t.Errorf("last line %q, want the newest event e5", last)
	}
}

// TestEventLogLines: records become short lines: time, tunnel, a sentence
// with the pod, address, delay and error, no key=value pairs; a
// reconnection names the pod before; a retry after the same error counts
// up instead of adding a line.
func TestEventLogLines(t *testing.T) {
	h := newEventLog(slog.LevelInfo)
	log := slog.New(h)
	at := time.Date(2026, 1, 2, 12, 3, 41, 0, time.Local)
	emit := func(l *slog.Logger, level slog.Level, msg string, args ...any) {
		if !l.Handler().Enabled(context.Background(), level) {
			return
		}
		r := slog.NewRecord(at, level, msg, 0)
		r.Add(args...)
		if err := l.Handler().Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	db := log.With("context", "kind", "tunnel", "db", "target", "pod/db")
	emit(db, slog.LevelInfo, "listening", "local", "127.0.0.1:5432,[::1]:5432", "remote", "5432")
	emit(log, slog.LevelInfo, "config applied", "file", "tunnels.yaml", "cause", "start", "start", 1, "stop", 0, "keep", 0, "retry", false)
	emit(db, slog.LevelInfo, "connected", "pod", "shop/db-5d2a")
	emit(db, slog.LevelInfo, "connected over websocket", "pod", "shop/db-7c9f")
	for _, d := range []time.Duration{400 * time.Millisecond, 900 * time.Millisecond, 1800 * time.Millisecond} {
		emit(db, slog.LevelWarn, "connect to pod failed; retrying", "err", errors.New("no ready pod\nat all"), "delay", d)
	}
	emit(log.With("tunnel", "a-very-long-tunnel-name-indeed"), slog.LevelInfo, "connected", "pod", "shop/x")
	emit(db, slog.LevelDebug, "accepted", "local", "127.0.0.1:5432")

	want := []string{
		"12:03:41 db                listening on localhost:5432->5432",
		"12:03:41                   config applied (1 started, 0 stopped)",
		"12:03:41 db                connected to pod db-5d2a",
		"12:03:41 db                reconnected to pod db-7c9f over websocket (was db-5d2a)",
		"12:03:41 db                connect to pod failed; retrying in 1.8s (x3): no ready pod at all",
		"12:03:41 a-very-long-tun…  connected to pod x",
	}
	got := h.lines(10)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := h.lines(2); len(got) != 2 || got[1] != want[5] {
		t.Errorf("lines(2) = %q, want the two newest", got)
	}
}
