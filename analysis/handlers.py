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

The state, start-up and clean-up, retry after an error, the newest body of a
key, the shard filter and kopf's settings are the shared controller shell's
(common/shell.py); the stale-write guard is the shell's ``VersionTracker``,
which the controller keeps current as it writes.

No daemons, no change-detecting handlers, no finalizers: kopf writes nothing to
AnalysisRuns. Both controllers may run in one kopf process, so every id here is
prefixed ``analysis-`` and the state below is this module's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from analysis import metrics
from analysis.config import CONFIG
from analysis.controller import Controller, Key, KubeClient
from analysis.providers.job import GenericJobsApi
from analysis.providers.registry import build_registry
from common.fairness import TenantSlots
from common.kubeclient import new_api_client
from common.kubewrite import install_request_counter
from common.logging import bind_object, get_logger
from common.redaction import install_log_filter
from common.shell import Shell, configure_operator, in_shard

log = get_logger("tidegate.analysis")

INDEX_ID = "analysis_runs"
POD_HASH_LABEL = "rollouts-pod-template-hash"  # the revision a Rollout's run measures  # a kwarg name for kopf; distinct from the rollout side's index


def _count_error(key: Key) -> None:
    metrics.observe_error(namespace=key[0], name=key[1])


SHELL = Shell(kind="analysisrun", logger="tidegate.analysis", count_error=_count_error)


class _State:
    """What only the analysis workers share: the controller (built at start-up)."""

    def __init__(self) -> None:
        self.controller: Controller | None = None


STATE = _State()


def _in_shard(labels: Any, **_: Any) -> bool:
    return in_shard(labels, instance_id=CONFIG.instance_id)


@kopf.index("argoproj.io", "v1alpha1", "analysisruns", id=INDEX_ID, when=_in_shard)
def analysisruns_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.on.event("argoproj.io", "v1alpha1", "analysisruns", id="analysis-run-changed",
               when=_in_shard)
def analysisrun_changed(namespace: str, name: str, **_: Any) -> None:
    SHELL.queue.add((namespace, name))


def _current(key: Key) -> dict[str, Any] | None:
    """The newest body of the run in the index (None once it is deleted or left the shard)."""
    return SHELL.newest(INDEX_ID, key)


async def reconcile(key: Key) -> float | None:
    assert STATE.controller is not None  # set by startup before any worker runs
    started = asyncio.get_running_loop().time()
    body = _current(key)
    bind_object(kind="AnalysisRun", namespace=key[0], name=key[1], revision=str(
        ((body or {}).get("metadata") or {}).get("labels", {}).get(POD_HASH_LABEL) or ""))
    try:
        return await STATE.controller.reconcile(key, body)
    finally:
        metrics.observe_reconcile(namespace=key[0], name=key[1],
                                  seconds=asyncio.get_running_loop().time() - started)


def _on_error(key: Key, exc: BaseException) -> float:
    return SHELL.retry_delay(key, exc)


@kopf.on.startup(id="analysis-startup")
async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    configure_operator(settings)
    install_request_counter()
    # Any log line (a library's exception, a traceback) may quote a run's secret.
    install_log_filter()
    SHELL.use_indices(kwargs, INDEX_ID)
    api = await asyncio.to_thread(
        new_api_client, pool_size=max(CONFIG.measurement_threads, CONFIG.api_threads) + 8)
    from kubernetes import client  # the job provider's API; built once, shared by all runs

    measure_pool = SHELL.pool(CONFIG.measurement_threads, name="measure")
    api_pool = SHELL.pool(CONFIG.api_threads, name="analysis-api")
    STATE.controller = Controller(
        kube=KubeClient(api),
        providers=build_registry(batch_api=GenericJobsApi(api), core_api=client.CoreV1Api(api)),
        measure_pool=measure_pool,
        api_pool=api_pool,
        slots=TenantSlots(limit=CONFIG.namespace_limit),
        written=SHELL.tracker,
    )
    SHELL.start(reconcile, workers=CONFIG.workers, on_error=_on_error)
    log.info("analysis controller started", workers=CONFIG.workers,
             measurement_threads=CONFIG.measurement_threads,
             namespace_limit=CONFIG.namespace_limit, instance_id=CONFIG.instance_id)


@kopf.on.cleanup(id="analysis-cleanup")
async def cleanup(**_: Any) -> None:
    # Do not wait for a hung provider call; its result has nowhere to go.
    SHELL.stop()
