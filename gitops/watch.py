"""Watches on the kinds Applications manage, so drift is seen in seconds (Argo CD's live-state cache).

Called by gitops/handlers.py: the controller reports each kind it manages
(``ensure``), and the first report starts one watch of that kind, cluster-wide,
in a daemon thread (list, then watch from the list's resourceVersion, re-listed
when the watch expires). An event on an object carrying a tracking id
(``argocd.argoproj.io/tracking-id``) whose content changed other than its
status and server-kept metadata (a ``kubectl edit``, a deletion) calls
``on_change((namespace, name))`` of the Application the id names (``<app>`` is
an Application of the control namespace, ``<namespace>_<app>`` one of another
application namespace, as Argo CD v3 writes them): the handlers queue that
Application, and its reconcile
compares it at once (selfHeal reverts it, else it is reported OutOfSync).
Status-only updates (a Deployment's replicas becoming ready) are ignored, as
Argo CD's ``ignoreResourceUpdates`` does by default, so they cost no reconcile,
unless they change the object's health (Argo CD also keeps those): an
InferenceService turning Ready or a Rollout pausing at a step is seen at once,
not at the next periodic reconcile.

One watcher per destination cluster (gitops/clusters.py makes one for each
cluster it connects to, over that cluster's client, and stops it when the
cluster's Secret changes). A cluster in namespaced mode (its Secret lists
``namespaces``) is watched in each of those namespaces, not cluster-wide: its
credentials usually allow no more.

Why watches and not a short periodic re-compare: a re-compare costs a Git
``ls-remote`` and one dry-run apply per object every few seconds for every
Application, however idle; a watch costs one stream per kind and wakes only
the Application whose object changed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import dynamic
from kubernetes.client.exceptions import ApiException

from common.logging import get_logger
from gitops.health import health
from gitops.plan import TRACKING_ID_ANNOTATION, app_of_instance, parse_tracking_id

log = get_logger("tidegate.gitops.watch")

WATCH_TIMEOUT_SECONDS = 240
RETRY_SECONDS = 2.0
GONE = 410
SERVER_KEPT = {"resourceVersion", "managedFields", "generation", "uid", "creationTimestamp",
               "selfLink"}


def fingerprint(obj: Mapping[str, Any]) -> str:
    """What an edit changes: the object without status and server-kept metadata, plus its health."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_KEPT}
    body = {k: v for k, v in obj.items() if k not in {"status", "metadata"}}
    verdict = health(obj)
    # The status code only: a message with counts ("1 of 2 ... available") would wake every step.
    text = json.dumps({"metadata": meta, **body, "health": verdict.status.value if verdict else None},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def tracked_app(obj: Mapping[str, Any], control_namespace: str) -> tuple[str, str] | None:
    """The (namespace, name) of the Application whose tracking id ``obj`` carries."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(TRACKING_ID_ANNOTATION)
    parsed = parse_tracking_id(str(value)) if value else None
    return app_of_instance(parsed[0], control_namespace) if parsed else None


class DriftWatcher:
    def __init__(self, api: Any, on_change: Callable[[tuple[str, str]], None], *,
                 control_namespace: str, namespaces: tuple[str, ...] = ()) -> None:
        self.api = api
        self._dyn: Any = None  # built by the first watch thread: discovery is a blocking call
        self.on_change = on_change
        self.control_namespace = control_namespace
        self.namespaces = namespaces  # namespaced mode: one watch per namespace, else cluster-wide
        self._kinds: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._seen: dict[str, str] = {}  # uid -> fingerprint

    def ensure(self, api_version: str, kind: str) -> None:
        with self._lock:
            if (api_version, kind) in self._kinds or self._stop.is_set():
                return
            self._kinds.add((api_version, kind))
        for namespace in self.namespaces or (None,):
            thread = threading.Thread(target=self._run, args=(api_version, kind, namespace), daemon=True,
                                      name=f"gitops-watch-{kind}")
            thread.start()

    @property
    def dyn(self) -> Any:
        with self._lock:
            if self._dyn is None:
                self._dyn = dynamic.DynamicClient(self.api)
            return self._dyn

    def stop(self) -> None:
        self._stop.set()

    def _event(self, kind: str, obj: Mapping[str, Any], *, initial: bool) -> None:
        app = tracked_app(obj, self.control_namespace)
        if app is None:
            return
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        if kind == "DELETED":
            self._seen.pop(uid, None)
            self.on_change(app)
            return
        mark = fingerprint(obj)
        before = self._seen.get(uid)
        self._seen[uid] = mark
        if not initial and before != mark:
            self.on_change(app)

    def _run(self, api_version: str, kind: str, namespace: str | None) -> None:
        while not self._stop.is_set():
            try:
                resource = self.dyn.resources.get(api_version=api_version, kind=kind)
                listing = self.dyn.get(resource, namespace=namespace, _request_timeout=60).to_dict()
                for item in listing.get("items") or []:
                    self._event("ADDED", item, initial=True)
                version = (listing.get("metadata") or {}).get("resourceVersion")
                while not self._stop.is_set():
                    for event in self.dyn.watch(resource, namespace=namespace, resource_version=version,
                                                timeout=WATCH_TIMEOUT_SECONDS):
                        raw = event.get("raw_object") or {}
                        if event.get("type") == "ERROR":
                            raise ApiException(status=int(raw.get("code") or GONE))
                        version = (raw.get("metadata") or {}).get("resourceVersion") or version
                        self._event(str(event.get("type")), raw, initial=False)
                        if self._stop.is_set():
                            return
            except ApiException as exc:
                if exc.status != GONE:
                    log.info("gitops: watch failed, retrying", kind=kind, api_version=api_version,
                             error=str(exc)[:200])
                    self._stop.wait(RETRY_SECONDS)
            except Exception as exc:  # noqa: BLE001 - a watch thread must not die silently
                log.info("gitops: watch failed, retrying", kind=kind, api_version=api_version,
                         error=str(exc)[:200])
                self._stop.wait(RETRY_SECONDS)
