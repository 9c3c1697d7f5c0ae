//go:build unix

package main

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// detached puts a background up in its own session: a Ctrl-C meant for this
// terminal does not reach it, and it outlives this process.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// foregroundOf reports whether one of fs is a terminal whose foreground
// process group is this process's: then a key such as Ctrl-C made the
// terminal signal the whole group, a child that shares it included.
func foregroundOf(fs ...any) bool {
	for _, f := range fs {
		f, ok := f.(*os.File)
		if !ok {
			continue
		}
		if pg, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP); err == nil && pg == unix.Getpgrp() {
			return true
		}
	}
	return false
}
