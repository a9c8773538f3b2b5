"""From templates to a run spec, and from a run spec to measurable metrics. Pure.

Two callers:
* whoever creates an AnalysisRun (the rollout side, or a test) calls ``flatten`` to
  merge the referenced AnalysisTemplates / ClusterAnalysisTemplates, including nested
  ``spec.templates``, into one ``AnalysisRunSpec``;
* the AnalysisRun controller calls ``resolve_run`` on every reconcile: it resolves the
  args (secrets through a lookup it is given), substitutes ``{{args.x}}`` everywhere in
  each metric, coerces templated counts and limits to integers and validates the
  metrics, so a bad spec fails the run before any measurement is taken.

Every error is a ``SpecError`` subclass whose message names the metric and field;
no form of a secret value appears in it (analysis.redaction replaces them with ``*****``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.api import (
    AnalysisRunSpec,
    AnalysisTemplateSpec,
    Argument,
    DryRun,
    MeasurementRetention,
    Metric,
    SpecError,
    TemplateRef,
    field_path,
    parse_duration,
    rule_matches,
)
from analysis.conditions import ExpressionError, compile_expression, quote_source
from analysis.redaction import REDACTED, redact

# Run-level messages (Argo's wording, capitalised as in §3.2 step 1).
MSG_UNRESOLVED_ARGS = "Unable to resolve metric arguments: {error}"
MSG_SPEC_INVALID = "Analysis spec invalid: {error}"

MSG_TEMPLATE_NOT_FOUND = '{kind} "{name}" not found'
MSG_TEMPLATE_CYCLE = '{kind} "{name}" includes itself through spec.templates: {chain}'
MSG_DUPLICATE_METRIC = 'two metrics have the same name "{name}"'
MSG_ARG_CONFLICT = 'argument "{name}" specified multiple times with different values: "{a}", "{b}"'
MSG_ARG_UNRESOLVED = "args.{name} was not resolved: give it a value or valueFrom"
MSG_ARG_BOTH = 'argument "{name}" has both value and valueFrom'
MSG_ARG_UNSUPPORTED_SOURCE = (
    'argument "{name}": valueFrom must be resolved to a value or be a secretKeyRef'
)
MSG_SECRET_MISSING = 'argument "{name}": secret "{secret}" has no key "{key}"'
MSG_PLACEHOLDER_NO_ARG = (
    'metric "{metric}": {field}: failed to resolve {{{{{key}}}}}: no argument "{arg}"'
)
MSG_PLACEHOLDER_UNKNOWN = 'metric "{metric}": {field}: failed to resolve {{{{{key}}}}}: only {{{{args.NAME}}}} is supported'
MSG_NOT_INT = 'metric "{metric}": {field}: "{value}" is not an integer'
MSG_DUPLICATE_RULE = 'two {field} rules have the same metricName "{name}"'
MSG_RULE_REGEX = '{field}[{index}]: metricName "{name}" is not a valid regular expression: {error}'
MSG_RULE_NO_MATCH = "{field}[{index}]: rule didn't match any metric name(s)"
MSG_METRIC = 'metric "{metric}": {problem}'
MSG_NO_METRICS = "at least one metric is required"

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

SecretLookup = Callable[[str, str], str | None]
"""(secret name, key) in the run's namespace -> the value, or None when absent."""


class TemplateError(SpecError):
    """Templates cannot be merged: missing, cyclic, duplicate metrics, conflicting args."""


class ArgumentError(SpecError):
    """An argument has no value, or a ``{{...}}`` placeholder cannot be resolved."""


class InvalidMetricError(SpecError):
    """A metric breaks Argo's validation rules (limits, interval, provider, conditions)."""


def run_error_message(err: SpecError) -> str:
    """The run's ``status.message`` for an error from ``resolve_run`` (Argo's wording)."""
    template = MSG_SPEC_INVALID if isinstance(err, InvalidMetricError) else MSG_UNRESOLVED_ARGS
    return template.format(error=err.message)


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


# --- args ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedArgs:
    """Argument values by name, and the secret values among them (for redaction)."""

    values: Mapping[str, str]
    secrets: tuple[str, ...] = ()

    def redact(self, text: str) -> str:
        """Replace every form of every secret value in ``text`` with ``*****``."""
        return redact(text, self.secrets)


def resolve_args(args: Sequence[Argument], secret_lookup: SecretLookup | None) -> ResolvedArgs:
    """Give every run argument its value; secretKeyRef values come from ``secret_lookup``.

    With ``secret_lookup=None`` a secret arg gets the placeholder ``*****`` (enough to
    validate a spec without reading Secrets). Raises ``ArgumentError``.
    """
    values: dict[str, str] = {}
    secrets: list[str] = []
    for arg in args:
        if arg.value is not None and arg.value_from is not None:
            raise ArgumentError(MSG_ARG_BOTH.format(name=arg.name))
        if arg.value is not None:
            values[arg.name] = arg.value
            continue
        ref = arg.value_from.secret_key_ref if arg.value_from is not None else None
        if arg.value_from is None:
            raise ArgumentError(MSG_ARG_UNRESOLVED.format(name=arg.name))
        if ref is None:
            raise ArgumentError(MSG_ARG_UNSUPPORTED_SOURCE.format(name=arg.name))
        secret = REDACTED if secret_lookup is None else secret_lookup(ref.name, ref.key)
        if secret is None:
            raise ArgumentError(
                MSG_SECRET_MISSING.format(name=arg.name, secret=ref.name, key=ref.key)
            )
        values[arg.name] = secret
        secrets.append(secret)
    return ResolvedArgs(values=values, secrets=tuple(secrets))


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


# --- validation ----------------------------------------------------------------------------


def _int(value: int | str | None, default: int) -> int:
    # After substitute() these are ints; a leftover string is caught by substitute itself.
    return default if value is None else int(value)


def _metric_problems(metric: Metric) -> Iterator[str]:
    """Each way ``metric`` breaks Argo's rules (utils/analysis/factory.go ValidateMetric)."""
    count = _int(metric.count, 0)
    failure_limit = _int(metric.failure_limit, 0)
    inconclusive_limit = _int(metric.inconclusive_limit, 0)
    success_limit = _int(metric.consecutive_success_limit, 0)
    if count > 0 and count < failure_limit + success_limit:
        yield (
            f"count ({count}) must be >= failureLimit ({failure_limit})"
            f" + consecutiveSuccessLimit ({success_limit})"
        )
    if count > 0 and count < inconclusive_limit:
        yield f"count ({count}) must be >= inconclusiveLimit ({inconclusive_limit})"
    if count > 1 and not metric.interval:
        yield f"interval must be specified when count ({count}) > 1"
    if failure_limit < -1:
        yield f"failureLimit ({failure_limit}) must be >= -1"
    if failure_limit == -1 and success_limit <= 0:
        yield "failureLimit -1 (disabled) needs consecutiveSuccessLimit > 0"
    for field, value in (
        ("count", count),
        ("inconclusiveLimit", inconclusive_limit),
        ("consecutiveErrorLimit", _int(metric.consecutive_error_limit, 0)),
        ("consecutiveSuccessLimit", success_limit),
    ):
        if value < 0:
            yield f"{field} ({value}) must be >= 0"
    yield from _duration_problems(metric)
    yield from _provider_problems(metric)
    yield from _condition_problems(metric)


def _duration_problems(metric: Metric) -> Iterator[str]:
    for field, text in (("interval", metric.interval), ("initialDelay", metric.initial_delay)):
        if text:
            try:
                parse_duration(text)
            except ValueError as err:
                yield f"{field}: {err}"


def _provider_problems(metric: Metric) -> Iterator[str]:
    kinds = metric.provider.kinds()
    if not kinds:
        yield "no provider specified"
    elif len(kinds) > 1:
        yield f"multiple providers specified: {', '.join(kinds)}"


def _condition_problems(metric: Metric) -> Iterator[str]:
    for field, source in (
        ("successCondition", metric.success_condition),
        ("failureCondition", metric.failure_condition),
    ):
        if not source:
            continue
        try:
            compile_expression(source)
        except ExpressionError as err:
            # The message already says where (column) when a position applies.
            yield f"{field} {quote_source(source, err.position)!r}: {err.message}"


def validate_metric(metric: Metric) -> None:
    """Raise ``InvalidMetricError`` listing every problem of one substituted metric."""
    problems = list(_metric_problems(metric))
    if problems:
        raise InvalidMetricError(MSG_METRIC.format(metric=metric.name, problem="; ".join(problems)))


def _rule_problems(
    rules: Sequence[DryRun | MeasurementRetention], field: str, names: Sequence[str]
) -> Iterator[str]:
    for index, rule in enumerate(rules):
        if rule.metric_name != "*":
            try:
                re.compile(rule.metric_name)
            except re.error as err:
                yield MSG_RULE_REGEX.format(
                    field=field, index=index, name=rule.metric_name, error=err
                )
                continue
        if not any(rule_matches(rule.metric_name, name) for name in names):
            yield MSG_RULE_NO_MATCH.format(field=field, index=index)


def validate_spec(spec: AnalysisRunSpec, metrics: Sequence[Metric]) -> None:
    """Whole-run rules: unique metric names, dryRun / measurementRetention rules that match."""
    names = [metric.name for metric in metrics]
    problems = [MSG_NO_METRICS] if not names else []
    problems += [
        MSG_DUPLICATE_METRIC.format(name=n) for n in sorted(set(names)) if names.count(n) > 1
    ]
    problems += _rule_problems(spec.dry_run, "dryRun", names)
    problems += _rule_problems(spec.measurement_retention, "measurementRetention", names)
    if problems:
        raise InvalidMetricError("; ".join(problems))


# --- all together --------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedRun:
    """A run's metrics ready to measure.

    ``documents`` are the substituted camelCase metric dicts (what a provider receives
    as ``MeasurementContext.metric``); ``metrics`` the same as models, in spec order.
    """

    metrics: tuple[Metric, ...]
    documents: tuple[dict[str, Any], ...]
    secrets: tuple[str, ...] = ()


def resolve_run(spec: AnalysisRunSpec, secret_lookup: SecretLookup | None) -> ResolvedRun:
    """Resolve args, substitute every metric, coerce and validate; raise a redacted SpecError.

    ``secret_lookup=None`` validates with ``*****`` in place of secrets (no Secret read).
    Use ``run_error_message(err)`` for the run's status message.
    """
    resolved = resolve_args(spec.args, secret_lookup)
    try:
        documents = tuple(substitute(m.to_json(), resolved.values) for m in spec.metrics)
        metrics = tuple(Metric.model_validate(doc) for doc in documents)
        for metric in metrics:
            validate_metric(metric)
        validate_spec(spec, metrics)
    except SpecError as err:
        # "from None": the original exception's text may hold a secret value.
        raise type(err)(resolved.redact(err.message)) from None
    return ResolvedRun(metrics=metrics, documents=documents, secrets=resolved.secrets)
