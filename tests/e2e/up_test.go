package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// upFixture is a namespace with two echo pods, "a" and "b", each with an
// "echo" port 80 and a second port 81 that answers too.
type upFixture struct {
	c  *cluster.Cluster
	ns string
}

func newUpFixture(t testing.TB) upFixture {
	t.Helper()
	c := cluster.Start(t)
	ns := c.Namespace(t)
	for _, name := range []string{"a", "b"} {
		echo := longEcho(t)
		c.Pod(t, ns, name, cluster.PodOptions{
			Labels:  map[string]string{"app": name},
			Ports:   []corev1.ContainerPort{{Name: "echo", ContainerPort: 80}, {Name: "alt", ContainerPort: 81}},
			Forward: map[int32]string{80: echo, 81: echo},
		})
	}
	return upFixture{c: c, ns: ns}
}

func (f upFixture) yaml(tunnels string) string {
	return fmt.Sprintf("version: 1\nnamespace: %s\ntunnels:\n%s", f.ns, tunnels)
}

// TestUpSaveStyles checks that every way editors and tools save a file is
// seen: each save adds one tunnel, which must then accept connections.
func TestUpSaveStyles(t *testing.T) {
	f := newUpFixture(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "tunnels.yaml")
	body := "  t0:\n    pod: a\n    ports: [\":80\"]\n"
	p := startUp(t, f.c, dir, f.yaml(body))
	dialEcho(t, p.waitReady("t0", "80"), "t0")

	saves := []struct {
		name string
		save func(data string)
	}{
		{"in-place write", func(data string) {
			fh, err := os.OpenFile(file, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			// Same length or longer: overwrite, then extend.
			fh.WriteAt([]byte(data), 0)
			fh.Close()
		}},
		{"truncate then write", func(data string) {
			fh, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			fh.Sync()
			time.Sleep(30 * time.Millisecond) // an editor's pause between truncate and write; not synchronisation
			fh.WriteString(data)
			fh.Close()
		}},
		{"write temp then rename", func(data string) {
			tmp := filepath.Join(dir, ".tunnels.yaml.swp")
			writeFile(t, tmp, data)
			if err := os.Rename(tmp, file); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete and recreate", func(data string) {
			os.Remove(file)
			time.Sleep(30 * time.Millisecond) // a gap between delete and create; not synchronisation
			writeFile(t, file, data)
		}},
	}
	for i, s := range saves {
		name := fmt.Sprintf("t%d", i+1)
		body += fmt.Sprintf("  %s:\n    pod: b\n    ports: [\":80\"]\n", name)
		s.save(f.yaml(body))
		addr := p.waitReady(name, "80")
		dialEcho(t, addr, s.name)
	}
	p.stop()
}

// TestUpManyConnectionsOpenMoreToThePod holds a dozen connections open
// through one tunnel at once: past four, the tunnel opens more
// port-forward connections to the pod through the API server, status
// shows how many, and every held connection, on whichever, still echoes.
func TestUpManyConnectionsOpenMoreToThePod(t *testing.T) {
	f := newUpFixture(t)
	p := startUp(t, f.c, t.TempDir(), f.yaml("  many:\n    pod: a\n    ports: [\":80\"]\n"))
	addr := p.waitReady("many", "80")
	type held struct {
		conn net.Conn
		r    *bufio.Reader
	}
	var hs []held
	for i := range 12 {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		defer conn.Close()
		h := held{conn, bufio.NewReader(conn)}
		echoLine(t, h.conn, h.r, fmt.Sprintf("open %d", i))
		hs = append(hs, h)
	}
	p.waitStatus("more than one connection to the pod", func(d *statusDoc) bool {
		r, ok := d.row("many", "80")
		return ok && r.PodConns >= 2 && r.PodConns <= 4 && r.Active == 12
	})
	for i, h := range hs {
		echoLine(t, h.conn, h.r, fmt.Sprintf("still %d", i))
	}
	p.stop()
}

// TestUpSymlinkSwap edits a file the way a Kubernetes ConfigMap mount
// changes: the file is a symlink through ..data, which is swapped atomically.
func TestUpSymlinkSwap(t *testing.T) {
	f := newUpFixture(t)
	dir := t.TempDir()
	write := func(version, data string) {
		vdir := filepath.Join(dir, version)
		os.MkdirAll(vdir, 0o755)
		writeFile(t, filepath.Join(vdir, "tunnels.yaml"), data)
		tmp := filepath.Join(dir, "..data_tmp")
		os.Remove(tmp)
		if err := os.Symlink(version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	write("v1", f.yaml("  one:\n    pod: a\n    ports: [\":80\"]\n"))
	if err := os.Symlink(filepath.Join("..data", "tunnels.yaml"), filepath.Join(dir, "tunnels.yaml")); err != nil {
		t.Fatal(err)
	}
	p := startUp(t, f.c, dir, "")
	dialEcho(t, p.waitReady("one", "80"), "one")
	write("v2", f.yaml("  one:\n    pod: a\n    ports: [\":80\"]\n  two:\n    pod: b\n    ports: [\":80\"]\n"))
	dialEcho(t, p.waitReady("two", "80"), "two")
	p.stop()
}

// TestUpEditsKeepConnections opens a connection, then adds a tunnel, then
// adds a port to the connection's own tunnel: the connection keeps moving
// data through both edits, and an invalid save changes nothing.
func TestUpEditsKeepConnections(t *testing.T) {
	f := newUpFixture(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "tunnels.yaml")
	p := startUp(t, f.c, dir, f.yaml("  a:\n    pod: a\n    ports: [\":echo\"]\n"))
	addr := p.waitReady("a", "echo")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	echoLine(t, conn, r, "before")
	before, _ := p.status()
	podBefore, _ := before.row("a", "echo")

	// Add another tunnel.
	writeFile(t, file, f.yaml("  a:\n    pod: a\n    ports: [\":echo\"]\n  b:\n    pod: b\n    ports: [\":80\"]\n"))
	dialEcho(t, p.waitReady("b", "80"), "b")
	echoLine(t, conn, r, "after adding a tunnel")

	// Add a port to the connection's own tunnel.
	writeFile(t, file, f.yaml("  a:\n    pod: a\n    ports: [\":echo\", \":alt\"]\n  b:\n    pod: b\n    ports: [\":80\"]\n"))
	dialEcho(t, p.waitReady("a", "alt"), "alt")
	echoLine(t, conn, r, "after adding a port")

	// The first port kept its listener: same local address, and the
	// connection above never broke.
	d, _ := p.status()
	rowA, _ := d.row("a", "echo")
	if rowA.LocalPort != podBefore.LocalPort {
		t.Errorf("port a:echo moved from %d to %d", podBefore.LocalPort, rowA.LocalPort)
	}

	// An invalid save keeps every tunnel serving and reports the problem.
	writeFile(t, file, f.yaml("  a:\n    pod: a\n    ports: [\"70000\"]\n"))
	d = p.waitStatus("the rejected save to be reported", func(d *statusDoc) bool { return d.Config.Error != "" })
	if !strings.Contains(d.Config.Error, "tunnels.yaml:") || !strings.Contains(d.Config.Error, "70000") {
		t.Errorf("config error %q does not point at the file and the bad spec", d.Config.Error)
	}
	if len(d.Tunnels) != 3 {
		t.Errorf("after an invalid save: %d ports running, want 3", len(d.Tunnels))
	}
	echoLine(t, conn, r, "after an invalid save")
	rowB, _ := d.row("b", "80")
	dialEcho(t, rowB.Local[0], "b still serves")
	p.stop()
}

// TestUpPortChangeWithNewTunnelToSamePod: one save that gives db a fixed
// local port and adds cache, a second tunnel to db's pod on another remote
// port, leaves both serving. The save stops db's port and starts cache's
// and db's new one on the pod's one session; cache's new remote port makes
// the session resolve again, and db's port, added while that resolve was
// in flight, used to be left out of its result: db's connections were
// accepted and then waited, with nothing coming back. Whether the resolve
// reads the session's ports before db's is added again depends on
// scheduling (it did in about one save in two), so the test saves several
// times, each time with db on another local port and cache on a remote
// port the session has not resolved yet.
func TestUpPortChangeWithNewTunnelToSamePod(t *testing.T) {
	const saves = 6
	f := newUpFixture(t)
	echo := longEcho(t)
	opts := cluster.PodOptions{Forward: map[int32]string{}}
	for _, port := range append([]int32{5432}, cacheRemotes(saves)...) {
		opts.Ports = append(opts.Ports, corev1.ContainerPort{ContainerPort: port})
		opts.Forward[port] = echo
	}
	f.c.Pod(t, f.ns, "db", opts)
	dir := t.TempDir()
	file := filepath.Join(dir, "tunnels.yaml")
	p := startUp(t, f.c, dir, f.yaml("  db:\n    pod: db\n    ports: [\":5432\"]\n"))
	dialEcho(t, p.waitReady("db", "5432"), "before")

	for i, remote := range cacheRemotes(saves) {
		port, cacheRemote := freeLocalPort(t), fmt.Sprint(remote)
		writeFile(t, file, f.yaml(fmt.Sprintf("  db:\n    pod: db\n    ports: [\"%d:5432\"]\n  cache:\n    pod: db\n    ports: [\":%s\"]\n", port, cacheRemote)))
		d := p.waitStatus(fmt.Sprintf("save %d applied", i+1), func(d *statusDoc) bool {
			db, ok1 := d.row("db", "5432")
			cache, ok2 := d.row("cache", cacheRemote)
			return ok1 && ok2 && db.LocalPort == port && db.State == "ready" && cache.State == "ready" && len(cache.Local) > 0
		})
		db, _ := d.row("db", "5432")
		cache, _ := d.row("cache", cacheRemote)
		dialEcho(t, db.Local[0], fmt.Sprintf("db after save %d", i+1))
		dialEcho(t, cache.Local[0], fmt.Sprintf("cache after save %d", i+1))
	}
	p.stop()

	// cache's ports share db's session, yet are logged as cache's.
	listening := 0
	for line := range strings.Lines(p.stderr.String()) {
		if strings.Contains(line, "msg=listening") && !strings.Contains(line, "remote=5432") {
			listening++
			if !strings.Contains(line, "tunnel=cache") {
				t.Errorf("cache's port logged as another tunnel's: %s", line)
			}
		}
	}
	if listening != saves {
		t.Errorf("%d lines say one of cache's ports is listening, want %d", listening, saves)
	}
}

// cacheRemotes returns the remote ports of cache in
// TestUpPortChangeWithNewTunnelToSamePod, one a save.
func cacheRemotes(n int) []int32 {
	rs := make([]int32, n)
	for i := range rs {
		rs[i] = int32(6001 + i)
	}
	return rs
}

// TestUpRemoveFreesPort removes a tunnel and checks its port is free again
// within a second, while the other tunnel keeps serving.
func TestUpRemoveFreesPort(t *testing.T) {
	f := newUpFixture(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "tunnels.yaml")
	port := freeLocalPort(t)
	p := startUp(t, f.c, dir, f.yaml(fmt.Sprintf("  a:\n    pod: a\n    ports: [\"%d:80\"]\n  b:\n    pod: b\n    ports: [\":80\"]\n", port)))
	p.waitReady("a", "80")
	bAddr := p.waitReady("b", "80")
	writeFile(t, file, f.yaml("  b:\n    pod: b\n    ports: [\":80\"]\n"))
	saved := time.Now()
	var l net.Listener
	var err error
	for time.Since(saved) < time.Second {
		if l, err = net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	if err != nil {
		t.Fatalf("port %d still in use 1s after its tunnel was removed: %v", port, err)
	}
	l.Close()
	dialEcho(t, bAddr, "b")
	p.stop()
}

// TestUpPortInUseAndSIGHUP: a tunnel whose port is taken fails alone and is
// retried with backoff; SIGHUP retries at once once the port is free. On
// localhost, a port taken on 127.0.0.1 alone (a local server on this
// machine) fails the tunnel too, rather than letting it listen on ::1 while
// 127.0.0.1 reaches the other server.
//
// To tell SIGHUP from the backoff, the ports are freed only once the next
// retry of both is at least minLead away, as the status reports it, and
// both must be bound before then.
func TestUpPortInUseAndSIGHUP(t *testing.T) {
	const minLead = 2 * time.Second
	f := newUpFixture(t)
	dir := t.TempDir()
	busy := map[string]net.Listener{}
	var body strings.Builder
	for _, tc := range []struct{ name, address string }{{"busy-ip", "\n    address: 127.0.0.1"}, {"busy-localhost", ""}} {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		busy[tc.name] = l
		fmt.Fprintf(&body, "  %s:\n    pod: a%s\n    ports: [\"%d:80\"]\n", tc.name, tc.address, l.Addr().(*net.TCPAddr).Port)
	}
	body.WriteString("  ok:\n    pod: b\n    ports: [\":80\"]\n")
	p := startUp(t, f.c, dir, f.yaml(body.String()))
	dialEcho(t, p.waitReady("ok", "80"), "ok")
	for name := range busy {
		d := p.waitStatus(name+" to report its error", func(d *statusDoc) bool {
			r, ok := d.row(name, "80")
			return ok && r.LastError != ""
		})
		r, _ := d.row(name, "80")
		if r.State != "retrying" || !strings.Contains(r.LastError, "address already in use") || r.NextRetry.IsZero() {
			t.Errorf("%s: state %q, error %q, next retry %v; want retrying, 'address already in use', a time", name, r.State, r.LastError, r.NextRetry)
		}
	}
	// The backoff doubles: wait until both retries are far enough off.
	var deadline time.Time
	p.waitStatus(fmt.Sprintf("both retries at least %v away", minLead), func(d *statusDoc) bool {
		deadline = time.Time{}
		for name := range busy {
			r, ok := d.row(name, "80")
			if !ok || time.Until(r.NextRetry) < minLead {
				return false
			}
			if deadline.IsZero() || r.NextRetry.Before(deadline) {
				deadline = r.NextRetry
			}
		}
		return true
	})
	for _, l := range busy {
		l.Close()
	}
	p.signal(syscall.SIGHUP)
	// Both bound first, then dialled: a slow echo through the first must
	// not count against the second's binding.
	addrs := map[string]string{}
	for name := range busy {
		addrs[name] = p.waitReady(name, "80")
		if now := time.Now(); !now.Before(deadline) {
			t.Errorf("%s bound at %v, not before its backoff's retry at %v: SIGHUP did not retry it", name, now.Format(time.StampMilli), deadline.Format(time.StampMilli))
		}
	}
	for name, addr := range addrs {
		dialEcho(t, addr, name+" is free now")
	}
	p.stop()
}

// TestUpHundredTunnels starts 100 tunnels and checks every one listens and
// forwards, and that the status matches what is bound.
func TestUpHundredTunnels(t *testing.T) {
	f := newUpFixture(t)
	dir := t.TempDir()
	var b strings.Builder
	for i := 0; i < 100; i++ {
		pod := []string{"a", "b"}[i%2]
		fmt.Fprintf(&b, "  t%03d:\n    pod: %s\n    ports: [\":80\"]\n", i, pod)
	}
	p := startUp(t, f.c, dir, f.yaml(b.String()))
	d := p.waitStatus("100 tunnels ready", func(d *statusDoc) bool {
		if len(d.Tunnels) != 100 {
			return false
		}
		for _, r := range d.Tunnels {
			if r.State != "ready" {
				return false
			}
		}
		return true
	})
	seen := map[string]bool{}
	for _, r := range d.Tunnels {
		if seen[r.Local[0]] {
			t.Fatalf("two tunnels report %s", r.Local[0])
		}
		seen[r.Local[0]] = true
		conn, err := net.DialTimeout("tcp", r.Local[0], 5*time.Second)
		if err != nil {
			t.Fatalf("tunnel %s: status says %s but dial fails: %v", r.Tunnel, r.Local[0], err)
		}
		conn.Close()
	}
	// Status matches reality: one more round trip shows up in the counters.
	r := d.Tunnels[0]
	dialEcho(t, r.Local[0], "count me")
	d = p.waitStatus("counters to move", func(d *statusDoc) bool {
		got, _ := d.row(r.Tunnel, r.Remote)
		return got.Total >= r.Total+1 && got.BytesOut > r.BytesOut && got.BytesIn > r.BytesIn
	})
	p.stop()
}

// TestUpRandomPortRemembered: a free-port spec keeps its chosen port across
// a reload that leaves it unchanged and across a restart of tunnels up, and
// `tunnels port` prints it for scripts.
func TestUpRandomPortRemembered(t *testing.T) {
	f := newUpFixture(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "tunnels.yaml")
	p := startUp(t, f.c, dir, f.yaml("  a:\n    pod: a\n    ports: [\":80\"]\n"))
	first := p.waitReady("a", "80")

	out, err := exec.Command(p.bin, "port", "-f", file, "a", "80").Output()
	if err != nil {
		t.Fatalf("tunnels port: %v", err)
	}
	if lines := strings.Fields(string(out)); len(lines) == 0 || lines[0] != first {
		t.Errorf("tunnels port a 80 = %q, want first line %s", out, first)
	}

	writeFile(t, file, f.yaml("  a:\n    pod: a\n    ports: [\":80\"]\n  b:\n    pod: b\n    ports: [\":80\"]\n"))
	p.waitReady("b", "80")
	if again := p.waitReady("a", "80"); again != first {
		t.Errorf("after a reload a:80 moved from %s to %s", first, again)
	}
	p.stop()

	p2 := startUp(t, f.c, dir, "")
	if again := p2.waitReady("a", "80"); again != first {
		t.Errorf("after a restart a:80 moved from %s to %s", first, again)
	}
	dialEcho(t, first, "remembered")
	p2.stop()
}

// TestUpMissingPodRecovers: a tunnel whose pod does not exist yet fails
// alone, shows why, and starts forwarding as soon as the pod watch sees the
// pod Ready, while the other tunnel serves throughout. The pod is created
// only once the session's next retry by backoff is far enough off that
// the pod's readiness comes first (the status reports the retry's time),
// and no SIGHUP is sent: only the pod watch can start it in time.
func TestUpMissingPodRecovers(t *testing.T) {
	f := newUpFixture(t)
	dir := t.TempDir()
	p := startUp(t, f.c, dir, f.yaml("  late:\n    pod: late\n    ports: [\":80\"]\n  ok:\n    pod: a\n    ports: [\":80\"]\n"))
	okAddr := p.waitReady("ok", "80")
	d := p.waitStatus("the missing pod to be reported", func(d *statusDoc) bool {
		r, ok := d.row("late", "80")
		return ok && r.LastError != ""
	})
	r, _ := d.row("late", "80")
	if r.State != "retrying" || !strings.Contains(r.LastError, "late") || !strings.Contains(r.LastError, f.ns) {
		t.Errorf("late tunnel: state %q, error %q; want retrying with an error naming the pod and namespace", r.State, r.LastError)
	}
	// Its listener is bound all the same, so clients can connect early.
	if len(r.Local) == 0 {
		t.Errorf("late tunnel has no bound address while its pod is missing")
	}
	dialEcho(t, okAddr, "ok while late is missing")

	// The backoff doubles; kwok makes a pod Ready within a second or two.
	const minLead = 5 * time.Second
	d = p.waitStatus(fmt.Sprintf("late's retry at least %v away", minLead), func(d *statusDoc) bool {
		r, ok := d.row("late", "80")
		return ok && time.Until(r.NextRetry) >= minLead
	})
	r, _ = d.row("late", "80")
	deadline := r.NextRetry
	f.c.Pod(t, f.ns, "late", cluster.PodOptions{
		Ports:   []corev1.ContainerPort{{Name: "echo", ContainerPort: 80}},
		Forward: map[int32]string{80: longEcho(t)},
	})
	addr := p.waitReady("late", "80")
	if now := time.Now(); !now.Before(deadline) {
		t.Errorf("late ready at %v, not before its backoff's retry at %v: the pod watch did not start it", now.Format(time.StampMilli), deadline.Format(time.StampMilli))
	}
	if !strings.Contains(p.stderr.String(), "a pod became ready; resolving the target again") {
		t.Errorf("the log does not show the pod watch starting the tunnel:\n%s", p.stderr.String())
	}
	dialEcho(t, addr, "late is here")
	p.stop()
}

// TestUpMissingNamespaceWaits: a tunnel into a namespace that does not
// exist shows failed, naming the namespace, with no retry scheduled (a
// backoff would show retrying and its time), while the other tunnel
// serves. Once the namespace is created and a pod there becomes Ready, the
// pod watch starts it: nothing else can, as no save or SIGHUP is sent and a
// failed session has no timer.
func TestUpMissingNamespaceWaits(t *testing.T) {
	f := newUpFixture(t)
	missing := cluster.NewNamespaceName()
	yaml := f.yaml(fmt.Sprintf("  ok:\n    pod: a\n    ports: [\":80\"]\n  lost:\n    namespace: %s\n    pod: late\n    ports: [\":80\"]\n", missing))
	p := startUp(t, f.c, t.TempDir(), yaml)
	okAddr := p.waitReady("ok", "80")
	d := p.waitStatus("the missing namespace to be reported", func(d *statusDoc) bool {
		r, ok := d.row("lost", "80")
		return ok && r.LastError != ""
	})
	r, _ := d.row("lost", "80")
	if r.State != "failed" || !strings.Contains(r.LastError, "namespace not found") || !strings.Contains(r.LastError, missing) || !r.NextRetry.IsZero() {
		t.Errorf("lost tunnel: state %q, error %q, next retry %v; want failed, namespace not found, naming %s, no retry", r.State, r.LastError, r.NextRetry, missing)
	}
	dialEcho(t, okAddr, "ok while lost waits")

	f.c.NamespaceNamed(t, missing)
	f.c.Pod(t, missing, "late", cluster.PodOptions{
		Ports:   []corev1.ContainerPort{{Name: "echo", ContainerPort: 80}},
		Forward: map[int32]string{80: longEcho(t)},
	})
	addr := p.waitReady("lost", "80")
	if !strings.Contains(p.stderr.String(), "a pod became ready; resolving the target again") {
		t.Errorf("the log does not show the pod watch starting the tunnel:\n%s", p.stderr.String())
	}
	dialEcho(t, addr, "found")
	p.stop()
}

// TestUpForbiddenFailsAlone runs as the limited user: a tunnel into a
// namespace it may not use fails alone with a message naming what is
// forbidden, while its tunnel in the allowed namespace serves; SIGTERM stops
// it cleanly.
func TestUpForbiddenFailsAlone(t *testing.T) {
	f := newUpFixture(t)
	c := f.c
	// The limited namespace outlives tests: a fresh pod name each run.
	pod := fmt.Sprintf("up-forbidden-%d", time.Now().UnixNano()%1e9)
	c.Pod(t, c.LimitedNamespace, pod, cluster.PodOptions{
		Ports:   []corev1.ContainerPort{{Name: "echo", ContainerPort: 80}},
		Forward: map[int32]string{80: longEcho(t)},
	})
	dir := t.TempDir()
	yaml := fmt.Sprintf("version: 1\ntunnels:\n  allowed:\n    namespace: %s\n    pod: %s\n    ports: [\":80\"]\n  denied:\n    namespace: %s\n    pod: a\n    ports: [\":80\"]\n",
		c.LimitedNamespace, pod, f.ns)
	// A later --kubeconfig wins over the admin one startUp passes.
	p := startUp(t, c, dir, yaml, "--kubeconfig", c.LimitedKubeconfig)
	dialEcho(t, p.waitReady("allowed", "80"), "allowed")
	d := p.waitStatus("the forbidden tunnel to report why", func(d *statusDoc) bool {
		r, ok := d.row("denied", "80")
		return ok && r.LastError != ""
	})
	r, _ := d.row("denied", "80")
	if r.State == "ready" || !strings.Contains(r.LastError, "forbidden") || !strings.Contains(r.LastError, f.ns) {
		t.Errorf("denied tunnel: state %q, error %q; want not ready, forbidden, naming namespace %s", r.State, r.LastError, f.ns)
	}
	p.stopWith(syscall.SIGTERM)
}

// TestUpHealsToNewPod: a selector tunnel connected to one pod moves to its
// replacement when that pod is deleted, on the same local port, and new
// connections reach the new pod. (kwok keeps serving a deleted pod's
// streams, so only the pod watch can make the move here.)
func TestUpHealsToNewPod(t *testing.T) {
	f := newUpFixture(t)
	named := func(name string) string {
		return cluster.Handler(t, func(conn net.Conn) { fmt.Fprintf(conn, "%s\n", name) })
	}
	podOpts := func(name string) cluster.PodOptions {
		return cluster.PodOptions{
			Labels:  map[string]string{"app": "heal"},
			Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
			Forward: map[int32]string{80: named(name)},
		}
	}
	f.c.Pod(t, f.ns, "heal-1", podOpts("heal-1"))
	dir := t.TempDir()
	p := startUp(t, f.c, dir, f.yaml("  heal:\n    selector: app=heal\n    ports: [\":http\"]\n"))
	addr := p.waitReady("heal", "http")
	readName := func() string {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			t.Fatalf("read from %s: %v", addr, err)
		}
		return strings.TrimSpace(line)
	}
	if got := readName(); got != "heal-1" {
		t.Fatalf("first connection reached %q, want heal-1", got)
	}

	// A second Ready pod alone moves nothing: heal-1 is still fine.
	f.c.Pod(t, f.ns, "heal-2", podOpts("heal-2"))
	if got := readName(); got != "heal-1" {
		t.Fatalf("with heal-2 up, a connection reached %q, want still heal-1", got)
	}

	zero := int64(0)
	if err := f.c.Kube(t).CoreV1().Pods(f.ns).Delete(t.Context(), "heal-1", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("the tunnel to move to heal-2", func(d *statusDoc) bool {
		r, ok := d.row("heal", "http")
		return ok && r.State == "ready" && r.Pod == "heal-2"
	})
	if again := p.waitReady("heal", "http"); again != addr {
		t.Errorf("the listener moved from %s to %s; it must stay bound", addr, again)
	}
	if got := readName(); got != "heal-2" {
		t.Errorf("after heal-1 was deleted a connection reached %q, want heal-2", got)
	}
	p.stop()
}

// TestUpAddPortStaysOnPod: adding a port to a selector tunnel while a newer
// matching pod exists keeps the tunnel on its pod (its open connection keeps
// working), and so does SIGHUP; only a pod that goes away moves it.
func TestUpAddPortStaysOnPod(t *testing.T) {
	f := newUpFixture(t)
	named := func(name string) string {
		return cluster.Handler(t, func(conn net.Conn) {
			fmt.Fprintf(conn, "%s\n", name)
			io.Copy(conn, conn)
		})
	}
	podOpts := func(name string) cluster.PodOptions {
		return cluster.PodOptions{
			Labels:  map[string]string{"app": "sticky"},
			Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 80}, {Name: "alt", ContainerPort: 81}},
			Forward: map[int32]string{80: named(name), 81: named(name)},
		}
	}
	f.c.Pod(t, f.ns, "sticky-1", podOpts("sticky-1"))
	dir := t.TempDir()
	file := filepath.Join(dir, "tunnels.yaml")
	p := startUp(t, f.c, dir, f.yaml("  s:\n    selector: app=sticky\n    ports: [\":http\"]\n"))
	addr := p.waitReady("s", "http")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if hello, _ := r.ReadString('\n'); strings.TrimSpace(hello) != "sticky-1" {
		t.Fatalf("first connection reached %q, want sticky-1", hello)
	}

	f.c.Pod(t, f.ns, "sticky-2", podOpts("sticky-2")) // newer, Ready
	writeFile(t, file, f.yaml("  s:\n    selector: app=sticky\n    ports: [\":http\", \":alt\"]\n"))
	p.waitReady("s", "alt")
	before := p.waitStatus("the save applied", func(d *statusDoc) bool { return !d.Config.LastReload.IsZero() }).Config.LastReload
	p.signal(syscall.SIGHUP)
	d := p.waitStatus("the reload after SIGHUP", func(d *statusDoc) bool { return d.Config.LastReload.After(before) })
	for _, remote := range []string{"http", "alt"} {
		if row, _ := d.row("s", remote); row.Pod != "sticky-1" {
			t.Errorf("port %s is on pod %q, want sticky-1", remote, row.Pod)
		}
	}
	echoLine(t, conn, r, "still here")
	p.stop()
}
