"""Prometheus metrics of the rollout controller, named as Argo names them (plus our step reaction).

Updated by handlers.py after each reconcile (``observe_reconcile``, ``observe_step``)
and when a Rollout disappears (``forget_rollout``), and by kube/apply.py for
events; every API request is counted by common.kubewrite's request counter
(``controller_clientset_k8s_request_total``); served by the CLI's metrics
endpoint (``--metrics-port``).

Argo's: ``rollout_info{namespace,name,strategy,traffic_router,phase}``,
``rollout_info_replicas_available|unavailable|desired|updated{namespace,name}``,
``rollout_phase{namespace,name,strategy,phase}`` (deprecated in Argo, kept for
dashboards: 1 for the current phase, 0 for the others), ``rollout_reconcile``,
``rollout_reconcile_error``, ``rollout_events_total``. A Rollout's series go when it
is deleted.

Ours: ``tidegate_step_reaction_seconds{step_type}``, for the steps whose exit waits
on something outside the controller (``pause`` and ``analysis``), the seconds from
the moment the step's exit condition became true to the controller's status write
that moved ``status.currentStepIndex`` past it. The moment is, for a pause with a
duration, its pauseCondition's ``startTime`` plus the duration (the deadline, when it
passed); for any other pause (a promote, a resume) the first watch event of the
Rollout since our last write of it that is not our own write's echo; for an
analysis step the first watch event of one of its AnalysisRuns in a terminal phase
since our last write of the Rollout. Those are the moments the controller could
first know (the watch's own delay is inside the figure). ``step_type`` carries no
name, so the series stay few.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from common.api import parse_duration

ROLLOUT_INFO = Gauge(
    "rollout_info", "Information about a rollout (value 1).",
    ["namespace", "name", "strategy", "traffic_router", "phase"],
)
REPLICAS_AVAILABLE = Gauge(
    "rollout_info_replicas_available", "The number of available replicas per rollout.", ["namespace", "name"])
REPLICAS_UNAVAILABLE = Gauge(
    "rollout_info_replicas_unavailable", "The number of unavailable replicas per rollout.", ["namespace", "name"])
REPLICAS_DESIRED = Gauge(
    "rollout_info_replicas_desired", "The number of desired replicas per rollout.", ["namespace", "name"])
REPLICAS_UPDATED = Gauge(
    "rollout_info_replicas_updated", "The number of updated replicas per rollout.", ["namespace", "name"])
ROLLOUT_PHASE = Gauge(
    "rollout_phase", "Information on the state of the rollout (deprecated in Argo: use rollout_info).",
    ["namespace", "name", "strategy", "phase"],
)
ROLLOUT_RECONCILE = Histogram(
    "rollout_reconcile", "Rollout reconciliation duration (seconds).",
    ["namespace", "name"], buckets=(0.01, 0.15, 0.25, 0.5, 1.0),
)
RECONCILE_ERRORS = Counter(
    "rollout_reconcile_error", "Rollout reconciles that raised.", ["namespace", "name"],
)
ROLLOUT_EVENTS = Counter(
    "rollout_events_total", "Kubernetes events emitted for rollouts.", ["type", "reason"],
)
STEP_REACTION = Histogram(
    "tidegate_step_reaction_seconds",
    "Seconds from a pause or analysis step's exit condition becoming true (pause deadline passed; "
    "else the first watch event since our last write: a promote, a finished AnalysisRun) to the "
    "status write that moved currentStepIndex past the step.",
    ["step_type"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
PHASES = ("Progressing", "Paused", "Healthy", "Degraded")
STRATEGY = "canary"
PAUSE, ANALYSIS = "pause", "analysis"

_last_phase: dict[tuple[str, str], tuple[str, str, str]] = {}
_PER_ROLLOUT = (REPLICAS_AVAILABLE, REPLICAS_UNAVAILABLE, REPLICAS_DESIRED, REPLICAS_UPDATED,
                ROLLOUT_RECONCILE, RECONCILE_ERRORS)


def observe_reconcile(*, key: tuple[str, str], seconds: float, phase: str, traffic_router: str,
                      body: Mapping[str, Any] | None = None, status: Mapping[str, Any] | None = None) -> None:
    """Record one reconcile's duration, the rollout's phase and (with ``body``) its replica counts."""
    namespace, name = key
    ROLLOUT_RECONCILE.labels(namespace=namespace, name=name).observe(seconds)
    labels = (STRATEGY, traffic_router, phase)
    previous = _last_phase.get(key)
    if previous != labels:
        if previous is not None:
            ROLLOUT_INFO.remove(namespace, name, *previous)
        ROLLOUT_INFO.labels(namespace, name, *labels).set(1)
        _last_phase[key] = labels
        for each in PHASES:
            ROLLOUT_PHASE.labels(namespace, name, STRATEGY, each).set(1 if each == phase else 0)
    if body is not None:
        current = status if status is not None else (body.get("status") or {})
        spec = body.get("spec") or {}
        replicas = int(current.get("replicas") or 0)
        available = int(current.get("availableReplicas") or 0)
        desired = spec.get("replicas")
        REPLICAS_AVAILABLE.labels(namespace, name).set(available)
        REPLICAS_UNAVAILABLE.labels(namespace, name).set(max(replicas - available, 0))
        REPLICAS_DESIRED.labels(namespace, name).set(1 if desired is None else int(desired))
        REPLICAS_UPDATED.labels(namespace, name).set(int(current.get("updatedReplicas") or 0))


def forget_rollout(key: tuple[str, str]) -> None:
    """Remove every series of a Rollout that no longer exists."""
    namespace, name = key
    previous = _last_phase.pop(key, None)
    if previous is not None:
        ROLLOUT_INFO.remove(namespace, name, *previous)
        for each in PHASES:
            ROLLOUT_PHASE.remove(namespace, name, STRATEGY, each)
    for collector in _PER_ROLLOUT:
        try:
            collector.remove(namespace, name)
        except KeyError:
            pass  # never observed for this Rollout


def _stamp(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def step_reaction(*, body: Mapping[str, Any], status: Mapping[str, Any], promoted_at: float | None,
                  analysis_done_at: float | None, written_at: float) -> tuple[str, float] | None:
    """(step_type, seconds) when ``status`` moved past a pause or analysis step of ``body``.

    ``body`` is the Rollout the reconcile read, ``status`` the one it wrote at
    ``written_at`` (epoch seconds); ``promoted_at`` the first Rollout event since our
    last write that was not its echo, ``analysis_done_at`` the first event of a
    finished AnalysisRun since then (None: none seen).
    """
    before = (body.get("status") or {}).get("currentStepIndex")
    after = status.get("currentStepIndex")
    if not isinstance(before, int) or not isinstance(after, int) or after <= before:
        return None
    if (body.get("status") or {}).get("currentPodHash") != status.get("currentPodHash"):
        return None  # a new revision restarted the steps: nothing was reacted to
    steps = ((body.get("spec") or {}).get("strategy") or {}).get("canary", {}).get("steps") or []
    if before >= len(steps):
        return None
    step = steps[before] or {}
    if "pause" in step:
        kind, since = PAUSE, promoted_at
        duration = (step.get("pause") or {}).get("duration")
        started = next((_stamp(c.get("startTime")) for c in (body.get("status") or {}).get("pauseConditions") or []
                        if c.get("reason") == "CanaryPauseStep"), None)
        if duration is not None and started is not None:
            try:
                seconds = (float(duration) if isinstance(duration, int | float)
                           else parse_duration(str(duration)).total_seconds())
            except ValueError:
                seconds = None
            if seconds is not None and started + seconds <= written_at:
                since = started + seconds
    elif "analysis" in step:
        kind, since = ANALYSIS, analysis_done_at
    else:
        return None
    if since is None:
        return None
    return kind, max(0.0, written_at - since)


def observe_step(*, body: Mapping[str, Any], status: Mapping[str, Any], promoted_at: float | None,
                 analysis_done_at: float | None, written_at: float) -> float | None:
    """Record ``tidegate_step_reaction_seconds`` if this write moved past a waiting step."""
    found = step_reaction(body=body, status=status, promoted_at=promoted_at,
                          analysis_done_at=analysis_done_at, written_at=written_at)
    if found is None:
        return None
    STEP_REACTION.labels(step_type=found[0]).observe(found[1])
    return found[1]
