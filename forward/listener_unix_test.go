//go:build unix

package forward

import (
	"net"
	"strconv"
	"syscall"
	"testing"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

// TestListenKeepAliveOnlyOffLoopback: a connection accepted on loopback
// has no TCP keepalive (its peer is on this host), one accepted on any
// other address keeps Go's default.
func TestListenKeepAliveOnlyOffLoopback(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct {
		address string
		want    bool
	}{
		{"127.0.0.1", false},
		{"localhost", false},
		{"0.0.0.0", true},
	} {
		t.Run(tc.address, func(t *testing.T) {
			l, err := Listen([]string{tc.address}, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Port())))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			a, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			rc, err := a.(syscall.Conn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var on int
			var serr error
			if err := rc.Control(func(fd uintptr) {
				on, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
			}); err != nil || serr != nil {
				t.Fatalf("getsockopt SO_KEEPALIVE: %v %v", err, serr)
			}
			if got := on != 0; got != tc.want {
				t.Errorf("SO_KEEPALIVE on a connection accepted on %s = %v, want %v", tc.address, got, tc.want)
			}
		})
	}
}
