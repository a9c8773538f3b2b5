"""End-to-end canary rollouts against the real local cluster and the real controller.

Each test: Given objects in a fresh namespace and a ``tidegate controller``
process watching only that namespace, When the user does what a platform team
does (update the image, promote, abort, annotate), Then the cluster shows what
Argo Rollouts would show (VirtualService weights, Service selectors, ReplicaSet
sizes, status, Events). Istio's data plane is absent; its CRDs are installed and
the VirtualService/DestinationRule objects are the observable truth.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import wait_until
from e2e.kit import (
    Cluster,
    Controller,
    canary_weight,
    destination_rule,
    rollout,
    sample,
    service,
    virtual_service,
)

pytestmark = pytest.mark.e2e


def host_level(cluster: Cluster, name: str, **rollout_args: Any) -> dict[str, Any]:
    """Create the Services, the VirtualService and the Rollout (host-level Istio)."""
    cluster.create(service(f"{name}-canary", name))
    cluster.create(service(f"{name}-stable", name))
    cluster.create(virtual_service(f"{name}-vsvc", canary_host=f"{name}-canary", stable_host=f"{name}-stable"))
    return cluster.create(rollout(name, **rollout_args))


def healthy_hash(cluster: Cluster, name: str) -> str:
    status = cluster.wait_phase(name, "Healthy")
    return str(status["stableRS"])


def paused_at(cluster: Cluster, name: str, step: int, *, timeout: float = 60) -> dict[str, Any]:
    return cluster.wait_status(
        name, lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == step,
        timeout=timeout, message=f"Paused at step {step}",
    )


def test_host_level_istio_canary_promote(cluster: Cluster, controller: Controller) -> None:
    # Given a healthy v1 behind host-level Istio routing
    host_level(cluster, "model", scaleDownDelaySeconds=3)
    v1 = healthy_hash(cluster, "model")
    assert cluster.vs_weights("model-vsvc") == (100, 0)
    assert cluster.selector_hash("model-stable") == v1

    # When v2 is rolled out
    cluster.set_image("model", "registry.local/model:v2")
    status = paused_at(cluster, "model", 1)
    v2 = status["currentPodHash"]

    # Then 10% goes to the canary, whose Service selects the new pods, while paused
    assert v2 != v1
    assert wait_until(lambda: cluster.vs_weights("model-vsvc") == (90, 10), timeout=10, message="VS 90/10")
    assert cluster.selector_hash("model-canary") == v2
    assert cluster.selector_hash("model-stable") == v1
    assert canary_weight(status) == 10

    # When promoted
    cluster.patch_rollout("model", {"status": {"pauseConditions": None}}, status=True)

    # Then everything ends on v2: 100/0, both Services on the new hash
    status = cluster.wait_phase("model", "Healthy")
    assert status["stableRS"] == v2
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (100, 0), timeout=10, message="VS 100/0")
    assert cluster.selector_hash("model-stable") == v2
    assert cluster.selector_hash("model-canary") == v2
    weights = status["canary"]["weights"]
    assert weights["canary"]["podTemplateHash"] == v2 and weights["stable"]["podTemplateHash"] == v2
    # the old ReplicaSet is kept for scaleDownDelaySeconds, then scaled to 0
    old = cluster.replica_sets("model")[v1]
    assert old.spec.replicas == 4
    assert "scale-down-deadline" in (old.metadata.annotations or {})
    wait_until(lambda: cluster.replica_sets("model")[v1].spec.replicas == 0, timeout=20,
               message="old ReplicaSet scaled to 0 after scaleDownDelaySeconds")
    reasons = [e.reason for e in cluster.events("model")]
    for reason in ("RolloutUpdated", "RolloutStepCompleted", "RolloutPaused", "TrafficWeightUpdated",
                   "ScalingReplicaSet", "RolloutCompleted"):
        assert reason in reasons


def test_subset_level_istio_with_destination_rule(cluster: Cluster, controller: Controller) -> None:
    # Given subset-level routing: one host, a DestinationRule with canary/stable subsets
    cluster.create(service("model", "model"))
    cluster.create(virtual_service("model-vsvc", canary_host="model", stable_host="model", subsets=True))
    cluster.create(destination_rule("model-dr", "model"))
    cluster.create(rollout("model", traffic="subset", scaleDownDelaySeconds=3))
    v1 = healthy_hash(cluster, "model")

    # When v2 is rolled out
    cluster.set_image("model", "registry.local/model:v2")
    v2 = paused_at(cluster, "model", 1)["currentPodHash"]

    # Then the subsets carry the hashes and the route weights follow the step
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (90, 10), timeout=10, message="VS 90/10")

    def subset_hashes() -> dict[str, str]:
        dr = cluster.destination_rule("model-dr")
        return {s["name"]: s["labels"].get("rollouts-pod-template-hash") for s in dr["spec"]["subsets"]}

    assert subset_hashes() == {"canary": v2, "stable": v1}
    dr = cluster.destination_rule("model-dr")
    # fields we do not manage survive
    assert dr["spec"]["subsets"][1]["trafficPolicy"] == {"loadBalancer": {"simple": "ROUND_ROBIN"}}
    assert dr["metadata"]["annotations"]["argo-rollouts.argoproj.io/managed-by-rollouts"] == "model"

    # When promoted, Then all traffic and both subsets end on v2
    cluster.patch_rollout("model", {"status": {"pauseConditions": None}}, status=True)
    cluster.wait_phase("model", "Healthy")
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (100, 0), timeout=10, message="VS 100/0")
    wait_until(lambda: subset_hashes() == {"canary": v2, "stable": v2}, timeout=10, message="subsets on v2")


def test_abort_while_paused_then_retry(cluster: Cluster, controller: Controller) -> None:
    # Given a rollout paused at 10% on v2
    host_level(cluster, "model", abortScaleDownDelaySeconds=3)
    v1 = healthy_hash(cluster, "model")
    cluster.set_image("model", "registry.local/model:v2")
    v2 = paused_at(cluster, "model", 1)["currentPodHash"]

    # When aborted (the status patch `kubectl argo rollouts abort` sends)
    cluster.patch_rollout("model", {"status": {"abort": True}}, status=True)

    # Then traffic returns to stable, the canary Service follows, phase Degraded
    status = cluster.wait_phase("model", "Degraded")
    assert status["message"].startswith("RolloutAborted: Rollout aborted update to revision 2")
    assert status["abortedAt"]
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (100, 0), timeout=10, message="VS 100/0")
    wait_until(lambda: cluster.selector_hash("model-canary") == v1, timeout=10, message="canary Service on stable")
    # the canary keeps its pod until abortScaleDownDelaySeconds, then goes to 0
    wait_until(lambda: cluster.replica_sets("model")[v2].spec.replicas == 0, timeout=20,
               message="canary scaled down after abortScaleDownDelaySeconds")
    assert "RolloutAborted" in [e.reason for e in cluster.events("model")]

    # When retried, Then the steps start again from 0 and reach the pause at 10%
    cluster.patch_rollout("model", {"status": {"abort": False}}, status=True)
    status = paused_at(cluster, "model", 1)
    assert status["currentPodHash"] == v2
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (90, 10), timeout=10, message="VS 90/10 again")


def test_on_call_abort_annotation(cluster: Cluster, controller: Controller, kubectl: Any) -> None:
    # Given a rollout paused at 10%
    host_level(cluster, "model")
    healthy_hash(cluster, "model")
    cluster.set_image("model", "registry.local/model:v2")
    paused_at(cluster, "model", 1)

    # When on-call annotates it
    started = time.monotonic()
    done = kubectl("annotate", "-n", cluster.ns, "rollout", "model", "tidegate.dev/abort=p99 too high")
    assert done.returncode == 0, done.stderr

    # Then it aborts within 2 s, the reason is in the message and an Event, and the annotation is gone
    status = cluster.wait_status("model", lambda s: s.get("abort") is True, timeout=5, message="abort")
    assert time.monotonic() - started < 2.0
    status = cluster.wait_phase("model", "Degraded", timeout=5)
    assert "p99 too high" in status["message"]
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (100, 0), timeout=10, message="VS 100/0")
    wait_until(lambda: any("p99 too high" in (e.message or "") for e in cluster.events("model")),
               timeout=5, message="an Event with the reason")
    wait_until(lambda: "tidegate.dev/abort" not in (cluster.rollout("model")["metadata"].get("annotations") or {}),
               timeout=5, message="annotation removed")
    # and retry works afterwards
    cluster.patch_rollout("model", {"status": {"abort": False}}, status=True)
    paused_at(cluster, "model", 1)


def test_timed_pause_advances_and_indefinite_pause_waits(cluster: Cluster, controller: Controller) -> None:
    # Given steps with a 2 s pause, then an indefinite one
    steps = [{"setWeight": 20}, {"pause": {"duration": "2s"}}, {"setWeight": 40}, {"pause": {}}]
    host_level(cluster, "model", steps=steps)
    healthy_hash(cluster, "model")

    # When updated
    cluster.set_image("model", "registry.local/model:v2")

    # Then the timed pause ends on its own and the indefinite one holds
    paused_at(cluster, "model", 1)
    status = paused_at(cluster, "model", 3, timeout=20)
    assert canary_weight(status) == 40
    time.sleep(3)
    status = cluster.rollout("model")["status"]
    assert status["phase"] == "Paused" and status["currentStepIndex"] == 3
    cluster.patch_rollout("model", {"status": {"pauseConditions": None}}, status=True)
    cluster.wait_phase("model", "Healthy")


def test_update_mid_rollout_restarts_and_rollback_to_stable_skips_steps(
    cluster: Cluster, controller: Controller
) -> None:
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
    # The superseded canary is still referenced (canary Service, weights) when v3 starts,
    # so like Argo it waits scaleDownDelaySeconds before going to 0: keep that short.
    host_level(cluster, "model", steps=steps, scaleDownDelaySeconds=3)
    v1 = healthy_hash(cluster, "model")
    cluster.set_image("model", "registry.local/model:v2")
    v2 = paused_at(cluster, "model", 1)["currentPodHash"]
    cluster.patch_rollout("model", {"status": {"pauseConditions": None}}, status=True)
    paused_at(cluster, "model", 3)
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (50, 50), timeout=10, message="VS 50/50")

    # When v3 arrives mid-rollout
    cluster.set_image("model", "registry.local/model:v3")

    # Then the steps restart at 0 for v3 (back to 10%), and the v2 canary is scaled down
    status = paused_at(cluster, "model", 1)
    v3 = status["currentPodHash"]
    assert v3 not in (v1, v2)
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (90, 10), timeout=10, message="VS 90/10 for v3")
    wait_until(lambda: cluster.replica_sets("model")[v2].spec.replicas == 0, timeout=20,
               message="superseded v2 canary scaled down")

    # When the image goes back to the stable v1, Then no steps run: straight to Healthy on v1
    cluster.set_image("model", "registry.local/model:v1")
    status = cluster.wait_status("model", lambda s: s.get("currentPodHash") == v1 and s.get("phase") == "Healthy",
                                 timeout=30, message="Healthy on v1")
    assert status["stableRS"] == v1
    assert "SkipSteps" in [e.reason for e in cluster.events("model")]
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (100, 0), timeout=10, message="VS 100/0")


@pytest.mark.parametrize(("replicas", "canary", "stable"), [(1, 1, 1), (4, 2, 2)], ids=["1-replica", "4-replicas"])
def test_basic_canary_without_traffic_routing(
    cluster: Cluster, controller: Controller, replicas: int, canary: int, stable: int
) -> None:
    # Given a Rollout without trafficRouting (replica-proportional canary)
    cluster.create(rollout("basic", replicas=replicas, traffic=None,
                           steps=[{"setWeight": 50}, {"pause": {}}]))
    v1 = healthy_hash(cluster, "basic")

    # When updated
    cluster.set_image("basic", "registry.local/model:v2")
    v2 = paused_at(cluster, "basic", 1)["currentPodHash"]

    # Then replicas split as Argo's basic canary does
    def counts() -> tuple[int, int]:
        sets = cluster.replica_sets("basic")
        return sets[v2].status.ready_replicas or 0, sets[v1].status.ready_replicas or 0

    wait_until(lambda: counts() == (canary, stable), timeout=20, message=f"{canary} canary + {stable} stable ready")
    status = cluster.rollout("basic")["status"]
    assert "weights" not in (status.get("canary") or {})  # nil without traffic routing, as in Argo
    cluster.patch_rollout("basic", {"status": {"pauseConditions": None}}, status=True)
    cluster.wait_phase("basic", "Healthy")
    wait_until(lambda: counts() == (replicas, 0), timeout=20, message="all on v2")


INVALID_CASES = {
    "missing-canary-service": (
        lambda c: (c.create(service("model-stable", "model")),
                   c.create(virtual_service("model-vsvc", canary_host="model-canary", stable_host="model-stable"))),
        "model-canary",
    ),
    "missing-virtualservice": (
        lambda c: (c.create(service("model-canary", "model")), c.create(service("model-stable", "model"))),
        "virtualService",
    ),
}


def _degraded_invalid(cluster: Cluster, name: str) -> dict[str, Any]:
    return cluster.wait_status(
        name,
        lambda s: s.get("phase") == "Degraded"
        and any(c.get("type") == "InvalidSpec" and c.get("status") == "True" for c in s.get("conditions") or []),
        timeout=30, message="Degraded with InvalidSpec",
    )


@pytest.mark.parametrize(
    ("case", "mutate", "field"),
    [
        # (setWeight 150 is refused by the API server itself since issue 7 defect 7: e2e/test_smoke.py)
        pytest.param("bad-pause", {"steps": [{"setWeight": 10}, {"pause": {"duration": "soon"}}]},
                     "spec.strategy.canary.steps[1].pause.duration", id="bad-pause-duration"),
        pytest.param("missing-route", {"trafficRouting": {"istio": {"virtualService": {
            "name": "model-vsvc", "routes": ["nope"]}}}}, "routes", id="missing-route"),
        pytest.param("missing-template", {"steps": [{"setWeight": 10}, {"analysis": {"templates": [
            {"templateName": "nope"}]}}]}, "nope", id="missing-analysistemplate"),
    ],
)
def test_invalid_spec_is_reported_and_fixing_it_recovers(
    cluster: Cluster, controller: Controller, case: str, mutate: dict[str, Any], field: str
) -> None:
    # Given a healthy v1
    host_level(cluster, "model")
    v1 = healthy_hash(cluster, "model")

    # When an update arrives with a broken canary spec
    def break_it(body: dict[str, Any]) -> None:
        body["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.local/model:v2"
        body["spec"]["strategy"]["canary"].update(mutate)

    cluster.update_rollout("model", break_it)

    # Then: InvalidSpec naming the field, Degraded, an Event, and no traffic or scale change
    status = _degraded_invalid(cluster, "model")
    condition = next(c for c in status["conditions"] if c["type"] == "InvalidSpec")
    assert field in condition["message"], condition["message"]
    assert status["message"].startswith("InvalidSpec: ")
    # and no condition contradicts it (issue 7 defect 6): the update is neither Healthy nor Completed
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Healthy"]["status"] != "True" and conditions["Completed"]["status"] != "True"
    wait_until(lambda: any(e.reason == "InvalidSpec" for e in cluster.events("model")), timeout=10,
               message="InvalidSpec event")
    assert cluster.vs_weights("model-vsvc") == (100, 0)
    assert set(cluster.replica_sets("model")) == {v1}

    # When fixed, Then it recovers without a restart and proceeds
    cluster.update_rollout("model", lambda body: body["spec"]["strategy"]["canary"].update(
        steps=[{"setWeight": 10}, {"pause": {}}],
        trafficRouting={"istio": {"virtualService": {"name": "model-vsvc", "routes": ["primary"]}}},
    ))
    paused_at(cluster, "model", 1, timeout=40)
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (90, 10), timeout=10, message="VS 90/10 after fix")

    # And once promoted, Healthy comes back with no InvalidSpec beside it
    cluster.patch_rollout("model", {"status": {"pauseConditions": None}}, status=True)
    conditions = {c["type"]: c for c in cluster.wait_phase("model", "Healthy")["conditions"]}
    assert conditions["Healthy"]["status"] == "True" and "InvalidSpec" not in conditions


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
def test_missing_referenced_objects_are_invalid_until_created(
    cluster: Cluster, controller: Controller, case: str
) -> None:
    # Given a Rollout whose Service or VirtualService is missing
    setup, field = INVALID_CASES[case]
    setup(cluster)
    cluster.create(rollout("model"))

    # Then InvalidSpec names it, and no ReplicaSet is created
    status = _degraded_invalid(cluster, "model")
    condition = next(c for c in status["conditions"] if c["type"] == "InvalidSpec")
    assert field in condition["message"], condition["message"]
    assert cluster.replica_sets("model") == {}

    # When the missing object is created, Then it recovers on its own
    if case == "missing-canary-service":
        cluster.create(service("model-canary", "model"))
    else:
        cluster.create(virtual_service("model-vsvc", canary_host="model-canary", stable_host="model-stable"))
    cluster.wait_phase("model", "Healthy", timeout=40)


@pytest.mark.parametrize(
    ("selector", "field"),
    [({"matchLabels": {"app": "other"}}, "spec.selector"), ({}, "spec.selector")],
    ids=["selector-not-matching-template", "empty-selector"],
)
def test_bad_selector_is_invalid_spec(cluster: Cluster, controller: Controller, selector: dict[str, Any],
                                      field: str) -> None:
    doc = rollout("sel", traffic=None)
    doc["spec"]["selector"] = selector
    cluster.create(doc)
    status = _degraded_invalid(cluster, "sel")
    condition = next(c for c in status["conditions"] if c["type"] == "InvalidSpec")
    assert field in condition["message"]
    assert cluster.replica_sets("sel") == {}


def test_controller_killed_mid_pause_and_mid_weight_change_resumes_correctly(
    cluster: Cluster, cluster_env: dict[str, str], namespace: str, tmp_path: Path
) -> None:
    steps = [{"setWeight": 10}, {"pause": {"duration": 2}}, {"setWeight": 30}, {"pause": {}},
             {"setWeight": 60}, {"pause": {"duration": 1}}]
    host_level(cluster, "model", steps=steps, scaleDownDelaySeconds=2)
    log = tmp_path / "controller.log"
    ctl = Controller(cluster_env, namespace, log)
    ctl.start()
    try:
        healthy_hash(cluster, "model")
        cluster.set_image("model", "registry.local/model:v2")
        # kill -9 during the timed pause (once step 1's Event, posted after the status write, is in:
        # Events in flight die with the process, and the check below reads every step's Event)
        paused_at(cluster, "model", 1)
        wait_until(lambda: any("step 1/6 completed" in e.message for e in cluster.events("model")
                               if e.reason == "RolloutStepCompleted"), timeout=10, message="step 1's Event")
        ctl.kill9()
        time.sleep(3)  # the pause ends while nobody is watching
        ctl.start()
        status = paused_at(cluster, "model", 3, timeout=30)
        assert canary_weight(status) == 30
        # kill -9 right after a promote, while the weight is changing to 60
        cluster.patch_rollout("model", {"status": {"pauseConditions": None}}, status=True)
        ctl.kill9()
        ctl.start()
        seen = sample(lambda: cluster.vs_weights("model-vsvc")[1], until=lambda w: w == 0 and
                      cluster.rollout("model")["status"].get("phase") == "Healthy", timeout=40)
        # never above the current step's weight, never a skipped step, and it finishes
        assert max(seen) <= 60
        status = cluster.rollout("model")["status"]
        assert status["stableRS"] == status["currentPodHash"]
        runs_seen = [e.message for e in cluster.events("model") if e.reason == "RolloutStepCompleted"]
        for i in range(1, len(steps) + 1):
            assert any(f"step {i}/{len(steps)}" in m for m in runs_seen), (i, runs_seen)
    finally:
        ctl.stop()
