// Package localhost defines the listen address "localhost" and the addresses it binds, for config and forward alike.
package localhost

import "net/netip"

// Name is the listen address that means 127.0.0.1 and ::1, where one of
// the two may fail (a host without IPv6) as long as the other binds. It is
// the default listen address.
const Name = "localhost"

// IPv4 and IPv6 are the addresses Name binds.
var (
	IPv4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	IPv6 = netip.IPv6Loopback()
)
