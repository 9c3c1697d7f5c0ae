package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// runDoctor runs `tunnels doctor` on file as the user of kubeconfig and
// returns its output and exit code.
func runDoctor(t *testing.T, file, kubeconfig string, extra ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(cluster.TunnelsBinary(t), append([]string{"doctor", "-f", file, "--kubeconfig", kubeconfig}, extra...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run tunnels doctor: %v", err)
	}
	return string(out), code
}

// doctorRow matches a table row: context, namespace, tunnel, check, result.
func doctorRow(ns, tunnel, check, result string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^\S+\s+` + regexp.QuoteMeta(ns) + `\s+` + regexp.QuoteMeta(tunnel) + `\s+` + regexp.QuoteMeta(check) + `\s+` + regexp.QuoteMeta(result) + `\b`)
}

// wantRows checks that out has a row matching each of rows.
func wantRows(t *testing.T, out string, rows ...*regexp.Regexp) {
	t.Helper()
	for _, want := range rows {
		if !want.MatchString(out) {
			t.Errorf("no row matching %s in:\n%s", want, out)
		}
	}
}

func TestDoctor(t *testing.T) {
	c := cluster.Start(t)
	ns := c.Namespace(t)
	echo := cluster.EchoServer(t)
	c.Pod(t, ns, "echo", cluster.PodOptions{
		Labels:  map[string]string{"app": "echo"},
		Ports:   []corev1.ContainerPort{{Name: "echo", ContainerPort: 80}},
		Forward: map[int32]string{80: echo},
	})
	c.Service(t, ns, "web", map[string]string{"app": "echo"}, []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt(80)}})
	file := filepath.Join(t.TempDir(), "tunnels.yaml")
	writeFile(t, file, fmt.Sprintf("version: 1\nnamespace: %s\ntunnels:\n  echo: {pod: echo, ports: [':80']}\n  web: {service: web, ports: [':8080']}\n", ns))

	t.Run("admin", func(t *testing.T) {
		out, code := runDoctor(t, file, c.AdminKubeconfig)
		if code != 0 {
			t.Fatalf("exit %d, want 0; output:\n%s", code, out)
		}
		wantRows(t, out,
			doctorRow("-", "-", "api server", "ok"),
			doctorRow(ns, "-", "can get pods/portforward", "ok"),
			doctorRow(ns, "-", "can create pods/portforward", "ok"),
			doctorRow(ns, "-", "can watch pods", "ok"),
			doctorRow(ns, "-", "can get services", "ok"),
			doctorRow(ns, "echo", "pod for pod/echo", "ok"),
			doctorRow(ns, "web", "pod for svc/web", "ok"),
			doctorRow(ns, "echo", "transport auto", "ok"),
		)
		if !strings.Contains(out, "reachable, v1.37.2") || !strings.Contains(out, "auto uses websocket; websocket ok; spdy ok") {
			t.Errorf("want the server version and both transports negotiated, got:\n%s", out)
		}
		if !strings.Contains(out, "all 11 checks passed") {
			t.Errorf("want every check passed, got:\n%s", out)
		}
	})

	t.Run("limited", func(t *testing.T) {
		// The limited user may forward in its own namespace only.
		out, code := runDoctor(t, file, c.LimitedKubeconfig)
		if code != 1 {
			t.Fatalf("exit %d, want 1; output:\n%s", code, out)
		}
		wantRows(t, out,
			doctorRow("-", "-", "api server", "ok"),
			doctorRow(ns, "-", "can create pods/portforward", "FAIL"),
			doctorRow(ns, "echo", "pod for pod/echo", "FAIL"),
			doctorRow(ns, "echo", "transport auto", "skip"),
		)
		want := fmt.Sprintf("kubectl create role tunnels-pods-portforward -n %s --verb=get,create --resource=pods/portforward && kubectl create rolebinding tunnels-pods-portforward -n %s --role=tunnels-pods-portforward --user=limited", ns, ns)
		if !strings.Contains(out, want) {
			t.Errorf("want the fix %q, got:\n%s", want, out)
		}
	})

	t.Run("nobody, then the fixes it prints", func(t *testing.T) {
		out, code := runDoctor(t, file, c.NoRightsKubeconfig)
		if code != 1 {
			t.Fatalf("exit %d, want 1; output:\n%s", code, out)
		}
		fixes := regexp.MustCompile(`(?m)^  fix: add the RBAC rule .*?: (kubectl .*)$`).FindAllStringSubmatch(out, -1)
		if len(fixes) != 3 { // pods/portforward, pods, services
			t.Fatalf("want 3 RBAC fixes (pods/portforward, pods, services), got %d in:\n%s", len(fixes), out)
		}
		for _, f := range fixes {
			for _, command := range strings.Split(f[1], " && ") {
				args := strings.Fields(command)[1:]
				kubectl := exec.Command(filepath.Join(c.BinDir, "kubectl"), append([]string{"--kubeconfig", c.AdminKubeconfig}, args...)...)
				if b, err := kubectl.CombinedOutput(); err != nil {
					t.Fatalf("the printed fix %q failed: %v: %s", command, err, b)
				}
			}
		}
		// The API server's authorizer sees new RBAC objects within moments,
		// but the check must not race it: run doctor until it passes or
		// until 10 tries say it does not.
		for try := 0; ; try++ {
			out, code = runDoctor(t, file, c.NoRightsKubeconfig)
			if code == 0 {
				break
			}
			if try == 10 {
				t.Fatalf("after applying the printed fixes: exit %d, want 0; output:\n%s", code, out)
			}
		}
		if !doctorRow(ns, "echo", "transport auto", "ok").MatchString(out) {
			t.Errorf("after the fixes, want the transport to negotiate, got:\n%s", out)
		}
	})

	t.Run("json", func(t *testing.T) {
		out, code := runDoctor(t, file, c.NoRightsKubeconfig, "-o", "json", "--context", "tunnels-test-nobody")
		if code != 0 || !strings.Contains(out, `"ok": true`) || !strings.Contains(out, `"check": "transport auto"`) {
			t.Errorf("doctor -o json: exit %d, output:\n%s", code, out)
		}
	})
}
