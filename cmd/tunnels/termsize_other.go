//go:build !unix

package main

import "io"

// termSize returns 0, 0: the size of a terminal is asked only on Unix, and
// elsewhere the live view falls back to $COLUMNS or 80 columns.
func termSize(io.Writer) (cols, rows int) { return 0, 0 }
