package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tunnels-dev/tunnels/internal/localhost"
)

// Localhost is the listen address that means 127.0.0.1 and ::1, where one
// of the two may fail (a host without IPv6) as long as the other binds.
const Localhost = localhost.Name

// Listener is a group of TCP listeners on the same port, one per address,
// whose connections come out of a single Accept.
type Listener struct {
	port  int
	ls    []net.Listener
	conns chan net.Conn

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Listen listens on port at each address, following kubectl's rules:
// "localhost" binds 127.0.0.1 (tcp4) and ::1 (tcp6) and succeeds if either
// does; an IP address must bind. Port 0 picks a free port on the first
// address that binds and uses the same port for the rest. No addresses
// means localhost. An address in use is an error naming it, for which
// errors.Is(err, syscall.EADDRINUSE) holds.
func Listen(addresses []string, port int) (*Listener, error) {
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("listen: port %d out of range 0-65535", port)
	}
	if len(addresses) == 0 {
		addresses = []string{Localhost}
	}
	type bind struct {
		network string
		ip      netip.Addr
		// optional binds may fail as long as another bind of the same
		// address succeeds.
		optional bool
		address  int // index into addresses
	}
	var binds []bind
	for i, a := range addresses {
		if a == Localhost {
			binds = append(binds,
				bind{"tcp4", localhost.IPv4, true, i},
				bind{"tcp6", localhost.IPv6, true, i})
			continue
		}
		ip, err := netip.ParseAddr(trimBrackets(a))
		if err != nil {
			return nil, fmt.Errorf("listen on %q: want localhost or an IP address", a)
		}
		ip = ip.Unmap()
		network := "tcp6"
		if ip.Is4() {
			network = "tcp4"
		}
		binds = append(binds, bind{network, ip, false, i})
	}

	l := &Listener{port: port, conns: make(chan net.Conn)}
	bound := make([]bool, len(addresses))
	failures := make([][]error, len(addresses))
	for _, b := range binds {
		addr := net.JoinHostPort(b.ip.String(), strconv.Itoa(l.port))
		nl, err := listenConfig(b.ip).Listen(context.Background(), b.network, addr)
		if err != nil {
			// err is a *net.OpError, which names the address and port:
			// "listen tcp4 127.0.0.1:6000: bind: address already in use".
			if !b.optional {
				l.closeListeners()
				return nil, fmt.Errorf("local port %d: %w", port, err)
			}
			failures[b.address] = append(failures[b.address], err)
			continue
		}
		if l.port == 0 {
			l.port = nl.Addr().(*net.TCPAddr).Port
		}
		l.ls = append(l.ls, nl)
		bound[b.address] = true
	}
	for i, ok := range bound {
		if !ok {
			l.closeListeners()
			return nil, fmt.Errorf("local port %d on %s: %w", port, addresses[i], bindErrors(failures[i]))
		}
	}

	l.ctx, l.cancel = context.WithCancel(context.Background())
	for _, nl := range l.ls {
		l.wg.Add(1)
		go l.acceptLoop(l.ctx, nl)
	}
	return l, nil
}

// bindErrors is why every bind of one address failed, on one line.
type bindErrors []error

func (e bindErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap lets errors.Is and errors.As see every bind error.
func (e bindErrors) Unwrap() []error { return e }

func trimBrackets(s string) string {
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		return s[1 : len(s)-1]
	}
	return s
}

func (l *Listener) closeListeners() {
	for _, nl := range l.ls {
		_ = nl.Close()
	}
}

// Port returns the port listened on; with port 0, the one chosen.
func (l *Listener) Port() int { return l.port }

// Addrs returns the addresses actually listened on, in the order bound.
func (l *Listener) Addrs() []net.Addr {
	addrs := make([]net.Addr, len(l.ls))
	for i, nl := range l.ls {
		addrs[i] = nl.Addr()
	}
	return addrs
}

// Accept waits for the next connection on any of the addresses. After
// Close it returns an error wrapping net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.ctx.Done():
		return nil, fmt.Errorf("accept on port %d: %w", l.port, net.ErrClosed)
	}
}

// Close stops listening on every address, closes connections accepted but
// not yet taken by Accept, and waits for its goroutines.
func (l *Listener) Close() error {
	l.once.Do(func() {
		l.cancel()
		l.closeListeners()
		l.wg.Wait()
	})
	return nil
}

// acceptLoop accepts on one listener and hands the connections to Accept.
func (l *Listener) acceptLoop(ctx context.Context, nl net.Listener) {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := nl.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http's server does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		delay = 0
		select {
		case l.conns <- c:
		case <-ctx.Done():
			_ = c.Close()
			return
		}
	}
}

// listenConfig returns how to listen on ip: on loopback without TCP
// keepalive on the accepted connections, whose peer is on this host (the
// kernel ends them with it), which saves four setsockopt calls on every
// new connection; elsewhere with Go's default keepalive, which notices a
// remote client that went away without a word.
func listenConfig(ip netip.Addr) *net.ListenConfig {
	if ip.IsLoopback() {
		return &net.ListenConfig{KeepAlive: -1}
	}
	return &net.ListenConfig{}
}
