package config

import (
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	tests := []struct {
		name  string
		check func(string) bool
		ok    []string
		bad   []string
	}{
		{"DNS-1123 label", isDNS1123Label,
			[]string{"a", "0", "api", "api-0", "9lives", strings.Repeat("a", 63)},
			[]string{"", "-a", "a-", "A", "a_b", "a.b", strings.Repeat("a", 64)}},
		{"DNS-1123 subdomain", isDNS1123Subdomain,
			[]string{"a", "api-0", "a.b.c", "web.front-1", strings.Repeat("a.", 126) + "a"},
			[]string{"", ".a", "a.", "a..b", "A.b", "a_b", strings.Repeat("a.", 127) + "a"}},
		{"DNS-1035 label", isDNS1035Label,
			[]string{"a", "db", "postgres-replica"},
			[]string{"", "1db", "-db", "db-", "Db", "d.b"}},
		{"port name", func(s string) bool { return portNameProblem(s) == "" },
			[]string{"http", "h2c", "1a", "a1", "metrics-v2", strings.Repeat("a", 15)},
			[]string{"HTTP", "-a", "a-", "a--b", "a_b", "123", "1-2", strings.Repeat("a", 16)}},
		{"label key", func(s string) bool { return labelKeyProblem(s) == "" },
			[]string{"app", "App_1.x", "example.com/app", "a/b"},
			[]string{"", "/a", "a/", "-a", "a/b/c", "Ex.com/a", strings.Repeat("k", 64)}},
		{"label value", isLabelValue,
			[]string{"", "web", "Web_1.x", strings.Repeat("v", 63)},
			[]string{"-a", "a-", "a b", "a/b", strings.Repeat("v", 64)}},
	}
	for _, tt := range tests {
		for _, s := range tt.ok {
			if !tt.check(s) {
				t.Errorf("%s %q: got invalid, want valid", tt.name, s)
			}
		}
		for _, s := range tt.bad {
			if tt.check(s) {
				t.Errorf("%s %q: got valid, want invalid", tt.name, s)
			}
		}
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct{ key, want string }{
		{"namspace", "namespace"},
		{"contexts", "context"},
		{"prots", "ports"},
		{"port", "ports"},
		{"svc", "service"},
		{"deploy", "deployment"},
		{"sts", "statefulset"},
		{"labels", "selector"},
		{"adress", "address"},
		{"verison", "version"},
		{"enabled", "disabled"},
		{"zzz", ""},
		{"name", ""},
		{"description", ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.key, tunnelKeys); got != tt.want && suggest(tt.key, fileKeys) != tt.want {
			t.Errorf("suggest(%q) = %q; want %q", tt.key, got, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"a", "", 1},
		{"ports", "ports", 0},
		{"prots", "ports", 1},
		{"namspace", "namespace", 1},
		{"kitten", "sitting", 3},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d; want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
