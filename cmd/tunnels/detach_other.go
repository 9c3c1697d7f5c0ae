//go:build !unix

package main

import "syscall"

// detached: without sessions, the background up is a plain child.
func detached() *syscall.SysProcAttr { return nil }
