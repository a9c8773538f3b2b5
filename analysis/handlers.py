"""kopf wiring for the AnalysisRun controller: an index, one event handler, the work queue.

The only module in ``analysis`` that imports kopf (the CLI imports it to register
the handlers). Same shape as rollouts/handlers.py:

* ``@kopf.index`` keeps every AnalysisRun of this shard in memory, so a reconcile
  reads no object from the API server (Secrets are the exception: they are rare
  and read on demand by the controller);
* ``@kopf.on.event`` only puts the run's key on the work queue;
* a fixed pool of workers (common.workqueue) runs
  ``analysis.controller.Controller.reconcile`` for one key at a time and requeues
  it when the next measurement is due. A reconcile waiting for one of its
  namespace's measurement slots (``CONFIG.namespace_limit``) gives its worker
  back meanwhile, so a tenant with slow endpoints cannot hold every worker.

No daemons, no change-detecting handlers, no finalizers: kopf writes nothing to
AnalysisRuns. Both controllers may run in one kopf process, so every id here is
prefixed ``analysis-`` and the state below is this module's own.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from analysis import metrics
from analysis.config import CONFIG
from analysis.controller import Controller, Key, KubeClient, resource_version
from analysis.providers.job import GenericJobsApi
from analysis.providers.registry import build_registry
from common.fairness import TenantSlots
from common.kubeclient import (
    is_status,
    new_api_client,
)
from common.redaction import install_log_filter
from common.workqueue import (
    WorkQueue,
    run_workers,
)

log = logging.getLogger("tidegate.analysis")

INDEX_ID = "analysis_runs"  # a kwarg name for kopf; distinct from the rollout side's index
RETRY_AFTER_ERROR_SECONDS = 5.0
RETRY_AFTER_CONFLICT_SECONDS = 0.2


class _State:
    """What the workers share: the queue, the controller, the index, the pools."""

    def __init__(self) -> None:
        self.queue: WorkQueue[Key] = WorkQueue()
        self.controller: Controller | None = None
        self.index: Any = None
        self.pools: list[ThreadPoolExecutor] = []
        self.workers: asyncio.Task[None] | None = None


STATE = _State()


def _in_shard(labels: Any, **_: Any) -> bool:
    return CONFIG.in_shard(dict(labels or {}))


@kopf.index("argoproj.io", "v1alpha1", "analysisruns", id=INDEX_ID, when=_in_shard)
def analysisruns_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.on.event("argoproj.io", "v1alpha1", "analysisruns", id="analysis-run-changed",
               when=_in_shard)
def analysisrun_changed(namespace: str, name: str, **_: Any) -> None:
    STATE.queue.add((namespace, name))


def _current(key: Key) -> dict[str, Any] | None:
    """The newest body of the run in the index (None once it is deleted or left the shard)."""
    store = STATE.index.get(key) if STATE.index is not None else None
    if not store:
        return None
    newest: dict[str, Any] = max(store, key=lambda body: resource_version(body) or 0)
    return newest


async def reconcile(key: Key) -> float | None:
    assert STATE.controller is not None  # set by startup before any worker runs
    started = asyncio.get_running_loop().time()
    try:
        return await STATE.controller.reconcile(key, _current(key))
    finally:
        metrics.observe_reconcile(namespace=key[0], name=key[1],
                                  seconds=asyncio.get_running_loop().time() - started)


def _on_error(key: Key, exc: BaseException) -> float:
    if is_status(exc, 409):
        log.info("analysisrun %s/%s: conflict, retrying", key[0], key[1])
        return RETRY_AFTER_CONFLICT_SECONDS
    log.error("analysisrun %s/%s: reconcile failed", key[0], key[1], exc_info=exc)
    metrics.observe_error(namespace=key[0], name=key[1])
    return RETRY_AFTER_ERROR_SECONDS


@kopf.on.startup(id="analysis-startup")
async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    # Tidegate posts its own Events with Argo's reasons; kopf's handler chatter would be noise.
    settings.posting.enabled = False
    # Any log line (a library's exception, a traceback) may quote a run's secret.
    install_log_filter()
    STATE.index = kwargs[INDEX_ID]
    api = await asyncio.to_thread(
        new_api_client, pool_size=max(CONFIG.measurement_threads, CONFIG.api_threads) + 8)
    from kubernetes import client  # the job provider's API; built once, shared by all runs

    measure_pool = ThreadPoolExecutor(CONFIG.measurement_threads, thread_name_prefix="measure")
    api_pool = ThreadPoolExecutor(CONFIG.api_threads, thread_name_prefix="analysis-api")
    STATE.pools = [measure_pool, api_pool]
    STATE.controller = Controller(
        kube=KubeClient(api),
        providers=build_registry(batch_api=GenericJobsApi(api), core_api=client.CoreV1Api(api)),
        measure_pool=measure_pool,
        api_pool=api_pool,
        slots=TenantSlots(limit=CONFIG.namespace_limit),
    )
    STATE.workers = asyncio.create_task(
        run_workers(STATE.queue, reconcile, workers=CONFIG.workers, on_error=_on_error))
    log.info("analysis controller started: %d workers, %d measurement threads, "
             "%d per namespace, instance-id=%r", CONFIG.workers, CONFIG.measurement_threads,
             CONFIG.namespace_limit, CONFIG.instance_id)


@kopf.on.cleanup(id="analysis-cleanup")
async def cleanup(**_: Any) -> None:
    if STATE.workers is not None:
        STATE.workers.cancel()
    for pool in STATE.pools:
        # Do not wait for a hung provider call; its result has nowhere to go.
        pool.shutdown(wait=False, cancel_futures=True)
