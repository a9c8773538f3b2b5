"""Issue 7 defect 2: one namespace's slow provider must not delay another namespace's measurements.

Run by pytest, no cluster. The real Controller (analysis/controller.py), its
per-namespace slots (common/fairness.py) and the real work queue
(common/workqueue.py) run on a real thread pool; the providers
are fakes that block on a threading.Event, which stands in for an endpoint that
never finishes answering. Assertions are on the order of events, not on timings,
except the measurement safety net, which is shortened to a fraction of a second.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fake_clock import FakeClock, settle

from analysis.config import DEFAULT_NAMESPACE_LIMIT, AnalysisConfig
from analysis.controller import MEASUREMENT_DEADLINE_SECONDS, Controller
from analysis.providers.base import MeasurementContext
from analysis.providers.deadline import LONGEST_DEADLINE_SECONDS
from analysis.run import Observation
from common.fairness import TenantSlots
from common.workqueue import (
    WorkQueue,
    run_workers,
    worker_released,
)

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
SLOW, HEALTHY = "tenant-slow", "tenant-healthy"
POOL_THREADS = 4
LIMIT = 2
# How long a scenario may wait for something that must happen "at once"; only
# reached when the behaviour under test is broken.
PATIENCE_SECONDS = 5.0
METRIC: dict[str, Any] = {
    "name": "latency",
    "provider": {"prometheus": {"address": "http://prom:9090", "query": "up"}},
    "successCondition": "result >= 0.95",
}


@dataclass
class ManyRunsKube:
    """KubePort for any number of runs: applies each status patch to a copy, bumps resourceVersion."""

    patched: list[tuple[str, str]] = field(default_factory=list)
    bodies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def read_secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return None

    def patch_run(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        self.patched.append((namespace, name))
        body = self.bodies[(namespace, name)]
        body["status"] = {**(body.get("status") or {}), **patch["status"]}
        body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(body)

    def delete_run(self, namespace: str, name: str) -> None:
        return None

    def post_event(self, involved: Mapping[str, Any], *, event_type: str, reason: str,
                   message: str) -> None:
        return None


@dataclass
class BlockingProvider:
    """In the slow namespace: blocks until ``release`` is set. Elsewhere: answers at once."""

    release: threading.Event = field(default_factory=threading.Event)
    log: list[str] = field(default_factory=list)
    running: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    kind: str = "Fake"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, ctx: MeasurementContext) -> Observation:
        with self._lock:
            self.running[ctx.namespace] = self.running.get(ctx.namespace, 0) + 1
            self.peak[ctx.namespace] = max(self.peak.get(ctx.namespace, 0),
                                           self.running[ctx.namespace])
            self.log.append(f"start {ctx.namespace}/{ctx.run_name}")
        if ctx.namespace == SLOW:
            self.release.wait(timeout=30)
        with self._lock:
            self.running[ctx.namespace] -= 1
        return Observation(value=0.97)

    def resume(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation:
        raise AssertionError("not used")

    def terminate(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation:
        raise AssertionError("not used")

    def garbage_collect(self, ctx: MeasurementContext, limit: int) -> None:
        return None


def run_body(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                     "resourceVersion": "10"},
        "spec": {"metrics": [METRIC]},
    }


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="measure")
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


def _busy(slots: TenantSlots, tenant: str) -> int:
    """How many of ``tenant``'s calls hold a slot now (their thread has not ended)."""
    gate = slots._gates.get(tenant)
    return 0 if gate is None else gate.held


def controller_for(pool: ThreadPoolExecutor, provider: BlockingProvider, kube: ManyRunsKube, *,
                   deadline: float = MEASUREMENT_DEADLINE_SECONDS, limit: int = LIMIT) -> Controller:
    return Controller(kube=kube, providers=lambda metric: provider, measure_pool=pool,
                      api_pool=ThreadPoolExecutor(2), clock=lambda: T0,
                      measurement_deadline=deadline, slots=TenantSlots(limit=limit))


async def reconcile(controller: Controller, kube: ManyRunsKube, namespace: str, name: str) -> str:
    body = run_body(namespace, name)
    kube.bodies[(namespace, name)] = copy.deepcopy(body)
    await controller.reconcile((namespace, name), body)
    return name


def test_a_namespace_of_hanging_measurements_does_not_delay_another_namespace(
    pool: ThreadPoolExecutor,
) -> None:
    """Given more hanging runs in one namespace than the pool has threads,
    when a run of another namespace becomes due,
    then it is measured and written while the hanging ones still hang."""
    provider, kube = BlockingProvider(), ManyRunsKube()
    controller = controller_for(pool, provider, kube)

    async def scenario() -> list[str]:
        order: list[str] = []
        slow = [asyncio.create_task(reconcile(controller, kube, SLOW, f"slow-{i}"))
                for i in range(3 * POOL_THREADS)]
        await asyncio.sleep(0.1)  # every slow run has asked for its measurement
        healthy = asyncio.create_task(reconcile(controller, kube, HEALTHY, "healthy"))
        done, _ = await asyncio.wait({healthy}, timeout=PATIENCE_SECONDS)
        order.append("healthy written" if done else "healthy still waiting")
        order.append("slow released")
        provider.release.set()
        await asyncio.gather(healthy, *slow)
        return order

    order = asyncio.run(scenario())

    assert order == ["healthy written", "slow released"]
    assert (HEALTHY, "healthy") in kube.patched
    # The slow namespace never held more than its share of the pool.
    assert provider.peak[SLOW] == LIMIT
    assert len([n for n, _ in kube.patched if n == SLOW]) == 3 * POOL_THREADS  # all measured later


def test_the_safety_net_charges_a_thread_it_left_behind_to_its_own_namespace(
    pool: ThreadPoolExecutor,
) -> None:
    """Given a provider call that outlives the controller's safety net,
    then its run gets an Error measurement, its thread keeps one of its namespace's
    slots until the call returns (so that namespace cannot pile up stuck threads),
    and another namespace still measures at once."""
    provider, kube = BlockingProvider(), ManyRunsKube()
    controller = controller_for(pool, provider, kube, deadline=0.2, limit=1)

    async def scenario() -> tuple[int, int]:
        await reconcile(controller, kube, SLOW, "stuck")
        held_after_net = _busy(controller.slots, SLOW)
        await reconcile(controller, kube, SLOW, "queued-behind")
        await reconcile(controller, kube, HEALTHY, "healthy")
        provider.release.set()
        for _ in range(100):  # the freed slot comes back through the event loop
            if _busy(controller.slots, SLOW) == 0:
                break
            await asyncio.sleep(0.01)
        return held_after_net, _busy(controller.slots, SLOW)

    held_after_net, held_at_end = asyncio.run(scenario())

    assert held_after_net == 1
    assert held_at_end == 0
    stuck = kube.bodies[(SLOW, "stuck")]["status"]["metricResults"][0]["measurements"][0]
    assert stuck["phase"] == "Error"
    assert stuck["message"] == "Fake provider did not answer within 0.2s"
    queued = kube.bodies[(SLOW, "queued-behind")]["status"]["metricResults"][0]["measurements"][0]
    assert queued["phase"] == "Error"
    assert queued["message"].startswith(
        f"Fake measurement did not start within 0.2s: namespace {SLOW} already has 1 provider calls")
    healthy = kube.bodies[(HEALTHY, "healthy")]["status"]["metricResults"][0]["measurements"][0]
    assert healthy["phase"] == "Successful"
    # Only the stuck call ever reached the provider in the slow namespace.
    assert [line for line in provider.log if SLOW in line] == [f"start {SLOW}/stuck"]


def test_providers_give_up_before_the_safety_net() -> None:
    # A thread the safety net leaves behind ends within the provider's own deadline.
    assert LONGEST_DEADLINE_SECONDS < MEASUREMENT_DEADLINE_SECONDS
    assert AnalysisConfig().namespace_limit == DEFAULT_NAMESPACE_LIMIT > 0


def test_slots_leave_no_state_for_namespaces_without_calls(pool: ThreadPoolExecutor) -> None:
    slots = TenantSlots(limit=LIMIT)

    async def scenario() -> None:
        futures = [await slots.submit(f"ns-{i}", pool, abs, -i) for i in range(20)]
        assert [await f for f in futures] == list(range(20))
        await asyncio.sleep(0.05)  # releases arrive through call_soon_threadsafe

    asyncio.run(scenario())
    assert slots._gates == {}


def test_runs_waiting_for_their_namespace_slots_do_not_hold_the_workers(
    pool: ThreadPoolExecutor,
) -> None:
    """Given more hanging runs in one namespace than there are work-queue workers,
    when a run of another namespace is queued,
    then a worker reconciles it while the hanging ones still hang: the slow
    namespace's runs that wait for one of its slots gave their workers back."""
    provider, kube = BlockingProvider(), ManyRunsKube()
    controller = controller_for(pool, provider, kube)
    workers = 3

    async def scenario() -> list[str]:
        queue: WorkQueue[tuple[str, str]] = WorkQueue(clock=FakeClock())
        order: list[str] = []

        async def handle(key: tuple[str, str]) -> None:
            await controller.reconcile(key, copy.deepcopy(kube.bodies[key]))
            if key[0] == HEALTHY:
                order.append("healthy written")

        for i in range(4 * workers):
            kube.bodies[(SLOW, f"slow-{i}")] = run_body(SLOW, f"slow-{i}")
            queue.add((SLOW, f"slow-{i}"))
        running = asyncio.create_task(
            run_workers(queue, handle, workers=workers, on_error=lambda key, exc: 1.0))
        await settle()  # every worker has taken a slow run
        kube.bodies[(HEALTHY, "healthy")] = run_body(HEALTHY, "healthy")
        queue.add((HEALTHY, "healthy"))
        for _ in range(int(PATIENCE_SECONDS / 0.01)):
            if order:
                break
            await asyncio.sleep(0.01)
        order.append("slow released")
        provider.release.set()
        for _ in range(int(PATIENCE_SECONDS / 0.01)):
            if len(kube.patched) == 4 * workers + 1:
                break
            await asyncio.sleep(0.01)
        running.cancel()
        return order

    order = asyncio.run(scenario())

    assert order == ["healthy written", "slow released"]
    assert provider.peak[SLOW] == LIMIT
    assert len(kube.patched) == 4 * workers + 1  # the slow runs were all measured afterwards


def test_a_handler_waiting_in_worker_released_lends_its_worker_and_gets_one_back() -> None:
    async def scenario() -> tuple[list[str], int]:
        queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
        gate, finish = asyncio.Event(), asyncio.Event()
        order: list[str] = []
        working, most_working = 0, 0

        async def handle(key: str) -> None:
            nonlocal working, most_working
            working += 1
            most_working = max(most_working, working)
            if key.startswith("waits"):
                working -= 1
                async with worker_released():
                    await gate.wait()
                working += 1
            order.append(key)
            await finish.wait()
            working -= 1

        queue.add("waits-1")
        queue.add("waits-2")
        queue.add("works")
        running = asyncio.create_task(
            run_workers(queue, handle, workers=1, on_error=lambda key, exc: 1.0))
        await settle()
        order.append("gate opened")
        gate.set()
        await settle()
        finish.set()
        await settle()
        running.cancel()
        return order, most_working

    order, most_working = asyncio.run(scenario())

    assert order[:2] == ["works", "gate opened"]
    assert sorted(order[2:]) == ["waits-1", "waits-2"]
    assert most_working == 1  # never more handlers working than workers


@pytest.mark.parametrize("limit", [pytest.param(0, id="unlimited"), pytest.param(2, id="with-slots")])
def test_a_call_in_the_pool_keeps_the_callers_log_context(limit: int) -> None:
    """The object a reconcile is about (structlog's contextvars, common.logging.bind_object) goes
    with its measurement into the pool's thread, so the provider's log lines name the run too."""
    import structlog

    def bound(_: None) -> dict[str, Any]:
        return dict(structlog.contextvars.get_contextvars())

    async def scenario() -> dict[str, Any]:
        structlog.contextvars.bind_contextvars(kind="AnalysisRun", namespace="ml", name="run-1")
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                future = await TenantSlots(limit=limit).submit("ml", pool, bound, None)
                return await future
        finally:
            structlog.contextvars.clear_contextvars()

    assert asyncio.run(scenario()) == {"kind": "AnalysisRun", "namespace": "ml", "name": "run-1"}
