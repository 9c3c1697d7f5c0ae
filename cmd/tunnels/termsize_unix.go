//go:build unix

package main

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// termSize returns the columns and rows of the terminal w writes to; 0, 0
// if w is not a terminal or will not say.
func termSize(w io.Writer) (cols, rows int) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0, 0
	}
	return int(ws.Col), int(ws.Row)
}
