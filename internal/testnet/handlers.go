package testnet

import "sync"

// Handlers counts the goroutines that serve a test server's hijacked or
// upgraded connections, which httptest.Server.Close neither closes nor waits
// for, so that the test can wait for them when it ends. The zero value is
// ready to use, and its methods are safe for concurrent use.
//
// A test server's cleanup calls Stop, closes the server and the connections
// (Conns.Close, which also closes those added after it), then Wait.
type Handlers struct {
	mu      sync.Mutex
	stopped bool // guarded by mu; Stop was called
	started int  // guarded by mu
	wg      sync.WaitGroup
}

// Start reports whether one more handler may run. Until Stop it counts the
// handler and returns true, and the caller must call Done when the handler
// returns; after Stop it returns false.
func (h *Handlers) Start() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	// Add happens under mu, and only before Stop: Wait never races with it.
	h.started++
	h.wg.Add(1)
	return true
}

// Done records that a handler Start let run has returned.
func (h *Handlers) Done() { h.wg.Done() }

// Started returns how many handlers Start has let run.
func (h *Handlers) Started() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.started
}

// Stop makes Start refuse any new handler.
func (h *Handlers) Stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
}

// Wait waits until every handler Start let run has called Done. Call it
// after Stop.
func (h *Handlers) Wait() { h.wg.Wait() }
