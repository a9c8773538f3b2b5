#!/usr/bin/env bash
# Start the local control plane used by `make demo`, the e2e tests and the benchmarks.
#
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (fake GPU
# nodes whose pods really go Running/Ready) and a Prometheus server, all on
# 127.0.0.1 with free ports, all started here and stopped by pid (down.sh).
# Writes .cluster/kubeconfig and .cluster/env. Idempotent: if the recorded
# cluster still answers, it only prints how to use it.
#
# Any failing step stops with one line: which step, and what to do.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
W=${TIDEGATE_CLUSTER_DIR:-$repo/.cluster}
GPU_NODES=${TIDEGATE_GPU_NODES:-3}
CPU_NODES=${TIDEGATE_CPU_NODES:-2}
mkdir -p "$W/logs" "$W/pids"

fail() { echo "tidegate cluster-up: step '$1' failed: $2" >&2; exit 1; }
say() { echo "[cluster] $*" >&2; }

usage_note() {
  cat <<EOF
Local cluster is up.
  . $W/env                      # sets KUBECONFIG, PROMETHEUS_URL and PATH (kubectl, helm, kustomize, kubectl-tidegate)
  kubectl get nodes
  make cluster-down             # stops only the processes started here
EOF
}

if [ -f "$W/kubeconfig" ] && [ -f "$W/env" ]; then
  # shellcheck disable=SC1091
  ( . "$W/env"; kubectl --request-timeout=3s get --raw /readyz >/dev/null 2>&1 ) && {
    say "a cluster recorded in $W already answers; reusing it"
    usage_note
    exit 0
  }
  say "stale cluster files in $W; stopping leftovers and starting fresh"
  "$here/down.sh" >/dev/null 2>&1 || true
fi

start_ts=$(date +%s.%N)
BIN=$("$here/build.sh" | tail -n 1) || fail "build binaries" "see the build output above; rerun make cluster-up once fixed"
command -v prometheus >/dev/null || fail "prometheus" "Prometheus is not installed; run: apt-get install -y prometheus (make prereqs does it)"
command -v openssl >/dev/null || fail "openssl" "openssl is missing; run: apt-get install -y openssl"
export PATH="$BIN:$PATH"

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'; }
ETCD_PORT=$(free_port); ETCD_PEER=$(free_port); API_PORT=$(free_port)
KCM_PORT=$(free_port); SCHED_PORT=$(free_port); KWOK_PORT=$(free_port); PROM_PORT=$(free_port)

# --- credentials -------------------------------------------------------------
PKI=$W/pki; mkdir -p "$PKI"
if [ ! -f "$PKI/ca.crt" ]; then
  say "creating a private CA and serving certificate"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tidegate-local-ca" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" >/dev/null 2>&1 || fail "pki" "openssl could not create the CA"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$PKI/apiserver.key" \
    -out "$PKI/apiserver.csr" >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,IP:10.96.0.1\n' > "$PKI/san.ext"
  openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -extfile "$PKI/san.ext" -out "$PKI/apiserver.crt" >/dev/null 2>&1 || fail "pki" "openssl could not sign the serving certificate"
  openssl genrsa -out "$PKI/sa.key" 2048 >/dev/null 2>&1
  python3 -c 'import secrets;print(secrets.token_hex(24))' > "$PKI/admin.token"
fi
TOKEN=$(cat "$PKI/admin.token")
printf '%s,admin,admin,"system:masters"\n' "$TOKEN" > "$PKI/tokens.csv"

KUBECONFIG_FILE=$W/kubeconfig
cat > "$KUBECONFIG_FILE" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tidegate-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: tidegate-local
  context: {cluster: tidegate-local, user: admin}
current-context: tidegate-local
EOF
chmod 600 "$KUBECONFIG_FILE"
export KUBECONFIG=$KUBECONFIG_FILE

# --- processes -----------------------------------------------------------------
launch() {  # name cmd...
  local name=$1; shift
  "$@" >"$W/logs/$name.log" 2>&1 &
  echo $! > "$W/pids/$name"
}
wait_for() {  # step seconds command...
  local step=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$deadline" ] && fail "$step" "not ready after ${secs}s; see $W/logs/$step.log"
    sleep 0.2
  done
}

rm -rf "$W/etcd"
launch etcd etcd --name=n0 --data-dir="$W/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster="n0=http://127.0.0.1:$ETCD_PEER" --unsafe-no-fsync=true \
  --auto-compaction-retention=1 --watch-progress-notify-interval=5s \
  --quota-backend-bytes=4294967296
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

launch kube-apiserver kube-apiserver --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$PKI/sa.key" --service-account-signing-key-file="$PKI/sa.key" \
  --authorization-mode=Node,RBAC --allow-privileged=true --endpoint-reconciler-type=none \
  --max-requests-inflight=1000 --max-mutating-requests-inflight=500 \
  --enable-priority-and-fairness=false
wait_for kube-apiserver 60 kubectl --request-timeout=2s get --raw /readyz

# Without its HPA controller: there is no metrics API here, so it could only mark every
# HPA ScalingActive=False (Degraded to Argo CD's health check); e2e/hpa.py stands in.
launch kube-controller-manager kube-controller-manager --kubeconfig="$KUBECONFIG_FILE" \
  --leader-elect=false --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --service-cluster-ip-range=10.96.0.0/16 --use-service-account-credentials=false \
  --kube-api-qps=200 --kube-api-burst=400 --concurrent-replicaset-syncs=10 \
  --concurrent-gc-syncs=40 --controllers='*,-horizontalpodautoscaling'
launch kube-scheduler kube-scheduler --kubeconfig="$KUBECONFIG_FILE" --leader-elect=false \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --kube-api-qps=200 --kube-api-burst=400
launch kwok kwok --kubeconfig="$KUBECONFIG_FILE" --manage-all-nodes=true \
  --server-address="127.0.0.1:$KWOK_PORT" --node-lease-duration-seconds=40

# --- fake nodes ------------------------------------------------------------------
node_yaml() {  # name gpus
  cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $1
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: $1, kubernetes.io/os: linux, kubernetes.io/arch: amd64, tidegate.dev/gpu: "$([ "$2" -gt 0 ] && echo "true" || echo "false")"}
status:
  allocatable: {cpu: "64", memory: 512Gi, pods: "500", nvidia.com/gpu: "$2"}
  capacity: {cpu: "64", memory: 512Gi, pods: "500", nvidia.com/gpu: "$2"}
  nodeInfo: {kubeletVersion: fake, kubeProxyVersion: fake, architecture: amd64, operatingSystem: linux}
  phase: Running
EOF
}
{
  for i in $(seq 1 "$GPU_NODES"); do node_yaml "kwok-gpu-$i" 16; echo "---"; done
  for i in $(seq 1 "$CPU_NODES"); do node_yaml "kwok-cpu-$i" 0; echo "---"; done
} > "$W/nodes.yaml"
wait_for kube-apiserver 30 kubectl get ns default
kubectl apply -f "$W/nodes.yaml" >/dev/null || fail "nodes" "could not create the fake kwok nodes"

# --- CRDs ------------------------------------------------------------------------------
kubectl apply --server-side -f "$repo/crds/" >/dev/null || fail "crds" "our CRDs in crds/ were rejected; run kubectl apply -f crds/ to see why"
kubectl apply --server-side -f "$repo/crds/istio/" >/dev/null || fail "crds" "the Istio test CRDs in crds/istio/ were rejected"

# --- Prometheus ------------------------------------------------------------------------
P=$W/prometheus; mkdir -p "$P/targets" "$P/data"
[ -f "$P/targets/tests.json" ] || echo '[]' > "$P/targets/tests.json"
cat > "$P/prometheus.yml" <<EOF
# Written by e2e/cluster/up.sh. Tests add scrape targets by writing JSON files
# into $P/targets/ (file_sd), so no restart is needed.
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: prometheus
  static_configs: [{targets: ["127.0.0.1:$PROM_PORT"]}]
- job_name: tests
  file_sd_configs: [{files: ["$P/targets/*.json"], refresh_interval: 1s}]
EOF
launch prometheus prometheus --config.file="$P/prometheus.yml" --storage.tsdb.path="$P/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --storage.tsdb.retention.time=2h --web.enable-lifecycle
wait_for prometheus 30 curl -sf "http://127.0.0.1:$PROM_PORT/-/ready"

# --- wait for a usable cluster ----------------------------------------------------------
wait_for kube-controller-manager 60 kubectl -n default get serviceaccount default
ready_nodes() { [ "$(kubectl get nodes --no-headers 2>/dev/null | grep -c ' Ready ')" -ge $((GPU_NODES + CPU_NODES)) ]; }
wait_for kwok 60 ready_nodes
kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null || fail "crds" "CRDs did not become Established"

# the project's virtualenv too: `kubectl tidegate ...` finds the kubectl-tidegate plugin there
cat > "$W/env" <<EOF
KUBECONFIG=$KUBECONFIG_FILE
PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT
TIDEGATE_PROMETHEUS_TARGETS=$P/targets
PATH=$BIN:$repo/.venv/bin:\$PATH
export KUBECONFIG PROMETHEUS_URL TIDEGATE_PROMETHEUS_TARGETS PATH
EOF
end_ts=$(date +%s.%N)
python3 -c "print('[cluster] ready in %.1f s' % ($end_ts - $start_ts))" >&2
usage_note
