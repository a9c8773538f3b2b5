"""The AnalysisRun state machine: what to measure, how to count it, what it means. Pure.

Called by the AnalysisRun controller once per reconcile, in this order:

1. ``templates.resolve_run(spec, ...)`` gives the substituted ``metrics``
   (on a SpecError: ``mark_error``);
2. ``due_measurements(run, now, metrics)``: which providers to call (start, resume or
   terminate a measurement);
3. ``record(status, metric, observation, now, ...)`` once per provider answer;
4. ``assess_run(run, now, metrics)``: metric phases, run phase, summaries, message;
5. ``next_wakeup(run, now, metrics)``: when to reconcile again.

Nothing here does I/O or reads a clock: ``now`` is an argument, every function returns
new models and leaves its inputs alone, and a timestamp is only written when the state
it stamps changes (re-stamping would make every reconcile write, forever).
Semantics follow Argo Rollouts' analysis/analysis.go (see the reference, §3.2).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from analysis import bounds, conditions
from analysis.api.models import (
    AnalysisRun,
    AnalysisRunSpec,
    AnalysisRunStatus,
    Measurement,
    Metric,
    MetricResult,
    RunSummary,
    rule_matches,
)
from analysis.api.phases import AnalysisPhase
from common.api import (
    KubeModel,
    parse_duration,
)
from common.redaction import redactor as make_redactor

DEFAULT_MEASUREMENT_RETENTION = 10
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
ERROR_RETRY_INTERVAL = timedelta(seconds=10)

MSG_RUN_TERMINATED = "Run Terminated"
MSG_METRIC_ASSESSED = 'Metric "{metric}" assessed {phase} due to {reason}'
MSG_DRY_RUN_ASSESSED = "Metric assessed {phase} due to {reason}"
MSG_ERROR_SUFFIX = ': "Error Message: {message}"'
REASON_FAILED = "failed ({n}) > failureLimit ({limit})"
REASON_INCONCLUSIVE = "inconclusive ({n}) > inconclusiveLimit ({limit})"
REASON_ERROR = "consecutiveErrors ({n}) > consecutiveErrorLimit ({limit})"
REASON_COUNT_NO_STREAK = (
    "count ({count}) reached before consecutiveSuccess ({n}) >= consecutiveSuccessLimit ({limit})"
)

_BAD_PHASES = frozenset({AnalysisPhase.FAILED, AnalysisPhase.ERROR, AnalysisPhase.INCONCLUSIVE})
ModelT = TypeVar("ModelT", bound=KubeModel)


@dataclass(frozen=True)
class Observation:
    """What one provider call saw.

    Either ``value`` is set and ``phase`` is None (the run state machine then
    judges the value with the metric's success/failure conditions), or the
    provider decided the phase itself (job provider, or Error on any failure).
    ``resume_at`` set means the measurement is still in flight (a Job running):
    the controller calls ``resume`` at that time.
    """

    value: Any = None
    phase: AnalysisPhase | None = None
    message: str = ""
    display_value: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    resume_at: datetime | None = None

    @classmethod
    def error(cls, message: str, **metadata: str) -> Observation:
        return cls(phase=AnalysisPhase.ERROR, message=message, metadata=dict(metadata))


class MeasurementKind(enum.StrEnum):
    """Which provider call a due measurement needs."""

    START = "start"
    RESUME = "resume"
    TERMINATE = "terminate"


@dataclass(frozen=True)
class DueMeasurement:
    metric: str
    kind: MeasurementKind


@dataclass(frozen=True)
class MetricAssessment:
    """A metric's phase and, when a limit decided it, why (``failed (3) > failureLimit (2)``)."""

    phase: AnalysisPhase
    reason: str = ""


@dataclass(frozen=True)
class MetricLimits:
    """A resolved metric's numbers, with Argo's defaults applied.

    ``count`` is the effective count: None means "measure until terminated".
    """

    count: int | None
    interval: timedelta | None
    initial_delay: timedelta
    failure_limit: int
    inconclusive_limit: int
    consecutive_error_limit: int
    consecutive_success_limit: int

    @classmethod
    def of(cls, metric: Metric) -> MetricLimits:
        """Read a substituted metric (templates.resolve_run); raises ValueError on a template."""
        interval = parse_duration(metric.interval) if metric.interval else None
        delay = parse_duration(metric.initial_delay) if metric.initial_delay else timedelta(0)
        count = _int(metric.count, 0)
        return cls(
            # No count: one measurement without interval, endless with one (Argo EffectiveCount).
            count=count if count > 0 else (1 if interval is None else None),
            interval=interval,
            initial_delay=delay,
            failure_limit=_int(metric.failure_limit, 0),
            inconclusive_limit=_int(metric.inconclusive_limit, 0),
            consecutive_error_limit=_int(
                metric.consecutive_error_limit, DEFAULT_CONSECUTIVE_ERROR_LIMIT
            ),
            consecutive_success_limit=_int(metric.consecutive_success_limit, 0),
        )


def _int(value: int | str | None, default: int) -> int:
    return default if value is None else int(value)


def _with(model: ModelT, **changes: Any) -> ModelT:
    """A copy with only the fields that really change marked as set (keeps patches minimal)."""
    changed = {key: value for key, value in changes.items() if getattr(model, key) != value}
    return model.model_copy(update=changed, deep=False)


# --- spec rules ----------------------------------------------------------------------------


def dry_run_metrics(spec: AnalysisRunSpec, names: Sequence[str]) -> frozenset[str]:
    """Names of the metrics selected by a ``spec.dryRun`` rule."""
    return frozenset(n for n in names if any(rule_matches(r.metric_name, n) for r in spec.dry_run))


def retention_limit(spec: AnalysisRunSpec, metric_name: str) -> int:
    """How many measurements to keep for a metric: the last matching rule wins, default 10."""
    limit = DEFAULT_MEASUREMENT_RETENTION
    for rule in spec.measurement_retention:
        if rule_matches(rule.metric_name, metric_name):
            limit = rule.limit
    return limit


def is_terminating(run: AnalysisRun, metrics: Sequence[Metric] | None = None) -> bool:
    """Terminate requested, or a non-dry-run metric already ended Failed, Error or Inconclusive."""
    if run.spec.terminate:
        return True
    names = [m.name for m in (run.spec.metrics if metrics is None else metrics)]
    dry = dry_run_metrics(run.spec, names)
    return any(r.phase in _BAD_PHASES and r.name not in dry for r in run.status.metric_results)


# --- scheduling ----------------------------------------------------------------------------


def _schedule(
    metric: Metric,
    result: MetricResult | None,
    started_at: datetime,
    *,
    terminating: bool,
    now: datetime,
) -> tuple[MeasurementKind, datetime] | None:
    """The next provider call this metric needs and when, or None when it needs none.

    One function serves both ``due_measurements`` (due when the time is <= now) and
    ``next_wakeup`` (earliest time), so the two can never disagree.
    """
    if result is not None and result.phase.completed:
        return None
    last = result.measurements[-1] if result is not None and result.measurements else None
    if last is not None and last.finished_at is None:
        if terminating:
            return MeasurementKind.TERMINATE, now
        return MeasurementKind.RESUME, last.resume_at or now
    if terminating:
        return None
    limits = MetricLimits.of(metric)
    if last is None:
        return MeasurementKind.START, started_at + limits.initial_delay
    assert result is not None and last.finished_at is not None  # narrowed by the checks above
    if limits.count is not None and result.count >= limits.count:
        return None
    if last.phase == AnalysisPhase.ERROR:
        # Retry an error soon, whatever the interval (Argo DefaultErrorRetryInterval).
        return MeasurementKind.START, last.finished_at + ERROR_RETRY_INTERVAL
    if limits.interval is not None:
        return MeasurementKind.START, last.finished_at + limits.interval
    return None


def _schedules(
    run: AnalysisRun, now: datetime, metrics: Sequence[Metric] | None
) -> list[tuple[str, MeasurementKind, datetime]]:
    if run.status.phase is not None and run.status.phase.completed:
        return []
    terminating = is_terminating(run, metrics)
    # Before the first assess_run stamps startedAt, the run starts now.
    started_at = run.status.started_at or now
    found = []
    for metric in run.spec.metrics if metrics is None else metrics:
        result = run.status.result(metric.name)
        plan = _schedule(metric, result, started_at, terminating=terminating, now=now)
        if plan is not None:
            found.append((metric.name, plan[0], plan[1]))
    return found


def due_measurements(
    run: AnalysisRun, now: datetime, metrics: Sequence[Metric] | None = None
) -> list[DueMeasurement]:
    """Provider calls to make now, in metric order (Argo generateMetricTasks).

    ``metrics`` are the substituted metrics (default: ``run.spec.metrics`` as written).
    A time exactly equal to ``now`` is due, so waking at ``next_wakeup`` always finds work.
    """
    return [
        DueMeasurement(metric=name, kind=kind)
        for name, kind, at in _schedules(run, now, metrics)
        if at <= now
    ]


def next_wakeup(
    run: AnalysisRun, now: datetime, metrics: Sequence[Metric] | None = None
) -> datetime | None:
    """Earliest next interval, initialDelay end, resumeAt or error retry; None if nothing waits.

    A time <= ``now`` means "reconcile again at once".
    """
    times = [at for _, _, at in _schedules(run, now, metrics)]
    return min(times) if times else None


# --- recording -----------------------------------------------------------------------------


def display_value(value: Any) -> str:
    """A measured value as Argo writes it: ``0.97``, ``[0.97,1]``, ``NaN``, ``true``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(display_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _verdict(metric: Metric, observation: Observation) -> tuple[AnalysisPhase, str]:
    """The measurement's phase and message: the provider's, or the conditions' verdict."""
    if observation.phase is not None:
        return observation.phase, observation.message
    if observation.resume_at is not None:
        return AnalysisPhase.RUNNING, observation.message
    phase, message = conditions.assess(
        observation.value, metric.success_condition, metric.failure_condition
    )
    return phase, message or observation.message


def to_measurement(
    metric: Metric,
    observation: Observation,
    now: datetime,
    *,
    in_flight: Measurement | None = None,
    started_at: datetime | None = None,
    secrets: Sequence[str] = (),
) -> Measurement:
    """Turn a provider's Observation into a Measurement.

    ``in_flight`` is the unfinished measurement this observation continues (resume or
    terminate): its startedAt and metadata are kept. ``started_at`` defaults to ``now``.
    Message, value and metadata are redacted and clipped here (analysis.bounds), so
    a 10 MB answer is judged by the conditions but never kept.
    """
    redactor = make_redactor(secrets)
    phase, message = _verdict(metric, observation)
    done = phase.completed
    previous_metadata = (in_flight.metadata or {}) if in_flight is not None else {}
    metadata = {**previous_metadata, **observation.metadata}
    shown = observation.display_value or (
        display_value(observation.value) if observation.value is not None else ""
    )
    fields: dict[str, Any] = {
        "phase": phase,
        "started_at": in_flight.started_at if in_flight else (started_at or now),
    }
    if done:
        fields["finished_at"] = now
    if message:
        fields["message"] = redactor.clip(
            message, limit=bounds.MAX_MESSAGE_CHARS, tail=bounds.MESSAGE_TAIL_CHARS)
    if shown:
        fields["value"] = redactor.clip(shown, limit=bounds.MAX_VALUE_CHARS)
    if metadata:
        fields["metadata"] = {key: redactor.clip(val, limit=bounds.MAX_METADATA_CHARS)
                              for key, val in metadata.items()}
    if not done and observation.resume_at is not None:
        fields["resume_at"] = observation.resume_at
    return Measurement(**fields)


def _count(result: MetricResult, phase: AnalysisPhase) -> dict[str, int]:
    """Counter changes for one completed measurement (Argo runMeasurements)."""
    if phase == AnalysisPhase.SUCCESSFUL:
        return {
            "count": result.count + 1,
            "successful": result.successful + 1,
            "consecutive_success": result.consecutive_success + 1,
            "consecutive_error": 0,
        }
    if phase in (AnalysisPhase.FAILED, AnalysisPhase.INCONCLUSIVE):
        counter = "failed" if phase == AnalysisPhase.FAILED else "inconclusive"
        return {
            "count": result.count + 1,
            counter: getattr(result, counter) + 1,
            "consecutive_success": 0,
            "consecutive_error": 0,
        }
    if phase == AnalysisPhase.ERROR:
        # An error does not use up the count: the measurement will be retried.
        return {
            "error": result.error + 1,
            "consecutive_error": result.consecutive_error + 1,
            "consecutive_success": 0,
        }
    return {}


def record(
    status: AnalysisRunStatus,
    metric: Metric,
    observation: Observation,
    now: datetime,
    *,
    started_at: datetime | None = None,
    retention: int = DEFAULT_MEASUREMENT_RETENTION,
    secrets: Sequence[str] = (),
    metric_metadata: Mapping[str, str] | None = None,
) -> AnalysisRunStatus:
    """Add (or complete the in-flight) measurement of ``metric`` and update its counters.

    Only the measurement list, counters, ``message`` (the latest completed measurement's)
    and ``metadata`` of this metric's result change; phases are ``assess_run``'s job.
    Keeps the last ``retention`` measurements (at least one: the state machine reads it).
    """
    old = status.result(metric.name) or MetricResult(name=metric.name, phase=AnalysisPhase.RUNNING)
    last = old.measurements[-1] if old.measurements else None
    in_flight = last if last is not None and last.finished_at is None else None
    measurement = to_measurement(
        metric, observation, now, in_flight=in_flight, started_at=started_at, secrets=secrets
    )
    kept = old.measurements[:-1] if in_flight is not None else old.measurements
    measurements = [*kept, measurement][-max(retention, 1) :]
    changes: dict[str, Any] = {"measurements": measurements}
    if measurement.phase.completed:
        changes.update(_count(old, measurement.phase))
        changes["message"] = measurement.message
    if metric_metadata:
        redactor = make_redactor(secrets)
        changes["metadata"] = {
            **(old.metadata or {}),
            **{key: redactor.clip(val, limit=bounds.MAX_METADATA_CHARS)
               for key, val in metric_metadata.items()},
        }
    new = _with(old, **changes)
    if status.result(metric.name) is None:
        return _with(status, metric_results=[*status.metric_results, new])
    return _with(
        status, metric_results=[new if r.name == metric.name else r for r in status.metric_results]
    )


# --- assessment ----------------------------------------------------------------------------


def _limit_breach(limits: MetricLimits, result: MetricResult) -> MetricAssessment | None:
    """Failed / Inconclusive / Error from the limits; when several apply the last one wins."""
    breach: MetricAssessment | None = None
    if limits.failure_limit >= 0 and result.failed > limits.failure_limit:
        reason = REASON_FAILED.format(n=result.failed, limit=limits.failure_limit)
        breach = MetricAssessment(AnalysisPhase.FAILED, reason)
    if result.inconclusive > limits.inconclusive_limit:
        reason = REASON_INCONCLUSIVE.format(n=result.inconclusive, limit=limits.inconclusive_limit)
        breach = MetricAssessment(AnalysisPhase.INCONCLUSIVE, reason)
    if result.consecutive_error > limits.consecutive_error_limit:
        reason = REASON_ERROR.format(
            n=result.consecutive_error, limit=limits.consecutive_error_limit
        )
        breach = MetricAssessment(AnalysisPhase.ERROR, reason)
    return breach


def _count_reached(limits: MetricLimits, result: MetricResult) -> MetricAssessment:
    """The verdict once ``count`` measurements completed and no limit decided earlier."""
    failure_applies = limits.failure_limit >= 0
    streak_applies = limits.consecutive_success_limit > 0
    if not streak_applies:
        return MetricAssessment(AnalysisPhase.SUCCESSFUL)
    reason = REASON_COUNT_NO_STREAK.format(
        count=result.count, n=result.consecutive_success, limit=limits.consecutive_success_limit
    )
    # Neither limit was reached: with both in play that is undecided, with only the
    # success streak in play not reaching it is a failure.
    phase = AnalysisPhase.INCONCLUSIVE if failure_applies else AnalysisPhase.FAILED
    return MetricAssessment(phase, reason)


def assess_metric(metric: Metric, result: MetricResult, *, terminating: bool) -> MetricAssessment:
    """A metric's phase from its counters and last measurement (Argo assessMetricStatus).

    A completed phase never changes. Otherwise, in order: no measurement -> Pending
    (Successful when terminating); last in flight -> Running; a limit breached
    (Failed, Inconclusive, Error: the later wins); consecutiveSuccessLimit reached ->
    Successful; count reached -> see ``_count_reached``; else Running (Successful when
    terminating).
    """
    if result.phase.completed:
        # Sticky; re-deriving only recovers the reason for the run message.
        fresh = _assess_open(MetricLimits.of(metric), result, terminating=terminating)
        return fresh if fresh.phase == result.phase else MetricAssessment(result.phase)
    return _assess_open(MetricLimits.of(metric), result, terminating=terminating)


def _assess_open(
    limits: MetricLimits, result: MetricResult, *, terminating: bool
) -> MetricAssessment:
    if not result.measurements:
        return MetricAssessment(AnalysisPhase.SUCCESSFUL if terminating else AnalysisPhase.PENDING)
    if not result.measurements[-1].phase.completed:
        return MetricAssessment(AnalysisPhase.RUNNING)
    breach = _limit_breach(limits, result)
    if breach is not None:
        return breach
    if 0 < limits.consecutive_success_limit <= result.consecutive_success:
        return MetricAssessment(AnalysisPhase.SUCCESSFUL)
    if limits.count is not None and result.count >= limits.count:
        return _count_reached(limits, result)
    return MetricAssessment(AnalysisPhase.SUCCESSFUL if terminating else AnalysisPhase.RUNNING)


def _with_error_message(text: str, result_message: str | None) -> str:
    return text + MSG_ERROR_SUFFIX.format(message=result_message) if result_message else text


@dataclass(frozen=True)
class _Assessed:
    metric: str
    dry_run: bool
    assessment: MetricAssessment
    result: MetricResult | None


def _assess_results(
    run: AnalysisRun, metrics: Sequence[Metric], terminating: bool
) -> tuple[list[_Assessed], list[MetricResult]]:
    """Assess every metric; return the verdicts and the updated results (status order)."""
    dry = dry_run_metrics(run.spec, [m.name for m in metrics])
    verdicts: list[_Assessed] = []
    updated: dict[str, MetricResult] = {}
    for metric in metrics:
        result = run.status.result(metric.name)
        is_dry = metric.name in dry
        if result is None:
            verdicts.append(
                _Assessed(metric.name, is_dry, MetricAssessment(AnalysisPhase.PENDING), None)
            )
            continue
        verdict = assess_metric(metric, result, terminating=terminating)
        changes: dict[str, Any] = {"phase": verdict.phase}
        if is_dry:
            changes["dry_run"] = True
        if is_dry and verdict.reason and verdict.phase != result.phase:
            # Dry-run verdicts never reach the run message, so they go on the metric.
            text = MSG_DRY_RUN_ASSESSED.format(phase=verdict.phase, reason=verdict.reason)
            changes["message"] = _with_error_message(text, result.message)
        updated[metric.name] = _with(result, **changes)
        verdicts.append(_Assessed(metric.name, is_dry, verdict, updated[metric.name]))
    results = [updated.get(r.name, r) for r in run.status.metric_results]
    return verdicts, results


def _summary(verdicts: Sequence[_Assessed]) -> RunSummary:
    phases = [v.assessment.phase for v in verdicts]
    return RunSummary(
        count=len(phases),
        successful=phases.count(AnalysisPhase.SUCCESSFUL),
        failed=phases.count(AnalysisPhase.FAILED),
        inconclusive=phases.count(AnalysisPhase.INCONCLUSIVE),
        error=phases.count(AnalysisPhase.ERROR),
    )


def _run_verdict(
    verdicts: Sequence[_Assessed], *, terminating: bool, terminate_requested: bool
) -> tuple[AnalysisPhase, str]:
    """Run phase and message (Argo assessRunStatus): the worst completed non-dry-run metric."""
    counted = [v for v in verdicts if not v.dry_run and v.assessment.phase.completed]
    # max() keeps the first of equally bad metrics, as Argo's strict IsWorse does.
    worst = max(counted, key=lambda v: v.assessment.phase.severity, default=None)
    message = MSG_RUN_TERMINATED if terminate_requested else ""
    if worst is not None and worst.assessment.reason:
        text = MSG_METRIC_ASSESSED.format(
            metric=worst.metric, phase=worst.assessment.phase, reason=worst.assessment.reason
        )
        message = _with_error_message(text, worst.result.message if worst.result else None)
    if terminating:
        return (worst.assessment.phase if worst else AnalysisPhase.SUCCESSFUL), message
    if not all(v.assessment.phase.completed for v in verdicts):
        return AnalysisPhase.RUNNING, ""
    # Every metric completed; only dry-run ones means nothing failed.
    return (worst.assessment.phase if worst else AnalysisPhase.SUCCESSFUL), message


def assess_run(
    run: AnalysisRun, now: datetime, metrics: Sequence[Metric] | None = None
) -> AnalysisRunStatus:
    """The run's new status after this reconcile's measurements were recorded.

    Sets each metric result's phase (and dryRun flag), ``runSummary`` /
    ``dryRunSummary``, the run phase and message, ``startedAt`` on the first call and
    ``completedAt`` once, on completion. A completed run is returned unchanged.
    """
    status = run.status
    if status.phase is not None and status.phase.completed:
        return status.model_copy()
    metrics = run.spec.metrics if metrics is None else metrics
    terminating = is_terminating(run, metrics)
    verdicts, results = _assess_results(run, metrics, terminating)
    phase, message = _run_verdict(
        verdicts, terminating=terminating, terminate_requested=run.spec.terminate
    )
    changes: dict[str, Any] = {
        "metric_results": results,
        "phase": phase,
        "message": message or None,
        "run_summary": _summary([v for v in verdicts if not v.dry_run]),
        "dry_run_summary": _summary([v for v in verdicts if v.dry_run]),
        "started_at": status.started_at or now,
    }
    if phase.completed and status.completed_at is None:
        changes["completed_at"] = now
    return _with(status, **changes)


def mark_error(status: AnalysisRunStatus, message: str, now: datetime) -> AnalysisRunStatus:
    """End the run Error before any measurement (bad spec, unresolvable args)."""
    if status.phase is not None and status.phase.completed:
        return status.model_copy()
    return _with(
        status,
        phase=AnalysisPhase.ERROR,
        message=message,
        started_at=status.started_at or now,
        completed_at=status.completed_at or now,
    )
