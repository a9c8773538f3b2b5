"""The shared work queue: de-duplication, no concurrent processing of a key, delays."""

from __future__ import annotations

import asyncio

from common.workqueue import (
    WorkQueue,
    run_workers,
)


def test_a_key_added_twice_is_processed_once() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        seen: list[str] = []

        async def handle(key: str) -> None:
            seen.append(key)

        queue.add("a")
        queue.add("a")
        queue.add("b")
        task = asyncio.create_task(run_workers(queue, handle, workers=2, on_error=lambda k, e: 1.0))
        await asyncio.sleep(0.05)
        task.cancel()
        return seen

    assert sorted(asyncio.run(scenario())) == ["a", "b"]


def test_a_key_changed_while_processing_is_processed_again_afterwards_not_concurrently() -> None:
    async def scenario() -> tuple[int, int]:
        queue: WorkQueue[str] = WorkQueue()
        running = 0
        peak = 0
        calls = 0

        async def handle(key: str) -> None:
            nonlocal running, peak, calls
            running += 1
            calls += 1
            peak = max(peak, running)
            if calls == 1:
                queue.add(key)  # an event arrives mid-reconcile
            await asyncio.sleep(0.02)
            running -= 1

        queue.add("a")
        task = asyncio.create_task(run_workers(queue, handle, workers=4, on_error=lambda k, e: 1.0))
        await asyncio.sleep(0.15)
        task.cancel()
        return calls, peak

    calls, peak = asyncio.run(scenario())
    assert calls == 2
    assert peak == 1


def test_requeue_after_delay_and_earliest_delay_wins() -> None:
    async def scenario() -> list[tuple[str, float]]:
        queue: WorkQueue[str] = WorkQueue()
        loop = asyncio.get_running_loop()
        start = loop.time()
        seen: list[tuple[str, float]] = []

        async def handle(key: str) -> None:
            seen.append((key, loop.time() - start))

        queue.add_after("late", 0.5)
        queue.add_after("late", 0.1)  # earlier request wins
        queue.add_after("later", 0.2)
        task = asyncio.create_task(run_workers(queue, handle, workers=1, on_error=lambda k, e: 1.0))
        await asyncio.sleep(0.35)
        task.cancel()
        return seen

    seen = asyncio.run(scenario())
    assert [k for k, _ in seen] == ["late", "later"]
    assert 0.08 <= seen[0][1] < 0.3


def test_handler_errors_are_retried_after_the_delay_on_error_returns() -> None:
    async def scenario() -> int:
        queue: WorkQueue[str] = WorkQueue()
        attempts = 0

        async def handle(key: str) -> None:
            nonlocal attempts
            attempts += 1
            if attempts < 3:
                raise RuntimeError("transient")

        queue.add("a")
        task = asyncio.create_task(run_workers(queue, handle, workers=1, on_error=lambda k, e: 0.01))
        await asyncio.sleep(0.2)
        task.cancel()
        return attempts

    assert asyncio.run(scenario()) == 3
