//go:build unix

package forward

import (
	"errors"
	"net"
	"syscall"
)

// waitReadable waits until c has something to read (data, EOF or an
// error) without holding a buffer meanwhile, so an idle connection costs no
// read buffer (the read buffers are pooled and taken only once data is
// there). It honours c's read deadline. A connection that cannot be polled
// this way reports readable at once.
func waitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var one [1]byte
	err = rc.Read(func(fd uintptr) bool {
		// A peek that would block means nothing is there yet: return false
		// and the runtime's poller waits for readability.
		_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(err, syscall.EAGAIN)
	})
	return err
}

// writeNow writes as much of b to rc's socket as it takes without waiting
// and returns how much that was: 0 if the socket's send buffer is full, or
// on any error (the caller's blocking write will meet the error again).
func writeNow(rc syscall.RawConn, b []byte) int {
	n := 0
	_ = rc.Write(func(fd uintptr) bool {
		if k, err := syscall.Write(int(fd), b); err == nil && k > 0 {
			n = k
		}
		return true // one attempt: never wait for writability
	})
	return n
}

// readNow reads what rc's socket holds into b without waiting and returns
// how much that was: 0 if nothing is there yet, at EOF, or on any error
// (the caller's blocking read will meet the EOF or error again).
func readNow(rc syscall.RawConn, b []byte) int {
	n := 0
	_ = rc.Read(func(fd uintptr) bool {
		if k, err := syscall.Read(int(fd), b); err == nil && k > 0 {
			n = k
		}
		return true // one attempt: never wait for readability
	})
	return n
}
