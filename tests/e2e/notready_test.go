package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// setNotReady marks a Running pod not Ready, as a failing readiness probe
// would. kwok moves only Pending pods to Ready, so it stays so.
func setNotReady(t *testing.T, c *cluster.Cluster, ns, name string) {
	t.Helper()
	cs := c.Kube(t)
	ctx := context.Background()
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady || cond.Type == corev1.ContainersReady {
			pod.Status.Conditions[i].Status = corev1.ConditionFalse
			pod.Status.Conditions[i].LastTransitionTime = metav1.Now()
		}
	}
	for i := range pod.Status.ContainerStatuses {
		pod.Status.ContainerStatuses[i].Ready = false
	}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("mark pod %s/%s not Ready: %v", ns, name, err)
	}
}

// TestNotReadyPod: a pod target forwards to a Running pod that is not
// Ready, as kubectl does, and status says so; a selector on the same pod
// does not (it wants a Ready pod), and tunnels forward POD does too.
func TestNotReadyPod(t *testing.T) {
	c := cluster.Start(t)
	ns := c.Namespace(t)
	c.Pod(t, ns, "sick", cluster.PodOptions{
		Labels:  map[string]string{"app": "sick"},
		Ports:   []corev1.ContainerPort{{Name: "echo", ContainerPort: 80}},
		Forward: map[int32]string{80: longEcho(t)},
	})
	setNotReady(t, c, ns, "sick")

	p := startUp(t, c, t.TempDir(), fmt.Sprintf("version: 1\nnamespace: %s\ntunnels:\n  pod:\n    pod: sick\n    ports: [\":80\"]\n  sel:\n    selector: app=sick\n    ports: [\":80\"]\n", ns))
	addr := p.waitReady("pod", "80")
	dialEcho(t, addr, "to a pod that is not ready")
	d, err := p.status()
	if err != nil {
		t.Fatal(err)
	}
	r, _ := d.row("pod", "80")
	if !r.PodNotReady {
		t.Errorf("status of the pod target: %+v, want podNotReady", r)
	}
	sel, _ := d.row("sel", "80")
	if sel.State == "ready" {
		t.Errorf("the selector tunnel is ready on a pod that is not Ready: %+v", sel)
	}
	out, err := exec.Command(p.bin, "status", "-f", p.file).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "sick (not ready)") {
		t.Errorf("status table:\n%s\nwant the pod shown as not ready", out)
	}
	p.stop()

	f := startForward(t, c, 1, "-n", ns, "sick", ":80")
	dialEcho(t, f.addr("80"), "forward to a pod that is not ready")
	f.interrupt()
}
