"""The decision log of a Rollout's current revision, rebuilt from what the controllers record.

``build`` reads only objects the controllers write and the API server keeps: the
Rollout (spec steps, ``status`` with its index, pause conditions, abort flag and
conditions), its AnalysisRuns (spec metrics and args, status measurements), its
ReplicaSets (the revision annotation) and the Events posted about the Rollout and
its runs (Argo's reasons: RolloutUpdated, RolloutStepCompleted, RolloutPaused,
RolloutResumed, RolloutAborted, RolloutCompleted, AnalysisRun<Phase>). Nothing
comes from controller memory, so the log is the same after a controller restart.

The controller records no per-step start time in status (only the current pause's
``startTime``), so step times come from Events: a step starts when the previous one
completed (or when the revision was rolled out) and ends with its
RolloutStepCompleted Event. Events expire (the API server keeps them about an
hour by default): without them, times are None and ``why`` says so.

Pure: no I/O, no kubernetes import. Callers: cli/explain.py (``tidegate explain``)
and the dashboard's rollout page; both render ``to_dict``'s shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from common.api import format_time, parse_duration
from common.redaction import REDACTED

# --- names the controllers write (Argo's spellings) ---------------------------------------
KIND_ROLLOUT = "Rollout"
KIND_ANALYSIS_RUN = "AnalysisRun"
ANNOTATION_REVISION = "rollout.argoproj.io/revision"
LABEL_POD_TEMPLATE_HASH = "rollouts-pod-template-hash"
LABEL_ROLLOUT_TYPE = "rollout-type"
LABEL_STEP_INDEX = "step-index"
ROLLOUT_TYPE_STEP = "Step"
ROLLOUT_TYPE_BACKGROUND = "Background"

REASON_UPDATED = "RolloutUpdated"
REASON_RS_CREATED = "NewReplicaSetCreated"
REASON_STEP_COMPLETED = "RolloutStepCompleted"
REASON_PAUSED = "RolloutPaused"
REASON_RESUMED = "RolloutResumed"
REASON_ABORTED = "RolloutAborted"
REASON_COMPLETED = "RolloutCompleted"
REASON_SKIP_STEPS = "SkipSteps"
RUN_REASON_PREFIX = "AnalysisRun"
PAUSE_REASON_STEP = "CanaryPauseStep"
PAUSE_REASON_INCONCLUSIVE = "InconclusiveAnalysisRun"
CONDITION_PROGRESSING = "Progressing"
CONDITION_REASON_ABORTED = "RolloutAborted"

PHASE_FAILED = "Failed"
PHASE_ERROR = "Error"
PHASE_INCONCLUSIVE = "Inconclusive"
PHASE_SUCCESSFUL = "Successful"
PHASE_DEGRADED = "Degraded"

_STEP_COMPLETED = re.compile(r"Rollout step (\d+)/(\d+) completed")
_REVISION_IN_MESSAGE = re.compile(r"revision (\d+)")
_ARG_PLACEHOLDER = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")

# --- step states ---------------------------------------------------------------------------
STATE_DONE = "done"
STATE_CURRENT = "current"
STATE_PAUSED = "paused"
STATE_ABORTED = "aborted"
STATE_PENDING = "pending"
STATE_SKIPPED = "skipped"

# --- what a person reads -------------------------------------------------------------------
SUMMARY_NO_STEPS_HEALTHY = "Fully promoted: the rollout has no canary steps"
SUMMARY_PROMOTED = "Fully promoted: all {count} steps done"
SUMMARY_PROMOTED_SKIPPED = "Fully promoted: rolled back to the stable ReplicaSet, steps skipped"
SUMMARY_ABORTED_AT = "Aborted at step {number}/{count}: {why}"
SUMMARY_ABORTED = "Aborted: {why}"
SUMMARY_PAUSED_UNTIL = "Paused at step {number}/{count} ({step}) until {until}"
SUMMARY_PAUSED_INDEFINITE = "Paused at step {number}/{count} ({step}) until promoted"
SUMMARY_PAUSED_INCONCLUSIVE = "Paused at step {number}/{count}: {why}; promote or abort"
SUMMARY_PAUSED_MANUAL = "Paused by the user (spec.paused) at step {number}/{count}"
SUMMARY_PAUSED = "Paused at step {number}/{count}: {why}"
SUMMARY_DEGRADED = "Degraded at step {number}/{count}: {why}"
SUMMARY_PROGRESSING = "Progressing at step {number}/{count} ({step}): {why}"
SUMMARY_PROGRESSING_NO_STEPS = "Progressing: {why}"
SUMMARY_UNKNOWN = "No status yet: the controller has not reconciled this rollout"

WHY_ABORT_UNKNOWN = "the rollout was aborted"
WHY_RUN_VERDICT = "analysis run {run} {phase}"
WHY_RUN_METRIC = "analysis run {run} {phase}: metric {metric} value {value} {relation}"
WHY_MET_FAILURE = "met failureCondition {condition}"
WHY_MISSED_SUCCESS = "did not meet successCondition {condition}"
WHY_ERROR = "errored: {message}"
WHY_INCONCLUSIVE = "was inconclusive ({conditions})"
WHY_STEP_COMPLETED = "completed ({event})"
WHY_WEIGHT_DONE = "canary weight {weight}% reached and its pods available"
WHY_PAUSE_ELAPSED = "pause of {duration} elapsed"
WHY_PAUSE_PROMOTED = "promoted before the pause ended"
WHY_PAUSE_INDEFINITE_DONE = "promoted (indefinite pause)"
WHY_ANALYSIS_DONE = "analysis run {run} Successful"
WHY_ANALYSIS_RUNNING = "waiting for analysis run {run} ({phase})"
WHY_ANALYSIS_NO_RUN = "waiting for its analysis run"
WHY_PAUSED_SINCE = "paused since {since}"
WHY_PAUSED_UNTIL = "paused since {since} until {until}"
WHY_PAUSED_INDEFINITE = "paused since {since} until promoted"
WHY_WAITING_WEIGHT = "waiting for the canary at {weight}% to become available"
WHY_CURRENT = "in progress"
WHY_ABORTED_HERE = "aborted here: {why}"
WHY_PENDING = "not started"
WHY_SKIPPED = "skipped: rolled back to the stable ReplicaSet"
WHY_PROMOTED_FULL = "skipped by a full promotion"
WHY_DONE_NO_EVENT = "done (its RolloutStepCompleted Event has expired: no times recorded)"
WHY_NO_EVENTS = " (no Events left: times unknown)"
CONDITION_NONE = "(no condition: every measurement counts as successful)"
QUERY_NONE = "(no query)"


@dataclass(frozen=True)
class StepEntry:
    """One canary step: ``index`` is 0-based like ``status.currentStepIndex``."""

    index: int
    step: str
    state: str
    started_at: str | None
    ended_at: str | None
    why: str


@dataclass(frozen=True)
class MeasurementEntry:
    """One analysis measurement with the (masked) query, its value, condition and verdict."""

    analysis_run: str
    metric: str
    query: str
    value: str | None
    condition: str
    verdict: str
    at: str | None


@dataclass(frozen=True)
class Explanation:
    summary: str
    revision: str | None
    steps: tuple[StepEntry, ...] = ()
    measurements: tuple[MeasurementEntry, ...] = ()


@dataclass
class _Timeline:
    """Step times and outcomes read from the Rollout's Events of this revision."""

    started: dict[int, datetime] = field(default_factory=dict)
    ended: dict[int, datetime] = field(default_factory=dict)
    event_text: dict[int, str] = field(default_factory=dict)
    paused: dict[int, datetime] = field(default_factory=dict)
    aborted_step: int | None = None
    aborted_at: datetime | None = None
    abort_message: str | None = None
    skipped: bool = False
    completed_at: datetime | None = None
    have_events: bool = False


# --- small readers -------------------------------------------------------------------------


def _get(obj: Mapping[str, Any] | None, *path: str) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _fmt(value: datetime | None) -> str | None:
    # whole seconds: Events have no finer grain, and a person reads "until 15:39:29"
    return None if value is None else format_time(value.replace(microsecond=0))


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        found = _parse_time(event.get(key))
        if found is not None:
            return found
    return _parse_time(_get(event, "metadata", "creationTimestamp"))


def _duration_text(raw: Any) -> str:
    return f"{raw}s" if isinstance(raw, int) or (isinstance(raw, str) and raw.strip().isdigit()) else str(raw)


def pause_duration(step: Mapping[str, Any]) -> timedelta | None:
    """A pause step's duration (int or bare digits: seconds; else a Go duration); None: indefinite."""
    raw = _get(step, "pause", "duration")
    if raw is None:
        return None
    if isinstance(raw, int):
        return timedelta(seconds=raw)
    text = str(raw).strip()
    if text.lstrip("-").isdigit():
        return timedelta(seconds=int(text))
    return parse_duration(text)


def describe_step(step: Mapping[str, Any]) -> str:
    """``setWeight: 20``, ``pause: 60s``, ``pause``, ``analysis: error-rate``, ... as the Events say it."""
    if step.get("setWeight") is not None:
        return f"setWeight: {step['setWeight']}"
    if "pause" in step:
        raw = _get(step, "pause", "duration")
        return "pause" if raw is None else f"pause: {_duration_text(raw)}"
    if step.get("analysis") is not None:
        names = [str(t.get("templateName")) for t in _get(step, "analysis", "templates") or ()
                 if isinstance(t, Mapping)]
        return "analysis: " + ", ".join(names) if names else "analysis"
    for name in ("setCanaryScale", "experiment", "setHeaderRoute", "setMirrorRoute", "plugin"):
        if step.get(name) is not None:
            return name
    return "step"


def _weight_at(steps: Sequence[Mapping[str, Any]], index: int) -> int:
    weight = 0
    for step in steps[: index + 1]:
        if step.get("setWeight") is not None:
            weight = int(step["setWeight"])
    return weight


# --- revision and the objects that belong to it --------------------------------------------


def _revision(rollout: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]]) -> str | None:
    current_hash = _get(rollout, "status", "currentPodHash")
    for rs in replicasets:
        if current_hash and _get(rs, "metadata", "labels", LABEL_POD_TEMPLATE_HASH) == current_hash:
            found = _get(rs, "metadata", "annotations", ANNOTATION_REVISION)
            if found:
                return str(found)
    found = _get(rollout, "metadata", "annotations", ANNOTATION_REVISION)
    return str(found) if found else None


def _runs_of_revision(rollout: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
                      revision: str | None) -> list[Mapping[str, Any]]:
    """The runs created for the current pod hash (and revision, when both are recorded)."""
    current_hash = _get(rollout, "status", "currentPodHash")
    chosen = []
    for run in runs:
        labels = _get(run, "metadata", "labels") or {}
        run_hash = labels.get(LABEL_POD_TEMPLATE_HASH)
        run_revision = _get(run, "metadata", "annotations", ANNOTATION_REVISION)
        if current_hash and run_hash and run_hash != current_hash:
            continue
        if revision and run_revision and str(run_revision) != revision:
            continue
        chosen.append(run)
    return sorted(chosen, key=lambda r: (_parse_time(_get(r, "metadata", "creationTimestamp"))
                                         or datetime.min.replace(tzinfo=UTC), _name(r)))


def _name(obj: Mapping[str, Any]) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _about(event: Mapping[str, Any], obj: Mapping[str, Any], kind: str) -> bool:
    involved = event.get("involvedObject") or {}
    if involved.get("kind") != kind or involved.get("name") != _name(obj):
        return False
    uid, involved_uid = _get(obj, "metadata", "uid"), involved.get("uid")
    return not (uid and involved_uid and uid != involved_uid)


def _event_order(pair: tuple[datetime, Mapping[str, Any]]) -> tuple[datetime, int, int]:
    """Time first; within one second (Event times have no finer grain) a revision's opening
    Events come before its steps, then the API server's order (resourceVersion)."""
    at, event = pair
    opening = 0 if event.get("reason") in (REASON_UPDATED, REASON_RS_CREATED) else 1
    version = str(_get(event, "metadata", "resourceVersion") or "")
    return at, opening, int(version) if version.isdigit() else 0


def _sorted_events(events: Sequence[Mapping[str, Any]]) -> list[tuple[datetime, Mapping[str, Any]]]:
    timed = [(t, e) for e in events if (t := _event_time(e)) is not None]
    return sorted(timed, key=_event_order)


def _same_revision(event: Mapping[str, Any], revision: str | None) -> bool:
    """Whether an opening Event is about ``revision`` (one naming no revision counts as it)."""
    match = _REVISION_IN_MESSAGE.search(str(event.get("message") or ""))
    return revision is None or match is None or match.group(1) == revision


def _revision_events(rollout: Mapping[str, Any], events: Sequence[Mapping[str, Any]],
                     revision: str | None) -> list[tuple[datetime, Mapping[str, Any]]]:
    """The Rollout's Events since the last time this revision was rolled out."""
    mine = _sorted_events([e for e in events if _about(e, rollout, KIND_ROLLOUT)])
    opening = (REASON_UPDATED, REASON_RS_CREATED)
    start = 0
    # The last opening of this revision wins: a later RolloutUpdated (an undo) starts a new log.
    for i, (_, event) in enumerate(mine):
        if event.get("reason") not in opening:
            continue
        match = _REVISION_IN_MESSAGE.search(str(event.get("message") or ""))
        if revision is None or match is None or match.group(1) == revision:
            start = i
    # The first of a pair (RolloutUpdated, NewReplicaSetCreated) opens the revision; only a pair
    # of this revision (an initial deploy and its first update can share one second).
    while start > 0 and mine[start - 1][1].get("reason") in opening and _same_revision(
            mine[start - 1][1], revision):
        start -= 1
    # It ends where another revision opens (an update that was then aborted and rolled back to
    # this one); after that only a rollback to this revision's ReplicaSet (SkipSteps) is about it.
    end = len(mine)
    for i in range(start + 1, len(mine)):
        event = mine[i][1]
        match = _REVISION_IN_MESSAGE.search(str(event.get("message") or ""))
        if (event.get("reason") in opening and revision is not None and match is not None
                and match.group(1) != revision):
            end = i
            break
    later = [pair for pair in mine[end:] if pair[1].get("reason") == REASON_SKIP_STEPS]
    return mine[start:end] + later


def _timeline(revision_events: Sequence[tuple[datetime, Mapping[str, Any]]], count: int) -> _Timeline:
    line = _Timeline(have_events=bool(revision_events))
    if revision_events and revision_events[0][1].get("reason") in (REASON_UPDATED, REASON_RS_CREATED):
        line.started[0] = revision_events[0][0]
    position = 0  # the step being executed, per the Events so far
    for at, event in revision_events:
        reason = event.get("reason")
        message = str(event.get("message") or "")
        if reason == REASON_STEP_COMPLETED:
            match = _STEP_COMPLETED.search(message)
            if match is None:
                continue
            done = int(match.group(1)) - 1
            if done < position:  # a retry after an abort starts the steps again
                for index in [i for i in line.ended if i >= done]:
                    line.ended.pop(index, None)
                line.aborted_step = line.aborted_at = line.abort_message = None
            line.ended[done] = at
            line.event_text[done] = message
            line.started.setdefault(done, at)
            position = done + 1
            if position < count:
                line.started[position] = at
        elif reason == REASON_PAUSED:
            line.paused[position] = at
            line.started.setdefault(position, at)
        elif reason == REASON_ABORTED:
            line.aborted_step, line.aborted_at, line.abort_message = position, at, message
        elif reason == REASON_SKIP_STEPS:
            line.skipped = True
        elif reason == REASON_COMPLETED:
            line.completed_at = at
    return line


# --- measurements --------------------------------------------------------------------------


def _arg_values(run: Mapping[str, Any]) -> dict[str, str]:
    """Arg values to show in a query: secretKeyRef args are masked, unresolved ones left out."""
    values: dict[str, str] = {}
    for arg in _get(run, "spec", "args") or ():
        if not isinstance(arg, Mapping) or not arg.get("name"):
            continue
        if _get(arg, "valueFrom", "secretKeyRef") is not None:
            values[str(arg["name"])] = REDACTED
        elif arg.get("value") is not None:
            values[str(arg["name"])] = str(arg["value"])
    return values


def _secret_values(run: Mapping[str, Any]) -> list[str]:
    """Secret arg names only: the value never reaches the run spec, so nothing else is known."""
    return [str(a["name"]) for a in _get(run, "spec", "args") or ()
            if isinstance(a, Mapping) and _get(a, "valueFrom", "secretKeyRef") is not None]


def _fill(text: str, values: Mapping[str, str], secret_args: Sequence[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in secret_args:
            return REDACTED
        return values.get(name, match.group(0))

    return _ARG_PLACEHOLDER.sub(replace, text)


def _provider_query(metric: Mapping[str, Any]) -> str:
    """The provider's query (or URL, or its spec as JSON) with args filled and secrets masked."""
    provider = metric.get("provider") or {}
    if not isinstance(provider, Mapping) or not provider:
        return QUERY_NONE
    kind, spec = next(iter(provider.items()))
    if isinstance(spec, Mapping):
        if isinstance(spec.get("query"), str):
            return f"{kind}: {spec['query']}"
        if isinstance(spec.get("url"), str):
            path = f" {spec['jsonPath']}" if isinstance(spec.get("jsonPath"), str) else ""
            return f"{kind}: {spec['url']}{path}"
        # Headers of web providers and the like may hold secrets: only their names are shown.
        safe = {k: v for k, v in spec.items() if k not in ("headers", "body")}
        return f"{kind}: {json.dumps(safe, sort_keys=True, separators=(',', ':'), default=str)}"
    return str(kind)


def _condition(metric: Mapping[str, Any]) -> str:
    parts = []
    if metric.get("successCondition"):
        parts.append(f"successCondition: {metric['successCondition']}")
    if metric.get("failureCondition"):
        parts.append(f"failureCondition: {metric['failureCondition']}")
    return "; ".join(parts) if parts else CONDITION_NONE


def _metrics(run: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(m.get("name")): m for m in _get(run, "spec", "metrics") or () if isinstance(m, Mapping)}


def _verdict(phase: str, metric: Mapping[str, Any], message: str | None) -> str:
    if phase == PHASE_FAILED and metric.get("failureCondition"):
        return f"{phase}: {WHY_MET_FAILURE.format(condition=metric['failureCondition'])}"
    if phase == PHASE_FAILED and metric.get("successCondition"):
        return f"{phase}: {WHY_MISSED_SUCCESS.format(condition=metric['successCondition'])}"
    if phase == PHASE_ERROR and message:
        return f"{phase}: {message}"
    return phase


def _measurements(runs: Sequence[Mapping[str, Any]]) -> list[MeasurementEntry]:
    entries: list[MeasurementEntry] = []
    for run in runs:
        metrics = _metrics(run)
        values, secret_args = _arg_values(run), _secret_values(run)
        for result in _get(run, "status", "metricResults") or ():
            name = str(result.get("name"))
            metric = metrics.get(name, {})
            query = _fill(_provider_query(metric), values, secret_args) if metric else QUERY_NONE
            for measurement in result.get("measurements") or ():
                phase = str(measurement.get("phase") or "")
                entries.append(MeasurementEntry(
                    analysis_run=_name(run), metric=name, query=query,
                    value=None if measurement.get("value") is None else str(measurement["value"]),
                    condition=_condition(metric),
                    verdict=_verdict(phase, metric, measurement.get("message")),
                    at=_fmt(_parse_time(measurement.get("finishedAt") or measurement.get("startedAt"))),
                ))
    return entries


def _run_why(run: Mapping[str, Any]) -> str:
    """One clause for a run's outcome: the failing metric, its last value and the condition."""
    phase = str(_get(run, "status", "phase") or "Pending")
    metrics = _metrics(run)
    worst = None
    for result in _get(run, "status", "metricResults") or ():
        if result.get("phase") in (PHASE_FAILED, PHASE_ERROR, PHASE_INCONCLUSIVE):
            worst = result
            if result.get("phase") == phase:
                break
    if worst is None:
        return WHY_RUN_VERDICT.format(run=_name(run), phase=phase.lower())
    metric = metrics.get(str(worst.get("name")), {})
    measurements = worst.get("measurements") or [{}]
    last = measurements[-1]
    worst_phase = str(worst.get("phase"))
    if worst_phase == PHASE_FAILED and metric.get("failureCondition"):
        relation = WHY_MET_FAILURE.format(condition=metric["failureCondition"])
    elif worst_phase == PHASE_FAILED and metric.get("successCondition"):
        relation = WHY_MISSED_SUCCESS.format(condition=metric["successCondition"])
    elif worst_phase == PHASE_ERROR:
        relation = WHY_ERROR.format(message=last.get("message") or worst.get("message") or "")
    else:
        relation = WHY_INCONCLUSIVE.format(conditions=_condition(metric))
    return WHY_RUN_METRIC.format(run=_name(run), phase=phase.lower(), metric=worst.get("name"),
                                 value=last.get("value"), relation=relation)


def _step_runs(runs: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """The latest step-analysis run per step index."""
    found: dict[int, Mapping[str, Any]] = {}
    for run in runs:
        labels = _get(run, "metadata", "labels") or {}
        index = labels.get(LABEL_STEP_INDEX)
        if labels.get(LABEL_ROLLOUT_TYPE, ROLLOUT_TYPE_STEP) == ROLLOUT_TYPE_STEP and str(index).isdigit():
            found[int(str(index))] = run
    return found


# --- the log -------------------------------------------------------------------------------


def _pause_condition(status: Mapping[str, Any], reason: str) -> Mapping[str, Any] | None:
    return next((p for p in status.get("pauseConditions") or () if p.get("reason") == reason), None)


def _done_why(step: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], index: int, line: _Timeline,
              run: Mapping[str, Any] | None) -> str:
    if index not in line.ended:
        return WHY_DONE_NO_EVENT
    if step.get("setWeight") is not None:
        return WHY_WEIGHT_DONE.format(weight=_weight_at(steps, index))
    if "pause" in step:
        try:
            duration = pause_duration(step)
        except ValueError:
            duration = None
        if duration is None:
            return WHY_PAUSE_INDEFINITE_DONE
        began = line.paused.get(index) or line.started.get(index)
        if began is not None and line.ended[index] - began < duration - timedelta(seconds=1):
            return WHY_PAUSE_PROMOTED
        return WHY_PAUSE_ELAPSED.format(duration=_duration_text(_get(step, "pause", "duration")))
    if step.get("analysis") is not None and run is not None:
        return WHY_ANALYSIS_DONE.format(run=_name(run))
    return WHY_STEP_COMPLETED.format(event=line.event_text.get(index, ""))


def _current_why(step: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], index: int,
                 status: Mapping[str, Any], run: Mapping[str, Any] | None) -> tuple[str, str]:
    pause = _pause_condition(status, PAUSE_REASON_STEP)
    inconclusive = _pause_condition(status, PAUSE_REASON_INCONCLUSIVE)
    if inconclusive is not None and run is not None:
        return STATE_PAUSED, _run_why(run)
    if pause is not None and "pause" in step:
        since = _parse_time(pause.get("startTime"))
        try:
            duration = pause_duration(step)
        except ValueError:
            duration = None
        if duration is None:
            return STATE_PAUSED, WHY_PAUSED_INDEFINITE.format(since=_fmt(since))
        if since is None:
            return STATE_PAUSED, WHY_PAUSED_SINCE.format(since=None)
        return STATE_PAUSED, WHY_PAUSED_UNTIL.format(since=_fmt(since), until=_fmt(since + duration))
    if step.get("analysis") is not None:
        if run is None:
            return STATE_CURRENT, WHY_ANALYSIS_NO_RUN
        return STATE_CURRENT, WHY_ANALYSIS_RUNNING.format(
            run=_name(run), phase=_get(run, "status", "phase") or "Pending")
    if step.get("setWeight") is not None:
        return STATE_CURRENT, WHY_WAITING_WEIGHT.format(weight=_weight_at(steps, index))
    return STATE_CURRENT, WHY_CURRENT


def _failed_run(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    failed = [r for r in runs if _get(r, "status", "phase") in (PHASE_FAILED, PHASE_ERROR)]
    return failed[-1] if failed else None


def _abort_why(status: Mapping[str, Any], line: _Timeline, failed: Mapping[str, Any] | None) -> str:
    if failed is not None:
        return _run_why(failed)
    for condition in status.get("conditions") or ():
        if condition.get("type") == CONDITION_PROGRESSING and condition.get("reason") == CONDITION_REASON_ABORTED:
            if condition.get("message"):
                return str(condition["message"])
    return line.abort_message or WHY_ABORT_UNKNOWN


def _aborted_step(line: _Timeline, failed: Mapping[str, Any] | None) -> int | None:
    if failed is not None:
        index = _get(failed, "metadata", "labels", LABEL_STEP_INDEX)
        if index is not None and str(index).isdigit():
            return int(str(index))
    return line.aborted_step


def _fully_promoted(status: Mapping[str, Any], count: int) -> bool:
    stable, current = status.get("stableRS"), status.get("currentPodHash")
    index = status.get("currentStepIndex")
    return bool(stable) and stable == current and (count == 0 or index is None or int(index) >= count)


def build(
    rollout: Mapping[str, Any],
    *,
    analysis_runs: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    replicasets: Sequence[Mapping[str, Any]] = (),
) -> Explanation:
    """The decision log of ``rollout``'s current revision (see the module docstring)."""
    status: Mapping[str, Any] = rollout.get("status") or {}
    steps = [s for s in _get(rollout, "spec", "strategy", "canary", "steps") or () if isinstance(s, Mapping)]
    count = len(steps)
    revision = _revision(rollout, replicasets)
    runs = _runs_of_revision(rollout, analysis_runs, revision)
    line = _timeline(_revision_events(rollout, events, revision), count)
    step_runs = _step_runs(runs)
    failed = _failed_run(runs)
    promoted = _fully_promoted(status, count)
    aborted = bool(status.get("abort"))
    raw_index = status.get("currentStepIndex")
    index = min(int(raw_index), count) if raw_index is not None else (count if promoted else 0)
    abort_index = _aborted_step(line, failed) if aborted else None
    # An abort resets currentStepIndex to 0: where it happened is known only from the failed
    # step run's label or the Events. Without either, no step is marked (count: none of them).
    position = (abort_index if abort_index is not None else count) if aborted else index

    entries: list[StepEntry] = []
    for i, step in enumerate(steps):
        run = step_runs.get(i)
        started, ended = line.started.get(i), line.ended.get(i)
        if aborted and i == position:
            state, why = STATE_ABORTED, WHY_ABORTED_HERE.format(why=_abort_why(status, line, failed))
            ended = line.aborted_at
        elif promoted and line.skipped and i not in line.ended:
            state, why = STATE_SKIPPED, WHY_SKIPPED
        elif aborted and abort_index is None:
            state, why = (STATE_DONE, _done_why(step, steps, i, line, run)) if i in line.ended \
                else (STATE_PENDING, WHY_PENDING)
        elif i < position or (promoted and i in line.ended):
            state, why = STATE_DONE, _done_why(step, steps, i, line, run)
        elif promoted:
            state, why = STATE_SKIPPED, WHY_PROMOTED_FULL
        elif i == position and not aborted:
            state, why = _current_why(step, steps, i, status, run)
            ended = None
        else:
            state, why, started, ended = STATE_PENDING, WHY_PENDING, None, None
        if state == STATE_PAUSED and started is None:
            # The pause's own start is recorded in status (pauseConditions[].startTime).
            pause = _pause_condition(status, PAUSE_REASON_STEP) or {}
            started = _parse_time(pause.get("startTime"))
        if state in (STATE_CURRENT, STATE_PAUSED, STATE_ABORTED) and not line.have_events:
            why += WHY_NO_EVENTS
        entries.append(StepEntry(index=i, step=describe_step(step), state=state,
                                 started_at=_fmt(started), ended_at=_fmt(ended), why=why))

    summary = _summary(status, steps, index, position, promoted, aborted, line, failed, step_runs)
    return Explanation(summary=summary, revision=revision, steps=tuple(entries),
                       measurements=tuple(_measurements(runs)))


def _summary(status: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], index: int, position: int,
             promoted: bool, aborted: bool, line: _Timeline, failed: Mapping[str, Any] | None,
             step_runs: Mapping[int, Mapping[str, Any]]) -> str:
    count = len(steps)
    if not status:
        return SUMMARY_UNKNOWN
    if aborted:
        why = _abort_why(status, line, failed)
        if count and position < count:
            return SUMMARY_ABORTED_AT.format(number=position + 1, count=count, why=why)
        return SUMMARY_ABORTED.format(why=why)
    if promoted:
        if count == 0:
            return SUMMARY_NO_STEPS_HEALTHY
        return SUMMARY_PROMOTED_SKIPPED if line.skipped else SUMMARY_PROMOTED.format(count=count)
    number = min(index + 1, count)
    step = steps[index] if index < count else None
    described = describe_step(step) if step is not None else "done"
    if status.get("phase") == PHASE_DEGRADED:
        return SUMMARY_DEGRADED.format(number=number, count=count, why=status.get("message") or "")
    inconclusive = _pause_condition(status, PAUSE_REASON_INCONCLUSIVE)
    if inconclusive is not None and index in step_runs:
        return SUMMARY_PAUSED_INCONCLUSIVE.format(number=number, count=count, why=_run_why(step_runs[index]))
    pause = _pause_condition(status, PAUSE_REASON_STEP)
    if pause is not None and step is not None:
        try:
            duration = pause_duration(step)
        except ValueError:
            duration = None
        since = _parse_time(pause.get("startTime"))
        if duration is None:
            return SUMMARY_PAUSED_INDEFINITE.format(number=number, count=count, step=described)
        until = format_time(since + duration) if since is not None else "its duration elapses"
        return SUMMARY_PAUSED_UNTIL.format(number=number, count=count, step=described, until=until)
    if status.get("phase") == "Paused":
        if status.get("pauseConditions"):
            return SUMMARY_PAUSED.format(number=number, count=count, why=status.get("message") or "")
        return SUMMARY_PAUSED_MANUAL.format(number=number, count=count)
    why = str(status.get("message") or status.get("phase") or "")
    if count == 0:
        return SUMMARY_PROGRESSING_NO_STEPS.format(why=why)
    return SUMMARY_PROGRESSING.format(number=number, count=count, step=described, why=why)


def to_dict(explanation: Explanation) -> dict[str, Any]:
    """The JSON shape the CLI's ``-o json|yaml`` and the dashboard share (camelCase keys)."""
    return {
        "summary": explanation.summary,
        "revision": explanation.revision,
        "steps": [
            {"index": s.index, "step": s.step, "state": s.state, "startedAt": s.started_at,
             "endedAt": s.ended_at, "why": s.why}
            for s in explanation.steps
        ],
        "measurements": [
            {"analysisRun": m.analysis_run, "metric": m.metric, "query": m.query, "value": m.value,
             "condition": m.condition, "verdict": m.verdict, "at": m.at}
            for m in explanation.measurements
        ],
    }
