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
