"""From templates to a run spec: merging and ``{{args.x}}`` substitution. Pure.

Two callers:
* whoever creates an AnalysisRun (the rollout controller, or a test) calls
  ``flatten`` to merge the referenced AnalysisTemplates / ClusterAnalysisTemplates,
  including nested ``spec.templates``, into one ``AnalysisRunSpec``, and may
  ``substitute`` args into a metric to check it before the run exists;
* the AnalysisRun controller (``analysis.templates.resolve_run``) substitutes the
  resolved args into every metric on each reconcile.

No Secrets are read and no expression is compiled here, so the rollout
controller can import this without the run machinery. Every error is a
``SpecError`` subclass whose message names the metric and field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from analysis.api.models import (
    AnalysisRunSpec,
    AnalysisTemplateSpec,
    Argument,
    DryRun,
    MeasurementRetention,
    TemplateRef,
)
from common.api import SpecError, field_path

MSG_TEMPLATE_NOT_FOUND = '{kind} "{name}" not found'
MSG_TEMPLATE_CYCLE = '{kind} "{name}" includes itself through spec.templates: {chain}'
MSG_DUPLICATE_METRIC = 'two metrics have the same name "{name}"'
MSG_ARG_CONFLICT = 'argument "{name}" specified multiple times with different values: "{a}", "{b}"'
MSG_ARG_UNRESOLVED = "args.{name} was not resolved: give it a value or valueFrom"
MSG_PLACEHOLDER_NO_ARG = (
    'metric "{metric}": {field}: failed to resolve {{{{{key}}}}}: no argument "{arg}"'
)
MSG_PLACEHOLDER_UNKNOWN = 'metric "{metric}": {field}: failed to resolve {{{{{key}}}}}: only {{{{args.NAME}}}} is supported'
MSG_NOT_INT = 'metric "{metric}": {field}: "{value}" is not an integer'
MSG_DUPLICATE_RULE = 'two {field} rules have the same metricName "{name}"'

#: Metric fields that are IntOrString in the CRD and integers once templated.
INT_FIELDS = (
    "count",
    "failureLimit",
    "inconclusiveLimit",
    "consecutiveErrorLimit",
    "consecutiveSuccessLimit",
)
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_INTEGER = re.compile(r"[+-]?\d+")

TemplateLookup = Callable[[str, bool], AnalysisTemplateSpec | None]
"""(templateName, clusterScope) -> the template's spec, or None when it does not exist."""


class TemplateError(SpecError):
    """Templates cannot be merged: missing, cyclic, duplicate metrics, conflicting args."""


class ArgumentError(SpecError):
    """An argument has no value, or a ``{{...}}`` placeholder cannot be resolved."""


# --- flattening --------------------------------------------------------------------------


def _kind(cluster_scope: bool) -> str:
    return "ClusterAnalysisTemplate" if cluster_scope else "AnalysisTemplate"


def _collect(refs: Sequence[TemplateRef], lookup: TemplateLookup) -> list[AnalysisTemplateSpec]:
    """Every template reachable from ``refs``, depth first, each one once."""
    found: list[AnalysisTemplateSpec] = []
    seen: set[tuple[str, bool]] = set()

    def visit(ref: TemplateRef, chain: tuple[tuple[str, bool], ...]) -> None:
        key = (ref.template_name, ref.cluster_scope)
        kind = _kind(ref.cluster_scope)
        if key in chain:
            names = " -> ".join(name for name, _ in (*chain, key))
            raise TemplateError(MSG_TEMPLATE_CYCLE.format(kind=kind, name=key[0], chain=names))
        if key in seen:
            # Reached twice through different parents (a diamond): its metrics count once.
            return
        spec = lookup(ref.template_name, ref.cluster_scope)
        if spec is None:
            raise TemplateError(MSG_TEMPLATE_NOT_FOUND.format(kind=kind, name=ref.template_name))
        seen.add(key)
        found.append(spec)
        for nested in spec.templates:
            visit(nested, (*chain, key))

    for ref in refs:
        visit(ref, ())
    return found


def _merge_template_args(specs: Sequence[AnalysisTemplateSpec]) -> list[Argument]:
    """Template args merged by name; two different values for one name is an error."""
    merged: dict[str, Argument] = {}
    for spec in specs:
        for arg in spec.args:
            previous = merged.get(arg.name)
            if previous is None or previous.value is None:
                merged[arg.name] = arg
            elif arg.value is not None and arg.value != previous.value:
                raise TemplateError(
                    MSG_ARG_CONFLICT.format(name=arg.name, a=previous.value, b=arg.value)
                )
    return list(merged.values())


def merge_args(caller: Sequence[Argument], template: Sequence[Argument]) -> list[Argument]:
    """Caller args override template args of the same name; every arg must end with a value.

    Caller args the templates do not declare are ignored, as in Argo.
    """
    by_name = {arg.name: arg for arg in caller}
    merged: list[Argument] = []
    for arg in template:
        override = by_name.get(arg.name)
        if override is not None and override.value is not None:
            arg = arg.model_copy(update={"value": override.value, "value_from": None})
        elif override is not None and override.value_from is not None:
            arg = arg.model_copy(update={"value_from": override.value_from, "value": None})
        if arg.value is None and arg.value_from is None:
            raise ArgumentError(MSG_ARG_UNRESOLVED.format(name=arg.name))
        merged.append(arg)
    return merged


def _unique_rules(rules: Sequence[DryRun | MeasurementRetention], field: str) -> None:
    names = [rule.metric_name for rule in rules]
    for name in names:
        if names.count(name) > 1:
            raise TemplateError(MSG_DUPLICATE_RULE.format(field=field, name=name))


def flatten(
    refs: Sequence[TemplateRef],
    lookup: TemplateLookup,
    *,
    args: Sequence[Argument] = (),
    dry_run: Sequence[DryRun] = (),
    measurement_retention: Sequence[MeasurementRetention] = (),
) -> AnalysisRunSpec:
    """Merge the referenced templates (and their nested ones) into one run spec.

    Metrics are concatenated in reference order (a template's own metrics before
    its nested templates'); duplicate names, conflicting arg values, a missing or
    cyclic template, an arg left without value, and duplicate dryRun /
    measurementRetention rules raise ``TemplateError`` / ``ArgumentError``.
    ``args``, ``dry_run`` and ``measurement_retention`` are the caller's (the rollout's).
    """
    specs = _collect(refs, lookup)
    metrics = [metric for spec in specs for metric in spec.metrics]
    names = [metric.name for metric in metrics]
    for name in names:
        if names.count(name) > 1:
            raise TemplateError(MSG_DUPLICATE_METRIC.format(name=name))
    dry_runs = [*dry_run, *(rule for spec in specs for rule in spec.dry_run)]
    retention = [
        *measurement_retention,
        *(rule for spec in specs for rule in spec.measurement_retention),
    ]
    _unique_rules(dry_runs, "dryRun")
    _unique_rules(retention, "measurementRetention")
    spec = AnalysisRunSpec(metrics=metrics, args=merge_args(args, _merge_template_args(specs)))
    # Only set the optional lists when non-empty, so the created object stays minimal.
    updates: dict[str, Any] = {}
    if dry_runs:
        updates["dry_run"] = dry_runs
    if retention:
        updates["measurement_retention"] = retention
    return spec.model_copy(update=updates)


# --- substitution --------------------------------------------------------------------------


def _walk_strings(
    node: Any, loc: tuple[int | str, ...], replace: Callable[[str, tuple[int | str, ...]], Any]
) -> Any:
    if isinstance(node, str):
        return replace(node, loc)
    if isinstance(node, Mapping):
        return {key: _walk_strings(value, (*loc, key), replace) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk_strings(item, (*loc, index), replace) for index, item in enumerate(node)]
    return node


def _fill(text: str, args: Mapping[str, str], metric: str, field: str) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1).strip()
        if not key.startswith("args."):
            raise ArgumentError(MSG_PLACEHOLDER_UNKNOWN.format(metric=metric, field=field, key=key))
        name = key.removeprefix("args.")
        if name not in args:
            raise ArgumentError(
                MSG_PLACEHOLDER_NO_ARG.format(metric=metric, field=field, key=key, arg=name)
            )
        return args[name]

    return _PLACEHOLDER.sub(one, text)


def _coerce_int(value: Any, metric: str, field: str) -> Any:
    if not isinstance(value, str):
        return value
    if _INTEGER.fullmatch(value.strip()) is None:
        raise ArgumentError(MSG_NOT_INT.format(metric=metric, field=field, value=value))
    return int(value.strip())


def substitute(metric: Mapping[str, Any], args: Mapping[str, str]) -> dict[str, Any]:
    """Replace ``{{args.name}}`` / ``{{ args.name }}`` in every string of a metric document.

    ``metric`` is the camelCase dict of one metric. Counts and limits given as strings
    are coerced to integers afterwards. An unknown placeholder, a missing arg or a
    non-integer count/limit raises ``ArgumentError`` naming the metric and field.
    Values are inserted as they are: the document is walked, not re-parsed, so no
    escaping is needed (Argo JSON-escapes because it substitutes serialized JSON).
    """
    name = str(metric.get("name", "<unnamed>"))

    def replace(text: str, loc: tuple[int | str, ...]) -> str:
        return _fill(text, args, name, field_path(loc))

    result: dict[str, Any] = _walk_strings(metric, (), replace)
    for field in INT_FIELDS:
        if field in result:
            result[field] = _coerce_int(result[field], name, field)
    return result
