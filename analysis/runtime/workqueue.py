"""A keyed, de-duplicating, delay-aware asyncio work queue (client-go's workqueue, in small).

Used by the rollout and analysis handlers: kopf event handlers only ``add`` keys;
a fixed pool of workers takes keys and reconciles them. Why not one kopf daemon
per object: a queue bounds concurrency (1,000 Rollouts do not mean 1,000
concurrent API calls), never processes one key twice at once, coalesces bursts of
events into one reconcile, and needs no finalizer on user objects (kopf daemons
require one, and a finalizer left behind blocks deletion while the controller is
down).

Optionally (``limit_per_group``) at most N keys of one group are in flight at
once, e.g. N AnalysisRuns of one namespace: a tenant whose reconciles are slow
then holds at most N workers, and the other tenants' keys still find one.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass
class WorkQueue(Generic[K]):
    """Keys waiting to be processed, each at most once in the queue and once in flight."""

    _ready: asyncio.Queue[K] = field(default_factory=asyncio.Queue)
    _queued: set[K] = field(default_factory=set)
    _processing: set[K] = field(default_factory=set)
    _dirty_while_processing: set[K] = field(default_factory=set)
    _delayed: list[tuple[float, int, K]] = field(default_factory=list)
    _due: dict[K, float] = field(default_factory=dict)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    _wake_timer: asyncio.Event = field(default_factory=asyncio.Event)
    # Per-group bound (off until limit_per_group): keys in flight per group, and
    # ready keys of a full group, set aside (still "queued") until one of it is done.
    _group_of: Callable[[K], Hashable] | None = None
    _group_limit: int = 0
    _in_flight: dict[Hashable, int] = field(default_factory=dict)
    _parked: dict[Hashable, deque[K]] = field(default_factory=dict)

    def limit_per_group(self, *, group: Callable[[K], Hashable], limit: int) -> None:
        """At most ``limit`` keys with the same ``group(key)`` in flight at once (<= 0: off).

        Call before the workers start.
        """
        self._group_of = group if limit > 0 else None
        self._group_limit = limit

    def add(self, key: K) -> None:
        """Process ``key`` soon. A key already queued is not queued twice."""
        if key in self._processing:
            self._dirty_while_processing.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._ready.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Process ``key`` after ``delay`` seconds (the earliest request wins)."""
        if delay <= 0:
            self.add(key)
            return
        due = time.monotonic() + delay
        if self._due.get(key, float("inf")) <= due:
            return
        self._due[key] = due
        heapq.heappush(self._delayed, (due, next(self._counter), key))
        self._wake_timer.set()

    def __len__(self) -> int:
        return len(self._queued)

    async def get(self) -> K:
        while True:
            key = await self._ready.get()
            if self._group_of is None:
                break
            group = self._group_of(key)
            if self._in_flight.get(group, 0) < self._group_limit:
                self._in_flight[group] = self._in_flight.get(group, 0) + 1
                break
            self._parked.setdefault(group, deque()).append(key)
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        """Mark ``key`` processed; if it changed meanwhile, queue it again."""
        self._processing.discard(key)
        if self._group_of is not None:
            self._group_done(self._group_of(key))
        if key in self._dirty_while_processing:
            self._dirty_while_processing.discard(key)
            self.add(key)

    def _group_done(self, group: Hashable) -> None:
        left = self._in_flight.get(group, 0) - 1
        if left > 0:
            self._in_flight[group] = left
        else:
            self._in_flight.pop(group, None)
        parked = self._parked.get(group)
        if parked:
            # The group has room again: its oldest waiting key goes back in line.
            self._ready.put_nowait(parked.popleft())
            if not parked:
                del self._parked[group]

    async def run_timer(self) -> None:
        """Move delayed keys to the ready queue when they fall due. Runs forever."""
        while True:
            now = time.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                due, _, key = heapq.heappop(self._delayed)
                if self._due.get(key) == due:
                    del self._due[key]
                    self.add(key)
            timeout = self._delayed[0][0] - now if self._delayed else None
            self._wake_timer.clear()
            try:
                await asyncio.wait_for(self._wake_timer.wait(), timeout=timeout)
            except TimeoutError:
                pass


async def run_workers(
    queue: WorkQueue[K],
    handle: Callable[[K], Awaitable[float | None]],
    *,
    workers: int,
    on_error: Callable[[K, BaseException], float],
) -> None:
    """Run ``workers`` tasks forever: take a key, ``handle`` it, requeue as it asks.

    ``handle`` returns the seconds until the key needs another look (or None);
    on an exception ``on_error`` logs it and returns the retry delay.
    """

    async def worker() -> None:
        while True:
            key = await queue.get()
            try:
                again = await handle(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad object must not stop the worker
                again = on_error(key, exc)
            finally:
                queue.done(key)
            if again is not None:
                queue.add_after(key, again)

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    tasks.append(asyncio.create_task(queue.run_timer()))
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
