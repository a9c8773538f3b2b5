"""Issue 7, defect 4 on the real cluster: a pod template the API server rejects is visible.

Given a Rollout whose container is named ``Bad_Name`` (the Rollout CRD accepts it, the
API server answers the ReplicaSet create with 422), When the real controller reconciles
it, Then the Rollout is Degraded with the server's message in a condition and one
Warning Event, an update keeps it not Healthy, the controller logs a bounded number of
lines for it, and fixing the name makes it Healthy with the stale condition gone.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from e2e.conftest import wait_until
from e2e.kit import Cluster, Controller, rollout

pytestmark = pytest.mark.e2e

NAME = "bad"
BAD_CONTAINER = "Bad_Name"
GOOD_CONTAINER = "model"
SERVER_FRAGMENT = f'Invalid value: "{BAD_CONTAINER}"'
CREATE_ERROR = "ReplicaSetCreateError"
# How long the log and the status are watched after an update, and what that may cost:
# the back-off (5 s doubling to 300 s) allows 4 attempts in 60 s, plus the one our own
# status write wakes; each is one line. Twice that leaves room for a slow cluster.
WINDOW_SECONDS = 60.0
MAX_LOG_LINES_PER_WINDOW = 10
EVENT_SETTLE_SECONDS = 10.0
KUBECTL_WAIT_SECONDS = "5s"


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in status.get("conditions") or []}


def _rejected(status: dict[str, Any]) -> bool:
    cond = _conditions(status).get(CREATE_ERROR) or {}
    return status.get("phase") == "Degraded" and cond.get("status") == "True"


def _set_container(name: str, *, image: str | None = None) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        container = body["spec"]["template"]["spec"]["containers"][0]
        container["name"] = name
        if image is not None:
            container["image"] = image

    return mutate


def _warnings(cluster: Cluster) -> list[Any]:
    return [e for e in cluster.events(NAME) if e.type == "Warning" and e.reason == CREATE_ERROR]


def _log_lines(controller: Controller, namespace: str, since: int) -> list[str]:
    return [line for line in controller.log()[since:].splitlines() if f"{namespace}/{NAME}" in line]


def test_rejected_pod_template_is_reported_bounded_and_recovers(
    cluster: Cluster, controller: Controller, kubectl: Any
) -> None:
    # Given a Rollout whose container name the API server rejects
    manifest = rollout(NAME, traffic=None, replicas=1)
    _set_container(BAD_CONTAINER)(manifest)
    started = time.monotonic()
    cluster.create(manifest)

    # Then it is Degraded with the server's message, and one Warning Event says so
    status = cluster.wait_status(NAME, _rejected, timeout=30, message="Degraded with ReplicaSetCreateError")
    seen_after = time.monotonic() - started
    message = _conditions(status)[CREATE_ERROR]["message"]
    assert SERVER_FRAGMENT in message and "(422)" in message, message
    assert _conditions(status)["Healthy"]["status"] == "False"
    wait_until(lambda: _warnings(cluster), timeout=10, message="the Warning Event")
    time.sleep(EVENT_SETTLE_SECONDS)  # retries come and go meanwhile: still one Event
    warnings = _warnings(cluster)
    assert len(warnings) == 1 and SERVER_FRAGMENT in warnings[0].message
    assert cluster.replica_sets(NAME) == {}

    # When the image is updated (the name still rejected)
    offset = len(controller.log())
    cluster.update_rollout(NAME, _set_container(BAD_CONTAINER, image="registry.local/model:v2"))

    # Then for a minute it is never Healthy, and the controller logs a bounded number of lines
    window_end = time.monotonic() + WINDOW_SECONDS
    phases: set[str] = set()
    healthy_seen = False
    while time.monotonic() < window_end:
        current = cluster.rollout(NAME).get("status") or {}
        phases.add(str(current.get("phase")))
        healthy_seen = healthy_seen or (_conditions(current).get("Healthy") or {}).get("status") == "True"
        time.sleep(1)
    lines = _log_lines(controller, cluster.ns, offset)
    print(f"\n[e2e defect 4] Degraded {seen_after:.1f}s after create; "
          f"{len(lines)} log lines in {WINDOW_SECONDS:.0f}s after the update; phases {sorted(phases)}")
    assert not healthy_seen and phases == {"Degraded"}
    assert 1 <= len(lines) <= MAX_LOG_LINES_PER_WINDOW, lines
    assert "Traceback" not in controller.log()
    wait_ok = subprocess.run(  # what a pipeline runs: it must not pass
        ["kubectl", "wait", "-n", cluster.ns, f"rollout/{NAME}", "--for=condition=Healthy",
         f"--timeout={KUBECTL_WAIT_SECONDS}"], env=controller.env, capture_output=True, text=True, check=False)
    assert wait_ok.returncode != 0, wait_ok.stdout
    # one Event per distinct message: the new revision's ReplicaSet has a new name
    assert len(_warnings(cluster)) == 2

    # When the container name is fixed
    fixed_at = time.monotonic()
    cluster.update_rollout(NAME, _set_container(GOOD_CONTAINER))

    # Then it goes Healthy and the stale condition is gone
    status = cluster.wait_phase(NAME, "Healthy", timeout=60)
    print(f"[e2e defect 4] Healthy {time.monotonic() - fixed_at:.1f}s after the fix")
    conditions = _conditions(status)
    assert CREATE_ERROR not in conditions and "InvalidSpec" not in conditions
    assert conditions["Healthy"]["status"] == "True"
    assert len(cluster.replica_sets(NAME)) == 1


def test_rejected_update_of_a_healthy_rollout_keeps_its_progress(cluster: Cluster, controller: Controller) -> None:
    # Given a Healthy v1 with a pause step
    name = "upd"
    cluster.create(rollout(name, traffic=None, replicas=2, steps=[{"setWeight": 50}, {"pause": {}}]))
    v1 = cluster.wait_phase(name, "Healthy")["stableRS"]

    # When v2 arrives with a container name the API server rejects
    def break_it(body: dict[str, Any]) -> None:
        _set_container(BAD_CONTAINER, image="registry.local/model:v2")(body)

    cluster.update_rollout(name, break_it)

    # Then it is Degraded and not Healthy, and the rest of its status (the stable revision) is kept
    status = cluster.wait_status(name, _rejected, timeout=30, message="Degraded with ReplicaSetCreateError")
    assert _conditions(status)["Healthy"]["status"] == "False"
    assert _conditions(status)["Completed"]["status"] == "False"
    assert status["stableRS"] == v1
    assert set(cluster.replica_sets(name)) == {v1}

    # When fixed, Then the canary steps run (not a first deploy that skips them) and it ends Healthy
    cluster.update_rollout(name, _set_container(GOOD_CONTAINER))
    status = cluster.wait_status(name, lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 1,
                                 timeout=60, message="Paused at step 1")
    assert status["stableRS"] == v1 and CREATE_ERROR not in _conditions(status)
    cluster.patch_rollout(name, {"status": {"pauseConditions": None}}, status=True)
    status = cluster.wait_phase(name, "Healthy", timeout=60)
    assert status["stableRS"] != v1 and _conditions(status)["Healthy"]["status"] == "True"
