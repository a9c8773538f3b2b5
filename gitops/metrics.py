"""Prometheus metrics of the sync module, named as Argo CD names them (plus our latency).

Updated by gitops/handlers.py (Application events, refresh triggers) and by
gitops/polling.py's ``CountedRepoCache`` (git requests); served by the CLI's
metrics endpoint (``--metrics-port``).

``tidegate_gitops_reconcile_total{result}`` is ours too: every key a worker took,
by what became of it (``reconciled``, ``error``, ``skipped_echo``: our own
status write seen back with nothing due, ``skipped_stale``: a body older than
our last write), so reconciles per commit can be counted; ``argocd_app_reconcile``
is Argo CD's histogram of the full reconciles' durations.

No label carries a credential: a repoURL's user and password are cut
(``repo_label``). An Application's series go when it is deleted.

``tidegate_refresh_to_applied_seconds`` is ours: from a refresh trigger (a
webhook push, a poll that saw a ref move, the refresh annotation) to the sync
operation that applied it finishing, by trigger. ``RefreshClock`` keeps the
pending triggers per Application.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import Counter, Gauge, Histogram

REFRESH_TO_APPLIED = Histogram(
    "tidegate_refresh_to_applied_seconds",
    "Seconds from a refresh trigger (webhook, poll, annotation) to the sync that applied it.",
    ["trigger"], buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300),
)
GIT_REQUESTS = Counter(
    "argocd_git_request_total", "Number of git requests performed.", ["repo", "request_type"],
)
APP_INFO = Gauge(
    "argocd_app_info", "Information about an Application (value 1).",
    ["namespace", "name", "project", "dest_server", "dest_namespace", "repo", "sync_status",
     "health_status", "operation"],
)
APP_SYNC = Counter(
    "argocd_app_sync_total", "Number of application syncs.",
    ["namespace", "name", "project", "phase", "dest_server"],
)

RECONCILES = Counter(
    "tidegate_gitops_reconcile_total", "Application keys taken by a worker, by what became of them.",
    ["result"],
)
RECONCILE_SECONDS = Histogram(
    "argocd_app_reconcile", "Application reconciliation performance in seconds.",
    ["namespace", "dest_server"], buckets=(0.25, 0.5, 1, 2, 4, 8, 16),
)
RECONCILED, RECONCILE_ERROR, SKIPPED_ECHO, SKIPPED_STALE = "reconciled", "error", "skipped_echo", "skipped_stale"

WEBHOOK, POLL, ANNOTATION = "webhook", "poll", "annotation"
PENDING_LIMIT_SECONDS = 3600.0
TERMINAL = ("Succeeded", "Failed", "Error")

Key = tuple[str, str]

_info: dict[Key, tuple[str, ...]] = {}
_finished: dict[Key, str] = {}
_lock = threading.Lock()


def observe_app(key: Key, body: Mapping[str, Any]) -> str | None:
    """Update argocd_app_info and count a sync operation that just finished (its phase returned)."""
    namespace, name = key
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    source: Mapping[str, Any] = spec.get("source") or next(iter(spec.get("sources") or []), {}) or {}
    dest = spec.get("destination") or {}
    op = status.get("operationState") or {}
    labels = (namespace, name, str(spec.get("project") or ""),
              str(dest.get("server") or dest.get("name") or ""), str(dest.get("namespace") or ""),
              repo_label(str(source.get("repoURL") or "")),
              str((status.get("sync") or {}).get("status") or ""),
              str((status.get("health") or {}).get("status") or ""),
              "sync" if body.get("operation") else "")
    with _lock:
        previous = _info.get(key)
        if previous != labels:
            if previous is not None:
                APP_INFO.remove(*previous)
            APP_INFO.labels(*labels).set(1)
            _info[key] = labels
        finished = str(op.get("finishedAt") or "")
        phase = str(op.get("phase") or "")
        if phase in TERMINAL and finished and _finished.get(key) != finished:
            counted = key in _finished  # the first sight after start-up is not a new sync
            if counted:
                APP_SYNC.labels(namespace, name, labels[2], phase, labels[3]).inc()
            _finished[key] = finished
            return phase if counted else None
        if key not in _finished:
            _finished[key] = finished
    return None


def repo_label(url: str) -> str:
    """A repoURL fit for a label: without the user and password an https URL may carry."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid>"
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def forget_app(key: Key) -> None:
    with _lock:
        previous = _info.pop(key, None)
        if previous is not None:
            APP_INFO.remove(*previous)
        _finished.pop(key, None)


class RefreshClock:
    """Pending refresh triggers per Application, observed when a sync applies them.

    ``triggered`` remembers the first trigger not yet applied (and the commit it
    is for, when known); ``observe`` ends it when the Application's last
    operation finished Succeeded after the trigger at that commit (or at any
    commit, when the trigger did not know one), or when the app is already
    synced to that commit with nothing to apply.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._pending: dict[Key, tuple[str, float, str]] = {}
        self._lock = threading.Lock()

    def triggered(self, key: Key, trigger: str, commit: str = "") -> None:
        now = self.clock()
        with self._lock:
            current = self._pending.get(key)
            if current is None or now - current[1] > PENDING_LIMIT_SECONDS or (
                    commit and current[2] and commit != current[2]):
                self._pending[key] = (trigger, now, commit)

    def pending(self, key: Key) -> tuple[str, float, str] | None:
        with self._lock:
            return self._pending.get(key)

    def observe(self, key: Key, body: Mapping[str, Any]) -> float | None:
        """The latency recorded for ``key`` if ``body`` shows its pending trigger applied."""
        with self._lock:
            pending = self._pending.get(key)
        if pending is None:
            return None
        trigger, since, commit = pending
        status = body.get("status") or {}
        op = status.get("operationState") or {}
        revision = str((op.get("syncResult") or {}).get("revision") or "")
        finished = _epoch(str(op.get("finishedAt") or ""))
        applied = (op.get("phase") == "Succeeded" and finished is not None
                   and finished >= int(since) and (not commit or revision == commit))
        sync = status.get("sync") or {}
        if commit and not applied and op.get("phase") != "Running":
            # a commit that changed nothing rendered: no operation, already Synced at it
            applied = sync.get("status") == "Synced" and sync.get("revision") == commit
        if not applied:
            return None
        seconds = max(0.0, self.clock() - since)
        with self._lock:
            if self._pending.get(key) == pending:
                del self._pending[key]
        REFRESH_TO_APPLIED.labels(trigger=trigger).observe(seconds)
        return seconds


def _epoch(stamp: str) -> int | None:
    from datetime import UTC, datetime

    try:
        return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    except ValueError:
        return None
