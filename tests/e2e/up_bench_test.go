package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// waitAccept polls addr until a TCP connect succeeds and returns when.
func waitAccept(tb testing.TB, addr string, deadline time.Duration) time.Time {
	tb.Helper()
	end := time.Now().Add(deadline)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return time.Now()
		}
		if time.Now().After(end) {
			tb.Fatalf("%s does not accept after %s: %v", addr, deadline, err)
		}
		time.Sleep(500 * time.Microsecond) // polling with a deadline
	}
}

// BenchmarkUpSaveToAccept measures, through the built binary against the
// real apiserver, the time from saving the file (an atomic rename, as
// editors do) to the newly added tunnel's port accepting connections. Each
// iteration is one edit that adds one tunnel; p50 and p99 are reported.
// Run: go test -run '^$' -bench UpSaveToAccept -benchtime 100x ./e2e
func BenchmarkUpSaveToAccept(b *testing.B) {
	f := newUpFixture(b)
	dir := b.TempDir()
	file := filepath.Join(dir, "tunnels.yaml")
	body := "  base:\n    pod: a\n    ports: [\":80\"]\n"
	p := startUpWith(b, cluster.TunnelsBinaryPlain(b), f.c, dir, f.yaml(body))
	p.waitReady("base", "80")
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		port := freeLocalPort(b)
		body += fmt.Sprintf("  e%d:\n    pod: a\n    ports: [\"%d:80\"]\n", i, port)
		tmp := filepath.Join(dir, ".tunnels.yaml.tmp")
		writeFile(b, tmp, f.yaml(body))
		saved := time.Now()
		if err := os.Rename(tmp, file); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, waitAccept(b, fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second).Sub(saved))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
	p.stop()
}

// BenchmarkUpHundredTunnels measures the time from starting `tunnels up` on
// a file with 100 tunnels (two pods) to every one of their ports accepting.
// Run: go test -run '^$' -bench UpHundredTunnels -benchtime 5x ./e2e
func BenchmarkUpHundredTunnels(b *testing.B) {
	f := newUpFixture(b)
	bin := cluster.TunnelsBinaryPlain(b)
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		var ports []int
		seen := map[int]bool{}
		var y strings.Builder
		for i := 0; i < 100; i++ {
			port := freeLocalPort(b)
			for seen[port] {
				port = freeLocalPort(b)
			}
			seen[port] = true
			ports = append(ports, port)
			fmt.Fprintf(&y, "  t%03d:\n    pod: %s\n    ports: [\"%d:80\"]\n", i, []string{"a", "b"}[i%2], port)
		}
		writeFile(b, filepath.Join(dir, "tunnels.yaml"), f.yaml(y.String()))
		b.StartTimer()
		start := time.Now()
		p := startUpWith(b, bin, f.c, dir, "")
		var last time.Time
		for _, port := range ports {
			last = waitAccept(b, fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second)
		}
		total += last.Sub(start)
		b.StopTimer()
		p.stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-all-listening")
	b.ReportMetric(0, "ns/op")
}
