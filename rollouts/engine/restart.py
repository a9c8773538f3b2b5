"""Restart (``spec.restartAt``): which pods to evict now, and when the restart is done. Pure.

Called by ``reconcile.progress_plan`` (the evictions go into the Plan, and
``status.restartedAt`` once no pod is older than ``restartAt``), by
``assemble.build_status`` (phase "rollout is restarting") and by the kube layer
(rollouts/handlers.py asks ``due`` whether the pods must be listed for this
reconcile: the controller lists them only then, as Argo's restarter does).

Argo's rule (``rollout/restart.go``, semantics reference §1.6): pods of the
Rollout's ReplicaSets created before ``restartAt`` are evicted (the Eviction
API honours PodDisruptionBudgets; rollouts/kube/apply.py), at most
``max(maxUnavailable, 1)`` at a time and only while
``available - (max(spec.replicas, pods) - concurrent) > 0``, so a restart never
takes the rollout below its availability budget; a pod already terminating
counts against the budget, which makes the default (maxUnavailable 25 % of a
few replicas) one pod at a time, each replaced and available before the next.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rollouts.engine.observe import View, parse_time
from rollouts.engine.replicas import resolve_fenceposts

RESTART_POLL_SECONDS = 5.0
"""Re-check this often while a restart is in flight: a replaced pod becoming ready
also changes its ReplicaSet's status, which wakes the Rollout sooner."""


@dataclass(frozen=True)
class PodInfo:
    """One pod of one of the Rollout's ReplicaSets, as the restart needs it."""

    name: str
    created: datetime | None
    ready: bool
    terminating: bool


@dataclass(frozen=True)
class RestartDecision:
    """What one reconcile does about ``spec.restartAt``."""

    evict: tuple[str, ...] = ()
    """Pod names to evict now (oldest first)."""
    restarted_at: str | None = None
    """The value for ``status.restartedAt`` when the restart finished in this reconcile."""
    restarting: bool = False
    """A due restart is not finished (phase Progressing, "rollout is restarting")."""
    requeue_after: float | None = None
    """Seconds until the restart is due, or until it should be checked again."""


def _spec_restart_at(rollout: Mapping[str, Any]) -> str | None:
    raw = (rollout.get("spec") or {}).get("restartAt")
    return raw if isinstance(raw, str) and raw else None


def _honoured(restart_at: str, restarted_at: object) -> bool:
    if restarted_at == restart_at:
        return True
    done, wanted = parse_time(restarted_at), parse_time(restart_at)
    return done is not None and wanted is not None and done >= wanted


def due(rollout: Mapping[str, Any], now: datetime) -> bool:
    """``restartAt`` is set, in the past and not yet recorded in ``status.restartedAt``."""
    raw = _spec_restart_at(rollout)
    at = parse_time(raw)
    if raw is None or at is None or at > now:
        return False
    return not _honoured(raw, (rollout.get("status") or {}).get("restartedAt"))


def pod_info(doc: Mapping[str, Any]) -> PodInfo:
    meta = doc.get("metadata") or {}
    conditions = (doc.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions if isinstance(c, Mapping))
    return PodInfo(
        name=str(meta.get("name", "")),
        created=parse_time(meta.get("creationTimestamp")),
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
    )


def owned_pods(pods: Iterable[Mapping[str, Any]], replica_set_names: Iterable[str]) -> list[PodInfo]:
    """The pods whose controller ownerReference is one of these ReplicaSets."""
    names = set(replica_set_names)
    owned = []
    for doc in pods:
        refs = (doc.get("metadata") or {}).get("ownerReferences") or []
        if any(isinstance(r, Mapping) and r.get("kind") == "ReplicaSet" and r.get("controller") is True
               and r.get("name") in names for r in refs):
            owned.append(pod_info(doc))
    return owned


def decide(
    *,
    restart_at: str | None,
    restarted_at: object,
    now: datetime,
    pods: Sequence[PodInfo] | None,
    spec_replicas: int,
    max_unavailable: int,
) -> RestartDecision:
    """The restart decision for one reconcile; ``pods`` None means they were not listed."""
    at = parse_time(restart_at)
    if restart_at is None or at is None or _honoured(restart_at, restarted_at):
        return RestartDecision()
    if at > now:
        return RestartDecision(requeue_after=(at - now).total_seconds())
    if pods is None:
        return RestartDecision(restarting=True, requeue_after=RESTART_POLL_SECONDS)
    old = [p for p in pods if p.created is None or p.created < at]
    if not old:
        return RestartDecision(restarted_at=restart_at)
    concurrent = max(max_unavailable, 1)
    available = sum(1 for p in pods if p.ready and not p.terminating)
    in_flight = sum(1 for p in pods if p.terminating)
    budget = min(concurrent, available - (max(spec_replicas, len(pods)) - concurrent)) - in_flight
    candidates = sorted((p for p in old if not p.terminating), key=lambda p: (p.created or at, p.name))
    evict = tuple(p.name for p in candidates[: max(budget, 0)])
    return RestartDecision(evict=evict, restarting=True, requeue_after=RESTART_POLL_SECONDS)


def plan_restart(view: View) -> RestartDecision:
    """``decide`` for this reconcile's view: the pods of every owned ReplicaSet count."""
    pods = view.ctx.pods
    owned = None if pods is None else owned_pods(pods, (rs.name for rs in view.all_rs))
    _, unavailable = resolve_fenceposts(view.canary.max_surge, view.canary.max_unavailable, view.spec_replicas)
    return decide(
        restart_at=_spec_restart_at(view.ctx.rollout),
        restarted_at=view.status.get("restartedAt"),
        now=view.ctx.now,
        pods=owned,
        spec_replicas=view.spec_replicas,
        max_unavailable=unavailable,
    )
