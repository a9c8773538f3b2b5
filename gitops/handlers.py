"""kopf wiring for the sync module: an index of Applications, one event handler, the work queue.

The only module in ``gitops`` that imports kopf (the CLI imports it to register
the handlers). Same shape as analysis/handlers.py, on the shared controller
shell (common/shell.py):

* ``@kopf.index`` keeps every Application of the application namespaces
  (``CONFIG.app_namespaces``, ``argocd`` by default) in memory;
* ``@kopf.on.event`` only puts the Application's key on the work queue (a new
  ``operation``, a ``refresh`` annotation, a spec change, our own status write);
* a fixed pool of workers runs ``gitops.controller.AppController.reconcile`` in
  a thread for one key at a time and requeues the key: after the wave delay
  while an operation runs (the next wave waits for the previous one's health),
  after the reconciliation timeout otherwise (polling, Argo CD's 120 s).

No daemons, no finalizers: kopf writes nothing to Applications. Every id here is
prefixed ``gitops-``.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import kopf

from common.kubeclient import new_api_client
from common.logging import get_logger
from common.shell import Shell, VersionTracker, configure_operator, in_shard
from gitops.api import ApplicationSource
from gitops.config import CONFIG
from gitops.controller import AppController, Settings
from gitops.kube import GitopsKube, KubeError
from gitops.render import RenderError, detect_tool, render_source
from gitops.source import RepoCache, SourceError

log = get_logger("tidegate.gitops")

INDEX_ID = "gitops_applications"
PROJECT_INDEX_ID = "gitops_appprojects"
Key = tuple[str, str]

TRACKER = VersionTracker()
SHELL = Shell(kind="application", logger="tidegate.gitops", tracker=TRACKER)


class _State:
    def __init__(self) -> None:
        self.controller: AppController | None = None
        self.pool: Any = None


STATE = _State()


def _watched(namespace: str, labels: Any, **_: Any) -> bool:
    return namespace in CONFIG.app_namespaces and in_shard(labels, instance_id=CONFIG.instance_id)


@kopf.index("argoproj.io", "v1alpha1", "applications", id=INDEX_ID, when=_watched)
def applications_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.index("argoproj.io", "v1alpha1", "appprojects", id=PROJECT_INDEX_ID, when=_watched)
def appprojects_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    """AppProjects, read from the Application's namespace when it syncs (project enforcement)."""
    return {(namespace, name): dict(body)}


def _project(namespace: str, name: str) -> dict[str, Any] | None:
    return SHELL.newest(PROJECT_INDEX_ID, (namespace, name))


@kopf.on.event("argoproj.io", "v1alpha1", "applications", id="gitops-application-changed",
               when=_watched)
def application_changed(namespace: str, name: str, **_: Any) -> None:
    SHELL.queue.add((namespace, name))


async def reconcile(key: Key) -> float | None:
    assert STATE.controller is not None  # set by startup before any worker runs
    body = SHELL.newest(INDEX_ID, key)
    if body is not None and SHELL.is_stale(key, body):
        return None  # our newer write is on its way back through the watch
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(STATE.pool, STATE.controller.reconcile, key, body)


def _detect(source: ApplicationSource, path: Path) -> str:
    """The tool a source renders with (status.sourceType); a source render refuses says so itself."""
    try:
        return detect_tool(source, path)
    except RenderError:
        return "directory"


@kopf.on.startup(id="gitops-startup")
async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    configure_operator(settings)
    SHELL.use_indices(kwargs, INDEX_ID, PROJECT_INDEX_ID)
    api = await asyncio.to_thread(new_api_client, pool_size=CONFIG.workers + 4)
    kube = await asyncio.to_thread(GitopsKube, api)
    STATE.pool = SHELL.pool(CONFIG.workers, name="gitops")
    STATE.controller = AppController(
        kube=kube,
        repos=RepoCache(CONFIG.cache_dir or Path(tempfile.mkdtemp(prefix="tidegate-gitops-"))),
        render=render_source,
        source_errors=(SourceError, RenderError, KubeError),
        settings=Settings(reconcile_seconds=CONFIG.reconcile_seconds,
                          wave_delay_seconds=CONFIG.wave_delay_seconds,
                          sync_timeout_seconds=CONFIG.sync_timeout_seconds),
        written=TRACKER,
        detect=_detect,
        projects=_project,
    )
    SHELL.start(reconcile, workers=CONFIG.workers)
    log.info("gitops controller started", workers=CONFIG.workers,
             app_namespaces=CONFIG.app_namespaces, reconcile_seconds=CONFIG.reconcile_seconds)


@kopf.on.cleanup(id="gitops-cleanup")
async def cleanup(**_: Any) -> None:
    SHELL.stop()
