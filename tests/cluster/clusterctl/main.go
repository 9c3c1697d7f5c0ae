// Command clusterctl starts and stops the loopback control plane that the
// end-to-end tests and `make cluster` use.
//
//	clusterctl up   [-dir DIR]   build if needed, start or reuse, print how to use it
//	clusterctl down [-dir DIR]   stop exactly the processes `up` started
//	clusterctl env  [-dir DIR]   print KUBECONFIG=... for the admin user
//	clusterctl node [-dir DIR]   say whether the real node runs (or can), loudly if not
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: clusterctl up|down|env|build|node [-name NAME] [-dir DIR]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	name := fs.String("name", "default", "name of the cluster (its state directory under the cache)")
	dir := fs.String("dir", "", "directory that holds the cluster's state (default: from -name, or $TUNNELS_CLUSTER_DIR)")
	fs.Parse(os.Args[2:])
	if *dir == "" {
		*dir = cluster.DefaultDir(*name)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := cluster.Options{Log: os.Stderr}
	switch os.Args[1] {
	case "build":
		bin, err := cluster.Build(ctx, o)
		if err != nil {
			fail(err)
		}
		fmt.Println(bin)
	case "up":
		st, err := cluster.Up(ctx, *dir, o)
		if err != nil {
			fail(err)
		}
		fmt.Printf("cluster running: %s\n", st.Server)
		fmt.Printf("  admin:   export KUBECONFIG=%s\n", st.Kubeconfig("admin"))
		fmt.Printf("  limited: %s (namespace %s only)\n", st.Kubeconfig("limited"), cluster.LimitedNamespace)
		fmt.Printf("  kubectl: %s/kubectl\n", st.BinDir)
		if st.Node != nil {
			fmt.Printf("  node:    %s, a real kubelet + containerd (images %s, %s; imagePullPolicy: Never)\n", cluster.RealNodeName, cluster.PodServerImage, cluster.PauseImage)
		} else {
			fmt.Printf("  node:    no real node (%s)\n", st.NodeError)
		}
		fmt.Printf("  stop:    make cluster-down\n")
	case "down":
		if err := cluster.Down(*dir, o); err != nil {
			fail(err)
		}
	case "demo":
		if err := demo(ctx, *dir); err != nil {
			fail(err)
		}
	case "node":
		os.Exit(nodeReport(ctx, *dir))
	case "env":
		st, err := cluster.Load(*dir)
		if err != nil {
			fail(err)
		}
		fmt.Printf("KUBECONFIG=%s\n", st.Kubeconfig("admin"))
	default:
		fmt.Fprintf(os.Stderr, "clusterctl: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "clusterctl: %v\n", err)
	os.Exit(1)
}
