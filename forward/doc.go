// Package forward forwards local TCP connections to a pod over the Kubernetes port-forward protocol (SPDY/3.1).
package forward
