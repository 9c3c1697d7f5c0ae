package config

import (
	"errors"
	"testing"
)

func TestParsePortSpec(t *testing.T) {
	tests := []struct {
		in   string
		want PortSpec
	}{
		{"5000", PortSpec{Local: 5000, Remote: RemotePort{Number: 5000}}},
		{"6000:5000", PortSpec{Local: 6000, Remote: RemotePort{Number: 5000}}},
		{":5000", PortSpec{Local: 0, Remote: RemotePort{Number: 5000}}},
		{"0:5000", PortSpec{Local: 0, Remote: RemotePort{Number: 5000}}},
		{"1", PortSpec{Local: 1, Remote: RemotePort{Number: 1}}},
		{"65535", PortSpec{Local: 65535, Remote: RemotePort{Number: 65535}}},
		{"65535:1", PortSpec{Local: 65535, Remote: RemotePort{Number: 1}}},
		{"08080", PortSpec{Local: 8080, Remote: RemotePort{Number: 8080}}},
		{"8080:http", PortSpec{Local: 8080, Remote: RemotePort{Name: "http"}}},
		{"http", PortSpec{Local: 0, Remote: RemotePort{Name: "http"}}},
		{":http", PortSpec{Local: 0, Remote: RemotePort{Name: "http"}}},
		{"0:http", PortSpec{Local: 0, Remote: RemotePort{Name: "http"}}},
		{"6379:redis", PortSpec{Local: 6379, Remote: RemotePort{Name: "redis"}}},
		{"h2c-metrics", PortSpec{Remote: RemotePort{Name: "h2c-metrics"}}},
		{"1a", PortSpec{Remote: RemotePort{Name: "1a"}}},
		{"abcdefghijklmno", PortSpec{Remote: RemotePort{Name: "abcdefghijklmno"}}},
	}
	for _, tt := range tests {
		got, err := ParsePortSpec(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParsePortSpec(%q) = %+v, %v; want %+v, nil", tt.in, got, err, tt.want)
		}
	}
}

func TestParsePortSpecErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `port spec "": empty, want [LOCAL:]REMOTE`},
		{"   ", `port spec "   ": empty, want [LOCAL:]REMOTE`},
		{" 80", `port spec " 80": leading or trailing space`},
		{"a:b:c", `port spec "a:b:c": too many colons, want [LOCAL:]REMOTE`},
		{"1:2:3", `port spec "1:2:3": too many colons, want [LOCAL:]REMOTE`},
		{"::80", `port spec "::80": too many colons, want [LOCAL:]REMOTE`},
		{"0", `port spec "0": remote port 0 is out of range 1-65535`},
		{"8080:0", `port spec "8080:0": remote port 0 is out of range 1-65535`},
		{"65536", `port spec "65536": remote port 65536 is out of range 1-65535`},
		{"99999999999999999999", `port spec "99999999999999999999": remote port 99999999999999999999 is out of range 1-65535`},
		{"-1", `port spec "-1": negative remote port -1, want 1-65535 or a port name`},
		{"80:-1", `port spec "80:-1": negative remote port -1, want 1-65535 or a port name`},
		{"-1:80", `port spec "-1:80": negative local port -1, want 0-65535 or empty for a free port`},
		{"x:80", `port spec "x:80": local port "x" is not a number, want 0-65535 or empty for a free port`},
		{"+1:80", `port spec "+1:80": local port "+1" is not a number, want 0-65535 or empty for a free port`},
		{"65536:80", `port spec "65536:80": local port 65536 is out of range 0-65535`},
		{"80:", `port spec "80:": missing remote port after ':', want [LOCAL:]REMOTE`},
		{":", `port spec ":": missing remote port after ':', want [LOCAL:]REMOTE`},
		{"HTTP", `port spec "HTTP": remote port "HTTP" is neither a number nor a valid port name: a port name is at most 15 characters: lowercase letters, digits and '-', at least one letter, no leading, trailing or double '-'`},
		{"-http", `port spec "-http": remote port "-http" is neither a number nor a valid port name: a port name is at most 15 characters: lowercase letters, digits and '-', at least one letter, no leading, trailing or double '-'`},
		{"http-", `port spec "http-": remote port "http-" is neither a number nor a valid port name: a port name is at most 15 characters: lowercase letters, digits and '-', at least one letter, no leading, trailing or double '-'`},
		{"h--p", `port spec "h--p": remote port "h--p" is neither a number nor a valid port name: a port name is at most 15 characters: lowercase letters, digits and '-', at least one letter, no leading, trailing or double '-'`},
		{"1-2", `port spec "1-2": remote port "1-2" is neither a number nor a valid port name: a port name is at most 15 characters: lowercase letters, digits and '-', at least one letter, no leading, trailing or double '-'`},
		{"abcdefghijklmnop", `port spec "abcdefghijklmnop": remote port "abcdefghijklmnop" is neither a number nor a valid port name: longer than 15 characters; a port name is at most 15 characters: lowercase letters, digits and '-', at least one letter, no leading, trailing or double '-'`},
	}
	for _, tt := range tests {
		got, err := ParsePortSpec(tt.in)
		if err == nil {
			t.Errorf("ParsePortSpec(%q) = %+v, nil; want error %q", tt.in, got, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("ParsePortSpec(%q) error = %q; want %q", tt.in, err, tt.want)
		}
		var pse *PortSpecError
		if !errors.As(err, &pse) || pse.Spec != tt.in || !errors.Is(err, ErrInvalidPortSpec) {
			t.Errorf("ParsePortSpec(%q) error = %#v; want a *PortSpecError for the spec matching ErrInvalidPortSpec", tt.in, err)
		}
	}
}

func TestPortSpecString(t *testing.T) {
	tests := []struct {
		spec PortSpec
		want string
	}{
		{PortSpec{Local: 5000, Remote: RemotePort{Number: 5000}}, "5000"},
		{PortSpec{Local: 6000, Remote: RemotePort{Number: 5000}}, "6000:5000"},
		{PortSpec{Remote: RemotePort{Number: 5000}}, ":5000"},
		{PortSpec{Remote: RemotePort{Name: "http"}}, ":http"},
		{PortSpec{Local: 8080, Remote: RemotePort{Name: "http"}}, "8080:http"},
	}
	for _, tt := range tests {
		if got := tt.spec.String(); got != tt.want {
			t.Errorf("%+v.String() = %q; want %q", tt.spec, got, tt.want)
		}
		back, err := ParsePortSpec(tt.want)
		if err != nil || back != tt.spec {
			t.Errorf("ParsePortSpec(%q) = %+v, %v; want %+v (round trip)", tt.want, back, err, tt.spec)
		}
	}
}
