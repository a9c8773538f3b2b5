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

The same watch is also the live-state cache a reconcile reads instead of one
``GET`` per object (Argo CD's cluster cache): ``lookup`` answers from the last
object each watch event carried, once that kind's initial list is done (before
it, or for a kind not watched, the caller reads from the API server). Memory is
bounded by what the Applications manage: only objects carrying a tracking id
are kept, whole (``managedFields`` included: the diff's ``managedFieldsManagers``
rules and ``app explain``'s field owners read them); of the other objects of a
watched kind only their keys are kept, so "not there" needs no ``GET`` either.
``applied`` puts the object our own apply returned into the cache at once (the
watch delivers it a little later) and remembers its resourceVersion: the watch
event of our own write then updates the cache without queueing the Application
again (the sync that made the change is already looking at it).

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
from gitops.plan import (
    TRACKING_ID_ANNOTATION,
    ResourceKey,
    app_of_instance,
    key_of,
    parse_tracking_id,
)

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


CacheKey = tuple[str, ResourceKey]  # (apiVersion, key): a GET of another version is another object
EXPECTED_LIMIT = 10_000  # own applies whose watch event has not come back yet (bounded: events can be lost)


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _newer(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True if ``a`` is a later version than ``b`` (resourceVersions compared as numbers when they are)."""
    va, vb = _version(a), _version(b)
    return va.isdigit() and vb.isdigit() and int(va) > int(vb)


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
        # The live-state cache: tracked objects whole, the others' keys only (see the module doc).
        self._objects: dict[CacheKey, dict[str, Any]] = {}
        self._present: set[CacheKey] = set()
        self._listed: set[tuple[str, str, str | None]] = set()  # (apiVersion, kind, namespace or None)
        self._expected: dict[CacheKey, str] = {}  # our own applies: key -> the resourceVersion written
        self._cache_lock = threading.Lock()

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

    def lookup(self, api_version: str, key: ResourceKey) -> tuple[bool, dict[str, Any] | None]:
        """(known, object): known is False when the caller must ask the API server (kind not
        listed yet, or an untracked object, whose body is not kept). The object is shared:
        callers never mutate it."""
        with self._cache_lock:
            listed = ((api_version, key.kind, None) in self._listed
                      or (api_version, key.kind, key.namespace or None) in self._listed)
            if not listed:
                return False, None
            ckey = (api_version, key)
            obj = self._objects.get(ckey)
            if obj is not None:
                return True, obj
            return (False, None) if ckey in self._present else (True, None)

    def applied(self, obj: Mapping[str, Any]) -> None:
        """Our own apply's result: cached now, and its watch event will not queue the app."""
        api_version = str(obj.get("apiVersion") or "")
        version = _version(obj)
        if not api_version or not version:
            return
        ckey = (api_version, key_of(obj))
        with self._cache_lock:
            if (api_version, ckey[1].kind, None) not in self._listed and (
                    api_version, ckey[1].kind, ckey[1].namespace or None) not in self._listed:
                return  # not watched (yet): nothing to keep in step
            current = self._objects.get(ckey)
            if current is not None and not _newer(obj, current):
                return  # its watch event came first (or a newer one): nothing to expect
            self._store(ckey, obj)
            if len(self._expected) >= EXPECTED_LIMIT:
                self._expected.clear()  # lost events: at worst one extra reconcile each
            self._expected[ckey] = version

    def _store(self, ckey: CacheKey, obj: Mapping[str, Any]) -> None:
        """Keep ``obj`` unless the cache has a newer one (the caller holds the lock)."""
        current = self._objects.get(ckey)
        if current is not None and _newer(current, obj):
            return
        self._present.add(ckey)
        if tracked_app(obj, self.control_namespace) is not None:
            self._objects[ckey] = dict(obj)
        else:
            self._objects.pop(ckey, None)

    def _cache(self, kind: str, api_version: str, obj: Mapping[str, Any]) -> bool:
        """Update the cache from a watch event; True if it is the echo of our own apply."""
        if not obj.get("kind") or not (obj.get("metadata") or {}).get("name"):
            return False
        ckey = (api_version, key_of({**obj, "apiVersion": api_version}))
        with self._cache_lock:
            if kind == "DELETED":
                self._objects.pop(ckey, None)
                self._present.discard(ckey)
                self._expected.pop(ckey, None)
                return False
            self._store(ckey, obj)
            expected = self._expected.get(ckey)
            if expected is not None and expected == _version(obj):
                del self._expected[ckey]
                return True
            return False

    def _relisted(self, api_version: str, kind: str, namespace: str | None,
                  items: list[dict[str, Any]]) -> None:
        """A (re-)list: the kind's cache is exactly the list now (deletions missed meanwhile go)."""
        keys = set()
        with self._cache_lock:
            for item in items:
                ckey = (api_version, key_of({**item, "apiVersion": api_version, "kind": kind}))
                keys.add(ckey)
                self._objects.pop(ckey, None)
                self._present.discard(ckey)
                self._store(ckey, {**item, "apiVersion": api_version, "kind": kind})
            for ckey in [k for k in self._present if k[0] == api_version and k[1].kind == kind
                         and (namespace is None or k[1].namespace == namespace) and k not in keys]:
                self._present.discard(ckey)
                self._objects.pop(ckey, None)
            self._listed.add((api_version, kind, namespace))

    def _event(self, kind: str, obj: Mapping[str, Any], *, initial: bool, own: bool = False) -> None:
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
        if not initial and not own and before != mark:
            self.on_change(app)

    def _run(self, api_version: str, kind: str, namespace: str | None) -> None:
        while not self._stop.is_set():
            try:
                resource = self.dyn.resources.get(api_version=api_version, kind=kind)
                listing = self.dyn.get(resource, namespace=namespace, _request_timeout=60).to_dict()
                items = [{**item, "apiVersion": api_version, "kind": kind} for item in listing.get("items") or []]
                for item in items:
                    self._event("ADDED", item, initial=True)
                self._relisted(api_version, kind, namespace, items)
                version = (listing.get("metadata") or {}).get("resourceVersion")
                while not self._stop.is_set():
                    for event in self.dyn.watch(resource, namespace=namespace, resource_version=version,
                                                timeout=WATCH_TIMEOUT_SECONDS):
                        raw = event.get("raw_object") or {}
                        if event.get("type") == "ERROR":
                            raise ApiException(status=int(raw.get("code") or GONE))
                        version = (raw.get("metadata") or {}).get("resourceVersion") or version
                        own = self._cache(str(event.get("type")), api_version, raw)
                        self._event(str(event.get("type")), raw, initial=False, own=own)
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


class CachedPort:
    """A ``GitopsPort`` whose reads come from a ``DriftWatcher``'s cache when it knows the answer.

    Built by gitops/handlers.py (the controller's own cluster) and gitops/clusters.py
    (each destination cluster, around its port). A miss is the inner port's ``GET``;
    every other call goes to the inner port, and a real (not dry-run) apply's result
    is handed to the watcher (``applied``).
    """

    def __init__(self, inner: Any, watcher: DriftWatcher) -> None:
        self.inner = inner
        self.watcher = watcher

    def namespaced(self, api_version: str, kind: str) -> bool:
        return bool(self.inner.namespaced(api_version, kind))

    def cached(self, api_version: str, key: ResourceKey) -> tuple[bool, dict[str, Any] | None]:
        """The cache's answer only (``DriftWatcher.lookup``): never an API call."""
        return self.watcher.lookup(api_version, key)

    def get(self, api_version: str, key: ResourceKey) -> dict[str, Any] | None:
        known, obj = self.watcher.lookup(api_version, key)
        if known:
            return obj
        out: dict[str, Any] | None = self.inner.get(api_version, key)
        return out

    def apply(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = self.inner.apply(manifest, dry_run=dry_run)
        if not dry_run:
            self.watcher.applied(out)
        return out

    def delete(self, api_version: str, key: ResourceKey, *, propagation: str = "Foreground") -> None:
        self.inner.delete(api_version, key, propagation=propagation)

    def patch_application(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.inner.patch_application(namespace, name, patch)
        return out
