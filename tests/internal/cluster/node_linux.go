package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nodeSysctls are the kernel settings the kubelet sets at start (unless
// protectKernelDefaults) and the CNI bridge plugin sets for a gateway, and
// that teardown puts back.
var nodeSysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// startNode starts containerd and a kubelet joined to the cluster's
// kube-apiserver, with its own bridge, and waits until the node is Ready.
// On an error, st.Node records what was set up, for stopNode.
func (st *State) startNode(ctx context.Context, p *pki, o *Options) error {
	if err := nodeSupport(st.BinDir); err != nil {
		return err
	}
	start := time.Now()
	subnet, err := freeSubnet()
	if err != nil {
		return err
	}
	ip := make(net.IP, 4)
	copy(ip, subnet.IP.To4())
	ip[3] = 1
	n := &NodeState{
		Dir:    filepath.Join(st.Dir, "node"),
		Bridge: bridgeName(st.Dir),
		IP:     ip.String(),
		Subnet: subnet.String(),
		// Unique per cluster directory, like the bridge: two kubelets
		// sharing a cgroup root remove each other's pods' cgroups.
		CgroupRoot: "/tunnels-" + bridgeName(st.Dir),
		Sysctls:    map[string]string{},
	}
	for _, d := range hostDirs {
		if _, err := os.Stat(d); errors.Is(err, fs.ErrNotExist) {
			n.HostDirs = append(n.HostDirs, d)
		}
	}
	if n.Sysctls, err = st.originalSysctls(); err != nil {
		return err
	}
	st.Node = n
	if n.KubeletPort, err = freePort(); err != nil {
		return err
	}
	// What a crashed run left: its mounts first, so RemoveAll does not
	// walk into them.
	for _, m := range mountsUnder(n.Dir) {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
	os.RemoveAll(n.Dir)
	for _, d := range []string{"containerd/root", "containerd/state", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "images"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o700); err != nil {
			return fmt.Errorf("create node dir: %w", err)
		}
	}

	o.logf("creating bridge %s with %s/24 for the real node", n.Bridge, n.IP)
	run(ctx, "ip", "link", "del", n.Bridge) // a stale one from a crashed run
	for _, args := range [][]string{
		{"link", "add", n.Bridge, "type", "bridge"},
		{"addr", "add", n.IP + "/24", "dev", n.Bridge},
		{"link", "set", n.Bridge, "up"},
	} {
		if err := run(ctx, "ip", args...); err != nil {
			return err
		}
	}
	if err := makeCgroupRoot(n.CgroupRoot); err != nil {
		return err
	}

	if err := issueNodeCerts(p, n.IP); err != nil {
		return err
	}
	if err := st.writeNodeConfigs(p); err != nil {
		return err
	}

	// Build the images while nothing else runs yet: they are needed the
	// moment containerd is up (its sandbox image) and take a few seconds.
	images, err := buildImages(ctx, n.Dir, o)
	if err != nil {
		return err
	}

	o.logf("starting containerd")
	if err := st.start("containerd", []string{"--config", filepath.Join(n.Dir, "containerd.toml")},
		// containerd finds containerd-shim-runc-v2 on PATH.
		"PATH="+st.BinDir+":"+os.Getenv("PATH")); err != nil {
		return err
	}
	if err := poll(ctx, 30*time.Second, func() error {
		if !alive(st.PIDs["containerd"], "containerd") {
			return fmt.Errorf("containerd exited")
		}
		return st.ctr(ctx, "version")
	}); err != nil {
		return fmt.Errorf("containerd did not start (see %s): %w", st.logPath("containerd"), err)
	}
	for _, tar := range images {
		if err := st.ctr(ctx, "images", "import", tar); err != nil {
			return err
		}
	}

	o.logf("starting the kubelet (node %s on %s:%d)", RealNodeName, n.IP, n.KubeletPort)
	if err := st.start("kubelet", []string{
		"--config=" + filepath.Join(n.Dir, "kubelet.yaml"),
		"--kubeconfig=" + st.Kubeconfig("kubelet"),
		"--root-dir=" + filepath.Join(n.Dir, "kubelet"),
		"--cert-dir=" + filepath.Join(n.Dir, "kubelet", "pki"),
		"--hostname-override=" + RealNodeName,
		"--node-ip=" + n.IP,
	}); err != nil {
		return err
	}
	if err := poll(ctx, 90*time.Second, func() error {
		if !alive(st.PIDs["kubelet"], "kubelet") {
			return fmt.Errorf("kubelet exited")
		}
		out, err := st.kubectlOutput(ctx, "get", "node", RealNodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "True" {
			return fmt.Errorf("node %s not Ready yet", RealNodeName)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("the kubelet did not make node %s Ready (see %s): %w", RealNodeName, st.logPath("kubelet"), err)
	}
	o.logf("real node %s Ready in %s", RealNodeName, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// sysctlsFile keeps the kernel settings as they were before the first of
// possibly several real nodes (make cluster beside make test) started: the
// second one would read the first one's kubelet's values. It is in /run,
// which a reboot clears, as it resets the settings.
const sysctlsFile = "/run/tunnels-node-sysctls.json"

// otherKubelets lists the kubelets of other test clusters' real nodes
// (whatever their cache directory) still running.
func (st *State) otherKubelets() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == st.PIDs["kubelet"] {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) != "kubelet" || !alive(pid, "kubelet") {
			continue
		}
		for _, a := range args {
			if a == "--hostname-override="+RealNodeName {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// originalSysctls returns the settings to restore: the saved ones while
// another of our nodes runs, else the current ones, which it saves.
func (st *State) originalSysctls() (map[string]string, error) {
	saved := map[string]string{}
	if b, err := os.ReadFile(sysctlsFile); err == nil && len(st.otherKubelets()) > 0 && json.Unmarshal(b, &saved) == nil && len(saved) > 0 {
		return saved, nil
	}
	for _, k := range nodeSysctls {
		b, err := os.ReadFile(sysctlPath(k))
		if err != nil {
			return nil, fmt.Errorf("read sysctl %s: %w", k, err)
		}
		saved[k] = strings.TrimSpace(string(b))
	}
	b, _ := json.Marshal(saved)
	if err := os.WriteFile(sysctlsFile, b, 0o600); err != nil {
		return nil, fmt.Errorf("save sysctls: %w", err)
	}
	return saved, nil
}

// restoreSysctls puts the kernel settings back unless another of our nodes
// still runs (its kubelet wants them; the last node to stop restores them).
func (st *State) restoreSysctls(o *Options) {
	if others := st.otherKubelets(); len(others) > 0 {
		o.logf("leaving the kernel settings to the other real node still running (kubelet pid %v)", others)
		return
	}
	for k, v := range st.Node.Sysctls {
		if err := os.WriteFile(sysctlPath(k), []byte(v), 0o644); err != nil {
			o.logf("restore sysctl %s=%s: %v", k, v, err)
		}
	}
	os.Remove(sysctlsFile)
}

// run runs a command and returns its combined output in the error.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (st *State) containerdSocket() string {
	return filepath.Join(st.Node.Dir, "containerd.sock")
}

// ctr runs containerd's client in the CRI's namespace.
func (st *State) ctr(ctx context.Context, args ...string) error {
	_, err := st.ctrOutput(ctx, args...)
	return err
}

func (st *State) ctrOutput(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(st.BinDir, "ctr"), append([]string{"--address", st.containerdSocket(), "--namespace", "k8s.io"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(errb.Bytes()))
	}
	return out.String(), nil
}

// cgroupHierarchies lists the mounted cgroup hierarchies (v1 controllers
// and the unified v2 one).
func cgroupHierarchies() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var dirs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && (fields[i+1] == "cgroup" || fields[i+1] == "cgroup2") {
				dirs = append(dirs, unescapeMount(fields[4]))
			}
		}
	}
	return dirs
}

// makeCgroupRoot creates the pods' cgroup root in every hierarchy: the
// kubelet refuses a cgroupRoot that does not exist. A new cpuset cgroup
// starts with no CPUs and memory nodes, so they are copied from the parent.
func makeCgroupRoot(root string) error {
	for _, h := range cgroupHierarchies() {
		d := filepath.Join(h, root)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", d, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if cur, _ := os.ReadFile(filepath.Join(d, f)); len(bytes.TrimSpace(cur)) == 0 {
					os.WriteFile(filepath.Join(d, f), b, 0o644)
				}
			}
		}
	}
	return nil
}

// issueNodeCerts writes the kubelet's serving certificate (for the node IP,
// which the apiserver dials and verifies against the CA) and its client
// certificate. The client is in system:masters: authorization suitable for
// a test, with no Node authorizer to configure.
func issueNodeCerts(p *pki, ip string) error {
	for _, c := range []struct {
		name, cn string
		orgs     []string
		server   bool
	}{
		{"kubelet-serving", RealNodeName, nil, true},
		{"kubelet", "system:node:" + RealNodeName, []string{"system:nodes", "system:masters"}, false},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fmt.Errorf("generate %s key: %w", c.name, err)
		}
		serial++
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: c.cn, Organization: c.orgs},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(5 * 365 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if c.server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{net.ParseIP(ip)}
			tmpl.DNSNames = []string{RealNodeName}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
		if err != nil {
			return fmt.Errorf("create %s cert: %w", c.name, err)
		}
		if err := p.write(c.name, der, key); err != nil {
			return err
		}
	}
	return nil
}

// writeNodeConfigs writes containerd's config, the CNI network, the
// kubelet's config and its kubeconfig.
func (st *State) writeNodeConfigs(p *pki) error {
	n := st.Node
	d := func(sub string) string { return filepath.Join(n.Dir, sub) }
	runc, _ := exec.LookPath("runc")
	// restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and without
	// it every sandbox fails with "runc create failed: ... can't get final
	// child's PID from pipe: EOF". Network namespaces go under containerd's
	// state directory so teardown finds them there. NRI is off: it would
	// open a socket in /var/run/nri.
	containerd := fmt.Sprintf(`version = 3
root = %q
state = %q

[grpc]
  address = %q

[plugins.'io.containerd.internal.v1.opt']
  path = %q

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %q

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%q]
    conf_dir = %q
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %q
        Root = %q
        SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`, d("containerd/root"), d("containerd/state"), st.containerdSocket(), d("containerd/opt"),
		PauseImage, cniDir(), d("cni/net.d"), runc, d("containerd/runc"))
	// No masquerading: pods talk only to the node, over this bridge.
	_, subnet, _ := net.ParseCIDR(n.Subnet)
	first := make(net.IP, 4)
	copy(first, subnet.IP.To4())
	first[3] = 10
	cni, _ := json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		// Named after the bridge: libcni's result cache in /var/lib/cni is
		// keyed by network name, and teardown removes this node's entries.
		"name": n.Bridge,
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": n.Bridge, "isGateway": true, "ipMasq": false,
			"ipam": map[string]any{
				"type":    "host-local",
				"dataDir": d("cni/ipam"),
				"ranges":  []any{[]any{map[string]any{"subnet": n.Subnet, "gateway": n.IP, "rangeStart": first.String()}}},
			},
		}},
	}, "", "  ")
	// failCgroupV1, cgroupfs: these machines have cgroup v1 and no systemd.
	// The eviction and image GC thresholds are effectively off: a nearly
	// full disk must not evict test pods or delete the imported images,
	// which cannot be pulled again.
	kubelet := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzPort: 0
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %s
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupRoot: %s
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
resolvConf: ""
registerNode: true
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, n.IP, n.KubeletPort, p.path("kubelet-serving.crt"), p.path("kubelet-serving.key"), p.path("ca.crt"),
		n.CgroupRoot, st.containerdSocket(), d("pod-logs"))
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: tunnels-test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: kubelet
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: kubelet
  context:
    cluster: tunnels-test
    user: kubelet
current-context: kubelet
`, st.Server, p.path("ca.crt"), p.path("kubelet.crt"), p.path("kubelet.key"))
	for path, data := range map[string][]byte{
		d("containerd.toml"):               []byte(containerd),
		d("cni/net.d/10-tunnels.conflist"): cni,
		d("kubelet.yaml"):                  []byte(kubelet),
		st.Kubeconfig("kubelet"):           []byte(kubeconfig),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("write node config: %w", err)
		}
	}
	return nil
}

// stopNode stops the kubelet, the pods' containers, containerd and its
// shims (exactly those: found by the pid files and the socket of this
// node's containerd), then removes the mounts, network namespaces, veths,
// bridge and cgroups, restores the kernel settings and deletes the node's
// directory. It carries on past errors: the aim is a clean machine.
func (st *State) stopNode(o *Options) {
	n := st.Node
	if n == nil {
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	killWait(st.PIDs["kubelet"], "kubelet", o)

	// With the kubelet gone nothing restarts the containers: kill and
	// delete them through containerd, which ends their shims too.
	if alive(st.PIDs["containerd"], "containerd") {
		if out, err := st.ctrOutput(ctx, "tasks", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				st.ctr(ctx, "tasks", "kill", "--all", "--signal", "SIGKILL", id)
			}
			for _, id := range strings.Fields(out) {
				st.ctr(ctx, "tasks", "delete", "--force", id)
			}
		}
	}
	// Whatever survived in the pods' cgroups (a containerd that hung, say).
	killCgroup(n.CgroupRoot)
	killWait(st.PIDs["containerd"], "containerd", o)
	for _, pid := range st.shimPIDs() {
		o.logf("stopping containerd-shim-runc-v2 (pid %d)", pid)
		syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, "containerd-shim")
	}

	// Mounts: container root file systems, sandbox /dev/shm, network
	// namespaces, the kubelet's volumes. Deepest first.
	mounts := mountsUnder(n.Dir)
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			o.logf("unmount %s: %v", m, err)
		}
	}
	// A veth's peer lives in a pod's network namespace, which is gone now
	// that its processes and mounts are; delete any that lingers.
	if out, err := exec.Command("ip", "-o", "link", "show", "master", n.Bridge).Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) > 1 {
				name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
				run(ctx, "ip", "link", "del", name)
			}
		}
	}
	if err := run(ctx, "ip", "link", "del", n.Bridge); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		o.logf("delete bridge: %v", err)
	}
	removeCgroupRoot(n.CgroupRoot, o)
	st.removeHostLeftovers(o)
	st.restoreSysctls(o)
	if err := os.RemoveAll(n.Dir); err != nil {
		o.logf("remove node dir: %v", err)
	}
	o.logf("real node stopped and cleaned up in %s (%d mounts)", time.Since(start).Round(100*time.Millisecond), len(mounts))
}

// removeHostLeftovers removes what the node wrote outside its directory,
// in paths the kubelet and libcni hard-code: the /var/log/containers links
// into our pod logs, libcni's cached results for our sandboxes (left
// because the sandboxes were killed, not torn down through CNI), and the
// directories they created, when empty.
func (st *State) removeHostLeftovers(o *Options) {
	n := st.Node
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, n.Dir+"/") {
			os.Remove(l)
		}
	}
	cached, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", n.Bridge+"-*"))
	for _, sub := range []string{"root", "state"} {
		ids, _ := os.ReadDir(filepath.Join(n.Dir, "containerd", sub, "io.containerd.grpc.v1.cri", "sandboxes"))
		for _, id := range ids {
			cached = append(cached, filepath.Join("/var/lib/cni/results", "cni-loopback-"+id.Name()+"-lo"))
		}
	}
	for _, c := range cached {
		if err := os.Remove(c); err != nil && !errors.Is(err, fs.ErrNotExist) {
			o.logf("remove cached CNI result: %v", err)
		}
	}
	// Only directories that did not exist before the node started, and
	// only when empty (os.Remove leaves a directory that is not).
	if len(st.otherKubelets()) == 0 {
		for _, d := range n.HostDirs {
			os.Remove(d)
		}
	}
}

// hostDirs are the directories outside its own that the node may create.
// Deepest first, the order to remove them in.
var hostDirs = []string{"/var/log/containers", "/var/lib/cni/results", "/var/lib/cni",
	"/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/run/containerd/s", "/run/containerd"}

// killWait sends SIGTERM, waits up to 15 s, then SIGKILL.
func killWait(pid int, name string, o *Options) {
	if pid == 0 || !alive(pid, name) {
		return
	}
	o.logf("stopping %s (pid %d)", name, pid)
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(15 * time.Second)
	for alive(pid, name) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling a process we cannot wait for (not our child)
	}
	if alive(pid, name) {
		syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, name)
	}
}

func waitGone(pid int, name string) {
	for i := 0; i < 100 && alive(pid, name); i++ {
		time.Sleep(50 * time.Millisecond) // polling with a 5 s deadline
	}
}

// shimPIDs finds the shims of this node's containerd: processes running
// containerd-shim-runc-v2 from our binary directory whose -address is our
// containerd's socket.
func (st *State) shimPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	sock := []byte(st.containerdSocket())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := bytes.Split(cmdline, []byte{0})
		if len(args) == 0 || !bytes.HasSuffix(args[0], []byte("containerd-shim-runc-v2")) {
			continue
		}
		for i := range args[:len(args)-1] {
			if string(args[i]) == "-address" && bytes.Equal(args[i+1], sock) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// killCgroup SIGKILLs every process in the cgroup root's subtree.
func killCgroup(root string) {
	for _, h := range cgroupHierarchies() {
		filepath.WalkDir(filepath.Join(h, root), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}

// removeCgroupRoot removes the cgroup root and everything the kubelet and
// runc created under it, deepest first, in every hierarchy. A cgroup whose
// last process has just been killed can be busy for a moment.
func removeCgroupRoot(root string, o *Options) {
	for _, h := range cgroupHierarchies() {
		var dirs []string
		filepath.WalkDir(filepath.Join(h, root), func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			var err error
			for try := 0; try < 50; try++ {
				if err = syscall.Rmdir(dirs[i]); err == nil || errors.Is(err, syscall.ENOENT) || !errors.Is(err, syscall.EBUSY) {
					break
				}
				time.Sleep(100 * time.Millisecond) // polling with a 5 s deadline
			}
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				o.logf("remove cgroup %s: %v", dirs[i], err)
			}
		}
	}
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var mps []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if mp := unescapeMount(f[4]); mp == dir || strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	return mps
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
