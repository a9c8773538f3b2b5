#!/usr/bin/env bash
# Install the Debian packages the local cluster and the tests need (Prometheus, openssl, curl,
# chromium for the dashboard's browser tests, tmux for the plugin's terminal tests).
# Called by `make prereqs` (and so by `make test` and `make demo`). Never installs
# Debian's kubernetes-client: it is kubectl 1.20 and would shadow ours.
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
# the dashboard's browser tests run headless in Debian's Chromium, driven by Playwright
command -v chromium >/dev/null || need+=(chromium)
command -v tmux >/dev/null || need+=(tmux)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "[prereqs] installing ${need[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1 || true
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || { echo "tidegate prereqs: step 'apt-get install ${need[*]}' failed: install them by hand and rerun" >&2; exit 1; }
# Debian's package starts a system Prometheus on :9090 where an init system runs;
# ours runs on its own port with its own config, so that one is left alone.
