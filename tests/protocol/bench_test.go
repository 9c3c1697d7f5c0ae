package protocol

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/tunnels-dev/tunnels/forward"
	"github.com/tunnels-dev/tunnels/internal/testnet"
	"github.com/tunnels-dev/tunnels/kube"
)

// BenchmarkTable compares three ways to reach the same targets, in the
// same run: directly over loopback, through client-go's port-forward (what
// kubectl uses, the reference) and through tunnels, both clients through
// the kubelet's own server code over TLS. The kubelet and the targets run
// in a child process, so that the CPU time this process uses is the
// client's and the load generator's; the load generator's share is what
// the direct runs use, and is subtracted.
//
// Each repetition runs every case for every client, rotating which client
// goes first; the table shows medians over the repetitions. Every case
// checks its bytes. With -short (make bench BENCH_SMOKE=1) the sizes are
// small and there is one repetition, so that the benchmark only proves it
// still runs. The table is printed, and written as JSON to $BENCH_JSON if
// set. For profiling, BENCH_CLIENTS and BENCH_CASES (comma-separated
// names) run only some clients and cases, and BENCH_REPS sets the
// number of repetitions.
func BenchmarkTable(b *testing.B) {
	sz := fullSizes
	if testing.Short() {
		sz = smokeSizes
	}
	srv := startBenchKubelet(b)
	clients := []benchClient{
		{name: "direct", addrs: srv.Targets},
		{name: "client-go", addrs: startClientGo(b, srv)},
		{name: "tunnels", addrs: startTunnels(b, srv)},
	}
	if n, err := strconv.Atoi(os.Getenv("BENCH_REPS")); err == nil && n > 0 {
		sz.reps = n
	}
	if only := os.Getenv("BENCH_CLIENTS"); only != "" {
		clients = slices.DeleteFunc(clients, func(c benchClient) bool { return !slices.Contains(strings.Split(only, ","), c.name) })
	}
	cases := benchCases
	if only := os.Getenv("BENCH_CASES"); only != "" {
		cases = strings.Split(only, ",")
	}
	for b.Loop() {
		res := runTable(b, sz, clients, cases)
		res.print(os.Stdout)
		if path := os.Getenv("BENCH_JSON"); path != "" {
			if err := res.writeJSON(path); err != nil {
				b.Fatal(err)
			}
		}
		for _, r := range res.Rows {
			if r.Metric == "" {
				continue
			}
			if v, ok := r.Ratio["client-go"]; ok {
				b.ReportMetric(v, r.Case+"-"+r.Metric+"-ratio")
			}
		}
	}
}

// benchSizes are the sizes of the cases.
type benchSizes struct {
	reps      int
	transfer  int64 // bytes each way, one connection
	pings     int   // sequential 1-byte round trips on one connection
	conns     int   // sequential new connections
	parallel  int   // concurrent connections
	perStream int64 // bytes each way per concurrent connection
}

var (
	fullSizes  = benchSizes{reps: 5, transfer: 1 << 30, pings: 10_000, conns: 2_000, parallel: 100, perStream: 10 << 20}
	smokeSizes = benchSizes{reps: 1, transfer: 16 << 20, pings: 200, conns: 100, parallel: 20, perStream: 1 << 20}
)

// Remote ports of the bench targets.
const (
	portSource = 80 // reads an 8-byte size n, sends n bytes of pattern
	portSink   = 81 // reads an 8-byte size n, checks n bytes of pattern then EOF, answers "k"
	portEcho   = 82
)

type benchClient struct {
	name  string
	addrs map[int]string // remote port → address to dial
}

// serverPID is the child process serving the kubelet and the targets,
// whose CPU time the cases report too: where the server uses more, the
// server is the bound.
var serverPID int

// The child process: the kubelet's server code and the targets.

const benchKubeletEnv = "TUNNELS_PROTOCOL_BENCH_KUBELET"

// benchServer is what the child process reports on its stdout.
type benchServer struct {
	URL     string
	CA      []byte
	Targets map[int]string
}

// serveBenchKubeletProcess serves the kubelet and the targets, prints a
// benchServer as JSON, and stops when stdin closes.
func serveBenchKubeletProcess() {
	tb := &testnet.ProcessTB{}
	targets := map[int]string{
		portSource: testnet.Serve(tb, serveSource),
		portSink:   testnet.Serve(tb, serveSink),
		portEcho:   testnet.Echo(tb),
	}
	k := newKubelet(tb, map[int32]string{portSource: targets[portSource], portSink: targets[portSink], portEcho: targets[portEcho]})
	if err := json.NewEncoder(os.Stdout).Encode(benchServer{URL: k.srv.URL, CA: k.caPEM(), Targets: targets}); err != nil {
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

// serveSource sends the number of bytes of pattern asked for.
func serveSource(c *net.TCPConn) {
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	io.Copy(c, &patternReader{left: int64(binary.BigEndian.Uint64(hdr[:]))})
	c.CloseWrite()
	io.Copy(io.Discard, c)
}

// serveSink checks that it receives the pattern, as many bytes as
// announced and then EOF, and answers "k" or what was wrong.
func serveSink(c *net.TCPConn) {
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	err := checkPattern(c, int64(binary.BigEndian.Uint64(hdr[:])))
	if err == nil {
		var one [1]byte
		if n, _ := c.Read(one[:]); n > 0 {
			err = errors.New("more bytes than announced")
		}
	}
	if err != nil {
		c.Write([]byte(err.Error()))
	} else {
		c.Write([]byte("k"))
	}
	c.CloseWrite()
}

// pattern is what every transfer carries: pseudo-random bytes, repeated.
// Its length is prime, so a chunk lost, repeated or moved does not line up
// with a copy of itself.
var pattern = func() []byte {
	p := make([]byte, 65521)
	rand.NewChaCha8([32]byte{1}).Read(p)
	return p
}()

// patternReader yields left bytes of pattern.
type patternReader struct{ off, left int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	n := 0
	for n < len(p) {
		n += copy(p[n:], pattern[(r.off+int64(n))%int64(len(pattern)):])
	}
	r.off += int64(n)
	r.left -= int64(n)
	return n, nil
}

// checkPattern reads n bytes from r and checks they are pattern.
func checkPattern(r io.Reader, n int64) error {
	buf := make([]byte, 256<<10)
	var off int64
	for off < n {
		k, err := r.Read(buf[:min(int64(len(buf)), n-off)])
		for i := 0; i < k; {
			at := (off + int64(i)) % int64(len(pattern))
			m := min(k-i, len(pattern)-int(at))
			if string(buf[i:i+m]) != string(pattern[at:int(at)+m]) {
				return fmt.Errorf("bytes differ from what was sent, from offset %d", off+int64(i))
			}
			i += m
		}
		off += int64(k)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("received %d bytes, want %d: %w", off, n, err)
		}
	}
	return nil
}

// The clients.

func startClientGo(b *testing.B, srv benchServer) map[int]string {
	cfg := &rest.Config{Host: srv.URL, BearerToken: "token", TLSClientConfig: rest.TLSClientConfig{CAData: srv.CA}}
	rt, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(srv.URL + "/api/v1/namespaces/default/pods/web/portforward")
	dialer := spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	specs := []string{"0:" + strconv.Itoa(portSource), "0:" + strconv.Itoa(portSink), "0:" + strconv.Itoa(portEcho)}
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

func startTunnels(b *testing.B, srv benchServer) map[int]string {
	c, err := kube.NewClient(&kube.RestConfig{Server: srv.URL, CAData: srv.CA, BearerToken: "token"}, kube.ClientOptions{})
	if err != nil {
		b.Fatalf("kube.NewClient: %v", err)
	}
	b.Cleanup(c.Close)
	ss := startTrustSession(b, upgrader{c}, forward.Options{}, portSource, portSink, portEcho)
	addrs := map[int]string{}
	for r, p := range ss.ports {
		addrs[r] = p.Listener().Addrs()[0].String()
	}
	return addrs
}

// The cases.

// benchDial connects to addr with a deadline of d.
func benchDial(addr string, d time.Duration) (*net.TCPConn, error) {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(d))
	return c.(*net.TCPConn), nil
}

func sizeHeader(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

// download receives n bytes of pattern from the source. It stops at the
// last byte, not at the end of the connection: the runtime ends the pair a
// second after the source is done unless the client has half-closed
// (containerd's grace), which is not throughput.
func download(addr string, n int64) error {
	c, err := benchDial(addr, 5*time.Minute)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(sizeHeader(n)); err != nil {
		return err
	}
	return checkPattern(c, n)
}

// upload sends n bytes of pattern to the sink and waits for its verdict.
func upload(addr string, n int64) error {
	c, err := benchDial(addr, 5*time.Minute)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(sizeHeader(n)); err != nil {
		return err
	}
	if _, err := io.Copy(c, &patternReader{left: n}); err != nil {
		return err
	}
	c.CloseWrite()
	ack, err := io.ReadAll(c)
	if err == nil && string(ack) != "k" {
		err = fmt.Errorf("sink answered %q, want k", ack)
	}
	return err
}

// pingPong makes n sequential 1-byte round trips on one connection and
// returns their durations.
func pingPong(addr string, n int) ([]time.Duration, error) {
	c, err := benchDial(addr, 5*time.Minute)
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

// connect opens n connections one after the other, each echoing one byte
// and closed, and returns their durations.
func connect(addr string, n int) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		c, err := benchDial(addr, 10*time.Second)
		if err != nil {
			return nil, err
		}
		b := [1]byte{byte(i)}
		_, err = c.Write(b[:])
		var got [1]byte
		if err == nil {
			_, err = io.ReadFull(c, got[:])
		}
		c.Close()
		if err == nil && got != b {
			err = fmt.Errorf("echo %d, want %d", got[0], b[0])
		}
		if err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}

// parallel runs op on n connections at once and returns the first error.
func parallel(n int, op func() error) error {
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

// serverCPU returns the CPU time the server process has used, user and
// system, at the kernel's clock-tick resolution (10 ms), or 0 if it cannot
// be told.
func serverCPU() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", serverPID))
	if err != nil {
		return 0
	}
	// Fields after the command, which is in parentheses: utime and stime
	// are fields 14 and 15 of the line, 12 and 13 after the ")".
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sample is one repetition's measurements for one client, by metric key.
type sample map[string]float64

// runCase runs one case against one client and records its metrics in s.
func runCase(b *testing.B, sz benchSizes, name string, addrs map[int]string, s sample) {
	mb := func(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	fail := func(err error) { b.Fatalf("%s: %v", name, err) }
	switch name {
	case "down", "up":
		op, port := download, portSource
		if name == "up" {
			op, port = upload, portSink
		}
		cpu, scpu, start := cpuTime(), serverCPU(), time.Now()
		if err := op(addrs[port], sz.transfer); err != nil {
			fail(err)
		}
		s[name+"/MB/s"] = mb(sz.transfer, time.Since(start))
		s["cpu"] += (cpuTime() - cpu).Seconds()
		s[name+"/server-cpu-s/GiB"] = (serverCPU() - scpu).Seconds() / (float64(sz.transfer) / (1 << 30))
	case "rtt":
		cpu, scpu := cpuTime(), serverCPU()
		lat, err := pingPong(addrs[portEcho], sz.pings)
		if err != nil {
			fail(err)
		}
		s["rtt/server-cpu-µs/ping"] = us(serverCPU()-scpu) / float64(sz.pings)
		s["rtt/client-cpu-µs/ping"] = us(cpuTime()-cpu) / float64(sz.pings)
		s["rtt/p50-µs"], s["rtt/p99-µs"] = us(percentile(lat, 50)), us(percentile(lat, 99))
	case "connect":
		cpu, scpu, start := cpuTime(), serverCPU(), time.Now()
		lat, err := connect(addrs[portEcho], sz.conns)
		if err != nil {
			fail(err)
		}
		s["connect/server-cpu-µs/conn"] = us(serverCPU()-scpu) / float64(sz.conns)
		s["connect/client-cpu-µs/conn"] = us(cpuTime()-cpu) / float64(sz.conns)
		s["connect/conn/s"] = float64(sz.conns) / time.Since(start).Seconds()
		s["connect/p50-µs"], s["connect/p99-µs"] = us(percentile(lat, 50)), us(percentile(lat, 99))
	case "parallel-down", "parallel-up":
		op, port := download, portSource
		if name == "parallel-up" {
			op, port = upload, portSink
		}
		start := time.Now()
		if err := parallel(sz.parallel, func() error { return op(addrs[port], sz.perStream) }); err != nil {
			fail(err)
		}
		s[name+"/MB/s"] = mb(int64(sz.parallel)*sz.perStream, time.Since(start))
	}
}

var benchCases = []string{"down", "up", "rtt", "connect", "parallel-down", "parallel-up"}

// percentile returns the p-th percentile of ds (which it sorts).
func percentile(ds []time.Duration, p int) time.Duration {
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)]
}

func median(xs []float64) float64 {
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

// benchResult is the table, as printed and written as JSON.
type benchResult struct {
	Reps    int        `json:"reps"`
	Sizes   string     `json:"sizes"`
	Clients []string   `json:"clients"`
	Rows    []benchRow `json:"rows"`
}

// benchRow is one metric of one case: the median per client and the
// ratios of tunnels to the others (above 1 is better for rates, below 1
// for latencies and CPU).
type benchRow struct {
	Case    string               `json:"case"`
	Metric  string               `json:"metric"`
	Median  map[string]float64   `json:"median"`
	Samples map[string][]float64 `json:"samples"`
	Ratio   map[string]float64   `json:"tunnels_over"`
	Goal    string               `json:"goal,omitempty"`
}

var benchGoals = map[string]string{
	"down/MB/s":          "≥1.0x",
	"up/MB/s":            "≥1.5x",
	"rtt/p50-µs":         "≤0.7x",
	"connect/conn/s":     "≥2x",
	"parallel-down/MB/s": "≥1.5x",
	"parallel-up/MB/s":   "≥1.5x",
	"cpu/s-per-GiB":      "≤0.6x",
}

// runTable runs sz.reps repetitions of every case on every client.
func runTable(b *testing.B, sz benchSizes, clients []benchClient, cases []string) *benchResult {
	samples := map[string][]sample{}
	for rep := range sz.reps {
		got := map[string]sample{}
		for _, c := range clients {
			got[c.name] = sample{}
		}
		for ci, name := range cases {
			for j := range clients {
				c := clients[(rep+ci+j)%len(clients)]
				runCase(b, sz, name, c.addrs, got[c.name])
			}
		}
		// The client's CPU per GiB moved: this process's CPU for the two
		// transfers, less the load generator's (what direct used).
		gib := float64(2*sz.transfer) / (1 << 30)
		// Likewise the client's CPU per round trip and per connection.
		for _, c := range slices.Backward(clients) {
			if cpu, ok := got[c.name]["cpu"]; ok {
				got[c.name]["cpu/s-per-GiB"] = (cpu - got["direct"]["cpu"]) / gib
				delete(got[c.name], "cpu")
			}
			for k, v := range got[c.name] {
				if strings.Contains(k, "/client-cpu-") {
					got[c.name][k] = v - got["direct"][k]
				}
			}
		}
		for _, c := range clients {
			samples[c.name] = append(samples[c.name], got[c.name])
		}
	}
	res := &benchResult{
		Reps:  sz.reps,
		Sizes: fmt.Sprintf("%d MiB each way; %d pings; %d connections; %d x %d MiB concurrent", sz.transfer>>20, sz.pings, sz.conns, sz.parallel, sz.perStream>>20),
	}
	for _, c := range clients {
		res.Clients = append(res.Clients, c.name)
	}
	var keys []string
	for k := range samples[clients[len(clients)-1].name][0] {
		keys = append(keys, k)
	}
	order := func(k string) int {
		for i, name := range benchCases {
			if strings.HasPrefix(k, name+"/") {
				return i
			}
		}
		return len(benchCases)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if d := order(a) - order(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		cs, metric, _ := strings.Cut(k, "/")
		row := benchRow{Case: cs, Metric: metric, Median: map[string]float64{}, Samples: map[string][]float64{}, Ratio: map[string]float64{}, Goal: benchGoals[k]}
		for _, c := range clients {
			for _, s := range samples[c.name] {
				row.Samples[c.name] = append(row.Samples[c.name], s[k])
			}
			row.Median[c.name] = median(row.Samples[c.name])
		}
		for _, other := range []string{"client-go", "direct"} {
			if d := row.Median[other]; d != 0 {
				row.Ratio[other] = row.Median["tunnels"] / d
			}
		}
		res.Rows = append(res.Rows, row)
	}
	return res
}

func (r *benchResult) print(w io.Writer) {
	fmt.Fprintf(w, "\nport-forward through the kubelet's server code (TLS), medians of %d repetitions (%s)\n", r.Reps, r.Sizes)
	fmt.Fprintf(w, "%-14s %-22s %10s %10s %10s %10s %10s %6s\n", "case", "metric", "direct", "client-go", "tunnels", "/client-go", "/direct", "goal")
	for _, row := range r.Rows {
		ratio := func(k string) string {
			if v, ok := row.Ratio[k]; ok {
				return fmt.Sprintf("%.2fx", v)
			}
			return "-"
		}
		fmt.Fprintf(w, "%-14s %-22s %10.1f %10.1f %10.1f %10s %10s %6s\n", row.Case, row.Metric,
			row.Median["direct"], row.Median["client-go"], row.Median["tunnels"], ratio("client-go"), ratio("direct"), row.Goal)
	}
}

func (r *benchResult) writeJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write bench results: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write bench results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write bench results: %w", err)
	}
	return nil
}
