#!/usr/bin/env bash
# Build (once) and cache the pinned control-plane binaries listed in versions.env.
#
# Called by `make cluster-up` (through e2e/cluster/up.sh) and by `make test`.
# Every binary lands in $CACHE/bin/<name>-<version>; a binary that already exists
# is never rebuilt, so the second run costs nothing. Prints the bin directory on
# the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
CACHE=${TIDEGATE_CACHE:-$HOME/.cache/tidegate}
BIN=$CACHE/bin
mkdir -p "$BIN" "$CACHE/build"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
log() { echo "[build] $*" >&2; }
fail() { echo "tidegate cluster build: step '$1' failed: $2" >&2; exit 1; }

command -v go >/dev/null || fail "go" "Go is not installed; install Go >= 1.24 (https://go.dev/doc/install) and rerun make cluster-up"

K=$KUBERNETES_VERSION
S=0.${K#1.}
MINOR=$(echo "$K" | cut -d. -f2)

build_kubernetes() {
  local d=$CACHE/build/k8s-$K
  if [ ! -f "$d/go.mod" ]; then
    log "generating wrapper module for k8s.io/kubernetes v$K (staging modules at v$S)"
    rm -rf "$d"; mkdir -p "$d"
    (
      cd "$d"
      local gomod
      gomod=$(go mod download -json "k8s.io/kubernetes@v$K" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])') \
        || fail "download k8s.io/kubernetes" "the Go module proxy did not serve k8s.io/kubernetes@v$K; check GOPROXY and network"
      go mod init local/k8sbins >/dev/null 2>&1
      go mod edit -go="$(awk '$1=="go"{print $2}' "$gomod")"
      grep '^godebug' "$gomod" >> go.mod || true
      sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod" |
        while read -r m; do go mod edit -replace="$m=$m@v$S"; done
      go mod edit -require="k8s.io/kubernetes@v$K"
      cat > tools.go <<'EOT'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
EOT
      go mod tidy >&2 || { rm -f go.mod; fail "go mod tidy (kubernetes)" "could not resolve k8s.io/kubernetes v$K dependencies through the module proxy"; }
    )
  fi
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=v$K -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    local out=$BIN/$c-v$K
    [ -x "$out" ] && continue
    log "building $c v$K (cold builds take several minutes on 2 cores)"
    (cd "$d" && go build -p 2 -trimpath -ldflags "$ld" -o "$out.tmp" "k8s.io/kubernetes/cmd/$c") \
      || fail "build $c" "go build failed; see the output above"
    mv "$out.tmp" "$out"
  done
}

build_simple() {  # name version module package [ldflags]
  local name=$1 ver=$2 mod=$3 pkg=$4 ld=${5:-}
  local out=$BIN/$name-v$ver
  [ -x "$out" ] && return 0
  local d=$CACHE/build/$name-$ver
  log "building $name v$ver"
  rm -rf "$d"; mkdir -p "$d"
  (
    cd "$d"
    go mod init "local/$name" >/dev/null 2>&1
    go get "$mod@v$ver" >&2 || fail "go get $mod@v$ver" "the Go module proxy did not serve it; check GOPROXY"
    go build -p 2 -trimpath -ldflags "-s -w $ld" -o "$out.tmp" "$pkg" >&2 || fail "build $name" "go build failed; see the output above"
  ) || exit 1
  mv "$out.tmp" "$out"
}

build_kubernetes
build_simple etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3
build_simple kwok "$KWOK_VERSION" sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok
build_simple helm "$HELM_VERSION" helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
build_simple kustomize "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5 sigs.k8s.io/kustomize/kustomize/v5

# Stable names in a versioned directory, so PATH=<dir> gives kubectl/helm/kustomize.
LINKS=$CACHE/links-k$K-e$ETCD_VERSION-w$KWOK_VERSION-h$HELM_VERSION-z$KUSTOMIZE_VERSION
mkdir -p "$LINKS"
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do ln -sf "$BIN/$c-v$K" "$LINKS/$c"; done
ln -sf "$BIN/etcd-v$ETCD_VERSION" "$LINKS/etcd"
ln -sf "$BIN/kwok-v$KWOK_VERSION" "$LINKS/kwok"
ln -sf "$BIN/helm-v$HELM_VERSION" "$LINKS/helm"
ln -sf "$BIN/kustomize-v$KUSTOMIZE_VERSION" "$LINKS/kustomize"
echo "$LINKS"
