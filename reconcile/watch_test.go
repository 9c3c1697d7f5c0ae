package reconcile

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

// realTempDir is t.TempDir with its own symlinks resolved (macOS's /var is
// one), so that chains start where the test expects.
func realTempDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestResolveChain(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) (path string, want []string)
	}{
		{
			name: "plain file",
			setup: func(t *testing.T, dir string) (string, []string) {
				p := filepath.Join(dir, "tunnels.yaml")
				mustWrite(t, p, "x")
				return p, []string{p}
			},
		},
		{
			name: "missing file",
			setup: func(t *testing.T, dir string) (string, []string) {
				p := filepath.Join(dir, "tunnels.yaml")
				return p, []string{p}
			},
		},
		{
			name: "missing directory",
			setup: func(t *testing.T, dir string) (string, []string) {
				return filepath.Join(dir, "cfg", "tunnels.yaml"), []string{filepath.Join(dir, "cfg")}
			},
		},
		{
			name: "configmap mount",
			setup: func(t *testing.T, dir string) (string, []string) {
				mustMkdir(t, filepath.Join(dir, "..2024_01"))
				mustWrite(t, filepath.Join(dir, "..2024_01", "tunnels.yaml"), "x")
				mustSymlink(t, "..2024_01", filepath.Join(dir, "..data"))
				mustSymlink(t, "..data/tunnels.yaml", filepath.Join(dir, "tunnels.yaml"))
				return filepath.Join(dir, "tunnels.yaml"), []string{
					filepath.Join(dir, "tunnels.yaml"),
					filepath.Join(dir, "..data"),
					filepath.Join(dir, "..2024_01", "tunnels.yaml"),
				}
			},
		},
		{
			name: "absolute link to another directory",
			setup: func(t *testing.T, dir string) (string, []string) {
				mustMkdir(t, filepath.Join(dir, "a"))
				mustMkdir(t, filepath.Join(dir, "b"))
				real := filepath.Join(dir, "b", "real.yaml")
				mustWrite(t, real, "x")
				link := filepath.Join(dir, "a", "tunnels.yaml")
				mustSymlink(t, real, link)
				return link, []string{link, real}
			},
		},
		{
			name: "relative link with dot-dot",
			setup: func(t *testing.T, dir string) (string, []string) {
				mustMkdir(t, filepath.Join(dir, "a"))
				mustMkdir(t, filepath.Join(dir, "b"))
				real := filepath.Join(dir, "b", "real.yaml")
				mustWrite(t, real, "x")
				link := filepath.Join(dir, "a", "tunnels.yaml")
				mustSymlink(t, "../b/real.yaml", link)
				return link, []string{link, real}
			},
		},
		{
			name: "dangling link",
			setup: func(t *testing.T, dir string) (string, []string) {
				link := filepath.Join(dir, "tunnels.yaml")
				mustSymlink(t, "gone.yaml", link)
				return link, []string{link, filepath.Join(dir, "gone.yaml")}
			},
		},
		{
			name: "link loop ends",
			setup: func(t *testing.T, dir string) (string, []string) {
				a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
				mustSymlink(t, "b", a)
				mustSymlink(t, "a", b)
				var want []string
				for range maxLinks / 2 {
					want = append(want, a, b)
				}
				return a, append(want, a)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, want := tt.setup(t, realTempDir(t))
			if got := resolveChain(path); !slices.Equal(got, want) {
				t.Errorf("resolveChain(%s)\n got %q\nwant %q", path, got, want)
			}
		})
	}
}

func TestWatcherRelevant(t *testing.T) {
	leakcheck.Check(t)
	dir := realTempDir(t)
	mustMkdir(t, filepath.Join(dir, "..2024_01"))
	mustWrite(t, filepath.Join(dir, "..2024_01", "tunnels.yaml"), "x")
	mustSymlink(t, "..2024_01", filepath.Join(dir, "..data"))
	mustSymlink(t, "..data/tunnels.yaml", filepath.Join(dir, "tunnels.yaml"))
	w := newWatcher(filepath.Join(dir, "tunnels.yaml"), false, time.Second, slog.New(slog.DiscardHandler))
	defer w.close()
	if w.polling() {
		t.Skip("file notifications unavailable")
	}
	for _, tt := range []struct {
		name string
		want bool
	}{
		{"tunnels.yaml", true},
		{"..data", true},
		{"..2024_01", true}, // the directory of the resolved file: its removal matters
		{"..2024_01/tunnels.yaml", true},
		{"..data_tmp", false},
		{"other.yaml", false},
		{".tunnels.yaml.swp", false},
		{".tunnels", false},
		{".tunnels/state.json", false},
		{".tunnels/.state-123.tmp", false},
	} {
		if got := w.relevant(filepath.Join(dir, tt.name)); got != tt.want {
			t.Errorf("relevant(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
	got := w.fs.WatchList()
	slices.Sort(got)
	if want := []string{dir, filepath.Join(dir, "..2024_01")}; !slices.Equal(got, want) {
		t.Errorf("watching %q, want %q", got, want)
	}
}

func TestWatcherStateDirNeverRelevant(t *testing.T) {
	leakcheck.Check(t)
	// Even a chain that went through .tunnels would not make the state
	// directory relevant: tunnels writes there itself.
	dir := realTempDir(t)
	w := newWatcher(filepath.Join(dir, "tunnels.yaml"), true, time.Second, slog.New(slog.DiscardHandler))
	defer w.close()
	w.names = map[string]bool{filepath.Join(dir, ".tunnels", "state.json"): true}
	if w.relevant(filepath.Join(dir, ".tunnels", "state.json")) {
		t.Errorf("an event in .tunnels is relevant")
	}
}
