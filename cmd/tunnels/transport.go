package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"

	"github.com/tunnels-dev/tunnels/config"
)

// websocketsEnv is kubectl's switch for the WebSocket transport of
// port-forward; "false" (or any false value) turns it off, as in kubectl.
const websocketsEnv = "KUBECTL_PORT_FORWARD_WEBSOCKETS"

// transportFlag registers --transport on fs; "" means the file's (or auto).
func transportFlag(fs *flag.FlagSet, what string) *string {
	return fs.String("transport", "", "how to reach pods: auto (WebSocket, falling back to SPDY when the upgrade is refused), websocket or spdy (default: "+what+")")
}

// checkTransport validates a --transport value.
func checkTransport(v string) error {
	if v != "" && !slices.Contains(config.Transports, v) {
		return fmt.Errorf("--transport must be auto, websocket or spdy, not %q", v)
	}
	return nil
}

// noWebSocket reports whether KUBECTL_PORT_FORWARD_WEBSOCKETS turns the
// WebSocket transport off.
func noWebSocket(e *env) bool {
	b, err := strconv.ParseBool(e.getenv(websocketsEnv))
	return err == nil && !b
}

// transportFor resolves the transport of `tunnels forward`: the flag, else
// auto, which the environment may turn into spdy.
func transportFor(e *env, flagValue string) string {
	t := cmpOr(flagValue, config.TransportAuto)
	if t == config.TransportAuto && noWebSocket(e) {
		return config.TransportSPDY
	}
	return t
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
