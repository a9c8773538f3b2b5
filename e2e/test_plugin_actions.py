"""The plugin's actions on the real cluster: each command's documented state change.

Given a basic canary Rollout in a fresh namespace and a real ``tidegate controller``
watching only it (pods simulated by kwok), When the on-call engineer runs
``kubectl-tidegate`` (``python -m cli.main``) as a subprocess with the test's
KUBECONFIG, Then the Rollout's spec/status, its ReplicaSets and its pods change as
Argo's plugin documents (semantics reference §1.5, §1.6, §5).
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest

from e2e.conftest import REPO, wait_until
from e2e.kit import HASH_LABEL, Cluster, Controller, rollout, sample

pytestmark = pytest.mark.e2e

V1, V2 = "registry.local/model:v1", "registry.local/model:v2"
CLI_TIMEOUT = 60
STEPS: list[dict[str, Any]] = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]


def tidegate(env: dict[str, str], namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the plugin as a user would: a subprocess, the test's KUBECONFIG, ``-n`` the namespace."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "-n", namespace],
        env=env, cwd=REPO, capture_output=True, text=True, check=False, timeout=CLI_TIMEOUT,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout.strip()


def image_of(doc: dict[str, Any]) -> str:
    return str(doc["spec"]["template"]["spec"]["containers"][0]["image"])


def paused_at(cluster: Cluster, name: str, step: int) -> dict[str, Any]:
    return cluster.wait_status(name, lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == step,
                               timeout=90, message=f"Paused at step {step}")


def pods(cluster: Cluster, name: str) -> list[Any]:
    items = cluster.core.list_namespaced_pod(cluster.ns, label_selector=f"app={name}").items
    return [p for p in items if p.metadata.deletion_timestamp is None]


def ready_count(cluster: Cluster, name: str) -> int:
    return sum(1 for p in pods(cluster, name)
               if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []))


def test_set_image_promote_abort_reason_retry_promote_full(
    cluster: Cluster, controller: Controller, cluster_env: dict[str, str]
) -> None:
    name, ns = "actions", cluster.ns
    cluster.create(rollout(name, image=V1, replicas=4, steps=STEPS, traffic=None))
    v1 = cluster.wait_phase(name, "Healthy", timeout=90)["stableRS"]

    # set image: the template's container changes and the command says from what to what
    out = ok(tidegate(cluster_env, ns, "set", "image", name, f"model={V2}"))
    assert out == f"rollout '{name}' image updated: model: {V1} -> {V2}"
    assert image_of(cluster.rollout(name)) == V2
    status = paused_at(cluster, name, 1)
    v2 = status["currentPodHash"]
    assert v2 != v1

    # promote: past the pause, through setWeight 50, to the next pause
    out = ok(tidegate(cluster_env, ns, "promote", name))
    assert out == f"rollout '{name}' promoted: status.pauseConditions cleared"
    paused_at(cluster, name, 3)
    assert cluster.replica_sets(name)[v2].spec.replicas == 2

    # abort --reason: Degraded, the reason in the status message, the annotation consumed
    out = ok(tidegate(cluster_env, ns, "abort", name, "--reason", "p99 latency doubled"))
    assert "p99 latency doubled" in out
    status = cluster.wait_phase(name, "Degraded")
    assert status["abort"] is True
    assert status["message"] == "RolloutAborted: Rollout aborted update to revision 2: p99 latency doubled"
    wait_until(lambda: "tidegate.dev/abort" not in (cluster.rollout(name)["metadata"].get("annotations") or {}),
               timeout=30, message="abort annotation removed")
    wait_until(lambda: cluster.replica_sets(name)[v1].status.available_replicas == 4, timeout=60,
               message="stable back to 4 available")

    # retry (Argo's spelling): steps start again, paused at the first pause
    out = ok(tidegate(cluster_env, ns, "retry", "rollout", name))
    assert out == f"rollout '{name}' retried: status.abort=false"
    status = paused_at(cluster, name, 1)
    assert not status.get("abort")

    # promote --full: every step skipped, v2 becomes stable with all replicas
    out = ok(tidegate(cluster_env, ns, "promote", name, "--full"))
    assert out.startswith(f"rollout '{name}' fully promoted: ") and "status.promoteFull=true" in out
    status = cluster.wait_status(name, lambda s: s.get("phase") == "Healthy" and s.get("stableRS") == v2,
                                 timeout=90, message="Healthy on v2")
    assert status["currentStepIndex"] == len(STEPS)
    wait_until(lambda: cluster.replica_sets(name)[v1].spec.replicas == 0, timeout=60, message="v1 scaled to 0")
    assert cluster.replica_sets(name)[v2].spec.replicas == 4


def test_undo_and_restart(cluster: Cluster, controller: Controller, cluster_env: dict[str, str]) -> None:
    name, ns = "undo", cluster.ns
    cluster.create(rollout(name, image=V1, replicas=3, steps=[], traffic=None))
    v1 = cluster.wait_phase(name, "Healthy", timeout=90)["stableRS"]

    # pause / resume: spec.paused, phase Paused "manually paused", then Healthy again
    assert ok(tidegate(cluster_env, ns, "pause", name)) == f"rollout '{name}' paused: spec.paused=true"
    status = cluster.wait_phase(name, "Paused")
    assert status["message"] == "manually paused" and cluster.rollout(name)["spec"]["paused"] is True
    assert ok(tidegate(cluster_env, ns, "resume", name)) == f"rollout '{name}' resumed: spec.paused=false"
    cluster.wait_phase(name, "Healthy")

    ok(tidegate(cluster_env, ns, "set", "image", name, f"*={V2}"))
    v2 = cluster.wait_status(name, lambda s: s.get("phase") == "Healthy" and s.get("stableRS") not in (None, v1),
                             timeout=90, message="Healthy on v2")["stableRS"]

    # undo (to the previous revision): v1's template comes back as a new revision (3), re-using its RS
    out = ok(tidegate(cluster_env, ns, "undo", name))
    assert out == f"rollout '{name}' rolled back to revision 1: spec.template replaced"
    body = cluster.rollout(name)
    assert image_of(body) == V1
    assert HASH_LABEL not in body["spec"]["template"]["metadata"]["labels"]
    cluster.wait_status(name, lambda s: s.get("phase") == "Healthy" and s.get("stableRS") == v1,
                        timeout=90, message="Healthy back on v1")
    wait_until(lambda: (cluster.replica_sets(name)[v1].metadata.annotations or {}).get(
        "rollout.argoproj.io/revision") == "3", timeout=30, message="v1's RS is revision 3")
    assert len(cluster.replica_sets(name)) == 2  # no new ReplicaSet: v1's was re-used
    assert cluster.replica_sets(name)[v2].spec.replicas == 0 or wait_until(
        lambda: cluster.replica_sets(name)[v2].spec.replicas == 0, timeout=60, message="v2 scaled to 0")

    # undo to a revision that does not exist: exit 1, the message names rollout and annotation
    bad = tidegate(cluster_env, ns, "undo", name, "--to-revision", "9")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "no ReplicaSet with annotation rollout.argoproj.io/revision=9" in bad.stderr

    # restart: every pod created before restartAt is replaced, then status.restartedAt = restartAt
    wait_until(lambda: len([p for p in pods(cluster, name) if p.metadata.labels.get(HASH_LABEL) == v1]) == 3,
               timeout=60, message="3 v1 pods")
    before = {p.metadata.name for p in pods(cluster, name)}
    out = ok(tidegate(cluster_env, ns, "restart", name))
    restart_at = cluster.rollout(name)["spec"]["restartAt"]
    assert out == f"rollout '{name}' restarts at {restart_at}: spec.restartAt={restart_at}"
    # ... one pod at a time: with 3 replicas (maxUnavailable 25% -> 0, so 1 at once) at least 2 stay ready
    seen = sample(lambda: (cluster.rollout(name)["status"].get("restartedAt"), min(ready_count(cluster, name), 2)),
                  until=lambda value: value[0] == restart_at, timeout=120, interval=0.2)
    assert min(ready for _, ready in seen) == 2, seen
    status = cluster.rollout(name)["status"]
    at = datetime.fromisoformat(restart_at)
    after = pods(cluster, name)
    assert not before & {p.metadata.name for p in after}
    assert all(p.metadata.creation_timestamp >= at for p in after)
    assert cluster.wait_phase(name, "Healthy")["stableRS"] == v1
    assert status["stableRS"] == v1


def test_set_image_on_missing_container_fails_cleanly(
    cluster: Cluster, cluster_env: dict[str, str]
) -> None:
    cluster.create(rollout("img", image=V1, replicas=1, steps=[], traffic=None))
    result = tidegate(cluster_env, cluster.ns, "set", "image", "img", f"nope={V2}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: rollout 'img': no container 'nope' in spec.template.spec (containers: model)"
    assert image_of(cluster.rollout("img")) == V1
    missing = tidegate(cluster_env, cluster.ns, "promote", "ghost")
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: rollout 'ghost' not found in namespace '{cluster.ns}'"
