"""Issue 7, defect 7: spec problems caught before the first weight change, and the small ones.

Pure engine tests through the World simulator (tests/engine_sim.py):

a. every step's and the background analysis's templates and args are checked before
   any traffic moves (InvalidSpec naming the spec path);
b. a Service / VirtualService applied together with the Rollout is waited for a few
   seconds instead of being reported with a Warning;
c. ``replicas: 0`` with a new revision walks its steps and completes, as in Argo;
e. at most 100 steps, and derived objects (ReplicaSet, AnalysisRun) within a byte budget.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from engine_sim import World

from rollouts.engine.validation import (
    MAX_ANNOTATION_BYTES,
    MAX_DERIVED_OBJECT_BYTES,
    MAX_STEPS,
    REFERENCE_GRACE_SECONDS,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
NS = "shop"
NAME = "web"


def _rollout(steps: list[dict[str, Any]], *, replicas: int = 4, routed: bool = True,
             background: dict[str, Any] | None = None) -> dict[str, Any]:
    canary: dict[str, Any] = {"steps": steps}
    if routed:
        canary.update(
            canaryService="web-canary", stableService="web-stable",
            trafficRouting={"istio": {"virtualService": {"name": "web-vsvc", "routes": ["primary"]}}},
        )
    if background is not None:
        canary["analysis"] = background
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": NAME, "namespace": NS, "uid": "uid-1", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {"metadata": {"labels": {"app": NAME}},
                         "spec": {"containers": [{"name": "web", "image": "web:v1"}]}},
            "strategy": {"canary": canary},
        },
    }


def _service(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS}, "spec": {"selector": {"app": NAME}}}


def _vs() -> dict[str, Any]:
    route = [{"destination": {"host": "web-stable"}, "weight": 100},
             {"destination": {"host": "web-canary"}, "weight": 0}]
    return {"metadata": {"name": "web-vsvc", "namespace": NS},
            "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": route}]}}


def _template(name: str, *, args: list[dict[str, Any]] | None = None, query: str = "vector(1)",
              nested: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"args": args or []}
    if query:
        spec["metrics"] = [{"name": f"{name}-m", "successCondition": "result[0] >= 0",
                            "provider": {"prometheus": {"address": "http://p:9090", "query": query}}}]
    if nested:
        spec["templates"] = [{"templateName": n} for n in nested]
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def _world(rollout: dict[str, Any], templates: dict[str, dict[str, Any]] | None = None) -> World:
    return World(
        rollout=rollout, now=T0,
        services={"web-canary": _service("web-canary"), "web-stable": _service("web-stable")},
        virtual_services={f"{NS}/web-vsvc": _vs()},
        analysis_templates=dict(templates or {}),
    )


def _healthy(world: World) -> World:
    for _ in range(3):
        world.reconcile()
    assert world.rollout["status"]["phase"] == "Healthy", world.rollout["status"]
    return world


def _update(world: World, image: str = "web:v2") -> None:
    world.rollout["spec"]["template"]["spec"]["containers"][0]["image"] = image
    world.rollout["metadata"]["generation"] += 1


def _drive(world: World, reconciles: int = 12) -> None:
    """Reconcile, jumping the clock to each re-queue; runs succeed as soon as they exist."""
    for _ in range(reconciles):
        result = world.reconcile()
        for name, run in world.analysis_runs.items():
            if not run.get("status"):
                world.set_run_phase(name, "Successful")
        world.advance(result.requeue_after or 1)


def _canary_weights(world: World) -> list[int]:
    return [int(intent.canary_weight) for intent in world.traffic]


# --- a. analyses are checked before the first weight change -------------------------------

SERVICE_ARG = [{"name": "service-name"}]
PLAIN_STEPS = [{"setWeight": 20}, {"pause": {}}]
STEPS_WITH_ANALYSIS = [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "rate"}]}},
                       {"setWeight": 50}]


def _invalid_before_traffic(world: World, mutate: Any) -> str:
    """Given a Healthy rollout, when an update (new image + ``mutate``) is applied, then it is
    InvalidSpec at once: no canary ReplicaSet, no run, canary weight never above 0, one Event."""
    _update(world)
    mutate(world)
    _drive(world)
    status = world.rollout["status"]
    assert status["phase"] == "Degraded", status
    assert max(_canary_weights(world)) == 0, world.traffic
    assert len(world.replica_sets) == 1
    assert not world.analysis_runs
    assert [e.reason for e in world.events].count("InvalidSpec") == 1
    return str(status["message"])


def _with_steps(steps: list[dict[str, Any]]) -> Any:
    return lambda world: world.rollout["spec"]["strategy"]["canary"].update(steps=copy.deepcopy(steps))


def test_a_step_template_arg_nobody_supplies_is_invalid_before_any_traffic_moves() -> None:
    world = _healthy(_world(_rollout(PLAIN_STEPS), {"rate": _template("rate", args=SERVICE_ARG)}))
    message = _invalid_before_traffic(world, _with_steps(STEPS_WITH_ANALYSIS))
    assert ('spec.strategy.canary.steps[1].analysis.templates[0]: AnalysisTemplate "rate" requires arg'
            ' "service-name", which is not supplied') in message


def test_a_template_that_gains_a_required_arg_is_invalid_before_the_next_update_moves_traffic() -> None:
    steps = copy.deepcopy(STEPS_WITH_ANALYSIS)
    world = _healthy(_world(_rollout(steps), {"rate": _template("rate")}))
    message = _invalid_before_traffic(
        world, lambda w: w.analysis_templates.update(rate=_template("rate", args=SERVICE_ARG)))
    assert 'steps[1].analysis.templates[0]: AnalysisTemplate "rate" requires arg "service-name"' in message


def test_a_background_analysis_arg_nobody_supplies_is_invalid() -> None:
    background = {"templates": [{"templateName": "rate"}], "startingStep": 1}
    world = _healthy(_world(_rollout(PLAIN_STEPS), {"rate": _template("rate", args=SERVICE_ARG)}))
    message = _invalid_before_traffic(
        world, lambda w: w.rollout["spec"]["strategy"]["canary"].update(analysis=background))
    assert ('spec.strategy.canary.analysis.templates[0]: AnalysisTemplate "rate" requires arg'
            ' "service-name", which is not supplied') in message


def test_a_nested_template_arg_is_named_with_the_template_that_needs_it() -> None:
    templates = {"outer": _template("outer", query="", nested=["inner"]),
                 "inner": _template("inner", args=SERVICE_ARG)}
    steps = [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "outer"}]}}]
    world = _healthy(_world(_rollout(PLAIN_STEPS), templates))
    message = _invalid_before_traffic(world, _with_steps(steps))
    assert ('steps[1].analysis.templates[0]: AnalysisTemplate "outer" requires arg "service-name"'
            ' (through AnalysisTemplate "inner"), which is not supplied') in message


def test_a_nested_template_that_does_not_exist_is_invalid() -> None:
    steps = [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "outer"}]}}]
    world = _healthy(_world(_rollout(PLAIN_STEPS), {"outer": _template("outer", nested=["gone"])}))
    message = _invalid_before_traffic(world, _with_steps(steps))
    assert ('steps[1].analysis.templates[0]: AnalysisTemplate "outer" includes AnalysisTemplate "gone",'
            f" which does not exist in {NS}") in message


def test_a_placeholder_naming_no_arg_is_invalid() -> None:
    templates = {"rate": _template("rate", query='up{service="{{args.svc}}"}')}
    world = _healthy(_world(_rollout(PLAIN_STEPS), templates))
    message = _invalid_before_traffic(world, _with_steps(STEPS_WITH_ANALYSIS))
    assert 'steps[1].analysis.templates: metric "rate-m"' in message
    assert 'no argument "svc"' in message


def test_a_field_ref_that_does_not_resolve_is_invalid() -> None:
    steps = copy.deepcopy(STEPS_WITH_ANALYSIS)
    steps[1]["analysis"]["args"] = [
        {"name": "service-name", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}}]
    world = _healthy(_world(_rollout(PLAIN_STEPS), {"rate": _template("rate", args=SERVICE_ARG)}))
    message = _invalid_before_traffic(world, _with_steps(steps))
    assert "steps[1].analysis.args[0].valueFrom.fieldRef.fieldPath" in message


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([{"name": "service-name", "value": "web-canary"}], id="value"),
        pytest.param([{"name": "service-name", "valueFrom": {"podTemplateHashValue": "Stable"}}], id="stable-hash"),
        pytest.param([{"name": "service-name", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                     id="field-ref"),
    ],
)
def test_a_supplied_arg_lets_the_rollout_walk_its_steps(args: list[dict[str, Any]]) -> None:
    steps = copy.deepcopy(STEPS_WITH_ANALYSIS)
    steps[1]["analysis"]["args"] = args
    world = _healthy(_world(_rollout(steps), {"rate": _template("rate", args=SERVICE_ARG)}))
    _update(world)
    _drive(world, reconciles=20)
    assert world.rollout["status"]["phase"] == "Healthy"
    assert 50 in _canary_weights(world) and len(world.analysis_runs) == 1
    assert "InvalidSpec" not in [e.reason for e in world.events]


def test_an_arg_given_a_value_by_another_template_of_the_step_is_supplied() -> None:
    templates = {"rate": _template("rate", args=SERVICE_ARG),
                 "defaults": _template("defaults", args=[{"name": "service-name", "value": "web"}])}
    steps = [{"setWeight": 20},
             {"analysis": {"templates": [{"templateName": "rate"}, {"templateName": "defaults"}]}}]
    world = _healthy(_world(_rollout(steps), templates))
    _update(world)
    _drive(world, reconciles=20)
    assert world.rollout["status"]["phase"] == "Healthy"


# --- b. a reference applied together with the Rollout ----------------------------------------


def _new_rollout_world(**missing: bool) -> World:
    rollout = _rollout([{"setWeight": 20}, {"pause": {}}])
    rollout["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    world = _world(rollout)
    if missing.get("service"):
        world.services["web-canary"] = None
    if missing.get("vs"):
        world.virtual_services[f"{NS}/web-vsvc"] = None
    world.advance(0.05)  # the controller sees the Rollout 50 ms after it was created
    return world


@pytest.mark.parametrize("missing", ["service", "vs"])
def test_b_a_reference_that_appears_within_seconds_gets_no_warning(missing: str) -> None:
    world = _new_rollout_world(**{missing: True})
    result = world.reconcile()
    assert result.events == () and result.traffic is None and not result.replica_sets_to_create
    assert world.rollout.get("status") in (None, {})  # nothing written: no InvalidSpec to take back
    assert result.requeue_after == pytest.approx(REFERENCE_GRACE_SECONDS - 0.05)
    # The object arrives (its watch event wakes the Rollout): a normal first deploy follows.
    world.services["web-canary"] = _service("web-canary")
    world.virtual_services[f"{NS}/web-vsvc"] = _vs()
    world.advance(0.3)
    for _ in range(3):
        world.reconcile()
    assert world.rollout["status"]["phase"] == "Healthy"
    assert "InvalidSpec" not in [e.reason for e in world.events]


def test_b_a_reference_still_missing_after_the_grace_period_is_reported_once() -> None:
    world = _new_rollout_world(service=True)
    first = world.reconcile()
    world.advance(first.requeue_after or 0)
    result = world.reconcile()
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "InvalidSpec")]
    assert 'Service "web-canary" does not exist in shop' in world.rollout["status"]["message"]
    assert result.traffic is None and not result.replica_sets_to_create


def test_b_a_real_spec_error_is_reported_at_once_even_with_a_missing_reference() -> None:
    world = _new_rollout_world(service=True)
    world.rollout["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = 150
    result = world.reconcile()
    assert [e.reason for e in result.events] == ["InvalidSpec"]


def test_b_an_old_rollout_whose_service_disappears_is_reported_at_once() -> None:
    world = _new_rollout_world()
    for _ in range(3):
        world.reconcile()
    world.advance(3600)
    world.services["web-canary"] = None
    assert [e.reason for e in world.reconcile().events] == ["InvalidSpec"]


# --- c. replicas: 0 ----------------------------------------------------------------------------


@pytest.mark.parametrize("routed", [True, False], ids=["istio", "basic"])
def test_c_replicas_0_with_a_new_revision_walks_its_steps_and_completes(routed: bool) -> None:
    steps = [{"setWeight": 20}, {"pause": {"duration": "30s"}}, {"setWeight": 60}, {"setWeight": 100}]
    world = _healthy(_world(_rollout(steps, replicas=0, routed=routed)))
    _update(world)
    _drive(world, reconciles=12)
    status = world.rollout["status"]
    assert status["phase"] == "Healthy", status
    assert status["stableRS"] == status["currentPodHash"] and status["currentStepIndex"] == len(steps)
    reasons = [e.reason for e in world.events]
    assert reasons.count("RolloutStepCompleted") == len(steps)
    assert "ProgressDeadlineExceeded" not in reasons
    # No pods, no traffic: the router never sends the canary a share (Argo: weight 0).
    assert set(_canary_weights(world)) <= {0}


def test_c_replicas_0_still_pauses_at_an_indefinite_pause() -> None:
    world = _healthy(_world(_rollout([{"setWeight": 20}, {"pause": {}}], replicas=0)))
    _update(world)
    _drive(world, reconciles=6)
    status = world.rollout["status"]
    assert status["phase"] == "Paused" and status["currentStepIndex"] == 1


# --- e. limits: steps and derived objects -----------------------------------------------------


def test_e_more_than_100_steps_is_invalid_and_names_the_field() -> None:
    world = _world(_rollout([{"setWeight": 1 + i % 100} for i in range(MAX_STEPS + 1)]))
    result = world.reconcile()
    assert [e.reason for e in result.events] == ["InvalidSpec"]
    assert ('spec.strategy.canary.steps: Invalid value: "101": must have at most 100 items'
            in world.rollout["status"]["message"])
    assert not result.replica_sets_to_create


def test_e_100_steps_are_fine() -> None:
    _healthy(_world(_rollout([{"setWeight": 1 + i % 100} for i in range(MAX_STEPS)])))


def test_e_a_pod_template_annotation_over_the_api_server_limit_is_invalid_before_the_write() -> None:
    world = _healthy(_world(_rollout([{"setWeight": 20}, {"pause": {}}])))
    big = "x" * (MAX_ANNOTATION_BYTES + 1)
    world.rollout["spec"]["template"]["metadata"]["annotations"] = {"blob": big}
    world.rollout["metadata"]["generation"] += 1
    result = world.reconcile()
    assert not result.replica_sets_to_create and result.traffic is None
    assert [e.reason for e in result.events] == ["InvalidSpec"]
    assert "spec.template.metadata.annotations: Too long: must have at most 262144 bytes" in (
        world.rollout["status"]["message"])


def test_e_a_pod_template_too_large_for_a_replicaset_is_invalid_before_the_write() -> None:
    world = _healthy(_world(_rollout([{"setWeight": 20}, {"pause": {}}])))
    container = world.rollout["spec"]["template"]["spec"]["containers"][0]
    # Under the annotation limit, over the object budget: many environment variables.
    container["env"] = [{"name": f"V{i}", "value": "y" * 1000} for i in range(MAX_DERIVED_OBJECT_BYTES // 1000)]
    world.rollout["metadata"]["generation"] += 1
    result = world.reconcile()
    assert not result.replica_sets_to_create
    message = world.rollout["status"]["message"]
    assert "spec.template: the ReplicaSet built from it would be" in message
    assert f"more than the {MAX_DERIVED_OBJECT_BYTES} bytes" in message


def test_e_an_analysis_run_too_large_to_write_is_invalid_before_any_traffic_moves() -> None:
    query = "sum(up) + " * (MAX_DERIVED_OBJECT_BYTES // 20)
    templates = {"a": _template("a", query=query), "b": _template("b", query=query)}
    steps = [{"setWeight": 20},
             {"analysis": {"templates": [{"templateName": "a"}, {"templateName": "b"}]}}]
    world = _healthy(_world(_rollout(PLAIN_STEPS), templates))
    message = _invalid_before_traffic(world, _with_steps(steps))
    assert "spec.strategy.canary.steps[1].analysis: the AnalysisRun built from it would be" in message
