"""dashboard/live.py: the watch thread feeds the cache (list, then watch, re-list after an ERROR), bounds hold.

The kubernetes list function and Watch are stand-ins (``StandInWatch``): they serve
scripted LIST answers and watch events, as the API server would, without a cluster.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dashboard import live
from dashboard.live import (
    CLOSED,
    POD,
    REPLICASET,
    ROLLOUT,
    ROLLOUT_EVENT,
    Cache,
    Target,
    Watcher,
    targets,
)


def obj(name: str, version: str = "1") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml", "resourceVersion": version,
                         "managedFields": [{"manager": "kubectl"}]},
            "status": {"phase": "Healthy"}}


class StandInApi:
    """The ApiClient's only use here: sanitize_for_serialization (the answers are dicts already)."""

    def sanitize_for_serialization(self, value: Any) -> Any:
        return value


class StandInWatch:
    """Serves scripted watch streams in order; records the resourceVersion each started from."""

    def __init__(self, streams: list[list[dict[str, Any]]], stop: threading.Event, started: list[str]) -> None:
        self.streams, self.stop_event, self.started = streams, stop, started

    def stream(self, fn: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        assert kwargs["timeout_seconds"] == live.WATCH_SECONDS
        self.started.append(str(kwargs["resource_version"]))
        if not self.streams:
            self.stop_event.set()
            return
        yield from self.streams.pop(0)

    def stop(self) -> None:
        """Nothing to close."""


def test_list_then_watch_then_relist_after_error() -> None:
    lists = [{"metadata": {"resourceVersion": "10"}, "items": [obj("a"), obj("gone")]},
             {"metadata": {"resourceVersion": "20"}, "items": [obj("a", "12"), obj("b", "13")]}]
    streams = [[{"type": "MODIFIED", "raw_object": obj("a", "11")},
                {"type": "ERROR", "raw_object": {"code": 410}}]]
    started: list[str] = []

    async def main() -> Cache:
        cache = Cache()
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        watcher = Watcher(StandInApi(), Target(ROLLOUT, "ml"), cache, loop, stop,
                          lister=lambda api, target: (lambda **kw: lists.pop(0), {"namespace": "ml"}),
                          watch_factory=lambda: StandInWatch(streams, stop, started))
        watcher.start()
        await asyncio.to_thread(watcher.join, 5)
        await asyncio.sleep(0)  # the changes posted last run now
        return cache

    cache = asyncio.run(main())
    assert started == ["10", "20"]  # watched from each LIST's resourceVersion
    assert [o["metadata"]["name"] for o in cache.items(ROLLOUT)] == ["a", "b"]  # "gone" dropped at the re-list
    assert "managedFields" not in cache.items(ROLLOUT)[0]["metadata"]
    assert ROLLOUT in cache.synced


@pytest.mark.parametrize("namespaces,expected", [
    (["ml"], {(k, "ml") for k in live.ROLLOUT_KINDS} | {(live.APPLICATION, "argocd")}),
    (None, {(k, None) for k in live.ROLLOUT_KINDS} | {(live.APPLICATION, "argocd")}),
], ids=["one-namespace", "all-namespaces"])
def test_targets(namespaces: list[str] | None, expected: set[tuple[str, str | None]]) -> None:
    assert {(t.kind, t.namespace) for t in targets(namespaces, "argocd")} == expected


def test_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "MAX_OBJECTS", 2)
    cache = Cache()
    for name in ("a", "b", "c"):
        cache.apply(POD, live.ADDED, obj(name))
        cache.apply(ROLLOUT_EVENT, live.ADDED, {**obj(name), "involvedObject": {"kind": "Rollout", "name": "x"}})
    assert [o["metadata"]["name"] for o in cache.items(POD)] == ["a", "b"]  # objects: the new one is left out
    assert [o["metadata"]["name"] for o in cache.items(ROLLOUT_EVENT)] == ["b", "c"]  # Events: oldest evicted


def test_slow_subscriber_loses_oldest_events_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "MAX_QUEUE", 2)

    async def main() -> list[live.Event]:
        cache = Cache()
        queue = cache.subscribe()
        for version in ("1", "2", "3"):
            cache.apply(ROLLOUT, live.MODIFIED, obj("m", version))
        cache.close_subscribers()
        return [queue.get_nowait() for _ in range(queue.qsize())]

    events = asyncio.run(main())
    assert events == [("rollout", "ml", "m", "MODIFIED"), CLOSED]


def test_replicaset_owner_is_followed_for_pods() -> None:
    cache = Cache()
    cache.apply(REPLICASET, live.ADDED, {"metadata": {"name": "m-1", "namespace": "ml",
                                                      "ownerReferences": [{"kind": "Rollout", "name": "m"}]}})
    cache.apply(POD, live.ADDED, {"metadata": {"name": "m-1-x", "namespace": "ml",
                                               "ownerReferences": [{"kind": "ReplicaSet", "name": "m-1"}]}})
    sets, pods, runs = cache.rollout_parts("ml", "m")
    assert ([s["kind"] for s in sets], [p["metadata"]["name"] for p in pods], runs) == (["ReplicaSet"], ["m-1-x"], [])
