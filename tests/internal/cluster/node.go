package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// RealNodeName is the node that a real kubelet registers next to kwok's fake
// one. Pods bound to it run in containers (containerd and runc), so a
// port-forward to them goes apiserver → kubelet → containerd → the pod's
// network namespace, as on any real cluster.
const RealNodeName = "tunnels-node-0"

// RequireNodeEnv names the environment switch that turns a machine unable to
// run the real node into a failure instead of a skip. CI sets it, so the
// real-node tests never go missing silently there.
const RequireNodeEnv = "TUNNELS_REQUIRE_NODE"

// The images the real node runs, built from static Go binaries in
// tests/cluster/images and imported into containerd: no registry is
// reachable, so pods use imagePullPolicy: Never.
const (
	PauseImage     = "tunnels.local/pause:test"
	PodServerImage = "tunnels.local/podserver:test"
)

// NodeState is what a running real node records in the cluster's state.
type NodeState struct {
	// Dir holds everything the node writes: containerd's root and state,
	// the kubelet's root, CNI state, pod logs and images.
	Dir string `json:"dir"`
	// Bridge is the Linux bridge created for the node; IP (on the bridge)
	// is the node IP, the kubelet's address and the pods' gateway, and
	// Subnet the pods' addresses. The kubelet refuses a loopback node IP.
	Bridge string `json:"bridge"`
	IP     string `json:"ip"`
	Subnet string `json:"subnet"`
	// KubeletPort is where the kubelet serves its API on IP.
	KubeletPort int `json:"kubeletPort"`
	// CgroupRoot is the cgroup (in every hierarchy) the kubelet puts pods
	// under, created and removed by the harness.
	CgroupRoot string `json:"cgroupRoot"`
	// Sysctls holds the kernel settings the kubelet and the CNI bridge
	// change, as they were before the node started; teardown restores them.
	Sysctls map[string]string `json:"sysctls"`
	// HostDirs are directories outside Dir that did not exist before the
	// node started (the kubelet and libcni hard-code them); teardown
	// removes those left empty.
	HostDirs []string `json:"hostDirs,omitempty"`
}

// requireNode reports whether the environment demands the real node.
func requireNode() bool { return os.Getenv(RequireNodeEnv) == "1" }

// cniDirs are where Debian's containernetworking-plugins and upstream put
// the CNI plugins.
var cniDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// NodeSupport says why this machine cannot run the real node with the
// binaries in bin, or returns nil.
func NodeSupport(bin string) error { return nodeSupport(bin) }

// RequireNode reports whether the environment demands the real node
// (TUNNELS_REQUIRE_NODE=1).
func RequireNode() bool { return requireNode() }

// nodeSupport says why this machine cannot run the real node, or nil.
func nodeSupport(bin string) error {
	var missing []string
	if runtime.GOOS != "linux" {
		return fmt.Errorf("the real node needs Linux (this is %s)", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("the real node needs root (the kubelet, containerd and runc create cgroups, mounts and network namespaces)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		missing = append(missing, "runc (Debian: apt-get install runc)")
	}
	if cniDir() == "" {
		missing = append(missing, "the CNI plugins bridge, host-local and loopback (Debian: apt-get install containernetworking-plugins)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip (Debian: apt-get install iproute2)")
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		missing = append(missing, "a cgroup file system at /sys/fs/cgroup")
	}
	for _, b := range []string{"kubelet", "containerd", "containerd-shim-runc-v2", "ctr"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			missing = append(missing, b+" (built by tests/cluster/build.sh as root on Linux)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the real node needs %s", strings.Join(missing, ", "))
	}
	return nil
}

// cniDir returns the first directory holding the CNI plugins the node uses.
func cniDir() string {
	for _, d := range cniDirs {
		ok := true
		for _, p := range []string{"bridge", "host-local", "loopback"} {
			if _, err := os.Stat(filepath.Join(d, p)); err != nil {
				ok = false
			}
		}
		if ok {
			return d
		}
	}
	return ""
}

// bridgeName derives the bridge's name from the cluster directory, so two
// clusters (make cluster and make test) never share one. Linux allows 15
// characters.
func bridgeName(dir string) string {
	h := sha256.Sum256([]byte(dir))
	return "tnl" + hex.EncodeToString(h[:4])
}

// freeSubnet picks a /24 in 10.88.0.0/16, from 10.88.77.0 up, that no
// interface of this machine has an address in.
func freeSubnet() (*net.IPNet, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	for third := 77; third < 250; third++ {
		_, subnet, _ := net.ParseCIDR(fmt.Sprintf("10.88.%d.0/24", third))
		used := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (subnet.Contains(ipn.IP) || ipn.Contains(subnet.IP)) {
				used = true
			}
		}
		if !used {
			return subnet, nil
		}
	}
	return nil, errors.New("no free /24 in 10.88.0.0/16 for the node's bridge")
}
