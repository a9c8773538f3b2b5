"""The shared work queue: de-duplication, no concurrent processing of a key, delays.

Every test runs the real ``run_workers`` on a fake clock (tests/fake_clock.py):
time moves only when the test advances it, so nothing here waits on the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fake_clock import FakeClock, advance, settle

from common.workqueue import (
    SYSTEM_CLOCK,
    WorkQueue,
    run_workers,
)

T = TypeVar("T")


def _never(key: str, exc: BaseException) -> float:
    raise AssertionError(f"{key}: unexpected error {exc!r}")


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


def _workers(queue: WorkQueue[str], handle: Callable[[str], Awaitable[float | None]], *,
             workers: int = 1,
             on_error: Callable[[str, BaseException], float] = _never) -> asyncio.Task[None]:
    return asyncio.create_task(run_workers(queue, handle, workers=workers, on_error=on_error))


def test_the_queue_uses_the_system_clock_unless_given_one() -> None:
    assert WorkQueue[str]().clock is SYSTEM_CLOCK


def test_a_key_added_twice_is_processed_once() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
        seen: list[str] = []

        async def handle(key: str) -> None:
            seen.append(key)

        queue.add("a")
        queue.add("a")
        queue.add("b")
        task = _workers(queue, handle, workers=2)
        await settle()
        await _stop(task)
        return seen

    assert sorted(_run(scenario)) == ["a", "b"]


def test_a_key_changed_while_processing_is_processed_again_afterwards_not_concurrently() -> None:
    async def scenario() -> tuple[int, int, int]:
        queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
        gate = asyncio.Event()
        running = peak = calls = 0

        async def handle(key: str) -> None:
            nonlocal running, peak, calls
            running += 1
            calls += 1
            peak = max(peak, running)
            await gate.wait()
            running -= 1

        queue.add("a")
        task = _workers(queue, handle, workers=4)
        await settle()
        queue.add("a")  # an event arrives mid-reconcile
        await settle()
        calls_while_busy = calls
        gate.set()
        await settle()
        await _stop(task)
        return calls_while_busy, calls, peak

    calls_while_busy, calls, peak = _run(scenario)
    assert (calls_while_busy, calls, peak) == (1, 2, 1)


def test_requeue_after_delay_and_earliest_delay_wins() -> None:
    async def scenario() -> list[tuple[str, float]]:
        clock = FakeClock()
        queue: WorkQueue[str] = WorkQueue(clock=clock)
        seen: list[tuple[str, float]] = []

        async def handle(key: str) -> None:
            seen.append((key, clock.now))

        queue.add_after("late", 5.0)
        queue.add_after("late", 1.0)  # the earlier request wins
        queue.add_after("late", 3.0)  # a later one does not postpone it
        queue.add_after("later", 2.0)
        task = _workers(queue, handle)
        await advance(clock, 0.5)
        assert seen == []
        for _ in range(6):
            await advance(clock, 1.0)
        await _stop(task)
        return seen

    assert _run(scenario) == [("late", 1.5), ("later", 2.5)]


def test_a_delay_of_zero_or_less_queues_at_once() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
        seen: list[str] = []

        async def handle(key: str) -> None:
            seen.append(key)

        queue.add_after("now", 0)
        queue.add_after("past", -1)
        task = _workers(queue, handle)
        await settle()
        await _stop(task)
        return seen

    assert _run(scenario) == ["now", "past"]


def test_the_handlers_answer_requeues_the_key_after_that_many_seconds() -> None:
    async def scenario() -> list[float]:
        clock = FakeClock()
        queue: WorkQueue[str] = WorkQueue(clock=clock)
        seen: list[float] = []

        async def handle(key: str) -> float | None:
            seen.append(clock.now)
            return 30.0 if len(seen) < 3 else None

        queue.add("a")
        task = _workers(queue, handle)
        await settle()
        for _ in range(10):
            await advance(clock, 10.0)
        await _stop(task)
        return seen

    assert _run(scenario) == [0.0, 30.0, 60.0]


def test_handler_errors_are_retried_after_the_delay_on_error_returns() -> None:
    async def scenario() -> list[tuple[float, str]]:
        clock = FakeClock()
        queue: WorkQueue[str] = WorkQueue(clock=clock)
        attempts: list[tuple[float, str]] = []

        async def handle(key: str) -> None:
            attempts.append((clock.now, key))
            if len(attempts) < 3:
                raise RuntimeError("transient")

        queue.add("a")
        task = _workers(queue, handle, on_error=lambda key, exc: 5.0)
        await settle()
        await advance(clock, 4.0)
        assert len(attempts) == 1  # not before the delay
        for _ in range(8):
            await advance(clock, 1.0)
        await _stop(task)
        return attempts

    assert [at for at, _ in _run(scenario)] == [0.0, 5.0, 10.0]


def test_no_more_handlers_run_at_once_than_there_are_workers() -> None:
    async def scenario() -> tuple[int, int]:
        queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
        gate = asyncio.Event()
        running = peak = 0

        async def handle(key: str) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await gate.wait()
            running -= 1

        for i in range(10):
            queue.add(f"k{i}")
        task = _workers(queue, handle, workers=3)
        await settle()
        busy = running
        gate.set()
        await settle()
        await _stop(task)
        return busy, peak

    assert _run(scenario) == (3, 3)
