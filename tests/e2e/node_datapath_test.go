package e2e

// The data-path tests: each runs `tunnels forward` against the same server
// pods on kwok's fake node and on the real node (kubelet, containerd, runc),
// because kwok is not a runtime: it routes ports to local sockets, never
// half-closes toward the target, serves a deleted pod's streams while its
// PortForward exists and writes its own error texts.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tunnels-dev/tunnels/tests/cluster/podserver"
	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// forEachBackend runs f as a subtest on kwok and on the real node.
func forEachBackend(t *testing.T, f func(t *testing.T, b *cluster.Backend)) {
	c := cluster.Start(t)
	for _, name := range cluster.Backends {
		t.Run(name, func(t *testing.T) { f(t, c.Backend(t, name)) })
	}
}

// port formats a pod port for a port spec or a Forwarding line.
func port(p int) string { return fmt.Sprint(p) }

// TestNodeRefusedPort: a connection to a port nothing listens on in the pod
// must reach the local client as a TCP reset, as a refused connection does,
// not as a clean EOF that looks like an empty answer; the other port of the
// same session keeps working.
func TestNodeRefusedPort(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *cluster.Backend) {
		ns := b.Namespace(t)
		b.ServerPod(t, ns, "srv", cluster.ServerPodOptions{})
		p := startForward(t, b.Cluster, 2, "-n", ns, "--address", "127.0.0.1", "pod/srv",
			":"+port(podserver.ClosedPort), ":"+port(podserver.EchoPort))
		n, err := readRefused(t, p.addr(port(podserver.ClosedPort)))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("read from the refused port: %d bytes, %v; want a TCP reset (ECONNRESET)", n, err)
		}
		dialEcho(t, p.addr(port(podserver.EchoPort)), "after the refused port")
	})
}

// readRefused connects to addr and reads until the connection ends.
func readRefused(t *testing.T, addr string) (int, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if errors.Is(err, syscall.ECONNRESET) {
		// The whole round (accept, stream, the pod's refusal, the reset)
		// can finish before the dialler looks at its connect's result: the
		// reset is then reported by the dial itself.
		return 0, err
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	if err == nil {
		err = io.EOF // io.Copy reports a clean end as nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection to the refused port was still open after 10s")
	}
	return int(n), err
}

// TestNodeStreamWithoutReply: after several refused streams on one session,
// a new connection is still served promptly. containerd 1.6 stops replying
// to new streams on an SPDY connection after three failed ones, which
// client-go reports only after a 30 s timeout; tunnels must open a fresh
// connection instead of holding the client that long. Neither backend here
// stops replying (kwok never does, and containerd 2.4 does not: see
// TestNodeRuntimeAfterFailedStreams), so this test catches only tunnels
// itself stalling after failed streams; a server that stops answering is
// forward's TestSessionRetriesAnUnansweredStream.
func TestNodeStreamWithoutReply(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *cluster.Backend) {
		ns := b.Namespace(t)
		b.ServerPod(t, ns, "srv", cluster.ServerPodOptions{})
		p := startForward(t, b.Cluster, 2, "-n", ns, "--address", "127.0.0.1", "pod/srv",
			":"+port(podserver.ClosedPort), ":"+port(podserver.EchoPort))
		for i := range 5 {
			if n, err := readRefused(t, p.addr(port(podserver.ClosedPort))); n > 0 {
				t.Fatalf("refused connection %d: read %d bytes (%v)", i, n, err)
			}
		}
		start := time.Now()
		dialEcho(t, p.addr(port(podserver.EchoPort)), "after five refused streams")
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("a connection after five refused streams took %s to be served, want under 5s", took)
		}
	})
}

// attempt is one connection made to read a pod's hello line.
type attempt struct {
	end  time.Time
	took time.Duration
	id   string
	err  error
}

// attemptLimit is how long one connection may take before it counts as
// hung: longer than any redial, far shorter than a 30 s stream timeout.
const attemptLimit = 10 * time.Second

// hello connects to addr and reads the pod's ID from podserver.HelloPort.
func hello(addr string) attempt {
	start := time.Now()
	a := attempt{}
	conn, err := net.DialTimeout("tcp", addr, attemptLimit)
	if err == nil {
		conn.SetDeadline(start.Add(attemptLimit))
		var line string
		line, err = bufio.NewReader(conn).ReadString('\n')
		a.id = strings.TrimSpace(line)
		conn.Close()
	}
	a.err, a.end = err, time.Now()
	a.took = a.end.Sub(start)
	return a
}

// prober dials addr over and over, recording every attempt, until told
// to stop or an attempt reaches want.
type prober struct {
	attempts chan attempt
	stop     chan struct{}
	done     chan struct{}
}

func probe(addr, want string) *prober {
	p := &prober{attempts: make(chan attempt, 1000), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer close(p.attempts)
		for {
			a := hello(addr)
			p.attempts <- a
			if a.id == want {
				return
			}
			select {
			case <-p.stop:
				return
			case <-time.After(20 * time.Millisecond): // pacing between attempts
			}
		}
	}()
	return p
}

// wait returns the attempts made once one reached the wanted pod or the
// deadline passed.
func (p *prober) wait(deadline time.Duration) []attempt {
	select {
	case <-p.done:
	case <-time.After(deadline):
		close(p.stop)
		<-p.done
	}
	var all []attempt
	for a := range p.attempts {
		all = append(all, a)
	}
	return all
}

// checkNoHang fails the test for every attempt that took attemptLimit.
func checkNoHang(t *testing.T, all []attempt) {
	t.Helper()
	for _, a := range all {
		if errors.Is(a.err, os.ErrDeadlineExceeded) || a.took >= attemptLimit {
			t.Errorf("a connection ending at %s hung for %s (%v)", a.end.Format("15:04:05.000"), a.took.Round(time.Millisecond), a.err)
		}
	}
}

func describe(all []attempt) string {
	var b strings.Builder
	for _, a := range all {
		fmt.Fprintf(&b, "  %s took %5dms: id %q err %v\n", a.end.Format("15:04:05.000"), a.took.Milliseconds(), a.id, a.err)
	}
	return b.String()
}

// TestNodePodRecreated: a pod deleted and re-created under the same name is
// served again within 1 s of the new pod being Ready, and no connection
// made meanwhile hangs.
func TestNodePodRecreated(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *cluster.Backend) {
		ns := b.Namespace(t)
		old := b.ServerPod(t, ns, "srv", cluster.ServerPodOptions{ID: "first"})
		p := startForward(t, b.Cluster, 1, "-n", ns, "--address", "127.0.0.1", "pod/srv", ":"+port(podserver.HelloPort))
		addr := p.addr(port(podserver.HelloPort))
		if a := hello(addr); a.id != "first" {
			t.Fatalf("before the re-creation: id %q, %v; want first", a.id, a.err)
		}

		old.Delete(t)
		pr := probe(addr, "second")
		b.ServerPod(t, ns, "srv", cluster.ServerPodOptions{ID: "second"})
		ready := time.Now() // observed Ready: at most a poll interval late
		all := pr.wait(15 * time.Second)
		checkNoHang(t, all)
		last := all[len(all)-1]
		if last.id != "second" {
			t.Fatalf("the re-created pod was not served within 15s of being Ready; attempts:\n%s", describe(all))
		}
		if late := last.end.Sub(ready); late > time.Second {
			t.Errorf("the re-created pod was served %s after it was Ready, want within 1s; attempts:\n%s", late.Round(time.Millisecond), describe(all))
		} else {
			t.Logf("served %s after Ready (%d attempts)", late.Round(time.Millisecond), len(all))
		}
		p.interrupt()
	})
}

// TestNodeServicePodDeleted: a forward to a service moves to another pod
// behind it when the pod in use is deleted, and no connection hangs.
func TestNodeServicePodDeleted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *cluster.Backend) {
		ns := b.Namespace(t)
		labels := map[string]string{"app": "web"}
		pods := map[string]*cluster.ServerPod{}
		for _, name := range []string{"web-a", "web-b"} {
			pods[name] = b.ServerPod(t, ns, name, cluster.ServerPodOptions{Labels: labels})
		}
		b.Service(t, ns, "web", labels, []corev1.ServicePort{{Name: "hello", Port: 80, TargetPort: intstr.FromString("hello")}})
		p := startForward(t, b.Cluster, 1, "-n", ns, "--address", "127.0.0.1", "svc/web", ":80")
		addr := p.addr(port(podserver.HelloPort))
		first := hello(addr)
		if pods[first.id] == nil {
			t.Fatalf("first connection: id %q, %v; want web-a or web-b", first.id, first.err)
		}
		other := "web-a"
		if first.id == other {
			other = "web-b"
		}

		start := time.Now()
		pods[first.id].Delete(t)
		all := probe(addr, other).wait(20 * time.Second)
		checkNoHang(t, all)
		if last := all[len(all)-1]; last.id != other {
			t.Fatalf("after %s was deleted, no connection reached %s within 20s; attempts:\n%s", first.id, other, describe(all))
		} else {
			t.Logf("moved from %s to %s %s after the delete (%d attempts)", first.id, other, last.end.Sub(start).Round(time.Millisecond), len(all))
		}
		p.interrupt()
	})
}

// halfCloseWant is what each backend does with a half-close, as README's
// "When things fail" describes it.
var halfCloseWant = map[string]struct {
	// podEnd is how the pod's read ended after the client half-closed
	// ("eof": the close reached it; "idle": nothing reached it).
	podEnd string
	// reply is what the client reads after its half-close: the pod's
	// answer, written once it stopped reading.
	reply string
	// greetEOFFirst: when the pod half-closes first, the client sees EOF
	// before it half-closes itself (else only after).
	greetEOFFirst bool
}{
	// kwok copies both ways and closes both sides only once both copies
	// ended: the pod sees nothing of the client's half-close until its idle
	// timeout, and the answer it writes then still arrives; when the pod
	// half-closes first, the client sees EOF only after its own half-close.
	cluster.BackendKwok: {podEnd: "idle", reply: "reply after 4 bytes\n", greetEOFFirst: false},
	// containerd copies both ways and, once one direction ends, closes the
	// pod's connection and the stream about a second later: the client's
	// half-close reaches the pod as a full close, so an answer written after
	// it is lost; the pod's half-close reaches the client as EOF (a second
	// late), and what the client writes within that second still arrives.
	cluster.BackendNode: {podEnd: "eof", reply: "", greetEOFFirst: true},
}

// TestNodeHalfClose: what the pod and the client see when the client
// half-closes first, and when the pod does.
func TestNodeHalfClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *cluster.Backend) {
		want := halfCloseWant[b.Name]
		ns := b.Namespace(t)
		b.ServerPod(t, ns, "srv", cluster.ServerPodOptions{})
		p := startForward(t, b.Cluster, 3, "-n", ns, "--address", "127.0.0.1", "pod/srv",
			":"+port(podserver.HalfClosePort), ":"+port(podserver.EventsPort), ":"+port(podserver.GreetPort))
		events := subscribe(t, p.addr(port(podserver.EventsPort)))

		t.Run("client first", func(t *testing.T) {
			conn := dialTCP(t, p.addr(port(podserver.HalfClosePort)))
			if _, err := conn.Write([]byte("ping")); err != nil {
				t.Fatalf("write: %v", err)
			}
			if err := conn.CloseWrite(); err != nil {
				t.Fatalf("half-close: %v", err)
			}
			e := events.next(t, "halfclose")
			if e.Read != 4 || e.End != want.podEnd {
				t.Errorf("the pod saw %q, want read=4 end=%s", e, want.podEnd)
			}
			got, err := io.ReadAll(conn)
			if err != nil || string(got) != want.reply {
				t.Errorf("after its half-close the client read %q, %v; want %q and a clean EOF", got, err, want.reply)
			}
		})

		t.Run("pod first", func(t *testing.T) {
			conn := dialTCP(t, p.addr(port(podserver.GreetPort)))
			r := bufio.NewReader(conn)
			if line, err := r.ReadString('\n'); err != nil || line != "hello\n" {
				t.Fatalf("greeting: %q, %v; want hello", line, err)
			}
			// Written at once, before any close could reach the pod.
			if _, err := conn.Write([]byte("late\n")); err != nil {
				t.Fatalf("write after the pod's half-close: %v", err)
			}
			readEOF := func(when string) {
				t.Helper()
				if rest, err := io.ReadAll(r); err != nil || len(rest) > 0 {
					t.Errorf("%s the client read %q, %v; want a clean EOF", when, rest, err)
				}
			}
			if want.greetEOFFirst {
				readEOF("after the pod's half-close")
			}
			if err := conn.CloseWrite(); err != nil {
				t.Fatalf("half-close: %v", err)
			}
			e := events.next(t, "greet")
			if e.Read != 5 || e.End != "eof" {
				t.Errorf("the pod saw %q, want read=5 end=eof", e)
			}
			if !want.greetEOFFirst {
				readEOF("after both half-closed")
			}
		})
		p.interrupt()
	})
}

func dialTCP(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	return conn.(*net.TCPConn)
}

// eventStream reads podserver's events.
type eventStream struct {
	r *bufio.Reader
	c net.Conn
}

// subscribe connects to the pod's events port and waits until the pod has
// subscribed the connection.
func subscribe(t *testing.T, addr string) *eventStream {
	t.Helper()
	conn := dialTCP(t, addr)
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	s := &eventStream{r: bufio.NewReader(conn), c: conn}
	if line, err := s.r.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("subscribe to the pod's events: %q, %v", line, err)
	}
	return s
}

// next returns the next event of the given port within 15 s.
func (s *eventStream) next(t *testing.T, portName string) podserver.Event {
	t.Helper()
	s.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("wait for the pod's %s event: %v", portName, err)
		}
		e, err := podserver.ParseEvent(line)
		if err != nil {
			t.Fatal(err)
		}
		if e.Port == portName {
			return e
		}
	}
}

// TestNodeLargeTransfer: 64 MiB each way at once through one connection,
// intact.
func TestNodeLargeTransfer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *cluster.Backend) {
		ns := b.Namespace(t)
		b.ServerPod(t, ns, "srv", cluster.ServerPodOptions{})
		p := startForward(t, b.Cluster, 1, "-n", ns, "--address", "127.0.0.1", "pod/srv", ":"+port(podserver.EchoPort))
		const n = 64 << 20
		conn := dialTCP(t, p.addr(port(podserver.EchoPort)))
		conn.SetDeadline(time.Now().Add(3 * time.Minute))
		data := make([]byte, n)
		rand.Read(data)
		want := sha256.Sum256(data)
		start := time.Now()
		werr := make(chan error, 1)
		go func() {
			_, err := conn.Write(data)
			werr <- err
		}()
		h := sha256.New()
		got, err := io.CopyN(h, conn, n)
		if err != nil {
			t.Fatalf("read back %d of %d bytes: %v", got, n, err)
		}
		if err := <-werr; err != nil {
			t.Fatalf("write: %v", err)
		}
		if !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatal("the 64 MiB that came back differ from those sent")
		}
		t.Logf("64 MiB each way in %s", time.Since(start).Round(time.Millisecond))
		p.interrupt()
	})
}
