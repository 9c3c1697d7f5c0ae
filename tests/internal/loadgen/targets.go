// Package loadgen is the load the bench tables put through a port-forward:
// the targets that send, check and echo counted bytes, the client side of
// each case, and the table of medians over repetitions that both tables
// print and write as JSON.
//
// Every target reads an 8-byte size first and closes the connection once
// it has done that much, without waiting for the client's EOF: kwok does
// not pass a client's half-close on to the target and keeps both sides
// open until the target closes (shared/CLUSTER.md), and the kubelet's
// server code does not need the EOF either.
package loadgen

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
)

// Remote ports of the targets, as the bench pods expose them.
const (
	PortSource = 80 // reads an 8-byte size n, sends n bytes of pattern, closes
	PortSink   = 81 // reads an 8-byte size n, checks n bytes of pattern, answers "k", closes
	PortEcho   = 82 // reads an 8-byte size n, echoes n bytes, closes
)

// Ports lists the targets' remote ports.
var Ports = []int{PortSource, PortSink, PortEcho}

// Targets serves each target with serve (testnet.Serve, cluster.Handler)
// and returns their addresses by remote port.
func Targets(serve func(handle func(net.Conn)) string) map[int]string {
	return map[int]string{
		PortSource: serve(Source),
		PortSink:   serve(Sink),
		PortEcho:   serve(Echo),
	}
}

// readSize reads the 8-byte size a client sends first.
func readSize(c net.Conn) (int64, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, err
	}
	return int64(binary.BigEndian.Uint64(hdr[:])), nil
}

func sizeHeader(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

// Source sends the number of bytes of pattern asked for, then closes.
func Source(c net.Conn) {
	defer c.Close()
	n, err := readSize(c)
	if err != nil {
		return
	}
	io.Copy(c, &patternReader{left: n})
}

// Sink checks that it receives the pattern, as many bytes as announced,
// answers "k" or what was wrong, and closes.
func Sink(c net.Conn) {
	defer c.Close()
	n, err := readSize(c)
	if err != nil {
		return
	}
	if err := checkPattern(c, n); err != nil {
		c.Write([]byte(err.Error()))
		return
	}
	c.Write([]byte("k"))
}

// Echo writes back as many bytes as announced, as they come, then closes.
func Echo(c net.Conn) {
	defer c.Close()
	n, err := readSize(c)
	if err != nil {
		return
	}
	io.CopyN(c, c, n)
}

// pattern is what every transfer carries: pseudo-random bytes, repeated.
// Its length is prime, so a chunk lost, repeated or moved does not line up
// with a copy of itself. Copying it is cheaper than generating the bytes,
// which would weigh on the direct runs.
var pattern = func() []byte {
	p := make([]byte, 65521)
	rand.NewChaCha8([32]byte{1}).Read(p)
	return p
}()

// patternReader yields left bytes of pattern.
type patternReader struct{ off, left int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	n := 0
	for n < len(p) {
		n += copy(p[n:], pattern[(r.off+int64(n))%int64(len(pattern)):])
	}
	r.off += int64(n)
	r.left -= int64(n)
	return n, nil
}

// checkPattern reads n bytes from r and checks they are pattern.
func checkPattern(r io.Reader, n int64) error {
	buf := make([]byte, 256<<10)
	var off int64
	for off < n {
		k, err := r.Read(buf[:min(int64(len(buf)), n-off)])
		for i := 0; i < k; {
			at := (off + int64(i)) % int64(len(pattern))
			m := min(k-i, len(pattern)-int(at))
			if string(buf[i:i+m]) != string(pattern[at:int(at)+m]) {
				return fmt.Errorf("bytes differ from what was sent, from offset %d", off+int64(i))
			}
			i += m
		}
		off += int64(k)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("received %d bytes, want %d: %w", off, n, err)
		}
	}
	return nil
}
