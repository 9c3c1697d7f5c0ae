package forward

import (
	"bytes"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/spdystream/spdy"

	"github.com/tunnels-dev/tunnels/internal/testnet"
)

// TestHeaderBlocksRoundTrip: header blocks written by a framer without
// compression through frameWriter's deflater read back with spdystream's
// own (compressing) framer, as the kubelet reads them; and blocks
// compressed by spdystream's framer, as the kubelet writes them, inflate
// through headerReader for a framer without compression. Many frames each
// way, as one zlib stream spans a connection: their header blocks, of
// varied sizes, add up to more than twice the inflater's 32 KiB window, so
// that it wraps within blocks, as on a long-lived connection.
func TestHeaderBlocksRoundTrip(t *testing.T) {
	frames := func() []spdy.Frame {
		var out []spdy.Frame
		for i := range 600 {
			id := spdy.StreamId(2*i + 1)
			h := http.Header{"Streamtype": {"data"}, "Port": {"80"}, "Requestid": {strconv.Itoa(i)}, "Pad": {strings.Repeat("p", i%97)}}
			out = append(out, &spdy.SynStreamFrame{StreamId: id, Headers: h})
			out = append(out, &spdy.SynReplyFrame{StreamId: id, Headers: http.Header{"X": {strings.Repeat("y", i%13)}}})
			out = append(out, &spdy.DataFrame{StreamId: id, Data: []byte("payload")})
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
	ok := false
	f, err := spdy.NewFramerWithOptions(w, r, plainHeaders(&ok))
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("plainHeaders could not turn off spdystream's header compression")
	}
	return f
}

// TestPlainHeadersStillApplies fails if spdystream's Framer loses the
// field plainHeaders sets, or if a pod connection stops using it: each
// connection would then hold spdystream's 800 KB zlib writer again (the
// scale benchmark's RSS goes from about 70 MB to over 200 MB).
func TestPlainHeadersStillApplies(t *testing.T) {
	ok := false
	if _, err := spdy.NewFramerWithOptions(io.Discard, nil, plainHeaders(&ok)); err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("spdystream's Framer has no headerCompressionDisabled field any more; see headers.go")
	}

	k := newFakeKubelet(t, map[int]string{80: testnet.Echo(t)})
	c, err := Dial(t.Context(), k.upgrader(), "default", "web", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.wire.w.deflate == nil || c.wire.hr.src == nil {
		t.Error("a pod connection leaves header compression to spdystream's framer")
	}
	// And the connection works: a stream's headers reach the kubelet,
	// which pairs the streams by them, and its replies are read.
	client, server := tcpPair(t)
	done := make(chan error, 1)
	go func() { done <- c.Forward(t.Context(), server, 80) }()
	client.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	client.CloseWrite()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "ping" {
		t.Errorf("echo: got %q, %v; want %q", got, err, "ping")
	}
	if err := <-done; err != nil {
		t.Errorf("Forward: %v", err)
	}
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
