package config

import (
	"errors"
	"strings"
	"testing"
)

// commented is a file as people write them: comments everywhere, blank
// lines, both quoting styles, block and flow collections, odd indentation.
const commented = `# yaml-language-server: $schema=.tunnels.schema.json
# Our dev tunnels.
version: 1   # the format
namespace: shop

tunnels:
    # The API, both ports.
    api:
        pod: api-0        # the first replica
        ports: [8080, '9090:90']   # same port; local:remote

    # Postgres, through its service.
    db:
        service: postgres
        ports:
          - "5432"        # psql
          - ':6543'       # pgbouncer
        # keep it last
    web: {selector: "app=web", ports: [":3000"]}   # flow style

# end of file
`

// changed returns the lines of before and after between their common
// first and last lines: what an edit removed and added.
func changed(before, after string) (removed, added []string) {
	b, a := strings.SplitAfter(before, "\n"), strings.SplitAfter(after, "\n")
	i := 0
	for i < len(b) && i < len(a) && b[i] == a[i] {
		i++
	}
	j := 0
	for j < len(b)-i && j < len(a)-i && b[len(b)-1-j] == a[len(a)-1-j] {
		j++
	}
	return b[i : len(b)-j], a[i : len(a)-j]
}

func mustPort(t *testing.T, s string) PortSpec {
	t.Helper()
	p, err := ParsePortSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEditKeepsTheRest(t *testing.T) {
	if _, err := Parse("t.yaml", []byte(commented)); err != nil {
		t.Fatalf("the fixture is invalid: %v", err)
	}
	tests := []struct {
		name           string
		edit           func([]byte) ([]byte, error)
		removed, added string
	}{
		{"add block tunnel", func(d []byte) ([]byte, error) {
			return AddTunnel(d, NewTunnel{Name: "cache", Target: Target{Kind: KindService, Name: "redis"}, Namespace: "infra", Context: "arn:aws:eks:x", Ports: []PortSpec{mustPort(t, "6379"), mustPort(t, ":6380")}})
		}, "", "    cache: {service: redis, namespace: infra, context: \"arn:aws:eks:x\", ports: [6379, \":6380\"]}\n"},
		{"add ports to flow list", func(d []byte) ([]byte, error) {
			return AddPorts(d, "api", []PortSpec{mustPort(t, "7070"), mustPort(t, "8081:http")})
		}, "        ports: [8080, '9090:90']   # same port; local:remote\n", "        ports: [8080, '9090:90', 7070, \"8081:http\"]   # same port; local:remote\n"},
		{"add ports to block list", func(d []byte) ([]byte, error) {
			return AddPorts(d, "db", []PortSpec{mustPort(t, "5433")})
		}, "", "          - 5433\n"},
		{"remove tunnel with its comment", func(d []byte) ([]byte, error) { return RemoveTunnel(d, "db") },
			"    # Postgres, through its service.\n    db:\n        service: postgres\n        ports:\n          - \"5432\"        # psql\n          - ':6543'       # pgbouncer\n", ""},
		{"remove flow port", func(d []byte) ([]byte, error) {
			return RemovePorts(d, "api", []PortSpec{mustPort(t, "90")}, []bool{true})
		}, "        ports: [8080, '9090:90']   # same port; local:remote\n", "        ports: [8080]   # same port; local:remote\n"},
		{"remove block port", func(d []byte) ([]byte, error) {
			return RemovePorts(d, "db", []PortSpec{mustPort(t, "5432")}, []bool{true})
		}, "          - \"5432\"        # psql\n", ""},
		{"disable block tunnel", func(d []byte) ([]byte, error) { return SetDisabled(d, "api", true) },
			"", "        disabled: true\n"},
		{"disable flow tunnel", func(d []byte) ([]byte, error) { return SetDisabled(d, "web", true) },
			"    web: {selector: \"app=web\", ports: [\":3000\"]}   # flow style\n", "    web: {selector: \"app=web\", ports: [\":3000\"], disabled: true}   # flow style\n"},
		{"enable an enabled tunnel", func(d []byte) ([]byte, error) { return SetDisabled(d, "api", false) }, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.edit([]byte(commented))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse("t.yaml", out); err != nil {
				t.Fatalf("the edited file is invalid: %v\n%s", err, out)
			}
			removed, added := changed(commented, string(out))
			if got := strings.Join(removed, ""); got != tc.removed {
				t.Errorf("removed lines:\n%q\nwant:\n%q", got, tc.removed)
			}
			if got := strings.Join(added, ""); got != tc.added {
				t.Errorf("added lines:\n%q\nwant:\n%q", got, tc.added)
			}
		})
	}
}

// TestEditRoundTrip: disabling then enabling, adding then removing give
// back the very bytes.
func TestEditRoundTrip(t *testing.T) {
	data := []byte(commented)
	off, err := SetDisabled(data, "db", true)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("t.yaml", off)
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range f.Tunnels {
		if tn.Name == "db" && !tn.Disabled {
			t.Error("db is not disabled after SetDisabled(true)")
		}
	}
	on, err := SetDisabled(off, "db", false)
	if err != nil {
		t.Fatal(err)
	}
	if string(on) != commented {
		t.Errorf("disable then enable changed the file:\n%s", on)
	}
	added, err := AddTunnel(data, NewTunnel{Name: "zz", Target: Target{Kind: KindPod, Name: "zz-0"}, Ports: []PortSpec{mustPort(t, "1")}})
	if err != nil {
		t.Fatal(err)
	}
	noAPI, err := RemoveTunnel(data, "api")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(noAPI), "tunnels:\n    # Postgres") {
		t.Errorf("removing the first tunnel left its blank line:\n%s", noAPI)
	}
	back, err := RemoveTunnel(added, "zz")
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != commented {
		t.Errorf("add then remove changed the file:\n%s", back)
	}
}

func TestEditBlockStyleAndEdges(t *testing.T) {
	block := "version: 1\ntunnels:\n  a:\n    pod: a\n    ports: [1]\n    disabled: true # off for now\n"
	out, err := AddTunnel([]byte(block), NewTunnel{Name: "b", Target: Target{Kind: KindPod, Name: "b"}, Ports: []PortSpec{mustPort(t, ":2")}})
	if err != nil {
		t.Fatal(err)
	}
	if want := block + "  b:\n    pod: b\n    ports: [\":2\"]\n"; string(out) != want {
		t.Errorf("add after a block tunnel:\n%s\nwant:\n%s", out, want)
	}
	out, err = SetDisabled([]byte(block), "a", false)
	if err != nil || string(out) != "version: 1\ntunnels:\n  a:\n    pod: a\n    ports: [1]\n" {
		t.Errorf("enable: %v\n%s", err, out)
	}
	// No trailing newline, and an empty tunnels mapping.
	out, err = AddTunnel([]byte("version: 1\ntunnels: {} # none yet"), NewTunnel{Name: "a", Target: Target{Kind: KindPod, Name: "a"}, Ports: []PortSpec{mustPort(t, "1")}})
	if err != nil || string(out) != "version: 1\ntunnels: # none yet\n  a:\n    pod: a\n    ports: [1]\n" {
		t.Errorf("add to an empty mapping: %v\n%q", err, out)
	}
	if _, err := Parse("t.yaml", out); err != nil {
		t.Error(err)
	}
	out, err = RemoveTunnel([]byte(block), "a")
	if err != nil || string(out) != "version: 1\ntunnels: {}\n" {
		t.Errorf("remove the last tunnel: %v\n%q", err, out)
	}

	for _, tc := range []struct {
		name string
		err  error
		edit func() ([]byte, error)
	}{
		{"add existing", ErrTunnelExists, func() ([]byte, error) {
			return AddTunnel([]byte(block), NewTunnel{Name: "a", Target: Target{Kind: KindPod, Name: "a"}, Ports: []PortSpec{mustPort(t, "1")}})
		}},
		{"ports of missing", ErrNoTunnel, func() ([]byte, error) { return AddPorts([]byte(block), "zz", []PortSpec{mustPort(t, "1")}) }},
		{"remove missing", ErrNoTunnel, func() ([]byte, error) { return RemoveTunnel([]byte(block), "zz") }},
		{"remove missing port", ErrNoPort, func() ([]byte, error) {
			return RemovePorts([]byte(commented), "api", []PortSpec{mustPort(t, "1")}, []bool{true})
		}},
	} {
		if _, err := tc.edit(); !errors.Is(err, tc.err) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.err)
		}
	}
}

// FuzzEdits: no edit panics, whatever the file holds, and an edit of a
// valid file that succeeds changes only what it says.
func FuzzEdits(f *testing.F) {
	f.Add([]byte(commented), "api", "7070")
	f.Add([]byte("version: 1\ntunnels: {}\n"), "a", ":1")
	f.Add([]byte("version: 1\ntunnels:\n  a: &x {pod: a, ports: [1]}\n  b: *x\n"), "b", "2")
	f.Add([]byte("tunnels:\n  a:\n    ports:\n    - |\n      1\n"), "a", "1")
	f.Fuzz(func(t *testing.T, data []byte, name, port string) {
		p, err := ParsePortSpec(port)
		if err != nil {
			return
		}
		_, validBefore := Parse("f.yaml", data)
		edits := map[string]func() ([]byte, error){
			"add tunnel": func() ([]byte, error) {
				return AddTunnel(data, NewTunnel{Name: name, Target: Target{Kind: KindPod, Name: "p"}, Ports: []PortSpec{p}})
			},
			"add port":  func() ([]byte, error) { return AddPorts(data, name, []PortSpec{p}) },
			"rm tunnel": func() ([]byte, error) { return RemoveTunnel(data, name) },
			"rm port":   func() ([]byte, error) { return RemovePorts(data, name, []PortSpec{p}, []bool{true}) },
			"disable":   func() ([]byte, error) { return SetDisabled(data, name, true) },
			"enable":    func() ([]byte, error) { return SetDisabled(data, name, false) },
		}
		for what, edit := range edits {
			out, err := edit()
			if err != nil || validBefore != nil {
				continue
			}
			if what == "disable" || what == "enable" {
				f, perr := Parse("f.yaml", out)
				if perr != nil {
					continue // a tunnel that was not a mapping, say
				}
				for _, tn := range f.Tunnels {
					if tn.Name == name && tn.Disabled != (what == "disable") {
						t.Errorf("%s %q: disabled is %v:\n%s", what, name, tn.Disabled, out)
					}
				}
			}
		}
	})
}
