"""Spec and referenced-object validation (semantics reference §1.1, §2), pure.

Called first by the reconcile planner: any problem makes the plan an
InvalidSpec plan (condition InvalidSpec, phase Degraded, an Event, no traffic
or scaling change, re-queue in 20 s). Messages name the field, Kubernetes style:
``The Rollout "r" is invalid: spec.strategy.canary.steps[0].setWeight: Invalid
value: "150": must be between 0 and 100``.

Everything a later step would trip over is checked here, before the first weight
change: every analysis (steps and background) is flattened with its templates and
args as the run would be, and the objects the controller derives from the spec
(the ReplicaSet, each AnalysisRun) must fit a byte budget. A referenced object
that is missing only because it was applied together with the Rollout gets a
short grace period (``reference_wait_plan``) instead of a Warning.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.api.models import (
    AnalysisTemplateSpec,
    Argument,
    DryRun,
    MeasurementRetention,
    TemplateRef,
)
from analysis.api.templates import (
    TemplateLookup,
    flatten,
    substitute,
)
from common.api import SpecError
from rollouts.api.models import CanaryStep, CanaryStrategy, Rollout, RolloutAnalysis
from rollouts.engine.context import Plan, RolloutContext
from rollouts.engine.observe import parse_time
from rollouts.engine.runs import TemplateSources, resolve_field_path
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
MSG_ARG_NOT_SUPPLIED = '{template} requires arg "{arg}", which is not supplied'
MSG_ARG_NOT_SUPPLIED_NESTED = '{template} requires arg "{arg}" (through {nested}), which is not supplied'
MSG_NESTED_MISSING = "{template} includes {nested}, which does not exist{where}"
MSG_TOO_MANY_STEPS = "must have at most {limit} items"
MSG_TOO_LONG_ANNOTATIONS = "Too long: must have at most {limit} bytes (they have {size})"
MSG_DERIVED_TOO_LARGE = (
    "the {kind} built from it would be {size} bytes, more than the {limit} bytes Tidegate writes"
    " in one object; make it smaller"
)

#: Argo sets no limit; 100 steps is far beyond any real rollout and keeps a hostile
#: spec from costing a reconcile (and the InvalidSpec message) thousands of steps.
#: crds/rollout.yaml declares the same bound as maxItems.
MAX_STEPS = 100
#: The largest ReplicaSet / AnalysisRun the controller writes. etcd refuses a
#: request above 1.5 MiB (its default --max-request-bytes); a run also grows with
#: its measurements, so leave it room.
MAX_DERIVED_OBJECT_BYTES = 1024 * 1024
#: Name, labels, annotations and ownerReference the controller adds to a derived object.
DERIVED_METADATA_BYTES = 2048
#: Kubernetes' own limit on an object's annotations, keys and values together
#: (apimachinery TotalAnnotationSizeLimitB); a pod template over it makes every
#: ReplicaSet create fail with 422.
MAX_ANNOTATION_BYTES = 256 * 1024
#: Seconds after a Rollout's creation during which a missing Service, VirtualService,
#: DestinationRule or AnalysisTemplate is waited for instead of reported: applied in
#: one ``kubectl apply``, they reach the controller through separate watches.
REFERENCE_GRACE_SECONDS = 10.0
#: Stands in, during validation, for an arg value known only when the run is made
#: (a pod-template hash); an integer so a templated count or limit still coerces.
ARG_PLACEHOLDER = "0"

CANARY = "spec.strategy.canary"


@dataclass(frozen=True)
class Problem:
    """One invalid field, rendered like a Kubernetes field error."""

    path: str
    message: str
    value: str | None = None
    missing: bool = False
    """A referenced object does not exist (yet): the only kind of problem time can fix."""

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
    if len(canary.steps or ()) > MAX_STEPS:
        # Checking (and listing) each of thousands of steps is what the bound prevents.
        count = len(canary.steps or ())
        return [*problems, Problem(path=f"{CANARY}.steps", value=str(count),
                                   message=MSG_TOO_MANY_STEPS.format(limit=MAX_STEPS))]
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
    if spec.revision_history_limit is not None and spec.revision_history_limit < 0:
        yield Problem(path="spec.revisionHistoryLimit", message=MSG_NEGATIVE,
                      value=str(spec.revision_history_limit))
    if spec.template is None:
        yield Problem(path="spec.template", message=MSG_REQUIRED)
    else:
        yield from _template_size(rollout)
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
                    missing=True,
                )
            )
    problems += _template_references(canary, refs)
    if canary.traffic_routing is not None and canary.traffic_routing.istio is not None:
        problems += _istio_references(rollout, refs)
    if not problems:
        # Flattening needs every template; a missing one is already reported above.
        problems += _analyses(rollout, canary, refs)
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
                Problem(path=f"{path}.templates[{index}].templateName", value=ref.template_name,
                        message=text, missing=True)
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
    missing = {
        istio_traffic.MSG_VS_NOT_FOUND.format(key=key)
        for key, vs in refs.virtual_services.items()
        if vs is None
    }
    dr_ref = istio_traffic.destination_rule_ref(canary_doc, rollout_namespace=refs.namespace)
    if dr_ref is not None and refs.destination_rule is None:
        missing.add(istio_traffic.MSG_DR_NOT_FOUND.format(key=dr_ref.key))
    return [
        Problem(path=e.path, message=e.message, value=e.value, missing=e.message in missing)
        for e in errors
    ]


# --- sizes ---------------------------------------------------------------------------------


def _json_bytes(doc: object) -> int:
    return len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())


def _template_size(rollout: Rollout) -> Iterator[Problem]:
    """The pod template must fit the ReplicaSet the controller builds from it."""
    template = rollout.spec.template or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    if isinstance(annotations, Mapping):
        # Counted as the API server counts them: key and value lengths, in bytes.
        size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
        if size > MAX_ANNOTATION_BYTES:
            yield Problem(path="spec.template.metadata.annotations",
                          message=MSG_TOO_LONG_ANNOTATIONS.format(limit=MAX_ANNOTATION_BYTES, size=size))
            return
    selector = rollout.spec.selector.to_json() if rollout.spec.selector else {}
    size = _json_bytes(template) + _json_bytes(selector) + DERIVED_METADATA_BYTES
    if size > MAX_DERIVED_OBJECT_BYTES:
        yield Problem(path="spec.template", message=MSG_DERIVED_TOO_LARGE.format(
            kind="ReplicaSet", size=size, limit=MAX_DERIVED_OBJECT_BYTES))


# --- analyses: every run the rollout will create, checked before the first step ----------


def _kind(cluster_scope: bool) -> str:
    return "ClusterAnalysisTemplate" if cluster_scope else "AnalysisTemplate"


def _label(name: str, cluster_scope: bool) -> str:
    return f'{_kind(cluster_scope)} "{name}"'


def _analyses(rollout: Rollout, canary: CanaryStrategy, refs: References) -> list[Problem]:
    """Each step's and the background analysis's run, built as it will be (Argo validates
    ``NewAnalysisRunFromTemplates`` with the rollout's args in every reconcile too)."""
    sources = TemplateSources(namespaced=refs.analysis_templates, cluster=refs.cluster_analysis_templates)
    # Each template is parsed once per reconcile, however many steps name it.
    lookup: TemplateLookup = functools.cache(sources.lookup)
    blocks: list[tuple[str, RolloutAnalysis]] = [
        (f"{CANARY}.steps[{i}].analysis", step.analysis)
        for i, step in enumerate(canary.steps or ())
        if step.analysis is not None and step.analysis.templates
    ]
    if canary.analysis is not None and canary.analysis.templates:
        blocks.append((f"{CANARY}.analysis", canary.analysis))
    doc: list[Mapping[str, Any]] = []  # the Rollout as a document, made once and only if a fieldRef needs it
    problems: list[Problem] = []
    for path, analysis in blocks:
        problems += _analysis(rollout, path, analysis, lookup, doc)
    return problems


class _NestedMissing(SpecError):
    """A template included through ``spec.templates`` does not exist (yet)."""


@dataclass(frozen=True)
class _Included:
    """One template reached from a top-level reference (itself or through spec.templates)."""

    label: str
    spec: AnalysisTemplateSpec


def _included(name: str, cluster_scope: bool, lookup: TemplateLookup, where: str) -> list[_Included]:
    """The template and every template it includes; raises SpecError when one is missing or bad."""
    found: list[_Included] = []
    seen: set[tuple[str, bool]] = set()
    pending: list[tuple[str, bool, str | None]] = [(name, cluster_scope, None)]
    while pending:
        current, cluster, parent = pending.pop()
        if (current, cluster) in seen:
            continue  # a cycle or a diamond: flatten() says which
        seen.add((current, cluster))
        spec = lookup(current, cluster)
        if spec is None:
            raise _NestedMissing(MSG_NESTED_MISSING.format(
                template=parent, nested=_label(current, cluster), where="" if cluster else where))
        found.append(_Included(label=_label(current, cluster), spec=spec))
        pending += [(t.template_name, t.cluster_scope, _label(current, cluster)) for t in spec.templates]
    return found


def _analysis(
    rollout: Rollout, path: str, analysis: RolloutAnalysis, lookup: TemplateLookup,
    doc: list[Mapping[str, Any]],
) -> list[Problem]:
    refs = list(analysis.templates or ())
    where = f" in {rollout.metadata.namespace or ''}"
    problems: list[Problem] = []
    included: list[list[_Included]] = []
    for index, ref in enumerate(refs):
        try:
            included.append(_included(ref.template_name, bool(ref.cluster_scope), lookup, where))
        except SpecError as err:  # missing, or a template that does not parse
            problems.append(Problem(path=f"{path}.templates[{index}]", message=err.message,
                                    missing=isinstance(err, _NestedMissing)))
    if problems:
        return problems
    problems += _unsupplied_args(path, analysis, included)
    args, arg_problems = _caller_args(rollout, path, analysis, doc)
    problems += arg_problems
    if problems:
        return problems
    try:
        spec = flatten(
            [TemplateRef(template_name=r.template_name, cluster_scope=bool(r.cluster_scope)) for r in refs],
            lookup,
            args=args,
            dry_run=[DryRun(metric_name=r.metric_name) for r in analysis.dry_run or ()],
            measurement_retention=[
                MeasurementRetention(metric_name=r.metric_name, limit=r.limit)
                for r in analysis.measurement_retention or ()
            ],
        )
        # Every {{args.x}} must name an arg: the values come later, the names are known now.
        values = {arg.name: ARG_PLACEHOLDER for arg in spec.args}
        for metric in spec.metrics:
            substitute(metric.to_json(), values)
    except SpecError as err:
        return [Problem(path=f"{path}.templates", message=err.message)]
    size = _json_bytes(spec.to_json()) + DERIVED_METADATA_BYTES
    if size > MAX_DERIVED_OBJECT_BYTES:
        return [Problem(path=path, message=MSG_DERIVED_TOO_LARGE.format(
            kind="AnalysisRun", size=size, limit=MAX_DERIVED_OBJECT_BYTES))]
    return []


def _unsupplied_args(path: str, analysis: RolloutAnalysis, included: Sequence[Sequence[_Included]]) -> list[Problem]:
    """Template args with no value that neither the rollout nor another template gives one."""
    supplied = {a.name for a in analysis.args or () if a.value is not None or a.value_from is not None}
    supplied |= {
        arg.name
        for tree in included
        for template in tree
        for arg in template.spec.args
        if arg.value is not None or arg.value_from is not None
    }
    problems: list[Problem] = []
    for index, tree in enumerate(included):
        top = tree[0].label
        for template in tree:
            for arg in template.spec.args:
                if arg.name in supplied:
                    continue
                supplied.add(arg.name)  # one problem per arg, at the first template needing it
                message = (
                    MSG_ARG_NOT_SUPPLIED.format(template=top, arg=arg.name)
                    if template.label == top
                    else MSG_ARG_NOT_SUPPLIED_NESTED.format(template=top, arg=arg.name, nested=template.label)
                )
                problems.append(Problem(path=f"{path}.templates[{index}]", message=message))
    return problems


def _caller_args(
    rollout: Rollout, path: str, analysis: RolloutAnalysis, doc: list[Mapping[str, Any]]
) -> tuple[list[Argument], list[Problem]]:
    """The rollout's args as the run will get them (runs._resolve_args), a placeholder for a hash."""
    args: list[Argument] = []
    problems: list[Problem] = []
    for index, arg in enumerate(analysis.args or ()):
        source = arg.value_from
        if source is None:
            args.append(Argument(name=arg.name, value=arg.value))
        elif source.field_ref is not None:
            if not doc:
                doc.append(rollout.to_json())
            try:
                value = resolve_field_path(doc[0], source.field_ref.field_path, arg.name)
            except SpecError as err:
                problems.append(Problem(path=f"{path}.args[{index}].valueFrom.fieldRef.fieldPath",
                                        value=source.field_ref.field_path, message=err.message))
                continue
            args.append(Argument(name=arg.name, value=value))
        else:
            args.append(Argument(name=arg.name, value=ARG_PLACEHOLDER if source.pod_template_hash_value else arg.value or ""))
    return args, problems


# --- a reference applied together with the Rollout -----------------------------------------


def reference_wait_plan(ctx: RolloutContext, problems: Sequence[Problem]) -> Plan | None:
    """A plan that changes nothing and looks again when the grace period ends, or None.

    Only while the Rollout is younger than ``REFERENCE_GRACE_SECONDS`` and every problem is
    a missing object: a Service applied in the same ``kubectl apply`` may reach us a moment
    after the Rollout (another watch), and a Warning for it would be false. Nothing moves
    meanwhile (no ReplicaSet, no traffic); the object's own watch event wakes the Rollout
    as soon as it arrives. The kopf indices themselves are complete before the first
    reconcile: kopf runs no handler until every index has listed its kind.
    """
    if not problems or not all(problem.missing for problem in problems):
        return None
    created = parse_time((ctx.rollout.get("metadata") or {}).get("creationTimestamp"))
    if created is None:
        return None
    left = REFERENCE_GRACE_SECONDS - (ctx.now - created).total_seconds()
    if left <= 0:
        return None
    # A clock ahead of ours must not stretch the wait past the grace period.
    return Plan(status=dict(ctx.rollout.get("status") or {}), requeue_after=min(left, REFERENCE_GRACE_SECONDS))
