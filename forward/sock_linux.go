package forward

import (
	"syscall"
	"unsafe"
)

// unsentBytes returns how many bytes written to fd the peer has not
// acknowledged yet (SIOCOUTQ), or -1 if that cannot be told.
func unsentBytes(fd uintptr) int {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return -1
	}
	return int(n)
}
