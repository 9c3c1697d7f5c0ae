//go:build !unix

package forward

import "net"

// waitReadable cannot wait without a buffer here; it reports readable.
func waitReadable(c net.Conn) error { return nil }
