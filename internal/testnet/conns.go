package testnet

import (
	"net"
	"sync"
)

// Conns is a set of open connections that a test closes all at once, as a
// server or node that dies would. The zero value is an empty set, and its
// methods are safe for concurrent use.
type Conns struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu
	closed bool                  // guarded by mu; Close was called
}

// Add puts c in the set. After Close, it closes c at once instead.
func (s *Conns) Add(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
}

// Remove takes c out of the set without closing it.
func (s *Conns) Remove(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// CloseAll closes every connection in the set and empties it. Connections
// added later are kept until the next CloseAll or Close.
func (s *Conns) CloseAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
	clear(s.conns)
}

// Close closes every connection in the set, and makes Add close any
// connection added later: a server that has stopped accepts nothing more.
func (s *Conns) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.CloseAll()
}
