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

The state, start-up and clean-up, retry after an error, the newest body of a
key, the stale-write guard, the shard filter and kopf's settings are the shared
controller shell's (common/shell.py); this module adds what only Rollouts need:
the reverse references, the follow-up pass and the back-off for rejected writes.

Why a queue and not one kopf daemon per Rollout: see common/workqueue.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import kopf

from common.kubeclient import new_api_client
from common.kubewrite import install_request_counter
from common.logging import bind_object, get_logger
from common.shell import Shell, configure_operator, in_shard, resource_version
from rollouts import metrics
from rollouts.config import CONFIG
from rollouts.engine.reconcile import plan as make_plan
from rollouts.engine.restart import due as restart_due
from rollouts.kube import apply, observe
from rollouts.kube.pods import list_pods

log = get_logger("tidegate.rollouts")

Key = tuple[str, str]  # (namespace, name) of a Rollout
RefKey = tuple[str, str, str]  # (kind, namespace, name) of an object a Rollout references
ROLLOUT_KIND = "Rollout"
FOLLOW_UP_PASSES = 1
EVENT_THREADS = 4
INDICES = ("rollouts", "replicasets", "analysisruns", "services", "virtualservices",
           "destinationrules", "analysistemplates", "clusteranalysistemplates")


def _count_error(key: Key) -> None:
    metrics.RECONCILE_ERRORS.labels(namespace=key[0], name=key[1]).inc()


SHELL = Shell(kind="rollout", logger="tidegate.rollouts", count_error=_count_error)


class _State:
    """What only the rollout workers share: the API client, its pools and reverse references."""

    def __init__(self) -> None:
        self.api: Any = None
        self.references: dict[RefKey, set[Key]] = defaultdict(set)
        self.referenced_by: dict[Key, set[RefKey]] = {}
        self.pool: ThreadPoolExecutor | None = None
        self.event_pool: ThreadPoolExecutor | None = None


STATE = _State()
# Per Rollout, since our last write of it (epoch seconds): the first event of the Rollout
# that was not our write's echo (a promote could first be known), and the first event of
# one of its AnalysisRuns in a terminal phase (rollouts/metrics.py tidegate_step_reaction_seconds).
PROMOTED: dict[Key, float] = {}
ANALYSIS_DONE: dict[Key, float] = {}
RUN_ENDED = ("Successful", "Failed", "Error", "Inconclusive")


def _in_shard(labels: Any, **_: Any) -> bool:
    return in_shard(labels, instance_id=CONFIG.instance_id)


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
def rollout_changed(namespace: str, name: str, body: kopf.Body, **_: Any) -> None:
    if resource_version(body) != SHELL.tracker.last((namespace, name)):  # not our own write's echo
        PROMOTED.setdefault((namespace, name), time.time())
    SHELL.queue.add((namespace, name))


@kopf.on.event("apps", "v1", "replicasets", id="replicaset-changed",
               labels={"rollouts-pod-template-hash": kopf.PRESENT})
def replicaset_changed(namespace: str, meta: kopf.Meta, **_: Any) -> None:
    for owner in _owner_rollouts(meta):
        SHELL.queue.add((namespace, owner))


@kopf.on.event("argoproj.io", "v1alpha1", "analysisruns", id="analysisrun-changed")
def analysisrun_changed(namespace: str, meta: kopf.Meta, status: kopf.Status, **_: Any) -> None:
    for owner in _owner_rollouts(meta):
        if status.get("phase") in RUN_ENDED:
            ANALYSIS_DONE.setdefault((namespace, owner), time.time())
        SHELL.queue.add((namespace, owner))


def _wake_referencing(kind: str, namespace: str, name: str) -> None:
    for key in STATE.references.get((kind, namespace, name), ()):
        SHELL.queue.add(key)


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
    SHELL.tracker.forget(key)
    PROMOTED.pop(key, None)
    ANALYSIS_DONE.pop(key, None)
    metrics.forget_rollout(key)


def _single(index_name: str, key: Key) -> dict[str, Any] | None:
    return SHELL.newest(index_name, key)


async def reconcile(key: Key) -> float | None:
    """observe -> plan -> apply for one Rollout; returns seconds until it is due again."""
    body = _single("rollouts", key)
    if body is None:
        _forget(key)
        return None
    if body.get("metadata", {}).get("deletionTimestamp"):
        return None
    if SHELL.is_stale(key, body):
        return None  # our own newer write is on its way back through the watch
    loop = asyncio.get_running_loop()
    requeue: float | None = None
    for _ in range(1 + FOLLOW_UP_PASSES):
        status = body.get("status") or {}
        # Every line of this pass, here and in the apply thread, names the Rollout.
        bind_object(kind=ROLLOUT_KIND, namespace=key[0], name=key[1],
                    revision=str(status.get("currentPodHash") or ""), step=status.get("currentStepIndex"))
        started = loop.time()
        now = datetime.now(UTC)
        # Pods are listed only while a restart is due (no pod watch for an idle controller).
        pods = (await loop.run_in_executor(STATE.pool, list_pods, STATE.api, key[0], body)
                if restart_due(body, now) else None)
        snapshot = observe.snapshot(
            namespace=key[0], body=body, lookup=_single, multi=SHELL.indices,
            now=now, instance_id=CONFIG.instance_id, pods=pods,
        )
        _remember_references(key, snapshot.references)
        plan = make_plan(snapshot.context)
        outcome = await loop.run_in_executor(
            STATE.pool, contextvars.copy_context().run,
            apply.apply_plan, STATE.api, snapshot.context, plan, SHELL.tracker, STATE.event_pool
        )
        metrics.observe_reconcile(key=key, seconds=loop.time() - started,
                                  phase=str((outcome.status or {}).get("phase", "")),
                                  traffic_router=outcome.traffic_router, body=body, status=outcome.status)
        if outcome.written_rollout is not None:
            written = outcome.written_rollout.get("status") or {}
            reaction = metrics.observe_step(body=body, status=written, promoted_at=PROMOTED.pop(key, None),
                                            analysis_done_at=ANALYSIS_DONE.pop(key, None),
                                            written_at=time.time())
            if written.get("currentStepIndex") != status.get("currentStepIndex") or (
                    written.get("phase") != status.get("phase")):
                log.info("rollout status advanced", to_step=written.get("currentStepIndex"),
                         phase=written.get("phase"), reaction_seconds=reaction,
                         revision=str(written.get("currentPodHash") or ""))
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
        log.warning("rollout write rejected, retrying", namespace=key[0], name=key[1],
                    delay=delay, error=exc.message)
        return delay
    _REJECTED_BACKOFF.pop(key, None)
    return SHELL.retry_delay(key, exc)


@kopf.on.startup(id="rollouts-startup")
async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    configure_operator(settings)
    install_request_counter()
    SHELL.use_indices(kwargs, *INDICES)
    STATE.api = await asyncio.to_thread(new_api_client, pool_size=max(CONFIG.workers * 2, 8) + EVENT_THREADS)
    STATE.pool = SHELL.pool(CONFIG.workers, name="rollout-apply")
    STATE.event_pool = SHELL.pool(EVENT_THREADS, name="rollout-events")
    SHELL.start(reconcile, workers=CONFIG.workers, on_error=_on_error)
    log.info("rollout controller started", workers=CONFIG.workers,
             namespaces=CONFIG.namespaces or "all", instance_id=CONFIG.instance_id)


@kopf.on.cleanup(id="rollouts-cleanup")
async def cleanup(**_: Any) -> None:
    SHELL.stop()
