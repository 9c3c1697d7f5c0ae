package testnet

import (
	"fmt"
	"os"
	"testing"
)

// ProcessTB is the little of testing.TB that the test servers use, for
// running them outside a test: in a child process that serves while a
// benchmark measures the parent alone. Cleanup functions run at Close;
// Fatalf exits the process. Other methods are not expected to be called.
type ProcessTB struct {
	testing.TB
	cleanups []func()
}

func (s *ProcessTB) Helper()                        {}
func (s *ProcessTB) Cleanup(f func())               { s.cleanups = append(s.cleanups, f) }
func (s *ProcessTB) Errorf(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
func (s *ProcessTB) Fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
	os.Exit(1)
}

// Close runs the cleanup functions, the last registered first.
func (s *ProcessTB) Close() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
}
