"""From a run spec to measurable metrics: args, substitution, validation. Pure.

Merging templates and substituting args is ``analysis.api.templates`` (the part the
rollout controller may import). The AnalysisRun controller calls ``resolve_run`` on
every reconcile: it resolves the
  args (secrets through a lookup it is given), substitutes ``{{args.x}}`` everywhere in
  each metric, coerces templated counts and limits to integers and validates the
  metrics, so a bad spec fails the run before any measurement is taken.

Every error is a ``SpecError`` subclass whose message names the metric and field;
no form of a secret value appears in it (common.redaction replaces them with ``*****``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.api.models import (
    AnalysisRunSpec,
    Argument,
    DryRun,
    MeasurementRetention,
    Metric,
    rule_matches,
)
from analysis.api.templates import (
    MSG_ARG_UNRESOLVED,
    MSG_DUPLICATE_METRIC,
    ArgumentError,
    substitute,
)
from common.api import SpecError, parse_duration
from common.expr import ExpressionError, compile_expression, quote_source
from common.redaction import REDACTED, redact

# Run-level messages (Argo's wording, capitalised as in §3.2 step 1).
MSG_UNRESOLVED_ARGS = "Unable to resolve metric arguments: {error}"
MSG_SPEC_INVALID = "Analysis spec invalid: {error}"
MSG_ARG_BOTH = 'argument "{name}" has both value and valueFrom'
MSG_ARG_UNSUPPORTED_SOURCE = (
    'argument "{name}": valueFrom must be resolved to a value or be a secretKeyRef'
)
MSG_SECRET_MISSING = 'argument "{name}": secret "{secret}" has no key "{key}"'
MSG_RULE_REGEX = '{field}[{index}]: metricName "{name}" is not a valid regular expression: {error}'
MSG_RULE_NO_MATCH = "{field}[{index}]: rule didn't match any metric name(s)"
MSG_METRIC = 'metric "{metric}": {problem}'
MSG_NO_METRICS = "at least one metric is required"

SecretLookup = Callable[[str, str], str | None]
"""(secret name, key) in the run's namespace -> the value, or None when absent."""


class InvalidMetricError(SpecError):
    """A metric breaks Argo's validation rules (limits, interval, provider, conditions)."""


def run_error_message(err: SpecError) -> str:
    """The run's ``status.message`` for an error from ``resolve_run`` (Argo's wording)."""
    template = MSG_SPEC_INVALID if isinstance(err, InvalidMetricError) else MSG_UNRESOLVED_ARGS
    return template.format(error=err.message)


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
