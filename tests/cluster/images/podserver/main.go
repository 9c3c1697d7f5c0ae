// Command podserver is the entry point of the test servers' container image
// on the real node: it serves podserver's ports on every address of the
// pod's network namespace until it is told to stop.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tunnels-dev/tunnels/tests/cluster/podserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s := &podserver.Server{ID: os.Getenv("PODSERVER_ID")}
	if d, err := time.ParseDuration(os.Getenv("PODSERVER_IDLE")); err == nil {
		s.Idle = d
	}
	var wg sync.WaitGroup
	for _, port := range podserver.Ports {
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			fmt.Fprintf(os.Stderr, "podserver: %v\n", err)
			os.Exit(1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Serve(ctx, l, port); err != nil {
				fmt.Fprintf(os.Stderr, "podserver: %v\n", err)
				os.Exit(1)
			}
		}()
	}
	fmt.Printf("podserver %q listening on %v\n", s.ID, podserver.Ports)
	wg.Wait()
}
