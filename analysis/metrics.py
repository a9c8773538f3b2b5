"""Prometheus metrics of the AnalysisRun controller, named as Argo names them.

Updated by analysis/controller.py after each reconcile (run and metric phases)
and by analysis/handlers.py (reconcile duration and errors); served by the CLI's
metrics endpoint. Label sets of a run are replaced when its phases change and
removed when the run disappears, so a long-lived controller does not grow a
time series per phase a run ever had.

``analysis_run_phase{namespace,name,phase}`` is Argo's deprecated per-phase gauge,
kept for existing dashboards: 1 for the run's phase, 0 for the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

ANALYSIS_RUN_INFO = Gauge(
    "analysis_run_info", "Information about an AnalysisRun (value 1).",
    ["namespace", "name", "phase"],
)
ANALYSIS_RUN_PHASE = Gauge(
    "analysis_run_phase", "Information on the state of the AnalysisRun (deprecated in Argo: "
    "use analysis_run_info).", ["namespace", "name", "phase"],
)
RUN_PHASES = ("Pending", "Running", "Successful", "Failed", "Error", "Inconclusive")
ANALYSIS_RUN_METRIC_PHASE = Gauge(
    "analysis_run_metric_phase", "Phase of a metric of an AnalysisRun (value 1).",
    ["namespace", "name", "metric", "type", "dry_run", "phase"],
)
ANALYSIS_RUN_METRIC_TYPE = Gauge(
    "analysis_run_metric_type", "Provider type of a metric of an AnalysisRun (value 1).",
    ["namespace", "name", "metric", "type"],
)
ANALYSIS_RUN_RECONCILE = Histogram(
    "analysis_run_reconcile", "AnalysisRun reconciliation duration (seconds).",
    ["namespace", "name"], buckets=(0.01, 0.15, 0.25, 0.5, 1.0),
)
ANALYSIS_RUN_RECONCILE_ERROR = Counter(
    "analysis_run_reconcile_error", "AnalysisRun reconciles that raised.", ["namespace", "name"],
)


@dataclass(frozen=True)
class MetricInfo:
    """One metric of a run as the metrics show it."""

    metric: str
    type: str
    dry_run: bool
    phase: str


_Key = tuple[str, str]
_info: dict[_Key, tuple[str, ...]] = {}
_metric_phase: dict[_Key, set[tuple[str, ...]]] = {}
_metric_type: dict[_Key, set[tuple[str, ...]]] = {}


def _replace(gauge: Gauge, store: dict[_Key, set[tuple[str, ...]]], key: _Key,
             wanted: set[tuple[str, ...]]) -> None:
    previous = store.get(key, set())
    for labels in previous - wanted:
        gauge.remove(*key, *labels)
    for labels in wanted - previous:
        gauge.labels(*key, *labels).set(1)
    store[key] = wanted


def observe_run(*, namespace: str, name: str, phase: str, metrics: Iterable[MetricInfo]) -> None:
    """Publish a run's phase and its metrics' types and phases, dropping stale label sets."""
    key = (namespace, name)
    previous = _info.get(key)
    if previous != (phase,):
        if previous is not None:
            ANALYSIS_RUN_INFO.remove(*key, *previous)
        ANALYSIS_RUN_INFO.labels(*key, phase).set(1)
        _info[key] = (phase,)
        for each in RUN_PHASES:
            ANALYSIS_RUN_PHASE.labels(*key, each).set(1 if each == phase else 0)
    infos = list(metrics)
    _replace(ANALYSIS_RUN_METRIC_PHASE, _metric_phase, key,
             {(m.metric, m.type, "true" if m.dry_run else "false", m.phase) for m in infos})
    _replace(ANALYSIS_RUN_METRIC_TYPE, _metric_type, key, {(m.metric, m.type) for m in infos})


def observe_reconcile(*, namespace: str, name: str, seconds: float) -> None:
    ANALYSIS_RUN_RECONCILE.labels(namespace=namespace, name=name).observe(seconds)


def observe_error(*, namespace: str, name: str) -> None:
    ANALYSIS_RUN_RECONCILE_ERROR.labels(namespace=namespace, name=name).inc()


def forget_run(*, namespace: str, name: str) -> None:
    """Remove every series of a run that no longer exists."""
    key = (namespace, name)
    previous = _info.pop(key, None)
    if previous is not None:
        ANALYSIS_RUN_INFO.remove(*key, *previous)
        for each in RUN_PHASES:
            ANALYSIS_RUN_PHASE.remove(*key, each)
    _replace(ANALYSIS_RUN_METRIC_PHASE, _metric_phase, key, set())
    _replace(ANALYSIS_RUN_METRIC_TYPE, _metric_type, key, set())
    _metric_phase.pop(key, None)
    _metric_type.pop(key, None)
    for collector in (ANALYSIS_RUN_RECONCILE, ANALYSIS_RUN_RECONCILE_ERROR):
        try:
            collector.remove(*key)
        except KeyError:
            pass  # never observed for this run
