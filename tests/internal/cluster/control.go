// Package cluster builds, starts and stops a real Kubernetes control plane
// (etcd, kube-apiserver and kwok) on loopback, and gives tests fixtures on it.
package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LimitedNamespace is the only namespace the token user "limited" may use.
const LimitedNamespace = "tunnels-limited"

// NodeName is the fake node kwok manages; fixture pods are bound to it.
const NodeName = "kwok-node-0"

// State is what a running cluster records in its directory.
type State struct {
	Dir          string         `json:"dir"`
	BinDir       string         `json:"binDir"`
	Server       string         `json:"server"`
	EtcdPort     int            `json:"etcdPort"`
	APIPort      int            `json:"apiPort"`
	KwokPort     int            `json:"kwokPort"`
	PIDs         map[string]int `json:"pids"`
	LimitedToken string         `json:"limitedToken"`
	Started      time.Time      `json:"started"`
	// Node is the real node (kubelet, containerd, runc) next to kwok, nil
	// when it could not start; NodeError then says why.
	Node      *NodeState `json:"node,omitempty"`
	NodeError string     `json:"nodeError,omitempty"`
}

// Kubeconfig returns the path of the kubeconfig for user (admin, limited,
// nobody or kwok).
func (s *State) Kubeconfig(user string) string {
	return filepath.Join(s.Dir, user+".kubeconfig")
}

// order is the start order; stop goes in reverse.
var order = []string{"etcd", "kube-apiserver", "kwok"}

// Options tune Up.
type Options struct {
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// RepoRoot is the tunnels checkout, for tests/cluster/build.sh. Empty:
	// found from this source file's location.
	RepoRoot string
	// NoNode starts no real node, whatever the machine supports: for a
	// test's private cluster (see StartPrivate).
	NoNode bool
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, "[cluster %s] "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
}

// DefaultDir is where a cluster keeps its state when no directory is named:
// $TUNNELS_CLUSTER_DIR, else the user cache directory.
func DefaultDir(name string) string {
	if d := os.Getenv("TUNNELS_CLUSTER_DIR"); d != "" {
		return d
	}
	return filepath.Join(cacheRoot(), "clusters", name)
}

func cacheRoot() string {
	if d := os.Getenv("TUNNELS_CLUSTER_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "tunnels-cluster")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "tunnels-cluster")
}

func repoRoot(o *Options) string {
	if o.RepoRoot != "" {
		return o.RepoRoot
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Build runs tests/cluster/build.sh, which builds the binaries once into a
// version-keyed cache, and returns the directory that holds them.
func Build(ctx context.Context, o Options) (string, error) {
	script := filepath.Join(repoRoot(&o), "tests", "cluster", "build.sh")
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	if o.Log == nil {
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build control plane binaries (%s): %w", script, err)
	}
	out, err := exec.CommandContext(ctx, "bash", "-c", `. "$1"; echo "$BIN_DIR"`, "sh", filepath.Join(filepath.Dir(script), "versions.sh")).Output()
	if err != nil {
		return "", fmt.Errorf("read binary dir: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Up starts a cluster in dir, or returns the one already running there.
// Concurrent callers (parallel test binaries) are serialised by a lock file.
func Up(ctx context.Context, dir string, o Options) (*State, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	unlock, err := lock(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if st, err := Load(dir); err == nil {
		if err := st.healthy(ctx); err == nil {
			o.logf("reusing the cluster running in %s (%s)", dir, st.Server)
			return st, nil
		} else {
			o.logf("cluster state in %s is stale (%v); restarting", dir, err)
		}
		stop(st, &o)
	}

	bin, err := Build(ctx, o)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	st, err := boot(ctx, dir, bin, &o)
	if err != nil {
		if st != nil {
			stop(st, &o)
		}
		return nil, err
	}
	o.logf("cluster ready in %s: %s (%s)", time.Since(start).Round(100*time.Millisecond), st.Server, dir)
	return st, nil
}

// Down stops the cluster recorded in dir, if any, and removes its state.
func Down(dir string, o Options) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := Load(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			o.logf("no cluster recorded in %s", dir)
			return nil
		}
		return err
	}
	stop(st, &o)
	return os.Remove(filepath.Join(dir, "state.json"))
}

// Load reads the state of the cluster recorded in dir.
func Load(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, fmt.Errorf("read cluster state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse cluster state: %w", err)
	}
	return &st, nil
}

func lock(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open cluster lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock cluster dir: %w", err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// alive reports whether pid runs and is not a zombie (kill -0 succeeds on zombies).
func alive(pid int, binary string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "State:") && strings.Contains(line, "Z") {
			return false
		}
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return bytes.Contains(cmdline, []byte(binary))
}

func (st *State) healthy(ctx context.Context) error {
	for _, name := range order {
		if !alive(st.PIDs[name], name) {
			return fmt.Errorf("%s (pid %d) is not running", name, st.PIDs[name])
		}
	}
	if st.Node != nil {
		for _, name := range []string{"containerd", "kubelet"} {
			if !alive(st.PIDs[name], name) {
				return fmt.Errorf("%s of the real node (pid %d) is not running", name, st.PIDs[name])
			}
		}
	}
	c, err := st.httpClient("admin")
	if err != nil {
		return err
	}
	return getOK(ctx, c, st.Server+"/readyz")
}

func (st *State) httpClient(user string) (*http.Client, error) {
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(st.Dir, "pki", "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("read ca: %w", err)
	}
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(filepath.Join(st.Dir, "pki", user+".crt"), filepath.Join(st.Dir, "pki", user+".key"))
	if err != nil {
		return nil, fmt.Errorf("load %s cert: %w", user, err)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}, nil
}

func getOK(ctx context.Context, c *http.Client, url string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// boot generates credentials and starts etcd, kube-apiserver and kwok.
func boot(ctx context.Context, dir, bin string, o *Options) (*State, error) {
	st := &State{Dir: dir, BinDir: bin, PIDs: map[string]int{}, LimitedToken: randomToken(), Started: time.Now()}
	var err error
	for _, p := range []*int{&st.EtcdPort, &st.APIPort, &st.KwokPort} {
		if *p, err = freePort(); err != nil {
			return nil, err
		}
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, err
	}
	st.Server = "https://127.0.0.1:" + strconv.Itoa(st.APIPort)
	for _, sub := range []string{"etcd-data", "logs"} {
		os.RemoveAll(filepath.Join(dir, sub))
	}
	os.MkdirAll(filepath.Join(dir, "logs"), 0o700)

	o.logf("generating certificates")
	p, err := newPKI(dir)
	if err != nil {
		return nil, err
	}
	for _, c := range []struct {
		name, cn string
		orgs     []string
		server   bool
	}{
		{"apiserver", "kube-apiserver", nil, true},
		{"admin", "admin", []string{"system:masters"}, false},
		{"kwok", "kwok", []string{"system:masters"}, false},
		{"kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, false},
		{"kwok-serving", "kwok-node", nil, true},
		{"nobody", "nobody", nil, false},
	} {
		if err := p.issue(c.name, c.cn, c.orgs, c.server); err != nil {
			return nil, err
		}
	}
	if err := p.serviceAccountKey(); err != nil {
		return nil, err
	}
	tokens := fmt.Sprintf("%s,limited,uid-limited,\"tunnels-testers\"\n", st.LimitedToken)
	if err := os.WriteFile(p.path("tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, fmt.Errorf("write token file: %w", err)
	}
	if err := st.writeKubeconfigs(); err != nil {
		return nil, err
	}

	o.logf("starting etcd on 127.0.0.1:%d", st.EtcdPort)
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(st.EtcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	if err := st.start("etcd", []string{
		"--name=node0", "--data-dir=" + filepath.Join(dir, "etcd-data"),
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=node0=" + peerURL, "--unsafe-no-fsync", "--log-level=warn",
		"--listen-metrics-urls=",
	}); err != nil {
		return st, err
	}
	if err := poll(ctx, 30*time.Second, func() error { return getOK(ctx, http.DefaultClient, etcdURL+"/health") }); err != nil {
		return st, fmt.Errorf("etcd did not become healthy (see %s): %w", st.logPath("etcd"), err)
	}

	o.logf("starting kube-apiserver on %s", st.Server)
	if err := st.start("kube-apiserver", []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(st.APIPort),
		"--tls-cert-file=" + p.path("apiserver.crt"), "--tls-private-key-file=" + p.path("apiserver.key"),
		"--client-ca-file=" + p.path("ca.crt"),
		"--token-auth-file=" + p.path("tokens.csv"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + p.path("sa.pub"),
		"--service-account-signing-key-file=" + p.path("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		"--kubelet-client-certificate=" + p.path("kubelet-client.crt"), "--kubelet-client-key=" + p.path("kubelet-client.key"),
		"--kubelet-certificate-authority=" + p.path("ca.crt"),
		"--kubelet-preferred-address-types=InternalIP",
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--cert-dir=" + filepath.Join(dir, "pki"),
	}); err != nil {
		return st, err
	}
	client, err := st.httpClient("admin")
	if err != nil {
		return st, err
	}
	if err := poll(ctx, 90*time.Second, func() error {
		if !alive(st.PIDs["kube-apiserver"], "kube-apiserver") {
			return fmt.Errorf("kube-apiserver exited")
		}
		return getOK(ctx, client, st.Server+"/readyz")
	}); err != nil {
		return st, fmt.Errorf("kube-apiserver did not become ready (see %s): %w", st.logPath("kube-apiserver"), err)
	}

	o.logf("installing kwok's CRDs, RBAC for the limited user and the fake node")
	if err := st.kubectl(ctx, "apply", "-f", filepath.Join(bin, "..", "kwok-assets", "crd")); err != nil {
		return st, err
	}
	if err := st.kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		return st, err
	}
	if err := st.kubectl(ctx, "apply", "-f", "-", baseManifests); err != nil {
		return st, err
	}

	stages, err := kwokConfig(filepath.Join(bin, "..", "kwok-assets", "stage"))
	if err != nil {
		return st, err
	}
	kwokCfg := filepath.Join(dir, "kwok.yaml")
	if err := os.WriteFile(kwokCfg, stages, 0o600); err != nil {
		return st, fmt.Errorf("write kwok config: %w", err)
	}
	o.logf("starting kwok (kubelet API on 127.0.0.1:%d)", st.KwokPort)
	if err := st.start("kwok", []string{
		"--kubeconfig=" + st.Kubeconfig("kwok"), "--config=" + kwokCfg,
		// Only the fake node: the real node's kubelet owns its node and pods.
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake", "--node-ip=127.0.0.1", "--node-port=" + strconv.Itoa(st.KwokPort),
		"--server-address=127.0.0.1:" + strconv.Itoa(st.KwokPort),
		"--tls-cert-file=" + p.path("kwok-serving.crt"), "--tls-private-key-file=" + p.path("kwok-serving.key"),
		"--enable-crds=PortForward,ClusterPortForward",
	}); err != nil {
		return st, err
	}
	if err := poll(ctx, 60*time.Second, func() error {
		if !alive(st.PIDs["kwok"], "kwok") {
			return fmt.Errorf("kwok exited")
		}
		out, err := st.kubectlOutput(ctx, "get", "node", NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "True" {
			return fmt.Errorf("node %s not Ready yet", NodeName)
		}
		return nil
	}); err != nil {
		return st, fmt.Errorf("kwok did not make node %s Ready (see %s): %w", NodeName, st.logPath("kwok"), err)
	}
	if o.NoNode {
		st.NodeError = "started without a real node (Options.NoNode)"
	} else if err := st.startNode(ctx, p, o); err != nil {
		if requireNode() {
			return st, fmt.Errorf("start the real node (%s=1 makes it required): %w", RequireNodeEnv, err)
		}
		st.stopNode(o)
		st.Node, st.NodeError = nil, err.Error()
		o.logf("WITHOUT THE REAL NODE: %v; its tests will be skipped (set %s=1 to make this an error)", err, RequireNodeEnv)
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600); err != nil {
		return st, fmt.Errorf("write cluster state: %w", err)
	}
	return st, nil
}

// kwokConfig concatenates the stages kwok needs to make nodes and pods ready.
func kwokConfig(stageDir string) ([]byte, error) {
	var buf bytes.Buffer
	for _, f := range []string{
		"node/fast/node-initialize.yaml",
		"node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
		"pod/fast/pod-ready.yaml",
		"pod/fast/pod-complete.yaml",
		"pod/fast/pod-delete.yaml",
	} {
		b, err := os.ReadFile(filepath.Join(stageDir, f))
		if err != nil {
			return nil, fmt.Errorf("read kwok stage: %w", err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
		buf.WriteString("\n")
	}
	return buf.Bytes(), nil
}

func (st *State) logPath(name string) string { return filepath.Join(st.Dir, "logs", name+".log") }

// start launches a control-plane binary in its own session so it outlives
// the process that started it (a test binary, or `make cluster`), with env
// added to its environment.
func (st *State) start(name string, args []string, env ...string) error {
	logf, err := os.OpenFile(st.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open %s log: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(st.BinDir, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = st.Dir
	// etcd reads every ETCD_* variable as a flag; keep the caller's out.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	st.PIDs[name] = cmd.Process.Pid
	// Reap it if it exits while we are still running, so a dead child is not
	// mistaken for a live one; once we exit, init adopts it.
	go cmd.Wait()
	return nil
}

func (st *State) kubectl(ctx context.Context, args ...string) error {
	_, err := st.kubectlOutput(ctx, args...)
	return err
}

// kubectlOutput runs kubectl as admin; an argument "-" after "-f" is followed
// by the manifest to send on stdin as the last argument.
func (st *State) kubectlOutput(ctx context.Context, args ...string) (string, error) {
	var stdin string
	for i, a := range args {
		if a == "-" && i > 0 && args[i-1] == "-f" && i+1 < len(args) {
			stdin = args[i+1]
			args = args[:i+1]
			break
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(st.BinDir, "kubectl"), append([]string{"--kubeconfig", st.Kubeconfig("admin")}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(errb.Bytes()))
	}
	return out.String(), nil
}

func poll(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop ends the recorded processes in reverse start order, waiting for each:
// the real node first, while the apiserver still answers its kubelet.
func stop(st *State, o *Options) {
	st.stopNode(o)
	for i := len(order) - 1; i >= 0; i-- {
		name := order[i]
		pid := st.PIDs[name]
		if pid == 0 || !alive(pid, name) {
			continue
		}
		o.logf("stopping %s (pid %d)", name, pid)
		syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(15 * time.Second)
		for alive(pid, name) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid, name) {
			syscall.Kill(pid, syscall.SIGKILL)
			for j := 0; j < 100 && alive(pid, name); j++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

const baseManifests = `
apiVersion: v1
kind: Namespace
metadata:
  name: ` + LimitedNamespace + `
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: tunnels-user
  namespace: ` + LimitedNamespace + `
rules:
- apiGroups: [""]
  resources: [pods, services, endpoints]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods/portforward]
  verbs: [get, create]
- apiGroups: [apps]
  resources: [deployments, statefulsets, replicasets]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: tunnels-user
  namespace: ` + LimitedNamespace + `
subjects:
- kind: User
  name: limited
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: Role
  name: tunnels-user
  apiGroup: rbac.authorization.k8s.io
---
apiVersion: v1
kind: Node
metadata:
  name: ` + NodeName + `
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: ` + NodeName + `
    kubernetes.io/role: agent
    type: kwok
spec:
  taints:
  - effect: NoSchedule
    key: kwok.x-k8s.io/node
    value: fake
`

func (st *State) writeKubeconfigs() error {
	ca := filepath.Join(st.Dir, "pki", "ca.crt")
	for _, user := range []string{"admin", "kwok", "nobody", "limited"} {
		var auth string
		if user == "limited" {
			auth = "    token: " + st.LimitedToken
		} else {
			auth = fmt.Sprintf("    client-certificate: %s\n    client-key: %s",
				filepath.Join(st.Dir, "pki", user+".crt"), filepath.Join(st.Dir, "pki", user+".key"))
		}
		ns := "default"
		if user == "limited" {
			ns = LimitedNamespace
		}
		kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: tunnels-test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
%s
contexts:
- name: tunnels-test-%s
  context:
    cluster: tunnels-test
    user: %s
    namespace: %s
current-context: tunnels-test-%s
`, st.Server, ca, user, auth, user, user, ns, user)
		if err := os.WriteFile(st.Kubeconfig(user), []byte(kc), 0o600); err != nil {
			return fmt.Errorf("write %s kubeconfig: %w", user, err)
		}
	}
	return nil
}

// Apply applies a YAML manifest as the admin user.
func (st *State) Apply(ctx context.Context, manifest string) error {
	return st.kubectl(ctx, "apply", "-f", "-", manifest)
}
