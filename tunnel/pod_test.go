package tunnel

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moby/spdystream"

	"github.com/tunnels-dev/tunnels/config"
	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/internal/testnet"
)

// podClient is a Client whose every target resolves to one Running, Ready
// pod, "db", on which every port echoes: its upgrades reach a loopback SPDY
// server that echoes each data stream and leaves each error stream empty.
// Its pod watches are fakeClient's. A test can hold the next Resolve.
type podClient struct {
	*fakeClient
	addr string // the SPDY server

	mu   sync.Mutex
	held chan []config.RemotePort // if set, the next Resolve sends what it was asked here
	gate chan struct{}            // and then waits for it to close
}

func newPodClient(t *testing.T) *podClient {
	return &podClient{fakeClient: newFakeClient(), addr: testnet.Serve(t, serveEcho)}
}

// hold makes the next Resolve report what it was asked on the returned
// channel and then wait until release is called.
func (p *podClient) hold() (asked <-chan []config.RemotePort, release func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	held, gate := make(chan []config.RemotePort, 1), make(chan struct{})
	p.held, p.gate = held, gate
	return held, sync.OnceFunc(func() { close(gate) })
}

func (p *podClient) Resolve(ctx context.Context, _ string, _ config.Target, remotes []config.RemotePort, _ string) (forward.Resolved, error) {
	p.mu.Lock()
	held, gate := p.held, p.gate
	p.held, p.gate = nil, nil
	p.mu.Unlock()
	if held != nil {
		held <- slices.Clone(remotes)
		select {
		case <-gate:
		case <-ctx.Done():
			return forward.Resolved{}, ctx.Err()
		}
	}
	ports := make([]int, len(remotes))
	for i, r := range remotes {
		ports[i] = r.Number
	}
	return forward.Resolved{Pod: "db", UID: "uid-1", Ports: ports}, nil
}

func (p *podClient) Upgrade(ctx context.Context, _, _ string, _ http.Header) (net.Conn, http.Header, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp4", p.addr)
	if err != nil {
		return nil, nil, err
	}
	return c, http.Header{"X-Stream-Protocol-Version": {"portforward.k8s.io"}}, nil
}

// serveEcho serves one upgraded connection as a pod whose every port
// echoes, until the client or the test closes it.
func serveEcho(c *net.TCPConn) {
	sc, err := spdystream.NewConnection(c, true)
	if err != nil {
		return
	}
	var streams sync.WaitGroup
	sc.Serve(func(s *spdystream.Stream) {
		if s.SendReply(http.Header{}, false) != nil {
			// Broken connection: forget the stream, or spdystream's
			// handler blocks for ever on the client's reset of it.
			_ = s.Reset()
			return
		}
		streams.Add(1)
		go func() {
			defer streams.Done()
			if s.Headers().Get("streamType") == "data" {
				_, _ = io.Copy(s, s)
			} else {
				_, _ = io.Copy(io.Discard, s)
			}
			_ = s.Close()
		}()
	})
	_ = sc.Close()
	_ = c.Close()
	_ = sc.Wait(time.Second)
	streams.Wait()
}

// freePort returns a local port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	_, port, err := net.SplitHostPort(testnet.ClosedPort(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// echoes checks a round trip through the local port of spec.
func echoes(t *testing.T, a *Applier, spec config.Spec) {
	t.Helper()
	st := statusOf(t, a, spec)
	if len(st.Addrs) == 0 {
		t.Fatalf("%s: state %s, err %v; want bound", spec.Tunnel, st.State, st.Err)
	}
	c := testnet.Dial(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(st.LocalPort)))
	if err := testnet.RoundTrip(c, []byte("hello "+spec.Tunnel), 10*time.Second); err != nil {
		t.Errorf("%s (local port %d -> %s): %v", spec.Tunnel, st.LocalPort, spec.Remote, err)
	}
}
