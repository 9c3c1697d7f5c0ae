package main

import (
	"context"
	"fmt"
	"os"

	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// nodeReport prints whether the cluster in dir runs the real node or, with
// no cluster there, whether this machine can run one. A missing node is
// announced in a banner, since `go test` without -v hides skipped tests.
// It returns exit status 1 when TUNNELS_REQUIRE_NODE=1 and there is no node.
func nodeReport(ctx context.Context, dir string) int {
	var why error
	if st, err := cluster.Load(dir); err == nil {
		if st.Node != nil {
			fmt.Printf("real node: %s runs beside kwok (kubelet and containerd, node IP %s on bridge %s)\n", cluster.RealNodeName, st.Node.IP, st.Node.Bridge)
			return 0
		}
		why = fmt.Errorf("the cluster in %s runs without it: %s", dir, st.NodeError)
	} else {
		bin, err := cluster.Build(ctx, cluster.Options{})
		if err != nil {
			why = err
		} else if why = cluster.NodeSupport(bin); why == nil {
			fmt.Println("real node: this machine can run it; the real-node tests will run")
			return 0
		}
	}
	fmt.Fprintf(os.Stderr, `
************************************************************************
  NO REAL NODE: the data-path tests run against kwok only, and their
  real-node cases are SKIPPED.
  %v
  (%s=1 makes this an error; CI sets it.)
************************************************************************

`, why, cluster.RequireNodeEnv)
	if cluster.RequireNode() {
		return 1
	}
	return 0
}
