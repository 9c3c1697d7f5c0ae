package forward

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
	"github.com/tunnels-dev/tunnels/internal/testnet"
)

// dialFake dials the fake kubelet's pod "web".
func dialFake(t *testing.T, k *fakeKubelet, opts Options) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, k.upgrader(), "default", "web", opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	cc, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	if sc == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { cc.Close(); sc.Close() })
	return cc.(*net.TCPConn), sc.(*net.TCPConn)
}

// startForward forwards a fresh local connection to port and returns the
// client end and the channel Forward's result arrives on.
func startForward(t *testing.T, c *Conn, port int) (*net.TCPConn, <-chan error) {
	t.Helper()
	client, server := tcpPair(t)
	done := make(chan error, 1)
	go func() { done <- c.Forward(t.Context(), server, port) }()
	return client, done
}

func waitResult(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Forward did not return within 10s")
		return nil
	}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// echoTimeout bounds one echo round trip through a forward.
const echoTimeout = 20 * time.Second

func TestForwardEcho(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	c := dialFake(t, k, Options{})
	for _, size := range []int{0, 1, 100 << 10, 4 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			client, done := startForward(t, c, 80)
			if err := testnet.RoundTrip(client, randomBytes(t, size), echoTimeout); err != nil {
				t.Fatal(err)
			}
			if err := waitResult(t, done); err != nil {
				t.Fatalf("Forward = %v, want nil", err)
			}
		})
	}
	if got := c.Stats.Total.Load(); got != 4 {
		t.Errorf("Stats.Total = %d, want 4", got)
	}
	if got, want := c.Stats.BytesIn.Load(), int64(4<<20+100<<10+1); got != want {
		t.Errorf("Stats.BytesIn = %d, want %d", got, want)
	}
	if got := c.Stats.Active.Load(); got != 0 {
		t.Errorf("Stats.Active = %d, want 0", got)
	}
}

func TestForwardServerClosesFirst(t *testing.T) {
	leakcheck.Check(t)
	received := make(chan []byte, 1)
	target := testnet.Serve(t, func(c *net.TCPConn) {
		c.Write([]byte("hello"))
		c.CloseWrite()
		b, _ := io.ReadAll(c)
		received <- b
	})
	k := newFakeKubelet(t, map[int]string{80: target})
	c := dialFake(t, k, Options{})
	client, done := startForward(t, c, 80)
	client.SetDeadline(time.Now().Add(10 * time.Second))

	// The target's half-close reaches us as a clean EOF once the server
	// ends the pair (as the kubelet does, error stream first: a data FIN
	// alone is not trusted)...
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "hello" {
		t.Fatalf("read = %q, %v; want hello, EOF", got, err)
	}
	// ...and the target sees the end of ours.
	select {
	case <-received:
	case <-time.After(10 * time.Second):
		t.Fatal("target did not see EOF")
	}
	if err := waitResult(t, done); err != nil {
		t.Fatalf("Forward = %v, want nil", err)
	}
}

// wantReset reads c to its end and fails unless the end is a TCP reset:
// how a forwarded connection that did not end cleanly must end.
func wantReset(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("%s: read ended with %v, want a connection reset", what, err)
	}
}

func TestForwardClientClosesFirst(t *testing.T) {
	leakcheck.Check(t)
	// The target reads to EOF, then answers and closes.
	target := testnet.Serve(t, func(c *net.TCPConn) {
		b, _ := io.ReadAll(c)
		fmt.Fprintf(c, "got %d bytes", len(b))
	})
	k := newFakeKubelet(t, map[int]string{80: target})
	c := dialFake(t, k, Options{})
	client, done := startForward(t, c, 80)
	client.SetDeadline(time.Now().Add(10 * time.Second))
	client.Write(make([]byte, 300000))
	client.CloseWrite()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "got 300000 bytes" {
		t.Fatalf("read = %q, %v; want %q", got, err, "got 300000 bytes")
	}
	if err := waitResult(t, done); err != nil {
		t.Fatalf("Forward = %v, want nil", err)
	}
}

func TestForwardRefusedPortFailsOnlyThatConnection(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t), 81: testnet.ClosedPort(t)})
	c := dialFake(t, k, Options{})

	// A connection on port 80 that stays open across the failure.
	long, longDone := startForward(t, c, 80)
	long.SetDeadline(time.Now().Add(10 * time.Second))
	exchange := func(msg string) {
		t.Helper()
		if _, err := long.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(long, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo = %q, %v; want %q", buf, err, msg)
		}
	}
	exchange("before")

	refused, refusedDone := startForward(t, c, 81)
	err := waitResult(t, refusedDone)
	var re *RemoteError
	if !errors.As(err, &re) || !re.Refused() || re.Port != 81 {
		t.Fatalf("Forward to a closed port = %v, want a refused *RemoteError for port 81", err)
	}
	wantReset(t, refused, "the refused local connection")

	exchange("after")
	if c.Err() != nil {
		t.Fatalf("Conn failed with its connection: %v", c.Err())
	}
	fresh, freshDone := startForward(t, c, 80)
	if err := testnet.RoundTrip(fresh, []byte("fresh"), echoTimeout); err != nil {
		t.Fatal(err)
	}
	if err := waitResult(t, freshDone); err != nil {
		t.Fatal(err)
	}
	long.CloseWrite()
	io.ReadAll(long)
	if err := waitResult(t, longDone); err != nil {
		t.Fatal(err)
	}
	if got := c.Stats.Failed.Load(); got != 1 {
		t.Errorf("Stats.Failed = %d, want 1", got)
	}
}

func TestForwardConcurrent(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	c := dialFake(t, k, Options{})
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		client, done := startForward(t, c, 80)
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := bytes.Repeat([]byte{byte(i)}, 64<<10+i)
			if err := testnet.RoundTrip(client, data, echoTimeout); err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
			errs <- <-done
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestForwardStalledReaderDoesNotStallOthers(t *testing.T) {
	leakcheck.Check(t)
	const blast = 600 << 10 // past the 256 KiB in memory: the rest spills
	blaster := testnet.Serve(t, func(c *net.TCPConn) {
		c.Write(make([]byte, blast))
		io.Copy(io.Discard, c)
	})
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t), 82: blaster})
	c := dialFake(t, k, Options{})

	// A local connection that reads nothing: net.Pipe has no buffer at all.
	stalled, stalledServer := net.Pipe()
	defer stalled.Close()
	stalledDone := make(chan error, 1)
	go func() { stalledDone <- c.Forward(t.Context(), stalledServer, 82) }()
	// Wait until the blast has arrived at our side.
	deadline := time.Now().Add(10 * time.Second)
	for c.wire.bytesRead.Load() < blast {
		if time.Now().After(deadline) {
			t.Fatalf("only %d bytes arrived", c.wire.bytesRead.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Five more connections cover every frame-worker partition, so one of
	// them shares the stalled stream's.
	for i := range 5 {
		client, done := startForward(t, c, 80)
		if err := testnet.RoundTrip(client, randomBytes(t, 256<<10), echoTimeout); err != nil {
			t.Fatalf("connection %d beside a stalled one: %v", i, err)
		}
		if err := waitResult(t, done); err != nil {
			t.Fatal(err)
		}
	}

	// The stalled connection still gets all its data once it reads.
	stalled.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.ReadFull(stalled, make([]byte, blast)); err != nil {
		t.Fatalf("stalled connection read %d bytes: %v", n, err)
	}
	stalled.Close()
	waitResult(t, stalledDone)
}

func TestDialErrors(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, nil)
	tests := []struct {
		pod      string
		wantText []string
		wantIs   error
	}{
		{pod: "missing", wantText: []string{"404", `pods "missing" not found`, "default/missing"}},
		{pod: "wrongproto", wantText: []string{"v9.example"}, wantIs: ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.pod, func(t *testing.T) {
			c, err := Dial(t.Context(), k.upgrader(), "default", tt.pod, Options{})
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			for _, s := range tt.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
}

func TestConnLostWhenServerCloses(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	c := dialFake(t, k, Options{})
	client, done := startForward(t, c, 80)
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	io.ReadFull(client, make([]byte, 1))

	k.kill()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not fire within 5s of the server closing")
	}
	if err := c.Err(); !errors.Is(err, ErrLostConnection) {
		t.Errorf("Err = %v, want ErrLostConnection", err)
	}
	if err := waitResult(t, done); !errors.Is(err, ErrLostConnection) {
		t.Errorf("Forward = %v, want ErrLostConnection", err)
	}
	// A new connection fails at once.
	_, done2 := startForward(t, c, 80)
	if err := waitResult(t, done2); !errors.Is(err, ErrLostConnection) {
		t.Errorf("Forward on a lost Conn = %v, want ErrLostConnection", err)
	}
}

// freezer is a TCP relay in front of the fake kubelet that can stop
// relaying without closing anything, like a dead network path.
type freezer struct {
	addr   string
	frozen chan struct{}
	once   sync.Once
}

func newFreezer(t *testing.T, backend string) *freezer {
	f := &freezer{frozen: make(chan struct{})}
	stop := make(chan struct{})
	relay := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-f.frozen:
				<-stop
				return
			default:
			}
			if n > 0 {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	f.addr = testnet.Serve(t, func(c *net.TCPConn) {
		b, err := net.Dial("tcp", backend)
		if err != nil {
			return
		}
		defer b.Close()
		done := make(chan struct{})
		go func() { relay(b, c); b.Close(); close(done) }()
		relay(c, b)
		c.Close()
		<-done
	})
	t.Cleanup(func() { close(stop) })
	return f
}

func (f *freezer) freeze() { f.once.Do(func() { close(f.frozen) }) }

func TestConnLostWhenPingsGoUnanswered(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, nil)
	f := newFreezer(t, k.srv.Listener.Addr().String())
	const interval = 100 * time.Millisecond
	c, err := Dial(t.Context(), testUpgrader{addr: f.addr}, "default", "web", Options{PingInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Pings are answered while the path is alive.
	select {
	case <-c.Done():
		t.Fatalf("connection died while alive: %v", c.Err())
	case <-time.After(4 * interval):
	}
	f.freeze()
	start := time.Now()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("dead connection not noticed within 5s")
	}
	if took := time.Since(start); took > 3*interval+500*time.Millisecond {
		t.Errorf("noticed after %s, want about two intervals (%s)", took, 2*interval)
	}
	if err := c.Err(); !errors.Is(err, ErrLostConnection) || !strings.Contains(err.Error(), "ping") {
		t.Errorf("Err = %v, want ErrLostConnection about a ping", err)
	}
}

func TestCloseIsBoundedWhenPeerStopsReading(t *testing.T) {
	leakcheck.Check(t)
	sink := testnet.Serve(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	k := newFakeKubelet(t, map[int]string{80: sink})
	f := newFreezer(t, k.srv.Listener.Addr().String())
	c, err := Dial(t.Context(), testUpgrader{addr: f.addr}, "default", "web", Options{PingInterval: -1, CloseTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	client, done := startForward(t, c, 80)
	f.freeze()
	// Fill every buffer between us and the frozen relay.
	go func() {
		buf := make([]byte, 1<<20)
		for {
			if _, err := client.Write(buf); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats.BytesOut.Load() < 8<<20 {
		last := c.Stats.BytesOut.Load()
		time.Sleep(200 * time.Millisecond)
		if c.Stats.BytesOut.Load() == last {
			break // writes are blocked
		}
		if time.Now().After(deadline) {
			t.Fatal("writes never blocked")
		}
	}
	start := time.Now()
	c.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %s with a blocked peer, want it bounded by CloseTimeout", took)
	}
	if err := waitResult(t, done); !errors.Is(err, ErrClosed) {
		t.Errorf("Forward = %v, want ErrClosed", err)
	}
	client.Close()
}

// TestCloseIsBoundedWhenLocalStopsReading: the frame reader waiting on a
// full stream buffer (a local reader stopped, and no spill file to take
// the rest) does not hold up Close, which used to wait for that local
// reader for as long as it did not read.
func TestCloseIsBoundedWhenLocalStopsReading(t *testing.T) {
	leakcheck.Check(t)
	blaster := testnet.Serve(t, func(c *net.TCPConn) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	k := newFakeKubelet(t, map[int]string{80: blaster})
	c := dialFake(t, k, Options{PingInterval: -1, CloseTimeout: 300 * time.Millisecond, StreamBuffer: 64 << 10, SpillLimit: -1})
	client, done := startForward(t, c, 80) // never read until Close returns
	deadline := time.Now().Add(10 * time.Second)
	for c.blocked.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the frame reader never waited on the stream buffer")
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Error("Close did not return within 5s while the local reader was stopped")
	}
	client.Close()
	<-closed
	if err := waitResult(t, done); err == nil {
		t.Error("Forward = nil, want the connection's end")
	}
}

func TestStreamCreationTimeout(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, nil)
	k.mu.Lock()
	k.noReply = true
	k.mu.Unlock()
	c := dialFake(t, k, Options{StreamCreationTimeout: 300 * time.Millisecond})
	_, done := startForward(t, c, 80)
	if err := waitResult(t, done); !errors.Is(err, ErrStreamTimeout) {
		t.Errorf("Forward = %v, want ErrStreamTimeout", err)
	}
	// Whatever becomes of the pair (retried, or failed for having sent
	// too much to retry), the server stopped answering: a fresh
	// connection is needed.
	if !c.isStale() {
		t.Error("the connection is not stale after a stream went unanswered")
	}
}

// TestCreateStreamFailureMarksStale: a connection that cannot open
// streams (here its stream IDs are used up) is marked stale, for the
// session to dial a fresh one, and the local connection gets a reset.
func TestCreateStreamFailureMarksStale(t *testing.T) {
	for _, tt := range []struct {
		name string
		last uint32 // the last stream ID taken
	}{
		{"no ID for the error stream", maxStreamID},
		{"no ID for the data stream", maxStreamID - 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leakcheck.Check(t)
			k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
			c := dialFake(t, k, Options{})
			c.wire.w.mu.Lock()
			c.wire.w.lastID = tt.last // 2^31 streams would take hours to use up
			c.wire.w.mu.Unlock()
			client, done := startForward(t, c, 80)
			if err := waitResult(t, done); err == nil {
				t.Error("Forward = nil, want the stream creation error")
			}
			wantReset(t, client, "a connection whose streams could not be created")
			if !c.isStale() {
				t.Error("the connection is not stale after a stream could not be created")
			}
		})
	}
}

func TestForwardCanceled(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	c := dialFake(t, k, Options{})
	client, server := tcpPair(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Forward(ctx, server, 80) }()
	client.Write([]byte("x"))
	io.ReadFull(client, make([]byte, 1))
	cancel()
	if err := waitResult(t, done); !errors.Is(err, context.Canceled) {
		t.Errorf("Forward = %v, want context.Canceled", err)
	}
	wantReset(t, client, "the local connection after cancel")
	if c.Err() != nil {
		t.Errorf("Conn ended with a canceled Forward: %v", c.Err())
	}
}

// recordingUpgrader records every write on the connections it upgrades.
type recordingUpgrader struct {
	Upgrader
	mu     sync.Mutex
	writes [][]byte
}

type recordingConn struct {
	net.Conn
	u *recordingUpgrader
}

func (c recordingConn) Write(p []byte) (int, error) {
	c.u.mu.Lock()
	c.u.writes = append(c.u.writes, bytes.Clone(p))
	c.u.mu.Unlock()
	return c.Conn.Write(p)
}

func (u *recordingUpgrader) Upgrade(ctx context.Context, method, path string, h http.Header) (net.Conn, http.Header, error) {
	c, rh, err := u.Upgrader.Upgrade(ctx, method, path, h)
	if err != nil {
		return nil, nil, err
	}
	return recordingConn{Conn: c, u: u}, rh, nil
}

// TestForwardOpensInOneWrite: a local client that has spoken before its
// connection is forwarded gets its streams opened and its first bytes
// sent in one write: SYN_STREAM (error), its FIN, SYN_STREAM (data) and
// the data.
func TestForwardOpensInOneWrite(t *testing.T) {
	leakcheck.Check(t)
	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	up := &recordingUpgrader{Upgrader: k.upgrader()}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, up, "default", "web", Options{PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	client, server := tcpPair(t)
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := waitReadable(server); err != nil { // the bytes are there
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Forward(t.Context(), server, 80) }()
	client.SetDeadline(time.Now().Add(echoTimeout))
	echo := make([]byte, 5)
	if _, err := io.ReadFull(client, echo); err != nil || string(echo) != "hello" {
		t.Fatalf("echo %q, %v; want hello", echo, err)
	}
	client.CloseWrite()
	if rest, err := io.ReadAll(client); err != nil || len(rest) > 0 {
		t.Fatalf("after the echo: %q, %v; want a clean EOF", rest, err)
	}
	if err := waitResult(t, done); err != nil {
		t.Fatalf("Forward = %v, want nil", err)
	}

	up.mu.Lock()
	first := up.writes[0]
	up.mu.Unlock()
	got := readFrames(t, first)
	want := []string{
		"syn_stream(1,streamtype=error,port=80,requestid=0)",
		`data(1,"",fin=true)`,
		"syn_stream(3,streamtype=data,port=80,requestid=0)",
		`data(3,"hello",fin=false)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("first write carries %v, want %v", got, want)
	}
}
