package protocol

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/tunnels-dev/tunnels/internal/testnet"
)

// The benchmarks compare tunnels with client-go's port-forward (what
// kubectl uses) on the same kubelet server code, in the same run, through
// local TCP listeners on both sides, and report both rates and their ratio.

const benchTransfer = 64 << 20

// benchEnv is a kubelet with a source (80), a sink (81) and an echo (82),
// forwarded by both clients.
type benchEnv struct {
	ours, theirs map[int]string // remote port → local address
}

func newBenchEnv(b *testing.B) *benchEnv {
	source := testnet.Serve(b, func(c *net.TCPConn) {
		io.Copy(c, io.LimitReader(zeros{}, benchTransfer))
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	sink := testnet.Serve(b, func(c *net.TCPConn) {
		io.Copy(io.Discard, c)
		c.Write([]byte("k"))
		c.CloseWrite()
	})
	k := newKubelet(b, map[int32]string{80: source, 81: sink, 82: testnet.Echo(b)})
	env := &benchEnv{ours: map[int]string{}, theirs: map[int]string{}}

	// tunnels: one session, a port per remote.
	ss := startSession(b, k, 80, 81, 82)
	for r, p := range ss.ports {
		env.ours[r] = p.Listener().Addrs()[0].String()
	}

	// client-go, as kubectl sets it up.
	cfg := &rest.Config{Host: k.srv.URL, BearerToken: "token", TLSClientConfig: rest.TLSClientConfig{CAData: k.caPEM()}}
	rt, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(k.srv.URL + "/api/v1/namespaces/default/pods/web/portforward")
	dialer := spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:80", "0:81", "0:82"}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	b.Cleanup(func() {
		close(stop)
		<-done
	})
	select {
	case <-ready:
	case err := <-done:
		b.Fatalf("client-go ForwardPorts: %v", err)
	}
	ports, err := fw.GetPorts()
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range ports {
		env.theirs[int(p.Remote)] = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Local)))
	}
	return env
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func down(addr string) error {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	// Up to the last byte, not the end of the connection: the runtime
	// ends the pair a second after the source is done unless the client
	// has half-closed (containerd's grace), which is not throughput.
	n, err := io.CopyN(io.Discard, c, benchTransfer)
	if err != nil {
		err = fmt.Errorf("received %d bytes, want %d: %w", n, benchTransfer, err)
	}
	return err
}

func up(addr string) error {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.Copy(c, io.LimitReader(zeros{}, benchTransfer)); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	ack, err := io.ReadAll(c)
	if err == nil && string(ack) != "k" {
		err = fmt.Errorf("sink answered %q, want k", ack)
	}
	return err
}

// ping opens a connection, echoes one byte and closes.
func ping(addr string) error {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	_, err = io.ReadFull(c, make([]byte, 1))
	return err
}

// compare runs op against both clients each iteration, alternating which
// goes first, and reports each one's rate of unit per second and the ratio.
func compare(b *testing.B, env *benchEnv, port int, op func(string) error, perOp float64, unit string) {
	var ours, theirs time.Duration
	run := func(addr string, total *time.Duration) {
		start := time.Now()
		if err := op(addr); err != nil {
			b.Fatal(err)
		}
		*total += time.Since(start)
	}
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			run(env.ours[port], &ours)
			run(env.theirs[port], &theirs)
		} else {
			run(env.theirs[port], &theirs)
			run(env.ours[port], &ours)
		}
		i++
	}
	oursRate := perOp * float64(i) / ours.Seconds()
	theirRate := perOp * float64(i) / theirs.Seconds()
	b.ReportMetric(oursRate, "tunnels-"+unit)
	b.ReportMetric(theirRate, "client-go-"+unit)
	b.ReportMetric(oursRate/theirRate, "ratio")
}

func BenchmarkDownload(b *testing.B) {
	compare(b, newBenchEnv(b), 80, down, benchTransfer/1e6, "MB/s")
}

func BenchmarkUpload(b *testing.B) {
	compare(b, newBenchEnv(b), 81, up, benchTransfer/1e6, "MB/s")
}

func BenchmarkConnectionSetup(b *testing.B) {
	env := newBenchEnv(b)
	compare(b, env, 82, func(addr string) error {
		for range 100 {
			if err := ping(addr); err != nil {
				return err
			}
		}
		return nil
	}, 100, "conn/s")
}
