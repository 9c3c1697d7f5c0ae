package config

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/tunnels-dev/tunnels/internal/localhost"
)

// ErrInvalidAddress is the sentinel every *AddressError matches with
// errors.Is.
var ErrInvalidAddress = errors.New("invalid listen address")

// AddressError reports a listen address that is neither localhost nor an IP.
type AddressError struct {
	Address string // the address as written
}

// Error returns `address "ADDRESS": want localhost or an IP address ...`.
func (e *AddressError) Error() string {
	return fmt.Sprintf("address %q: want localhost or an IP address such as 127.0.0.1 or ::1", e.Address)
}

// Is makes errors.Is(err, ErrInvalidAddress) true for every AddressError.
func (e *AddressError) Is(target error) bool { return target == ErrInvalidAddress }

// Localhost is the default listen address: 127.0.0.1 and ::1, where either
// may fail to listen (a host without IPv6) as long as one succeeds.
const Localhost = localhost.Name

// CanonicalAddress checks a listen address and returns its canonical form:
// "localhost", or an IP literal as net/netip prints it (lowercase IPv6,
// zeros compressed, IPv4-mapped IPv6 unmapped). 0.0.0.0 and :: (every
// address) are allowed but must be written out. Errors are *AddressError.
func CanonicalAddress(s string) (string, error) {
	if s == Localhost {
		return s, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return "", &AddressError{Address: s}
	}
	return ip.Unmap().String(), nil
}

// listenIPs returns the IPs a canonical address listens on.
func listenIPs(addr string) []netip.Addr {
	if addr == Localhost {
		return []netip.Addr{localhost.IPv4, localhost.IPv6}
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil
	}
	return []netip.Addr{ip}
}

// listenSet indexes the IPs listened on with one port, so that checking a
// new address costs the same however many share the port. Addresses overlap
// when they share an IP: 0.0.0.0 covers every IPv4 address; :: covers every
// IPv6 address and, because Linux listens on both families for "::" by
// default, every IPv4 address too.
type listenSet[T any] struct {
	exact        map[netip.Addr]listener[T]
	any4, any6   *listener[T] // the first IPv4 / IPv6 listener, wildcards included
	wild4, wild6 *listener[T] // the first 0.0.0.0 / :: listener
}

// listener is one IP in a listenSet and whoever listens on it.
type listener[T any] struct {
	ip    netip.Addr
	owner T
}

// find returns a listener that listening on ip would collide with, and the
// IP they share, for a message.
func (s *listenSet[T]) find(ip netip.Addr) (owner T, shared netip.Addr, ok bool) {
	var candidates []*listener[T]
	switch {
	case ip.IsUnspecified() && ip.Is6():
		candidates = []*listener[T]{s.any4, s.any6}
	case ip.IsUnspecified():
		candidates = []*listener[T]{s.any4, s.wild6}
	case ip.Is4():
		candidates = []*listener[T]{s.wild4, s.wild6}
	default:
		candidates = []*listener[T]{s.wild6}
	}
	if l, hit := s.exact[ip]; hit {
		candidates = append([]*listener[T]{&l}, candidates...)
	}
	for _, l := range candidates {
		if l != nil {
			shared = ip
			if ip.IsUnspecified() {
				shared = l.ip
			}
			return l.owner, shared, true
		}
	}
	var zero T
	return zero, netip.Addr{}, false
}

// add records that owner listens on ip.
func (s *listenSet[T]) add(ip netip.Addr, owner T) {
	l := &listener[T]{ip: ip, owner: owner}
	if s.exact == nil {
		s.exact = make(map[netip.Addr]listener[T])
	}
	if _, dup := s.exact[ip]; !dup {
		s.exact[ip] = *l
	}
	first := func(p **listener[T]) {
		if *p == nil {
			*p = l
		}
	}
	if ip.Is4() {
		first(&s.any4)
		if ip.IsUnspecified() {
			first(&s.wild4)
		}
	} else {
		first(&s.any6)
		if ip.IsUnspecified() {
			first(&s.wild6)
		}
	}
}

// findAddr returns a listener that listening on the canonical address addr
// would collide with, and the IP they share.
func (s *listenSet[T]) findAddr(addr string) (owner T, shared netip.Addr, ok bool) {
	for _, ip := range listenIPs(addr) {
		if owner, shared, ok = s.find(ip); ok {
			return owner, shared, true
		}
	}
	return owner, shared, false
}

// addAddr records that owner listens on the canonical address addr.
func (s *listenSet[T]) addAddr(addr string, owner T) {
	for _, ip := range listenIPs(addr) {
		s.add(ip, owner)
	}
}
