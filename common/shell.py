"""The controller shell: what every controller's kopf wiring shares, without kopf.

Used by rollouts/handlers.py and analysis/handlers.py (and the controllers to
come). Each handlers module keeps its ``@kopf`` decorators, thin, and hands the
rest to one ``Shell``:

* the shared state: the work queue, the kopf indices, the thread pools, the
  workers task (``start`` / ``stop``: stop cancels the workers and shuts the
  pools down without waiting for a hung call, whose result has nowhere to go);
* retry after an error (``retry_delay``): a 409 conflict is retried after
  ``RETRY_AFTER_CONFLICT_SECONDS``; any other error is logged once, with its
  traceback, and retried after ``RETRY_AFTER_ERROR_SECONDS``;
* the newest body of an object in a kopf index store (``newest``: an index keeps
  every body a key was seen with, the highest resourceVersion wins);
* the stale-write guard (``VersionTracker``): the resourceVersion of our own last
  write per object; a body older than that is skipped, since our newer write is
  on its way back through the watch (Argo's version tracker);
* the instance-id shard filter (``in_shard``, Argo's sharding label);
* kopf's operator settings (``configure_operator``), the same whichever
  components run.

common/ never imports kopf (import contract): ``configure_operator`` takes kopf's
``OperatorSettings`` as the object it is, and the index stores as mappings.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from common.kubeclient import is_status
from common.logging import get_logger
from common.workqueue import WorkQueue, run_workers

Key = tuple[str, str]  # (namespace, name) of the object a controller reconciles

INSTANCE_ID_LABEL = "argo-rollouts.argoproj.io/controller-instance-id"
RETRY_AFTER_ERROR_SECONDS = 5.0
RETRY_AFTER_CONFLICT_SECONDS = 0.2
CONFLICT = 409

# kopf's settings, for every component: Tidegate posts its own Events with Argo's
# reasons (kopf's handler chatter would be noise); watches are renewed before an
# API server or a proxy drops them; a finalizer, if kopf ever needs one, is ours.
WATCH_SERVER_TIMEOUT_SECONDS = 270
WATCH_CLIENT_TIMEOUT_SECONDS = 300
REQUEST_TIMEOUT_SECONDS = 30
KOPF_WORKER_LIMIT = 2000
FINALIZER = "tidegate.dev/finalizer"

def in_shard(labels: Mapping[str, str] | None, *, instance_id: str) -> bool:
    """Argo's sharding: with an instance id, only objects labelled with it; without, only unlabelled ones."""
    value = (labels or {}).get(INSTANCE_ID_LABEL)
    return value == instance_id if instance_id else value is None


def resource_version(body: Mapping[str, Any]) -> int | None:
    """An object's resourceVersion as a number (the API server's are), or None."""
    text = str((body.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else None


def newest(store: Iterable[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The body with the highest resourceVersion in a kopf index store (None if empty)."""
    if not store:
        return None
    return max(store, key=lambda b: resource_version(b) or 0)


class VersionTracker:
    """The stale-write guard: the newest resourceVersion this controller wrote, per key.

    Writes happen in worker threads, hence the lock.
    """

    def __init__(self) -> None:
        self._written: dict[Key, int] = {}
        self._lock = threading.Lock()

    def record(self, key: Key, body: Mapping[str, Any]) -> None:
        """Remember the resourceVersion of ``body``, the object as our write left it."""
        version = resource_version(body)
        if version is None:
            return
        with self._lock:
            self._written[key] = max(self._written.get(key, 0), version)

    def is_stale(self, key: Key, body: Mapping[str, Any]) -> bool:
        """True if ``body`` is older than our own last write of it."""
        version = resource_version(body)
        with self._lock:
            written = self._written.get(key)
        return written is not None and version is not None and version < written

    def last(self, key: Key) -> int | None:
        """The resourceVersion of our last write of ``key`` (None: none remembered)."""
        with self._lock:
            return self._written.get(key)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._written.pop(key, None)


def configure_operator(settings: Any) -> None:
    """Set kopf's ``OperatorSettings`` for Tidegate; the same values whichever components run."""
    settings.posting.enabled = False
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_SECONDS
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_SECONDS
    settings.persistence.finalizer = FINALIZER
    settings.networking.request_timeout = REQUEST_TIMEOUT_SECONDS
    settings.batching.worker_limit = KOPF_WORKER_LIMIT


@dataclass
class Shell:
    """One controller's runtime state and the steps every controller takes the same way.

    ``kind`` names the object in log lines ("rollout", "analysisrun"), written
    by the logger ``logger``; ``count_error`` counts a failed reconcile in the
    controller's own metric.
    """

    kind: str
    logger: str = "tidegate.shell"
    count_error: Callable[[Key], None] = lambda key: None
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    indices: dict[str, Mapping[Key, Any]] = field(default_factory=dict)
    tracker: VersionTracker = field(default_factory=VersionTracker)
    pools: list[ThreadPoolExecutor] = field(default_factory=list)
    workers: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.log = get_logger(self.logger)

    def use_indices(self, kwargs: Mapping[str, Any], *names: str) -> None:
        """Keep the kopf indices ``names`` from a startup handler's keyword arguments."""
        self.indices = {name: kwargs[name] for name in names}

    def newest(self, index: str, key: Key) -> dict[str, Any] | None:
        """The newest body of ``key`` in the index ``index`` (None: gone, or not in this shard)."""
        store = self.indices.get(index)
        return newest(store.get(key)) if store is not None else None

    def is_stale(self, key: Key, body: Mapping[str, Any]) -> bool:
        """True if ``body`` is older than our own last write: skip it, ours is on its way."""
        return self.tracker.is_stale(key, body)

    def pool(self, threads: int, *, name: str) -> ThreadPoolExecutor:
        """A thread pool stopped with the shell.

        Our own pools: asyncio.to_thread would share the loop's default executor
        (min(32, cpus + 4) threads: 6 on 2 cores), silently capping the workers.
        """
        pool = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self.pools.append(pool)
        return pool

    def retry_delay(self, key: Key, exc: BaseException) -> float:
        """Seconds until a key whose reconcile raised ``exc`` is tried again; logs it once."""
        namespace, name = key
        if is_status(exc, CONFLICT):
            self.log.info(f"{self.kind} conflict, retrying", namespace=namespace, name=name,
                     delay=RETRY_AFTER_CONFLICT_SECONDS)
            return RETRY_AFTER_CONFLICT_SECONDS
        self.log.error(f"{self.kind} reconcile failed", namespace=namespace, name=name,
                  delay=RETRY_AFTER_ERROR_SECONDS, exc_info=exc)
        self.count_error(key)
        return RETRY_AFTER_ERROR_SECONDS

    def start(self, handle: Callable[[Key], Awaitable[float | None]], *, workers: int,
              on_error: Callable[[Key, BaseException], float] | None = None) -> None:
        """Start ``workers`` workers on the queue (call from a kopf startup handler)."""
        self.workers = asyncio.create_task(run_workers(
            self.queue, handle, workers=workers, on_error=on_error or self.retry_delay))

    def stop(self) -> None:
        """Cancel the workers; shut the pools down without waiting for hung calls."""
        if self.workers is not None:
            self.workers.cancel()
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)
