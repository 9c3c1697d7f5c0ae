// Command pause is the sandbox ("pause") image of the real test node: it
// holds the pod's namespaces open and does nothing else until it is told to
// stop, like registry.k8s.io/pause, which cannot be pulled here.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Children re-parented to us (we are PID 1 of the sandbox) are reaped
	// by the kernel once we ignore SIGCHLD.
	signal.Ignore(syscall.SIGCHLD)
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
