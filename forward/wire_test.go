package forward

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
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

// writeTestFrames writes one frame of each kind we send, each with its
// own call, and returns how spdystream's framer (the kubelet's) should
// read them, as frameName does.
func writeTestFrames(t *testing.T, fw *frameWriter) []string {
	t.Helper()
	big := bytes.Repeat([]byte("y"), 128<<10)
	for _, err := range []error{
		fw.synStream(headerBlock(headerStreamType, "error", headerPort, "80", headerRequestID, "0"), func(uint32) error { return nil }),
		fw.data(1, nil, true),
		fw.synStream(headerBlock(headerStreamType, "data", headerPort, "80", headerRequestID, "0"), func(uint32) error { return nil }),
		fw.data(3, []byte("hello"), false),
		fw.data(3, big, false),
		fw.ping(1),
		fw.rst(3, statusCancel),
		fw.goAway(0, 0),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return []string{
		"syn_stream(1,streamtype=error,port=80,requestid=0)",
		`data(1,"",fin=true)`,
		"syn_stream(3,streamtype=data,port=80,requestid=0)",
		`data(3,"hello",fin=false)`,
		fmt.Sprintf("data(3,%d bytes,fin=false)", len(big)),
		"ping(1)",
		"rst(3,5)",
		"goaway(0,0)",
	}
}

// readFrames reads frames with spdystream's framer, which inflates header
// blocks as the kubelet does, and names them with frameName.
func readFrames(t *testing.T, wire []byte) []string {
	t.Helper()
	framer, err := spdy.NewFramer(io.Discard, bytes.NewReader(wire))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		f, err := framer.ReadFrame()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, frameName(f))
	}
}

// frameName names a frame with what the tests check of it.
func frameName(f spdy.Frame) string {
	switch f := f.(type) {
	case *spdy.SynStreamFrame:
		h := f.Headers
		return fmt.Sprintf("syn_stream(%d,streamtype=%s,port=%s,requestid=%s)", f.StreamId, h.Get("streamType"), h.Get("port"), h.Get("requestID"))
	case *spdy.SynReplyFrame:
		return fmt.Sprintf("syn_reply(%d)", f.StreamId)
	case *spdy.DataFrame:
		if len(f.Data) > 64 {
			return fmt.Sprintf("data(%d,%d bytes,fin=%v)", f.StreamId, len(f.Data), f.Flags&spdy.DataFlagFin != 0)
		}
		return fmt.Sprintf("data(%d,%q,fin=%v)", f.StreamId, f.Data, f.Flags&spdy.DataFlagFin != 0)
	case *spdy.PingFrame:
		return fmt.Sprintf("ping(%d)", f.Id)
	case *spdy.RstStreamFrame:
		return fmt.Sprintf("rst(%d,%d)", f.StreamId, f.Status)
	case *spdy.GoAwayFrame:
		return fmt.Sprintf("goaway(%d,%d)", f.LastGoodStreamId, f.Status)
	case *spdy.HeadersFrame:
		return fmt.Sprintf("headers(%d)", f.StreamId)
	}
	return fmt.Sprintf("%T", f)
}

// TestFrameWriterWritesEachFrameOnce: each frame leaves in one write, and
// the kubelet's framer reads back what was meant, headers included.
func TestFrameWriterWritesEachFrameOnce(t *testing.T) {
	rec := &writeRecorder{}
	fw := newFrameWriter(rec)
	want := writeTestFrames(t, fw)
	if len(rec.writes) != len(want) {
		t.Fatalf("%d writes for %d frames, want one each", len(rec.writes), len(want))
	}
	if got := readFrames(t, bytes.Join(rec.writes, nil)); !slices.Equal(got, want) {
		t.Fatalf("read back\n%v\nwant\n%v", got, want)
	}
}

func TestFrameWriterError(t *testing.T) {
	boom := errors.New("boom")
	fw := newFrameWriter(&writeRecorder{err: boom})
	if err := fw.data(1, []byte("x"), false); !errors.Is(err, boom) {
		t.Fatalf("data = %v, want the writer's error", err)
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
	got, err := io.ReadAll(wc.r)
	if err != nil || string(got) != "early frame bytes and later" {
		t.Fatalf("read %q, %v", got, err)
	}
	if n := wc.bytesRead.Load(); n != uint64(len(got)) {
		t.Errorf("bytesRead = %d, want %d", n, len(got))
	}
	if err := wc.lastReadErr(); err != io.EOF {
		t.Errorf("lastReadErr = %v, want EOF", err)
	}
}

// bufioReaderWith returns a reader that yields prefix, then r.
func bufioReaderWith(prefix []byte, r io.Reader) *bufio.Reader {
	return bufio.NewReader(io.MultiReader(bytes.NewReader(prefix), r))
}

func TestFrameWriterCork(t *testing.T) {
	rec := &writeRecorder{}
	fw := newFrameWriter(rec)
	var want []string
	syn := func(typ string) {
		t.Helper()
		if err := fw.synStream(headerBlock(headerStreamType, typ, headerPort, "80", headerRequestID, "0"), func(uint32) error { return nil }); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("syn_stream(%d,streamtype=%s,port=80,requestid=0)", fw.lastID, typ))
	}
	data := func(id uint32, b []byte, fin bool) {
		t.Helper()
		if err := fw.data(id, b, fin); err != nil {
			t.Fatal(err)
		}
		if len(b) > 64 {
			want = append(want, fmt.Sprintf("data(%d,%d bytes,fin=%v)", id, len(b), fin))
		} else {
			want = append(want, fmt.Sprintf("data(%d,%q,fin=%v)", id, b, fin))
		}
	}

	fw.cork()
	fw.cork() // corks nest
	syn("error")
	data(1, nil, true)
	syn("data")
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
	if err := fw.ping(1); err != nil {
		t.Fatal(err)
	}
	want = append(want, "ping(1)")
	if err := fw.uncork(); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 2 {
		t.Fatalf("after the outer uncork: %d writes, want 2", len(rec.writes))
	}

	// A frame that would take the held bytes past maxHeld goes out at
	// once, after what was held, in the same write.
	fw.cork()
	data(3, []byte("x"), false)
	data(3, bytes.Repeat([]byte("y"), maxHeld), false)
	if len(rec.writes) != 3 {
		t.Fatalf("after a frame past maxHeld: %d writes, want 3", len(rec.writes))
	}
	if err := fw.uncork(); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 3 {
		t.Fatalf("uncork with nothing held wrote: %d writes, want 3", len(rec.writes))
	}
	if got := readFrames(t, bytes.Join(rec.writes, nil)); !slices.Equal(got, want) {
		t.Fatalf("corked frames read back\n%v\nwant\n%v", got, want)
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
	fw := func() *frameWriter { f := newFrameWriter(rec); f.batch = br; return f }()
	want := writeTestFrames(t, fw)
	if br.batches != len(rec.writes) || br.batches != len(want) {
		t.Fatalf("%d batches for %d writes of %d frames, want one batch per write and frame", br.batches, len(rec.writes), len(want))
	}
}

func TestFrameWriterErrorSticks(t *testing.T) {
	boom := errors.New("boom")
	rec := &writeRecorder{}
	fw := newFrameWriter(rec)
	fw.cork()
	if err := fw.data(1, []byte("x"), false); err != nil {
		t.Fatalf("held data = %v, want nil", err)
	}
	rec.err = boom
	if err := fw.uncork(); !errors.Is(err, boom) {
		t.Fatalf("uncork = %v, want the writer's error", err)
	}
	rec.err = nil
	if err := fw.data(1, []byte("y"), false); !errors.Is(err, boom) {
		t.Fatalf("data after a failed write = %v, want the first error: the frame stream is broken", err)
	}
	if err := fw.synStream(headerBlock(), func(uint32) error { return nil }); !errors.Is(err, boom) {
		t.Fatalf("synStream after a failed write = %v, want the first error", err)
	}
}

// TestFrameWriterStreamIDs: streams are odd and increasing, and the id
// goes to opened before the frame is written; a failed opened sends
// nothing and uses no id.
func TestFrameWriterStreamIDs(t *testing.T) {
	rec := &writeRecorder{}
	fw := newFrameWriter(rec)
	var ids []uint32
	open := func(id uint32) error {
		if len(rec.writes) != len(ids) {
			t.Errorf("stream %d: opened called after its frame was written", id)
		}
		ids = append(ids, id)
		return nil
	}
	for range 3 {
		if err := fw.synStream(headerBlock(), open); err != nil {
			t.Fatal(err)
		}
	}
	refuse := errors.New("no")
	if err := fw.synStream(headerBlock(), func(uint32) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("synStream = %v, want opened's error", err)
	}
	if err := fw.synStream(headerBlock(), open); err != nil {
		t.Fatal(err)
	}
	if want := []uint32{1, 3, 5, 7}; !slices.Equal(ids, want) || len(rec.writes) != len(want) {
		t.Fatalf("ids %v in %d writes, want %v in %d", ids, len(rec.writes), want, len(want))
	}
	fw.lastID = maxStreamID
	if err := fw.synStream(headerBlock(), open); !errors.Is(err, errStreamIDs) {
		t.Fatalf("synStream past the last id = %v, want errStreamIDs", err)
	}
}

// TestFrameWriterDataInPlace: a frame built behind header room reads back
// as the DATA frame meant, alone or held by a cork with others.
func TestFrameWriterDataInPlace(t *testing.T) {
	rec := &writeRecorder{}
	fw := newFrameWriter(rec)
	frame := append(make([]byte, frameHeaderSize), "hello"...)
	if err := fw.dataInPlace(3, frame); err != nil {
		t.Fatal(err)
	}
	fw.cork()
	if err := fw.ping(1); err != nil {
		t.Fatal(err)
	}
	if err := fw.dataInPlace(5, append(make([]byte, frameHeaderSize), "world"...)); err != nil {
		t.Fatal(err)
	}
	if err := fw.uncork(); err != nil {
		t.Fatal(err)
	}
	want := []string{`data(3,"hello",fin=false)`, "ping(1)", `data(5,"world",fin=false)`}
	if got := readFrames(t, bytes.Join(rec.writes, nil)); !slices.Equal(got, want) || len(rec.writes) != 2 {
		t.Fatalf("read back %v in %d writes, want %v in 2", got, len(rec.writes), want)
	}
}
