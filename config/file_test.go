package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadFull(t *testing.T) {
	got, err := Load("../examples/full.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &File{
		Version:   1,
		Context:   "dev-cluster",
		Namespace: "shop",
		Address:   []string{"localhost"},
		Transport: "auto",
		Tunnels: []Tunnel{
			{Name: "api", Target: Target{KindPod, "api-0"}, Line: 8, Column: 3, Ports: []PortSpec{
				{Local: 8080, Remote: RemotePort{Number: 8080}},
				{Local: 9090, Remote: RemotePort{Number: 90}},
			}},
			{Name: "db", Target: Target{KindService, "postgres"}, Line: 11, Column: 3, Ports: []PortSpec{
				{Local: 5432, Remote: RemotePort{Number: 5432}},
			}},
			{Name: "web", Target: Target{KindSelector, "app=web,tier=front"}, Namespace: "frontend", Line: 14, Column: 3, Ports: []PortSpec{
				{Local: 0, Remote: RemotePort{Number: 3000}},
			}},
			{Name: "cache", Target: Target{KindDeployment, "redis"}, Address: []string{"127.0.0.1"}, Transport: "spdy", Disabled: true, Line: 18, Column: 3, Ports: []PortSpec{
				{Local: 6379, Remote: RemotePort{Name: "redis"}},
			}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(full.yaml):\ngot  %+v\nwant %+v", got, want)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "tunnels.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing): got %v, want an error matching fs.ErrNotExist", err)
	}
	var problems Problems
	if errors.As(err, &problems) {
		t.Errorf("Load(missing): got Problems %v, want an I/O error", problems)
	}
}

func TestLoadProblemsNameThePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tunnels.yaml")
	if err := os.WriteFile(path, []byte("version: 2\ntunnels: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	want := path + ":1:10: unsupported version 2: this tunnels reads version 1"
	if err == nil || err.Error() != want {
		t.Errorf("Load: got %v, want %q", err, want)
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want *File
	}{
		{"no tunnels", "version: 1\ntunnels: {}\n", &File{Version: 1}},
		{"document markers and an empty document after", "---\nversion: 1\ntunnels: {}\n...\n---\n# nothing\n", &File{Version: 1}},
		{"tunnels before settings",
			"tunnels:\n  a: {pod: p, ports: [1]}\naddress: [\"::1\", 127.0.0.1]\nnamespace: ns\ncontext: c\nversion: 1\n",
			&File{Version: 1, Context: "c", Namespace: "ns", Address: []string{"::1", "127.0.0.1"}, Tunnels: []Tunnel{
				{Name: "a", Target: Target{KindPod, "p"}, Line: 2, Column: 3, Ports: []PortSpec{{1, RemotePort{Number: 1}}}},
			}}},
		{"every target kind and an explicit every-address",
			"version: 1\ntunnels:\n" +
				"  a: {pod: p.q, ports: [1]}\n" +
				"  b: {service: s, ports: [2]}\n" +
				"  c: {deployment: d, ports: [3]}\n" +
				"  d: {statefulset: s, ports: [4], address: 0.0.0.0}\n" +
				"  e: {selector: 'x in (b, a)', ports: [\"5:metrics\"], disabled: false}\n",
			&File{Version: 1, Tunnels: []Tunnel{
				{Name: "a", Target: Target{KindPod, "p.q"}, Line: 3, Column: 3, Ports: []PortSpec{{1, RemotePort{Number: 1}}}},
				{Name: "b", Target: Target{KindService, "s"}, Line: 4, Column: 3, Ports: []PortSpec{{2, RemotePort{Number: 2}}}},
				{Name: "c", Target: Target{KindDeployment, "d"}, Line: 5, Column: 3, Ports: []PortSpec{{3, RemotePort{Number: 3}}}},
				{Name: "d", Target: Target{KindStatefulSet, "s"}, Address: []string{"0.0.0.0"}, Line: 6, Column: 3, Ports: []PortSpec{{4, RemotePort{Number: 4}}}},
				{Name: "e", Target: Target{KindSelector, "x in (a,b)"}, Line: 7, Column: 3, Ports: []PortSpec{{5, RemotePort{Name: "metrics"}}}},
			}}},
		{"one bad spec among good ones",
			"version: 1\ntunnels:\n" +
				"  a: {pod: a, ports: [80, ':81', ':81:'], address: 127.0.0.1}\n",
			nil},
		{"same local port where it cannot collide",
			"version: 1\ntunnels:\n" +
				"  a: {pod: a, ports: [80, ':81'], address: 127.0.0.1}\n" +
				"  b: {pod: b, ports: [80, ':81'], address: 127.0.0.2}\n" +
				"  c: {pod: c, ports: [80], disabled: true}\n" +
				"  d: {pod: d, ports: ['0:80', '80:81'], address: '::1'}\n",
			&File{Version: 1, Tunnels: []Tunnel{
				{Name: "a", Target: Target{KindPod, "a"}, Address: []string{"127.0.0.1"}, Line: 3, Column: 3, Ports: []PortSpec{{80, RemotePort{Number: 80}}, {0, RemotePort{Number: 81}}}},
				{Name: "b", Target: Target{KindPod, "b"}, Address: []string{"127.0.0.2"}, Line: 4, Column: 3, Ports: []PortSpec{{80, RemotePort{Number: 80}}, {0, RemotePort{Number: 81}}}},
				{Name: "c", Target: Target{KindPod, "c"}, Disabled: true, Line: 5, Column: 3, Ports: []PortSpec{{80, RemotePort{Number: 80}}}},
				{Name: "d", Target: Target{KindPod, "d"}, Address: []string{"::1"}, Line: 6, Column: 3, Ports: []PortSpec{{0, RemotePort{Number: 80}}, {80, RemotePort{Number: 81}}}},
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("t.yaml", []byte(tt.yaml))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("Parse = %+v, nil; want problems", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse:\ngot  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseAliases(t *testing.T) {
	data := "version: 1\ntunnels:\n  a: {pod: a, ports: &p ['1:80', ':http']}\n  b: {pod: b, ports: *p, address: 127.0.0.2}\n"
	f, err := Parse("t.yaml", []byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(f.Tunnels) != 2 || !reflect.DeepEqual(f.Tunnels[0].Ports, f.Tunnels[1].Ports) {
		t.Errorf("Parse: got tunnels %+v, want b to share a's ports", f.Tunnels)
	}
	// The same alias in two tunnels on the same address: a conflict,
	// reported once per tunnel at the anchored node.
	data = "version: 1\ntunnels:\n  a: {pod: a, ports: &p [80]}\n  b: {pod: b, ports: *p}\n"
	_, err = Parse("t.yaml", []byte(data))
	want := `t.yaml:3:26: tunnel "b": local port 80 on 127.0.0.1 is already taken by tunnel "a" (at 3:26)`
	if err == nil || err.Error() != want {
		t.Errorf("Parse: got %v, want %q", err, want)
	}
}

func TestProblems(t *testing.T) {
	ps := Problems{
		{File: "f.yaml", Line: 9, Column: 1, Message: "c"},
		{File: "f.yaml", Line: 2, Column: 7, Message: "b"},
		{File: "f.yaml", Line: 2, Column: 3, Message: "a"},
	}
	ps.sort("f.yaml")
	got := ps.Error()
	want := "f.yaml:2:3: a\nf.yaml:2:7: b\nf.yaml:9:1: c"
	if got != want {
		t.Errorf("Problems.Error() = %q; want %q", got, want)
	}
	var err error = ps
	var back Problems
	if !errors.As(err, &back) || len(back) != 3 {
		t.Errorf("errors.As(Problems) = %v; want the 3 problems", back)
	}
}

// TestParseEveryProblemAtOnce checks that one mistake does not hide the
// others, and that the problems come sorted by position.
func TestParseEveryProblemAtOnce(t *testing.T) {
	data := "tunnels:\n  b: {pod: B, ports: []}\n  a: {ports: [0]}\nversion: 3\n"
	_, err := Parse("t.yaml", []byte(data))
	want := strings.Join([]string{
		`t.yaml:2:12: tunnel "b": pod "B": want a DNS-1123 subdomain, ` + dns1123SubdomainRule,
		`t.yaml:2:22: tunnel "b": ports: empty list, want at least one port spec`,
		`t.yaml:3:3: tunnel "a": no target; want exactly one of pod, service, deployment, statefulset, selector`,
		`t.yaml:3:15: tunnel "a": port spec "0": remote port 0 is out of range 1-65535`,
		`t.yaml:4:10: unsupported version 3: this tunnels reads version 1`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("Parse:\ngot  %v\nwant %s", err, want)
	}
}

func TestLocate(t *testing.T) {
	tests := []struct {
		data, token       string
		wantLine, wantCol int
	}{
		{"a: *x\n", "*x", 1, 4},
		{"a: 1\nb: [*xy, *x]\n", "*x", 2, 10},
		{"a: *xy\n", "*x", 1, 1},
		{"a: 1\nb: *x", "*x", 2, 4},
	}
	for _, tt := range tests {
		if line, col := locate([]byte(tt.data), tt.token); line != tt.wantLine || col != tt.wantCol {
			t.Errorf("locate(%q, %q) = %d:%d; want %d:%d", tt.data, tt.token, line, col, tt.wantLine, tt.wantCol)
		}
	}
}

func TestParseSecondDocumentSyntaxError(t *testing.T) {
	_, err := Parse("t.yaml", []byte("version: 1\ntunnels: {}\n---\na: [\n"))
	var problems Problems
	if !errors.As(err, &problems) || len(problems) != 1 || !strings.Contains(problems[0].Message, "invalid YAML") {
		t.Errorf("Parse: got %v, want one invalid YAML problem", err)
	}
}
