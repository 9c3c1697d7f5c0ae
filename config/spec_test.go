package config

import (
	"reflect"
	"testing"
)

// TestSpecCompareIsTotal: Compare returns 0 exactly for equal specs, so the
// plans and status rows sorted with it are deterministic. A field added to
// Spec or Session must be added to Compare; this test names it.
func TestSpecCompareIsTotal(t *testing.T) {
	if n := reflect.TypeOf(Spec{}).NumField(); n != 5 {
		t.Fatalf("Spec has %d fields; update Spec.Compare and this test", n)
	}
	if n := reflect.TypeOf(Session{}).NumField(); n != 4 {
		t.Fatalf("Session has %d fields; update Session.Compare and this test", n)
	}
	base := Spec{Tunnel: "db", Session: Session{Context: "c", Namespace: "n", Target: Target{Kind: KindPod, Name: "p"}},
		Address: "localhost", LocalPort: 5432, Remote: RemotePort{Number: 5432}}
	variants := []func(*Spec){
		func(s *Spec) { s.Tunnel = "eb" },
		func(s *Spec) { s.Session.Context = "d" },
		func(s *Spec) { s.Session.Namespace = "o" },
		func(s *Spec) { s.Session.Target.Kind = KindService },
		func(s *Spec) { s.Session.Target.Name = "q" },
		func(s *Spec) { s.Session.Transport = "spdy" },
		func(s *Spec) { s.Address = "127.0.0.1" },
		func(s *Spec) { s.LocalPort = 6000 },
		func(s *Spec) { s.Remote.Number = 5433 },
		func(s *Spec) { s.Remote = RemotePort{Name: "pg"} },
	}
	if got := base.Compare(base); got != 0 {
		t.Errorf("Compare(self) = %d, want 0", got)
	}
	for i, change := range variants {
		other := base
		change(&other)
		a, b := base.Compare(other), other.Compare(base)
		if a == 0 || a != -b {
			t.Errorf("variant %d: Compare = %d and %d reversed; want non-zero and opposite", i, a, b)
		}
	}
}
