package kubeconfig

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// testProxy is a loopback HTTP CONNECT (optionally over TLS) or SOCKS5
// proxy that sends every host to 127.0.0.1 and counts its tunnels.
type testProxy struct {
	ln      net.Listener
	tunnels atomic.Int32
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

func startProxy(t *testing.T, socks bool, tlsConf *tls.Config) *testProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	p := &testProxy{ln: ln}
	p.wg.Add(1)
	go p.accept(socks)
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *testProxy) addr() string { return p.ln.Addr().String() }

func (p *testProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *testProxy) accept(socks bool) {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(c)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			br := bufio.NewReader(c)
			var target string
			if socks {
				target = socks5Handshake(br, c)
			} else {
				req, err := http.ReadRequest(br)
				if err != nil || req.Method != http.MethodConnect {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				target = req.Host
			}
			if target == "" {
				return
			}
			_, port, _ := net.SplitHostPort(target)
			up, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
			if err != nil {
				return
			}
			p.track(up)
			defer up.Close()
			p.tunnels.Add(1)
			done := make(chan struct{})
			go func() {
				defer close(done)
				io.Copy(up, br)
				up.Close()
			}()
			io.Copy(c, up)
			c.Close()
			<-done
		}()
	}
}

// socks5Handshake serves a no-auth SOCKS5 CONNECT and returns its target.
func socks5Handshake(br *bufio.Reader, c net.Conn) string {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != 5 {
		return ""
	}
	if _, err := io.CopyN(io.Discard, br, int64(hdr[1])); err != nil {
		return ""
	}
	c.Write([]byte{5, 0})
	var req [4]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[1] != 1 {
		return ""
	}
	var host string
	switch req[3] {
	case 1, 4:
		b := make([]byte, 4)
		if req[3] == 4 {
			b = make([]byte, 16)
		}
		io.ReadFull(br, b)
		host = net.IP(b).String()
	case 3:
		var l [1]byte
		io.ReadFull(br, l[:])
		b := make([]byte, l[0])
		io.ReadFull(br, b)
		host = string(b)
	}
	var port [2]byte
	io.ReadFull(br, port[:])
	c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:]))))
}
