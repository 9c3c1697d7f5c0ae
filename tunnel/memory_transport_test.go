package tunnel

import (
	"path/filepath"
	"testing"

	"github.com/tunnels-dev/tunnels/config"
)

// TestStateKeepsThePortAcrossTransports: the state file does not record
// the transport, so a port saved for a tunnel is found again after a
// restart (specs with transport auto) and after a change of transport.
func TestStateKeepsThePortAcrossTransports(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "tunnels.yaml")
	spec := config.Spec{Tunnel: "db", Session: config.Session{Context: "c", Namespace: "n",
		Target: config.Target{Kind: config.KindPod, Name: "db-0"}, Transport: config.TransportAuto},
		Address: "localhost", Remote: config.RemotePort{Number: 5432}}
	m, err := OpenPortMemory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Set(spec, 40001)
	if err := m.Save(); err != nil {
		t.Fatal(err)
	}
	m, err = OpenPortMemory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range config.Transports {
		spec.Session.Transport = tr
		if got, ok := m.Get(spec); !ok || got != 40001 {
			t.Errorf("after a restart, transport %s: got port %d (%v), want 40001", tr, got, ok)
		}
	}
}
