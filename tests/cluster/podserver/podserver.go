// Package podserver is the test server that runs inside the test pods: in a
// container on the real node, and in the test process behind kwok's
// PortForward routing, so both backends serve the same ports the same way.
// It uses the standard library only, so its container image stays small and
// builds in seconds.
package podserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// The ports a pod server listens on. ClosedPort is one it never listens on.
const (
	// EchoPort writes back what it reads; it half-closes after the client's
	// EOF and closes a connection idle for Server.Idle.
	EchoPort = 8080
	// HelloPort writes the server's ID and a newline, then echoes like EchoPort.
	HelloPort = 8081
	// HalfClosePort reads until EOF (or Idle passes without data), publishes
	// a "halfclose" event, then writes "reply after N bytes\n" and closes:
	// it shows whether the client's half-close reached the pod and whether an
	// answer written after it reaches the client.
	HalfClosePort = 8082
	// EventsPort sends "ready\n" once the connection is subscribed, then one
	// line per event (see Event.String) until the connection closes.
	EventsPort = 8083
	// GreetPort writes "hello\n" and half-closes first, then reads until EOF
	// (or Idle) and publishes a "greet" event: it shows what the client sees
	// when the pod closes first, and whether the client's later writes arrive.
	GreetPort = 8084
	// ClosedPort has no listener in the pod, so a port-forward to it is refused.
	ClosedPort = 9
)

// Ports lists the ports the server listens on.
var Ports = []int{EchoPort, HelloPort, HalfClosePort, EventsPort, GreetPort}

// Event is what a half-close or greet connection saw, published on EventsPort.
type Event struct {
	// Port is "halfclose" or "greet".
	Port string
	// Read is how many bytes the server read.
	Read int
	// End is how reading ended: "eof", "idle" (Idle passed with no data) or
	// "error" (a reset, say).
	End string
}

// String formats the event as it is sent: "halfclose read=4 end=eof".
func (e Event) String() string { return fmt.Sprintf("%s read=%d end=%s", e.Port, e.Read, e.End) }

// ParseEvent parses a line written by Event.String.
func ParseEvent(line string) (Event, error) {
	var e Event
	if _, err := fmt.Sscanf(strings.TrimSpace(line), "%s read=%d end=%s", &e.Port, &e.Read, &e.End); err != nil {
		return Event{}, fmt.Errorf("parse event %q: %w", line, err)
	}
	return e, nil
}

// Server serves the ports above.
type Server struct {
	// ID is what HelloPort writes: it tells a test which pod, and which
	// incarnation of a re-created pod, a connection reached.
	ID string
	// Idle is how long a connection may go without data before the server
	// closes it. Zero means 3 s. kwok never passes a client's half-close on,
	// so without it every connection through kwok would stay open for good.
	Idle time.Duration

	mu   sync.Mutex
	subs map[chan Event]struct{}
}

func (s *Server) idle() time.Duration {
	if s.Idle > 0 {
		return s.Idle
	}
	return 3 * time.Second
}

// Handler returns the connection handler of port, or nil for an unknown port.
func (s *Server) Handler(port int) func(*net.TCPConn) {
	switch port {
	case EchoPort:
		return s.echo
	case HelloPort:
		return func(c *net.TCPConn) {
			if _, err := fmt.Fprintf(c, "%s\n", s.ID); err == nil {
				s.echo(c)
			}
		}
	case HalfClosePort:
		return s.halfClose
	case EventsPort:
		return s.events
	case GreetPort:
		return s.greet
	}
	return nil
}

// readAll reads until EOF, an error, or Idle without data, and says which.
func (s *Server) readAll(c *net.TCPConn, w io.Writer) (int, string) {
	buf := make([]byte, 64<<10)
	total := 0
	for {
		c.SetReadDeadline(time.Now().Add(s.idle()))
		n, err := c.Read(buf)
		total += n
		if n > 0 && w != nil {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, "error"
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return total, "eof"
		case errors.Is(err, os.ErrDeadlineExceeded):
			return total, "idle"
		default:
			return total, "error"
		}
	}
}

func (s *Server) echo(c *net.TCPConn) {
	if _, end := s.readAll(c, c); end == "eof" {
		c.CloseWrite()
	}
}

func (s *Server) halfClose(c *net.TCPConn) {
	n, end := s.readAll(c, nil)
	s.publish(Event{Port: "halfclose", Read: n, End: end})
	fmt.Fprintf(c, "reply after %d bytes\n", n)
}

func (s *Server) greet(c *net.TCPConn) {
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return
	}
	c.CloseWrite()
	n, end := s.readAll(c, nil)
	s.publish(Event{Port: "greet", Read: n, End: end})
}

func (s *Server) events(c *net.TCPConn) {
	ch := make(chan Event, 16)
	s.mu.Lock()
	if s.subs == nil {
		s.subs = map[chan Event]struct{}{}
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}()
	// "ready" tells the client it is subscribed: its local connect returned
	// long before the port-forward stream reached this server.
	if _, err := io.WriteString(c, "ready\n"); err != nil {
		return
	}
	// A read returns when the client goes away; until then, send events.
	gone := make(chan struct{})
	go func() { io.Copy(io.Discard, c); close(gone) }()
	for {
		select {
		case e := <-ch:
			if _, err := fmt.Fprintf(c, "%s\n", e); err != nil {
				return
			}
		case <-gone:
			return
		}
	}
}

func (s *Server) publish(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- e:
		default: // a subscriber that does not read loses events rather than blocking the server
		}
	}
}

// Serve accepts connections on l for port until ctx ends, then closes l
// and every open connection and waits for the handlers.
func (s *Server) Serve(ctx context.Context, l net.Listener, port int) error {
	handle := s.Handler(port)
	if handle == nil {
		return fmt.Errorf("serve port %d: no such port", port)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	stop := context.AfterFunc(ctx, func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on port %d: %w", port, err)
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			handle(c.(*net.TCPConn))
		}()
	}
}
