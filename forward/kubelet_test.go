package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/spdystream"

	"github.com/tunnels-dev/tunnels/internal/testnet"
)

// fakeKubelet is a port-forward server for the tests of this package: it
// pairs streams by requestID as the kubelet does, dials the target of the
// port on loopback, and copies with half-close both ways. Test against the
// kubelet's own code lives in tests/protocol.
type fakeKubelet struct {
	t       testing.TB
	srv     *httptest.Server
	targets map[int]string // remote port → loopback address

	conns    testnet.Conns    // hijacked connections, for kill
	handlers testnet.Handlers // upgrades served, whose goroutines httptest does not wait for

	mu sync.Mutex
	// noReply makes the server never answer streams (for timeouts).
	noReply bool
	// podTargets overrides targets for one pod's ports.
	podTargets map[string]map[int]string
}

func newFakeKubelet(t testing.TB, targets map[int]string) *fakeKubelet {
	k := &fakeKubelet{t: t, targets: targets}
	k.srv = httptest.NewServer(k)
	t.Cleanup(func() {
		k.handlers.Stop()
		k.srv.Close()
		k.conns.Close()
		k.handlers.Wait()
	})
	return k
}

// target returns where port of pod is forwarded to.
func (k *fakeKubelet) target(pod string, port int) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if addr, ok := k.podTargets[pod][port]; ok {
		return addr, true
	}
	addr, ok := k.targets[port]
	return addr, ok
}

// setPodTarget forwards port of pod, and of that pod only, to addr.
func (k *fakeKubelet) setPodTarget(pod string, port int, addr string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.podTargets == nil {
		k.podTargets = map[string]map[int]string{}
	}
	if k.podTargets[pod] == nil {
		k.podTargets[pod] = map[int]string{}
	}
	k.podTargets[pod][port] = addr
}

// setTarget changes where port is forwarded to.
func (k *fakeKubelet) setTarget(port int, addr string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.targets[port] = addr
}

// kill closes every upgraded connection, as a dying node or proxy would.
func (k *fakeKubelet) kill() { k.conns.CloseAll() }

// dialCount returns how many upgrades the fake has served.
func (k *fakeKubelet) dialCount() int { return k.handlers.Started() }

// ServeHTTP serves the port-forward endpoint.
func (k *fakeKubelet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/portforward") {
		http.Error(w, "no such thing", http.StatusNotFound)
		return
	}
	if strings.Contains(r.URL.Path, "/pods/missing/") {
		http.Error(w, `pods "missing" not found`, http.StatusNotFound)
		return
	}
	if r.Header.Get("X-Stream-Protocol-Version") != "portforward.k8s.io" {
		http.Error(w, "bad protocol", http.StatusForbidden)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		k.t.Errorf("hijack: %v", err)
		return
	}
	proto := "portforward.k8s.io"
	if strings.Contains(r.URL.Path, "/pods/wrongproto/") {
		proto = "v9.example"
	}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: %s\r\n\r\n", proto)
	if err := brw.Flush(); err != nil {
		conn.Close()
		return
	}
	// httptest forgets hijacked connections, so the fake waits for their
	// goroutines itself, and closes them (even one added after the
	// cleanup's Conns.Close) so that they end.
	if !k.handlers.Start() {
		conn.Close()
		return
	}
	k.conns.Add(conn)
	k.mu.Lock()
	noReply := k.noReply
	k.mu.Unlock()

	sc, err := spdystream.NewConnection(&bufferedConn{Conn: conn, r: brw.Reader}, true)
	if err != nil {
		conn.Close()
		k.handlers.Done()
		return
	}
	pod := strings.TrimSuffix(r.URL.Path, "/portforward")
	pod = pod[strings.LastIndex(pod, "/")+1:]
	h := &fakeHandler{k: k, pod: pod, conn: sc, pairs: map[string]*fakePair{}}
	served := make(chan struct{})
	go func() {
		defer k.handlers.Done()
		sc.Serve(func(s *spdystream.Stream) {
			if noReply {
				// Never reply, but take the client's reset, which
				// spdystream hands over on an unbuffered channel, until
				// Serve has returned: a reset read just before the
				// connection closed is handed over after that.
				h.wg.Add(1)
				go func() {
					defer h.wg.Done()
					for s.WaitTimeout(20*time.Millisecond) == spdystream.ErrTimeout {
						select {
						case <-served:
							return
						default:
						}
					}
				}()
				return
			}
			h.stream(s)
		})
		close(served)
		// Make sure spdystream's shutdown goroutine runs, and take the
		// error it hands to a waiter, so that it ends now.
		sc.Close()
		conn.Close()
		sc.Wait(2 * time.Second)
		h.wg.Wait()
	}()
}

// bufferedConn reads through the reader the hijack returned.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

type fakePair struct {
	data, errs *spdystream.Stream
}

type fakeHandler struct {
	k     *fakeKubelet
	pod   string
	conn  *spdystream.Connection
	mu    sync.Mutex
	pairs map[string]*fakePair
	wg    sync.WaitGroup
}

func (h *fakeHandler) stream(s *spdystream.Stream) {
	port, err := strconv.Atoi(s.Headers().Get("port"))
	typ := s.Headers().Get("streamType")
	id := s.Headers().Get("requestID")
	if err != nil || port < 1 || (typ != "data" && typ != "error") || id == "" {
		s.Reset()
		return
	}
	if err := s.SendReply(http.Header{}, false); err != nil {
		// The connection is broken. Forget the stream now: spdystream hands
		// a later reset of an unreplied stream to a waiter on an unbuffered
		// channel, and with nobody waiting its frame handler (and so Serve
		// and the test's cleanup) would block for ever.
		s.Reset()
		return
	}
	h.mu.Lock()
	p := h.pairs[id]
	if p == nil {
		p = &fakePair{}
		h.pairs[id] = p
	}
	if typ == "data" {
		p.data = s
	} else {
		p.errs = s
	}
	complete := p.data != nil && p.errs != nil
	if complete {
		delete(h.pairs, id)
	}
	h.mu.Unlock()
	if complete {
		h.wg.Add(1)
		go h.forward(p, port)
	}
}

// forward serves one pair: dial, copy both ways with half-close, or report
// the failure on the error stream and reset both streams, as the kubelet.
func (h *fakeHandler) forward(p *fakePair, port int) {
	defer h.wg.Done()
	// The error stream is never written by the client; drain it.
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		io.Copy(io.Discard, p.errs)
	}()
	addr, ok := h.k.target(h.pod, port)
	var target net.Conn
	var err error
	switch {
	case !ok:
		err = fmt.Errorf("no target for port %d", port)
	case strings.HasPrefix(addr, "msg:"):
		err = errors.New(strings.TrimPrefix(addr, "msg:"))
	default:
		target, err = net.Dial("tcp", addr)
	}
	if err != nil {
		fmt.Fprintf(p.errs, "error forwarding port %d to pod fake, uid : %v", port, err)
		p.data.Reset()
		p.errs.Reset()
		return
	}
	defer target.Close()
	// Copy both ways as containerd does: when one direction ends, the other
	// gets a moment to finish, then the pair ends, error stream first and
	// data stream last (the kubelet's deferred closes), so a client's data
	// FIN always comes after the error stream's.
	up, down := make(chan struct{}), make(chan struct{})
	go func() {
		io.Copy(target, p.data)
		target.(*net.TCPConn).CloseWrite()
		close(up)
	}()
	go func() {
		io.Copy(p.data, target)
		close(down)
	}()
	other := down
	select {
	case <-up:
	case <-down:
		other = up
	}
	grace := time.NewTimer(time.Second)
	select {
	case <-other:
	case <-grace.C:
	}
	grace.Stop()
	p.errs.Close()
	p.data.Close()
	target.Close()
	<-up
	<-down
}

// testUpgrader upgrades with a plain HTTP/1.1 request over TCP.
type testUpgrader struct {
	addr string
}

func (u testUpgrader) Upgrade(ctx context.Context, method, path string, h http.Header) (net.Conn, http.Header, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req, _ := http.NewRequest(method, "http://"+u.addr+path, nil)
	req.Header = h.Clone()
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		conn.Close()
		return nil, nil, fmt.Errorf("upgrade: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return &bufferedConn{Conn: conn, r: br}, resp.Header, nil
}

func (k *fakeKubelet) upgrader() Upgrader {
	return testUpgrader{addr: k.srv.Listener.Addr().String()}
}
