// Package leakcheck fails a test that leaves goroutines running.
//
// It is a small stand-in for go.uber.org/goleak, kept in-tree so the main
// module needs no test-only dependency.
package leakcheck

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Check records the goroutines running now and, when the test ends, fails it
// if goroutines started since are still running after a grace period in which
// they may wind down. Call it first in a test, before anything it checks.
func Check(t testing.TB) {
	t.Helper()
	before := map[string]bool{}
	for _, g := range goroutines() {
		before[g.id] = true
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			var leaked []goroutine
			for _, g := range goroutines() {
				if !before[g.id] && !ignored(g.stack) {
					leaked = append(leaked, g)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				var b strings.Builder
				for _, g := range leaked {
					fmt.Fprintf(&b, "\n%s\n", g.stack)
				}
				t.Errorf("leakcheck: %d goroutine(s) still running after the test:%s", len(leaked), b.String())
				return
			}
			time.Sleep(20 * time.Millisecond) // polling with a deadline, not synchronisation
		}
	})
}

// VerifyTestMain runs the tests of a package and then fails the binary if
// goroutines other than the runtime's are still running. Use it as
//
//	func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }
func VerifyTestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for {
			var leaked []goroutine
			for _, g := range goroutines() {
				if !ignored(g.stack) && !strings.Contains(g.stack, "leakcheck.VerifyTestMain") {
					leaked = append(leaked, g)
				}
			}
			if len(leaked) == 0 {
				break
			}
			if time.Now().After(deadline) {
				fmt.Printf("leakcheck: %d goroutine(s) still running after all tests:\n", len(leaked))
				for _, g := range leaked {
					fmt.Printf("\n%s\n", g.stack)
				}
				code = 1
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Exiting here is the documented pattern for TestMain.
	exit(code)
}

type goroutine struct {
	id    string
	stack string
}

func goroutines() []goroutine {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var gs []goroutine
	for _, s := range bytes.Split(buf, []byte("\n\n")) {
		stack := string(s)
		// "goroutine 12 [running]:"
		f := strings.Fields(stack)
		if len(f) < 2 || f[0] != "goroutine" {
			continue
		}
		gs = append(gs, goroutine{id: f[1], stack: stack})
	}
	return gs
}

// ignored reports goroutines that belong to the runtime or the test
// framework: other tests' goroutines (parallel tests), the main test
// goroutine, and the signal handler.
func ignored(stack string) bool {
	for _, s := range []string{
		"leakcheck.goroutines(",
		"testing.tRunner(",
		"testing.(*M).",
		"testing.runTests(",
		"os/signal.signal_recv(",
		"os/signal.loop(",
		"runtime.ensureSigM(",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}

var exit = os.Exit
