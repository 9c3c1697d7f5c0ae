package tunnel

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/tunnels-dev/tunnels/config"
)

// ErrBadState is wrapped by OpenPortMemory's error when the state file exists but
// cannot be read or decoded.
var ErrBadState = errors.New("unreadable state file")

// stateVersion is the version of the state file format written by Save.
const stateVersion = 1

// PortMemory remembers the local port chosen for each forward whose LocalPort is
// 0 (":5000" in a port spec), so that it keeps its port across reloads and
// restarts of tunnels up while the port is free. It lives in
// .tunnels/state.json next to the config file. Its methods are safe for
// concurrent use.
type PortMemory struct {
	path string

	mu    sync.Mutex
	ports map[config.Spec]int // keyed by stateKey
	dirty bool                // ports differs from the file
}

// stateFile is the JSON form of the state file.
type stateFile struct {
	Version int          `json:"version"`
	Ports   []stateEntry `json:"ports"`
}

type stateEntry struct {
	Tunnel     string `json:"tunnel"`
	Context    string `json:"context"`
	Namespace  string `json:"namespace"`
	Kind       string `json:"kind"`
	Target     string `json:"target"`
	Address    string `json:"address"`
	RemotePort int    `json:"remotePort,omitempty"`
	RemoteName string `json:"remoteName,omitempty"`
	Port       int    `json:"port"`
}

// MemoryPath returns where the state of the config file at configPath lives:
// .tunnels/state.json in the config file's directory.
func MemoryPath(configPath string) string {
	return filepath.Join(config.StateDirOf(configPath), "state.json")
}

// OpenPortMemory reads the state kept next to the config file at configPath. A
// missing file is an empty state. A file that cannot be read or decoded is
// not fatal — the state is only a preference — so OpenPortMemory then returns a
// usable empty PortMemory together with an error wrapping ErrBadState, for the
// caller to log; the next Save replaces the file.
func OpenPortMemory(configPath string) (*PortMemory, error) {
	s := &PortMemory{path: MemoryPath(configPath), ports: map[config.Spec]int{}}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read port state: %w: %w", ErrBadState, err)
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		return s, fmt.Errorf("decode port state %s: %w: %w", s.path, ErrBadState, err)
	}
	if f.Version != stateVersion {
		return s, fmt.Errorf("decode port state %s: %w: version %d, want %d", s.path, ErrBadState, f.Version, stateVersion)
	}
	for _, e := range f.Ports {
		if !validPort(e.Port) {
			continue
		}
		s.ports[config.Spec{
			Tunnel: e.Tunnel,
			Session: config.Session{
				Context:   e.Context,
				Namespace: e.Namespace,
				Target:    config.Target{Kind: config.Kind(e.Kind), Name: e.Target},
			},
			Address: e.Address,
			Remote:  config.RemotePort{Number: e.RemotePort, Name: e.RemoteName},
		}] = e.Port
	}
	return s, nil
}

// Path returns the path of the state file.
func (s *PortMemory) Path() string { return s.path }

// stateKey is the identity of a spec in the state: everything but the local
// port, which is what the state stores, and the transport, which does not
// change which local port a tunnel should keep.
func stateKey(spec config.Spec) config.Spec {
	spec.LocalPort = 0
	spec.Session.Transport = ""
	return spec
}

func validPort(p int) bool { return p > 0 && p <= 65535 }

// Get returns the port chosen last time for spec, if any.
func (s *PortMemory) Get(spec config.Spec) (port int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	port, ok = s.ports[stateKey(spec)]
	return port, ok
}

// Set records the port chosen for spec. A port outside 1–65535 forgets it.
func (s *PortMemory) Set(spec config.Spec, port int) {
	if !validPort(port) {
		s.Forget(spec)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := stateKey(spec)
	if old, ok := s.ports[k]; !ok || old != port {
		s.ports[k] = port
		s.dirty = true
	}
}

// Forget drops the port recorded for spec.
func (s *PortMemory) Forget(spec config.Spec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := stateKey(spec)
	if _, ok := s.ports[k]; ok {
		delete(s.ports, k)
		s.dirty = true
	}
}

// Prune forgets every port recorded for a spec not in keep, so that the file
// does not collect tunnels long removed from the config.
func (s *PortMemory) Prune(keep []config.Spec) {
	want := make(map[config.Spec]bool, len(keep))
	for _, k := range keep {
		want[stateKey(k)] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.ports {
		if !want[k] {
			delete(s.ports, k)
			s.dirty = true
		}
	}
}

// Save writes the state if it changed since it was read or last saved. The
// write is atomic (a temporary file renamed over the old one); the
// directory is created with mode 0700 and the file with mode 0600.
func (s *PortMemory) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty {
		return nil
	}
	f := stateFile{Version: stateVersion, Ports: []stateEntry{}}
	for _, k := range slices.SortedFunc(maps.Keys(s.ports), config.Spec.Compare) {
		f.Ports = append(f.Ports, stateEntry{
			Tunnel:     k.Tunnel,
			Context:    k.Session.Context,
			Namespace:  k.Session.Namespace,
			Kind:       string(k.Session.Target.Kind),
			Target:     k.Session.Target.Name,
			Address:    k.Address,
			RemotePort: k.Remote.Number,
			RemoteName: k.Remote.Name,
			Port:       s.ports[k],
		})
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode port state: %w", err)
	}
	if err := writeFileAtomic(s.path, append(data, '\n')); err != nil {
		return fmt.Errorf("save port state: %w", err)
	}
	s.dirty = false
	return nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory renamed over path, so that a reader (or a crash) never sees a
// half-written file.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".state-*.tmp") // mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
