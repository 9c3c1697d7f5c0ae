//go:build !unix

package main

import "syscall"

// detached: without sessions, the background up is a plain child.
func detached() *syscall.SysProcAttr { return nil }

// foregroundOf: without process groups, no signal reaches a child but
// through its parent.
func foregroundOf(...any) bool { return false }
