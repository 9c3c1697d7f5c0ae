package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// The transport benchmarks compare, through the same real kube-apiserver
// and kwok, in the same run: tunnels over SPDY, tunnels over WebSocket,
// client-go (kubectl's port-forward) over SPDY and client-go over its
// WebSocket tunnel. Each client forwards the pod's ports 80 (a source), 81
// (a sink) and 82 (a one-byte echo) from local listeners.

const transportBenchBytes = 64 << 20

// transportClients maps a client name to its local address per remote port.
type transportClients map[string]map[int]string

var transportClientNames = []string{"tunnels-spdy", "tunnels-websocket", "client-go-spdy", "client-go-websocket"}

// benchPod is the benchmarks' pod and what each client needs to reach it.
type benchPod struct {
	ns  string
	up  forward.Upgrader
	cfg *rest.Config
	u   *url.URL // the pod's portforward URL
}

func newBenchPod(b *testing.B) benchPod {
	c := cluster.Start(b)
	ns := c.Namespace(b)
	// kwok does not pass a half-close on to the target (CLUSTER.md), so
	// each server ends by itself: the source after its bytes, the sink
	// after reading exactly its bytes, the echo after one byte.
	source := cluster.Handler(b, func(conn net.Conn) {
		defer conn.Close()
		io.Copy(conn, io.LimitReader(zeroReader{}, transportBenchBytes))
	})
	sink := cluster.Handler(b, func(conn net.Conn) {
		defer conn.Close()
		if _, err := io.CopyN(io.Discard, conn, transportBenchBytes); err == nil {
			conn.Write([]byte("k"))
		}
	})
	echo := cluster.Handler(b, func(conn net.Conn) {
		defer conn.Close()
		var one [1]byte
		if _, err := io.ReadFull(conn, one[:]); err == nil {
			conn.Write(one[:])
		}
	})
	c.Pod(b, ns, "bench", cluster.PodOptions{
		Ports:   []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 81}, {ContainerPort: 82}},
		Forward: map[int32]string{80: source, 81: sink, 82: echo},
	})
	u, err := url.Parse(fmt.Sprintf("%s/api/v1/namespaces/%s/pods/bench/portforward", c.Server, ns))
	if err != nil {
		b.Fatal(err)
	}
	return benchPod{ns: ns, up: upgrader(kubeClientTB(b, c.AdminKubeconfig)), cfg: c.Rest(), u: u}
}

// clientGoDialer is client-go's dialer for the pod, over WebSocket or SPDY.
func (p benchPod) clientGoDialer(b *testing.B, websocket bool) httpstream.Dialer {
	if websocket {
		d, err := portforward.NewSPDYOverWebsocketDialer(p.u, p.cfg)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	rt, upg, err := spdy.RoundTripperFor(p.cfg)
	if err != nil {
		b.Fatal(err)
	}
	return spdy.NewDialer(upg, &http.Client{Transport: rt}, http.MethodPost, p.u)
}

func newTransportBench(b *testing.B) transportClients {
	p := newBenchPod(b)
	ns, up := p.ns, p.up
	clients := transportClients{}
	for _, tr := range []forward.Transport{forward.TransportSPDY, forward.TransportWebSocket} {
		conn, err := forward.Dial(b.Context(), up, ns, "bench", forward.Options{Transport: tr})
		if err != nil {
			b.Fatalf("dial over %s: %v", tr, err)
		}
		b.Cleanup(func() { conn.Close() })
		m := map[int]string{}
		for _, p := range []int{80, 81, 82} {
			m[p] = serveLocal(b, conn, p)
		}
		clients["tunnels-"+string(tr)] = m
	}

	for _, websocket := range []bool{false, true} {
		dialer := p.clientGoDialer(b, websocket)
		name := "client-go-spdy"
		if websocket {
			name = "client-go-websocket"
		}
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
			b.Fatalf("%s ForwardPorts: %v", name, err)
		}
		ports, err := fw.GetPorts()
		if err != nil {
			b.Fatal(err)
		}
		m := map[int]string{}
		for _, p := range ports {
			m[int(p.Remote)] = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Local)))
		}
		clients[name] = m
	}
	return clients
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// benchDown reads the source's bytes through addr.
func benchDown(addr string) error {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if n, err := io.CopyN(io.Discard, c, transportBenchBytes); err != nil {
		return fmt.Errorf("received %d of %d bytes: %w", n, transportBenchBytes, err)
	}
	return nil
}

// benchUp sends the sink its bytes through addr and waits for its ack.
func benchUp(addr string) error {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.Copy(c, io.LimitReader(zeroReader{}, transportBenchBytes)); err != nil {
		return err
	}
	var ack [1]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 'k' {
		return fmt.Errorf("sink ack %q: %v", ack, err)
	}
	return nil
}

// benchConns opens 100 connections one after another, each echoing a byte.
func benchConns(addr string) error {
	for range 100 {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var one [1]byte
		_, err = c.Write([]byte{1})
		if err == nil {
			_, err = io.ReadFull(c, one[:])
		}
		c.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// compareTransports runs op on every client each iteration, rotating which
// goes first, and reports each one's rate of unit per second, and the
// ratio of tunnels over WebSocket to client-go over WebSocket.
func compareTransports(b *testing.B, clients transportClients, port int, op func(string) error, perOp float64, unit string) {
	total := map[string]time.Duration{}
	i := 0
	for b.Loop() {
		for k := range transportClientNames {
			name := transportClientNames[(i+k)%len(transportClientNames)]
			start := time.Now()
			if err := op(clients[name][port]); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			total[name] += time.Since(start)
		}
		i++
	}
	rate := func(name string) float64 { return perOp * float64(i) / total[name].Seconds() }
	for _, name := range transportClientNames {
		b.ReportMetric(rate(name), name+"-"+unit)
	}
	b.ReportMetric(rate("tunnels-websocket")/rate("client-go-websocket"), "ws-ratio")
	b.ReportMetric(rate("tunnels-websocket")/rate("tunnels-spdy"), "ws/spdy")
}

func BenchmarkTransportDownload(b *testing.B) {
	compareTransports(b, newTransportBench(b), 80, benchDown, transportBenchBytes/1e6, "MB/s")
}

func BenchmarkTransportUpload(b *testing.B) {
	compareTransports(b, newTransportBench(b), 81, benchUp, transportBenchBytes/1e6, "MB/s")
}

func BenchmarkTransportConnectionSetup(b *testing.B) {
	compareTransports(b, newTransportBench(b), 82, benchConns, 100, "conn/s")
}

// BenchmarkTransportDial measures opening a port-forward connection to the
// pod (the HTTP upgrade through the apiserver, TLS included), 20 per
// iteration for each client and transport.
func BenchmarkTransportDial(b *testing.B) {
	p := newBenchPod(b)
	dial := map[string]func() (io.Closer, error){
		"tunnels-spdy": func() (io.Closer, error) {
			return forward.Dial(b.Context(), p.up, p.ns, "bench", forward.Options{Transport: forward.TransportSPDY, PingInterval: -1})
		},
		"tunnels-websocket": func() (io.Closer, error) {
			return forward.Dial(b.Context(), p.up, p.ns, "bench", forward.Options{Transport: forward.TransportWebSocket, PingInterval: -1})
		},
	}
	for _, websocket := range []bool{false, true} {
		d := p.clientGoDialer(b, websocket)
		name := map[bool]string{false: "client-go-spdy", true: "client-go-websocket"}[websocket]
		dial[name] = func() (io.Closer, error) {
			conn, _, err := d.Dial(portforward.PortForwardProtocolV1Name)
			return conn, err
		}
	}
	total := map[string]time.Duration{}
	i := 0
	for b.Loop() {
		for k := range transportClientNames {
			name := transportClientNames[(i+k)%len(transportClientNames)]
			for range 20 {
				start := time.Now()
				c, err := dial[name]()
				total[name] += time.Since(start)
				if err != nil {
					b.Fatalf("%s: %v", name, err)
				}
				c.Close()
			}
		}
		i++
	}
	for _, name := range transportClientNames {
		b.ReportMetric(float64(total[name].Microseconds())/float64(20*i)/1000, name+"-ms/dial")
	}
}
