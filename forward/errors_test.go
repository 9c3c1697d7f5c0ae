package forward

import "testing"

// TestRemoteErrorClassifies the texts the kubelet and the runtimes write on
// the error stream, as they write them.
func TestRemoteErrorClassifies(t *testing.T) {
	const prefix = "error forwarding port 80 to pod 0123abcd, uid : "
	for _, tt := range []struct {
		runtime, msg     string
		refused, podGone bool
	}{
		{"containerd", `failed to execute portforward in network namespace "/var/run/netns/cni-1": failed to connect to localhost:80 inside namespace "0123abcd", IPv4: dial tcp4 127.0.0.1:80: connect: connection refused IPv6 dial tcp6 [::1]:80: connect: connection refused `, true, false},
		{"containerd", `failed to find sandbox "0123abcd" in store: not found`, false, true},
		{"containerd", `network namespace for sandbox "0123abcd" is closed`, false, true},
		{"CRI-O", `PodSandbox with ID starting with 0123abcd not found`, false, true},
		{"CRI-O", `could not find sandbox 0123abcd`, false, true},
		{"CRI-O", `sandbox 0123abcd is not running`, false, true},
		{"CRI-O", `network namespace path of sandbox 0123abcd is empty`, false, true},
		{"kwok", `no forward found for port 80 in pod "default/echo"`, false, false},
		{"kubelet", `timed out waiting for streams`, false, false},
		{"containerd", `call to shim port forward failed: ttrpc: closed`, false, false},
	} {
		e := &RemoteError{Port: 80, Message: prefix + tt.msg}
		if got := e.Refused(); got != tt.refused {
			t.Errorf("%s %q: Refused() = %v, want %v", tt.runtime, tt.msg, got, tt.refused)
		}
		if got := e.PodGone(); got != tt.podGone {
			t.Errorf("%s %q: PodGone() = %v, want %v", tt.runtime, tt.msg, got, tt.podGone)
		}
	}
}
