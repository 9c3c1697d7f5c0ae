# Versions of the control plane the tests run against. Sourced by the scripts in this folder.
K8S_VERSION=v1.37.2
K8S_STAGING_VERSION=v0.37.2
ETCD_VERSION_PIN=v3.6.16
KWOK_VERSION=v0.8.0
# The real node's runtime (kubelet is K8S_VERSION). runc and the CNI plugins
# come from the distribution's packages (Debian: runc, containernetworking-plugins).
CONTAINERD_VERSION=v2.4.2
CLUSTER_KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION_PIN}_kwok-${KWOK_VERSION}"
CACHE_ROOT="${TUNNELS_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tunnels-cluster}"
BIN_DIR="$CACHE_ROOT/$CLUSTER_KEY/bin"
