"""Spec and referenced-object validation (semantics reference §1.1, §2), pure.

Called first by the reconcile planner: any problem makes the plan an
InvalidSpec plan (condition InvalidSpec, phase Degraded, an Event, no traffic
or scaling change, re-queue in 20 s). Messages name the field, Kubernetes style:
``The Rollout "r" is invalid: spec.strategy.canary.steps[0].setWeight: Invalid
value: "150": must be between 0 and 100``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rollouts.api.models import CanaryStep, CanaryStrategy, Rollout, RolloutAnalysis
from rollouts.engine.steps import pause_duration
from rollouts.traffic import istio as istio_traffic

MSG_INVALID = 'The Rollout "{name}" is invalid: {problems}'
MSG_REQUIRED = "Required value"
MSG_NOT_SUPPORTED = "not supported yet by Tidegate"
MSG_ONE_STEP_TYPE = "a step must have exactly one of setWeight, pause, analysis, setCanaryScale, experiment, setHeaderRoute, setMirrorRoute, plugin"
MSG_WEIGHT_RANGE = "must be between 0 and 100"
MSG_NEGATIVE = "must be greater than or equal to 0"
MSG_BAD_PAUSE = "must be a number of seconds or a duration such as 30s, 5m, 1h"
MSG_NEEDS_TRAFFIC_ROUTING = "requires trafficRouting"
MSG_BOTH_ZERO = "maxSurge and maxUnavailable cannot both be 0"
MSG_SAME_SERVICES = "canaryService and stableService must be different"
MSG_DYNAMIC_AND_DELAY = "dynamicStableScale and scaleDownDelaySeconds are mutually exclusive"
MSG_SELECTOR_MISMATCH = "`selector` does not match template `labels`"
MSG_EMPTY_SELECTOR = "empty selector is invalid for deployment"
MSG_SERVICE_MISSING = 'Service "{name}" does not exist in {namespace}'
MSG_TEMPLATE_MISSING = 'step {step} references {kind} "{name}", which does not exist{where}'
MSG_BG_TEMPLATE_MISSING = 'background analysis references {kind} "{name}", which does not exist{where}'
MSG_NO_TEMPLATES = "an analysis needs at least one template"
MSG_ONLY_ISTIO = "only the istio traffic router is supported by Tidegate"
MSG_MAX_TRAFFIC_WEIGHT = "maxTrafficWeight is only supported with Nginx and plugins"

CANARY = "spec.strategy.canary"


@dataclass(frozen=True)
class Problem:
    """One invalid field, rendered like a Kubernetes field error."""

    path: str
    message: str
    value: str | None = None

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.path}: {self.message}"
        return f'{self.path}: Invalid value: "{self.value}": {self.message}'


@dataclass(frozen=True)
class References:
    """The referenced objects as observed (None = does not exist)."""

    namespace: str
    services: Mapping[str, Mapping[str, Any] | None]
    virtual_services: Mapping[str, Mapping[str, Any] | None]
    destination_rule: Mapping[str, Any] | None
    analysis_templates: Mapping[str, Mapping[str, Any] | None]
    cluster_analysis_templates: Mapping[str, Mapping[str, Any] | None]


def invalid_message(rollout: Rollout, problems: list[Problem]) -> str:
    """The InvalidSpec condition message for a list of problems."""
    return MSG_INVALID.format(
        name=rollout.metadata.name or "", problems="; ".join(str(p) for p in problems)
    )


def validate(rollout: Rollout, refs: References) -> list[Problem]:
    """Every problem with the spec and the objects it references (empty = valid)."""
    problems = list(_rollout_level(rollout))
    canary = rollout.spec.strategy.canary if rollout.spec.strategy else None
    if canary is None:
        return problems or [Problem(path="spec.strategy.canary", message=MSG_REQUIRED)]
    problems += _canary_fields(canary)
    for index, step in enumerate(canary.steps or ()):
        problems += _step(step, f"{CANARY}.steps[{index}]", canary)
    if problems:
        return problems
    return _references(rollout, canary, refs)


def _rollout_level(rollout: Rollout) -> Iterator[Problem]:
    spec = rollout.spec
    if spec.workload_ref is not None:
        yield Problem(path="spec.workloadRef", message=MSG_NOT_SUPPORTED)
    if spec.strategy is not None and spec.strategy.blue_green is not None:
        yield Problem(path="spec.strategy.blueGreen", message=MSG_NOT_SUPPORTED)
    if spec.replicas is not None and spec.replicas < 0:
        yield Problem(path="spec.replicas", message=MSG_NEGATIVE, value=str(spec.replicas))
    if spec.template is None:
        yield Problem(path="spec.template", message=MSG_REQUIRED)
    selector = spec.selector.match_labels if spec.selector else None
    if not selector and not (spec.selector and spec.selector.match_expressions):
        yield Problem(path="spec.selector", message=MSG_EMPTY_SELECTOR)
        return
    labels = ((spec.template or {}).get("metadata") or {}).get("labels") or {}
    if any(labels.get(key) != value for key, value in (selector or {}).items()):
        yield Problem(path="spec.selector", message=MSG_SELECTOR_MISMATCH, value=str(selector))


def _canary_fields(canary: CanaryStrategy) -> Iterator[Problem]:
    routed = canary.traffic_routing is not None
    if _is_zero(canary.max_surge) and _is_zero(canary.max_unavailable):
        yield Problem(path=f"{CANARY}.maxSurge", message=MSG_BOTH_ZERO, value="0")
    if canary.canary_service and canary.canary_service == canary.stable_service:
        yield Problem(path=f"{CANARY}.stableService", message=MSG_SAME_SERVICES, value=canary.stable_service)
    for name, value in (
        ("scaleDownDelaySeconds", canary.scale_down_delay_seconds),
        ("dynamicStableScale", canary.dynamic_stable_scale or None),
        ("minPodsPerReplicaSet", canary.min_pods_per_replica_set),
        ("abortScaleDownDelaySeconds", canary.abort_scale_down_delay_seconds),
    ):
        if value is not None and not routed:
            yield Problem(path=f"{CANARY}.{name}", message=MSG_NEEDS_TRAFFIC_ROUTING, value=str(value))
    if canary.dynamic_stable_scale and canary.scale_down_delay_seconds is not None:
        yield Problem(path=f"{CANARY}.dynamicStableScale", message=MSG_DYNAMIC_AND_DELAY, value="true")
    if canary.ping_pong is not None:
        yield Problem(path=f"{CANARY}.pingPong", message=MSG_NOT_SUPPORTED)
    yield from _traffic_routing(canary)


def _is_zero(value: int | str | None) -> bool:
    return value in (0, "0", "0%")


def _traffic_routing(canary: CanaryStrategy) -> Iterator[Problem]:
    routing = canary.traffic_routing
    if routing is None:
        return
    path = f"{CANARY}.trafficRouting"
    if routing.istio is None:
        yield Problem(path=path, message=MSG_ONLY_ISTIO)
    if routing.max_traffic_weight is not None:
        yield Problem(path=f"{path}.maxTrafficWeight", message=MSG_MAX_TRAFFIC_WEIGHT)
    if routing.managed_routes:
        yield Problem(path=f"{path}.managedRoutes", message=MSG_NOT_SUPPORTED)


_STEP_FIELDS = (
    "set_weight",
    "pause",
    "analysis",
    "set_canary_scale",
    "experiment",
    "set_header_route",
    "set_mirror_route",
    "plugin",
)
_UNSUPPORTED_STEPS = {
    "experiment": "experiment",
    "set_header_route": "setHeaderRoute",
    "set_mirror_route": "setMirrorRoute",
    "plugin": "plugin",
}


def _step(step: CanaryStep, path: str, canary: CanaryStrategy) -> Iterator[Problem]:
    kinds = [name for name in _STEP_FIELDS if getattr(step, name) is not None]
    if len(kinds) != 1:
        yield Problem(path=path, message=MSG_ONE_STEP_TYPE)
        return
    kind = kinds[0]
    if kind in _UNSUPPORTED_STEPS:
        yield Problem(path=f"{path}.{_UNSUPPORTED_STEPS[kind]}", message=MSG_NOT_SUPPORTED)
    if step.set_weight is not None and not 0 <= step.set_weight <= 100:
        yield Problem(path=f"{path}.setWeight", message=MSG_WEIGHT_RANGE, value=str(step.set_weight))
    if step.pause is not None:
        yield from _pause(step, f"{path}.pause.duration")
    if step.set_canary_scale is not None and canary.traffic_routing is None:
        yield Problem(path=f"{path}.setCanaryScale", message=MSG_NEEDS_TRAFFIC_ROUTING)
    if step.set_canary_scale is not None and step.set_canary_scale.weight is not None:
        weight = step.set_canary_scale.weight
        if not 0 <= weight <= 100:
            yield Problem(path=f"{path}.setCanaryScale.weight", message=MSG_WEIGHT_RANGE, value=str(weight))
    if step.analysis is not None and not step.analysis.templates:
        yield Problem(path=f"{path}.analysis.templates", message=MSG_NO_TEMPLATES)


def _pause(step: CanaryStep, path: str) -> Iterator[Problem]:
    try:
        duration = pause_duration(step)
    except ValueError:
        yield Problem(path=path, message=MSG_BAD_PAUSE, value=str(step.pause.duration if step.pause else ""))
        return
    if duration is not None and duration.total_seconds() < 0:
        yield Problem(path=path, message=MSG_NEGATIVE, value=str(step.pause.duration if step.pause else ""))


def _references(rollout: Rollout, canary: CanaryStrategy, refs: References) -> list[Problem]:
    problems: list[Problem] = []
    for field_name, service in (
        ("canaryService", canary.canary_service),
        ("stableService", canary.stable_service),
    ):
        if service and refs.services.get(service) is None:
            problems.append(
                Problem(
                    path=f"{CANARY}.{field_name}",
                    value=service,
                    message=MSG_SERVICE_MISSING.format(name=service, namespace=refs.namespace),
                )
            )
    problems += _template_references(canary, refs)
    if canary.traffic_routing is not None and canary.traffic_routing.istio is not None:
        problems += _istio_references(rollout, refs)
    return problems


def _template_references(canary: CanaryStrategy, refs: References) -> list[Problem]:
    problems: list[Problem] = []
    analyses: list[tuple[str, int | None, RolloutAnalysis | None]] = [(f"{CANARY}.steps[{i}].analysis", i + 1, s.analysis) for i, s in enumerate(canary.steps or ())]
    analyses.append((f"{CANARY}.analysis", None, canary.analysis))
    for path, step_number, analysis in analyses:
        for index, ref in enumerate(analysis.templates or () if analysis else ()):
            cluster = bool(ref.cluster_scope)
            known = refs.cluster_analysis_templates if cluster else refs.analysis_templates
            if known.get(ref.template_name) is not None:
                continue
            kind = "ClusterAnalysisTemplate" if cluster else "AnalysisTemplate"
            where = "" if cluster else f" in {refs.namespace}"
            text = (
                MSG_TEMPLATE_MISSING.format(step=step_number, kind=kind, name=ref.template_name, where=where)
                if step_number is not None
                else MSG_BG_TEMPLATE_MISSING.format(kind=kind, name=ref.template_name, where=where)
            )
            problems.append(
                Problem(path=f"{path}.templates[{index}].templateName", value=ref.template_name, message=text)
            )
    return problems


def _istio_references(rollout: Rollout, refs: References) -> list[Problem]:
    """Delegate VirtualService / DestinationRule checks to the traffic package."""
    canary_doc = rollout.to_json().get("spec", {}).get("strategy", {}).get("canary", {})
    errors = istio_traffic.validate_references(
        rollout_spec_canary=canary_doc,
        vs_by_key=refs.virtual_services,
        destination_rule=refs.destination_rule,
        rollout_namespace=refs.namespace,
    )
    return [Problem(path=e.path, message=e.message, value=e.value) for e in errors]
