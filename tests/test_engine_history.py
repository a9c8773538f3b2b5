"""revisionHistoryLimit: which old ReplicaSets the plan deletes (rollouts/engine/history.py).

Table-driven tests of ``plan()``: a Rollout walked to a known state on the pure
World (tests/engine_sim.py), then old ReplicaSets in given states added beside
it, and the exact ``Plan.replica_sets_to_delete`` asserted. Then a walk through
three image updates with ``revisionHistoryLimit: 1``.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from engine_sim import World

from rollouts.engine import plan

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)
TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "web", "image": "web:v1"}]},
}


def _rollout(limit: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": copy.deepcopy(TEMPLATE),
        "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
    }
    if limit is not None:
        spec["revisionHistoryLimit"] = limit
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": spec,
        "status": {},
    }


def _set_image(world: World, image: str) -> None:
    world.rollout["spec"]["template"]["spec"]["containers"][0]["image"] = image
    world.rollout["metadata"]["generation"] += 1


def _walk(world: World, phase: str, limit: int = 30) -> None:
    for _ in range(limit):
        if world.rollout["status"].get("phase") == phase:
            return
        result = world.reconcile()
        world.advance(result.requeue_after or 1)
    raise AssertionError(f"never {phase}: {world.rollout['status']}")


def _healthy(limit: int | None) -> World:
    """Healthy at revision 1 (web:v1): the new ReplicaSet is the stable one."""
    world = World(rollout=_rollout(limit), now=NOW)
    _walk(world, "Healthy")
    return world


def _mid_update(limit: int | None) -> World:
    """Paused at the indefinite pause of an update to web:v2: stable and canary differ."""
    world = _healthy(limit)
    _set_image(world, "web:v2")
    _walk(world, "Paused")
    return world


def _old(
    revision: int,
    *,
    spec: int = 0,
    pods: int = 0,
    generation: int = 3,
    observed: int | None = 3,
    deleting: bool = False,
    created: str = "2023-12-01T00:00:00Z",
) -> dict[str, Any]:
    """An old ReplicaSet of the Rollout; by default fully scaled down."""
    metadata: dict[str, Any] = {
        "name": f"web-old{revision}-{created[8:10]}",
        "namespace": "ns",
        "generation": generation,
        "creationTimestamp": created,
        "labels": {"rollouts-pod-template-hash": f"old{revision}-{created[8:10]}"},
        "annotations": {"rollout.argoproj.io/revision": str(revision)},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2024-01-01T11:59:00Z"
    status: dict[str, Any] = {"replicas": pods, "readyReplicas": pods, "availableReplicas": pods}
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": metadata, "spec": {"replicas": spec}, "status": status}


def _planned_deletes(world: World, old: list[dict[str, Any]]) -> list[str]:
    for doc in old:
        world.replica_sets[doc["metadata"]["name"]] = doc
    return list(plan(world.context()).replica_sets_to_delete)


def _names(*docs: dict[str, Any]) -> list[str]:
    return [d["metadata"]["name"] for d in docs]


# Old revisions numbered below the rollout's own (1 healthy; 1 stable, 2 canary mid-update)
# would make it re-use them; the table's old ReplicaSets are revisions 10 and up.
R = [_old(10 + i) for i in range(12)]

CASES = [
    pytest.param(_healthy, None, R[:10], [], id="default-10-keeps-10-old"),
    pytest.param(_healthy, None, R[:11], _names(R[0]), id="default-10-deletes-the-11th-oldest"),
    pytest.param(_healthy, 1, R[:3], _names(R[0], R[1]), id="limit-1-keeps-the-newest-old"),
    pytest.param(_healthy, 0, R[:2], _names(R[0], R[1]), id="limit-0-deletes-every-old"),
    pytest.param(_healthy, 3, list(reversed(R[:5])), _names(R[0], R[1]), id="oldest-revision-first-whatever-the-order"),
    pytest.param(
        _healthy, 1, [_old(10, spec=0, pods=2), R[1], R[2]], _names(R[1]),
        id="pods-still-terminating-skipped-not-replaced",
    ),
    pytest.param(
        _healthy, 1, [_old(10, spec=1, pods=1), R[1], R[2]], _names(R[1]),
        id="still-scaled-up-skipped",
    ),
    pytest.param(
        _healthy, 1, [_old(10, generation=4, observed=3), R[1], R[2]], _names(R[1]),
        id="scale-down-not-yet-observed-skipped",
    ),
    pytest.param(
        _healthy, 1, [_old(10, observed=None), R[1], R[2]], _names(R[1]),
        id="no-observed-generation-skipped",
    ),
    pytest.param(
        _healthy, 1, [_old(10, deleting=True), R[1], R[2]], _names(R[1]),
        id="already-being-deleted-not-counted",
    ),
    pytest.param(
        _healthy, 1,
        [_old(10, created="2023-12-02T00:00:00Z"), _old(10, created="2023-12-01T00:00:00Z")],
        _names(_old(10, created="2023-12-01T00:00:00Z")),
        id="same-revision-older-creation-first",
    ),
    pytest.param(_mid_update, 0, R[:3], _names(*R[:3]), id="mid-update-limit-0-spares-stable-and-canary"),
    pytest.param(_mid_update, 1, [], [], id="mid-update-stable-and-canary-are-not-history"),
]


@pytest.mark.parametrize(("given", "limit", "old", "expected"), CASES)
def test_old_replica_sets_beyond_the_limit_are_deleted(
    given: Any, limit: int | None, old: list[dict[str, Any]], expected: list[str]
) -> None:
    world = given(limit)
    protected = set(world.replica_sets)
    deleted = _planned_deletes(world, copy.deepcopy(old))
    assert deleted == expected
    assert not protected & set(deleted)


def test_stable_and_canary_survive_limit_0_mid_update() -> None:
    world = _mid_update(0)
    status = world.rollout["status"]
    assert status["stableRS"] != status["currentPodHash"]
    assert len(world.replica_sets) == 2
    assert list(plan(world.context()).replica_sets_to_delete) == []


def test_invalid_spec_deletes_nothing() -> None:
    world = _healthy(0)
    world.rollout["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = 150
    assert _planned_deletes(world, copy.deepcopy(R[:3])) == []


def test_negative_limit_is_invalid_spec_naming_the_field() -> None:
    world = _healthy(None)
    world.rollout["spec"]["revisionHistoryLimit"] = -1
    result = plan(world.context())
    assert result.status["phase"] == "Degraded"
    assert "spec.revisionHistoryLimit" in result.status["message"]
    assert "must be greater than or equal to 0" in result.status["message"]
    assert result.replica_sets_to_delete == ()


def _revisions(world: World) -> list[int]:
    return sorted(
        int(rs["metadata"]["annotations"]["rollout.argoproj.io/revision"])
        for rs in world.replica_sets.values()
    )


def test_limit_1_through_three_updates_keeps_one_old_revision() -> None:
    # Given a Rollout with revisionHistoryLimit 1, healthy at revision 1
    world = _healthy(1)
    # When the image is updated three times, each update promoted to Healthy
    for number, image in enumerate(("web:v2", "web:v3", "web:v4"), start=2):
        _set_image(world, image)
        _walk(world, "Paused")
        world.rollout["status"]["pauseConditions"] = []  # promote past the indefinite pause
        _walk(world, "Healthy")
        world.reconcile()  # the reconcile after promotion sees the old stable scaled down
        # Then only the stable revision and the one before it are left
        assert _revisions(world) == [number - 1, number]
    deleted = [name for p in world.plans for name in p.replica_sets_to_delete]
    assert len(deleted) == 2 and len(set(deleted)) == 2
