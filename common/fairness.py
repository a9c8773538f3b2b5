"""Bounded concurrency per tenant (namespace) in front of a shared thread pool.

Used by analysis/controller.py for every provider call:

    future = await slots.submit(namespace, measure_pool, _call_provider, task)
    observation = await future

All namespaces share one measurement pool. Without a bound, one namespace with a
few dozen runs against an endpoint that answers slowly fills every thread, and
every other namespace's measurements queue behind it. Here each namespace gets at
most ``limit`` calls in the pool at once; its further calls wait in the event loop
(not in the pool's queue), so another namespace's call still finds a thread. While
a call waits for a slot, its reconcile gives its work-queue worker back
(``worker_released``), so the waiting does not starve other namespaces of workers
either.

A slot is freed when the call ends in its thread, not when the caller stops
waiting for it: a call the controller gave up on still counts against its own
namespace, never against the others. Namespaces without calls leave no state
behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TypeVar

from common.workqueue import worker_released

A = TypeVar("A")
T = TypeVar("T")


@dataclass
class _Gate:
    semaphore: asyncio.Semaphore
    users: int = 0  # callers waiting for a slot or holding one; the gate goes at zero
    held: int = 0  # slots taken by calls whose thread has not ended


@dataclass
class TenantSlots:
    """At most ``limit`` pool calls per tenant at once (``limit`` <= 0: no bound)."""

    limit: int
    _gates: dict[str, _Gate] = field(default_factory=dict)

    async def submit(
        self, tenant: str, pool: Executor, fn: Callable[[A], T], arg: A
    ) -> asyncio.Future[T]:
        """Wait for one of ``tenant``'s slots, start ``fn(arg)`` in ``pool``; its future.

        Cancelling the wait for a slot gives nothing up; cancelling the returned
        future stops a call that has not started yet, and frees its slot at once.
        """
        loop = asyncio.get_running_loop()
        if self.limit <= 0:
            return asyncio.wrap_future(pool.submit(contextvars.copy_context().run, fn, arg), loop=loop)
        gate = self._gates.get(tenant)
        if gate is None:
            gate = self._gates[tenant] = _Gate(semaphore=asyncio.Semaphore(self.limit))
        gate.users += 1
        acquired = False
        try:
            if gate.semaphore.locked():
                async with worker_released():
                    await gate.semaphore.acquire()
                    acquired = True
            else:
                await gate.semaphore.acquire()
                acquired = True
        except BaseException:
            # Cancelled while waiting for the slot, or for a worker after getting it.
            if acquired:
                gate.semaphore.release()
            self._leave(tenant, gate)
            raise
        gate.held += 1
        try:
            # the caller's context (the object its log lines name) goes with the call into the thread
            call = pool.submit(contextvars.copy_context().run, fn, arg)
        except BaseException:
            self._release(tenant, gate)
            raise

        def ended(_: concurrent.futures.Future[T]) -> None:
            # Runs in the pool's thread (or here, if the call already ended).
            try:
                loop.call_soon_threadsafe(self._release, tenant, gate)
            except RuntimeError:
                pass  # the loop is closed: the process is stopping, nobody waits for a slot

        call.add_done_callback(ended)
        return asyncio.wrap_future(call, loop=loop)

    def _release(self, tenant: str, gate: _Gate) -> None:
        gate.held -= 1
        gate.semaphore.release()
        self._leave(tenant, gate)

    def _leave(self, tenant: str, gate: _Gate) -> None:
        gate.users -= 1
        if gate.users == 0 and self._gates.get(tenant) is gate:
            del self._gates[tenant]
