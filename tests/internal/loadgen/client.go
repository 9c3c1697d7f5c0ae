package loadgen

import (
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// dial connects to addr with a deadline of d.
func dial(addr string, d time.Duration) (*net.TCPConn, error) {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(d))
	return c.(*net.TCPConn), nil
}

// open connects to a target at addr, with a deadline of five minutes, and
// sends it the size n.
func open(addr string, n int64) (*net.TCPConn, error) {
	c, err := dial(addr, 5*time.Minute)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(sizeHeader(n)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Download receives n bytes of pattern from the source at addr and checks
// them. It stops at the last byte, not at the end of the connection: a
// runtime may end the pair a second after the source is done (containerd's
// grace), which is not throughput.
func Download(addr string, n int64) error {
	c, err := open(addr, n)
	if err != nil {
		return err
	}
	defer c.Close()
	return checkPattern(c, n)
}

// Upload sends n bytes of pattern to the sink at addr and waits for its
// verdict.
func Upload(addr string, n int64) error {
	c, err := open(addr, n)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := io.Copy(c, &patternReader{left: n}); err != nil {
		return err
	}
	// The kubelet's server code ends a pair a second after the target has
	// closed unless the client has half-closed (containerd's grace).
	c.CloseWrite()
	ack, err := io.ReadAll(c)
	if err == nil && string(ack) != "k" {
		err = fmt.Errorf("sink answered %q, want k", ack)
	}
	return err
}

// PingPong makes n sequential 1-byte round trips on one connection to the
// echo at addr and returns their durations.
func PingPong(addr string, n int) ([]time.Duration, error) {
	c, err := open(addr, int64(n))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	lat := make([]time.Duration, 0, n)
	var out, in [1]byte
	for i := range n {
		out[0] = byte(i)
		start := time.Now()
		if _, err := c.Write(out[:]); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, in[:]); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
		if in != out {
			return nil, fmt.Errorf("round trip %d: echo %d, want %d", i, in[0], out[0])
		}
	}
	return lat, nil
}

// Connect opens n connections to the echo at addr one after the other,
// each echoing one byte and closed, and returns their durations.
func Connect(addr string, n int) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		c, err := dial(addr, 10*time.Second)
		if err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		b := byte(i)
		_, err = c.Write(append(sizeHeader(1), b))
		var got [1]byte
		if err == nil {
			_, err = io.ReadFull(c, got[:])
		}
		c.Close()
		if err == nil && got[0] != b {
			err = fmt.Errorf("echo %d, want %d", got[0], b)
		}
		if err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}

// Parallel runs op on n goroutines at once and returns the first error.
func Parallel(n int, op func() error) error {
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { errs <- op() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// IdleConns are connections to the echo, each proven open by one echoed
// byte and then left idle.
type IdleConns []*net.TCPConn

// idleWorkers is how many idle connections open, or finish, at once: the
// case measures what they cost once open, not how fast they open, and one
// at a time through the apiserver takes seconds per thousand.
const idleWorkers = 16

// OpenIdle opens n connections to the echo at addr, idleWorkers at a time,
// and echoes one byte on each.
func OpenIdle(addr string, n int) (IdleConns, error) {
	cs := make(IdleConns, n)
	err := forEach(n, func(i int) error {
		c, err := dial(addr, 5*time.Minute)
		if err != nil {
			return fmt.Errorf("idle connection %d: %w", i, err)
		}
		cs[i] = c
		return echoByte(c, append(sizeHeader(2), 1), i)
	})
	if err != nil {
		cs.Close()
		return nil, err
	}
	return cs, nil
}

// Finish echoes a second byte on each connection, which proves it still
// works and makes the echo close it, then closes them all.
func (cs IdleConns) Finish() error {
	defer cs.Close()
	return forEach(len(cs), func(i int) error { return echoByte(cs[i], []byte{2}, i) })
}

// echoByte sends msg, whose last byte the echo must send back, on idle
// connection i.
func echoByte(c *net.TCPConn, msg []byte, i int) error {
	_, err := c.Write(msg)
	var got [1]byte
	if err == nil {
		_, err = io.ReadFull(c, got[:])
	}
	if want := msg[len(msg)-1]; err == nil && got[0] != want {
		err = fmt.Errorf("echo %d, want %d", got[0], want)
	}
	if err != nil {
		return fmt.Errorf("idle connection %d: %w", i, err)
	}
	return nil
}

// forEach runs op for 0 to n-1, idleWorkers at a time, and returns the
// first error.
func forEach(n int, op func(i int) error) error {
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range n {
			next <- i
		}
	}()
	return Parallel(idleWorkers, func() error {
		var first error
		for i := range next {
			if first == nil {
				first = op(i)
			}
		}
		return first
	})
}

// Close closes every connection.
func (cs IdleConns) Close() {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// Percentile returns the p-th percentile of ds (which it sorts).
func Percentile(ds []time.Duration, p int) time.Duration {
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)]
}

// Median returns the median of xs, 0 if there are none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}
