#!/usr/bin/env bash
# Run a command against the local cluster: reuse one that answers, or start one
# and stop it again afterwards (only what this script started).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
started=0
if ! { [ -f "$repo/.cluster/env" ] && ( . "$repo/.cluster/env"; kubectl --request-timeout=3s get --raw /readyz >/dev/null 2>&1 ); }; then
  "$repo/e2e/cluster/up.sh"
  started=1
fi
# shellcheck disable=SC1091
. "$repo/.cluster/env"
rc=0
"$@" || rc=$?
if [ "$started" = 1 ] && [ "${TIDEGATE_KEEP_CLUSTER:-0}" != 1 ]; then
  "$repo/e2e/cluster/down.sh" >/dev/null
fi
exit $rc
