"""Unit tests of common/leader.py: the elector against FakeLeaseApi (a stand-in for the API server's Leases)."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from common.leader import LEADER, LeaderElector, LeaseConflict, LeaseTiming, lease_name

NAME = "tidegate-rollouts"
NS = "tidegate"


class FakeLeaseApi:
    """Stand-in for the Lease endpoints: resourceVersion checks, 409 on stale writes, injectable failures."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.fail: Exception | None = None
        self.writes: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.watches = 0

    def _stamp(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(dict(body))
        stored.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        self.leases[stored["metadata"]["name"]] = stored
        self.writes.append(copy.deepcopy(stored))
        with self.changed:
            self.changed.notify_all()
        return copy.deepcopy(stored)

    def wait_for_change(self, name: str, resource_version: str, timeout: float) -> bool:
        """As a watch from ``resource_version``: at once if newer, else the next write or the timeout."""
        self.watches += 1
        with self.changed:
            def newer() -> bool:
                return self.leases.get(name, {}).get("metadata", {}).get("resourceVersion") != resource_version
            return self.changed.wait_for(newer, timeout=timeout)

    def get(self, name: str) -> dict[str, Any] | None:
        if self.fail:
            raise self.fail
        lease = self.leases.get(name)
        return copy.deepcopy(lease) if lease else None

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        if self.fail:
            raise self.fail
        if body["metadata"]["name"] in self.leases:
            raise LeaseConflict("exists")
        return self._stamp(body)

    def replace(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if self.fail:
            raise self.fail
        if self.leases[name]["metadata"]["resourceVersion"] != body["metadata"].get("resourceVersion"):
            raise LeaseConflict(name)
        return self._stamp(body)

    def hold(self, holder: str) -> None:
        """Another process writes the Lease (a renewal, as far as observers can tell)."""
        spec = {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": f"t{self.version}"}
        self._stamp({"metadata": {"name": NAME, "namespace": NS}, "spec": spec})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(api: FakeLeaseApi, clock: Clock, identity: str = "me_1", stopped: list[str] | None = None
            ) -> LeaderElector:
    sink = stopped if stopped is not None else []
    return LeaderElector(api=api, name=NAME, namespace=NS, component="rollouts", identity=identity,
                         timing=LeaseTiming(), clock=clock, on_stopped_leading=sink.append,
                         wall=lambda: datetime(2026, 1, 1, tzinfo=UTC))


def gauge() -> float:
    value: float = LEADER.labels(component="rollouts")._value.get()  # noqa: SLF001 - the gauge's value
    return value


def test_acquires_a_free_lease() -> None:
    api, clock = FakeLeaseApi(), Clock()
    e = elector(api, clock)
    e.step()
    assert e.leading.is_set()
    assert api.leases[NAME]["spec"]["holderIdentity"] == "me_1"
    assert api.leases[NAME]["spec"]["leaseDurationSeconds"] == 15
    assert api.leases[NAME]["spec"]["renewTime"] == "2026-01-01T00:00:00.000000Z"
    assert gauge() == 1


def test_waits_while_held_and_fresh_then_takes_over_when_expired() -> None:
    api, clock = FakeLeaseApi(), Clock()
    api.hold("other_1")
    e = elector(api, clock)
    e.step()
    clock.now += 14
    e.step()
    assert not e.leading.is_set(), "a fresh lease held by another must not be taken"
    assert gauge() == 0
    clock.now += 1.5  # no change for more than a lease duration since first seen: expired
    e.step()
    assert e.leading.is_set()
    assert api.leases[NAME]["spec"]["holderIdentity"] == "me_1"
    assert api.leases[NAME]["spec"]["leaseTransitions"] == 1


def test_a_renewing_holder_is_never_expired() -> None:
    api, clock = FakeLeaseApi(), Clock()
    api.hold("other_1")
    e = elector(api, clock)
    for _ in range(20):
        e.step()
        clock.now += 2
        api.hold("other_1")  # the leader renews every retry period
    assert not e.leading.is_set()


def test_renews_keeping_acquire_time() -> None:
    api, clock = FakeLeaseApi(), Clock()
    e = elector(api, clock)
    e.step()
    acquired = api.leases[NAME]["spec"]["acquireTime"]
    version = api.leases[NAME]["metadata"]["resourceVersion"]
    clock.now += 2
    e.step()
    assert api.leases[NAME]["metadata"]["resourceVersion"] != version
    assert api.leases[NAME]["spec"]["acquireTime"] == acquired
    assert api.leases[NAME]["spec"]["leaseTransitions"] == 0


@pytest.mark.parametrize("failure", [TimeoutError("read timed out"), ConnectionError("refused")],
                         ids=["timeout", "connection-refused"])
def test_loses_leadership_after_the_renew_deadline(failure: Exception) -> None:
    api, clock = FakeLeaseApi(), Clock()
    stopped: list[str] = []
    e = elector(api, clock, stopped=stopped)
    e.step()
    api.fail = failure
    for _ in range(4):  # 8 s of failed renewals: still within the 10 s deadline
        clock.now += 2
        e.step()
    assert stopped == [] and e.leading.is_set()
    clock.now += 2
    e.step()
    assert len(stopped) == 1 and "renew deadline" in stopped[0]
    assert not e.leading.is_set() and e.stopping.is_set()
    assert gauge() == 0


def test_loses_leadership_at_once_when_another_holds_the_lease() -> None:
    api, clock = FakeLeaseApi(), Clock()
    stopped: list[str] = []
    e = elector(api, clock, stopped=stopped)
    e.step()
    api.hold("usurper_1")  # e.g. our renewals were lost and the lease expired elsewhere
    clock.now += 2
    e.step()
    assert len(stopped) == 1 and "another process" in stopped[0]


def test_a_conflict_is_one_failed_attempt_not_a_loss() -> None:
    api, clock = FakeLeaseApi(), Clock()
    stopped: list[str] = []
    e = elector(api, clock, stopped=stopped)
    e.step()
    original = api.replace

    def conflict_once(name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        api.replace = original  # type: ignore[method-assign]
        raise LeaseConflict(name)

    api.replace = conflict_once  # type: ignore[method-assign]
    clock.now += 2
    e.step()
    assert stopped == [] and e.leading.is_set()
    clock.now += 2
    e.step()
    assert api.leases[NAME]["spec"]["holderIdentity"] == "me_1"


def test_two_candidates_racing_for_a_free_lease_one_wins() -> None:
    api, clock = FakeLeaseApi(), Clock()
    first, second = elector(api, clock, "a_1"), elector(api, clock, "b_1")
    first.step()
    second.step()
    assert first.leading.is_set() and not second.leading.is_set()


def test_release_clears_the_holder_and_a_standby_takes_over_at_once() -> None:
    api, clock = FakeLeaseApi(), Clock()
    leader, standby = elector(api, clock, "a_1"), elector(api, clock, "b_1")
    leader.step()
    standby.step()
    assert leader.release()
    spec = api.leases[NAME]["spec"]
    assert spec["holderIdentity"] is None and spec["leaseDurationSeconds"] == 1
    assert gauge() == 0
    standby.step()  # no waiting for expiry: nobody holds it
    assert standby.leading.is_set()


def test_release_when_not_leading_writes_nothing() -> None:
    api, clock = FakeLeaseApi(), Clock()
    api.hold("other_1")
    e = elector(api, clock)
    e.step()
    writes = len(api.writes)
    assert not e.release()
    assert len(api.writes) == writes


@pytest.mark.parametrize(("component", "instance_id", "scope", "expected"), [
    ("rollouts", "", (), "tidegate-rollouts"),
    ("gitops", "Team_A", (), "tidegate-gitops-team-a"),
], ids=["plain", "instance-id-sanitised"])
def test_lease_name(component: str, instance_id: str, scope: tuple[str, ...], expected: str) -> None:
    assert lease_name(component, instance_id=instance_id, scope=scope) == expected


def test_lease_name_scope_separates_and_is_stable() -> None:
    one = lease_name("rollouts", scope=["namespace=a"])
    assert one == lease_name("rollouts", scope=["namespace=a"])
    assert one != lease_name("rollouts", scope=["namespace=b"])
    assert one.startswith("tidegate-rollouts-") and len(lease_name("x" * 100, scope=["s"])) <= 63


def test_timing_must_be_ordered() -> None:
    assert LeaseTiming().problem() == ""
    assert "renew deadline" in LeaseTiming(lease_duration=5, renew_deadline=10).problem()


def test_a_running_standby_takes_a_released_lease_without_waiting_out_the_retry_period() -> None:
    """The standby's loop watches the Lease between attempts (real threads and time here): the
    release on SIGTERM is seen at once, not at the next 2 s poll (e2e: handover within 3 s)."""
    api = FakeLeaseApi()
    timing = LeaseTiming(lease_duration=15, renew_deadline=10, retry_period=2)
    leader = LeaderElector(api=api, name=NAME, namespace=NS, component="rollouts", identity="a_1", timing=timing)
    standby = LeaderElector(api=api, name=NAME, namespace=NS, component="rollouts", identity="b_1", timing=timing)
    leader.step()
    standby.start()
    try:
        time.sleep(0.3)  # the standby has looked once and is waiting on the Lease
        assert not standby.leading.is_set() and api.watches >= 1
        released_at = time.monotonic()
        assert leader.release()
        assert standby.leading.wait(1.5), "the standby waited for its next poll"
        assert time.monotonic() - released_at < 1.0
    finally:
        standby.stopping.set()
        with api.changed:
            api.changed.notify_all()
