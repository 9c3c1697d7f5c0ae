package forward

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"unsafe"

	"github.com/moby/spdystream/spdy"
)

// SPDY compresses the header blocks of SYN_STREAM, SYN_REPLY and HEADERS
// frames with one zlib stream per direction and connection. spdystream
// makes that stream's writer at BestCompression on a connection's first
// stream, and Go's flate writer holds about 800 KB of hash tables whatever
// its level: 200 MB for 250 pod connections, for a few hundred bytes of
// headers per local connection. So we turn spdystream's header compression
// off (its framer then reads and writes plain header blocks) and do it on
// the wire instead: outgoing blocks are written as stored (uncompressed)
// deflate blocks, a valid zlib stream that needs no tables, and incoming
// blocks are inflated with a reader of a few tens of KB. The wire format
// does not change (docs/protocol.md §13.5).

// plainHeaders returns a spdystream framer option that turns the framer's
// header compression off, and sets *ok if it could. spdystream (v0.5.1)
// has no option for it, so this sets an unexported field of spdy.Framer
// through reflect; if the field is not there (a later spdystream), it does
// nothing, the framer compresses as before, and the connection must leave
// header blocks alone. TestPlainHeadersStillApplies fails then.
func plainHeaders(ok *bool) spdy.FramerOption {
	return func(f *spdy.Framer) {
		off := reflect.ValueOf(f).Elem().FieldByName("headerCompressionDisabled")
		if !off.IsValid() || off.Kind() != reflect.Bool {
			return
		}
		reflect.NewAt(off.Type(), unsafe.Pointer(off.UnsafeAddr())).Elem().SetBool(true)
		*ok = true
	}
}

// headerOffset returns where the header block of a control frame of type
// typ starts in its payload, or -1 if it has none.
func headerOffset(typ uint16) int {
	switch typ {
	case typeSynStream:
		return 10 // stream id, associated stream id, priority and slot
	case typeSynReply, typeHeaders:
		return 4 // stream id
	}
	return -1
}

// maxHeaderBlock caps a header block inflated from the server.
const maxHeaderBlock = 1 << 20

// deflater writes header blocks as a zlib stream of stored blocks.
type deflater struct{ started bool }

// deflate appends raw to dst as the next part of the stream.
func (d *deflater) deflate(dst, raw []byte) []byte {
	if !d.started {
		// CMF: deflate, 32 KiB window; FLG: no dictionary, check bits.
		dst = append(dst, 0x78, 0x01)
		d.started = true
	}
	for len(raw) > 0 {
		n := min(len(raw), 0xffff)
		dst = storedBlock(dst, n)
		dst = append(dst, raw[:n]...)
		raw = raw[n:]
	}
	// An empty stored block ends each header block, as zlib's sync flush
	// does: Go's inflater hands out a stored block's data only when it
	// reaches the next block, and it must not have to read past the
	// frame to get there.
	return storedBlock(dst, 0)
}

// storedBlock appends the header of a stored block of n bytes: BFINAL 0,
// BTYPE 00, then LEN and its complement.
func storedBlock(dst []byte, n int) []byte {
	return append(dst, 0x00, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
}

// inflater reads the server's header blocks, one zlib stream across the
// frames of a connection, as spdystream's framer does: a LimitedReader
// that each frame points at its block, under one persistent zlib reader.
type inflater struct {
	lr io.LimitedReader
	zr io.ReadCloser
}

// inflate returns the plain header block of one frame's compressed block.
func (in *inflater) inflate(block []byte) ([]byte, error) {
	in.lr.R, in.lr.N = bytes.NewReader(block), int64(len(block))
	if in.zr == nil {
		zr, err := zlib.NewReaderDict(&in.lr, []byte(headerDictionary))
		if err != nil {
			return nil, fmt.Errorf("inflate headers: %w", err)
		}
		in.zr = zr
	}
	raw, err := readHeaderBlock(in.zr)
	if err != nil {
		return nil, fmt.Errorf("inflate headers: %w", err)
	}
	// zlib reads through a 4 KiB bufio.Reader, so this catches only a
	// block far longer than its headers: a few bytes of one block (the
	// end of its sync flush, when the window filled just as its headers
	// ended) may stay in that buffer and be read with the next block, as
	// in spdystream's framer, which is right for one zlib stream.
	if in.lr.N != 0 {
		return nil, errors.New("inflate headers: the block is longer than its headers")
	}
	return raw, nil
}

// readHeaderBlock reads one SPDY/3 header block from r and returns its
// bytes: a count of pairs, then each name and value with its length, all
// lengths 32-bit big-endian.
func readHeaderBlock(r io.Reader) ([]byte, error) {
	var out []byte
	word := func() (int, error) {
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, err
		}
		out = append(out, b[:]...)
		return int(binary.BigEndian.Uint32(b[:])), nil
	}
	pairs, err := word()
	if err != nil {
		return nil, err
	}
	for range pairs {
		for range 2 { // name, value
			n, err := word()
			if err != nil {
				return nil, err
			}
			if n < 0 || len(out)+n > maxHeaderBlock {
				return nil, errors.New("header block too large")
			}
			start := len(out)
			out = append(out, make([]byte, n)...)
			if _, err := io.ReadFull(r, out[start:]); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// putLength sets the payload length of the frame header at the start of b.
func putLength(b []byte, n int) {
	b[5], b[6], b[7] = byte(n>>16), byte(n>>8), byte(n)
}

// headerReader hands spdystream the frames read from src with the header
// blocks of SYN_STREAM, SYN_REPLY and HEADERS frames inflated; other
// frames pass through as they arrive.
type headerReader struct {
	src     io.Reader
	inflate inflater
	pending []byte // the rest of a rewritten frame, or of a frame header
	left    int    // payload bytes of a passed-through frame still to come
}

func (h *headerReader) Read(p []byte) (int, error) {
	if len(h.pending) == 0 && h.left == 0 {
		if err := h.next(); err != nil {
			return 0, err
		}
	}
	if len(h.pending) > 0 {
		n := copy(p, h.pending)
		h.pending = h.pending[n:]
		return n, nil
	}
	n, err := h.src.Read(p[:min(len(p), h.left)])
	h.left -= n
	return n, err
}

// next reads the next frame's header, and the whole frame if it carries
// a header block.
func (h *headerReader) next() error {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(h.src, hdr[:]); err != nil {
		return err
	}
	length := int(binary.BigEndian.Uint32(hdr[4:8]) & 0xffffff)
	off := -1
	if hdr[0]&0x80 != 0 {
		off = headerOffset(binary.BigEndian.Uint16(hdr[2:4]))
	}
	if off < 0 || length < off {
		h.pending, h.left = append(h.pending[:0], hdr[:]...), length
		return nil
	}
	payload := make([]byte, length)
	if _, err := io.ReadFull(h.src, payload); err != nil {
		return err
	}
	raw, err := h.inflate.inflate(payload[off:])
	if err != nil {
		return err
	}
	frame := append(append(append(make([]byte, 0, frameHeaderSize+off+len(raw)), hdr[:]...), payload[:off]...), raw...)
	putLength(frame, off+len(raw))
	h.pending = frame
	return nil
}
