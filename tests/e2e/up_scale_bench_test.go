package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// The scale of BenchmarkUpScale: tunnels, each with two ports to its own
// pod, spread over kubeconfig contexts (each with its own namespace, all on
// the one test cluster).
const (
	scaleTunnels  = 250
	scaleContexts = 5
)

// BenchmarkUpScale runs one `tunnels up` with 250 tunnels × 2 ports to 250
// pods over 5 contexts against the real apiserver, and prints: the time
// from start until all 500 ports accept, the time from a save adding one
// tunnel until its port accepts, the process's resident memory (before
// any forwarded connection, after one through every port, and peak), the pod watches it holds open on the apiserver (from the
// apiserver's apiserver_longrunning_requests metric), and whether every
// port still echoes. Nothing is asserted on times; the watch count and the
// echoes are checked.
// Run: go test -run '^$' -bench UpScale -benchtime 1x ./e2e
func BenchmarkUpScale(b *testing.B) {
	c := cluster.Start(b)
	echo := longEcho(b)
	dir := b.TempDir()

	// The contexts: one namespace each, all through the admin user.
	kc, err := clientcmd.LoadFromFile(c.AdminKubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	base := kc.Contexts[kc.CurrentContext]
	var namespaces []string
	for i := range scaleContexts {
		ns := c.Namespace(b)
		namespaces = append(namespaces, ns)
		ctx := base.DeepCopy()
		ctx.Namespace = ns
		kc.Contexts[fmt.Sprintf("ctx%d", i)] = ctx
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		b.Fatal(err)
	}

	// The pods, 16 at a time.
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range scaleTunnels {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.Pod(b, namespaces[i%scaleContexts], fmt.Sprintf("p%03d", i), cluster.PodOptions{
				Ports:   []corev1.ContainerPort{{Name: "echo", ContainerPort: 80}, {Name: "alt", ContainerPort: 81}},
				Forward: map[int32]string{80: echo, 81: echo},
			})
		}()
	}
	wg.Wait()

	seen := map[int]bool{}
	newPort := func() int {
		for {
			if p := freeLocalPort(b); !seen[p] {
				seen[p] = true
				return p
			}
		}
	}
	var ports []int
	var y strings.Builder
	y.WriteString("version: 1\ntunnels:\n")
	tunnel := func(i int) (int, int) {
		p80, p81 := newPort(), newPort()
		fmt.Fprintf(&y, "  t%03d:\n    context: ctx%d\n    pod: p%03d\n    ports: [\"%d:80\", \"%d:81\"]\n", i, i%scaleContexts, i%scaleTunnels, p80, p81)
		return p80, p81
	}
	for i := range scaleTunnels {
		p80, p81 := tunnel(i)
		ports = append(ports, p80, p81)
	}
	file := filepath.Join(dir, "tunnels.yaml")
	writeFile(b, file, y.String())

	before := podWatches(b, c)
	bin := cluster.TunnelsBinaryPlain(b)
	for b.Loop() {
		start := time.Now()
		p := startUpWith(b, bin, c, dir, "", "--kubeconfig", kubeconfig)
		var last time.Time
		for _, port := range ports {
			last = waitAccept(b, fmt.Sprintf("127.0.0.1:%d", port), 60*time.Second)
		}
		allListening := last.Sub(start)

		// A save adding one tunnel (an atomic rename, as editors do).
		p80, _ := tunnel(scaleTunnels)
		tmp := filepath.Join(dir, ".tunnels.yaml.tmp")
		writeFile(b, tmp, y.String())
		saved := time.Now()
		if err := os.Rename(tmp, file); err != nil {
			b.Fatal(err)
		}
		saveToAccept := waitAccept(b, fmt.Sprintf("127.0.0.1:%d", p80), 30*time.Second).Sub(saved)
		// Before any forwarded connection: SPDY connections open, no
		// streams yet (spdystream makes its header compressor, about
		// 800 KB, on a connection's first stream).
		idleRSS, _ := memory(b, p.cmd.Process.Pid)

		failed := echoAll(ports)
		// Every session has served an echo by now, so every watch it
		// needs has been opened.
		watches := podWatches(b, c) - before
		rss, hwm := memory(b, p.cmd.Process.Pid)

		b.ReportMetric(float64(allListening.Milliseconds()), "ms-all-listening")
		b.ReportMetric(float64(saveToAccept.Milliseconds()), "ms-save-to-accept")
		b.ReportMetric(idleRSS, "MB-RSS-before-streams")
		b.ReportMetric(rss, "MB-RSS")
		b.ReportMetric(hwm, "MB-peak-RSS")
		b.ReportMetric(float64(watches), "pod-watches")
		b.ReportMetric(float64(len(failed)), "echo-failures")
		b.ReportMetric(0, "ns/op")
		fmt.Printf("UpScale: %d tunnels × 2 ports over %d contexts: all listening %v, save to accept %v, RSS %.1f MB before any forwarded connection, %.1f MB after (peak %.1f MB), %d pod watches open, %d/%d ports failed to echo\n",
			scaleTunnels, scaleContexts, allListening.Round(time.Millisecond), saveToAccept.Round(time.Millisecond), idleRSS, rss, hwm, watches, len(failed), len(ports))
		if len(failed) > 0 {
			b.Errorf("%d ports did not echo: %v", len(failed), failed[:min(len(failed), 5)])
		}
		if watches > scaleContexts {
			b.Errorf("%d pod watches open on the apiserver, want at most %d (one per context and namespace)", watches, scaleContexts)
		}
		p.stop()
	}
}

// echoAll echoes a line through every port, 32 at a time, and returns the
// failures.
func echoAll(ports []int) []string {
	var mu sync.Mutex
	var failed []string
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for _, port := range ports {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := echoOnceLine(fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%d: %v", port, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

func echoOnceLine(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(conn, "hello %s\n", addr); err != nil {
		return err
	}
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("hello %s\n", addr); got != want {
		return fmt.Errorf("got %q, want %q", got, want)
	}
	return nil
}

// podWatches reads the apiserver's open namespaced pod watches.
func podWatches(tb testing.TB, c *cluster.Cluster) int {
	tb.Helper()
	raw, err := c.Kube(tb).CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		tb.Fatalf("apiserver metrics: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "apiserver_longrunning_requests{") || !strings.Contains(line, `resource="pods"`) ||
			!strings.Contains(line, `scope="namespace"`) || !strings.Contains(line, `verb="WATCH"`) || !strings.Contains(line, `subresource=""`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			tb.Fatalf("metric line %q: %v", line, err)
		}
		n += int(v)
	}
	return n
}

// memory returns a process's resident and peak resident memory in MB.
func memory(tb testing.TB, pid int) (rss, peak float64) {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatalf("read process status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}
