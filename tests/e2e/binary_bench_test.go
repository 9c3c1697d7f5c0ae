package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
	"github.com/tunnels-dev/tunnels/tests/internal/loadgen"
)

// BenchmarkBinaries compares the binaries users run, in the same run:
// `tunnels forward` (the plain build, as kubectl is one) and
// `kubectl port-forward` from the test cluster, each over SPDY and over
// WebSocket, through the real kube-apiserver and kwok to targets in this
// process. Each client is its own process, so its CPU time and memory are
// read from /proc: utime+stime around the cases, VmRSS for the idle
// connections, and the peak (VmHWM, reset before each case through
// clear_refs) during the transfers.
//
// Each repetition runs every case for every client, rotating which goes
// first; the table shows medians and the ratios tunnels/kubectl per
// transport. Every case checks its bytes (package loadgen). The sizes are
// smaller than BenchmarkTable's so that make bench stays under 10 minutes:
// the apiserver and kwok relay every byte, at a few hundred MB/s at best on
// 2 cores. With -short (make bench BENCH_SMOKE=1) every case runs once,
// small. The table is printed, and written as JSON to $BENCH_JSON if set.
func BenchmarkBinaries(b *testing.B) {
	sz := binarySizes
	if testing.Short() {
		sz = binarySmokeSizes
	}
	if n, err := strconv.Atoi(os.Getenv("BENCH_REPS")); err == nil && n > 0 {
		sz.Reps = n
	}
	c := cluster.Start(b)
	ns := c.Namespace(b)
	targets := loadgen.Targets(func(handle func(net.Conn)) string { return cluster.Handler(b, handle) })
	opts := cluster.PodOptions{Forward: map[int32]string{}}
	var specs []string
	for port, addr := range targets {
		opts.Ports = append(opts.Ports, corev1.ContainerPort{ContainerPort: int32(port)})
		opts.Forward[int32(port)] = addr
		specs = append(specs, ":"+strconv.Itoa(port))
	}
	c.Pod(b, ns, "bench", opts)

	tunnels, kubectl := cluster.TunnelsBinaryPlain(b), filepath.Join(c.BinDir, "kubectl")
	common := append([]string{"--kubeconfig", c.AdminKubeconfig, "-n", ns, "--address", "127.0.0.1", "pod/bench"}, specs...)
	clients := []loadgen.Client{
		binaryClient(b, sz, "tunnels/spdy", nil, tunnels, append([]string{"forward", "--transport", "spdy"}, common...)),
		binaryClient(b, sz, "kubectl/spdy", []string{"KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}, kubectl, append([]string{"port-forward"}, common...)),
		binaryClient(b, sz, "tunnels/ws", nil, tunnels, append([]string{"forward", "--transport", "websocket"}, common...)),
		binaryClient(b, sz, "kubectl/ws", []string{"KUBECTL_PORT_FORWARD_WEBSOCKETS=true"}, kubectl, append([]string{"port-forward"}, common...)),
	}
	table := &loadgen.Table{
		Title: "tunnels forward and kubectl port-forward (v1.37.2), binaries through the real kube-apiserver and kwok,\n" +
			"over SPDY and WebSocket (ws); CPU and RSS are the client process's (peak-rss: VmHWM during the case)",
		Sizes:   sz,
		Clients: clients,
		Cases:   loadgen.Cases,
		Ratios: []loadgen.Ratio{
			{Name: "spdy t/k", Num: "tunnels/spdy", Den: "kubectl/spdy"},
			{Name: "ws t/k", Num: "tunnels/ws", Den: "kubectl/ws"},
		},
		Goals: map[string]string{
			"down/MB/s":          "≥1.5x",
			"up/MB/s":            "≥1.5x",
			"rtt/p50-µs":         "≤0.7x",
			"connect/conn/s":     "≥2x",
			"parallel-down/MB/s": "≥1.5x",
			"parallel-up/MB/s":   "≥1.5x",
			"cpu/s-per-GiB":      "≤0.6x",
			"idle/KiB-per-conn":  "≤32",
		},
		Fixup: func(rep map[string]loadgen.Sample) {
			for _, s := range rep {
				s["cpu/s-per-GiB"] = s["cpu"] / (float64(2*sz.Transfer) / (1 << 30))
				delete(s, "cpu")
			}
		},
	}
	for b.Loop() {
		res, err := table.Run()
		if err != nil {
			b.Fatal(err)
		}
		if err := res.Output(os.Stdout, "BENCH_JSON"); err != nil {
			b.Fatal(err)
		}
		for _, r := range res.Rows {
			for _, ratio := range []string{"spdy t/k", "ws t/k"} {
				if v, ok := r.Ratio[ratio]; ok {
					b.ReportMetric(v, r.Case+"-"+r.Metric+"-"+strings.Fields(ratio)[0]+"-ratio")
				}
			}
		}
	}
}

var (
	binarySizes      = loadgen.Sizes{Reps: 5, Transfer: 256 << 20, Pings: 2_000, Conns: 500, Parallel: 100, PerStream: 2 << 20, Idle: 1_000}
	binarySmokeSizes = loadgen.Sizes{Reps: 1, Transfer: 8 << 20, Pings: 100, Conns: 50, Parallel: 10, PerStream: 1 << 20, Idle: 50}
)

// binaryClient starts bin with args and env (added to this process's)
// until the benchmark ends, waits until it forwards every target's port,
// and returns it as a client of the table whose CPU and memory are read
// from /proc.
func binaryClient(b *testing.B, sz loadgen.Sizes, name string, env []string, bin string, args []string) loadgen.Client {
	b.Helper()
	p := startProcEnv(b, env, bin, args...)
	addrs := map[int]string{}
	deadline := time.After(60 * time.Second)
	for len(addrs) < len(loadgen.Ports) {
		for _, m := range forwardingFrom.FindAllStringSubmatch(p.stdout.String(), -1) {
			if remote, err := strconv.Atoi(m[2]); err == nil && strings.HasPrefix(m[1], "127.0.0.1:") {
				addrs[remote] = m[1]
			}
		}
		if len(addrs) == len(loadgen.Ports) {
			break
		}
		select {
		case <-p.exited:
			b.Fatalf("%s exited (%v) before forwarding; stderr:\n%s", name, p.err, p.stderr.String())
		case <-deadline:
			b.Fatalf("%s forwards %d of %d ports after 60s; stderr:\n%s", name, len(addrs), len(loadgen.Ports), p.stderr.String())
		case <-time.After(20 * time.Millisecond): // polling the output with a deadline
		}
	}
	pid := p.cmd.Process.Pid
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	fail := func(err error) { b.Fatalf("%s: %v", name, err) }
	return loadgen.Client{
		Name:  name,
		Addrs: addrs,
		Around: func(cs string, s loadgen.Sample) func() {
			if cs == "down" {
				rss, err := procMemory(pid, "VmRSS")
				if err != nil {
					fail(err)
				}
				s["rss/at-rest-MiB"] = float64(rss) / (1 << 20)
			}
			if err := resetPeakRSS(pid); err != nil {
				fail(err)
			}
			cpu, err := procCPU(pid)
			if err != nil {
				fail(err)
			}
			return func() {
				after, err := procCPU(pid)
				if err != nil {
					fail(err)
				}
				dc := after - cpu
				switch cs {
				case "down", "up":
					s["cpu"] += dc.Seconds()
				case "rtt":
					s["rtt/client-cpu-µs/ping"] = us(dc) / float64(sz.Pings)
				case "connect":
					s["connect/client-cpu-µs/conn"] = us(dc) / float64(sz.Conns)
				}
				switch cs {
				case "down", "up", "parallel-down", "parallel-up":
					peak, err := procMemory(pid, "VmHWM")
					if err != nil {
						fail(err)
					}
					s[cs+"/peak-rss-MiB"] = float64(peak) / (1 << 20)
				}
			}
		},
		Memory: func() (int64, error) { return procMemory(pid, "VmRSS") },
	}
}

// procCPU returns the CPU time process pid has used, user and system, at
// the kernel's clock-tick resolution (10 ms).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time: %w", err)
	}
	// Fields after the command, which is in parentheses: utime and stime
	// are fields 14 and 15 of the line, 12 and 13 after the ")".
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("read cpu time: %d fields in /proc/%d/stat", len(f), pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read cpu time: utime %q, stime %q", f[11], f[12])
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil // USER_HZ is 100 on Linux
}

// procMemory returns field (VmRSS, VmHWM) of process pid's status, in
// bytes.
func procMemory(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", field, err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read %s: %w", field, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("read %s: not in /proc/%d/status", field, pid)
}

// resetPeakRSS sets process pid's VmHWM back to its current RSS.
func resetPeakRSS(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak rss: %w", err)
	}
	return nil
}
