package config

import (
	"errors"
	"testing"
)

func TestCanonicalAddress(t *testing.T) {
	tests := []struct{ in, want string }{
		{"localhost", "localhost"},
		{"127.0.0.1", "127.0.0.1"},
		{"::1", "::1"},
		{"0:0:0:0:0:0:0:1", "::1"},
		{"::FFFF:127.0.0.2", "127.0.0.2"},
		{"FE80::1", "fe80::1"},
		{"0.0.0.0", "0.0.0.0"},
		{"::", "::"},
	}
	for _, tt := range tests {
		got, err := CanonicalAddress(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("CanonicalAddress(%q) = %q, %v; want %q, nil", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "LOCALHOST", "example.com", "300.0.0.1", "127.0.0.1:80", "[::1]", " ::1"} {
		got, err := CanonicalAddress(in)
		var ae *AddressError
		if !errors.As(err, &ae) || ae.Address != in || !errors.Is(err, ErrInvalidAddress) {
			t.Errorf("CanonicalAddress(%q) = %q, %v; want an *AddressError matching ErrInvalidAddress", in, got, err)
		}
	}
}

func TestListenSet(t *testing.T) {
	tests := []struct {
		a, b   string
		wantIP string // "" for no overlap
	}{
		{"localhost", "localhost", "127.0.0.1"},
		{"localhost", "127.0.0.1", "127.0.0.1"},
		{"localhost", "::1", "::1"},
		{"localhost", "127.0.0.2", ""},
		{"127.0.0.1", "127.0.0.2", ""},
		{"0.0.0.0", "127.0.0.2", "127.0.0.2"},
		{"10.1.2.3", "0.0.0.0", "10.1.2.3"},
		{"0.0.0.0", "localhost", "127.0.0.1"},
		{"0.0.0.0", "::1", ""},
		{"0.0.0.0", "::", "::"},
		{"::", "::1", "::1"},
		{"::", "10.0.0.1", "10.0.0.1"},
		{"::", "localhost", "127.0.0.1"},
		{"fe80::1", "fe80::2", ""},
	}
	for _, tt := range tests {
		for _, pair := range [][2]string{{tt.a, tt.b}, {tt.b, tt.a}} {
			var set listenSet[string]
			set.addAddr(pair[1], pair[1])
			owner, ip, ok := set.findAddr(pair[0])
			if ok != (tt.wantIP != "") || (ok && owner != pair[1]) || (ok && pair[0] == tt.a && ip.String() != tt.wantIP) {
				t.Errorf("listening on %q after %q: got %q, %v, %v; want a collision on %q: %v", pair[0], pair[1], owner, ip, ok, tt.wantIP, tt.wantIP != "")
			}
		}
	}
}
