"""Restart decisions (rollouts/engine/restart.py) and their place in the engine's plan.

Given spec.restartAt, the pods of the Rollout's ReplicaSets and the clock, the
engine deletes pods created before restartAt within the availability budget
(Argo's rollout/restart.go), then records status.restartedAt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from engine_sim import World

from rollouts.engine import restart
from rollouts.engine.reconcile import plan as make_plan
from rollouts.engine.restart import PodInfo, RestartDecision

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
AT = "2024-01-01T12:00:00Z"
BEFORE, AFTER = T0 - timedelta(minutes=5), T0 + timedelta(seconds=5)
NOW = T0 + timedelta(seconds=30)


def pod(name: str, created: datetime, *, ready: bool = True, terminating: bool = False) -> PodInfo:
    return PodInfo(name=name, created=created, ready=ready, terminating=terminating)


OLD4 = [pod(f"p{i}", BEFORE + timedelta(seconds=i)) for i in range(4)]


@pytest.mark.parametrize(
    ("kwargs", "want"),
    [
        pytest.param(dict(restart_at=None), RestartDecision(), id="no-restart"),
        pytest.param(dict(restart_at="garbage"), RestartDecision(), id="unparseable-restart-at"),
        pytest.param(dict(restarted_at=AT), RestartDecision(), id="already-honoured"),
        pytest.param(dict(restarted_at="2024-01-01T12:00:00+00:00"), RestartDecision(), id="honoured-other-format"),
        pytest.param(dict(now=T0 - timedelta(seconds=20)), RestartDecision(requeue_after=20.0), id="in-the-future"),
        pytest.param(dict(pods=None), RestartDecision(restarting=True, requeue_after=5.0), id="pods-not-listed"),
        pytest.param(dict(pods=[pod(f"n{i}", AFTER) for i in range(4)]), RestartDecision(restarted_at=AT),
                     id="no-old-pod-done"),
        pytest.param(dict(), RestartDecision(evict=("p0",), restarting=True, requeue_after=5.0),
                     id="all-available-delete-oldest-one"),
        pytest.param(dict(max_unavailable=2), RestartDecision(evict=("p0", "p1"), restarting=True, requeue_after=5.0),
                     id="max-unavailable-2-deletes-two"),
        pytest.param(dict(max_unavailable=0), RestartDecision(evict=("p0",), restarting=True, requeue_after=5.0),
                     id="max-unavailable-0-still-one"),
        pytest.param(dict(pods=[pod("p0", BEFORE, terminating=True), *OLD4[1:], pod("n0", AFTER, ready=False)]),
                     RestartDecision(restarting=True, requeue_after=5.0), id="one-in-flight-waits"),
        pytest.param(dict(pods=[*OLD4[1:], pod("n0", AFTER, ready=False)]),
                     RestartDecision(restarting=True, requeue_after=5.0), id="replacement-not-ready-waits"),
        pytest.param(dict(pods=[*OLD4[1:], pod("n0", AFTER)]),
                     RestartDecision(evict=("p1",), restarting=True, requeue_after=5.0),
                     id="replacement-ready-next-one"),
        pytest.param(dict(pods=[pod("p0", BEFORE, ready=False), *OLD4[1:]]),
                     RestartDecision(restarting=True, requeue_after=5.0), id="unavailable-pod-blocks"),
    ],
)
def test_decide(kwargs: dict[str, Any], want: RestartDecision) -> None:
    args: dict[str, Any] = dict(restart_at=AT, restarted_at=None, now=NOW, pods=OLD4, spec_replicas=4,
                                max_unavailable=1)
    args.update(kwargs)
    assert restart.decide(**args) == want


@pytest.mark.parametrize(
    ("rollout", "want"),
    [
        pytest.param({"spec": {"restartAt": AT}}, True, id="due"),
        pytest.param({"spec": {"restartAt": AT}, "status": {"restartedAt": AT}}, False, id="done"),
        pytest.param({"spec": {"restartAt": "2024-01-01T13:00:00Z"}}, False, id="future"),
        pytest.param({"spec": {}}, False, id="unset"),
        pytest.param({"spec": {"restartAt": AT}, "status": {"restartedAt": "2023-12-31T00:00:00Z"}}, True,
                     id="an-older-restart-done"),
    ],
)
def test_due(rollout: dict[str, Any], want: bool) -> None:
    assert restart.due(rollout, NOW) is want


def test_owned_pods_only_of_the_rollouts_replica_sets() -> None:
    def doc(name: str, owner: str, controller: bool = True) -> dict[str, Any]:
        return {"metadata": {"name": name, "creationTimestamp": AT, "ownerReferences": [
            {"kind": "ReplicaSet", "name": owner, "controller": controller}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}

    pods = [doc("a", "web-1"), doc("b", "other-1"), doc("c", "web-1", controller=False)]
    assert restart.owned_pods(pods, ["web-1"]) == [PodInfo(name="a", created=T0, ready=True, terminating=False)]


# --- in the engine's plan ----------------------------------------------------------------------------


def basic_world() -> World:
    labels = {"app": "web"}
    rollout = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1", "generation": 1, "annotations": {}},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "a:1"}]}},
                 "strategy": {"canary": {"steps": [{"setWeight": 50}]}}},
    }
    world = World(rollout=rollout, now=T0)
    for _ in range(3):
        world.reconcile()
    assert world.rollout["status"]["phase"] == "Healthy"
    return world


def pod_docs(world: World, names_created: list[tuple[str, datetime]]) -> tuple[dict[str, Any], ...]:
    (rs_name,) = world.replica_sets
    return tuple(
        {"metadata": {"name": name, "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "ownerReferences": [{"kind": "ReplicaSet", "name": rs_name, "controller": True}]},
         "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        for name, created in names_created
    )


def test_plan_deletes_one_old_pod_and_reports_restarting() -> None:
    world = basic_world()
    world.rollout["spec"]["restartAt"] = AT
    world.now = NOW
    ctx = dataclasses.replace(world.context(), pods=pod_docs(world, [("old-a", BEFORE), ("old-b", BEFORE)]))
    result = make_plan(ctx)
    assert result.pods_to_evict == ("old-a",)
    assert result.status["phase"] == "Progressing"
    assert result.status["message"] == "rollout is restarting"
    assert "restartedAt" not in result.status
    assert result.requeue_after is not None and result.requeue_after <= 5.0


def test_plan_records_restarted_at_when_no_pod_is_older() -> None:
    world = basic_world()
    world.rollout["spec"]["restartAt"] = AT
    world.now = NOW
    ctx = dataclasses.replace(world.context(), pods=pod_docs(world, [("new-a", AFTER), ("new-b", AFTER)]))
    result = make_plan(ctx)
    assert result.pods_to_evict == ()
    assert result.status["restartedAt"] == AT
    assert result.status["phase"] == "Healthy"


def test_plan_without_restart_deletes_nothing() -> None:
    world = basic_world()
    ctx = dataclasses.replace(world.context(), pods=pod_docs(world, [("old-a", BEFORE)]))
    result = make_plan(ctx)
    assert result.pods_to_evict == () and "restartedAt" not in result.status


# --- applied by the kube layer -----------------------------------------------------------------------


class PodEvictingPort:
    """A stand-in RolloutPort recording pod evictions; ``gone`` names pods that answer 404,
    ``guarded`` pods a PodDisruptionBudget protects (429), as the API server answers."""

    def __init__(self, gone: frozenset[str] = frozenset(), guarded: frozenset[str] = frozenset()) -> None:
        self.evicted: list[tuple[str, str]] = []
        self.events: list[dict[str, Any]] = []
        self.gone = gone
        self.guarded = guarded

    def evict_pod(self, namespace: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        if name in self.gone:
            raise ApiException(status=404, reason="Not Found")
        if name in self.guarded:
            raise ApiException(status=429, reason="Too Many Requests")
        self.evicted.append((namespace, name))

    def post_event(self, involved: Mapping[str, Any], **event: Any) -> None:
        self.events.append(event)


def _execute(port: PodEvictingPort, pods: tuple[str, ...], uid: str) -> int:
    from typing import cast

    from common.kubewrite import EventDeduper
    from rollouts.engine.context import Plan
    from rollouts.kube import apply
    from rollouts.kube.port import RolloutPort

    ctx = basic_world().context()
    ctx.rollout["metadata"]["uid"] = uid
    plan = Plan(status=dict(ctx.rollout["status"]), pods_to_evict=pods)
    outcome = apply.execute(cast(RolloutPort, port), ctx, plan, apply.VersionTracker(), reported=EventDeduper())
    return outcome.writes


def test_apply_evicts_the_planned_pods_and_a_missing_one_is_done() -> None:
    port = PodEvictingPort(gone=frozenset({"old-b"}))
    assert _execute(port, ("old-a", "old-b"), uid="u-evict") >= 1
    assert port.evicted == [("ns", "old-a")]
    assert port.events == []


def test_a_pod_disruption_budget_holds_the_restart_and_says_so_once_per_pod() -> None:
    # Given a pod a PodDisruptionBudget protects, planned first
    port = PodEvictingPort(guarded=frozenset({"old-a"}))

    # When two reconciles in a row plan its eviction
    _execute(port, ("old-a", "old-b"), uid="u-pdb")
    _execute(port, ("old-a", "old-b"), uid="u-pdb")

    # Then nothing after it is evicted, and one Warning Event names the pod and the budget
    assert port.evicted == []
    assert [(e["event_type"], e["reason"]) for e in port.events] == [("Warning", "RestartEvictionBlocked")]
    assert "old-a" in port.events[0]["message"] and "PodDisruptionBudget" in port.events[0]["message"]

    # And once the budget lets it go and the restart moves on, a later block is reported again
    port.guarded = frozenset()
    _execute(port, ("old-a",), uid="u-pdb")
    port.guarded = frozenset({"old-b"})
    _execute(port, ("old-b",), uid="u-pdb")
    assert port.evicted == [("ns", "old-a")]
    assert [e["message"].split()[4] for e in port.events] == ["old-a", "old-b"]
