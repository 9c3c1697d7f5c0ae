// Package tunnel runs the tunnels of a plan: sessions, their listeners, bind retries, the pod watches that heal them, and their status.
//
// # Ownership
//
// An Applier's state (its ports, sessions, pod watches and clients) is owned
// by one goroutine, Applier.run. Apply, Retry-carrying plans and Close are
// messages to it; bind retries are its own timer; status readers get an
// immutable snapshot that it publishes after every change (an atomic
// pointer, no lock), and read the live counters of the forward.Port and
// forward.Session values it names, which are safe for concurrent use.
//
// The only locks in the package:
//   - podWatch.mu guards podWatch.subs: the owner adds and removes
//     subscribers, the watch goroutine reads them. It is a leaf lock: nothing
//     else is locked, and no session method is called, while it is held.
//   - PortMemory.mu guards the remembered ports (PortMemory is also used
//     from tests and its Save may be called by anyone).
//
// There is no lock order to keep, as no lock is held while taking another.
package tunnel
