package forward

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moby/spdystream/spdy"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

// frameServer is the server end of a Conn whose frames a test writes and
// reads itself, with spdystream's framer (the kubelet's).
type frameServer struct {
	t      *testing.T
	framer *spdy.Framer
}

func newFrameServer(t *testing.T) (*Conn, *frameServer) {
	t.Helper()
	client, server := tcpPair(t)
	c, err := newConn(client, "default", "web", Options{PingInterval: -1, StreamCreationTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	server.SetDeadline(time.Now().Add(20 * time.Second))
	framer, err := spdy.NewFramer(server, bufio.NewReader(server))
	if err != nil {
		t.Fatal(err)
	}
	return c, &frameServer{t: t, framer: framer}
}

func (s *frameServer) write(f spdy.Frame) {
	s.t.Helper()
	if err := s.framer.WriteFrame(f); err != nil {
		s.t.Fatal(err)
	}
}

// next reads the client's next frame and returns its name (frameName).
func (s *frameServer) next() string {
	s.t.Helper()
	f, err := s.framer.ReadFrame()
	if err != nil {
		s.t.Fatal(err)
	}
	return frameName(f)
}

// forwardOn forwards a fresh local connection over c to port 80 and
// returns its client end and the channel Forward's result arrives on.
func forwardOn(t *testing.T, ctx context.Context, c *Conn) (*net.TCPConn, chan error) {
	t.Helper()
	local, server := tcpPair(t)
	done := make(chan error, 1)
	go func() { done <- c.forward(ctx, server, 80, nil, replay{}) }()
	return local, done
}

// TestConnAnswersTheServer: the server's pings are answered, a stream it
// opens is refused, and SETTINGS, WINDOW_UPDATE, a NOOP-like unknown
// frame and the header blocks of replies are skipped without harm.
func TestConnAnswersTheServer(t *testing.T) {
	leakcheck.Check(t)
	c, srv := newFrameServer(t)
	srv.write(&spdy.SettingsFrame{FlagIdValues: []spdy.SettingsFlagIdValue{{Id: spdy.SettingsInitialWindowSize, Value: 1 << 16}}})
	srv.write(&spdy.WindowUpdateFrame{StreamId: 1, DeltaWindowSize: 100})
	srv.write(&spdy.PingFrame{Id: 2})
	if got := srv.next(); got != "ping(2)" {
		t.Fatalf("answer to the server's ping: %s, want ping(2)", got)
	}
	srv.write(&spdy.PingFrame{Id: 0x80000002}) // ping ids have 32 bits
	if got := srv.next(); got != "ping(2147483650)" {
		t.Fatalf("answer to the server's ping: %s, want ping(2147483650)", got)
	}
	srv.write(&spdy.SynStreamFrame{StreamId: 2, Headers: http.Header{"X": {"y"}}})
	if got := srv.next(); got != "rst(2,3)" {
		t.Fatalf("answer to the server's stream: %s, want rst(2,3) (refused)", got)
	}
	// Our own ping gets its pong.
	pong := make(chan error, 1)
	c.wg.Add(1)
	go c.ping(pong)
	if got := srv.next(); got != "ping(1)" {
		t.Fatalf("our ping: %s, want ping(1)", got)
	}
	srv.write(&spdy.PingFrame{Id: 1})
	if err := <-pong; err != nil {
		t.Fatalf("ping: %v", err)
	}
	select {
	case <-c.Done():
		t.Fatalf("connection ended: %v", c.Err())
	default:
	}
	c.Close()
	if got := srv.next(); got != "goaway(0,0)" {
		t.Fatalf("on Close: %s, want goaway(0,0)", got)
	}
}

// TestConnServerPingFlood: a server that keeps pinging while it reads
// nothing of ours cannot make the client queue answers without end: past
// maxPendingAnswers the connection fails, and no
// goroutine is left (one writes the answers, not one per ping).
func TestConnServerPingFlood(t *testing.T) {
	leakcheck.Check(t)
	client, server := tcpPair(t)
	// Small buffers, so that our answers stop being written soon.
	client.SetWriteBuffer(4 << 10)
	server.SetReadBuffer(4 << 10)
	c, err := newConn(client, "default", "web", Options{PingInterval: -1, StreamCreationTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// 4096 pings (even ids: the server's) per write, never reading.
	var burst []byte
	for i := range 4096 {
		burst = append(burst, 0x80, 3, 0, typePing, 0, 0, 0, 4)
		burst = binary.BigEndian.AppendUint32(burst, uint32(2*i+2))
	}
	server.SetWriteDeadline(time.Now().Add(20 * time.Second))
	for {
		if _, err := server.Write(burst); err != nil {
			break // the client closed the connection, or stopped reading
		}
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection still runs after 20 s of pings it could not answer")
	}
	if err := c.Err(); !errors.Is(err, ErrLostConnection) || !strings.Contains(err.Error(), "does not read") {
		t.Fatalf("connection ended with %v, want it lost to the server that does not read", err)
	}
}

// TestConnLargeFrames: DATA frames larger than the kubelet's 32 KiB (up to
// the 16 MiB a header can declare) arrive whole and in order; they are
// read in pooled pieces, so a reader that is slow to take them holds no
// frame-sized allocation.
func TestConnLargeFrames(t *testing.T) {
	leakcheck.Check(t)
	c, srv := newFrameServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	local, done := forwardOn(t, ctx, c)
	for range 3 { // SYN_STREAM error, its FIN, SYN_STREAM data
		srv.next()
	}
	srv.write(&spdy.SynReplyFrame{StreamId: 1, Headers: http.Header{}})
	srv.write(&spdy.SynReplyFrame{StreamId: 3, Headers: http.Header{}})
	sizes := []int{frameBufferSize + 1, 1 << 20, maxFrameLength, 3}
	var want []byte
	for _, size := range sizes {
		b := pattern(size)
		for i := range b {
			b[i] ^= byte(size)
		}
		want = append(want, b...)
	}
	// The local reader compares as it reads, into a buffer of its own, so
	// that the test's allocations stay out of the count below.
	got := make(chan string, 1)
	go func() {
		local.SetDeadline(time.Now().Add(20 * time.Second))
		buf, n := make([]byte, 64<<10), 0
		for {
			m, err := local.Read(buf)
			if m > 0 && (n+m > len(want) || !bytes.Equal(buf[:m], want[n:n+m])) {
				got <- fmt.Sprintf("bytes %d-%d differ from those sent", n, n+m)
				return
			}
			n += m
			if err == io.EOF && n == len(want) {
				got <- ""
				return
			}
			if err != nil {
				got <- fmt.Sprintf("read %d of %d bytes: %v", n, len(want), err)
				return
			}
		}
	}()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	srv.write(&spdy.DataFrame{StreamId: 1, Flags: spdy.DataFlagFin})
	off := 0
	for _, size := range sizes {
		srv.write(&spdy.DataFrame{StreamId: 3, Data: want[off : off+size]})
		off += size
	}
	srv.write(&spdy.DataFrame{StreamId: 3, Flags: spdy.DataFlagFin})
	if msg := <-got; msg != "" {
		t.Fatal(msg)
	}
	runtime.ReadMemStats(&after)
	// A 16 MiB frame read whole would allocate that much at once; read in
	// pooled pieces it allocates well under 1 MiB, about 5 MiB under the
	// race detector (whose sync.Pool drops a quarter of what it is given).
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 12<<20 {
		t.Errorf("receiving %d bytes in large frames allocated %d bytes, want under 12 MiB (a 16 MiB frame read whole)", len(want), alloc)
	}
	if err := waitResult(t, done); err != nil {
		t.Fatalf("forward: %v, want nil", err)
	}
}

// TestConnGoAway: after the server's GOAWAY, a stream it had not taken
// ends as refused (so its pair is retried elsewhere), the connection goes
// stale, and it opens no new streams; the streams it took carry on.
func TestConnGoAway(t *testing.T) {
	leakcheck.Check(t)
	c, srv := newFrameServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	local1, done1 := forwardOn(t, ctx, c)
	for _, want := range []string{"syn_stream(1,streamtype=error,port=80,requestid=0)", `data(1,"",fin=true)`, "syn_stream(3,streamtype=data,port=80,requestid=0)"} {
		if got := srv.next(); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	srv.write(&spdy.SynReplyFrame{StreamId: 1, Headers: http.Header{}})
	srv.write(&spdy.SynReplyFrame{StreamId: 3, Headers: http.Header{}})

	local2, server2 := tcpPair(t)
	defer local2.Close()
	done2 := make(chan error, 1)
	go func() { done2 <- c.forward(ctx, server2, 80, nil, replay{}) }()
	for range 3 { // the second pair's streams 5 and 7
		srv.next()
	}
	srv.write(&spdy.GoAwayFrame{LastGoodStreamId: 3})
	err := <-done2
	if _, ok := errors.AsType[*retryError](err); !ok || !errors.Is(err, ErrProtocol) {
		t.Fatalf("a stream past GOAWAY's last good one: %v, want a retry (ErrProtocol)", err)
	}
	<-c.Stale()
	if err := c.forward(ctx, server2, 80, nil, replay{}); !errors.Is(err, errGoneAway) {
		t.Fatalf("forward after GOAWAY = %v, want errGoneAway", err)
	}

	// The first pair carries on, and ends cleanly.
	srv.write(&spdy.DataFrame{StreamId: 1, Flags: spdy.DataFlagFin})
	srv.write(&spdy.DataFrame{StreamId: 3, Data: []byte("hi"), Flags: spdy.DataFlagFin})
	local1.SetDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 8)
	n, _ := local1.Read(buf)
	if string(buf[:n]) != "hi" {
		t.Fatalf("first pair got %q, want hi", buf[:n])
	}
	local1.CloseWrite()
	if err := waitResult(t, done1); err != nil {
		t.Fatalf("first pair: %v, want nil", err)
	}
}

// TestSharedFrameAdapts: the size of shared frames grows while a frame's
// turn is short, shrinks when it is long, and stays between the bounds.
func TestSharedFrameAdapts(t *testing.T) {
	c := &Conn{}
	c.sharedFrame.Store(minSharedFrame)
	fast, slow := sharedFrameWait/8, 2*sharedFrameWait
	steps := []struct {
		took time.Duration
		want int32
	}{
		{fast, 2 * minSharedFrame},
		{sharedFrameWait / 2, 2 * minSharedFrame}, // neither short nor long: kept
		{fast, maxSharedFrame},                    // 128 KiB less the header: the local read size
		{fast, maxSharedFrame},
		{slow, maxSharedFrame / 2},
		{slow, minSharedFrame},
		{slow, minSharedFrame},
	}
	for i, s := range steps {
		c.adaptSharedFrame(s.took)
		if got := c.sharedFrame.Load(); got != s.want {
			t.Fatalf("step %d (took %v): shared frame %d, want %d", i, s.took, got, s.want)
		}
	}
	c.senders.Store(2)
	if got := c.frameSize(); got != minSharedFrame {
		t.Errorf("frameSize while others send = %d, want %d", got, minSharedFrame)
	}
	c.senders.Store(0)
	if got := c.frameSize(); got != maxSharedFrame {
		t.Errorf("frameSize alone = %d, want %d", got, maxSharedFrame)
	}
}
