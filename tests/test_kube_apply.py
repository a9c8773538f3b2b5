"""The rollout write path under test: the exact requests apply.py sends through the RolloutPort.

Given a reconcile's observed objects and a Plan (with the Istio documents the
engine computed in rollouts/engine/mesh.py), when rollouts.kube.apply.execute
runs it against a recording fake port, then the requests are exactly the ones
expected, a write that changes nothing is not sent, and a standing error is one
Event per distinct message, not one per retry. Also the shared pieces in
common/kubewrite.py (merge-patch diff, counted writer, EventDeduper).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from common.kubewrite import API_WRITES, CountedWriter, EventDeduper, merge_patch
from rollouts.api.constants import (
    ANNOTATION_MANAGED_BY,
    LABEL_POD_TEMPLATE_HASH,
    PodTemplateHash,
    Weight,
)
from rollouts.engine import mesh
from rollouts.engine.context import Event, Plan, ReplicaSetUpdate, RolloutContext, TrafficIntent
from rollouts.kube import apply

NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
NS, NAME, UID = "shop", "web", "uid-web"
V1, V2 = PodTemplateHash("v1hash"), PodTemplateHash("v2hash")
MANAGED_DR = "argo-rollouts.argoproj.io/managed-by-rollouts"


class RecordingPort:
    """A RolloutPort that records every request; ``refuse`` makes a method raise every time."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.events: list[dict[str, Any]] = []
        self.refuse: dict[str, ApiException] = {}
        self.version = 10

    def _record(self, method: str, *args: Any) -> None:
        if method in self.refuse:
            raise self.refuse[method]
        self.calls.append((method, *copy.deepcopy(args)))

    def _written(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        return {"metadata": {"name": NAME, "namespace": NS, "resourceVersion": str(self.version)}, **body}

    def create_replica_set(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        self._record("create_replica_set", namespace, manifest)

    def patch_replica_set(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self._record("patch_replica_set", namespace, name, patch)

    def delete_replica_set(self, namespace: str, name: str) -> None:
        self._record("delete_replica_set", namespace, name)

    def patch_service(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self._record("patch_service", namespace, name, patch)

    def evict_pod(self, namespace: str, name: str) -> None:
        self._record("evict_pod", namespace, name)

    def replace_virtual_service(self, document: Mapping[str, Any]) -> None:
        self._record("replace_virtual_service", document)

    def replace_destination_rule(self, document: Mapping[str, Any]) -> None:
        self._record("replace_destination_rule", document)

    def create_analysis_run(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        self._record("create_analysis_run", namespace, manifest)

    def patch_analysis_run(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self._record("patch_analysis_run", namespace, name, patch)

    def delete_analysis_run(self, namespace: str, name: str) -> None:
        self._record("delete_analysis_run", namespace, name)

    def patch_rollout(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        self._record("patch_rollout", namespace, name, patch)
        return self._written(patch)

    def patch_rollout_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> Mapping[str, Any]:
        self._record("patch_rollout_status", namespace, name, status)
        return self._written({"status": status})

    def post_event(self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str,
                   at: datetime | None = None) -> None:
        self.events.append({"type": event_type, "reason": reason, "message": message})


def _rejection(code: int, message: str) -> ApiException:
    exc = ApiException(status=code, reason="Unprocessable Entity")
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


# --- observed objects -----------------------------------------------------------------------

def _rollout(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": 2, "resourceVersion": "5",
                     "annotations": {"rollout.argoproj.io/revision": "2"}},
        "spec": {"replicas": 2, "strategy": {"canary": {
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": {"istio": {
                "virtualService": {"name": "web-vs", "routes": ["primary"]},
                "destinationRule": {"name": "web-dr", "canarySubsetName": "canary", "stableSubsetName": "stable"},
            }},
            "steps": [{"setWeight": 50}, {"pause": {}}],
        }}},
        "status": status if status is not None else {"phase": "Progressing", "currentStepIndex": 0,
                                                      "stableRS": V1, "currentPodHash": V2},
    }


def _replica_set(pod_hash: str, replicas: int, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": f"web-{pod_hash}", "namespace": NS, "annotations": annotations or {},
                         "labels": {LABEL_POD_TEMPLATE_HASH: pod_hash}},
            "spec": {"replicas": replicas}, "status": {"availableReplicas": replicas}}


def _service(name: str, pod_hash: str | None) -> dict[str, Any]:
    selector = {"app": "web"} | ({LABEL_POD_TEMPLATE_HASH: pod_hash} if pod_hash else {})
    annotations = {ANNOTATION_MANAGED_BY: NAME} if pod_hash else {}
    return {"metadata": {"name": name, "namespace": NS, "annotations": annotations}, "spec": {"selector": selector}}


def _vs(canary: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "web-vs", "namespace": NS, "resourceVersion": "31"},
        "spec": {"hosts": ["web"], "http": [{"name": "primary", "timeout": "3s", "route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 100 - canary},
            {"destination": {"host": "web", "subset": "canary"}, "weight": canary},
        ]}]},
    }


def _dr(canary: str | None, stable: str | None, managed: bool) -> dict[str, Any]:
    def subset(name: str, pod_hash: str | None) -> dict[str, Any]:
        labels = {"app": "web"} | ({LABEL_POD_TEMPLATE_HASH: pod_hash} if pod_hash else {})
        return {"name": name, "labels": labels}
    meta: dict[str, Any] = {"name": "web-dr", "namespace": NS, "resourceVersion": "41"}
    if managed:
        meta["annotations"] = {MANAGED_DR: NAME}
    return {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule", "metadata": meta,
        "spec": {"host": "web", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                 "subsets": [subset("stable", stable), subset("canary", canary)]},
    }


def _context(*, rollout: dict[str, Any] | None = None, vs: dict[str, Any] | None = None,
             dr: dict[str, Any] | None = None, canary_service_hash: str | None = None,
             runs: tuple[dict[str, Any], ...] = ()) -> RolloutContext:
    return RolloutContext(
        rollout=rollout or _rollout(),
        now=NOW,
        replica_sets=(_replica_set(V1, 2), _replica_set(V2, 0)),
        services={"web-stable": _service("web-stable", V1), "web-canary": _service("web-canary", canary_service_hash)},
        virtual_services={f"{NS}/web-vs": vs if vs is not None else _vs(0)},
        destination_rule=dr if dr is not None else _dr(V1, V1, managed=True),
        analysis_runs=runs,
    )


INTENT_50 = TrafficIntent(canary_weight=Weight(50), stable_weight=Weight(50), canary_hash=V2, stable_hash=V1)


# --- the engine's Istio documents -------------------------------------------------------------

def test_engine_plans_the_exact_destination_rule_then_virtual_service() -> None:
    writes, error = mesh.mesh_writes(_context(), INTENT_50)
    assert error is None
    assert [(str(w.kind), w.key) for w in writes] == [("DestinationRule", f"{NS}/web-dr"),
                                                      ("VirtualService", f"{NS}/web-vs")]
    # Only the canary subset's hash label changes; trafficPolicy and resourceVersion ride along.
    assert writes[0].document == _dr(V2, V1, managed=True)
    # Only the weights change; the route's timeout and the resourceVersion (for the 409) are kept.
    assert writes[1].document == _vs(50)


def test_engine_plans_no_istio_write_when_the_mesh_already_matches() -> None:
    ctx = _context(vs=_vs(50), dr=_dr(V2, V1, managed=True))
    assert mesh.mesh_writes(ctx, INTENT_50) == ((), None)


def test_engine_plans_no_istio_write_without_traffic_routing() -> None:
    assert mesh.mesh_writes(_context(), None) == ((), None)


# --- the exact requests ----------------------------------------------------------------------

def test_apply_sends_exactly_the_planned_writes_in_order() -> None:
    """Given a Rollout at setWeight 50 whose canary just became available, when the plan is
    applied, then ReplicaSet, Service, DestinationRule, VirtualService and status requests are
    exactly these, and nothing else is sent."""
    ctx = _context()
    writes, _ = mesh.mesh_writes(ctx, INTENT_50)
    new_status = dict(ctx.rollout["status"], canary={"weights": {"canary": {"weight": 50}}}, message=None)
    plan = Plan(
        status=new_status,
        replica_set_updates={
            f"web-{V2}": ReplicaSetUpdate(replicas=1),
            f"web-{V1}": ReplicaSetUpdate(replicas=2, annotations={"rollout.argoproj.io/desired-replicas": "2"}),
        },
        service_selectors={"web-stable": V1, "web-canary": V2},
        traffic=INTENT_50,
        mesh_writes=writes,
        events=(Event(type="Normal", reason="TrafficWeightUpdated", message="Traffic weight updated from 0 to 50"),),
    )
    port = RecordingPort()
    outcome = apply.execute(port, ctx, plan, apply.VersionTracker(), reported=EventDeduper())
    assert port.calls == [
        ("patch_replica_set", NS, f"web-{V2}", {"spec": {"replicas": 1}}),
        ("patch_replica_set", NS, f"web-{V1}",
         {"metadata": {"annotations": {"rollout.argoproj.io/desired-replicas": "2"}}}),
        ("patch_service", NS, "web-canary",
         {"metadata": {"annotations": {ANNOTATION_MANAGED_BY: NAME}},
          "spec": {"selector": {LABEL_POD_TEMPLATE_HASH: V2}}}),
        ("replace_destination_rule", _dr(V2, V1, managed=True)),
        ("replace_virtual_service", _vs(50)),
        ("patch_rollout_status", NS, NAME, {"canary": {"weights": {"canary": {"weight": 50}}}}),
    ]
    assert port.events == [{"type": "Normal", "reason": "TrafficWeightUpdated",
                            "message": "Traffic weight updated from 0 to 50"}]
    assert outcome.writes == 6 and not outcome.only_status


def test_creates_rollout_patches_and_run_writes_are_exact() -> None:
    ctx = _context(rollout=_rollout() | {"metadata": _rollout()["metadata"] | {"annotations": {
        "rollout.argoproj.io/revision": "1", "tidegate.dev/abort": "true"}}},
        runs=({"metadata": {"name": "web-run-1"}, "spec": {}},))
    manifest_rs = {"metadata": {"name": "web-v3hash"}, "spec": {"replicas": 0}}
    manifest_run = {"metadata": {"name": "web-run-2"}, "spec": {"metrics": []}}
    plan = Plan(
        status=dict(ctx.rollout["status"]),
        replica_sets_to_create=(manifest_rs,),
        analysis_runs_to_create=(manifest_run,),
        analysis_runs_to_terminate=("web-run-1",),
        spec_patch={"spec": {"replicas": 1}},
        rollout_annotations={"rollout.argoproj.io/revision": "2"},
        remove_abort_annotation=True,
        replica_sets_to_delete=("web-v0hash",),
    )
    port = RecordingPort()
    outcome = apply.execute(port, ctx, plan, apply.VersionTracker(), reported=EventDeduper())
    assert port.calls == [
        ("patch_rollout", NS, NAME, {"spec": {"replicas": 1}}),
        ("create_replica_set", NS, manifest_rs),
        ("create_analysis_run", NS, manifest_run),
        ("patch_analysis_run", NS, "web-run-1", {"spec": {"terminate": True}}),
        ("patch_rollout", NS, NAME, {"metadata": {"annotations": {"rollout.argoproj.io/revision": "2"}}}),
        ("patch_rollout", NS, NAME, {"metadata": {"annotations": {"tidegate.dev/abort": None}}}),
        ("delete_replica_set", NS, "web-v0hash"),
    ]
    assert outcome.writes == 7


def _nothing_changes(ctx: RolloutContext) -> Plan:
    """A plan every write of which asks for what ctx already shows."""
    return Plan(
        status=copy.deepcopy(dict(ctx.rollout["status"])),
        replica_set_updates={f"web-{V1}": ReplicaSetUpdate(replicas=2), f"web-{V2}": ReplicaSetUpdate(replicas=0)},
        service_selectors={"web-stable": V1, "web-canary": V2},
        traffic=INTENT_50,
        mesh_writes=tuple(),
        analysis_runs_to_terminate=("web-run-1",),
        rollout_annotations={"rollout.argoproj.io/revision": "2"},
        remove_abort_annotation=True,  # no abort annotation: nothing to remove
    )


def test_a_plan_that_changes_nothing_sends_nothing() -> None:
    ctx = _context(vs=_vs(50), dr=_dr(V2, V1, managed=True), canary_service_hash=V2,
                   runs=({"metadata": {"name": "web-run-1"}, "spec": {"terminate": True}},))
    port = RecordingPort()
    plan = _nothing_changes(ctx)
    assert mesh.mesh_writes(ctx, INTENT_50) == ((), None)
    outcome = apply.execute(port, ctx, plan, apply.VersionTracker(), reported=EventDeduper())
    assert port.calls == [] and outcome.writes == 0 and outcome.written_rollout is None


@pytest.mark.parametrize("kind", ["VirtualService", "DestinationRule"])
def test_a_mesh_write_equal_to_the_observed_object_is_not_sent(kind: str) -> None:
    """Even a plan built from an older snapshot sends no replace that changes nothing."""
    ctx = _context(vs=_vs(50), dr=_dr(V2, V1, managed=True))
    stale = _context()  # the weights and hashes before this reconcile
    writes, _ = mesh.mesh_writes(stale, INTENT_50)
    plan = Plan(status=dict(ctx.rollout["status"]), mesh_writes=tuple(w for w in writes if w.kind == kind))
    port = RecordingPort()
    apply.execute(port, ctx, plan, apply.VersionTracker(), reported=EventDeduper())
    assert port.calls == []


def test_status_patch_is_the_merge_diff_and_skipped_when_equal() -> None:
    ctx = _context()
    planned = dict(ctx.rollout["status"], phase="Paused", currentStepIndex=1, currentPodHash=None)
    port = RecordingPort()
    outcome = apply.execute(port, ctx, Plan(status=planned), apply.VersionTracker(), reported=EventDeduper())
    assert port.calls == [("patch_rollout_status", NS, NAME,
                           {"phase": "Paused", "currentStepIndex": 1, "currentPodHash": None})]
    assert outcome.only_status and outcome.written_rollout is not None
    again = apply.execute(port, _context(rollout=_rollout(planned)), Plan(status=planned),
                          apply.VersionTracker(), reported=EventDeduper())
    assert again.writes == 0 and len(port.calls) == 1


# --- one Event per distinct message -----------------------------------------------------------

def _reconcile_with_traffic_error(port: RecordingPort, rollout: dict[str, Any]) -> dict[str, Any]:
    """One reconcile whose VirtualService is gone: plan, apply, return the status the port holds."""
    ctx = _context(rollout=rollout)
    ctx = RolloutContext(rollout=ctx.rollout, now=NOW, replica_sets=ctx.replica_sets, services=ctx.services,
                         virtual_services={f"{NS}/web-vs": None}, destination_rule=ctx.destination_rule)
    writes, error = mesh.mesh_writes(ctx, INTENT_50)
    assert writes == () and error is not None
    planned = Plan(status=dict(ctx.rollout["status"], phase="Progressing", currentStepIndex=1),
                   traffic=INTENT_50, events=(Event(type="Normal", reason="RolloutStepCompleted", message="step"),),
                   rollout_annotations={"rollout.argoproj.io/revision": "3"},
                   analysis_runs_to_create=({"metadata": {"name": "web-run"}},))
    plan = mesh.traffic_error_plan(ctx, planned, error)
    assert plan.requeue_after == mesh.TRAFFIC_ERROR_REQUEUE_SECONDS
    apply.execute(port, ctx, plan, apply.VersionTracker(), reported=EventDeduper())
    status: dict[str, Any] = dict(ctx.rollout["status"])
    for call in port.calls:
        if call[0] == "patch_rollout_status":
            status = {**status, **call[3]}
    return status


def test_a_traffic_error_is_the_status_message_and_one_event_per_distinct_message() -> None:
    """Given a VirtualService that disappeared, when the Rollout reconciles three times, then
    the status message names the error, exactly one Event says it, and nothing else moves
    (no step, no run, no revision)."""
    port = RecordingPort()
    rollout = _rollout()
    for _ in range(3):
        status = _reconcile_with_traffic_error(port, rollout)
        rollout = _rollout(status)
    message = "VirtualService 'shop/web-vs' referenced by rollout 'web' does not exist"
    assert rollout["status"] == _rollout()["status"] | {"message": f"TrafficRoutingError: {message}"}
    assert port.events == [{"type": "Warning", "reason": "TrafficRoutingError", "message": message}]
    assert port.calls == [("patch_rollout_status", NS, NAME, {"message": f"TrafficRoutingError: {message}"})]


def test_a_rejection_whose_status_cannot_be_written_is_still_one_event() -> None:
    """The status is the durable record of a rejection; when even it is refused, the deduper
    keeps the Event to one per message, and forgets it once a reconcile goes through."""
    reported = EventDeduper()
    port = RecordingPort()
    port.refuse["create_replica_set"] = _rejection(422, "spec.template: Invalid value: \"Bad_Name\"")
    port.refuse["patch_rollout_status"] = _rejection(422, "status: Too many")
    plan = Plan(status={}, replica_sets_to_create=({"metadata": {"name": "web-bad"}},))
    for _ in range(3):
        with pytest.raises(apply.WriteRejected):
            apply.execute(port, _context(), plan, apply.VersionTracker(), reported=reported)
    assert [e["reason"] for e in port.events] == ["ReplicaSetCreateError"]
    assert "Bad_Name" in port.events[0]["message"]

    port.refuse.clear()
    apply.execute(port, _context(), Plan(status=dict(_context().rollout["status"])),
                  apply.VersionTracker(), reported=reported)
    port.refuse["create_replica_set"] = _rejection(422, "spec.template: Invalid value: \"Bad_Name\"")
    port.refuse["patch_rollout_status"] = _rejection(422, "status: Too many")
    with pytest.raises(apply.WriteRejected):
        apply.execute(port, _context(), plan, apply.VersionTracker(), reported=reported)
    assert [e["reason"] for e in port.events] == ["ReplicaSetCreateError"] * 2  # it came back: news


def test_event_deduper_remembers_per_object_and_reason() -> None:
    dedup = EventDeduper(max_objects=2)
    a = {"metadata": {"namespace": "ns", "name": "a", "uid": "1"}}
    b = {"metadata": {"namespace": "ns", "name": "b", "uid": "2"}}
    c = {"metadata": {"namespace": "ns", "name": "c", "uid": "3"}}
    assert dedup.should_post(a, "R", "m1")
    assert not dedup.should_post(a, "R", "m1")  # a retry
    assert dedup.should_post(a, "R", "m2")  # a new message
    assert dedup.should_post(a, "Other", "m2")  # another reason
    assert dedup.should_post(b, "R", "m2")  # another object
    dedup.clear(a)
    assert dedup.should_post(a, "R", "m2")  # the error came back after it was gone
    assert dedup.should_post(c, "R", "m")  # b is the least recently used: evicted
    assert dedup.should_post(b, "R", "m2")


# --- common/kubewrite.py ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        ({"a": {"x": 1, "y": 2}}, {"a": {"x": 1, "y": 3}}, {"a": {"y": 3}}),
        ({}, {"a": None}, {}),
        ({"a": None}, {"a": None}, {}),
        ({"a": [1, 2]}, {"a": [1]}, {"a": [1]}),
        ({"a": {"x": 1}}, {"a": 5}, {"a": 5}),
    ],
    ids=["equal", "changed", "removed", "nested", "absent-none", "kept-none", "list", "dict-to-scalar"],
)
def test_merge_patch(old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]) -> None:
    assert merge_patch(old, new) == patch


def _count(kind: str, verb: str, code: str) -> float:
    value: float = API_WRITES.labels(kind=kind, verb=verb, status_code=code)._value.get()
    return value


def test_counted_writer_counts_answers_by_kind_verb_and_code() -> None:
    before_ok, before_409 = _count("Probe", "create", "201"), _count("Probe", "create", "409")
    writer = CountedWriter()
    assert writer.send("Probe", "create", lambda: "done", code=201) == "done"

    def conflict() -> None:
        raise ApiException(status=409)

    with pytest.raises(ApiException):
        writer.send("Probe", "create", conflict, count_errors=True)
    with pytest.raises(ApiException):
        writer.send("Probe", "create", conflict)  # not counted
    assert writer.writes == 2
    assert _count("Probe", "create", "201") == before_ok + 1
    assert _count("Probe", "create", "409") == before_409 + 1
