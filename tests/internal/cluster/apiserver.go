package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// Private is a cluster of one test's own: its own etcd, kube-apiserver and
// kwok (no real node), in a temporary directory, stopped when the test
// ends. Tests that kill, restart or freeze the kube-apiserver use one, so
// that the shared cluster of Start, which other tests and packages use at
// the same time, is never disturbed.
type Private struct {
	*Cluster
	t testing.TB
	// apiArgs is kube-apiserver's command line as it was started, to start
	// it again the same way.
	apiArgs []string
}

// apiServer names the kube-apiserver in State.PIDs.
const apiServer = "kube-apiserver"

// StartPrivate starts a private cluster and stops it, and removes its
// directory, when the test ends. It skips the test as Start does, and it
// starts (or reuses) the shared cluster first, which builds the binaries
// once. It takes about as long as a cold start of the shared cluster
// (seconds): use it only for tests that must break the control plane.
func StartPrivate(t testing.TB) *Private {
	t.Helper()
	shared := Start(t)
	o := Options{Log: testLog{t}, NoNode: true}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var (
		dir string
		st  *State
		err error
	)
	// A start can fail for reasons that have nothing to do with the test:
	// a free port picked for a process is taken by another before it binds,
	// on a machine that runs other clusters. Up stops what it started.
	for attempt := 1; attempt <= 3; attempt++ {
		dir = t.TempDir()
		// Up runs tests/cluster/build.sh, which rewrites the kwok assets
		// that every boot reads; the shared cluster's lock keeps that away
		// from any other boot (the shared cluster's and other private ones).
		unlock, lerr := lock(shared.Dir)
		if lerr != nil {
			t.Fatalf("start a private cluster: %v", lerr)
		}
		st, err = Up(ctx, dir, o)
		unlock()
		if err == nil {
			break
		}
		t.Logf("start a private cluster in %s (attempt %d of 3): %v", dir, attempt, err)
		for _, name := range order {
			logTail(t, filepath.Join(dir, "logs", name+".log"), 10)
		}
	}
	if err != nil {
		t.Fatalf("start a private cluster: %v", err)
	}
	p := &Private{t: t, Cluster: &Cluster{
		State:              st,
		AdminKubeconfig:    st.Kubeconfig("admin"),
		LimitedKubeconfig:  st.Kubeconfig("limited"),
		LimitedNamespace:   LimitedNamespace,
		NoRightsKubeconfig: st.Kubeconfig("nobody"),
	}}
	// Registered after TempDir's, so it runs before the directory goes.
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range order {
				logTail(t, st.logPath(name), 30)
			}
		}
		// A frozen apiserver would not see the SIGTERM of Down.
		_ = syscall.Kill(p.PIDs[apiServer], syscall.SIGCONT)
		if err := Down(dir, Options{}); err != nil {
			t.Errorf("stop the private cluster in %s: %v", dir, err)
		}
	})
	if p.rest, err = clientcmd.BuildConfigFromFlags("", st.Kubeconfig("admin")); err != nil {
		t.Fatalf("private cluster: %v", err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.PIDs[apiServer]))
	if err != nil {
		t.Fatalf("read the command line of the private kube-apiserver: %v", err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 2 {
		t.Fatalf("the private kube-apiserver's command line %q has no arguments", cmdline)
	}
	p.apiArgs = args[1:]
	return p
}

// logTail logs the last n lines of the log at path.
func logTail(t testing.TB, path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s: %v", path, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	t.Logf("the last lines of %s:\n%s", path, strings.Join(lines[max(0, len(lines)-n):], "\n"))
}

// testLog sends a cluster's progress lines to the test log.
type testLog struct{ t testing.TB }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// KillAPIServer kills the kube-apiserver with SIGKILL, as a crash or the
// OOM killer would: the kernel closes its connections. It returns once the
// process is gone.
func (p *Private) KillAPIServer() {
	p.t.Helper()
	pid := p.PIDs[apiServer]
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		p.t.Fatalf("kill kube-apiserver (pid %d): %v", pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid, apiServer) {
		if time.Now().After(deadline) {
			p.t.Fatalf("kube-apiserver (pid %d) still runs 10s after SIGKILL", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// StartAPIServer starts the kube-apiserver again, with the command line it
// was first started with (same port, same etcd, same certificates), and
// records its PID, in the state file too, so that the cleanup stops it. It
// does not wait for it: see WaitAPIReady.
func (p *Private) StartAPIServer() {
	p.t.Helper()
	unlock, err := lock(p.Dir)
	if err != nil {
		p.t.Fatalf("restart kube-apiserver: %v", err)
	}
	defer unlock()
	if err := p.State.start(apiServer, p.apiArgs); err != nil {
		p.t.Fatalf("restart kube-apiserver: %v", err)
	}
	b, _ := json.MarshalIndent(p.State, "", "  ")
	if err := os.WriteFile(filepath.Join(p.Dir, "state.json"), b, 0o600); err != nil {
		p.t.Fatalf("record the restarted kube-apiserver: %v", err)
	}
}

// FreezeAPIServer stops the kube-apiserver with SIGSTOP. Its connections
// stay open and the kernel keeps accepting bytes (and new connections) for
// it, but nothing answers: a dead link, as its clients see it. ThawAPIServer
// resumes it; so does the end of the test.
func (p *Private) FreezeAPIServer() { p.t.Helper(); p.signalAPIServer(syscall.SIGSTOP) }

// ThawAPIServer resumes a frozen kube-apiserver with SIGCONT.
func (p *Private) ThawAPIServer() { p.t.Helper(); p.signalAPIServer(syscall.SIGCONT) }

func (p *Private) signalAPIServer(sig syscall.Signal) {
	p.t.Helper()
	pid := p.PIDs[apiServer]
	if err := syscall.Kill(pid, sig); err != nil {
		p.t.Fatalf("send %v to kube-apiserver (pid %d): %v", sig, pid, err)
	}
}

// WaitAPIReady polls the kube-apiserver's /readyz every 20 ms until it
// answers 200 OK, and returns when it did, or fails the test after
// timeout.
func (p *Private) WaitAPIReady(timeout time.Duration) time.Time {
	p.t.Helper()
	client, err := p.httpClient("admin")
	if err != nil {
		p.t.Fatalf("readyz client: %v", err)
	}
	defer client.CloseIdleConnections()
	client.Timeout = time.Second
	deadline := time.Now().Add(timeout)
	for {
		err := getOK(context.Background(), client, p.Server+"/readyz")
		if err == nil {
			return time.Now()
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("kube-apiserver not ready %s after asked (see %s): %v", timeout, p.logPath(apiServer), err)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// Pod is Cluster.Pod for a private cluster. It works around a kwok v0.8.0
// bug that the shared cluster hides: kwok caches its list of PortForward
// objects under the informer's last resource version, which moves before
// the informer's store has the new object, so a lookup in between caches a
// list without it until the next PortForward event. With the few objects
// of a private cluster that event may never come; so while kwok answers
// "no forward found", Pod updates a PortForward of its own, which moves
// the version again.
func (p *Private) Pod(t testing.TB, ns, name string, o PodOptions) *corev1.Pod {
	t.Helper()
	o.NoWait = true
	p.Cluster.Pod(t, ns, name, o)
	pod := p.WaitPodReady(t, ns, name)
	for port := range o.Forward {
		deadline := time.Now().Add(30 * time.Second)
		for bump := 1; ; bump++ {
			msg, err := p.forwardProbe(ns, name, port)
			if err == nil && !strings.Contains(msg, "no forward found") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kwok does not forward port %d of pod %s/%s: %v %s", port, ns, name, err, msg)
			}
			// Any address will do: the object only moves kwok's version.
			p.SetForward(t, "default", "kwok-cache-bump", map[int32]string{1: "127.0.0.1:" + strconv.Itoa(bump)})
			time.Sleep(200 * time.Millisecond) // polling with a deadline
		}
	}
	return pod
}

// forwardProbe opens one port-forward stream pair to the pod's port with
// client-go, half-closes it, and returns what came on the error stream
// within 2 s.
func (p *Private) forwardProbe(ns, pod string, port int32) (string, error) {
	cfg := p.Rest()
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return "", err
	}
	u, _ := url.Parse(fmt.Sprintf("%s/api/v1/namespaces/%s/pods/%s/portforward", p.Server, ns, pod))
	conn, _, err := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(int(port)))
	h.Set(corev1.PortForwardRequestIDHeader, "0")
	errStream, err := conn.CreateStream(h)
	if err != nil {
		return "", err
	}
	errStream.Close()
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(h)
	if err != nil {
		return "", err
	}
	data.Close()
	msg := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(errStream)
		msg <- string(b)
	}()
	select {
	case m := <-msg:
		return m, nil
	case <-time.After(2 * time.Second):
		return "", nil
	}
}
