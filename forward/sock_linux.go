package forward

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// unsentBytes returns how many bytes written to fd the peer has not
// acknowledged yet (SIOCOUTQ), or -1 if that cannot be told.
func unsentBytes(fd uintptr) int {
	// TIOCOUTQ keeps counting what was unacknowledged when the connection
	// ended: a peer that reset it (a client that closed with data unread)
	// would be waited for until ctx ends. Only a connection that can still
	// deliver has bytes to wait for.
	if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
		switch info.State {
		case tcpEstablished, tcpFinWait1, tcpCloseWait, tcpLastAck, tcpClosing:
		default:
			return 0
		}
	}
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return -1
	}
	return int(n)
}

// The TCP states (include/net/tcp_states.h) in which sent data may still
// reach the peer.
const (
	tcpEstablished = 1
	tcpFinWait1    = 4
	tcpCloseWait   = 8
	tcpLastAck     = 9
	tcpClosing     = 11
)

// tcpAcked returns how many bytes the peer of rc has acknowledged, or 0 if
// that cannot be told.
func tcpAcked(rc syscall.RawConn) uint64 {
	var acked uint64
	_ = rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			acked = info.Bytes_acked
		}
	})
	return acked
}
