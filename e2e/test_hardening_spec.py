"""Issue 7, defect 7 on the real cluster: spec problems found before traffic moves.

Each test: Given objects in a fresh namespace and a real ``tidegate controller``
watching it, When a careless user applies what the issue describes, Then the
cluster shows it: the VirtualService (watched, not polled) never gives the canary
a share when the spec cannot finish; a Service applied with its Rollout causes no
Warning; ``replicas: 0`` completes its steps. The CRD bounds (part d) are checked
in e2e/test_smoke.py with the other malformed documents.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
import yaml

from e2e.conftest import wait_until
from e2e.kit import Cluster, Controller, WeightRecorder, rollout, service, virtual_service

pytestmark = pytest.mark.e2e

GRACE_SECONDS = 10.0  # rollouts.engine.validation.REFERENCE_GRACE_SECONDS


def _objects(name: str, **rollout_args: Any) -> list[dict[str, Any]]:
    """Services, VirtualService and Rollout of a host-level Istio canary, in apply order."""
    return [
        service(f"{name}-canary", name),
        service(f"{name}-stable", name),
        virtual_service(f"{name}-vsvc", canary_host=f"{name}-canary", stable_host=f"{name}-stable"),
        rollout(name, **rollout_args),
    ]


def _template(name: str, args: list[str]) -> dict[str, Any]:
    # Never measured in these tests: the rollout must stop before a run exists.
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": name},
        "spec": {
            "args": [{"name": a} for a in args],
            "metrics": [{"name": "rate", "successCondition": "result[0] >= 0",
                         "provider": {"prometheus": {"address": "http://127.0.0.1:9",
                                                     "query": 'up{service="{{args.service-name}}"}'}}}],
        },
    }


def _warnings(cluster: Cluster, name: str) -> list[tuple[str, str]]:
    return [(e.reason, e.message) for e in cluster.events(name) if e.type == "Warning"]


# --- a. an analysis arg nobody supplies ------------------------------------------------------


def test_an_unsupplied_analysis_arg_is_invalid_before_any_traffic_moves(
    cluster: Cluster, controller: Controller
) -> None:
    # Given a Healthy rollout and a template that needs "service-name"
    cluster.create(_template("success-rate", ["service-name"]))
    for doc in _objects("shop", replicas=2, steps=[{"setWeight": 20}, {"pause": {}}]):
        cluster.create(doc)
    v1 = cluster.wait_phase("shop", "Healthy")["stableRS"]

    with WeightRecorder(cluster, "shop-vsvc") as recorder:
        # When an update adds an analysis step (after a setWeight) that passes no args
        def update(body: dict[str, Any]) -> None:
            body["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.local/model:v2"
            body["spec"]["strategy"]["canary"]["steps"] = [
                {"setWeight": 20},
                {"analysis": {"templates": [{"templateName": "success-rate"}]}},
                {"setWeight": 60},
            ]

        cluster.update_rollout("shop", update)

        # Then it is InvalidSpec at once, naming the spec path, with one Warning
        status = cluster.wait_phase("shop", "Degraded", timeout=30)
        expected = ('spec.strategy.canary.steps[1].analysis.templates[0]: AnalysisTemplate "success-rate"'
                    ' requires arg "service-name", which is not supplied')
        assert expected in status["message"]
        wait_until(lambda: [r for r, _ in _warnings(cluster, "shop")] == ["InvalidSpec"], timeout=10,
                   message="one InvalidSpec Warning")
        time.sleep(3)  # and nothing moves afterwards either

    # and no traffic moved, no canary ReplicaSet, no AnalysisRun
    assert recorder.weights == [0], recorder.weights
    assert list(cluster.replica_sets("shop")) == [v1]
    runs = cluster.custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", cluster.ns, "analysisruns")
    assert runs["items"] == []


# --- b. a Service applied together with its Rollout ----------------------------------------------


def test_services_applied_together_with_their_rollouts_cause_no_warning(
    cluster: Cluster, controller: Controller, kubectl: Any
) -> None:
    # Given five Rollouts, each with its Services and VirtualService, in one file
    names = [f"app{i}" for i in range(5)]
    docs = [doc for name in names for doc in _objects(name, replicas=1, steps=[{"setWeight": 50}, {"pause": {}}])]

    # When they are applied in one kubectl apply (Services milliseconds before the Rollout)
    applied = kubectl("apply", "-n", cluster.ns, "-f", "-", input_text=yaml.safe_dump_all(docs))
    assert applied.returncode == 0, applied.stderr

    # Then every Rollout becomes Healthy without any Warning Event
    for name in names:
        cluster.wait_phase(name, "Healthy", timeout=60)
    for name in names:
        assert _warnings(cluster, name) == [], name


def test_a_service_created_seconds_after_its_rollout_causes_no_warning(
    cluster: Cluster, controller: Controller
) -> None:
    # Given a Rollout whose Services and VirtualService do not exist yet
    *references, ro = _objects("late", replicas=1)
    cluster.create(ro)

    # When they are created two seconds later (a slow pipeline, a second kubectl apply)
    time.sleep(2)
    for doc in references:
        cluster.create(doc)

    # Then the Rollout goes Healthy as if they had been there, with no Warning and no InvalidSpec
    status = cluster.wait_phase("late", "Healthy", timeout=60)
    assert all(c["type"] != "InvalidSpec" for c in status.get("conditions") or [])
    assert _warnings(cluster, "late") == []


def test_a_service_that_never_appears_is_reported_after_the_grace_period(
    cluster: Cluster, controller: Controller
) -> None:
    # Given a Rollout whose canary Service is never created
    _, stable_svc, vs, ro = _objects("lonely", replicas=1)
    cluster.create(stable_svc)
    cluster.create(vs)
    created = cluster.create(ro)

    # Then after the grace period (not before) it is InvalidSpec, with one Warning naming the Service
    status = cluster.wait_phase("lonely", "Degraded", timeout=GRACE_SECONDS + 20)
    assert 'Service "lonely-canary" does not exist in' in status["message"]
    # The Event is posted beside the status write, not before it: wait for it to arrive.
    warnings = wait_until(
        lambda: [e for e in cluster.events("lonely") if e.type == "Warning"],
        timeout=10, message="the InvalidSpec Warning Event")
    time.sleep(2)  # then make sure no second Warning follows it
    warnings = [e for e in cluster.events("lonely") if e.type == "Warning"]
    assert [e.reason for e in warnings] == ["InvalidSpec"]
    first_seen = warnings[0].first_timestamp or warnings[0].event_time
    waited = (first_seen - datetime.fromisoformat(created["metadata"]["creationTimestamp"])).total_seconds()
    assert waited >= GRACE_SECONDS - 1, waited  # Event timestamps have second precision
    assert cluster.replica_sets("lonely") == {}
    print(f"missing Service: Warning {waited:.0f}s after the Rollout's creation")


# --- c. replicas: 0 --------------------------------------------------------------------------


def test_replicas_0_with_a_new_revision_completes_its_steps(cluster: Cluster, controller: Controller) -> None:
    # Given a Healthy rollout scaled to zero
    steps = [{"setWeight": 20}, {"pause": {"duration": "2s"}}, {"setWeight": 60}]
    for doc in _objects("idle", replicas=0, steps=steps):
        cluster.create(doc)
    v1 = cluster.wait_phase("idle", "Healthy")["stableRS"]

    with WeightRecorder(cluster, "idle-vsvc") as recorder:
        # When a new revision is rolled out
        started = time.monotonic()
        cluster.set_image("idle", "registry.local/model:v2")

        # Then it walks its steps and is Healthy in seconds, not at the 600 s progress deadline
        status = cluster.wait_status(
            "idle", lambda s: s.get("phase") == "Healthy" and s.get("stableRS") not in (None, v1),
            timeout=60, message="Healthy on the new revision")
        elapsed = time.monotonic() - started

    assert status["currentStepIndex"] == len(steps)
    assert status["stableRS"] == status["currentPodHash"]
    assert elapsed < 30, elapsed
    completed = [e for e in cluster.events("idle") if e.reason == "RolloutStepCompleted"]
    assert len(completed) == len(steps)
    # no pods, no traffic: the canary never got a share of the VirtualService
    assert recorder.weights == [0], recorder.weights
    print(f"replicas 0: new revision Healthy after {elapsed:.1f}s")
