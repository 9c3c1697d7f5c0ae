package testnet

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
)

// Stream returns n bytes that depend on seed, for a test to send and then
// check exactly (see Checker): a cut, a repeat or a reordering shows.
func Stream(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// Checker reads a connection that carries Stream(seed, size) and checks
// every byte as it arrives.
type Checker struct {
	N int64 // bytes received and checked

	ref       io.Reader
	buf, want []byte
}

// NewChecker returns a Checker for Stream(seed, size).
func NewChecker(seed uint64, size int64) *Checker {
	return &Checker{ref: Stream(seed, size), buf: make([]byte, 64<<10), want: make([]byte, 64<<10)}
}

// Read reads once from c, at most max bytes, and checks what came.
func (k *Checker) Read(c net.Conn, max int64) error {
	n, err := c.Read(k.buf[:min(int64(len(k.buf)), max)])
	if n > 0 {
		m, _ := io.ReadFull(k.ref, k.want[:n])
		if m < n {
			return fmt.Errorf("%d bytes more than the %d sent", n-m, k.N+int64(m))
		}
		if !bytes.Equal(k.buf[:n], k.want[:n]) {
			return fmt.Errorf("the bytes at offset %d differ from what was sent", k.N)
		}
		k.N += int64(n)
	}
	return err
}

// ReadN reads until n bytes in all have arrived.
func (k *Checker) ReadN(c net.Conn, n int64) error {
	for k.N < n {
		if err := k.Read(c, n-k.N); err != nil {
			return err
		}
	}
	return nil
}

// ReadToEnd reads until c ends: nil for a clean EOF, else the error that
// ended it.
func (k *Checker) ReadToEnd(c net.Conn) error {
	for {
		if err := k.Read(c, int64(len(k.buf))); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}
