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

Refresh is event-driven as well as polled (gitops/webhook.py, gitops/polling.py):
the webhook server (``--webhook-port``) and the poller (one ls-remote per
repository URL per ``timeout.reconciliation``) only put the keys of the
Applications a push or a moved ref concerns on the same queue; each trigger is
remembered (gitops/metrics.py ``RefreshClock``) until the sync that applies it
shows in an Application event, which records ``tidegate_refresh_to_applied_seconds``.

Destinations other than the controller's own cluster come from Argo CD's cluster
Secrets in the control namespace (the first application namespace): a thread
watches them (gitops/clusters.py ``SecretWatch``), every change re-queues the
Applications, and each destination cluster gets its own client and drift watch.

Reconciles nobody asked for are skipped (``reconcile``): our own status write
comes back through the watch as an Application event; when the newest body is
exactly that write (its resourceVersion is the one ``TRACKER`` recorded, so no one
else changed it since), no trigger other than an Application event queued the key
(``_wanted``: drift, webhook, poll, project or cluster changes), and the requeue
the last reconcile asked for is not due yet, the key waits for that requeue
instead: the echo cost a full comparison before, and a refresh arriving meanwhile
waited behind it.

No daemons, no finalizers: kopf writes nothing to Applications. Every id here is
prefixed ``gitops-``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import kopf

from common.events import post_event
from common.kubeclient import new_api_client
from common.kubewrite import install_request_counter
from common.logging import bind_object, get_logger
from common.shell import Shell, VersionTracker, configure_operator, in_shard, resource_version
from gitops import metrics
from gitops.api import ApplicationSource
from gitops.cache import digest
from gitops.clusters import Clusters, SecretWatch
from gitops.config import CONFIG
from gitops.controller import CALL_CONCURRENCY, AppController, Settings
from gitops.kube import GitopsKube, KubeError
from gitops.plan import ResourceKey
from gitops.polling import POLL_CONFIG, CountedRepoCache, Poller, interval_from
from gitops.render import RenderError, detect_tool, render_source
from gitops.source import SourceError
from gitops.watch import CachedPort, DriftWatcher
from gitops.webhook import (
    ARGOCD_CM,
    ARGOCD_SECRET,
    WEBHOOK_CONFIG,
    Push,
    WebhookSecrets,
    WebhookServer,
    matches,
)

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
        self.kube: GitopsKube | None = None
        self.poller: asyncio.Task[None] | None = None
        self.webhook: WebhookServer | None = None
        self.secrets: tuple[float, WebhookSecrets] | None = None


STATE = _State()
REFRESH = metrics.RefreshClock()
WANTED: set[Key] = set()  # keys queued by a trigger other than an Application event (never skipped)
NEXT_DUE: dict[Key, float] = {}  # monotonic time of the requeue each key's last reconcile asked for
INTENT: dict[Key, str] = {}  # what the last reconcile read, but its status (``_intent``)


def _intent(body: Any) -> str:
    """Everything of an Application but its status and server-kept metadata: a write by someone else
    between our read and our write (a refresh annotation, an operation, a spec change) is merged
    into our write's result, so the echo of that write carries it, and must not be skipped."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items()
            if k not in ("resourceVersion", "managedFields", "generation", "annotations")}
    # our own write removes the refresh annotation: not a change by someone else (a refresh
    # annotation in the echo is checked on its own)
    meta["annotations"] = {k: v for k, v in ((body.get("metadata") or {}).get("annotations") or {}).items()
                           if k != REFRESH_ANNOTATION}
    return digest({"metadata": meta, **{k: v for k, v in body.items() if k not in ("metadata", "status")}})
REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"
SECRETS_TTL_SECONDS = 10.0


def _watched(namespace: str, labels: Any, **_: Any) -> bool:
    return namespace in CONFIG.app_namespaces and in_shard(labels, instance_id=CONFIG.instance_id)


def _owned(namespace: str, name: str, labels: Any, **_: Any) -> bool:
    """A watched Application of this replica's shard (gitops/shard.py); projects are every shard's."""
    return _watched(namespace, labels) and CONFIG.shard.owns(namespace, name)


@kopf.index("argoproj.io", "v1alpha1", "applications", id=INDEX_ID, when=_owned)
def applications_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.index("argoproj.io", "v1alpha1", "appprojects", id=PROJECT_INDEX_ID, when=_watched)
def appprojects_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    """AppProjects, read from the Application's namespace when it syncs (project enforcement)."""
    return {(namespace, name): dict(body)}


def _wanted(key: Key) -> None:
    """Queue ``key`` for a reason its body does not show (event loop thread only)."""
    WANTED.add(key)
    SHELL.queue.add(key)


def _project(namespace: str, name: str) -> dict[str, Any] | None:
    return SHELL.newest(PROJECT_INDEX_ID, (namespace, name))


@kopf.on.event("argoproj.io", "v1alpha1", "appprojects", id="gitops-appproject-changed", when=_watched)
def appproject_changed(namespace: str, name: str, **_: Any) -> None:
    """A project changed: its Applications are checked against it again at once."""
    for key, body in _apps():
        if key[0] == namespace and (body.get("spec") or {}).get("project") == name:
            _wanted(key)


WATCHERS: list[DriftWatcher] = []  # the watches on managed kinds (drift seen in seconds)
CLUSTERS: list[tuple[Clusters, SecretWatch]] = []  # the destination clusters and their Secrets' watch


def _drifted(loop: asyncio.AbstractEventLoop) -> Any:
    """A managed object of Application ``key`` changed (from a watch thread): queue that Application."""
    def queue(key: Key) -> None:
        if key in (SHELL.indices.get(INDEX_ID) or {}):
            _wanted(key)

    return lambda key: loop.call_soon_threadsafe(queue, key)


def _requeue_all(loop: asyncio.AbstractEventLoop) -> Any:
    """A cluster Secret changed (from its watch thread): every Application resolves its destination again."""
    def queue() -> None:
        for key in list(SHELL.indices.get(INDEX_ID) or {}):
            _wanted(key)

    return lambda: loop.call_soon_threadsafe(queue)


@kopf.on.event("argoproj.io", "v1alpha1", "applications", id="gitops-application-changed",
               when=_owned)
def application_changed(namespace: str, name: str, body: kopf.Body, type: str | None = None,
                        **_: Any) -> None:
    key = (namespace, name)
    if type == "DELETED":
        metrics.forget_app(key)
    else:
        finished = metrics.observe_app(key, body)
        if finished is not None:
            status = body.get("status") or {}
            log.info("application sync finished", kind="Application", namespace=namespace, name=name,
                     phase=finished, revision=str((status.get("sync") or {}).get("revision") or ""))
        if REFRESH_ANNOTATION in (body.get("metadata", {}).get("annotations") or {}):
            REFRESH.triggered(key, metrics.ANNOTATION)
        REFRESH.observe(key, body)
    SHELL.queue.add(key)


def _apps() -> list[tuple[Key, dict[str, Any]]]:
    """Every Application of the index, newest body each."""
    store = SHELL.indices.get(INDEX_ID) or {}
    out = []
    for key in list(store):
        body = SHELL.newest(INDEX_ID, key)
        if body is not None:
            out.append((key, body))
    return out


async def _read(kind: str, name: str) -> dict[str, Any] | None:
    """argocd-secret / argocd-cm in the first application namespace (Argo CD's namespace)."""
    kube = STATE.kube
    if kube is None:
        return None
    key = ResourceKey("", kind, CONFIG.app_namespaces[0], name)
    try:
        return await asyncio.to_thread(kube.get, "v1", key)
    except KubeError as exc:
        log.info("gitops: cannot read settings", kind=kind, name=name, error=str(exc))
        return None


def _decoded(secret: dict[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in ((secret or {}).get("data") or {}).items():
        try:
            out[k] = base64.b64decode(str(v), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
    return out


async def _webhook_secrets() -> WebhookSecrets:
    """Flag secrets, then argocd-secret's keys (read at most every SECRETS_TTL_SECONDS)."""
    now = time.monotonic()
    if STATE.secrets is None or now - STATE.secrets[0] > SECRETS_TTL_SECONDS:
        STATE.secrets = (now, WebhookSecrets.from_data(_decoded(await _read("Secret", ARGOCD_SECRET))))
    return WEBHOOK_CONFIG.secrets.merged(STATE.secrets[1])


async def _on_push(pushes: list[Push]) -> int:
    """Refresh now every Application tracking a pushed repository and ref."""
    refreshed = 0
    for key, body in _apps():
        push = next((p for p in pushes if matches(body, p)), None)
        if push is None:
            continue
        REFRESH.triggered(key, metrics.WEBHOOK, push.commit)
        _wanted(key)
        refreshed += 1
    log.info("webhook push", repo=pushes[0].display_url, ref=pushes[0].ref, refreshed=refreshed)
    return refreshed


def _poll_enqueue(key: Key, commit: str) -> None:
    REFRESH.triggered(key, metrics.POLL, commit)
    _wanted(key)


async def _poll_interval() -> float:
    if POLL_CONFIG.interval_seconds is not None:
        return POLL_CONFIG.interval_seconds
    return interval_from(await _read("ConfigMap", ARGOCD_CM))


async def reconcile(key: Key) -> float | None:
    assert STATE.controller is not None  # set by startup before any worker runs
    body = SHELL.newest(INDEX_ID, key)
    if body is not None and SHELL.is_stale(key, body):
        metrics.RECONCILES.labels(result=metrics.SKIPPED_STALE).inc()
        return None  # our newer write is on its way back through the watch
    now = time.monotonic()
    due = NEXT_DUE.get(key)
    if (body is not None and key not in WANTED and due is not None and now < due
            and resource_version(body) == TRACKER.last(key) and INTENT.get(key) == _intent(body)
            and REFRESH_ANNOTATION not in ((body.get("metadata") or {}).get("annotations") or {})):
        # Only our own write seen back, nothing else asked for: wait for the requeue already due.
        metrics.RECONCILES.labels(result=metrics.SKIPPED_ECHO).inc()
        return due - now if due != math.inf else None
    WANTED.discard(key)
    if body is not None:
        INTENT[key] = _intent(body)
    dest = ((body or {}).get("spec") or {}).get("destination") or {}
    bind_object(kind="Application", namespace=key[0], name=key[1], revision=str(
        (((body or {}).get("status") or {}).get("sync") or {}).get("revision") or ""))
    loop = asyncio.get_running_loop()
    try:
        # the worker thread logs with this reconcile's object fields (contextvars copied)
        delay: float | None = await loop.run_in_executor(
            STATE.pool, contextvars.copy_context().run, STATE.controller.reconcile, key, body)
    except BaseException:
        NEXT_DUE.pop(key, None)
        metrics.RECONCILES.labels(result=metrics.RECONCILE_ERROR).inc()
        raise
    metrics.RECONCILES.labels(result=metrics.RECONCILED).inc()
    metrics.RECONCILE_SECONDS.labels(namespace=key[0], dest_server=str(
        dest.get("server") or dest.get("name") or "")).observe(time.monotonic() - now)
    # None: nothing due until something changes (an event or a trigger queues it again)
    NEXT_DUE[key] = math.inf if delay is None else time.monotonic() + delay
    if body is None:
        NEXT_DUE.pop(key, None)
        INTENT.pop(key, None)
    return delay


def _detect(source: ApplicationSource, path: Path) -> str:
    """The tool a source renders with (status.sourceType); a source render refuses says so itself."""
    try:
        return detect_tool(source, path)
    except RenderError:
        return "directory"


@kopf.on.startup(id="gitops-startup")
async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    configure_operator(settings)
    install_request_counter()
    SHELL.use_indices(kwargs, INDEX_ID, PROJECT_INDEX_ID)
    # Each worker's reconcile may run CALL_CONCURRENCY calls at once (controller.py), on one pool shared
    # by the workers: enough connections for that pool, the workers and the watches.
    api = await asyncio.to_thread(new_api_client, pool_size=CONFIG.workers + CALL_CONCURRENCY + 4)
    kube = await asyncio.to_thread(GitopsKube, api)
    STATE.pool = SHELL.pool(CONFIG.workers, name="gitops")
    STATE.kube = kube
    repos = CountedRepoCache(CONFIG.cache_dir or Path(tempfile.mkdtemp(prefix="tidegate-gitops-")))
    loop = asyncio.get_running_loop()
    control = CONFIG.app_namespaces[0]
    WATCHERS.append(DriftWatcher(api, _drifted(loop), control_namespace=control))
    # The home cluster's managed objects are read from its drift watch's cache (Applications are not).
    clusters = Clusters(home=CachedPort(kube, WATCHERS[0]), home_watch=WATCHERS[0].ensure, listed=False,
                        watcher=lambda cluster, remote: DriftWatcher(
                            remote, _drifted(loop), control_namespace=control, namespaces=cluster.namespaces))
    CLUSTERS.append((clusters, SecretWatch(api, control, clusters, on_change=_requeue_all(loop))))
    CLUSTERS[-1][1].start()
    STATE.controller = AppController(
        kube=kube,
        repos=repos,
        render=render_source,
        source_errors=(SourceError, RenderError, KubeError),
        settings=Settings(reconcile_seconds=CONFIG.reconcile_seconds,
                          wave_delay_seconds=CONFIG.wave_delay_seconds,
                          sync_timeout_seconds=CONFIG.sync_timeout_seconds,
                          control_namespace=control),
        written=TRACKER,
        events=lambda involved, event_type, reason, message: post_event(
            api, involved=involved, event_type=event_type, reason=reason, message=message),
        detect=_detect,
        projects=_project,
        kube_for=lambda dest: clusters.target(server=dest.server, name=dest.name),
        argocd_cm=lambda: kube.get("v1", ResourceKey("", "ConfigMap", CONFIG.app_namespaces[0], ARGOCD_CM)),
    )
    SHELL.start(reconcile, workers=CONFIG.workers)
    STATE.poller = asyncio.create_task(Poller(repos=repos, apps=_apps, enqueue=_poll_enqueue,
                                              interval=_poll_interval).run())
    if WEBHOOK_CONFIG.port:
        STATE.webhook = WebhookServer(port=WEBHOOK_CONFIG.port, host=WEBHOOK_CONFIG.host,
                                      secrets=_webhook_secrets, on_push=_on_push)
        await STATE.webhook.start()
        log.info("gitops webhook listening", port=WEBHOOK_CONFIG.port, path="/api/webhook")
    log.info("gitops controller started", workers=CONFIG.workers, shard=str(CONFIG.shard),
             app_namespaces=CONFIG.app_namespaces, reconcile_seconds=CONFIG.reconcile_seconds)


@kopf.on.cleanup(id="gitops-cleanup")
async def cleanup(**_: Any) -> None:
    SHELL.stop()
    for watcher in WATCHERS:
        watcher.stop()
    for registry, secrets in CLUSTERS:
        secrets.stop()
        registry.close()
    if STATE.poller is not None:
        STATE.poller.cancel()
    if STATE.webhook is not None:
        await STATE.webhook.stop()
