package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// demo serves two small web apps on loopback, creates the pods, service
// and kwok PortForwards that route to them in the namespace tunnels-demo,
// prints "ready", and serves until it is killed.
func demo(ctx context.Context, dir string) error {
	st, err := cluster.Load(dir)
	if err != nil {
		return fmt.Errorf("no cluster running (run make cluster first): %w", err)
	}
	ports := map[string]int{}
	for _, app := range []string{"web", "api"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ports[app] = l.Addr().(*net.TCPAddr).Port
		name := app
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "hello from pod %s-0 in namespace tunnels-demo, through tunnels (you asked for %s)\n", name, r.URL.Path)
			})}
		go srv.Serve(l)
	}
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: tunnels-demo}\n")
	for _, app := range []string{"web", "api"} {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata: {name: %[1]s-0, namespace: tunnels-demo, labels: {app: %[1]s}}
spec:
  nodeName: %[3]s
  tolerations: [{key: kwok.x-k8s.io/node, operator: Equal, value: fake, effect: NoSchedule}]
  containers: [{name: app, image: fake, ports: [{name: http, containerPort: 80}]}]
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: PortForward
metadata: {name: %[1]s-0, namespace: tunnels-demo}
spec:
  forwards: [{ports: [80], target: {address: 127.0.0.1, port: %[2]d}}]
`, app, ports[app], cluster.NodeName)
	}
	b.WriteString("---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: tunnels-demo}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n")
	if err := st.Apply(ctx, b.String()); err != nil {
		return err
	}
	fmt.Println("ready")
	os.Stdout.Sync()
	<-ctx.Done()
	return nil
}
