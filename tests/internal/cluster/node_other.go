//go:build !linux

package cluster

import (
	"context"
	"fmt"
	"runtime"
)

// startNode fails: the real node needs Linux.
func (st *State) startNode(ctx context.Context, p *pki, o *Options) error {
	return fmt.Errorf("the real node needs Linux (this is %s)", runtime.GOOS)
}

// stopNode has nothing to stop where no node can start.
func (st *State) stopNode(o *Options) {}
