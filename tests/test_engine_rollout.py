"""End-to-end engine behaviour: a pure World applies each Plan; we walk real rollouts.

Given the seed Rollout (Istio, 10 replicas, setWeight/pause/analysis steps),
when the World reconciles step by step, then weights, events and status match
Argo's semantics (reference §1, §2).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_sim import World
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollouts.api.models import parse_rollout
from rollouts.engine import plan
from rollouts.engine.steps import make_step_view, set_weight_at

SEED = Path(__file__).parent / "fixtures" / "seed" / "rollout-and-analysis.yaml"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
RO = "inference-rollout"


def _seed_docs() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(SEED.read_text()))


def _service(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml-serving"}, "spec": {"selector": {"app": "inference"}}}


def _vs() -> dict[str, Any]:
    route = [
        {"destination": {"host": "inference-stable"}, "weight": 100},
        {"destination": {"host": "inference-canary"}, "weight": 0},
    ]
    return {
        "metadata": {"name": "inference-vsvc", "namespace": "ml-serving"},
        "spec": {"hosts": ["inference"], "http": [{"name": "primary", "route": route}]},
    }


def _latency_template(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The seed names inference-latency without defining it; its step passes no args, so
    this stand-in needs none (a query with {{args.service-name}} is now an InvalidSpec)."""
    latency = copy.deepcopy(docs[1])
    latency["metadata"]["name"] = "inference-latency"
    latency["spec"]["args"] = []
    latency["spec"]["metrics"][0]["provider"]["prometheus"]["query"] = "vector(1)"
    return latency


def seed_world(image: str = "inference:v1") -> World:
    """The seed rollout deployed at v1 and Healthy."""
    docs = _seed_docs()
    rollout = copy.deepcopy(docs[0])
    rollout["metadata"].update(generation=1, uid="uid-1")
    rollout["spec"]["template"]["spec"]["containers"][0]["image"] = image
    latency = _latency_template(docs)
    world = World(
        rollout=rollout,
        now=T0,
        services={"inference-canary": _service("inference-canary"), "inference-stable": _service("inference-stable")},
        virtual_services={"ml-serving/inference-vsvc": _vs()},
        analysis_templates={"inference-success-rate": docs[1], "inference-latency": latency},
    )
    for _ in range(3):
        world.reconcile()
    assert world.rollout["status"]["phase"] == "Healthy"
    return world


def update_image(world: World, image: str) -> None:
    world.rollout["spec"]["template"]["spec"]["containers"][0]["image"] = image
    world.rollout["metadata"]["generation"] += 1


def status(world: World) -> dict[str, Any]:
    return world.rollout["status"]


def reasons(world: World, since: int = 0) -> list[str]:
    return [e.reason for e in world.events[since:]]


def drive(world: World, until: Any, runs: str = "Successful", limit: int = 60) -> None:
    """Reconcile (jumping the clock to each re-queue) until ``until(world)``."""
    if until(world):
        return
    for _ in range(limit):
        result = world.reconcile()
        for name, run in world.analysis_runs.items():
            if not run.get("status") and not run["spec"].get("terminate"):
                world.set_run_phase(name, runs)
        if until(world):
            return  # before jumping the clock: the caller sees the state as it was reached
        if result.requeue_after:
            world.advance(result.requeue_after)
    raise AssertionError(f"not reached; status={status(world)}")


def test_first_deploy_becomes_stable_at_once() -> None:
    world = seed_world()
    s = status(world)
    assert s["stableRS"] == s["currentPodHash"]
    assert s["currentStepIndex"] == 9
    assert s["observedGeneration"] == "1"
    assert reasons(world) == ["RolloutUpdated", "NewReplicaSetCreated", "RolloutNotCompleted", "RolloutCompleted", "ScalingReplicaSet"]
    (rs,) = world.replica_sets.values()
    assert rs["metadata"]["name"] == f"{RO}-{s['currentPodHash']}"
    assert rs["metadata"]["labels"]["rollouts-pod-template-hash"] == s["currentPodHash"]
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "inference", "rollouts-pod-template-hash": s["currentPodHash"]}
    assert rs["metadata"]["annotations"]["rollout.argoproj.io/revision"] == "1"
    assert rs["metadata"]["ownerReferences"][0]["controller"] is True
    assert world.plans[0].replica_sets_to_create[0]["spec"]["replicas"] == 0


def test_first_deploy_creates_no_analysis_run_even_when_step_0_is_an_analysis() -> None:
    docs = _seed_docs()
    rollout = copy.deepcopy(docs[0])
    rollout["metadata"].update(generation=1, uid="uid-1")
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    steps.insert(0, steps.pop(2))  # the inference-success-rate analysis first
    world = World(
        rollout=rollout, now=T0,
        services={"inference-canary": _service("inference-canary"), "inference-stable": _service("inference-stable")},
        virtual_services={"ml-serving/inference-vsvc": _vs()},
        analysis_templates={"inference-success-rate": docs[1], "inference-latency": _latency_template(docs)},
    )
    for _ in range(3):
        world.reconcile()
    assert status(world)["phase"] == "Healthy"
    assert world.analysis_runs == {}


def test_seed_rollout_walks_to_healthy_with_every_weight() -> None:
    world = seed_world()
    v1 = status(world)["stableRS"]
    update_image(world, "inference:v2")
    seen_weights: list[tuple[int, int]] = []

    def healthy_v2(w: World) -> bool:
        if w.plans and w.plans[-1].traffic is not None:
            intent = w.plans[-1].traffic
            seen_weights.append((intent.canary_weight, intent.stable_weight))
        return status(w).get("phase") == "Healthy" and status(w)["stableRS"] != v1

    drive(world, healthy_v2)
    v2 = status(world)["stableRS"]
    canary_weights = [w.canary_weight for w in world.traffic]
    assert canary_weights == [0, 0, 10, 30, 50, 100, 0]
    assert all(c + s == 100 for c, s in seen_weights)
    assert world.traffic[-1].canary_hash == world.traffic[-1].stable_hash == v2
    weights = status(world)["canary"]["weights"]
    assert weights == {
        "canary": {"weight": 0, "serviceName": "inference-canary", "podTemplateHash": v2},
        "stable": {"weight": 100, "serviceName": "inference-stable", "podTemplateHash": v2},
    }
    assert sorted(world.analysis_runs) == [f"{RO}-{v2}-2-2", f"{RO}-{v2}-2-5"]
    assert world.services["inference-stable"]["spec"]["selector"]["rollouts-pod-template-hash"] == v2  # type: ignore[index]
    # The old stable waits scaleDownDelaySeconds (30 s) before going to 0.
    old = world.replica_sets[f"{RO}-{v1}"]
    assert old["spec"]["replicas"] == 10
    # pauses now begin in the same plan as the step that reaches them, so the sim clock
    # no longer jumps a progress-deadline requeue (10 min) before each pause
    assert old["metadata"]["annotations"]["scale-down-deadline"] == "2024-01-01T01:15:30Z"
    drive(world, lambda w: w.replica_sets[f"{RO}-{v1}"]["spec"]["replicas"] == 0)
    assert "scale-down-deadline" not in world.replica_sets[f"{RO}-{v1}"]["metadata"]["annotations"]
    assert status(world)["phase"] == "Healthy"
    completed = [e.message for e in world.events if e.reason == "RolloutStepCompleted"]
    assert completed[0] == "Rollout step 1/9 completed (setWeight: 10)"
    assert completed[1] == "Rollout step 2/9 completed (pause: 5m)"
    assert len(completed) == 9


def test_old_stable_waiting_for_its_scale_down_deadline_does_not_hold_back_the_next_update() -> None:
    # Given v2 just promoted, with v1 still up until its scale-down-deadline (30 s)
    world = seed_world()
    v1 = status(world)["stableRS"]
    update_image(world, "inference:v2")

    def promoted(w: World) -> bool:
        return bool(status(w).get("phase") == "Healthy" and status(w)["stableRS"] != v1)

    for _ in range(60):  # like drive(), but never jump the clock once promoted
        result = world.reconcile()
        for name, run in world.analysis_runs.items():
            if not run.get("status"):
                world.set_run_phase(name, "Successful")
        if promoted(world):
            break
        if result.requeue_after:
            world.advance(result.requeue_after)
    old = world.replica_sets[f"{RO}-{v1}"]
    assert old["spec"]["replicas"] == 10
    assert old["metadata"]["annotations"]["scale-down-deadline"] > world.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    # When v3 arrives before the deadline, without the clock moving
    update_image(world, "inference:v3")
    for _ in range(4):
        world.reconcile()
    # Then setWeight 10 completes and the rollout pauses at step 1 at once
    assert status(world)["currentStepIndex"] == 1
    assert status(world)["phase"] == "Paused"


def _at_step(world: World, index: int) -> None:
    drive(world, lambda w: status(w).get("currentStepIndex") == index)


def test_plan_is_idempotent_and_never_duplicates_runs() -> None:
    world = seed_world()
    update_image(world, "inference:v2")
    _at_step(world, 2)
    first = plan(world.context())
    assert plan(world.context()) == first
    world.apply(first)
    assert len(first.analysis_runs_to_create) == 1
    again = plan(world.context())
    assert again.analysis_runs_to_create == ()
    # A restarted controller (same observed objects) plans the same.
    assert plan(world.context()) == again


def test_pause_is_timed_and_requeues() -> None:
    world = seed_world()
    update_image(world, "inference:v2")
    _at_step(world, 1)
    # the plan that completed setWeight also began the pause
    started = world.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert world.plans[-1].requeue_after == 300
    result = world.reconcile()
    assert status(world)["phase"] == "Paused" and status(world)["message"] == "CanaryPauseStep"
    assert status(world)["pauseConditions"] == [{"reason": "CanaryPauseStep", "startTime": started}]
    assert status(world)["controllerPause"] is True
    assert result.requeue_after == 300
    world.advance(299)
    assert world.reconcile().requeue_after == 1
    world.advance(1)
    world.reconcile()
    assert status(world)["currentStepIndex"] == 2
    assert "pauseConditions" not in status(world) and "controllerPause" not in status(world)


def test_abort_then_retry() -> None:
    world = seed_world()
    v1 = status(world)["stableRS"]
    update_image(world, "inference:v2")
    _at_step(world, 3)
    v2 = status(world)["currentPodHash"]
    step_run = f"{RO}-{v2}-2-2"
    mark = len(world.events)
    status(world)["abort"] = True
    aborted_at = world.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    deadline = (world.now + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = world.reconcile()
    s = status(world)
    assert s["phase"] == "Degraded"
    assert s["message"] == "RolloutAborted: Rollout aborted update to revision 2"
    assert s["currentStepIndex"] == 0 and s["abortedAt"] == aborted_at
    assert result.traffic is not None and (result.traffic.canary_weight, result.traffic.stable_weight) == (0, 100)
    assert result.traffic.canary_hash == v1
    assert step_run in result.analysis_runs_to_terminate
    assert reasons(world, mark)[0] == "RolloutAborted"
    assert world.services["inference-canary"]["spec"]["selector"]["rollouts-pod-template-hash"] == v1  # type: ignore[index]
    # The canary keeps its pods, then goes after abortScaleDownDelaySeconds (30 s).
    canary = world.replica_sets[f"{RO}-{v2}"]
    assert canary["spec"]["replicas"] == 1
    assert canary["metadata"]["annotations"]["scale-down-deadline"] == deadline
    world.advance(30)
    world.reconcile()
    assert canary["spec"]["replicas"] == 0
    assert status(world)["abortedAt"] == aborted_at
    # Retry: status.abort=false starts again from step 0 with a fresh analysis run.
    status(world)["abort"] = False
    world.reconcile()
    progressing = next(c for c in status(world)["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "RolloutRetry"
    assert "abortedAt" not in status(world)
    _at_step(world, 3)
    assert f"{step_run}.1" in world.analysis_runs


def test_annotation_abort_records_reason_and_removes_annotation() -> None:
    world = seed_world()
    update_image(world, "inference:v2")
    _at_step(world, 1)
    world.rollout["metadata"]["annotations"]["tidegate.dev/abort"] = "p99 latency doubled"
    result = world.reconcile()
    assert result.remove_abort_annotation is True
    assert "tidegate.dev/abort" not in world.rollout["metadata"]["annotations"]
    assert status(world)["abort"] is True
    expected = "Rollout aborted update to revision 2: p99 latency doubled"
    assert status(world)["message"] == f"RolloutAborted: {expected}"
    assert [e.message for e in result.events if e.reason == "RolloutAborted"] == [expected]
    world.reconcile()
    assert status(world)["message"] == f"RolloutAborted: {expected}"


def test_aborting_a_healthy_rollout_is_ignored() -> None:
    world = seed_world()
    world.rollout["metadata"]["annotations"]["tidegate.dev/abort"] = "oops"
    status(world)["abort"] = True
    result = world.reconcile()
    assert result.remove_abort_annotation is True
    assert "abort" not in status(world) and status(world)["phase"] == "Healthy"


@pytest.mark.parametrize(
    ("phase", "expected_phase", "expected_message"),
    [
        pytest.param(
            "Failed",
            "Degraded",
            "RolloutAborted: Rollout aborted update to revision 2: Step-based analysis phase error/failed: "
            'Metric "success-rate" assessed Failed',
            id="failed-aborts",
        ),
        pytest.param(
            "Error",
            "Degraded",
            "RolloutAborted: Rollout aborted update to revision 2: Step-based analysis phase error/failed: "
            'Metric "success-rate" assessed Failed',
            id="error-aborts",
        ),
        pytest.param("Inconclusive", "Paused", "InconclusiveAnalysisRun", id="inconclusive-pauses"),
    ],
)
def test_step_analysis_outcomes(phase: str, expected_phase: str, expected_message: str) -> None:
    world = seed_world()
    update_image(world, "inference:v2")
    _at_step(world, 2)
    world.reconcile()
    (run_name,) = world.analysis_runs
    world.set_run_phase(run_name, phase, 'Metric "success-rate" assessed Failed')
    world.reconcile()
    assert (status(world)["phase"], status(world)["message"]) == (expected_phase, expected_message)
    if phase == "Inconclusive":
        # promote: clear pauseConditions -> the step is skipped.
        status(world)["pauseConditions"] = None
        del status(world)["pauseConditions"]
        world.reconcile()
        assert status(world)["currentStepIndex"] == 3


def test_promote_from_indefinite_pause_and_promote_full() -> None:
    world = seed_world()
    world.rollout["spec"]["strategy"]["canary"]["steps"][1] = {"pause": {}}
    world.reconcile()  # steps changed on a healthy rollout: nothing to roll
    update_image(world, "inference:v2")
    _at_step(world, 1)
    world.reconcile()
    assert status(world)["phase"] == "Paused"
    world.advance(10_000)
    assert world.reconcile().requeue_after is None
    assert status(world)["currentStepIndex"] == 1
    del status(world)["pauseConditions"]  # kubectl argo rollouts promote
    world.reconcile()
    assert status(world)["currentStepIndex"] == 2
    assert "RolloutResumed" in reasons(world)
    status(world)["promoteFull"] = True  # promote --full
    drive(world, lambda w: status(w)["phase"] == "Healthy")
    assert status(world)["stableRS"] == status(world)["currentPodHash"]
    assert "promoteFull" not in status(world)
    assert any(e.message.endswith("Full promotion requested") for e in world.events)


def test_template_change_mid_rollout_resets_and_rollback_skips_steps() -> None:
    world = seed_world()
    v1 = status(world)["stableRS"]
    update_image(world, "inference:v2")
    _at_step(world, 3)
    update_image(world, "inference:v3")
    world.reconcile()
    assert status(world)["currentStepIndex"] == 0
    assert all(r["spec"].get("terminate") for r in world.analysis_runs.values() if not r.get("status"))
    drive(world, lambda w: status(w)["currentStepIndex"] == 1)
    update_image(world, "inference:v1")
    mark = len(world.events)
    world.reconcile()
    assert status(world)["currentPodHash"] == v1 and status(world)["currentStepIndex"] == 9
    assert "SkipSteps" in reasons(world, mark)
    drive(world, lambda w: all(rs["spec"]["replicas"] == 0 for n, rs in w.replica_sets.items() if not n.endswith(v1)))
    assert status(world)["phase"] == "Healthy"


def _basic_world() -> World:
    rollout = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop", "generation": 1, "uid": "u"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w", "image": "w:1"}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}]}},
        },
    }
    world = World(rollout=rollout, now=T0)
    for _ in range(3):
        world.reconcile()
    return world


def _counts(world: World) -> dict[str, int]:
    image = {n: rs["spec"]["template"]["spec"]["containers"][0]["image"] for n, rs in world.replica_sets.items()}
    return {image[n]: rs["spec"]["replicas"] for n, rs in world.replica_sets.items()}


def test_basic_canary_walk_and_scaling_event() -> None:
    world = _basic_world()
    update_image(world, "w:2")
    drive(world, lambda w: status(w).get("phase") == "Paused")
    assert _counts(world) == {"w:1": 3, "w:2": 1}
    assert status(world)["canary"] == {}  # no weights without traffic routing
    world.rollout["spec"]["replicas"] = 8
    world.reconcile()
    assert _counts(world) == {"w:1": 6, "w:2": 2}
    world.rollout["spec"]["replicas"] = 4
    world.reconcile()
    world.reconcile()
    assert _counts(world) == {"w:1": 3, "w:2": 1}
    assert status(world)["currentStepIndex"] == 1
    del status(world)["pauseConditions"]
    drive(world, lambda w: status(w)["phase"] == "Healthy")
    assert _counts(world) == {"w:1": 0, "w:2": 4}


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(
            lambda w: w.rollout["spec"]["strategy"]["canary"]["steps"][0].update(setWeight=150),
            'spec.strategy.canary.steps[0].setWeight: Invalid value: "150": must be between 0 and 100',
            id="weight-out-of-range",
        ),
        pytest.param(
            lambda w: w.analysis_templates.update({"inference-latency": None}),
            'step 6 references AnalysisTemplate "inference-latency", which does not exist in ml-serving',
            id="missing-template",
        ),
        pytest.param(
            lambda w: w.services.update({"inference-canary": None}),
            'Service "inference-canary" does not exist in ml-serving',
            id="missing-service",
        ),
        pytest.param(
            lambda w: w.rollout["spec"]["selector"].update(matchLabels={"app": "other"}),
            "spec.selector: Invalid value",
            id="selector-mismatch",
        ),
        pytest.param(
            lambda w: w.rollout["spec"]["strategy"]["canary"]["steps"].append({"experiment": {"templates": []}}),
            "spec.strategy.canary.steps[9].experiment: not supported yet by Tidegate",
            id="experiment-not-supported",
        ),
        pytest.param(
            lambda w: w.rollout["spec"]["strategy"]["canary"]["steps"][0].update(setWeight="ten"),
            "Rollout ml-serving/inference-rollout: spec.strategy.canary.steps[0].setWeight: Input should be a valid integer",
            id="malformed-field",
        ),
    ],
)
def test_invalid_spec_degrades_without_traffic_change_and_recovers(mutate: Any, fragment: str) -> None:
    world = seed_world()
    update_image(world, "inference:v2")
    _at_step(world, 1)
    good = copy.deepcopy(world.rollout["spec"]), copy.deepcopy(world.analysis_templates), copy.deepcopy(world.services)
    mutate(world)
    result = world.reconcile()
    assert status(world)["phase"] == "Degraded"
    assert status(world)["message"].startswith("InvalidSpec: ") and fragment in status(world)["message"]
    assert result.traffic is None and not result.replica_set_updates and result.requeue_after == 20
    assert [e.reason for e in result.events] == ["InvalidSpec"]
    assert world.reconcile().events == ()  # same message: no repeated event
    world.rollout["spec"], world.analysis_templates, world.services = good
    world.reconcile()
    assert status(world)["phase"] != "Degraded"
    assert all(c["type"] != "InvalidSpec" for c in status(world)["conditions"])


def test_progress_deadline_exceeded_and_abort() -> None:
    world = seed_world()
    world.rollout["spec"]["progressDeadlineSeconds"] = 60
    world.rollout["spec"]["progressDeadlineAbort"] = True
    update_image(world, "inference:v2")
    world.instant_ready = False
    world.reconcile()
    result = world.reconcile()
    assert result.requeue_after == 60
    world.advance(61)
    result = world.reconcile()
    assert status(world)["message"].startswith("ProgressDeadlineExceeded: ReplicaSet")
    assert "ProgressDeadlineExceeded" in [e.reason for e in result.events]
    assert status(world)["abort"] is True
    world.reconcile()
    assert status(world)["message"].startswith("RolloutAborted: ")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=st.lists(st.sampled_from(["reconcile", "wait", "succeed", "inconclusive", "ready", "promote"]), max_size=40))
def test_invariants_under_random_events(actions: list[str]) -> None:
    world = seed_world()
    update_image(world, "inference:v2")
    world.instant_ready = False
    steps = parse_rollout(world.rollout).spec.strategy.canary.steps  # type: ignore[union-attr]
    for action in actions:
        if action == "reconcile":
            index = status(world).get("currentStepIndex")
            result = world.reconcile()
            if result.traffic is not None:
                intent = result.traffic
                assert intent.canary_weight + intent.stable_weight == 100
                assert intent.canary_weight <= set_weight_at(make_step_view(steps, index), index)
        elif action == "wait":
            world.advance(120)
        elif action == "ready":
            world.make_ready()
        elif action == "promote":
            status(world).pop("pauseConditions", None)
        else:
            for name, run in world.analysis_runs.items():
                if not run.get("status"):
                    world.set_run_phase(name, "Successful" if action == "succeed" else "Inconclusive")
    names = list(world.analysis_runs)
    assert len(names) == len(set(names))
