package forward

import "encoding/binary"

// SPDY compresses the header blocks of SYN_STREAM, SYN_REPLY and HEADERS
// frames with one zlib stream per direction and connection, primed with a
// dictionary. The receiver only inflates, so any valid zlib stream will
// do: we write our header blocks as stored (uncompressed) deflate blocks,
// which need no tables (Go's flate writer holds about 800 KB of them at
// any level, per connection: spdystream's choice, at BestCompression).
// The server's header blocks we never read: port-forward's SYN_REPLYs
// carry nothing a client needs, so a connection holds no zlib reader
// either (docs/protocol.md §13.5).

// headerBlock returns the plain SPDY/3 header block of the name/value
// pairs in kv: a count of pairs, then each name and value with its
// length, all lengths 32-bit big-endian. Names must be lowercase.
func headerBlock(kv ...string) []byte {
	n := 4
	for _, s := range kv {
		n += 4 + len(s)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, uint32(len(kv)/2))
	for _, s := range kv {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

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

// putLength sets the payload length of the frame header at the start of b.
func putLength(b []byte, n int) {
	b[5], b[6], b[7] = byte(n>>16), byte(n>>8), byte(n)
}
