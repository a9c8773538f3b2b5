"""kopf wiring for notifications: indices of the watched objects, event handlers, the work queue.

The only module in ``notifications`` that imports kopf (the CLI imports it to
register the handlers); the same shape as gitops/handlers.py, on the shared
controller shell (common/shell.py):

* ``@kopf.index`` keeps Applications and AppProjects of the application
  namespaces (``SETTINGS.app_namespaces``, ``argocd`` by default), and Rollouts
  and AnalysisRuns of the watched namespaces (``--namespace``, all by default);
* ``@kopf.on.event`` judges the conditions in the event's own body
  (``Notifier.observe``: a state gone before a worker plans still re-arms a
  trigger without oncePer) and puts the object's key on the work queue; an
  AppProject's change queues its Applications (subscriptions can sit on the
  project);
* the ConfigMaps and Secrets are watched by name (``argocd-notifications-cm``,
  ``argocd-notifications-secret``, ``argo-rollouts-notification-configmap``,
  ``argo-rollouts-notification-secret``): a change drops the cached
  configuration and queues every object using it, so an edit takes effect at
  once (a ConfigMap outside the watched namespaces is read again after
  ``config_ttl_seconds``);
* a fixed pool of workers runs ``notifications.delivery.Notifier.notify`` for
  one object at a time and requeues the key after a failed send's backoff.

Which ConfigMap an object uses is settled in notifications/settings.py: for
Applications the pair in Argo CD's namespace (the first application namespace);
for Rollouts and AnalysisRuns the pair in the object's own namespace when it has
one, else the pair in the Argo Rollouts namespace (``--notifications-namespace``).

Keys on the queue are ``(namespace, "<Kind>/<name>")`` (an object name has no
``/``). No daemons, no finalizers; the only write is the state annotation. Every
id here is prefixed ``notifications-``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from common.fairness import TenantSlots
from common.kubeclient import new_api_client
from common.kubewrite import install_request_counter
from common.logging import bind_object, get_logger
from common.shell import Shell, VersionTracker, configure_operator, in_shard
from notifications.delivery import Backoff, ConfigCache, Notifier, Source
from notifications.kube import NotificationsKube
from notifications.settings import (
    ARGOCD_CM,
    ARGOCD_SECRET,
    ROLLOUTS_CM,
    ROLLOUTS_SECRET,
    SETTINGS,
)

log = get_logger("tidegate.notifications")

APPLICATION, APP_PROJECT, ROLLOUT, ANALYSIS_RUN = "Application", "AppProject", "Rollout", "AnalysisRun"
INDICES = {APPLICATION: "notifications_applications", APP_PROJECT: "notifications_appprojects",
           ROLLOUT: "notifications_rollouts", ANALYSIS_RUN: "notifications_analysisruns"}
CONFIG_NAMES = {ARGOCD_CM, ARGOCD_SECRET, ROLLOUTS_CM, ROLLOUTS_SECRET}
SETTLED = "notifications controller started"
MSG_OBSERVE_FAILED = "notifications: cannot judge a watched state (its re-arming is lost)"
Key = tuple[str, str]

TRACKER = VersionTracker()
SHELL = Shell(kind="notification", logger="tidegate.notifications", tracker=TRACKER)


class _State:
    def __init__(self) -> None:
        self.notifier: Notifier | None = None


STATE = _State()


def queue_key(kind: str, namespace: str, name: str) -> Key:
    return (namespace, f"{kind}/{name}")


def _app_watched(namespace: str, labels: Any, **_: Any) -> bool:
    return namespace in SETTINGS.app_namespaces and in_shard(labels, instance_id=SETTINGS.instance_id)


def _rollout_watched(labels: Any, **_: Any) -> bool:
    return in_shard(labels, instance_id=SETTINGS.instance_id)


def _config_named(name: str, **_: Any) -> bool:
    return name in CONFIG_NAMES


def _body(namespace: str, name: str, body: kopf.Body) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.index("argoproj.io", "v1alpha1", "applications", id=INDICES[APPLICATION], when=_app_watched)
def applications_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return _body(namespace, name, body)


@kopf.index("argoproj.io", "v1alpha1", "appprojects", id=INDICES[APP_PROJECT], when=_app_watched)
def appprojects_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return _body(namespace, name, body)


@kopf.index("argoproj.io", "v1alpha1", "rollouts", id=INDICES[ROLLOUT], when=_rollout_watched)
def rollouts_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return _body(namespace, name, body)


@kopf.index("argoproj.io", "v1alpha1", "analysisruns", id=INDICES[ANALYSIS_RUN], when=_rollout_watched)
def analysisruns_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return _body(namespace, name, body)


def _changed(kind: str, namespace: str, name: str, event_type: str | None, body: kopf.Body) -> None:
    if event_type == "DELETED":
        if STATE.notifier is not None:
            STATE.notifier.forget(kind, namespace, name)
        TRACKER.forget(queue_key(kind, namespace, name))
        return
    _observe(kind, namespace, dict(body))
    SHELL.queue.add(queue_key(kind, namespace, name))


def _observe(kind: str, namespace: str, body: dict[str, Any]) -> None:
    """Every state the watch delivers counts, not only the one a worker plans on later:
    ``Notifier.observe`` re-arms the conditions false in it (before the key is queued, so
    the plan that follows sees it). In kopf's handler thread: a configuration not cached
    yet is read here, once per TTL."""
    notifier = STATE.notifier
    if notifier is None:
        return
    try:
        loaded = notifier.configs.first(sources(kind, namespace))
        if loaded is not None:
            project = _project(body) if kind == APPLICATION else None
            notifier.observe(kind, body, loaded=loaded, project=project)
    except Exception as exc:  # noqa: BLE001 - a state not observed only loses its re-arm, logged
        meta = body.get("metadata") or {}
        log.warning(MSG_OBSERVE_FAILED, namespace=namespace, name=meta.get("name"), error=str(exc))


@kopf.on.event("argoproj.io", "v1alpha1", "applications", id="notifications-application-changed",
               when=_app_watched)
def application_changed(namespace: str, name: str, body: kopf.Body, type: str | None = None,
                        **_: Any) -> None:
    _changed(APPLICATION, namespace, name, type, body)


@kopf.on.event("argoproj.io", "v1alpha1", "rollouts", id="notifications-rollout-changed",
               when=_rollout_watched)
def rollout_changed(namespace: str, name: str, body: kopf.Body, type: str | None = None, **_: Any) -> None:
    _changed(ROLLOUT, namespace, name, type, body)


@kopf.on.event("argoproj.io", "v1alpha1", "analysisruns", id="notifications-analysisrun-changed",
               when=_rollout_watched)
def analysisrun_changed(namespace: str, name: str, body: kopf.Body, type: str | None = None,
                        **_: Any) -> None:
    _changed(ANALYSIS_RUN, namespace, name, type, body)


@kopf.on.event("argoproj.io", "v1alpha1", "appprojects", id="notifications-appproject-changed",
               when=_app_watched)
def appproject_changed(name: str, **_: Any) -> None:
    """A project's subscriptions apply to its Applications: look at them again."""
    for key, body in _objects(APPLICATION):
        if (body.get("spec") or {}).get("project") == name:
            SHELL.queue.add(queue_key(APPLICATION, *key))


@kopf.on.event("", "v1", "configmaps", id="notifications-configmap-changed", when=_config_named)
def configmap_changed(namespace: str, name: str, **_: Any) -> None:
    _config_changed(namespace, name)


@kopf.on.event("", "v1", "secrets", id="notifications-secret-changed", when=_config_named)
def secret_changed(namespace: str, name: str, **_: Any) -> None:
    _config_changed(namespace, name)


def _config_changed(namespace: str, name: str) -> None:
    """Reload: drop the cached configuration and look again at every object that may use it."""
    if STATE.notifier is None:
        return
    STATE.notifier.configs.invalidate(namespace, name)
    kinds = (APPLICATION,) if name in (ARGOCD_CM, ARGOCD_SECRET) else (ROLLOUT, ANALYSIS_RUN)
    for kind in kinds:
        for key, _body in _objects(kind):
            if kind == APPLICATION or key[0] == namespace or namespace == SETTINGS.rollouts_namespace:
                SHELL.queue.add(queue_key(kind, *key))
    log.info("notifications: configuration changed", namespace=namespace, name=name)


def _objects(kind: str) -> list[tuple[Key, dict[str, Any]]]:
    store = SHELL.indices.get(INDICES[kind]) or {}
    out = []
    for key in list(store):
        body = SHELL.newest(INDICES[kind], key)
        if body is not None:
            out.append((key, body))
    return out


def sources(kind: str, namespace: str) -> list[Source]:
    """Where an object's configuration is looked for, first found wins (see the module doc)."""
    if kind == APPLICATION:
        return [Source(SETTINGS.app_namespaces[0], ARGOCD_CM, ARGOCD_SECRET)]
    own = Source(namespace, ROLLOUTS_CM, ROLLOUTS_SECRET)
    home = Source(SETTINGS.rollouts_namespace, ROLLOUTS_CM, ROLLOUTS_SECRET)
    return [own] if own == home else [own, home]


def _project(app: dict[str, Any]) -> dict[str, Any] | None:
    name = str((app.get("spec") or {}).get("project") or "default")
    namespace = str((app.get("metadata") or {}).get("namespace") or "")
    for ns in dict.fromkeys((namespace, SETTINGS.app_namespaces[0])):
        project = SHELL.newest(INDICES[APP_PROJECT], (ns, name))
        if project is not None:
            return project
    return None


async def reconcile(key: Key) -> float | None:
    notifier = STATE.notifier
    assert notifier is not None  # set by startup before any worker runs
    namespace, ref = key
    kind, _, name = ref.partition("/")
    body = SHELL.newest(INDICES[kind], (namespace, name))
    if body is None or SHELL.is_stale(key, body):
        return None  # gone, or our newer write is on its way back through the watch
    status = body.get("status") or {}
    bind_object(kind=kind, namespace=namespace, name=name, revision=str(
        status.get("currentPodHash") or (status.get("sync") or {}).get("revision") or ""))
    loaded = await notifier.load(sources(kind, namespace))
    if loaded is None:
        return None  # no configuration: nothing to send (a ConfigMap appearing queues it again)
    project = _project(body) if kind == APPLICATION else None
    return await notifier.notify(kind, body, loaded=loaded, project=project)


@kopf.on.startup(id="notifications-startup")
async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    configure_operator(settings)
    install_request_counter()
    SHELL.use_indices(kwargs, *INDICES.values())
    api = await asyncio.to_thread(new_api_client, pool_size=SETTINGS.workers + 4)
    port = NotificationsKube(api)
    STATE.notifier = Notifier(
        port=port,
        configs=ConfigCache(port, ttl=SETTINGS.config_ttl_seconds),
        settings=SETTINGS,
        send_pool=SHELL.pool(SETTINGS.send_threads, name="notifications-send"),
        kube_pool=SHELL.pool(SETTINGS.workers, name="notifications-kube"),
        slots=TenantSlots(limit=SETTINGS.sends_per_namespace),
        backoff=Backoff(base=SETTINGS.retry_base_seconds, cap=SETTINGS.retry_max_seconds),
        tracker=TRACKER,
    )
    SHELL.start(reconcile, workers=SETTINGS.workers)
    log.info(SETTLED, workers=SETTINGS.workers, app_namespaces=SETTINGS.app_namespaces,
             rollouts_namespace=SETTINGS.rollouts_namespace,
             send_deadline_seconds=SETTINGS.send_deadline_seconds)


@kopf.on.cleanup(id="notifications-cleanup")
async def cleanup(**_: Any) -> None:
    SHELL.stop()
