package forward

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tunnels-dev/tunnels/internal/testnet"
)

// fakeKubeletEnv makes the test binary serve a fake kubelet with an echo
// target on port 80, print its address, and exit when stdin closes.
const fakeKubeletEnv = "TUNNELS_FORWARD_FAKE_KUBELET"

func serveFakeKubeletProcess() {
	tb := &testnet.ProcessTB{}
	k := newFakeKubelet(tb, map[int]string{80: testnet.Echo(tb)})
	fmt.Println(k.srv.Listener.Addr().String())
	io.Copy(io.Discard, os.Stdin)
	tb.Close()
}

// BenchmarkIdleConnections reports the client memory (Go heap in use plus
// goroutine stacks) and goroutines of 1,000 forwarded connections that
// have exchanged a byte and gone idle (each Forward call's own goroutine
// included). The server runs in another process, so that only the client
// is counted; the 1,000 local client sockets of the test are counted too
// (a few hundred bytes each).
func BenchmarkIdleConnections(b *testing.B) {
	const n = 1000
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fakeKubeletEnv+"=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("read the fake kubelet's address: %v", err)
	}
	addr = strings.TrimSpace(addr)

	for range b.N {
		c, err := Dial(b.Context(), testUpgrader{addr: addr}, "default", "web", Options{})
		if err != nil {
			b.Fatal(err)
		}
		before := clientMemory()
		goroutines := runtime.NumGoroutine()
		clients := make([]net.Conn, 0, n)
		done := make(chan error, n)
		for range n {
			client, server := tcpPair(b)
			go func() { done <- c.Forward(b.Context(), server, 80) }()
			client.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := client.Write([]byte("x")); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(client, make([]byte, 1)); err != nil {
				b.Fatal(err)
			}
			clients = append(clients, client)
		}
		after := clientMemory()
		b.ReportMetric(float64(runtime.NumGoroutine()-goroutines)/n, "goroutines/idle-conn")
		b.ReportMetric(float64(after.total()-before.total())/n/1024, "KiB/idle-conn")
		b.ReportMetric(float64(after.stack-before.stack)/n/1024, "stack-KiB/idle-conn")
		for _, cl := range clients {
			cl.(*net.TCPConn).CloseWrite()
		}
		for range n {
			<-done
		}
		for _, cl := range clients {
			cl.Close()
		}
		c.Close()
	}
}

// memory is the heap in use and the goroutine stacks.
type memory struct{ heap, stack uint64 }

func (m memory) total() uint64 { return m.heap + m.stack }

// clientMemory measures memory after a collection.
func clientMemory() memory {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memory{heap: m.HeapInuse, stack: m.StackInuse}
}
