package testproxy

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
)

// connect reads an HTTP CONNECT request, checks its credentials, answers
// it, and returns its target; "" means the client was refused.
func (p *Proxy) connect(br *bufio.Reader, c net.Conn) string {
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return ""
	}
	if p.opts.User != "" {
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(p.opts.User+":"+p.opts.Password))
		if req.Header.Get("Proxy-Authorization") != want {
			io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
			return ""
		}
	}
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	return req.Host
}

// SOCKS5 authentication methods (RFC 1928).
const (
	socksNoAuth       = 0
	socksUserPassword = 2
	socksNoAcceptable = 0xff
)

// socks5 serves a SOCKS5 handshake up to a CONNECT request and returns its
// target; "" means the client was refused.
func (p *Proxy) socks5(br *bufio.Reader, c net.Conn) string {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != 5 {
		return ""
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return ""
	}
	want := byte(socksNoAuth)
	if p.opts.User != "" {
		want = socksUserPassword
	}
	if !slices.Contains(methods, want) {
		c.Write([]byte{5, socksNoAcceptable})
		return ""
	}
	c.Write([]byte{5, want})
	if want == socksUserPassword {
		var v [2]byte
		io.ReadFull(br, v[:])
		u := make([]byte, v[1])
		io.ReadFull(br, u)
		var pl [1]byte
		io.ReadFull(br, pl[:])
		pw := make([]byte, pl[0])
		io.ReadFull(br, pw)
		if string(u) != p.opts.User || string(pw) != p.opts.Password {
			c.Write([]byte{1, 1})
			return ""
		}
		c.Write([]byte{1, 0})
	}
	var req [4]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[1] != 1 {
		return ""
	}
	var host string
	switch req[3] {
	case 1: // IPv4
		b := make([]byte, 4)
		io.ReadFull(br, b)
		host = net.IP(b).String()
	case 4: // IPv6
		b := make([]byte, 16)
		io.ReadFull(br, b)
		host = net.IP(b).String()
	case 3: // a name
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
