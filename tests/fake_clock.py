"""A fake ``common.workqueue.Clock`` for unit tests: time moves only when a test moves it.

Used by tests/test_workqueue.py and tests/test_hardening_fairness.py, so that no
test of the work queue waits on the wall clock. ``settle()`` lets every task
that can run do so (zero-length yields to the event loop, no timers).
"""

from __future__ import annotations

import asyncio

SETTLE_YIELDS = 50


class FakeClock:
    """Monotonic time starting at 0; ``advance`` wakes the waits whose timeout has passed."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        if timeout is None:
            await event.wait()
            return
        if timeout <= 0:
            return
        due: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = (self.now + timeout, due)
        self._timers.append(timer)
        setter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({setter, due}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            setter.cancel()
            self._timers.remove(timer)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for at, due in self._timers:
            if at <= self.now and not due.done():
                due.set_result(None)

    @property
    def pending_timers(self) -> int:
        return len(self._timers)


async def settle() -> None:
    """Let every runnable task run until the loop has nothing left to do but wait."""
    for _ in range(SETTLE_YIELDS):
        await asyncio.sleep(0)


async def advance(clock: FakeClock, seconds: float) -> None:
    """Move ``clock`` forward and let what fell due run."""
    await settle()
    clock.advance(seconds)
    await settle()
