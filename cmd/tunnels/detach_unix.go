//go:build unix

package main

import "syscall"

// detached puts a background up in its own session: a Ctrl-C meant for this
// terminal does not reach it, and it outlives this process.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
