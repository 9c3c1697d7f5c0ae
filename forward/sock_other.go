//go:build !linux

package forward

import "syscall"

// unsentBytes cannot be told on this system.
func unsentBytes(fd uintptr) int { return -1 }

// tcpAcked cannot be told on this system.
func tcpAcked(rc syscall.RawConn) uint64 { return 0 }
