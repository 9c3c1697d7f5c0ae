package tunnel

import (
	"context"
	"log/slog"
	"time"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
)

// SessionOptions configures NewSession. Zero values are documented
// defaults.
type SessionOptions struct {
	// Tunnel names the session in logs.
	Tunnel string
	// Logger receives the session's logs. Default: discard.
	Logger *slog.Logger
	// Backoff spaces redials. Default: see forward.Backoff.
	Backoff forward.Backoff
	// ConnectWait is forward.SessionOptions.ConnectWait. Default 30s.
	ConnectWait time.Duration
	// FailFast is forward.SessionOptions.FailFast.
	FailFast bool
}

// NewSession returns a session for key's target through c, living until
// ctx ends. Errors that retrying cannot cure (see Permanent) leave it
// failed until Refresh.
func NewSession(ctx context.Context, c Client, key config.Session, o SessionOptions) *forward.Session {
	return forward.NewSession(ctx, forward.SessionOptions{
		Upgrader:    c,
		Namespace:   key.Namespace,
		Resolve:     resolver(c, key),
		Tunnel:      o.Tunnel,
		Target:      key.Target.String(),
		Logger:      o.Logger,
		Backoff:     o.Backoff,
		ConnectWait: o.ConnectWait,
		FailFast:    o.FailFast,
		Permanent:   Permanent,
		Conn:        forward.Options{Transport: forward.Transport(key.Transport)},
	})
}

// RunSession runs s, the session of key through c made with ctx, with a
// pod watch of its own, until ctx ends or s's Run returns, and returns
// Run's error. `tunnels forward` runs its one session so; the Applier
// shares one watch among the sessions of a namespace instead.
func RunSession(ctx context.Context, c Client, key config.Session, s *forward.Session, log *slog.Logger) error {
	if log == nil {
		log = discard
	}
	w := newPodWatch(c, key.Namespace, log)
	w.add(s, key.Target, log)
	w.start(ctx)
	defer w.stop()
	return s.Run()
}
