package forward

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/spdystream/spdy"
)

// TestHeaderBlocksReadBySpdystream: the header blocks of our SYN_STREAMs,
// written as stored deflate blocks, read back with spdystream's own
// (inflating) framer, as the kubelet reads them. Many frames, as one zlib
// stream spans a connection: their header blocks, of varied sizes, add up
// to more than twice the inflater's 32 KiB window, so that it wraps within
// blocks, as on a long-lived connection.
func TestHeaderBlocksReadBySpdystream(t *testing.T) {
	var wire bytes.Buffer
	fw := newFrameWriter(&wire)
	const n = 600
	for i := range n {
		block := headerBlock(headerStreamType, "data", headerPort, "80", headerRequestID, strconv.Itoa(i), "pad", strings.Repeat("p", i%97))
		if err := fw.synStream(block, func(uint32) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if err := fw.data(uint32(2*i+1), []byte("payload"), false); err != nil {
			t.Fatal(err)
		}
	}
	r, err := spdy.NewFramer(io.Discard, &wire)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		f, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", 2*i, err)
		}
		syn, ok := f.(*spdy.SynStreamFrame)
		if !ok {
			t.Fatalf("frame %d is %s, want a SYN_STREAM", 2*i, frameName(f))
		}
		h := syn.Headers
		got := fmt.Sprintf("%d %s %s %s %d", syn.StreamId, h.Get("streamType"), h.Get("port"), h.Get("requestID"), len(h.Get("pad")))
		if want := fmt.Sprintf("%d data 80 %d %d", 2*i+1, i, i%97); got != want {
			t.Fatalf("frame %d: %s, want %s", 2*i, got, want)
		}
		f, err = r.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", 2*i+1, err)
		}
		if got, want := frameName(f), fmt.Sprintf(`data(%d,"payload",fin=false)`, 2*i+1); got != want {
			t.Fatalf("frame %d: %s, want %s", 2*i+1, got, want)
		}
	}
}
