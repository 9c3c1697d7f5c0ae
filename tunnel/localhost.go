package tunnel

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"syscall"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/internal/localhost"
)

// halfBound fails a localhost listener that got ::1 only because another
// server on this machine holds 127.0.0.1 on the port (a local Postgres on
// 5432, say): kubectl accepts that, and clients that connect to 127.0.0.1
// then reach the other server. The tunnel fails instead, and is retried
// like any port in use. It closes l when it fails it.
func halfBound(spec config.Spec, l *forward.Listener) error {
	if !slices.Contains(spec.Addresses(), config.Localhost) {
		return nil
	}
	for _, a := range l.Addrs() {
		if ta, ok := a.(*net.TCPAddr); ok && ta.IP.To4() != nil {
			return nil
		}
	}
	probe, err := net.Listen("tcp4", net.JoinHostPort(localhost.IPv4.String(), strconv.Itoa(l.Port())))
	if err == nil {
		probe.Close()
		return nil // 127.0.0.1 is free now; IPv4 was unavailable, not taken
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil
	}
	_ = l.Close()
	return fmt.Errorf("%s:%d is in use by another program, so localhost would reach it rather than the tunnel: %w", localhost.IPv4, l.Port(), err)
}
