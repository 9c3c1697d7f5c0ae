package reconcile

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/tunnels-dev/tunnels/config"
)

// newNotifier creates the file notifier; tests replace it to force the
// fallback to polling.
var newNotifier = fsnotify.NewWatcher

// watcher tells the loop when the config file may have changed.
//
// It watches directories, not the file: editors save by writing a temporary
// file and renaming it over the old one (vim, VS Code, sed -i), and a
// Kubernetes ConfigMap mount swaps a "..data" symlink, so a watch on the
// file's inode would go on watching the old, dead file. It watches the
// directory of the file and of every symlink met while resolving it, and
// keeps only events naming one of those paths; after each burst the loop
// calls sync, which re-resolves the chain and re-adds the watches a rename or
// removal dropped.
//
// When notifications are unavailable (no inotify, watch limit reached) it
// falls back to polling: the loop then rereads the file on every tick and
// compares its hash.
//
// It owns no goroutine of its own (fsnotify runs one, stopped by close); the
// loop selects on events, errors and ticks.
type watcher struct {
	path     string   // absolute path of the config file, as given (not resolved)
	also     []string // absolute paths of more files to watch (Options.Also)
	stateDir string   // .tunnels next to path
	interval time.Duration
	log      *slog.Logger

	fs     *fsnotify.Watcher // nil when polling
	names  map[string]bool   // paths whose events are relevant: see sync
	ticker *time.Ticker      // non-nil when polling
}

// newWatcher starts watching path (absolute), or polling it every interval
// when poll is set or notifications cannot be set up. It never fails: the
// fallback is polling.
func newWatcher(path string, poll bool, interval time.Duration, log *slog.Logger) *watcher {
	w := &watcher{
		path:     path,
		stateDir: config.StateDirOf(path),
		interval: interval,
		log:      log,
	}
	if poll {
		w.startPolling(nil)
		return w
	}
	fw, err := newNotifier()
	if err != nil {
		w.startPolling(fmt.Errorf("create file watcher: %w", err))
		return w
	}
	w.fs = fw
	w.sync()
	return w
}

// polling reports whether the watcher polls instead of being notified.
func (w *watcher) polling() bool { return w.ticker != nil }

// events delivers file events; nil when polling.
func (w *watcher) events() <-chan fsnotify.Event {
	if w.fs == nil {
		return nil
	}
	return w.fs.Events
}

// errors delivers watcher errors (a queue overflow means events were lost);
// nil when polling.
func (w *watcher) errors() <-chan error {
	if w.fs == nil {
		return nil
	}
	return w.fs.Errors
}

// ticks delivers poll ticks; nil unless polling.
func (w *watcher) ticks() <-chan time.Time {
	if w.ticker == nil {
		return nil
	}
	return w.ticker.C
}

// relevant reports whether an event about name may change what reading the
// config file returns.
func (w *watcher) relevant(name string) bool {
	name = filepath.Clean(name)
	if name == w.stateDir || strings.HasPrefix(name, w.stateDir+string(filepath.Separator)) {
		return false
	}
	return w.names[name]
}

// sync re-resolves the file's symlink chain and makes the watches match it:
// the directory of every path in the chain is watched, and events naming a
// path of the chain, or one of those directories, are relevant. Call it
// before reading the file, so that a change made after the read is seen.
// A watch that cannot be added for another reason than a missing directory
// switches the watcher to polling.
func (w *watcher) sync() {
	if w.fs == nil {
		return
	}
	chain := resolveChain(w.path)
	for _, p := range w.also {
		chain = append(chain, resolveChain(p)...)
	}
	names := make(map[string]bool, 2*len(chain))
	want := map[string]bool{}
	for _, p := range chain {
		names[p] = true
		want[filepath.Dir(p)] = true
	}
	for d := range want {
		names[d] = true
	}
	// fsnotify drops the watch of a directory that is removed or renamed,
	// so its list, not ours, says what is watched.
	have := map[string]bool{}
	for _, d := range w.fs.WatchList() {
		have[d] = true
	}
	for d := range have {
		if !want[d] {
			_ = w.fs.Remove(d) // it may be gone already; nothing to do then
		}
	}
	for d := range want {
		if have[d] {
			continue
		}
		err := w.fs.Add(d)
		switch {
		case err == nil:
			w.log.Debug("watching directory", "file", w.path, "dir", d)
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
			// Removed between resolving and watching: its parent is
			// watched, and the next event there resyncs.
		default:
			w.startPolling(fmt.Errorf("watch directory %s: %w", d, err))
			return
		}
	}
	w.names = names
}

// startPolling stops notifications, if any, and polls from now on. reason
// says why notifications are not used; nil when polling was asked for.
func (w *watcher) startPolling(reason error) {
	if w.fs != nil {
		_ = w.fs.Close()
		w.fs = nil
	}
	if w.ticker != nil {
		return
	}
	if reason != nil {
		w.log.Warn("file notifications unavailable; polling the config file", "file", w.path, "interval", w.interval, "err", reason)
	} else {
		w.log.Info("polling the config file", "file", w.path, "interval", w.interval)
	}
	w.ticker = time.NewTicker(w.interval)
}

// close stops watching. It waits for fsnotify's goroutine to end.
func (w *watcher) close() {
	if w.fs != nil {
		_ = w.fs.Close()
		w.fs = nil
	}
	if w.ticker != nil {
		w.ticker.Stop()
		w.ticker = nil
	}
}

// maxLinks bounds symlink resolution, as the kernel does (ELOOP).
const maxLinks = 40

// resolveChain returns the absolute paths whose replacement changes what
// reading path returns: every symlink met while resolving path, component by
// component, then the file it resolves to. It stops at the first path that
// does not exist, and includes it: its creation is what to wait for.
//
// For a Kubernetes ConfigMap mount, /c/tunnels.yaml -> ..data/tunnels.yaml
// and /c/..data -> ..2024_01_01, this is /c/tunnels.yaml, /c/..data and
// /c/..2024_01_01/tunnels.yaml: the swap of ..data is an event in /c.
func resolveChain(path string) []string {
	vol := filepath.VolumeName(path)
	root := vol + string(filepath.Separator)
	var chain []string
	resolved := root
	rest := splitPath(path[len(vol):])
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		p := filepath.Join(resolved, c)
		fi, err := os.Lstat(p)
		if err != nil {
			return append(chain, p)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = p
			continue
		}
		chain = append(chain, p)
		links++
		target, err := os.Readlink(p)
		if err != nil || links > maxLinks {
			return chain
		}
		if filepath.IsAbs(target) {
			v := filepath.VolumeName(target)
			resolved = v + string(filepath.Separator)
			target = target[len(v):]
		}
		rest = append(splitPath(target), rest...)
	}
	return append(chain, resolved)
}

func splitPath(p string) []string {
	return strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == filepath.Separator })
}
