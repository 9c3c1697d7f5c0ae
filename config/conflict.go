package config

import "gopkg.in/yaml.v3"

// portClaim is a local port taken by one port spec of one tunnel.
type portClaim struct {
	tunnel string
	node   *yaml.Node
}

// checkConflicts records every port spec whose local port is already taken
// on an overlapping address by an earlier one, in the same tunnel or
// another. Port 0 (a free port) never conflicts; disabled tunnels are not
// started, so they take no port; tunnels with an invalid address are
// skipped, having already been reported.
func (p *parser) checkConflicts(f *File) {
	ports := make(map[int]*listenSet[portClaim])
	for i, t := range f.Tunnels {
		pt := p.tunnels[i]
		if t.Disabled || !pt.addressOK || (t.Address == nil && !p.fileAddressOK) {
			continue
		}
		addrs := effectiveAddress(f, t)
		for j, spec := range t.Ports {
			if spec.Local == 0 {
				continue
			}
			set := ports[spec.Local]
			if set == nil {
				set = &listenSet[portClaim]{}
				ports[spec.Local] = set
			}
			if c, ip, taken := findAny(set, addrs); taken {
				by := "tunnel \"" + c.tunnel + "\""
				if c.tunnel == t.Name {
					by = "this tunnel"
				}
				p.at(pt.ports[j], "tunnel %q: local port %d on %s is already taken by %s (at %d:%d)",
					t.Name, spec.Local, ip, by, c.node.Line, c.node.Column)
				continue
			}
			for _, a := range addrs {
				set.addAddr(a, portClaim{tunnel: t.Name, node: pt.ports[j]})
			}
		}
	}
}

// findAny returns the first claim that one of addrs would collide with, and
// the IP they share.
func findAny(set *listenSet[portClaim], addrs []string) (portClaim, string, bool) {
	for _, a := range addrs {
		if c, ip, ok := set.findAddr(a); ok {
			return c, ip.String(), true
		}
	}
	return portClaim{}, "", false
}

// effectiveAddress returns the canonical listen addresses of t: its own,
// else the file's, else localhost.
func effectiveAddress(f *File, t Tunnel) []string {
	switch {
	case t.Address != nil:
		return t.Address
	case f.Address != nil:
		return f.Address
	}
	return []string{Localhost}
}
