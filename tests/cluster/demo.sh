#!/usr/bin/env bash
# make demo: start the local cluster if none runs, create two demo pods whose
# ports kwok routes to small HTTP servers on this machine, run
# `tunnels up -f examples/demo/tunnels.yaml`, and print the URLs to curl.
# Ctrl-C stops tunnels and the demo servers (the cluster keeps running;
# `make cluster-down` stops it).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
file=examples/demo/tunnels.yaml

(cd tests && go build -o "$root/bin/clusterctl" ./cluster/clusterctl)
go build -o bin/tunnels ./cmd/tunnels
bin/clusterctl up >/dev/null
dir=$(bin/clusterctl env | sed -n 's/^KUBECONFIG=//p')
export KUBECONFIG="$dir"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

fifo=$(mktemp -u); mkfifo "$fifo"
bin/clusterctl demo >"$fifo" &
pids+=($!)
read -r line <"$fifo"; rm -f "$fifo"
[ "$line" = ready ] || { echo "demo: the demo servers did not start" >&2; exit 1; }

log=$(mktemp -t tunnels-demo.XXXXXX.log)
bin/tunnels up -f "$file" --output log 2>"$log" &
pids+=($!)

for _ in $(seq 1 100); do
  if web=$(bin/tunnels port -f "$file" web 80 2>/dev/null) && api=$(bin/tunnels port -f "$file" api http 2>/dev/null); then
    break
  fi
  sleep 0.1
done
web=$(echo "$web" | head -1); api=$(echo "$api" | head -1)
if [ -z "${web:-}" ] || [ -z "${api:-}" ]; then
  echo "demo: tunnels did not come up; its log:" >&2; cat "$log" >&2; exit 1
fi
cat <<MSG

tunnels is running $file against the local cluster (KUBECONFIG=$KUBECONFIG).

  curl http://$web/
  curl http://$api/

  bin/tunnels status -f $file      # the live state of every tunnel
  edit $file and save: tunnels applies the change while it runs
  tunnels' log: $log

Ctrl-C stops the demo; make cluster-down stops the cluster.
MSG
wait "${pids[1]}"
