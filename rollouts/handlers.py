"""kopf wiring for the rollout controller: indices, event handlers, the work queue.

The only module in ``rollouts`` that imports kopf. It keeps kopf thin:

* ``@kopf.index`` handlers keep in-memory views of Rollouts and everything a
  Rollout observes (owned ReplicaSets and AnalysisRuns; referenced Services,
  VirtualServices, DestinationRules, AnalysisTemplates), so a reconcile needs no
  LIST call;
* ``@kopf.on.event`` handlers only put the affected Rollout keys on the work queue,
  so a change anywhere re-reconciles that Rollout at once;
* a fixed pool of workers (common.workqueue) runs observe -> engine.plan
  -> apply for one key at a time and requeues it when the plan says something is
  due (a pause ending, a scale-down deadline).

Why a queue and not one kopf daemon per Rollout: see common/workqueue.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import kopf

from common.kubeclient import new_api_client
from common.workqueue import (
    WorkQueue,
    run_workers,
)
from rollouts import metrics
from rollouts.config import CONFIG
from rollouts.engine.reconcile import plan as make_plan
from rollouts.kube import apply, observe

log = logging.getLogger("tidegate.rollouts")

Key = tuple[str, str]  # (namespace, name) of a Rollout
RefKey = tuple[str, str, str]  # (kind, namespace, name) of an object a Rollout references
ROLLOUT_KIND = "Rollout"
RETRY_AFTER_ERROR_SECONDS = 5.0
FOLLOW_UP_PASSES = 1
EVENT_THREADS = 4


class _State:
    """What the workers share: the queue, the API client, indices and reverse references."""

    def __init__(self) -> None:
        self.queue: WorkQueue[Key] = WorkQueue()
        self.api: Any = None
        self.indices: dict[str, Any] = {}
        self.references: dict[RefKey, set[Key]] = defaultdict(set)
        self.referenced_by: dict[Key, set[RefKey]] = {}
        self.tracker = apply.VersionTracker()
        self.workers: asyncio.Task[None] | None = None
        # Our own pools: asyncio.to_thread would share the loop's default executor
        # (min(32, cpus + 4) threads: 6 on 2 cores), silently capping --workers.
        self.pool: ThreadPoolExecutor | None = None
        self.event_pool: ThreadPoolExecutor | None = None


STATE = _State()


def _in_shard(labels: Any, **_: Any) -> bool:
    return CONFIG.in_shard(dict(labels or {}))


def _owner_rollouts(meta: Any) -> list[str]:
    return [
        ref["name"] for ref in (meta.get("ownerReferences") or [])
        if ref.get("kind") == ROLLOUT_KIND and ref.get("apiVersion", "").startswith("argoproj.io/")
    ]


# --- indices ----------------------------------------------------------------------------

@kopf.index("argoproj.io", "v1alpha1", "rollouts", id="rollouts", when=_in_shard)
def rollouts_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.index("apps", "v1", "replicasets", id="replicasets",
            labels={"rollouts-pod-template-hash": kopf.PRESENT})
def replicasets_index(namespace: str, meta: kopf.Meta, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, owner): dict(body) for owner in _owner_rollouts(meta)}


@kopf.index("argoproj.io", "v1alpha1", "analysisruns", id="analysisruns")
def analysisruns_index(namespace: str, meta: kopf.Meta, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, owner): dict(body) for owner in _owner_rollouts(meta)}


@kopf.index("", "v1", "services", id="services")
def services_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.index("networking.istio.io", "virtualservices", id="virtualservices")
def virtualservices_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.index("networking.istio.io", "destinationrules", id="destinationrules")
def destinationrules_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.index("argoproj.io", "v1alpha1", "analysistemplates", id="analysistemplates")
def analysistemplates_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.index("argoproj.io", "v1alpha1", "clusteranalysistemplates", id="clusteranalysistemplates")
def clusteranalysistemplates_index(name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {("", name): dict(body)}


# --- events: only enqueue -------------------------------------------------------------------

@kopf.on.event("argoproj.io", "v1alpha1", "rollouts", id="rollout-changed", when=_in_shard)
def rollout_changed(namespace: str, name: str, **_: Any) -> None:
    STATE.queue.add((namespace, name))


@kopf.on.event("apps", "v1", "replicasets", id="replicaset-changed",
               labels={"rollouts-pod-template-hash": kopf.PRESENT})
def replicaset_changed(namespace: str, meta: kopf.Meta, **_: Any) -> None:
    for owner in _owner_rollouts(meta):
        STATE.queue.add((namespace, owner))


@kopf.on.event("argoproj.io", "v1alpha1", "analysisruns", id="analysisrun-changed")
def analysisrun_changed(namespace: str, meta: kopf.Meta, **_: Any) -> None:
    for owner in _owner_rollouts(meta):
        STATE.queue.add((namespace, owner))


def _wake_referencing(kind: str, namespace: str, name: str) -> None:
    for key in STATE.references.get((kind, namespace, name), ()):
        STATE.queue.add(key)


@kopf.on.event("", "v1", "services", id="service-changed")
def service_changed(namespace: str, name: str, **_: Any) -> None:
    _wake_referencing("Service", namespace, name)


@kopf.on.event("networking.istio.io", "virtualservices", id="virtualservice-changed")
def virtualservice_changed(namespace: str, name: str, **_: Any) -> None:
    _wake_referencing("VirtualService", namespace, name)


@kopf.on.event("networking.istio.io", "destinationrules", id="destinationrule-changed")
def destinationrule_changed(namespace: str, name: str, **_: Any) -> None:
    _wake_referencing("DestinationRule", namespace, name)


@kopf.on.event("argoproj.io", "v1alpha1", "analysistemplates", id="analysistemplate-changed")
def analysistemplate_changed(namespace: str, name: str, **_: Any) -> None:
    _wake_referencing("AnalysisTemplate", namespace, name)


@kopf.on.event("argoproj.io", "v1alpha1", "clusteranalysistemplates", id="clusteranalysistemplate-changed")
def clusteranalysistemplate_changed(name: str, **_: Any) -> None:
    _wake_referencing("ClusterAnalysisTemplate", "", name)


# --- the reconcile loop ----------------------------------------------------------------------

def _remember_references(key: Key, refs: Iterable[RefKey]) -> None:
    """Keep the reverse map current so a referenced object's change wakes this Rollout."""
    new = set(refs)
    for old in STATE.referenced_by.get(key, set()) - new:
        STATE.references[old].discard(key)
    for ref in new:
        STATE.references[ref].add(key)
    STATE.referenced_by[key] = new


def _forget(key: Key) -> None:
    _remember_references(key, ())
    STATE.referenced_by.pop(key, None)
    STATE.tracker.forget(key)


def _single(index_name: str, key: Key) -> dict[str, Any] | None:
    store = STATE.indices[index_name].get(key)
    if not store:
        return None
    return max(store, key=lambda body: int(body.get("metadata", {}).get("resourceVersion") or 0))  # type: ignore[no-any-return]


async def reconcile(key: Key) -> float | None:
    """observe -> plan -> apply for one Rollout; returns seconds until it is due again."""
    body = _single("rollouts", key)
    if body is None:
        _forget(key)
        return None
    if body.get("metadata", {}).get("deletionTimestamp"):
        return None
    if STATE.tracker.is_stale(key, body):
        return None  # our own newer write is on its way back through the watch
    loop = asyncio.get_running_loop()
    requeue: float | None = None
    for _ in range(1 + FOLLOW_UP_PASSES):
        started = loop.time()
        snapshot = observe.snapshot(
            namespace=key[0], body=body, lookup=_single, multi=STATE.indices,
            now=datetime.now(UTC), instance_id=CONFIG.instance_id,
        )
        _remember_references(key, snapshot.references)
        plan = make_plan(snapshot.context)
        outcome = await loop.run_in_executor(
            STATE.pool, apply.apply_plan, STATE.api, snapshot.context, plan, STATE.tracker, STATE.event_pool
        )
        metrics.observe_reconcile(key=key, seconds=loop.time() - started,
                                  phase=str((outcome.status or {}).get("phase", "")),
                                  traffic_router=outcome.traffic_router)
        requeue = plan.requeue_after
        # A reconcile whose only write was the Rollout's own status (a step completed,
        # a pause began) leaves every child as the indices show it: plan again at once
        # from the body the API returned, instead of waiting for our write to come back
        # through the watch and queue behind every other Rollout. Argo needs that second
        # round trip; we don't.
        if outcome.written_rollout is None or not outcome.only_status:
            break
        body = outcome.written_rollout
    _REJECTED_BACKOFF.pop(key, None)
    return requeue


REJECTED_BACKOFF_FIRST_SECONDS = 5.0
REJECTED_BACKOFF_MAX_SECONDS = 300.0
# Per Rollout: (generation, next delay). A new generation (the user edited the spec) resets it.
_REJECTED_BACKOFF: dict[Key, tuple[object, float]] = {}


def _rejected_delay(key: Key) -> float:
    body = _single("rollouts", key) or {}
    generation = (body.get("metadata") or {}).get("generation")
    last_generation, previous = _REJECTED_BACKOFF.get(key, (generation, REJECTED_BACKOFF_FIRST_SECONDS))
    delay = float(previous)
    if last_generation != generation:
        delay = REJECTED_BACKOFF_FIRST_SECONDS
    _REJECTED_BACKOFF[key] = (generation, min(delay * 2, REJECTED_BACKOFF_MAX_SECONDS))
    return delay


def _on_error(key: Key, exc: BaseException) -> float:
    if isinstance(exc, apply.WriteRejected):
        # The user's error, already in status and an Event: one line, no traceback, slower retries.
        delay = _rejected_delay(key)
        log.warning("rollout %s/%s: write rejected, retrying in %.0fs: %s", key[0], key[1], delay, exc.message)
        return delay
    _REJECTED_BACKOFF.pop(key, None)
    if apply.is_conflict(exc):
        log.info("rollout %s/%s: conflict, retrying: %s", key[0], key[1], exc)
        return 0.2
    log.exception("rollout %s/%s: reconcile failed", key[0], key[1], exc_info=exc)
    metrics.RECONCILE_ERRORS.labels(namespace=key[0], name=key[1]).inc()
    return RETRY_AFTER_ERROR_SECONDS


@kopf.on.startup(id="rollouts-startup")
async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    # Tidegate posts its own Events with Argo's reasons; kopf's handler chatter would be noise.
    settings.posting.enabled = False
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.persistence.finalizer = "tidegate.dev/finalizer"
    settings.networking.request_timeout = 30
    settings.batching.worker_limit = 2000
    STATE.indices = {name: kwargs[name] for name in (
        "rollouts", "replicasets", "analysisruns", "services", "virtualservices",
        "destinationrules", "analysistemplates", "clusteranalysistemplates",
    )}
    STATE.api = await asyncio.to_thread(new_api_client, pool_size=max(CONFIG.workers * 2, 8) + EVENT_THREADS)
    STATE.pool = ThreadPoolExecutor(CONFIG.workers, thread_name_prefix="rollout-apply")
    STATE.event_pool = ThreadPoolExecutor(EVENT_THREADS, thread_name_prefix="rollout-events")
    STATE.workers = asyncio.create_task(
        run_workers(STATE.queue, reconcile, workers=CONFIG.workers, on_error=_on_error)
    )
    log.info("rollout controller started: %d workers, namespaces=%s, instance-id=%r",
             CONFIG.workers, CONFIG.namespaces or "all", CONFIG.instance_id)


@kopf.on.cleanup(id="rollouts-cleanup")
async def cleanup(**_: Any) -> None:
    if STATE.workers is not None:
        STATE.workers.cancel()
    for pool in (STATE.pool, STATE.event_pool):
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
