package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tunnels-dev/tunnels/internal/testnet"
	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// The tests of this file hold the tunnels binary to "never lose a byte"
// (issue 9) against the real kube-apiserver and kwok: a paused reader holds
// up nothing, a pod replaced behind a selector costs no connection, and a
// kube-apiserver that dies or freezes costs neither a silent truncation nor
// more than a second of service once it is back. The last two break the
// control plane, so they run on a private cluster each. They run in
// parallel: the first pauses for a minute.

// The pod app's commands: a client sends one byte (and, for an echo, the
// bytes to echo) and half-closes; the app answers and closes. (kwok ends a
// forwarded connection only once both have: it neither passes the
// client's half-close on nor ends the stream when the target alone closes;
// see shared/CLUSTER.md.)
const (
	cmdDownload = 'D' // downloadSize bytes of testnet.Stream(seedDownload)
	cmdEcho     = 'E' // reads echoSize bytes and sends them back
	cmdReply    = 'R' // replySize bytes: the app's name, then testnet.Stream(seedReply)
	cmdTrickle  = 'T' // 4 KiB of testnet.Stream(seedTrickle) every 10 ms, for two minutes
)

const (
	downloadSize = 256 << 20
	echoSize     = 64 << 10
	replySize    = 1 << 20
	nameSize     = 16 // the reply's first bytes: the app's name, space-padded

	seedDownload = 1
	seedReply    = 2
	seedTrickle  = 3
)

// podApp is the application "in the pod": a loopback server that kwok
// routes the pod's port to.
type podApp struct {
	name  string
	l     net.Listener
	conns testnet.Conns
	wg    sync.WaitGroup
}

// startPodApp starts an app that stops, closing every connection, when the
// test ends.
func startPodApp(t testing.TB, name string) *podApp {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &podApp{name: name, l: l}
	a.wg.Add(1)
	go a.serve()
	t.Cleanup(func() {
		l.Close()
		a.conns.Close()
		a.wg.Wait()
	})
	return a
}

func (a *podApp) addr() string { return a.l.Addr().String() }

// stopAccepting closes the listener, as an app told to terminate does: new
// connections are refused, open ones finish.
func (a *podApp) stopAccepting() { a.l.Close() }

func (a *podApp) serve() {
	defer a.wg.Done()
	for {
		c, err := a.l.Accept()
		if err != nil {
			return
		}
		a.conns.Add(c)
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer func() { a.conns.Remove(c); c.Close() }()
			a.handle(c.(*net.TCPConn))
		}()
	}
}

func (a *podApp) handle(c *net.TCPConn) {
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	var cmd [1]byte
	if _, err := io.ReadFull(c, cmd[:]); err != nil {
		return
	}
	switch cmd[0] {
	case cmdDownload:
		io.Copy(c, testnet.Stream(seedDownload, downloadSize))
	case cmdEcho:
		buf := make([]byte, echoSize)
		if _, err := io.ReadFull(c, buf); err == nil {
			c.Write(buf)
		}
	case cmdReply:
		name := fmt.Sprintf("%-*s", nameSize, a.name)
		if _, err := io.WriteString(c, name); err == nil {
			io.Copy(c, testnet.Stream(seedReply, replySize-nameSize))
		}
	case cmdTrickle:
		src := testnet.Stream(seedTrickle, 1<<30)
		buf := make([]byte, 4<<10)
		for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); {
			io.ReadFull(src, buf)
			if _, err := c.Write(buf); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond) // the app's pace, not synchronisation
		}
	}
}

// ending names how a read ended.
func ending(err error) string {
	if err == nil {
		return "a clean EOF"
	}
	return err.Error()
}

// replyOutcome is how one request for a reply ended.
type replyOutcome int

const (
	replyOK       replyOutcome = iota
	replyDialErr               // the local port refused the connection
	replyShortEOF              // a clean EOF before the full reply: a lie
	replyShortErr              // an error (a reset, a timeout) before the full reply
	replyBad                   // the bytes differ from what the app sent
)

func (o replyOutcome) String() string {
	return [...]string{"ok", "dial failed", "clean EOF before the full reply", "error before the full reply", "bytes differ"}[o]
}

// replyResult is one request for a reply.
type replyResult struct {
	outcome replyOutcome
	pod     string // the app that answered, when ok
	got     int    // bytes received
	err     error
	at      time.Time // when it ended
}

func (r replyResult) String() string {
	return fmt.Sprintf("%s at %s: %d of %d bytes (%v)", r.outcome, r.at.Format("15:04:05.000"), r.got, replySize, ending(r.err))
}

// requestReply asks the app behind addr for its reply and checks it.
func requestReply(addr string, timeout time.Duration) replyResult {
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		return replyResult{outcome: replyDialErr, err: err, at: time.Now()}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if err := sendRequest(c, []byte{cmdReply}); err != nil {
		return replyResult{outcome: replyShortErr, err: err, at: time.Now()}
	}
	b, err := io.ReadAll(io.LimitReader(c, replySize+1))
	r := replyResult{got: len(b), err: err, at: time.Now()}
	switch {
	case len(b) < replySize && err == nil:
		r.outcome = replyShortEOF
	case err != nil:
		r.outcome = replyShortErr
	case len(b) > replySize:
		r.outcome, r.err = replyBad, errors.New("more bytes than the reply")
	default:
		want, _ := io.ReadAll(testnet.Stream(seedReply, replySize-nameSize))
		if !bytes.Equal(b[nameSize:], want) {
			r.outcome, r.err = replyBad, errors.New("the reply's bytes differ")
			break
		}
		r.pod = strings.TrimSpace(string(b[:nameSize]))
	}
	return r
}

// sendRequest writes req and half-closes c.
func sendRequest(c net.Conn, req []byte) error {
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("half-close: %w", err)
	}
	return nil
}

// echoOnce opens a connection to addr, has echoSize bytes echoed, and
// returns how long that took.
func echoOnce(addr string, data []byte, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp4", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(start.Add(timeout))
	if err := sendRequest(c, append([]byte{cmdEcho}, data...)); err != nil {
		return 0, err
	}
	back, err := io.ReadAll(c)
	if err != nil {
		return 0, fmt.Errorf("read the echo: %w (after %d of %d bytes)", err, len(back), len(data))
	}
	if !bytes.Equal(back, data) {
		return 0, fmt.Errorf("echo differs: %d bytes back, want %d", len(back), len(data))
	}
	return time.Since(start), nil
}

// pausedResult is what pausedReader saw.
type pausedResult struct {
	aGot   int64 // bytes the paused reader got in all
	aErr   error // how its connection ended (nil: a clean EOF) or an error
	bCount int
	bFails []string
	bWorst time.Duration
}

// pausedReader runs the paused-reader scenario through the local address
// addr: connection A downloads downloadSize bytes, reads 1 MiB and pauses
// for pause; meanwhile a connection B opens every 0.5 s and has 64 KiB
// echoed. Then A reads the rest.
func pausedReader(t *testing.T, addr string, pause time.Duration) pausedResult {
	t.Helper()
	var res pausedResult
	a, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial A: %v", err)
	}
	defer a.Close()
	a.SetDeadline(time.Now().Add(30 * time.Second))
	if err := sendRequest(a, []byte{cmdDownload}); err != nil {
		t.Fatalf("A: %v", err)
	}
	got := testnet.NewChecker(seedDownload, downloadSize)
	if err := got.ReadN(a, 1<<20); err != nil {
		t.Fatalf("A: read the first MiB: %v", err)
	}

	data, _ := io.ReadAll(testnet.Stream(9, echoSize))
	var mu sync.Mutex
	var wg sync.WaitGroup
	tick := time.NewTicker(500 * time.Millisecond)
	end := time.After(pause) // the scenario: A reads nothing for pause
loop:
	for i := 0; ; i++ {
		select {
		case <-tick.C:
		case <-end:
			break loop
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rtt, err := echoOnce(addr, data, 10*time.Second)
			mu.Lock()
			defer mu.Unlock()
			res.bCount++
			if err != nil {
				res.bFails = append(res.bFails, fmt.Sprintf("B%d: %v", i, err))
				return
			}
			res.bWorst = max(res.bWorst, rtt)
		}()
	}
	tick.Stop()
	wg.Wait()

	a.SetDeadline(time.Now().Add(3 * time.Minute))
	res.aErr = got.ReadToEnd(a)
	res.aGot = got.N
	return res
}

// TestTrustPausedReader: a reader paused for 60 s in a 256 MiB download
// gets all of it intact once it reads again, and meanwhile a new connection
// every 0.5 s on the same tunnel has 64 KiB echoed in under 500 ms, none
// failing.
func TestTrustPausedReader(t *testing.T) {
	t.Parallel()
	c := cluster.Start(t)
	ns := c.Namespace(t)
	app := startPodApp(t, "big")
	c.Pod(t, ns, "big", cluster.PodOptions{
		Ports:   []corev1.ContainerPort{{ContainerPort: 80}},
		Forward: map[int32]string{80: app.addr()},
	})
	// The round-trip bound is about the design (a paused reader must not
	// hold up the others), so it is measured on the build users run; the
	// race detector slows the frame reader several times over. The rest of
	// the suite runs the -race build through the same paths.
	p := startForwardWith(t, cluster.TunnelsBinaryPlain(t), c, 1, "-n", ns, "--address", "127.0.0.1", "pod/big", ":80")
	res := pausedReader(t, p.addr("80"), 60*time.Second)

	if res.aErr != nil || res.aGot != downloadSize {
		t.Errorf("A got %d of %d bytes, then %s; want all of them intact, then a clean EOF", res.aGot, downloadSize, ending(res.aErr))
	}
	if len(res.bFails) > 0 {
		t.Errorf("%d of %d connections B failed while A was paused, first: %s", len(res.bFails), res.bCount, res.bFails[0])
	}
	if res.bWorst >= 500*time.Millisecond {
		t.Errorf("slowest round trip of B while A was paused: %s, want under 500ms", res.bWorst)
	}
	t.Logf("A: %d of %d bytes (%s); B: %d connections, %d failed, slowest %s", res.aGot, downloadSize, ending(res.aErr), res.bCount, len(res.bFails), res.bWorst.Round(time.Millisecond))
}

// replaceResult counts what replacePods' clients saw.
type replaceResult struct {
	counts map[replyOutcome]int
	byPod  map[string]int
	bad    []replyResult // the first few that were not ok
}

func (r replaceResult) total() int {
	n := 0
	for _, c := range r.counts {
		n += c
	}
	return n
}

func (r replaceResult) failed() int { return r.total() - r.counts[replyOK] }

func (r replaceResult) String() string {
	var parts []string
	for o := replyOK; o <= replyBad; o++ {
		if n := r.counts[o]; n > 0 || o == replyOK {
			parts = append(parts, fmt.Sprintf("%s: %d", o, n))
		}
	}
	return fmt.Sprintf("%d connections (%s); replies by pod %v", r.total(), strings.Join(parts, ", "), r.byPod)
}

// replacePods runs 4 clients that request replies through addr as fast as
// they can while the pod behind it is replaced, twice: first is deleted
// (its app stops accepting, finishing what it serves), and a replacement
// is created a second later, Ready soon after. After each replacement
// the clients go on until 20 replies came from the new pod, or 10 s.
func replacePods(t *testing.T, c *cluster.Cluster, ns, addr string, pods []string, apps map[string]*podApp, create func(name string)) replaceResult {
	t.Helper()
	res := replaceResult{counts: map[replyOutcome]int{}, byPod: map[string]int{}}
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := requestReply(addr, 30*time.Second)
				mu.Lock()
				res.counts[r.outcome]++
				if r.outcome == replyOK {
					res.byPod[r.pod]++
				} else if len(res.bad) < 10 {
					res.bad = append(res.bad, r)
				}
				mu.Unlock()
				if r.outcome == replyDialErr {
					// Nothing listens (kubectl exited): do not spin.
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	stopClients := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopClients()
	fromPod := func(pod string) int {
		mu.Lock()
		defer mu.Unlock()
		return res.byPod[pod]
	}
	waitReplies := func(pod string, n int, timeout time.Duration) {
		deadline := time.Now().Add(timeout)
		for fromPod(pod) < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling with a deadline
		}
	}
	waitReplies(pods[0], 20, 30*time.Second)
	zero := int64(0)
	for i, old := range pods[:len(pods)-1] {
		next := pods[i+1]
		if err := c.Kube(t).CoreV1().Pods(ns).Delete(t.Context(), old, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatalf("delete pod %s: %v", old, err)
		}
		apps[old].stopAccepting()
		time.Sleep(time.Second) // the scenario: the replacement comes a second later
		create(next)
		waitReplies(next, 20, 10*time.Second)
	}
	stopClients()
	return res
}

// replicas are the pods labelled app=repl that replacePods deletes and
// replaces one after another, each with its own app.
type replicas struct {
	t     *testing.T
	c     *cluster.Cluster
	ns    string
	names []string
	apps  map[string]*podApp
}

// startReplicas creates the first of three replicas in ns.
func startReplicas(t *testing.T, c *cluster.Cluster, ns string) *replicas {
	r := &replicas{t: t, c: c, ns: ns, names: []string{"repl-1", "repl-2", "repl-3"}, apps: map[string]*podApp{}}
	r.create(r.names[0])
	return r
}

// create starts name's app and its pod.
func (r *replicas) create(name string) {
	r.apps[name] = startPodApp(r.t, name)
	r.c.Pod(r.t, r.ns, name, cluster.PodOptions{
		Labels:  map[string]string{"app": "repl"},
		Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
		Forward: map[int32]string{80: r.apps[name].addr()},
	})
}

// TestTrustPodReplaced: a selector tunnel whose pod is deleted and
// replaced, twice, while clients request 1 MiB replies as fast as they
// can: every connection gets its full reply (connections made while no
// pod is Ready wait for the replacement), and the replacements are reached.
func TestTrustPodReplaced(t *testing.T) {
	t.Parallel()
	c := cluster.Start(t)
	ns := c.Namespace(t)
	r := startReplicas(t, c, ns)
	p := startUp(t, c, t.TempDir(), fmt.Sprintf("version: 1\nnamespace: %s\ntunnels:\n  repl:\n    selector: app=repl\n    ports: [\":http\"]\n", ns))
	addr := p.waitReady("repl", "http")

	res := replacePods(t, c, ns, addr, r.names, r.apps, r.create)
	t.Logf("tunnels: %s", res)
	if res.failed() > 0 {
		t.Errorf("%d of %d connections did not get their full reply while pods were replaced: %s", res.failed(), res.total(), res)
		for _, r := range res.bad {
			t.Errorf("  %s", r)
		}
	}
	for _, pod := range r.names[1:] {
		if res.byPod[pod] == 0 {
			t.Errorf("no connection reached the replacement %s: %s", pod, res)
		}
	}
	p.stop()
}

// TestTrustAPIServerRestart kills the kube-apiserver of a private cluster
// during a download and starts it again 15 s later, twice: each time the
// download's local connection gets a reset after what arrived, not a clean
// EOF, and the tunnel serves again within a second of the API being ready.
// (Twice, because a client that merely retries with backoff can be lucky
// once.)
func TestTrustAPIServerRestart(t *testing.T) {
	t.Parallel()
	const outage = 15 * time.Second // long enough for retries to back off
	pc := cluster.StartPrivate(t)
	ns := pc.Namespace(t)
	app := startPodApp(t, "web")
	pc.Pod(t, ns, "web", cluster.PodOptions{
		Ports:   []corev1.ContainerPort{{ContainerPort: 80}},
		Forward: map[int32]string{80: app.addr()},
	})
	p := startUp(t, pc.Cluster, t.TempDir(), fmt.Sprintf("version: 1\nnamespace: %s\ntunnels:\n  web:\n    pod: web\n    ports: [\":80\"]\n", ns))
	addr := p.waitReady("web", "80")
	if r := requestReply(addr, 30*time.Second); r.outcome != replyOK {
		t.Fatalf("before the kill: %s", r)
	}
	for round := 1; round <= 2; round++ {
		// A connection in flight when the apiserver dies.
		inFlight, err := net.DialTimeout("tcp4", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer inFlight.Close()
		inFlight.SetDeadline(time.Now().Add(30 * time.Second))
		if err := sendRequest(inFlight, []byte{cmdTrickle}); err != nil {
			t.Fatalf("round %d: in-flight connection: %v", round, err)
		}
		got := testnet.NewChecker(seedTrickle, 1<<30)
		if err := got.ReadN(inFlight, 64<<10); err != nil {
			t.Fatalf("round %d: in-flight connection: %v", round, err)
		}

		pc.KillAPIServer()
		killed := time.Now()
		err = got.ReadToEnd(inFlight)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("round %d: the connection in flight when the kube-apiserver died got %d bytes, then %s; want a reset (ECONNRESET)", round, got.N, ending(err))
		}
		p.waitStatus("the tunnel to see the kube-apiserver gone", func(d *statusDoc) bool {
			r, ok := d.row("web", "80")
			return ok && r.State != "ready"
		})

		// A client keeps asking from now on; the first full reply after the
		// restart is when the tunnel serves again.
		served := make(chan time.Time, 1)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if r := requestReply(addr, 40*time.Second); r.outcome == replyOK {
					served <- r.at
					return
				}
				time.Sleep(20 * time.Millisecond) // a client retrying, not synchronisation
			}
		}()
		stopClient := sync.OnceFunc(func() { close(stop); wg.Wait() })
		defer stopClient()

		<-time.After(time.Until(killed.Add(outage))) // the scenario: the kube-apiserver stays down
		pc.StartAPIServer()
		ready := pc.WaitAPIReady(2 * time.Minute)
		select {
		case at := <-served:
			if lag := at.Sub(ready); lag > time.Second {
				t.Errorf("round %d: the tunnel served again %s after the kube-apiserver was ready, want within 1s", round, lag.Round(time.Millisecond))
			} else {
				t.Logf("round %d: the tunnel served again %s after the kube-apiserver was ready", round, lag.Round(time.Millisecond))
			}
		case <-time.After(90 * time.Second):
			t.Fatalf("round %d: the tunnel did not serve within 90s of the kube-apiserver being ready", round)
		}
		stopClient()
	}
	p.stop()
}

// TestTrustAPIServerFrozen freezes the kube-apiserver of a private cluster
// with SIGSTOP for 15 s: the tunnel sees the loss within two keepalive
// intervals (5 s each), and connections made during the freeze, before and
// after the loss was seen, wait and then get their full replies.
func TestTrustAPIServerFrozen(t *testing.T) {
	t.Parallel()
	const (
		freeze = 15 * time.Second
		ping   = 5 * time.Second // the binary's keepalive interval
		// slack covers polling `tunnels status` and a race-enabled binary
		// on a busy machine, on top of the two intervals of the contract.
		slack = time.Second
	)
	pc := cluster.StartPrivate(t)
	ns := pc.Namespace(t)
	app := startPodApp(t, "web")
	pc.Pod(t, ns, "web", cluster.PodOptions{
		Ports:   []corev1.ContainerPort{{ContainerPort: 80}},
		Forward: map[int32]string{80: app.addr()},
	})
	p := startUp(t, pc.Cluster, t.TempDir(), fmt.Sprintf("version: 1\nnamespace: %s\ntunnels:\n  web:\n    pod: web\n    ports: [\":80\"]\n", ns))
	addr := p.waitReady("web", "80")
	if r := requestReply(addr, 30*time.Second); r.outcome != replyOK {
		t.Fatalf("before the freeze: %s", r)
	}

	pc.FreezeAPIServer()
	frozen := time.Now()
	thawOnce := sync.OnceFunc(pc.ThawAPIServer)
	defer thawOnce()

	// Connections made during the freeze: at 1 s, before the loss can be
	// seen, and after it.
	type frozenTry struct {
		at time.Duration
		r  replyResult
	}
	attempts := []time.Duration{time.Second, 6 * time.Second, 12 * time.Second}
	results := make(chan frozenTry, len(attempts))
	for _, at := range attempts {
		timer := time.AfterFunc(at, func() { results <- frozenTry{at, requestReply(addr, time.Minute)} })
		defer timer.Stop()
	}

	// The loss is seen: in the status, or in the log.
	var seen time.Duration
	for deadline := frozen.Add(freeze); seen == 0 && time.Now().Before(deadline); {
		d, err := p.status()
		if err == nil {
			if r, ok := d.row("web", "80"); ok && r.State != "ready" {
				seen = time.Since(frozen)
			}
		}
		if strings.Contains(p.stderr.String(), "lost connection") {
			seen = time.Since(frozen)
		}
		time.Sleep(100 * time.Millisecond) // polling with a deadline
	}
	switch {
	case seen == 0:
		t.Errorf("the frozen kube-apiserver was not noticed within the %s of the freeze", freeze)
	case seen > 2*ping+slack:
		t.Errorf("the frozen kube-apiserver was noticed after %s, want within two keepalive intervals (%s, plus %s of slack)", seen.Round(time.Millisecond), 2*ping, slack)
	default:
		t.Logf("the frozen kube-apiserver was noticed after %s", seen.Round(time.Millisecond))
	}

	<-time.After(time.Until(frozen.Add(freeze))) // the scenario: a 15 s freeze
	thawOnce()
	thawed := time.Now()
	for range attempts {
		select {
		case a := <-results:
			if a.r.outcome != replyOK {
				t.Errorf("the connection made %s into the freeze: %s; want its full reply once the kube-apiserver was back", a.at, a.r)
			} else {
				t.Logf("the connection made %s into the freeze got its reply %s after the thaw", a.at, a.r.at.Sub(thawed).Round(time.Millisecond))
			}
		case <-time.After(90 * time.Second):
			t.Fatal("connections made during the freeze did not end within 90s of the thaw")
		}
	}
	p.waitReady("web", "80")
	if r := requestReply(addr, 30*time.Second); r.outcome != replyOK {
		t.Errorf("after the thaw: %s", r)
	}
	p.stop()
}

// TestTrustCompareKubectl runs the paused-reader and pod-replacement
// scenarios through tunnels and through kubectl port-forward (SPDY), one
// after the other, and logs the numbers side by side. It asserts nothing,
// takes several minutes, and runs only with TUNNELS_COMPARE_KUBECTL=1:
//
//	cd tests && TUNNELS_COMPARE_KUBECTL=1 go test -race -run TestTrustCompareKubectl -v -timeout 30m ./e2e
func TestTrustCompareKubectl(t *testing.T) {
	if os.Getenv("TUNNELS_COMPARE_KUBECTL") != "1" {
		t.Skip("set TUNNELS_COMPARE_KUBECTL=1 to compare tunnels with kubectl port-forward (several minutes)")
	}
	t.Setenv("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false") // force SPDY, as tunnels speaks
	c := cluster.Start(t)
	var lines []string
	report := func(format string, args ...any) {
		lines = append(lines, fmt.Sprintf(format, args...))
		t.Logf(format, args...)
	}

	t.Run("paused reader", func(t *testing.T) {
		for _, client := range []string{"tunnels", "kubectl"} {
			t.Run(client, func(t *testing.T) {
				ns := c.Namespace(t)
				app := startPodApp(t, "big")
				c.Pod(t, ns, "big", cluster.PodOptions{
					Ports:   []corev1.ContainerPort{{ContainerPort: 80}},
					Forward: map[int32]string{80: app.addr()},
				})
				addr := localForward(t, c, client, ns, "pod/big")
				res := pausedReader(t, addr, 60*time.Second)
				report("paused reader, %-7s: A got %9d of %d bytes (%s); B: %d of %d failed, slowest ok round trip %s",
					client, res.aGot, downloadSize, ending(res.aErr), len(res.bFails), res.bCount, res.bWorst.Round(time.Millisecond))
				if len(res.bFails) > 0 {
					report("  first B failure: %s", res.bFails[0])
				}
			})
		}
	})
	t.Run("pod replaced", func(t *testing.T) {
		for _, client := range []string{"tunnels", "kubectl"} {
			t.Run(client, func(t *testing.T) {
				ns := c.Namespace(t)
				r := startReplicas(t, c, ns)
				c.Service(t, ns, "repl", map[string]string{"app": "repl"}, []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}})
				addr := localForward(t, c, client, ns, "svc/repl")
				res := replacePods(t, c, ns, addr, r.names, r.apps, r.create)
				report("pod replaced,  %-7s: %d of %d connections short or failed: %s", client, res.failed(), res.total(), res)
			})
		}
	})
	t.Logf("summary:\n%s", strings.Join(lines, "\n"))
}

// localForward forwards a free local port to port 80 of target with client
// (tunnels or kubectl) and returns the local address.
func localForward(t *testing.T, c *cluster.Cluster, client, ns, target string) string {
	t.Helper()
	if client == "tunnels" {
		// The plain build, as kubectl is one.
		return startForwardWith(t, cluster.TunnelsBinaryPlain(t), c, 1, "-n", ns, "--address", "127.0.0.1", target, ":80").addr("80")
	}
	p := startProc(t, filepath.Join(c.BinDir, "kubectl"), "port-forward", "--kubeconfig", c.AdminKubeconfig, "-n", ns, "--address", "127.0.0.1", target, ":80")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := forwardingFrom.FindStringSubmatch(p.stdout.String()); m != nil {
			return m[1]
		}
		select {
		case <-p.exited:
			t.Fatalf("kubectl port-forward exited (%v): %s", p.err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl port-forward not forwarding after 60s: %s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the output with a deadline
	}
}
