//go:build !linux

package forward

// unsentBytes cannot be told on this system.
func unsentBytes(fd uintptr) int { return -1 }
