package config

import (
	"slices"
	"testing"
)

// parse parses data or fails the test.
func parse(t *testing.T, data string) *File {
	t.Helper()
	f, err := Parse("t.yaml", []byte(data))
	if err != nil {
		t.Fatalf("Parse(%q): %v", data, err)
	}
	return f
}

func TestSpecsDefaults(t *testing.T) {
	namespaces := func(ctx string) string {
		return map[string]string{"current": "cur-ns", "prod": "prod-ns"}[ctx]
	}
	tests := []struct {
		name     string
		yaml     string
		defaults Defaults
		want     []Spec
	}{
		{
			name:     "every default from the kubeconfig",
			yaml:     "version: 1\ntunnels:\n  api: {pod: api-0, ports: [8080]}\n",
			defaults: Defaults{Context: "current", Namespace: namespaces},
			want: []Spec{{Tunnel: "api", Session: Session{"current", "cur-ns", Target{KindPod, "api-0"}, "auto"},
				Address: "localhost", LocalPort: 8080, Remote: RemotePort{Number: 8080}}},
		},
		{
			name:     "no namespace anywhere: default",
			yaml:     "version: 1\ntunnels:\n  api: {pod: api-0, ports: [8080]}\n",
			defaults: Defaults{Context: "elsewhere", Namespace: namespaces},
			want: []Spec{{Tunnel: "api", Session: Session{"elsewhere", "default", Target{KindPod, "api-0"}, "auto"},
				Address: "localhost", LocalPort: 8080, Remote: RemotePort{Number: 8080}}},
		},
		{
			name:     "nil Namespace func: default",
			yaml:     "version: 1\ntunnels:\n  api: {pod: api-0, ports: [8080]}\n",
			defaults: Defaults{Context: "current"},
			want: []Spec{{Tunnel: "api", Session: Session{"current", "default", Target{KindPod, "api-0"}, "auto"},
				Address: "localhost", LocalPort: 8080, Remote: RemotePort{Number: 8080}}},
		},
		{
			name: "file settings inherited",
			yaml: "version: 1\ncontext: prod\nnamespace: shop\naddress: ['::1', 127.0.0.1]\n" +
				"tunnels:\n  api: {pod: api-0, ports: ['1:2']}\n",
			defaults: Defaults{Context: "current", Namespace: namespaces},
			want: []Spec{{Tunnel: "api", Session: Session{"prod", "shop", Target{KindPod, "api-0"}, "auto"},
				Address: "::1,127.0.0.1", LocalPort: 1, Remote: RemotePort{Number: 2}}},
		},
		{
			name: "tunnel settings win over the file's",
			yaml: "version: 1\ncontext: prod\nnamespace: shop\naddress: 127.0.0.1\n" +
				"tunnels:\n  api: {pod: api-0, context: dev, namespace: dev-ns, address: 0.0.0.0, ports: [':http']}\n",
			defaults: Defaults{Context: "current", Namespace: namespaces},
			want: []Spec{{Tunnel: "api", Session: Session{"dev", "dev-ns", Target{KindPod, "api-0"}, "auto"},
				Address: "0.0.0.0", LocalPort: 0, Remote: RemotePort{Name: "http"}}},
		},
		{
			name:     "the tunnel's context picks the kubeconfig namespace",
			yaml:     "version: 1\ntunnels:\n  api: {pod: api-0, context: prod, ports: [1]}\n",
			defaults: Defaults{Context: "current", Namespace: namespaces},
			want: []Spec{{Tunnel: "api", Session: Session{"prod", "prod-ns", Target{KindPod, "api-0"}, "auto"},
				Address: "localhost", LocalPort: 1, Remote: RemotePort{Number: 1}}},
		},
		{
			name: "Override beats the tunnel's and the file's context",
			yaml: "version: 1\ncontext: staging\ntunnels:\n" +
				"  a: {pod: a, context: dev, ports: [1]}\n  b: {pod: b, namespace: keep, ports: [2]}\n",
			defaults: Defaults{Context: "current", Namespace: namespaces, Override: "prod"},
			want: []Spec{
				{Tunnel: "a", Session: Session{"prod", "prod-ns", Target{KindPod, "a"}, "auto"}, Address: "localhost", LocalPort: 1, Remote: RemotePort{Number: 1}},
				{Tunnel: "b", Session: Session{"prod", "keep", Target{KindPod, "b"}, "auto"}, Address: "localhost", LocalPort: 2, Remote: RemotePort{Number: 2}},
			},
		},
		{
			name: "sorted by tunnel, ports in written order, disabled left out",
			yaml: "version: 1\ntunnels:\n" +
				"  web: {pod: w, ports: [3, 1, 2]}\n  off: {pod: o, ports: [4], disabled: true}\n  api: {pod: a, ports: [5]}\n",
			defaults: Defaults{Context: "c"},
			want: []Spec{
				{Tunnel: "api", Session: Session{"c", "default", Target{KindPod, "a"}, "auto"}, Address: "localhost", LocalPort: 5, Remote: RemotePort{Number: 5}},
				{Tunnel: "web", Session: Session{"c", "default", Target{KindPod, "w"}, "auto"}, Address: "localhost", LocalPort: 3, Remote: RemotePort{Number: 3}},
				{Tunnel: "web", Session: Session{"c", "default", Target{KindPod, "w"}, "auto"}, Address: "localhost", LocalPort: 1, Remote: RemotePort{Number: 1}},
				{Tunnel: "web", Session: Session{"c", "default", Target{KindPod, "w"}, "auto"}, Address: "localhost", LocalPort: 2, Remote: RemotePort{Number: 2}},
			},
		},
		{
			name: "transport: the flag, then the tunnel's, then the file's; auto is spdy without websockets",
			yaml: "version: 1\ntransport: websocket\ntunnels:\n" +
				"  a: {pod: a, transport: spdy, ports: [1]}\n  b: {pod: b, ports: [2]}\n",
			defaults: Defaults{Context: "c"},
			want: []Spec{
				{Tunnel: "a", Session: Session{"c", "default", Target{KindPod, "a"}, "spdy"}, Address: "localhost", LocalPort: 1, Remote: RemotePort{Number: 1}},
				{Tunnel: "b", Session: Session{"c", "default", Target{KindPod, "b"}, "websocket"}, Address: "localhost", LocalPort: 2, Remote: RemotePort{Number: 2}},
			},
		},
		{
			name: "transport flag beats the file; NoWebSocket turns auto into spdy but keeps websocket",
			yaml: "version: 1\ntunnels:\n" +
				"  a: {pod: a, transport: websocket, ports: [1]}\n  b: {pod: b, transport: auto, ports: [2]}\n",
			defaults: Defaults{Context: "c", NoWebSocket: true},
			want: []Spec{
				{Tunnel: "a", Session: Session{"c", "default", Target{KindPod, "a"}, "websocket"}, Address: "localhost", LocalPort: 1, Remote: RemotePort{Number: 1}},
				{Tunnel: "b", Session: Session{"c", "default", Target{KindPod, "b"}, "spdy"}, Address: "localhost", LocalPort: 2, Remote: RemotePort{Number: 2}},
			},
		},
		{
			name:     "transport flag overrides every tunnel",
			yaml:     "version: 1\ntransport: spdy\ntunnels:\n  a: {pod: a, transport: spdy, ports: [1]}\n",
			defaults: Defaults{Context: "c", Transport: "websocket"},
			want: []Spec{
				{Tunnel: "a", Session: Session{"c", "default", Target{KindPod, "a"}, "websocket"}, Address: "localhost", LocalPort: 1, Remote: RemotePort{Number: 1}},
			},
		},
		{
			name:     "only disabled tunnels: no specs",
			yaml:     "version: 1\ntunnels:\n  off: {pod: o, ports: [4], disabled: true}\n",
			defaults: Defaults{Context: "c"},
			want:     nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parse(t, tt.yaml).Specs(tt.defaults)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Specs:\ngot  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestSpecsEqualWhenDefaultsSpelledOut checks that a file that omits a
// default gives the same Specs as one that writes it out.
func TestSpecsEqualWhenDefaultsSpelledOut(t *testing.T) {
	d := Defaults{Context: "current", Namespace: func(string) string { return "team" }}
	base := parse(t, "version: 1\ntunnels:\n  api: {pod: api-0, ports: [8080]}\n  web: {selector: 'app=web, tier=front', ports: [80]}\n").Specs(d)
	same := []struct{ name, yaml string }{
		{"namespace in the tunnel", "version: 1\ntunnels:\n  api: {pod: api-0, namespace: team, ports: [8080]}\n  web: {selector: 'app=web, tier=front', namespace: team, ports: [80]}\n"},
		{"namespace and context in the file", "version: 1\ncontext: current\nnamespace: team\ntunnels:\n  api: {pod: api-0, ports: [8080]}\n  web: {selector: 'app=web, tier=front', ports: [80]}\n"},
		{"explicit localhost", "version: 1\naddress: localhost\ntunnels:\n  api: {pod: api-0, ports: [8080]}\n  web: {selector: 'app=web, tier=front', ports: [80], address: [localhost]}\n"},
		{"spec forms", "version: 1\ntunnels:\n  api: {pod: api-0, ports: ['8080:8080']}\n  web: {selector: 'app=web, tier=front', ports: ['80']}\n"},
		{"selector reordered", "version: 1\ntunnels:\n  api: {pod: api-0, ports: [8080]}\n  web: {selector: 'tier==front,app=web', ports: [80]}\n"},
		{"tunnels reordered", "version: 1\ntunnels:\n  web: {selector: 'app=web, tier=front', ports: [80]}\n  api: {pod: api-0, ports: [8080]}\n"},
	}
	for _, tt := range same {
		got := parse(t, tt.yaml).Specs(d)
		if !slices.Equal(got, base) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, base)
		}
	}
	different := []struct{ name, yaml string }{
		{"other namespace", "version: 1\ntunnels:\n  api: {pod: api-0, namespace: other, ports: [8080]}\n  web: {selector: 'app=web, tier=front', ports: [80]}\n"},
		{"127.0.0.1 only", "version: 1\naddress: 127.0.0.1\ntunnels:\n  api: {pod: api-0, ports: [8080]}\n  web: {selector: 'app=web, tier=front', ports: [80]}\n"},
		{"other selector", "version: 1\ntunnels:\n  api: {pod: api-0, ports: [8080]}\n  web: {selector: 'app=web', ports: [80]}\n"},
	}
	for _, tt := range different {
		if got := parse(t, tt.yaml).Specs(d); slices.Equal(got, base) {
			t.Errorf("%s: got the same Specs as the base file, want them to differ", tt.name)
		}
	}
}

// TestSpecsAddPort checks that adding a port adds exactly one Spec and
// leaves the others equal, so a reconciler restarts nothing else.
func TestSpecsAddPort(t *testing.T) {
	d := Defaults{Context: "c"}
	before := parse(t, "version: 1\ntunnels:\n  api: {pod: a, ports: [1, 2]}\n  db: {service: d, ports: [3]}\n").Specs(d)
	after := parse(t, "version: 1\ntunnels:\n  api: {pod: a, ports: [1, 2, ':4']}\n  db: {service: d, ports: [3]}\n").Specs(d)
	if len(after) != len(before)+1 {
		t.Fatalf("got %d specs after adding a port, want %d", len(after), len(before)+1)
	}
	var added []Spec
	for _, s := range after {
		if !slices.Contains(before, s) {
			added = append(added, s)
		}
	}
	want := Spec{Tunnel: "api", Session: Session{"c", "default", Target{KindPod, "a"}, "auto"}, Address: "localhost", LocalPort: 0, Remote: RemotePort{Number: 4}}
	if len(added) != 1 || added[0] != want {
		t.Errorf("added specs = %+v; want exactly [%+v]", added, want)
	}
	for _, s := range before {
		if !slices.Contains(after, s) {
			t.Errorf("spec %+v disappeared after adding a port", s)
		}
	}
}

// TestSpecsDistinct checks the property reconcilers key on: a valid file
// gives distinct Specs.
func TestSpecsDistinct(t *testing.T) {
	f := parse(t, "version: 1\ntunnels:\n  a: {pod: a, ports: [':80', ':http', '1:80', '2:80']}\n  b: {pod: a, ports: [':80']}\n")
	specs := f.Specs(Defaults{})
	seen := map[Spec]bool{}
	for _, s := range specs {
		if seen[s] {
			t.Errorf("spec %+v appears twice", s)
		}
		seen[s] = true
	}
	if len(specs) != 5 {
		t.Errorf("got %d specs, want 5", len(specs))
	}
}
