package forward

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/moby/spdystream/spdy"
)

// writeRecorder records every Write call separately.
type writeRecorder struct {
	writes [][]byte
	err    error
}

func (r *writeRecorder) Write(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func testFrames() []spdy.Frame {
	return []spdy.Frame{
		// One header per frame: the framer writes a header map in map
		// order, and the test compares two framers' bytes.
		&spdy.SynStreamFrame{StreamId: 1, Headers: http.Header{"Streamtype": {"error"}}},
		&spdy.DataFrame{StreamId: 1, Flags: spdy.DataFlagFin},
		&spdy.DataFrame{StreamId: 3, Data: bytes.Repeat([]byte("x"), 100)},
		&spdy.DataFrame{StreamId: 3, Data: bytes.Repeat([]byte("y"), 128<<10)},
		&spdy.PingFrame{Id: 1},
		&spdy.RstStreamFrame{StreamId: 3, Status: spdy.Cancel},
		&spdy.SynReplyFrame{StreamId: 2, Headers: http.Header{}},
		&spdy.HeadersFrame{StreamId: 2, Headers: http.Header{"A": {"b"}}},
		&spdy.GoAwayFrame{LastGoodStreamId: 2, Status: spdy.GoAwayOK},
	}
}

func TestFrameWriterWritesEachFrameOnce(t *testing.T) {
	var plain bytes.Buffer
	plainFramer, err := spdy.NewFramer(&plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &writeRecorder{}
	fw := &frameWriter{w: rec}
	framer, err := spdy.NewFramer(fw, nil)
	if err != nil {
		t.Fatal(err)
	}
	frames := testFrames()
	for i, f := range frames {
		if err := plainFramer.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
		if err := framer.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
		if got := len(rec.writes); got != i+1 {
			t.Fatalf("after frame %d (%T): %d writes, want %d", i, f, got, i+1)
		}
	}
	if got := bytes.Join(rec.writes, nil); !bytes.Equal(got, plain.Bytes()) {
		t.Fatalf("coalesced bytes differ from the framer's own output")
	}

	// And the bytes read back as the same frames.
	reader, err := spdy.NewFramer(nil, bytes.NewReader(bytes.Join(rec.writes, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range frames {
		f, err := reader.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if want := frames[i]; typeName(f) != typeName(want) {
			t.Errorf("frame %d is %T, want %T", i, f, want)
		}
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *spdy.SynStreamFrame:
		return "syn_stream"
	case *spdy.SynReplyFrame:
		return "syn_reply"
	case *spdy.DataFrame:
		return "data"
	case *spdy.PingFrame:
		return "ping"
	case *spdy.RstStreamFrame:
		return "rst"
	case *spdy.HeadersFrame:
		return "headers"
	case *spdy.GoAwayFrame:
		return "goaway"
	}
	return "other"
}

func TestFrameWriterAnySplit(t *testing.T) {
	var plain bytes.Buffer
	framer, _ := spdy.NewFramer(&plain, nil)
	for _, f := range testFrames() {
		framer.WriteFrame(f)
	}
	stream := plain.Bytes()
	for _, chunk := range []int{1, 3, 7, 8, 9, 1000, len(stream)} {
		rec := &writeRecorder{}
		fw := &frameWriter{w: rec}
		for rest := stream; len(rest) > 0; {
			n := min(chunk, len(rest))
			if m, err := fw.Write(rest[:n]); m != n || err != nil {
				t.Fatalf("chunk %d: Write = %d, %v", chunk, m, err)
			}
			rest = rest[n:]
		}
		if len(rec.writes) != len(testFrames()) {
			t.Errorf("chunk %d: %d writes, want one per frame (%d)", chunk, len(rec.writes), len(testFrames()))
		}
		if !bytes.Equal(bytes.Join(rec.writes, nil), stream) {
			t.Errorf("chunk %d: bytes differ", chunk)
		}
	}
}

func TestFrameWriterError(t *testing.T) {
	boom := errors.New("boom")
	fw := &frameWriter{w: &writeRecorder{err: boom}}
	framer, _ := spdy.NewFramer(fw, nil)
	if err := framer.WriteFrame(&spdy.DataFrame{StreamId: 1, Data: []byte("x")}); !errors.Is(err, boom) {
		t.Fatalf("WriteFrame = %v, want the writer's error", err)
	}
}

func TestWireConnKeepsBytesBufferedBeforeIt(t *testing.T) {
	// Bytes an upgrader read past the 101 come first from the conn it
	// returns; the wire conn must pass them on and count them.
	a, b := net.Pipe()
	defer a.Close()
	early := []byte("early frame bytes")
	wc := newWireConn(&bufferedConn{Conn: b, r: bufioReaderWith(early, b)})
	go func() {
		a.Write([]byte(" and later"))
		a.Close()
	}()
	got, err := io.ReadAll(wc)
	if err != nil || string(got) != "early frame bytes and later" {
		t.Fatalf("read %q, %v", got, err)
	}
	if n := wc.bytesRead.Load(); n != uint64(len(got)) {
		t.Errorf("bytesRead = %d, want %d", n, len(got))
	}
}

// bufioReaderWith returns a reader that yields prefix, then r.
func bufioReaderWith(prefix []byte, r io.Reader) *bufio.Reader {
	return bufio.NewReader(io.MultiReader(bytes.NewReader(prefix), r))
}

func TestFrameWriterCork(t *testing.T) {
	var plain bytes.Buffer
	plainFramer, _ := spdy.NewFramer(&plain, nil)
	rec := &writeRecorder{}
	fw := &frameWriter{w: rec}
	framer, _ := spdy.NewFramer(fw, nil)
	small := []spdy.Frame{
		&spdy.SynStreamFrame{StreamId: 1, Headers: http.Header{"Streamtype": {"error"}}},
		&spdy.DataFrame{StreamId: 1, Flags: spdy.DataFlagFin},
		&spdy.SynStreamFrame{StreamId: 3, Headers: http.Header{"Streamtype": {"data"}}},
	}
	write := func(f spdy.Frame) {
		t.Helper()
		plainFramer.WriteFrame(f)
		if err := framer.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}

	fw.cork()
	fw.cork() // corks nest
	for _, f := range small {
		write(f)
	}
	if len(rec.writes) != 0 {
		t.Fatalf("%d writes while corked, want 0", len(rec.writes))
	}
	if err := fw.uncork(); err != nil {
		t.Fatal(err)
	}
	// The inner uncork writes what is held: another corker's frames wait
	// only until some uncork, never for every cork to end.
	if len(rec.writes) != 1 {
		t.Fatalf("after the inner uncork: %d writes, want 1", len(rec.writes))
	}
	write(&spdy.PingFrame{Id: 1})
	if err := fw.uncork(); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 2 {
		t.Fatalf("after the outer uncork: %d writes, want 2", len(rec.writes))
	}

	// A frame that would take the held bytes past maxHeld goes out at
	// once, after what was held, in the same write.
	fw.cork()
	write(&spdy.DataFrame{StreamId: 3, Data: []byte("x")})
	write(&spdy.DataFrame{StreamId: 3, Data: bytes.Repeat([]byte("y"), maxHeld)})
	if len(rec.writes) != 3 {
		t.Fatalf("after a frame past maxHeld: %d writes, want 3", len(rec.writes))
	}
	if err := fw.uncork(); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 3 {
		t.Fatalf("uncork with nothing held wrote: %d writes, want 3", len(rec.writes))
	}
	if !bytes.Equal(bytes.Join(rec.writes, nil), plain.Bytes()) {
		t.Fatalf("corked bytes differ from the framer's own output")
	}
}

// batchRecorder is a writeBatcher that records which writes a batch held.
type batchRecorder struct{ batches int }

func (b *batchRecorder) WriteBatch(write func() error) error {
	b.batches++
	return write()
}

func TestFrameWriterBatchesEachWrite(t *testing.T) {
	rec := &writeRecorder{}
	br := &batchRecorder{}
	fw := &frameWriter{w: rec, batch: br}
	framer, _ := spdy.NewFramer(fw, nil)
	for _, f := range testFrames() {
		if err := framer.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if br.batches != len(rec.writes) || br.batches != len(testFrames()) {
		t.Fatalf("%d batches for %d writes of %d frames, want one batch per write and frame", br.batches, len(rec.writes), len(testFrames()))
	}
}

func TestFrameWriterErrorSticks(t *testing.T) {
	boom := errors.New("boom")
	rec := &writeRecorder{}
	fw := &frameWriter{w: rec}
	framer, _ := spdy.NewFramer(fw, nil)
	fw.cork()
	if err := framer.WriteFrame(&spdy.DataFrame{StreamId: 1, Data: []byte("x")}); err != nil {
		t.Fatalf("held WriteFrame = %v, want nil", err)
	}
	rec.err = boom
	if err := fw.uncork(); !errors.Is(err, boom) {
		t.Fatalf("uncork = %v, want the writer's error", err)
	}
	rec.err = nil
	if err := framer.WriteFrame(&spdy.DataFrame{StreamId: 1, Data: []byte("y")}); !errors.Is(err, boom) {
		t.Fatalf("WriteFrame after a failed write = %v, want the first error: the frame stream is broken", err)
	}
}
