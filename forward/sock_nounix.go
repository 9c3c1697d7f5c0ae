//go:build !unix

package forward

import (
	"net"
	"syscall"
)

// waitReadable cannot wait without a buffer here; it reports readable.
func waitReadable(c net.Conn) error { return nil }

// writeNow cannot write without waiting here; it writes nothing.
func writeNow(rc syscall.RawConn, b []byte) int { return 0 }

// readNow cannot read without waiting here; it reads nothing.
func readNow(rc syscall.RawConn, b []byte) int { return 0 }
