"""A keyed, de-duplicating, delay-aware asyncio work queue (client-go's workqueue, in small).

Used by the rollout and analysis handlers: kopf event handlers only ``add`` keys;
a fixed pool of workers takes keys and reconciles them. Why not one kopf daemon
per object: a queue bounds concurrency (1,000 Rollouts do not mean 1,000
concurrent API calls), never processes one key twice at once, coalesces bursts of
events into one reconcile, and needs no finalizer on user objects (kopf daemons
require one, and a finalizer left behind blocks deletion while the controller is
down).

A handler that is about to wait for something other than work (the analysis
controller waiting for one of its namespace's measurement slots) wraps the wait
in ``worker_released()``: its worker takes the next key meanwhile, and the
handler gets a worker back before it goes on. So N workers bound the handlers
doing work, not the handlers waiting their turn, and one tenant whose runs queue
behind its own slow endpoints cannot hold every worker.

Time comes from a ``Clock`` (monotonic seconds, and a wait that ends when an
``asyncio.Event`` is set or a timeout passes). Production uses ``SYSTEM_CLOCK``;
unit tests inject a fake clock and move time forward by hand, so no test of the
queue waits on the wall clock.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class Clock(Protocol):
    """Where the queue reads the time and waits for delayed keys to fall due."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        """Return when ``event`` is set or ``timeout`` seconds (None: no limit) have passed."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` and the event loop's timers."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout=timeout)
        except TimeoutError:
            pass


SYSTEM_CLOCK = SystemClock()


@dataclass
class WorkQueue(Generic[K]):
    """Keys waiting to be processed, each at most once in the queue and once in flight."""

    clock: Clock = SYSTEM_CLOCK
    _ready: asyncio.Queue[K] = field(default_factory=asyncio.Queue)
    _queued: set[K] = field(default_factory=set)
    _processing: set[K] = field(default_factory=set)
    _dirty_while_processing: set[K] = field(default_factory=set)
    _delayed: list[tuple[float, int, K]] = field(default_factory=list)
    _due: dict[K, float] = field(default_factory=dict)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    _wake_timer: asyncio.Event = field(default_factory=asyncio.Event)

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
        due = self.clock.monotonic() + delay
        if self._due.get(key, float("inf")) <= due:
            return
        self._due[key] = due
        heapq.heappush(self._delayed, (due, next(self._counter), key))
        self._wake_timer.set()

    def __len__(self) -> int:
        return len(self._queued)

    async def get(self) -> K:
        key = await self._ready.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        """Mark ``key`` processed; if it changed meanwhile, queue it again."""
        self._processing.discard(key)
        if key in self._dirty_while_processing:
            self._dirty_while_processing.discard(key)
            self.add(key)

    async def run_timer(self) -> None:
        """Move delayed keys to the ready queue when they fall due. Runs forever."""
        while True:
            now = self.clock.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                due, _, key = heapq.heappop(self._delayed)
                if self._due.get(key) == due:
                    del self._due[key]
                    self.add(key)
            timeout = self._delayed[0][0] - now if self._delayed else None
            self._wake_timer.clear()
            await self.clock.wait(self._wake_timer, timeout)


class _Lease:
    """One handler's claim on a worker; given up while the handler waits in worker_released().

    Several coroutines of one handler (measurements gathered in parallel) share
    the lease: the worker is given up when the first starts waiting and taken back
    when the last stops. A handler cancelled while taking it back does not hold
    it, and ``end`` frees only what is held, so the count of workers never drifts.
    """

    def __init__(self, capacity: asyncio.Semaphore) -> None:
        self._capacity = capacity
        self._holds = True
        self._waiting = 0
        self._taking_back = asyncio.Lock()

    @asynccontextmanager
    async def released(self) -> AsyncIterator[None]:
        self._waiting += 1
        if self._holds:
            self._holds = False
            self._capacity.release()
        try:
            yield
        finally:
            self._waiting -= 1
            if self._waiting == 0:
                async with self._taking_back:
                    if not self._holds:
                        await self._capacity.acquire()
                        self._holds = True

    def end(self) -> None:
        if self._holds:
            self._holds = False
            self._capacity.release()


_LEASE: contextvars.ContextVar[_Lease | None] = contextvars.ContextVar("worker_lease", default=None)


@asynccontextmanager
async def worker_released() -> AsyncIterator[None]:
    """Inside a handler run by ``run_workers``: let the worker take other keys while
    this block waits, and wait for a worker again before going on. Elsewhere: nothing."""
    lease = _LEASE.get()
    if lease is None:
        yield
        return
    async with lease.released():
        yield


async def run_workers(
    queue: WorkQueue[K],
    handle: Callable[[K], Awaitable[float | None]],
    *,
    workers: int,
    on_error: Callable[[K, BaseException], float],
) -> None:
    """Handle keys forever, at most ``workers`` at once; requeue each as ``handle`` asks.

    ``handle`` returns the seconds until the key needs another look (or None);
    on an exception ``on_error`` logs it and returns the retry delay. A handler
    waiting inside ``worker_released()`` does not count against ``workers``.
    """
    capacity = asyncio.Semaphore(workers)
    running: set[asyncio.Task[None]] = set()

    async def process(key: K, lease: _Lease) -> None:
        _LEASE.set(lease)  # this task's own context: seen by worker_released() in the handler
        try:
            again = await handle(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad object must not stop the workers
            again = on_error(key, exc)
        finally:
            queue.done(key)
            lease.end()
        if again is not None:
            queue.add_after(key, again)

    async def dispatch() -> None:
        while True:
            # The key first, then a worker: an idle dispatcher must not sit on a
            # worker that a handler coming back from worker_released() needs.
            key = await queue.get()
            try:
                await capacity.acquire()
            except BaseException:
                queue.done(key)
                raise
            task = asyncio.create_task(process(key, _Lease(capacity)))
            running.add(task)
            task.add_done_callback(running.discard)

    tasks = [asyncio.create_task(dispatch()), asyncio.create_task(queue.run_timer())]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in (*tasks, *running):
            task.cancel()
