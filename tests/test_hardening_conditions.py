"""Issue 7, defect 6: the conditions of an invalid Rollout are recomputed, never copied.

Table-driven tests of ``rollouts.engine.reconcile.plan`` on an invalid spec: each row is
what was observed (previous status, ReplicaSets, the new spec) and the exact
conditions list the plan must write. Then walks on the pure World: an invalid update
and its fix, with Healthy never True beside InvalidSpec.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from engine_sim import World

from common.api import format_time
from rollouts.engine import plan
from rollouts.engine import status as st
from rollouts.engine.context import RolloutContext
from rollouts.engine.hashing import pod_template_hash

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)
OLD = "2024-01-01T10:00:00Z"
NOW_S = "2024-01-01T12:00:00Z"
TEMPLATE_V1: dict[str, Any] = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "web", "image": "web:v1"}]},
}
H1 = pod_template_hash(TEMPLATE_V1)
H2 = pod_template_hash({**TEMPLATE_V1, "spec": {"containers": [{"name": "web", "image": "web:v2"}]}})
BAD_WEIGHT = 150
WEIGHT_FRAGMENT = "must be between 0 and 100"
MALFORMED_FRAGMENT = "setWeight"


def _rollout(*, image: str = "web:v1", weight: Any = 50, status: dict[str, Any] | None = None) -> dict[str, Any]:
    template = copy.deepcopy(TEMPLATE_V1)
    template["spec"]["containers"][0]["image"] = image
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 2},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template,
            "strategy": {"canary": {"steps": [{"setWeight": weight}, {"pause": {}}]}},
        },
        "status": status or {},
    }


def _rs(pod_hash: str, *, revision: int, available: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"web-{pod_hash}", "namespace": "ns",
                     "labels": {"rollouts-pod-template-hash": pod_hash},
                     "annotations": {"rollout.argoproj.io/revision": str(revision)}},
        "spec": {"replicas": available},
        "status": {"replicas": available, "readyReplicas": available, "availableReplicas": available},
    }


def _cond(kind: str, status: str, reason: str, message: str, *, transition: str = OLD,
          update: str | None = None) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": transition, "lastUpdateTime": update or transition}


PROGRESSED = _cond("Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "web-{H1}" has successfully progressed.')
AVAILABLE = _cond("Available", "True", "AvailableReason", st.MSG_AVAILABLE)
COMPLETED_V1 = _cond("Completed", "True", "RolloutCompleted", f"Rollout completed update to revision 1 ({H1})")
HEALTHY = _cond("Healthy", "True", "RolloutHealthy", st.MSG_HEALTHY)
HEALTHY_STATUS = {"stableRS": H1, "currentPodHash": H1, "phase": "Healthy",
                  "conditions": [PROGRESSED, AVAILABLE, COMPLETED_V1, HEALTHY]}

NOT_PROGRESSING = _cond("Progressing", "False", "InvalidSpec", st.MSG_NOT_PROGRESSING_INVALID, transition=NOW_S)
NOT_COMPLETED = _cond("Completed", "False", "RolloutNotCompleted", st.MSG_NOT_COMPLETED_INVALID, transition=NOW_S)
NOT_HEALTHY = _cond("Healthy", "False", "RolloutHealthy", st.MSG_NOT_HEALTHY, transition=NOW_S)
INVALID = "<the InvalidSpec message>"  # stands for the plan's own message (validation words it)


def _invalid(transition: str = NOW_S, update: str | None = None) -> dict[str, Any]:
    return _cond("InvalidSpec", "True", "InvalidSpec", INVALID, transition=transition, update=update)


ABORTED = _cond("Progressing", "False", "RolloutAborted", "Rollout aborted update to revision 2: analysis failed")
IN_FLIGHT = _cond("Completed", "False", "RolloutNotCompleted", f"Rollout not completed, started update to revision 2 ({H2})")
NOT_HEALTHY_OLD = _cond("Healthy", "False", "RolloutHealthy", st.MSG_NOT_HEALTHY)
PAUSED = _cond("Paused", "True", "RolloutPaused", st.MSG_PAUSED)
RS_CREATE_ERROR = _cond("ReplicaSetCreateError", "True", "ReplicaSetCreateError", "rejected (422): Bad_Name")

CASES = [
    pytest.param(
        _rollout(image="web:v2", weight=BAD_WEIGHT, status=HEALTHY_STATUS), [_rs(H1, revision=1, available=2)],
        [NOT_PROGRESSING, AVAILABLE, NOT_COMPLETED, NOT_HEALTHY, _invalid()], WEIGHT_FRAGMENT,
        id="healthy-then-invalid-template-update-is-neither-completed-nor-healthy",
    ),
    pytest.param(
        _rollout(weight=BAD_WEIGHT, status=HEALTHY_STATUS), [_rs(H1, revision=1, available=2)],
        [NOT_PROGRESSING, AVAILABLE, COMPLETED_V1, NOT_HEALTHY, _invalid()], WEIGHT_FRAGMENT,
        id="invalid-steps-same-template-stays-completed-but-not-healthy",
    ),
    pytest.param(
        _rollout(image="web:v2", weight="ten", status=HEALTHY_STATUS), [_rs(H1, revision=1, available=2)],
        [NOT_PROGRESSING, AVAILABLE, NOT_COMPLETED, NOT_HEALTHY, _invalid()], MALFORMED_FRAGMENT,
        id="unparseable-spec-recomputed-from-the-raw-document",
    ),
    pytest.param(
        _rollout(image="web:v2", weight=BAD_WEIGHT, status={
            "stableRS": H1, "currentPodHash": H2, "abort": True,
            "conditions": [ABORTED, AVAILABLE, IN_FLIGHT, NOT_HEALTHY_OLD]}),
        [_rs(H1, revision=1, available=2), _rs(H2, revision=2, available=0)],
        [ABORTED, AVAILABLE, IN_FLIGHT, NOT_HEALTHY_OLD, _invalid()], WEIGHT_FRAGMENT,
        id="aborted-update-keeps-its-abort-and-its-not-completed",
    ),
    pytest.param(
        _rollout(image="web:v2", weight=BAD_WEIGHT, status={
            "stableRS": H1, "currentPodHash": H1,
            "conditions": [NOT_PROGRESSING | {"lastTransitionTime": OLD, "lastUpdateTime": OLD}, AVAILABLE,
                           NOT_COMPLETED | {"lastTransitionTime": OLD, "lastUpdateTime": OLD}, NOT_HEALTHY_OLD,
                           _cond("InvalidSpec", "True", "InvalidSpec", "an older reason")]}),
        [_rs(H1, revision=1, available=2)],
        [NOT_PROGRESSING | {"lastTransitionTime": OLD, "lastUpdateTime": OLD}, AVAILABLE,
         NOT_COMPLETED | {"lastTransitionTime": OLD, "lastUpdateTime": OLD}, NOT_HEALTHY_OLD,
         _invalid(transition=OLD, update=NOW_S)], WEIGHT_FRAGMENT,
        id="new-invalid-message-keeps-transition-times",
    ),
    pytest.param(
        _rollout(weight=BAD_WEIGHT, status={**HEALTHY_STATUS, "conditions": [PAUSED, *HEALTHY_STATUS["conditions"],
                                                                               RS_CREATE_ERROR]}),
        [_rs(H1, revision=1, available=1)],
        [PAUSED, NOT_PROGRESSING, _cond("Available", "False", "AvailableReason", st.MSG_NOT_AVAILABLE, transition=NOW_S),
         COMPLETED_V1, NOT_HEALTHY, _invalid()], WEIGHT_FRAGMENT,
        id="paused-kept-stale-create-error-dropped-availability-recounted",
    ),
    pytest.param(
        _rollout(weight=BAD_WEIGHT), [],
        [NOT_PROGRESSING, _cond("Available", "False", "AvailableReason", st.MSG_NOT_AVAILABLE, transition=NOW_S),
         NOT_COMPLETED, _invalid(), NOT_HEALTHY], WEIGHT_FRAGMENT,
        id="new-rollout-invalid-from-the-start",
    ),
]


@pytest.mark.parametrize(("rollout", "replica_sets", "expected", "fragment"), CASES)
def test_invalid_spec_conditions_are_recomputed(
    rollout: dict[str, Any], replica_sets: list[dict[str, Any]], expected: list[dict[str, Any]], fragment: str
) -> None:
    result = plan(RolloutContext(rollout=rollout, now=NOW, replica_sets=tuple(replica_sets)))
    conditions = result.status["conditions"]
    invalid = st.find_condition(conditions, "InvalidSpec")
    assert invalid is not None and fragment in invalid["message"]
    want = [dict(c, message=invalid["message"]) if c["type"] == "InvalidSpec" else c for c in expected]
    assert conditions == want
    assert result.status["phase"] == "Degraded"


@pytest.mark.parametrize(
    ("before", "cond", "expected"),
    [
        pytest.param(_cond("X", "True", "R", "m"), st.Cond("X", "True", "R", "m"),  # type: ignore[arg-type]
                     _cond("X", "True", "R", "m"), id="unchanged-keeps-both-times"),
        pytest.param(_cond("X", "True", "R", "m"), st.Cond("X", "True", "R2", "m2"),  # type: ignore[arg-type]
                     _cond("X", "True", "R2", "m2", update=NOW_S), id="new-text-same-status-keeps-transition"),
        pytest.param(_cond("X", "True", "R", "m"), st.Cond("X", "False", "R", "m"),  # type: ignore[arg-type]
                     _cond("X", "False", "R", "m", transition=NOW_S), id="status-flip-moves-both"),
    ],
)
def test_set_condition_moves_transition_time_only_with_the_status(
    before: dict[str, Any], cond: st.Cond, expected: dict[str, Any]
) -> None:
    conditions = [before]
    st.set_condition(conditions, cond, NOW_S)
    assert conditions == [expected]


# --- walks: an invalid update and its fix ------------------------------------------------------


def _world() -> World:
    rollout = _rollout(status={})
    rollout["metadata"]["generation"] = 1
    world = World(rollout=rollout, now=NOW)
    for _ in range(3):
        world.reconcile()
    assert world.rollout["status"]["phase"] == "Healthy"
    return world


def _types(world: World, status: str = "True") -> set[str]:
    return {c["type"] for c in world.rollout["status"]["conditions"] if c["status"] == status}


def _edit(world: World, *, image: str | None = None, weight: Any = None) -> None:
    spec = world.rollout["spec"]
    if image is not None:
        spec["template"]["spec"]["containers"][0]["image"] = image
    if weight is not None:
        spec["strategy"]["canary"]["steps"][0]["setWeight"] = weight
    world.rollout["metadata"]["generation"] += 1


def _walk(world: World, until: Any, limit: int = 30) -> None:
    for _ in range(limit):
        if until(world):
            return
        result = world.reconcile()
        world.advance(result.requeue_after or 1)
    raise AssertionError(f"not reached: {world.rollout['status']}")


def test_invalid_update_then_fix_never_healthy_beside_invalid_spec() -> None:
    world = _world()
    _edit(world, image="web:v2", weight=BAD_WEIGHT)
    world.reconcile()
    assert "InvalidSpec" in _types(world)
    assert {"Healthy", "Completed"} & _types(world) == set()
    _edit(world, weight=50)
    _walk(world, lambda w: w.rollout["status"].get("phase") == "Paused")
    assert "Healthy" not in _types(world) and "InvalidSpec" not in _types(world)
    world.rollout["status"]["pauseConditions"] = []  # promote past the indefinite pause
    _walk(world, lambda w: w.rollout["status"].get("phase") == "Healthy")
    assert {"Healthy", "Completed", "Available"} <= _types(world)
    assert all(c["type"] != "InvalidSpec" for c in world.rollout["status"]["conditions"])


def test_fixing_a_spec_mid_update_restarts_progress_and_its_deadline_clock() -> None:
    world = _world()
    world.instant_ready = False  # the canary's pods stay unready: the update is mid-way at step 0
    _edit(world, image="web:v2")
    world.reconcile()
    world.reconcile()
    before = st.find_condition(world.rollout["status"]["conditions"], "Progressing")
    assert before is not None and before["reason"] in ("NewReplicaSetCreated", "ReplicaSetUpdated")
    _edit(world, weight=BAD_WEIGHT)
    world.reconcile()
    progressing = st.find_condition(world.rollout["status"]["conditions"], "Progressing")
    assert progressing is not None and progressing["reason"] == "InvalidSpec"
    world.advance(timedelta(hours=1).total_seconds())  # far past the 600 s progress deadline
    _edit(world, weight=50)
    world.reconcile()
    progressing = st.find_condition(world.rollout["status"]["conditions"], "Progressing")
    assert progressing is not None and progressing["reason"] == "ReplicaSetUpdated"
    assert progressing["lastUpdateTime"] == format_time(world.now)  # the deadline counts from the fix
    assert world.rollout["status"]["phase"] == "Progressing"
