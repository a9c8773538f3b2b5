#!/usr/bin/env bash
# Stop the local control plane started by up.sh: only the processes whose pids it
# recorded in .cluster/pids, newest first, then remove the cluster's state.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
W=${TIDEGATE_CLUSTER_DIR:-$repo/.cluster}
[ -d "$W/pids" ] || { echo "[cluster] nothing to stop in $W"; exit 0; }

for name in tidegate-controller prometheus kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  f=$W/pids/$name
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    echo "[cluster] stopped $name (pid $pid)"
  fi
  rm -f "$f"
done
rm -rf "$W/etcd" "$W/prometheus/data" "$W/env" "$W/kubeconfig"
