package main

import (
	"strings"
	"testing"
)

func TestTransportFor(t *testing.T) {
	tests := []struct {
		flag, env, want string
	}{
		{"", "", "auto"},
		{"", "false", "spdy"},
		{"", "0", "spdy"},
		{"", "true", "auto"},
		{"websocket", "false", "websocket"},
		{"auto", "false", "spdy"},
		{"spdy", "", "spdy"},
	}
	for _, tt := range tests {
		e := &env{getenv: func(k string) string {
			if k == websocketsEnv {
				return tt.env
			}
			return ""
		}}
		if got := transportFor(e, tt.flag); got != tt.want {
			t.Errorf("transportFor(--transport=%q, %s=%q) = %q, want %q", tt.flag, websocketsEnv, tt.env, got, tt.want)
		}
	}
}

func TestBadTransportFlag(t *testing.T) {
	for _, args := range [][]string{{"up", "--transport", "http2"}, {"forward", "--transport", "http2", "pod/web", "80"}} {
		cmd := args[0]
		var stdout, stderr strings.Builder
		e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
		code := run(t.Context(), e, args)
		if code != exitUsage || !strings.Contains(stderr.String(), `--transport must be auto, websocket or spdy, not "http2"`) {
			t.Errorf("%s --transport http2: exit %d, stderr %q; want %d and the allowed values", cmd, code, stderr.String(), exitUsage)
		}
	}
}
