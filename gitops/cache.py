"""Bounded caches of the reconcile: rendered manifests and comparison verdicts.

Used by gitops/controller.py (``AppController``), from several worker threads at
once, hence the lock. Why: a no-op refresh of an unchanged commit re-rendered
every manifest and re-ran one server-side-apply dry run per object (~500 API
calls for a 500-object app, seconds on a loaded API server); with these caches
it renders nothing and calls nothing:

* rendered manifests keyed by (each source's repo URL, resolved revision and
  spec, the app's name and destination namespace): a commit is immutable, so an
  unchanged one renders the same; Helm-repository charts (a version range is not
  immutable) are never cached;
* the comparison verdict of one object keyed by (cluster, a hash of the manifest
  exactly as sent to the dry run, the live object's resourceVersion, the ignore
  rules and the rollout-owned fields): any edit of the live object changes its
  resourceVersion, any change in Git or in the rules changes the manifest hash or
  the rules, so a hit is the verdict the dry run would give again (Argo CD's
  server-side diff caches the same way).

A hard refresh (``argocd.argoproj.io/refresh: hard``) bypasses both, as Argo CD's
hard refresh bypasses its manifest cache. Both are LRUs with a fixed number of
entries (``RENDER_ENTRIES``, ``VERDICT_ENTRIES``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

RENDER_ENTRIES = 32  # rendered sources: a few MB each at most (500 manifests)
VERDICT_ENTRIES = 50_000  # one small tuple each: ~100 apps of 500 objects

V = TypeVar("V")


class LRU(Generic[V]):
    """A thread-safe least-recently-used map with at most ``size`` entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def digest(value: Any) -> str:
    """A stable hash of a JSON-like value (keys sorted)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
