package protocol

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/internal/testnet"
	"github.com/tunnels-dev/tunnels/kube"
	"github.com/tunnels-dev/tunnels/tests/internal/loadgen"
)

// BenchmarkTable compares three ways to reach the same targets, in the
// same run: directly over loopback, through client-go's port-forward (what
// kubectl uses, the reference) and through tunnels, both clients through
// the kubelet's own server code, over TLS and over plain HTTP. The kubelet
// and the targets run in a child process, so that the CPU time this
// process uses is the clients' and the load generator's; the load
// generator's share is what the direct runs use, and is subtracted.
//
// Memory is not RSS here: the clients share this process with each other
// and the load generator, so the idle case reports the live Go heap and
// stacks after a GC, less what the direct run's connections cost. The
// e2e table (BenchmarkBinaries) runs each client as its own process and
// reports RSS.
//
// The cases, the repetitions, the checks, -short and the environment
// variables that pick clients and cases are package loadgen's (Table.Run,
// Table.Bench, Pick).
func BenchmarkTable(b *testing.B) {
	sz := loadgen.Pick(fullSizes, smokeSizes)
	srv := startBenchKubelet(b)
	clients := []loadgen.Client{
		{Name: "direct", Addrs: srv.Targets},
		{Name: "client-go", Addrs: startClientGo(b, srv.URL, srv.CA)},
		{Name: "tunnels", Addrs: startTunnels(b, srv.URL, srv.CA)},
		{Name: "client-go/plain", Addrs: startClientGo(b, srv.PlainURL, nil)},
		{Name: "tunnels/plain", Addrs: startTunnels(b, srv.PlainURL, nil)},
	}
	settled := runtime.NumGoroutine() // every client started, no connection open
	for i := range clients {
		clients[i].Around = around(sz)
		clients[i].Settle = func() { settle(settled) }
		clients[i].Memory = goMemory
	}
	table := &loadgen.Table{
		Title: "port-forward through the kubelet's server code, over TLS and plain HTTP (\"/plain\");\n" +
			"client CPU and memory less the direct run's (the load generator's); memory is live Go heap + stacks\n" +
			"after GC, not RSS, as the clients share this process (BenchmarkBinaries has RSS); sizes below issue 13's\n" +
			"(1 GiB each way, 10,000 pings, 2,000 connections, 100 x 10 MiB) so that make bench fits in 10 minutes",
		Sizes:   sz,
		Clients: clients,
		Cases:   loadgen.Cases,
		Ratios: []loadgen.Ratio{
			{Name: "/client-go", Num: "tunnels", Den: "client-go"},
			{Name: "/direct", Num: "tunnels", Den: "direct"},
			{Name: "plain/client-go", Num: "tunnels/plain", Den: "client-go/plain"},
		},
		Goals: loadgen.Goals("≥1.0x"),
		Fixup: subtractDirect(sz),
	}
	table.Bench(b, "BENCH_JSON")
}

// fullSizes are below issue 13's (1 GiB each way, 10,000 pings, 2,000
// connections, 100 x 10 MiB): with five clients, five repetitions at its
// sizes take over five minutes on 2 cores, and make bench must stay under
// ten with the e2e table too.
var (
	fullSizes  = loadgen.Sizes{Reps: 5, Transfer: 256 << 20, Pings: 5_000, Conns: 1_000, Parallel: 100, PerStream: 2 << 20, Idle: 1_000}
	smokeSizes = loadgen.Sizes{Reps: 1, Transfer: 16 << 20, Pings: 200, Conns: 100, Parallel: 20, PerStream: 1 << 20, Idle: 100}
)

// serverPID is the child process serving the kubelet and the targets,
// whose CPU time the cases report too: where the server uses more, the
// server is the bound.
var serverPID int

// The child process: the kubelet's server code and the targets.

const benchKubeletEnv = "TUNNELS_PROTOCOL_BENCH_KUBELET"

// benchServer is what the child process reports on its stdout.
type benchServer struct {
	URL      string // over TLS
	PlainURL string // over plain HTTP
	CA       []byte
	Targets  map[int]string
}

// serveBenchKubeletProcess serves the kubelet, over TLS and plain, and the
// targets, prints a benchServer as JSON, and stops when stdin closes.
func serveBenchKubeletProcess() {
	tb := &testnet.ProcessTB{}
	targets := loadgen.Targets(func(handle func(net.Conn)) string {
		return testnet.Serve(tb, func(c *net.TCPConn) { handle(c) })
	})
	routes := map[int32]string{}
	for port, addr := range targets {
		routes[int32(port)] = addr
	}
	k := newKubelet(tb, routes)
	plain := startKubelet(tb, &kubelet{targets: routes, plain: true}, nil)
	if err := json.NewEncoder(os.Stdout).Encode(benchServer{URL: k.srv.URL, PlainURL: plain.srv.URL, CA: k.caPEM(), Targets: targets}); err != nil {
		tb.Fatalf("write the server's address: %v", err)
	}
	io.Copy(io.Discard, os.Stdin)
	tb.Close()
}

func startBenchKubelet(b *testing.B) benchServer {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchKubeletEnv+"=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	serverPID = cmd.Process.Pid
	var srv benchServer
	if err := json.NewDecoder(bufio.NewReader(stdout)).Decode(&srv); err != nil {
		b.Fatalf("read the bench kubelet's address: %v", err)
	}
	return srv
}

// The clients, each forwarding the targets' ports from local listeners.

func startClientGo(b *testing.B, server string, ca []byte) map[int]string {
	cfg := &rest.Config{Host: server, BearerToken: "token", TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
	rt, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(server + "/api/v1/namespaces/default/pods/web/portforward")
	dialer := spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	var specs []string
	for _, p := range loadgen.Ports {
		specs = append(specs, "0:"+strconv.Itoa(p))
	}
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, specs, stop, ready, io.Discard, io.Discard)
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
	addrs := map[int]string{}
	for _, p := range ports {
		addrs[int(p.Remote)] = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Local)))
	}
	return addrs
}

func startTunnels(b *testing.B, server string, ca []byte) map[int]string {
	c, err := kube.NewClient(&kube.RestConfig{Server: server, CAData: ca, BearerToken: "token"}, kube.ClientOptions{})
	if err != nil {
		b.Fatalf("kube.NewClient: %v", err)
	}
	b.Cleanup(c.Close)
	ss := startTrustSession(b, upgrader{c}, forward.Options{}, loadgen.Ports...)
	addrs := map[int]string{}
	for r, p := range ss.ports {
		addrs[r] = p.Listener().Addrs()[0].String()
	}
	return addrs
}

// What each case costs the client and the server.

// around measures, around each case, the CPU time this process and the
// server process use: the client's CPU per GiB moved (the load generator's
// share is subtracted later), per round trip and per connection, and the
// server's.
func around(sz loadgen.Sizes) func(string, loadgen.Sample) func() {
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return func(name string, s loadgen.Sample) func() {
		cpu, scpu, start := cpuTime(), serverCPU(), time.Now()
		return func() {
			dc, ds := cpuTime()-cpu, serverCPU()-scpu
			units := caseUnits(sz, name)
			if units > 0 {
				s[name+rawWall] = time.Since(start).Seconds()
				s[name+rawCPU] = dc.Seconds()
				s[name+rawServerCPU] = ds.Seconds()
			}
			gib := units * 1e6 / (1 << 30) // for the cases that move bytes
			switch name {
			case "down", "up":
				s["cpu"] += dc.Seconds()
				s[name+"/server-cpu-s/GiB"] = ds.Seconds() / gib
			case "parallel-down", "parallel-up":
				s[name+"/server-cpu-s/GiB"] = ds.Seconds() / gib
			case "rtt":
				s["rtt/server-cpu-µs/ping"] = us(ds) / float64(sz.Pings)
				s["rtt/client-cpu-µs/ping"] = us(dc) / float64(sz.Pings)
			case "connect":
				s["connect/server-cpu-µs/conn"] = us(ds) / float64(sz.Conns)
				s["connect/client-cpu-µs/conn"] = us(dc) / float64(sz.Conns)
			}
		}
	}
}

// Raw per-case measurements that subtractDirect turns into the ceiling
// rows and then drops: the case's wall time, and the CPU time this process
// and the server used, in seconds.
const (
	rawWall      = "/raw-wall"
	rawCPU       = "/raw-cpu"
	rawServerCPU = "/raw-server-cpu"
)

// caseUnits is what a case's rate counts: MB moved, or connections made;
// 0 for the cases without a rate.
func caseUnits(sz loadgen.Sizes, name string) float64 {
	switch name {
	case "down", "up":
		return float64(sz.Transfer) / 1e6
	case "parallel-down", "parallel-up":
		return float64(int64(sz.Parallel)*sz.PerStream) / 1e6
	case "connect":
		return float64(sz.Conns)
	}
	return 0
}

// references pairs each tunnels client with the client it is judged
// against, for the ceiling rows.
var references = map[string]string{"tunnels": "client-go", "tunnels/plain": "client-go/plain"}

// ceilings adds, for each rate case of each tunnels client, two rows:
//
//   - busy-%: the CPU both processes used during the case, client, load
//     generator and server together, as a share of every core for the
//     case's wall time. Near 100, the case is bound by the machine's CPU,
//     which the client and the kubelet's code share here.
//   - ceiling-x: the most tunnels could reach against its reference in
//     this repetition if its own CPU cost nothing: the rate at which the
//     cores would be fully used by the server's CPU per unit (as measured
//     in tunnels' run) and the load generator's (the direct run's), over
//     the reference's measured rate. No client can beat it on this
//     machine; where it is below a goal, the goal is out of reach here,
//     whatever the client does. Not for connection setup: one connection
//     after another, it is bound by latency (the cores are only partly
//     busy), and its server-cpu and client-cpu rows tell where that goes.
func ceilings(sz loadgen.Sizes, rep map[string]loadgen.Sample) {
	cores := float64(runtime.NumCPU())
	direct := rep["direct"]
	for name, ref := range references {
		s, r := rep[name], rep[ref]
		if s == nil || r == nil || direct == nil {
			continue
		}
		for _, cs := range loadgen.Cases {
			wall, ok := s[cs+rawWall]
			if !ok || wall == 0 {
				continue
			}
			s[cs+"/busy-%"] = 100 * (s[cs+rawCPU] + s[cs+rawServerCPU]) / (wall * cores)
			if cs == "connect" {
				continue
			}
			perUnit := (s[cs+rawServerCPU] + direct[cs+rawCPU]) / caseUnits(sz, cs)
			if rate := r[cs+"/MB/s"]; perUnit > 0 && rate > 0 {
				s[cs+"/ceiling-x"] = cores / perUnit / rate
			}
		}
	}
	for _, s := range rep {
		for k := range s {
			if strings.HasSuffix(k, rawWall) || strings.HasSuffix(k, rawCPU) || strings.HasSuffix(k, rawServerCPU) {
				delete(s, k)
			}
		}
	}
}

// subtractDirect turns one repetition's raw CPU and memory into the
// clients' own: less what the direct run, the load generator alone, used.
// It adds the ceiling rows first, from the raw measurements.
func subtractDirect(sz loadgen.Sizes) func(map[string]loadgen.Sample) {
	own := func(k string) bool { return strings.Contains(k, "/client-cpu-") || k == "idle/KiB-per-conn" }
	return func(rep map[string]loadgen.Sample) {
		ceilings(sz, rep)
		direct := rep["direct"] // nil, so zeros, when BENCH_CLIENTS leaves it out
		gib := float64(2*sz.Transfer) / (1 << 30)
		for name, s := range rep {
			if cpu, ok := s["cpu"]; ok {
				s["cpu/s-per-GiB"] = (cpu - direct["cpu"]) / gib
			}
			if name != "direct" {
				for k, v := range s {
					if own(k) {
						s[k] = v - direct[k]
					}
				}
			}
		}
		for k := range direct {
			if own(k) {
				direct[k] = 0
			}
		}
		for _, s := range rep {
			delete(s, "cpu")
		}
	}
}

// settle waits, up to 1.5 s, until no more goroutines run than settled,
// the count with no connection open: client-go takes up to a second to
// wind a connection down, and memory it frees while another client is
// measured would count against that one.
func settle(settled int) {
	for deadline := time.Now().Add(1500 * time.Millisecond); runtime.NumGoroutine() > settled && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// goMemory returns the Go heap objects and stacks this process has live
// after a GC: the memory of the clients' connections, which live in this
// process. Heap spans in use would hide new objects in the free slots that
// earlier cases left, hence live bytes. The second GC empties the
// sync.Pools, which the first only moves to their victim caches.
func goMemory() (int64, error) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse), nil
}

// serverCPU returns the CPU time the server process has used, user and
// system, or 0 if it cannot be told.
func serverCPU() time.Duration {
	d, _ := loadgen.ProcCPU(serverPID)
	return d
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
