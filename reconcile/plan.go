// Package reconcile converges running port-forwards on the tunnels file: a pure Diff and a loop that watches the file.
package reconcile

import (
	"cmp"
	"fmt"
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
	want := setOf(desired)
	have := setOf(running)
	var p Plan
	for s := range want {
		if have[s] {
			p.Keep = append(p.Keep, s)
		} else {
			p.Start = append(p.Start, s)
		}
	}
	for s := range have {
		if !want[s] {
			p.Stop = append(p.Stop, s)
		}
	}
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

// SessionPlan is a Plan seen by session (context, namespace, target): which
// port-forward sessions disappear, appear, or stay. An applier keeps the
// SPDY connection of a Kept session and only adds or removes its ports.
type SessionPlan struct {
	New  []config.Session // desired, none of whose specs runs now
	Gone []config.Session // running, none of whose specs is desired
	Kept []config.Session // running and still desired (ports may change)
}

// Sessions groups the plan by session. Each list is sorted and holds no
// duplicates.
func (p Plan) Sessions() SessionPlan {
	desired := map[config.Session]bool{}
	running := map[config.Session]bool{}
	for _, s := range p.Start {
		desired[s.Session] = true
	}
	for _, s := range p.Stop {
		running[s.Session] = true
	}
	for _, s := range p.Keep {
		desired[s.Session] = true
		running[s.Session] = true
	}
	var sp SessionPlan
	for s := range desired {
		if running[s] {
			sp.Kept = append(sp.Kept, s)
		} else {
			sp.New = append(sp.New, s)
		}
	}
	for s := range running {
		if !desired[s] {
			sp.Gone = append(sp.Gone, s)
		}
	}
	slices.SortFunc(sp.New, compareSessions)
	slices.SortFunc(sp.Gone, compareSessions)
	slices.SortFunc(sp.Kept, compareSessions)
	return sp
}

func setOf(specs []config.Spec) map[config.Spec]bool {
	m := make(map[config.Spec]bool, len(specs))
	for _, s := range specs {
		m[s] = true
	}
	return m
}

// compareSpecs orders specs for display and for deterministic plans.
func compareSpecs(a, b config.Spec) int {
	if a == b {
		return 0
	}
	return cmp.Or(
		cmp.Compare(a.Tunnel, b.Tunnel),
		compareSessions(a.Session, b.Session),
		cmp.Compare(a.Address, b.Address),
		cmp.Compare(a.LocalPort, b.LocalPort),
		cmp.Compare(a.Remote.Number, b.Remote.Number),
		cmp.Compare(a.Remote.Name, b.Remote.Name),
		// Spec gained a field this function does not know yet: still a
		// total order, so plans stay deterministic.
		cmp.Compare(fmt.Sprintf("%#v", a), fmt.Sprintf("%#v", b)),
	)
}

func compareSessions(a, b config.Session) int {
	return cmp.Or(
		cmp.Compare(a.Context, b.Context),
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Target.Kind, b.Target.Kind),
		cmp.Compare(a.Target.Name, b.Target.Name),
	)
}

// sortedSpecs returns the distinct specs, sorted.
func sortedSpecs(specs []config.Spec) []config.Spec {
	return slices.SortedFunc(maps.Keys(setOf(specs)), compareSpecs)
}
