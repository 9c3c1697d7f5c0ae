// Package reconcile converges running port-forwards on the tunnels file: a pure Diff and a loop that watches the file.
package reconcile

import (
	"maps"
	"slices"

	"github.com/tunnels-dev/tunnels/config"
)

// Plan is what an applier does to go from the running specs to the desired
// ones. A spec is its own identity: a changed spec (another namespace, port,
// address, tunnel name…) is a Stop of the old value and a Start of the new
// one, and a spec in Keep must be left alone, listener and connections
// included. Each list is sorted (by tunnel, then session, address and ports)
// and holds no duplicates.
type Plan struct {
	Start []config.Spec // desired but not running
	Stop  []config.Spec // running but no longer desired
	Keep  []config.Spec // running and still desired, unchanged

	// Retry is set when the reload was forced (Options.Reload, i.e.
	// SIGHUP): besides the changes above, the applier should restart the
	// Keep specs that have failed and given up. Diff never sets it.
	Retry bool
}

// Diff computes the plan that turns running into desired. It is pure: no
// locks, no I/O, no clock. Duplicates in either list count once.
func Diff(desired, running []config.Spec) Plan {
	var p Plan
	p.Start, p.Keep, p.Stop = partition(setOf(desired), setOf(running))
	slices.SortFunc(p.Start, compareSpecs)
	slices.SortFunc(p.Stop, compareSpecs)
	slices.SortFunc(p.Keep, compareSpecs)
	return p
}

// Desired returns the specs that run once the plan is applied: Start and
// Keep, sorted.
func (p Plan) Desired() []config.Spec {
	d := slices.Concat(p.Start, p.Keep)
	slices.SortFunc(d, compareSpecs)
	return d
}

// Changed reports whether applying the plan starts or stops anything.
func (p Plan) Changed() bool { return len(p.Start) > 0 || len(p.Stop) > 0 }

// partition splits the members of two sets: only in a, in both, only in b.
func partition[K comparable](a, b map[K]bool) (onlyA, both, onlyB []K) {
	for k := range a {
		if b[k] {
			both = append(both, k)
		} else {
			onlyA = append(onlyA, k)
		}
	}
	for k := range b {
		if !a[k] {
			onlyB = append(onlyB, k)
		}
	}
	return onlyA, both, onlyB
}

func setOf(specs []config.Spec) map[config.Spec]bool {
	m := make(map[config.Spec]bool, len(specs))
	for _, s := range specs {
		m[s] = true
	}
	return m
}

// compareSpecs is the order config defines.
func compareSpecs(a, b config.Spec) int { return a.Compare(b) }

// sortedSpecs returns the distinct specs, sorted.
func sortedSpecs(specs []config.Spec) []config.Spec {
	return slices.SortedFunc(maps.Keys(setOf(specs)), compareSpecs)
}
