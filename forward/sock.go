package forward

import (
	"context"
	"net"
	"syscall"
	"time"
)

// resetAfterSent waits until everything written to c has reached its peer
// (or ctx ends, or that cannot be told), then closes c with a TCP reset
// rather than a FIN. A reset with unsent data would drop that data, and the
// point of the reset is to mark the end as broken after every byte that
// arrived, not to lose some.
func resetAfterSent(ctx context.Context, c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		_ = c.Close()
		return
	}
	if rc, err := tc.SyscallConn(); err == nil {
		wait := time.Millisecond
		for ctx.Err() == nil {
			n := -1
			_ = rc.Control(func(fd uintptr) { n = unsentBytes(fd) })
			if n <= 0 {
				break
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			wait = min(2*wait, 50*time.Millisecond)
		}
	}
	_ = tc.SetLinger(0)
	_ = tc.Close()
}

// rawTCP finds the TCP connection under c, unwrapping TLS and other
// wrappers that expose NetConn, or returns nil.
func rawTCP(c net.Conn) syscall.RawConn {
	for range 8 {
		switch v := c.(type) {
		case *net.TCPConn:
			rc, err := v.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}
