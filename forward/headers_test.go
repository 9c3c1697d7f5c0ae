package forward

import (
	"bytes"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/moby/spdystream/spdy"
)

// TestHeaderBlocksRoundTrip: header blocks written by a framer without
// compression through frameWriter's deflater read back with spdystream's
// own (compressing) framer, as the kubelet reads them; and blocks
// compressed by spdystream's framer, as the kubelet writes them, inflate
// through headerReader for a framer without compression. Several frames
// each way, as one zlib stream spans a connection.
func TestHeaderBlocksRoundTrip(t *testing.T) {
	frames := func() []spdy.Frame {
		var out []spdy.Frame
		for i := uint32(1); i <= 7; i += 2 {
			h := http.Header{"Streamtype": {"data"}, "Port": {"80"}, "Requestid": {string(rune('0' + i))}}
			out = append(out, &spdy.SynStreamFrame{StreamId: spdy.StreamId(i), Headers: h})
			out = append(out, &spdy.SynReplyFrame{StreamId: spdy.StreamId(i), Headers: http.Header{"X": {"y"}}})
			out = append(out, &spdy.DataFrame{StreamId: spdy.StreamId(i), Data: []byte("payload")})
		}
		return out
	}

	t.Run("ours to spdystream", func(t *testing.T) {
		var wire bytes.Buffer
		fw := &frameWriter{w: &wire, deflate: &deflater{}}
		w := plainFramer(t, fw, nil)
		for _, f := range frames() {
			if err := w.WriteFrame(f); err != nil {
				t.Fatal(err)
			}
		}
		r, err := spdy.NewFramer(io.Discard, &wire)
		if err != nil {
			t.Fatal(err)
		}
		checkFrames(t, r, frames())
	})

	t.Run("spdystream to ours", func(t *testing.T) {
		var wire bytes.Buffer
		w, err := spdy.NewFramer(&wire, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range frames() {
			if err := w.WriteFrame(f); err != nil {
				t.Fatal(err)
			}
		}
		r := plainFramer(t, io.Discard, &headerReader{src: &wire})
		checkFrames(t, r, frames())
	})
}

// plainFramer returns a spdystream framer with header compression off, as
// plainHeaders leaves a connection's.
func plainFramer(t *testing.T, w io.Writer, r io.Reader) *spdy.Framer {
	t.Helper()
	f, err := spdy.NewFramer(w, r)
	if err != nil {
		t.Fatal(err)
	}
	off := reflect.ValueOf(f).Elem().FieldByName("headerCompressionDisabled")
	if !off.IsValid() {
		t.Fatal("spdystream's Framer has no headerCompressionDisabled field any more")
	}
	setBool(off)
	return f
}

func checkFrames(t *testing.T, r *spdy.Framer, want []spdy.Frame) {
	t.Helper()
	for i, w := range want {
		got, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		var gh, wh http.Header
		switch g := got.(type) {
		case *spdy.SynStreamFrame:
			gh, wh = g.Headers, w.(*spdy.SynStreamFrame).Headers
		case *spdy.SynReplyFrame:
			gh, wh = g.Headers, w.(*spdy.SynReplyFrame).Headers
		case *spdy.DataFrame:
			if wd := w.(*spdy.DataFrame); string(g.Data) != string(wd.Data) {
				t.Errorf("frame %d: data %q, want %q", i, g.Data, wd.Data)
			}
			continue
		}
		if !reflect.DeepEqual(gh, wh) {
			t.Errorf("frame %d: headers %v, want %v", i, gh, wh)
		}
	}
}
