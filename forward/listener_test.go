package forward

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

func hasIPv6(t *testing.T) bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// occupy listens on network addr until the test ends.
func occupy(t *testing.T, network, addr string) int {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func addrStrings(addrs []net.Addr) []string {
	var s []string
	for _, a := range addrs {
		s = append(s, a.String())
	}
	return s
}

func TestListenLocalhostFreePort(t *testing.T) {
	leakcheck.Check(t)
	l, err := Listen([]string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := strconv.Itoa(l.Port())
	if l.Port() == 0 {
		t.Fatal("Port() = 0 after listening on port 0")
	}
	want := []string{"127.0.0.1:" + p}
	if hasIPv6(t) {
		want = append(want, "[::1]:"+p)
	}
	if got := addrStrings(l.Addrs()); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Addrs = %v, want %v (the same port on both)", got, want)
	}
	// Connections on either address come out of Accept.
	for _, a := range want {
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got.LocalAddr().String() != a {
			t.Errorf("accepted on %s, want %s", got.LocalAddr(), a)
		}
		got.Close()
		c.Close()
	}
}

func TestListenLocalhostOneFamilyTaken(t *testing.T) {
	leakcheck.Check(t)
	if !hasIPv6(t) {
		t.Skip("no IPv6 loopback")
	}
	port := occupy(t, "tcp4", "127.0.0.1:0")
	l, err := Listen(nil, port) // nil means localhost
	if err != nil {
		t.Fatalf("Listen(localhost) with only 127.0.0.1 taken = %v, want success on ::1", err)
	}
	defer l.Close()
	if got, want := addrStrings(l.Addrs()), "[::1]:"+strconv.Itoa(port); len(got) != 1 || got[0] != want {
		t.Errorf("Addrs = %v, want [%s]", got, want)
	}
}

func TestListenAddressInUse(t *testing.T) {
	leakcheck.Check(t)
	port := occupy(t, "tcp4", "127.0.0.1:0")
	ps := strconv.Itoa(port)
	if hasIPv6(t) {
		occupy(t, "tcp6", "[::1]:"+ps)
	}
	for _, addrs := range [][]string{{"127.0.0.1"}, {"localhost"}} {
		_, err := Listen(addrs, port)
		if err == nil {
			t.Fatalf("Listen(%v, %d) succeeded on a port in use", addrs, port)
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("Listen(%v) = %v, want EADDRINUSE", addrs, err)
		}
		if !strings.Contains(err.Error(), "127.0.0.1:"+ps) {
			t.Errorf("error %q does not name the address and port", err)
		}
	}
}

func TestListenExplicitAddressesMustAllBind(t *testing.T) {
	leakcheck.Check(t)
	if !hasIPv6(t) {
		t.Skip("no IPv6 loopback")
	}
	// A port taken on ::1 and free on 127.0.0.1 (other tests on this
	// machine take ports too: try a few).
	var port int
	for range 20 {
		l6, err := net.Listen("tcp6", "[::1]:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l6.Addr().(*net.TCPAddr).Port
		if l4, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			l4.Close()
			t.Cleanup(func() { l6.Close() })
			port = p
			break
		}
		l6.Close()
	}
	if port == 0 {
		t.Fatal("no port free on 127.0.0.1 but takeable on ::1")
	}
	_, err := Listen([]string{"127.0.0.1", "::1"}, port)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "[::1]:"+strconv.Itoa(port)) {
		t.Fatalf("Listen = %v, want EADDRINUSE naming [::1]:%d", err, port)
	}
	// What did bind was released.
	l, err := Listen([]string{"[127.0.0.1]"}, port)
	if err != nil {
		t.Fatalf("127.0.0.1:%d still held after a failed Listen: %v", port, err)
	}
	l.Close()
}

func TestListenRejects(t *testing.T) {
	for _, tt := range []struct {
		addrs []string
		port  int
	}{
		{[]string{"example.com"}, 0},
		{[]string{"localhost", "not an ip"}, 0},
		{nil, 70000},
		{nil, -1},
	} {
		if l, err := Listen(tt.addrs, tt.port); err == nil {
			l.Close()
			t.Errorf("Listen(%q, %d) succeeded", tt.addrs, tt.port)
		}
	}
}

func TestListenerClose(t *testing.T) {
	leakcheck.Check(t)
	l, err := Listen([]string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		accepted <- err
	}()
	l.Close()
	l.Close()
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
	if c, err := net.Dial("tcp4", l.Addrs()[0].String()); err == nil {
		c.Close()
		t.Error("still accepting connections after Close")
	}
}
