"""Writes to the API server, the domain-free part every controller's kube layer shares.

Used by rollouts/kube/apply.py (and open to analysis/controller.py and the sync
module): the RFC 7386 merge-patch diff that lets a writer skip a write which
changes nothing, the 404/409 tests of an API error, the server's own message
out of an error body, the counted writer behind ``tidegate_api_writes_total``
(the writes a reconcile meant, by kind and verb; the benchmark reads API writes
per step from it), and ``EventDeduper``, which keeps a standing error to one
Event per distinct message per object however often the reconcile retries.

``install_request_counter`` (called by every controller's start-up) wraps the one
choke point every request of the kubernetes client passes through
(``RESTClientObject.request``: typed APIs and the dynamic client alike), so
``controller_clientset_k8s_request_total{kind,verb,status_code}`` (Argo's name)
counts every read and write the controllers make. ``kind`` is the resource of
the URL (``rollouts``, ``replicasets``, ``applications``), ``verb`` Kubernetes'
verb (get, list, watch, create, update, patch, delete), ``status_code`` the HTTP
status or ``error`` when no answer came. kopf's own watch connections use aiohttp
and are not counted. No label carries a name, query or body: nothing secret.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter

T = TypeVar("T")

API_WRITES = Counter(
    "tidegate_api_writes_total", "Writes a reconcile sent to the API server, by kind, verb and answer.",
    ["kind", "verb", "status_code"],
)
API_REQUESTS = Counter(
    "controller_clientset_k8s_request_total",
    "Every request the controllers' kubernetes client sent to the API server (reads and writes).",
    ["kind", "verb", "status_code"],
)
NO_ANSWER = "error"
_WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


CONFLICT, NOT_FOUND = 409, 404
MAX_SERVER_MESSAGE = 1024


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch turning ``old`` into ``new`` (empty when equal)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value is None and key not in old:
            continue
        elif before != value or key not in old:
            patch[key] = value
    return patch


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of an API error; None for anything else."""
    return exc.status if isinstance(exc, ApiException) else None


def is_conflict(exc: BaseException) -> bool:
    """409: the object changed since it was read (or, for a create, already exists)."""
    return status_code(exc) == CONFLICT


def is_not_found(exc: BaseException) -> bool:
    return status_code(exc) == NOT_FOUND


def server_message(exc: ApiException, limit: int = MAX_SERVER_MESSAGE) -> str:
    """The ``message`` of the Status the API server answered with (else its reason), clipped."""
    try:
        text = str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        text = str(exc.reason)
    return text[:limit]


class CountedWriter:
    """Sends writes and counts each answer by kind, verb and status code.

    ``writes`` counts this writer's requests that the server answered (a reconcile
    reports it; the handler tells a status-only reconcile from the rest by it).
    """

    def __init__(self, counter: Counter = API_WRITES) -> None:
        self._counter = counter
        self.writes = 0

    def count(self, kind: str, verb: str, code: int = 200) -> None:
        self.writes += 1
        self._counter.labels(kind=kind, verb=verb, status_code=str(code)).inc()

    def send(self, kind: str, verb: str, call: Callable[[], T], *, code: int = 200,
             count_errors: bool = False) -> T:
        """``call()``, counted with ``code`` when it succeeds.

        With ``count_errors`` a refused request is counted too, under the server's
        code (a create answered 409 still tells the benchmark a request went out).
        """
        try:
            result = call()
        except ApiException as exc:
            if count_errors:
                self.count(kind, verb, exc.status or 0)
            raise
        self.count(kind, verb, code)
        return result


def request_labels(method: str, url: str) -> tuple[str, str]:
    """(kind, verb) of one API request: the resource of its path and Kubernetes' verb.

    ``/api/v1/namespaces/a/pods/x`` is ``pods``; ``/apis/g/v/namespaces/a/rollouts/r/status``
    is ``rollouts`` (a subresource names its parent); a GET without a name is ``list``,
    with ``watch=true`` ``watch``.
    """
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if segments[:1] == ["api"]:
        rest = segments[2:]
    elif segments[:1] == ["apis"]:
        rest = segments[3:]
    else:
        return ("other", method.lower())
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]  # a namespaced resource: drop "namespaces/<ns>"
    if not rest:
        return ("discovery", method.lower())
    kind = rest[0]
    upper = method.upper()
    if upper in _WRITE_VERBS:
        return kind, _WRITE_VERBS[upper]
    if "true" in parse_qs(parts.query).get("watch", []):
        return kind, "watch"
    return kind, "get" if len(rest) >= 2 else "list"


def install_request_counter(counter: Counter = API_REQUESTS) -> None:
    """Count every request of the kubernetes client (idempotent; once per process).

    Wraps ``kubernetes.client.rest.RESTClientObject.request``, the single method
    every ApiClient (typed or dynamic) sends through.
    """
    from kubernetes.client import rest

    original = rest.RESTClientObject.request
    if getattr(original, "_tidegate_counted", False):
        return

    @functools.wraps(original)
    def counted(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        kind, verb = request_labels(method, url)
        try:
            response = original(self, method, url, *args, **kwargs)
        except ApiException as exc:
            counter.labels(kind=kind, verb=verb, status_code=str(exc.status or NO_ANSWER)).inc()
            raise
        except Exception:
            counter.labels(kind=kind, verb=verb, status_code=NO_ANSWER).inc()
            raise
        counter.labels(kind=kind, verb=verb, status_code=str(getattr(response, "status", "") or NO_ANSWER)).inc()
        return response

    counted._tidegate_counted = True  # type: ignore[attr-defined]
    rest.RESTClientObject.request = counted


ObjectKey = tuple[str, str, str]
"""(namespace, name, uid) of the object an Event is about."""


def object_key(involved: Mapping[str, Any]) -> ObjectKey:
    meta = involved.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""), str(meta.get("uid") or ""))


class EventDeduper:
    """One Event per distinct message per object and reason, not one per retry.

    Remembers the last message posted for each (object, reason); ``should_post``
    is False while it repeats. ``clear`` forgets an object once its error is gone,
    so the same error coming back later is reported again. Bounded (least recently
    used first out) and thread-safe: reconciles run in a pool.
    """

    def __init__(self, max_objects: int = 10_000) -> None:
        self._last: OrderedDict[ObjectKey, dict[str, str]] = OrderedDict()
        self._max = max_objects
        self._lock = threading.Lock()

    def should_post(self, involved: Mapping[str, Any], reason: str, message: str) -> bool:
        """True (and remembered) when ``message`` is new for this object and reason."""
        key = object_key(involved)
        with self._lock:
            messages = self._last.setdefault(key, {})
            self._last.move_to_end(key)
            if messages.get(reason) == message:
                return False
            messages[reason] = message
            while len(self._last) > self._max:
                self._last.popitem(last=False)
            return True

    def clear(self, involved: Mapping[str, Any]) -> None:
        """Forget every message remembered for this object."""
        if not self._last:
            return
        with self._lock:
            self._last.pop(object_key(involved), None)
