"""The dashboard's live state: an in-memory cache fed by watches, and the events it pushes.

dashboard/server.py starts one ``Watcher`` thread per kind (Rollouts, ReplicaSets, Pods,
AnalysisRuns in the chosen namespaces, Applications in the app namespace); each lists, then
watches from the list's resourceVersion with a server-side timeout, and re-lists when the
watch expires (410) or fails. Threads hand every change to the event loop
(``loop.call_soon_threadsafe``), where ``Cache`` applies it, records the rollout's weights
and tells subscribers (dashboard/api.py's SSE stream) which rollout or Application changed.
The GET handlers read only this cache; unit tests feed it directly instead of watching.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

ROLLOUT, REPLICASET, POD, ANALYSISRUN, APPLICATION = "rollout", "replicaset", "pod", "analysisrun", "application"
# Events about Rollouts and about AnalysisRuns (views.explain's decision log), watched apart
# (a field selector matches one involvedObject.kind).
ROLLOUT_EVENT, RUN_EVENT = "rollout-event", "analysisrun-event"
EVENT_KINDS = {ROLLOUT_EVENT: "Rollout", RUN_EVENT: "AnalysisRun"}
ROLLOUT_KINDS = (ROLLOUT, REPLICASET, POD, ANALYSISRUN, ROLLOUT_EVENT, RUN_EVENT)
ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
# Items of a LIST carry no kind; the tree and the views read it.
KIND_NAMES = {ROLLOUT: "Rollout", REPLICASET: "ReplicaSet", POD: "Pod", ANALYSISRUN: "AnalysisRun",
              APPLICATION: "Application", ROLLOUT_EVENT: "Event", RUN_EVENT: "Event"}

MAX_OBJECTS = 5000  # per kind: a cluster bigger than this shows a partial view, not an OOM
MAX_SAMPLES = 500  # weightHistory per rollout
MAX_QUEUE = 512  # per SSE subscriber; a stalled browser loses events, never the server's memory
WATCH_SECONDS = 60  # server-side watch timeout: the watch is re-established after it
REQUEST_TIMEOUT = 15.0  # seconds for each LIST
BACKOFF_MAX = 30.0

MSG_WATCH_FAILED = "watch of %s failed (%s); retrying in %.0fs"

Key = tuple[str, str]  # (namespace, name)
Event = tuple[str, str, str, str]  # (event name "rollout"|"application", namespace, name, type)
CLOSED: Event = ("", "", "", "")  # tells a subscriber the server is shutting down
WeightFn = Callable[[Mapping[str, Any], list[dict[str, Any]]], tuple[int | None, int | None]]


def _now() -> str:
    # Milliseconds: several weight changes can fall within one second.
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def trimmed(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without managedFields and the last-applied annotation (memory; never shown)."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if annotations and "kubectl.kubernetes.io/last-applied-configuration" in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items()
                               if k != "kubectl.kubernetes.io/last-applied-configuration"}
    out["metadata"] = meta
    return out


def owner(obj: Mapping[str, Any], kind: str) -> str | None:
    """The name of obj's owner of this kind, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == kind:
            return str(ref.get("name") or "")
    return None


@dataclass
class Cache:
    """The objects the watches saw, by kind and (namespace, name); weight samples per rollout."""

    weights: WeightFn | None = None
    clock: Callable[[], str] = _now
    objects: dict[str, dict[Key, dict[str, Any]]] = field(
        default_factory=lambda: {k: {} for k in (*ROLLOUT_KINDS, APPLICATION)})
    samples: dict[Key, deque[dict[str, Any]]] = field(default_factory=dict)
    subscribers: set[asyncio.Queue[Event]] = field(default_factory=set)
    synced: set[str] = field(default_factory=set)  # kinds whose first LIST arrived
    watching: set[str] = field(default_factory=set)  # kinds a Watcher feeds (empty in unit tests)

    # --- reading ---------------------------------------------------------------------------

    def items(self, kind: str) -> list[dict[str, Any]]:
        return [self.objects[kind][k] for k in sorted(self.objects[kind])]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects[kind].get((namespace, name))

    def children(self, kind: str, namespace: str, owner_kind: str, owner_name: str) -> list[dict[str, Any]]:
        return [o for (ns, _), o in sorted(self.objects[kind].items())
                if ns == namespace and owner(o, owner_kind) == owner_name]

    def rollout_parts(self, namespace: str, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                 list[dict[str, Any]]]:
        """The rollout's ReplicaSets, their pods and its AnalysisRuns, from the cache."""
        sets = self.children(REPLICASET, namespace, "Rollout", name)
        pods = [p for rs in sets for p in self.children(POD, namespace, "ReplicaSet", key_of(rs)[1])]
        runs = self.children(ANALYSISRUN, namespace, "Rollout", name)
        return sets, pods, runs

    def watched(self, kind: str) -> bool:
        return kind in self.watching

    def events(self, namespace: str, name: str, runs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The Events about this rollout and about its AnalysisRuns."""
        run_names = {key_of(r)[1] for r in runs}
        return [*(e for (ns, _), e in self.objects[ROLLOUT_EVENT].items()
                  if ns == namespace and (e.get("involvedObject") or {}).get("name") == name),
                *(e for (ns, _), e in self.objects[RUN_EVENT].items()
                  if ns == namespace and (e.get("involvedObject") or {}).get("name") in run_names)]

    def history(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return list(self.samples.get((namespace, name), ()))

    # --- writing (on the event loop) ---------------------------------------------------------

    def apply(self, kind: str, kind_event: str, obj: Mapping[str, Any]) -> None:
        """One watch event: update the cache, sample weights, tell subscribers what changed."""
        key = key_of(obj)
        store = self.objects[kind]
        if kind_event == DELETED:
            store.pop(key, None)
        elif kind in EVENT_KINDS and key not in store and len(store) >= MAX_OBJECTS:
            store.pop(next(iter(store)))  # Events: the oldest seen goes first
        if kind_event != DELETED and (key in store or len(store) < MAX_OBJECTS):
            stored = trimmed(obj)
            stored.setdefault("kind", KIND_NAMES[kind])
            store[key] = stored
        self._changed(kind, kind_event, obj)

    def replace(self, kind: str, items: Iterable[Mapping[str, Any]]) -> None:
        """A fresh LIST: the objects not in it were deleted while no watch ran."""
        fresh = {key_of(o): o for o in items}
        for key in [k for k in self.objects[kind] if k not in fresh]:
            gone = self.objects[kind].pop(key)
            self._changed(kind, DELETED, gone)
        for key, obj in fresh.items():
            self.apply(kind, MODIFIED if key in self.objects[kind] else ADDED, obj)
        self.synced.add(kind)

    def _changed(self, kind: str, kind_event: str, obj: Mapping[str, Any]) -> None:
        namespace, name = key_of(obj)
        if kind == APPLICATION:
            self._publish(("application", namespace, name, kind_event))
            return
        rollout = self._rollout_of(kind, obj)
        if rollout is None:
            return
        if kind == ROLLOUT and kind_event == DELETED:
            self.samples.pop((namespace, rollout), None)
        else:
            self._sample(namespace, rollout)
        self._publish(("rollout", namespace, rollout, kind_event if kind == ROLLOUT else MODIFIED))

    def _rollout_of(self, kind: str, obj: Mapping[str, Any]) -> str | None:
        if kind == ROLLOUT:
            return key_of(obj)[1]
        if kind in (REPLICASET, ANALYSISRUN):
            return owner(obj, "Rollout")
        if kind == ROLLOUT_EVENT:
            return str((obj.get("involvedObject") or {}).get("name") or "") or None
        if kind == RUN_EVENT:
            run = self.get(ANALYSISRUN, key_of(obj)[0], str((obj.get("involvedObject") or {}).get("name") or ""))
            return owner(run, "Rollout") if run is not None else None
        replica_set = owner(obj, "ReplicaSet")
        if replica_set is None:
            return None
        found = self.get(REPLICASET, key_of(obj)[0], replica_set)
        return owner(found, "Rollout") if found is not None else None

    def _sample(self, namespace: str, name: str) -> None:
        rollout = self.get(ROLLOUT, namespace, name)
        if rollout is None or self.weights is None:
            return
        set_weight, actual = self.weights(rollout, self.rollout_parts(namespace, name)[0])
        series = self.samples.setdefault((namespace, name), deque(maxlen=MAX_SAMPLES))
        if series and (series[-1]["setWeight"], series[-1]["actualWeight"]) == (set_weight, actual):
            return
        series.append({"time": self.clock(), "setWeight": set_weight, "actualWeight": actual})

    def _publish(self, event: Event) -> None:
        for queue in list(self.subscribers):
            if queue.full():  # a stalled reader: drop its oldest event rather than grow
                queue.get_nowait()
            queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=MAX_QUEUE)
        self.subscribers.add(queue)
        return queue

    def close_subscribers(self) -> None:
        """Server shutdown: every SSE stream ends now instead of at the shutdown timeout."""
        self._publish(CLOSED)

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self.subscribers.discard(queue)


# --- the watches (threads: the kubernetes client blocks) ---------------------------------------

@dataclass(frozen=True)
class Target:
    """One kind to watch in one namespace (None: all namespaces)."""

    kind: str
    namespace: str | None


def _list_function(api_client: Any, target: Target) -> tuple[Callable[..., Any], dict[str, Any]]:
    from kubernetes import client

    ns = target.namespace
    if target.kind in (ROLLOUT, ANALYSISRUN, APPLICATION):
        custom = client.CustomObjectsApi(api_client)
        plural = {ROLLOUT: "rollouts", ANALYSISRUN: "analysisruns", APPLICATION: "applications"}[target.kind]
        base = {"group": "argoproj.io", "version": "v1alpha1", "plural": plural}
        if ns is None:
            return custom.list_cluster_custom_object, base
        return custom.list_namespaced_custom_object, {**base, "namespace": ns}
    if target.kind == REPLICASET:
        apps = client.AppsV1Api(api_client)
        if ns is None:
            return apps.list_replica_set_for_all_namespaces, {}
        return apps.list_namespaced_replica_set, {"namespace": ns}
    core = client.CoreV1Api(api_client)
    if target.kind in EVENT_KINDS:
        selector = {"field_selector": f"involvedObject.kind={EVENT_KINDS[target.kind]}"}
        if ns is None:
            return core.list_event_for_all_namespaces, selector
        return core.list_namespaced_event, {**selector, "namespace": ns}
    if ns is None:
        return core.list_pod_for_all_namespaces, {}
    return core.list_namespaced_pod, {"namespace": ns}


class Watcher(threading.Thread):
    """List then watch one Target forever (until stopped), posting changes to the cache's loop."""

    def __init__(self, api_client: Any, target: Target, cache: Cache, loop: asyncio.AbstractEventLoop,
                 stop: threading.Event, *, lister: Callable[[Any, Target], tuple[Callable[..., Any],
                                                                                 dict[str, Any]]] | None = None,
                 watch_factory: Callable[[], Any] | None = None) -> None:
        super().__init__(name=f"watch-{target.kind}-{target.namespace or 'all'}", daemon=True)
        self.api_client, self.target, self.cache, self.loop, self.stop = api_client, target, cache, loop, stop
        # Stand-ins in unit tests; the kubernetes client's list functions and Watch otherwise.
        self.lister = lister or _list_function
        self.watch_factory = watch_factory

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def run(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                self._list_and_watch()
                backoff = 1.0
            except Exception as exc:  # any failure: the watch is re-established after a pause
                log.warning(MSG_WATCH_FAILED, self.name, type(exc).__name__, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _new_watch(self) -> Any:
        if self.watch_factory is not None:
            return self.watch_factory()
        from kubernetes import watch

        return watch.Watch()

    def _list_and_watch(self) -> None:
        fn, kwargs = self.lister(self.api_client, self.target)
        listed = self.api_client.sanitize_for_serialization(fn(**kwargs, _request_timeout=REQUEST_TIMEOUT))
        version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        self._post(self.cache.replace, self.target.kind,
                   [trimmed(o) for o in (listed.get("items") or [])[:MAX_OBJECTS]])
        while not self.stop.is_set():
            stream = self._new_watch()
            for event in stream.stream(fn, **kwargs, resource_version=version, timeout_seconds=WATCH_SECONDS,
                                       _request_timeout=WATCH_SECONDS + 10):
                raw = event.get("raw_object") or {}
                if event.get("type") == "ERROR":
                    return  # e.g. 410 Gone: the caller re-lists
                version = str((raw.get("metadata") or {}).get("resourceVersion") or version)
                self._post(self.cache.apply, self.target.kind, str(event.get("type")), trimmed(raw))
                if self.stop.is_set():
                    stream.stop()
                    return


def targets(namespaces: list[str] | None, app_namespace: str) -> list[Target]:
    """What to watch: the rollout kinds in each namespace (or all), Applications in app_namespace."""
    scopes: list[str | None] = list(namespaces) if namespaces is not None else [None]
    return [*(Target(kind, ns) for ns in scopes for kind in ROLLOUT_KINDS), Target(APPLICATION, app_namespace)]
