"""Prometheus metrics of the rollout controller, named as Argo names them.

Updated by handlers.py after each reconcile and by kube/apply.py for events (API
writes are counted by common.kubewrite.API_WRITES, shared by every controller);
served by the CLI's metrics endpoint (``--metrics-port``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROLLOUT_INFO = Gauge(
    "rollout_info", "Information about a rollout (value 1).",
    ["namespace", "name", "strategy", "traffic_router", "phase"],
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

_last_phase: dict[tuple[str, str], tuple[str, str, str]] = {}


def observe_reconcile(*, key: tuple[str, str], seconds: float, phase: str, traffic_router: str) -> None:
    """Record one reconcile's duration and the rollout's phase."""
    namespace, name = key
    ROLLOUT_RECONCILE.labels(namespace=namespace, name=name).observe(seconds)
    labels = ("canary", traffic_router, phase)
    previous = _last_phase.get(key)
    if previous != labels:
        if previous is not None:
            ROLLOUT_INFO.remove(namespace, name, *previous)
        ROLLOUT_INFO.labels(namespace, name, *labels).set(1)
        _last_phase[key] = labels
