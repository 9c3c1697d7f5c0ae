#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kubectl and kwok from the Go module proxy into a
# version-keyed cache directory outside the repository, and, where the real
# node can run (Linux, root), the kubelet and containerd (with its runc shim
# and ctr). A build whose marker matches is skipped, so running this again is
# cheap.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

mkdir -p "$BIN_DIR"
work="$CACHE_ROOT/$CLUSTER_KEY/src"
mkdir -p "$work"
log() { printf '[cluster build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Never let a caller's GOFLAGS (e.g. -mod=vendor) or workspace leak into the wrappers.
export GOFLAGS=-buildvcs=false GOWORK=off CGO_ENABLED=0

vpkg_k=k8s.io/component-base/version
vpkg_c=k8s.io/client-go/pkg/version
ldflags="-s -w"
for p in $vpkg_k $vpkg_c; do
  ldflags="$ldflags -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=37 -X $p.gitTreeState=clean"
done

built() { [ -x "$BIN_DIR/$1" ] && [ "$(cat "$BIN_DIR/$1.version" 2>/dev/null)" = "$2" ]; }
mark() { echo "$2" >"$BIN_DIR/$1.version"; }

build_etcd() {
  built etcd "$ETCD_VERSION_PIN" && { log "etcd $ETCD_VERSION_PIN cached"; return; }
  log "building etcd $ETCD_VERSION_PIN (about a minute cold)"
  local d="$work/etcd"; mkdir -p "$d"
  cat >"$d/go.mod" <<MOD
module tunnels.local/etcdwrap

go 1.26

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION_PIN}
MOD
  cat >"$d/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$d" && go mod tidy >/dev/null 2>&1 || true; cd "$d" && go mod download go.etcd.io/etcd/server/v3 && go get go.etcd.io/etcd/server/v3@"$ETCD_VERSION_PIN" && go build -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"; mark etcd "$ETCD_VERSION_PIN"
  log "etcd built"
}

build_kwok() {
  built kwok "$KWOK_VERSION" && { log "kwok $KWOK_VERSION cached"; return; }
  log "building kwok $KWOK_VERSION (about two minutes cold)"
  GOBIN="$BIN_DIR" go install -ldflags "-s -w" sigs.k8s.io/kwok/cmd/kwok@"$KWOK_VERSION"
  mark kwok "$KWOK_VERSION"
  log "kwok built"
}

# kube_wrapper writes the module that builds kube-apiserver, kubectl and the
# kubelet from k8s.io/kubernetes, once per version and set of commands.
kube_wrapper() {
  local d="$work/kube"; mkdir -p "$d"
  local want="$K8S_VERSION kube-apiserver kubectl kubelet"
  [ "$(cat "$d/.ready" 2>/dev/null)" = "$want" ] && return
  local kmod
  kmod=$(go mod download -json k8s.io/kubernetes@"$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module tunnels.local/kubewrap"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    # Every staging module the kubernetes module replaces with ./staging/... is
    # pinned to its published version instead, skipping those never published.
    local published
    published=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kmod" | sort -u)
    for m in $published; do
      if go list -m -versions "$m" 2>/dev/null | tr ' ' '\n' | grep -qx "$K8S_STAGING_VERSION"; then
        echo "replace $m => $m $K8S_STAGING_VERSION"
      else
        log "skipping $m (not published at $K8S_STAGING_VERSION)"
      fi
    done
  } >"$d/go.mod"
  cat >"$d/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  (cd "$d" && go mod tidy)
  echo "$want" >"$d/.ready"
}

build_kube() {
  if built kube-apiserver "$K8S_VERSION" && built kubectl "$K8S_VERSION"; then log "kube-apiserver and kubectl $K8S_VERSION cached"; return; fi
  log "building kube-apiserver and kubectl $K8S_VERSION (5 to 15 minutes cold on 2 cores)"
  kube_wrapper
  local d="$work/kube"
  log "modules resolved; compiling kube-apiserver"
  (cd "$d" && go build -ldflags "$ldflags" -o "$BIN_DIR/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$BIN_DIR/kube-apiserver.tmp" "$BIN_DIR/kube-apiserver"; mark kube-apiserver "$K8S_VERSION"
  log "kube-apiserver built; compiling kubectl"
  (cd "$d" && go build -ldflags "$ldflags" -o "$BIN_DIR/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl)
  mv "$BIN_DIR/kubectl.tmp" "$BIN_DIR/kubectl"; mark kubectl "$K8S_VERSION"
  log "kubectl built"
}

# The real node runs only as root on Linux; elsewhere its tests are skipped,
# so its binaries are not worth minutes of building (unless CI demands it).
node_wanted() {
  [ "$(uname -s)" = Linux ] && { [ "$(id -u)" = 0 ] || [ "${TUNNELS_REQUIRE_NODE:-}" = 1 ]; }
}

build_kubelet() {
  built kubelet "$K8S_VERSION" && { log "kubelet $K8S_VERSION cached"; return; }
  log "building the kubelet $K8S_VERSION (2 minutes after kube-apiserver, 6 to 7 with an empty build cache)"
  kube_wrapper
  (cd "$work/kube" && go build -ldflags "$ldflags" -o "$BIN_DIR/kubelet.tmp" k8s.io/kubernetes/cmd/kubelet)
  mv "$BIN_DIR/kubelet.tmp" "$BIN_DIR/kubelet"; mark kubelet "$K8S_VERSION"
  log "kubelet built"
}

build_containerd() {
  if built containerd "$CONTAINERD_VERSION" && built containerd-shim-runc-v2 "$CONTAINERD_VERSION" && built ctr "$CONTAINERD_VERSION"; then
    log "containerd $CONTAINERD_VERSION cached"; return
  fi
  log "building containerd $CONTAINERD_VERSION, its runc shim and ctr (about 2 minutes cold)"
  # containerd's module has no replace directives, so go install works. The
  # tags leave out the snapshotters that need C libraries or kernel modules.
  local m=github.com/containerd/containerd/v2
  GOBIN="$BIN_DIR" go install -tags "no_btrfs no_devmapper no_zfs no_aufs urfave_cli_no_docs" \
    -ldflags "-s -w -X $m/version.Version=$CONTAINERD_VERSION" \
    "$m/cmd/containerd@$CONTAINERD_VERSION" "$m/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" "$m/cmd/ctr@$CONTAINERD_VERSION"
  for b in containerd containerd-shim-runc-v2 ctr; do mark "$b" "$CONTAINERD_VERSION"; done
  log "containerd built"
}

start=$(date +%s)
build_etcd
build_kwok
build_kube
if node_wanted; then
  build_kubelet
  build_containerd
else
  log "NOT building the kubelet and containerd: the real node needs Linux and root; its tests will be skipped"
fi
# kwok's CRDs and stages ship in its module; keep a copy beside the binaries.
kdir=$(GOFLAGS= go mod download -json sigs.k8s.io/kwok@"$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
rm -rf "$BIN_DIR/../kwok-assets"; mkdir -p "$BIN_DIR/../kwok-assets"
cp -r "$kdir/kustomize/crd/bases" "$BIN_DIR/../kwok-assets/crd"
cp -r "$kdir/kustomize/stage" "$BIN_DIR/../kwok-assets/stage"
chmod -R u+w "$BIN_DIR/../kwok-assets"
log "all binaries ready in $BIN_DIR ($(( $(date +%s) - start ))s)"
