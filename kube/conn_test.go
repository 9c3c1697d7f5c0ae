package kube

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// countingConn counts the writes that reach the network.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

func TestBatchConnGathersTLSRecords(t *testing.T) {
	// httptest's certificate, for a TLS server on a pipe.
	hs := httptest.NewTLSServer(http.NotFoundHandler())
	hs.Close()
	cert := hs.TLS.Certificates[0]
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	counted := &countingConn{Conn: client}
	bc := &batchConn{Conn: counted}
	tc := tls.Client(bc, &tls.Config{InsecureSkipVerify: true})
	ts := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{cert}})
	deadline := time.Now().Add(10 * time.Second)
	tc.SetDeadline(deadline)
	ts.SetDeadline(deadline)

	// The server reads everything into got.
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(ts)
		got <- b
	}()
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}

	// 128 KiB is at least eight records; in a batch they are one write.
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<10)
	before := counted.count()
	if err := bc.WriteBatch(func() error { _, err := tc.Write(big); return err }); err != nil {
		t.Fatal(err)
	}
	if n := counted.count() - before; n != 1 {
		t.Errorf("a batched 128 KiB write took %d writes, want 1", n)
	}
	// Outside a batch, each record is its own write.
	before = counted.count()
	if _, err := tc.Write(big); err != nil {
		t.Fatal(err)
	}
	if n := counted.count() - before; n < 8 {
		t.Errorf("an unbatched 128 KiB write took %d writes, want one per record (8 or more)", n)
	}
	tc.Close()
	if b := <-got; !bytes.Equal(b, append(bytes.Clone(big), big...)) {
		t.Errorf("the server read %d bytes, want both writes (%d) in order", len(b), 2*len(big))
	}
}
