"""Issue 7, defect 4: a write the API server rejects (4xx) is reported in status and once as an Event.

Unit tests of rollouts.kube.apply's rejected-write path with a fake client (no cluster).
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from rollouts.engine.context import Plan, RolloutContext
from rollouts.kube import apply

ROLLOUT: dict[str, Any] = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
    "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 2},
    "spec": {}, "status": {"phase": "Healthy", "conditions": [{"type": "Healthy", "status": "True"}]},
}
SERVER_MESSAGE = 'ReplicaSet.apps "web-abc" is invalid: spec.template.spec.containers[0].name: Invalid value: "Bad_Name"'


def _rejection(code: int, message: str = SERVER_MESSAGE) -> ApiException:
    exc = ApiException(status=code, reason="Unprocessable Entity")
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


class FakeCustom:
    def __init__(self, create_error: ApiException | None) -> None:
        self.create_error = create_error
        self.status_patches: list[dict[str, Any]] = []

    def create_namespaced_custom_object(self, *args: Any) -> None:
        if self.create_error is not None:
            raise self.create_error

    def patch_namespaced_custom_object_status(self, *args: Any) -> dict[str, Any]:
        self.status_patches.append(args[-1])
        return {}


def _writer(rollout: dict[str, Any], error: ApiException | None,
            events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, FakeCustom]:
    writer = apply._Writer(None, RolloutContext(rollout=rollout, now=datetime.now(UTC)))
    fake = FakeCustom(error)
    writer.custom = fake
    monkeypatch.setattr(apply, "post_event", lambda api, **kw: events.append(kw))
    return writer, fake


@pytest.mark.parametrize("code", [400, 403, 404, 413, 422], ids=lambda c: f"http-{c}")
def test_rejected_replica_set_create_sets_condition_degraded_and_one_event(
    code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[dict[str, Any]] = []
    writer, fake = _writer(ROLLOUT, _rejection(code), events, monkeypatch)
    plan = Plan(status={}, replica_sets_to_create=({"metadata": {"name": "web-abc"}},))
    with pytest.raises(apply.WriteRejected) as caught:
        writer.replica_sets(plan)
    status = fake.status_patches[0]["status"]
    assert status["phase"] == "Degraded"
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["ReplicaSetCreateError"]["status"] == "True"
    assert "Bad_Name" in by_type["ReplicaSetCreateError"]["message"]
    assert by_type["Healthy"]["status"] == "False"
    assert len(events) == 1 and events[0]["reason"] == "ReplicaSetCreateError"
    assert "Bad_Name" in caught.value.message


def test_same_rejection_again_posts_no_second_event(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[dict[str, Any]] = []
    writer, fake = _writer(ROLLOUT, _rejection(422), events, monkeypatch)
    plan = Plan(status={}, replica_sets_to_create=({"metadata": {"name": "web-abc"}},))
    with pytest.raises(apply.WriteRejected):
        writer.replica_sets(plan)
    already = dict(ROLLOUT, status=fake.status_patches[0]["status"])
    writer2, fake2 = _writer(already, _rejection(422), events, monkeypatch)
    with pytest.raises(apply.WriteRejected):
        writer2.replica_sets(plan)
    assert len(events) == 1
    assert fake2.status_patches == []  # nothing changed: no write


def test_message_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[dict[str, Any]] = []
    writer, fake = _writer(ROLLOUT, _rejection(413, "x" * 1_000_000), events, monkeypatch)
    with pytest.raises(apply.WriteRejected):
        writer.replica_sets(Plan(status={}, replica_sets_to_create=({"metadata": {"name": "web-abc"}},)))
    assert len(events[0]["message"]) < 2 * apply.MAX_REJECTION_MESSAGE


@pytest.mark.parametrize("code", [409, 429, 500], ids=lambda c: f"http-{c}")
def test_conflicts_throttling_and_server_errors_are_not_the_users(
    code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[dict[str, Any]] = []
    writer, fake = _writer(ROLLOUT, _rejection(code), events, monkeypatch)
    plan = Plan(status={}, replica_sets_to_create=({"metadata": {"name": "web-abc"}},))
    if code == 409:
        writer.replica_sets(plan)  # already exists: fine
    else:
        with pytest.raises(ApiException):
            writer.replica_sets(plan)
    assert fake.status_patches == [] and events == []


def test_handler_backs_off_exponentially_and_logs_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from rollouts import handlers
    monkeypatch.setattr(handlers, "_single", lambda kind, key: ROLLOUT)
    key = ("ns", "web-backoff")
    delays = [handlers._on_error(key, apply.WriteRejected("m")) for _ in range(10)]
    assert delays[:3] == [5.0, 10.0, 20.0]
    assert delays[-1] == handlers.REJECTED_BACKOFF_MAX_SECONDS
    assert all(r.exc_info is None for r in caplog.records)
    monkeypatch.setattr(handlers, "_single", lambda kind, key: dict(ROLLOUT, metadata={"generation": 3}))
    assert handlers._on_error(key, apply.WriteRejected("m")) == 5.0  # spec changed: reset
