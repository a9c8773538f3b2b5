"""Issue 7, defect 4: a write the API server rejects (4xx) is reported in status and once as an Event.

Unit tests of rollouts.kube.apply's rejected-write path with a fake client behind the real
port (rollouts.kube.port; no cluster).
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from common.kubewrite import EventDeduper
from rollouts.engine.context import Plan, RolloutContext
from rollouts.engine.reconcile import plan as make_plan
from rollouts.kube import apply, port

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
    fake = FakeCustom(error)
    kube = port.KubeRolloutPort(None, custom=fake, apps=fake, core=fake,
                                events=lambda api, **kw: events.append(kw))
    writer = apply._Writer(kube, RolloutContext(rollout=rollout, now=datetime.now(UTC)), reported=EventDeduper())
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


# --- the Rollout's own writes, what a rejection keeps, and recovery (issue 7 defect 4, rest) ------

NOW_S = "2024-01-01T12:00:00Z"
OLD = "2024-01-01T10:00:00Z"


def _cond(kind: str, status: str, reason: str, message: str, at: str = OLD) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": at, "lastUpdateTime": at}


class FakeCluster:
    """A Rollout and its ReplicaSets behind the three client APIs apply.py uses.

    ReplicaSets whose pod template has a container named ``Bad_Name`` are refused
    with the 422 the real API server answers; ``refuse`` makes one verb fail.
    """

    def __init__(self, rollout: dict[str, Any]) -> None:
        self.rollout = rollout
        self.replica_sets: dict[str, dict[str, Any]] = {}
        self.refuse: dict[str, ApiException] = {}
        self.calls: list[str] = []
        self.version = 1

    def _written(self) -> dict[str, Any]:
        self.version += 1
        self.rollout["metadata"]["resourceVersion"] = str(self.version)
        return json.loads(json.dumps(self.rollout))

    def _maybe_refuse(self, verb: str) -> None:
        self.calls.append(verb)
        if verb in self.refuse:
            raise self.refuse.pop(verb)

    # CustomObjectsApi
    def create_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str,
                                        body: dict[str, Any]) -> dict[str, Any]:
        self._maybe_refuse(f"create-{plural}")
        names = [c["name"] for c in body["spec"]["template"]["spec"]["containers"]]
        if "Bad_Name" in names:
            raise _rejection(422, f'ReplicaSet.apps "{body["metadata"]["name"]}" is invalid: '
                                  'spec.template.spec.containers[0].name: Invalid value: "Bad_Name"')
        rs = json.loads(json.dumps(body))
        self.replica_sets[rs["metadata"]["name"]] = rs
        self._ready()
        return rs

    def patch_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str,
                                       body: dict[str, Any]) -> dict[str, Any]:
        self._maybe_refuse(f"patch-{plural}")
        from engine_sim import merge_patch as apply_patch
        apply_patch(self.rollout, body)
        return self._written()

    def patch_namespaced_custom_object_status(self, group: str, version: str, ns: str, plural: str, name: str,
                                              body: dict[str, Any]) -> dict[str, Any]:
        self._maybe_refuse("patch-status")
        from engine_sim import merge_patch as apply_patch
        apply_patch(self.rollout.setdefault("status", {}), body["status"])
        return self._written()

    # AppsV1Api
    def patch_namespaced_replica_set(self, name: str, ns: str, body: dict[str, Any]) -> None:
        self._maybe_refuse("patch-replicasets")
        from engine_sim import merge_patch as apply_patch
        apply_patch(self.replica_sets[name], body)
        self._ready()

    def _ready(self) -> None:
        for rs in self.replica_sets.values():
            count = rs["spec"]["replicas"]
            rs["status"] = {"replicas": count, "readyReplicas": count, "availableReplicas": count}

    def reconcile(self) -> None:
        ctx = RolloutContext(rollout=json.loads(json.dumps(self.rollout)), now=datetime.now(UTC),
                             replica_sets=tuple(json.loads(json.dumps(list(self.replica_sets.values())))))
        apply.apply_plan(self, ctx, make_plan(ctx), apply.VersionTracker())

    def conditions(self) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in self.rollout["status"].get("conditions") or []}


def _basic_rollout(container: str = "web", image: str = "web:v1") -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 1, "resourceVersion": "1"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": container, "image": image}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
        },
    }


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeCluster, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    fake = FakeCluster(_basic_rollout())
    for api in ("CustomObjectsApi", "AppsV1Api", "CoreV1Api"):
        monkeypatch.setattr(port.client, api, lambda api_client: api_client)
    monkeypatch.setattr(port, "post_event", lambda api, **kw: events.append(kw))
    monkeypatch.setattr(apply, "REPORTED", EventDeduper())
    return fake, events


def _edit(fake: FakeCluster, *, container: str | None = None, image: str | None = None) -> None:
    spec = fake.rollout["spec"]["template"]["spec"]["containers"][0]
    if container is not None:
        spec["name"] = container
    if image is not None:
        spec["image"] = image
    fake.rollout["metadata"]["generation"] += 1


def _warnings(events: list[dict[str, Any]]) -> list[str]:
    return [e["reason"] for e in events if e["event_type"] == "Warning"]


def _settle(fake: FakeCluster, passes: int = 6) -> None:
    for _ in range(passes):
        fake.reconcile()


def test_rejected_rollout_recovers_when_the_spec_is_fixed(cluster: tuple[FakeCluster, list[dict[str, Any]]]) -> None:
    """Given a Healthy Rollout, an update to a container name the API server rejects, a second
    update (new image) to it, then the fix: Degraded and never Healthy while rejected, one Event
    per distinct message, and Healthy with no stale ReplicaSetCreateError after the fix."""
    fake, events = cluster
    _settle(fake)
    assert fake.rollout["status"]["phase"] == "Healthy"
    stable = fake.rollout["status"]["stableRS"]

    _edit(fake, container="Bad_Name", image="web:v2")
    for _ in range(3):
        with pytest.raises(apply.WriteRejected):
            fake.reconcile()
    status = fake.rollout["status"]
    assert status["phase"] == "Degraded" and status["stableRS"] == stable  # nothing else of status lost
    assert fake.conditions()["ReplicaSetCreateError"]["status"] == "True"
    assert "Bad_Name" in fake.conditions()["ReplicaSetCreateError"]["message"]
    assert fake.conditions()["Healthy"]["status"] == "False"
    assert fake.conditions()["Completed"]["status"] == "False"  # the update is not completed
    assert _warnings(events) == ["ReplicaSetCreateError"]

    _edit(fake, image="web:v3")
    with pytest.raises(apply.WriteRejected):
        fake.reconcile()
    assert fake.rollout["status"]["phase"] == "Degraded"
    assert fake.conditions()["Healthy"]["status"] == "False"
    assert _warnings(events) == ["ReplicaSetCreateError"] * 2  # a new ReplicaSet name: a new message

    _edit(fake, container="web")
    _settle(fake)
    assert fake.rollout["status"]["phase"] == "Healthy"
    assert "ReplicaSetCreateError" not in fake.conditions()
    assert fake.conditions()["Healthy"]["status"] == "True"


def test_rejected_status_patch_is_reported_not_retried_hot(
    cluster: tuple[FakeCluster, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    fake, events = cluster
    fake.refuse["patch-status"] = _rejection(422, "status.conditions: Too many: 100001")
    with pytest.raises(apply.WriteRejected) as caught:
        fake.reconcile()
    assert "patch-status (422)" in caught.value.message
    assert fake.rollout["status"]["phase"] == "Degraded"  # the smaller report got through
    assert fake.conditions()["InvalidSpec"]["status"] == "True"
    assert fake.conditions()["Healthy"]["status"] == "False"
    assert _warnings(events) == ["InvalidSpec"]


def test_rejected_status_patch_whose_report_fails_too_still_raises_write_rejected(
    cluster: tuple[FakeCluster, list[dict[str, Any]]],
) -> None:
    fake, events = cluster
    original = fake.patch_namespaced_custom_object_status

    def always_refuse(*args: Any) -> dict[str, Any]:
        fake.refuse["patch-status"] = _rejection(413, "request entity too large")
        return original(*args)

    fake.patch_namespaced_custom_object_status = always_refuse  # type: ignore[method-assign]
    with pytest.raises(apply.WriteRejected) as caught:
        fake.reconcile()
    assert "failed too: 413" in caught.value.message
    assert _warnings(events) == ["InvalidSpec"]


@pytest.mark.parametrize("verb", ["patch-rollouts"], ids=["spec-default-patch"])
def test_rejected_rollout_spec_patch(verb: str, cluster: tuple[FakeCluster, list[dict[str, Any]]]) -> None:
    fake, events = cluster
    del fake.rollout["spec"]["replicas"]  # the plan writes the default back (Argo, for HPA)
    fake.refuse[verb] = _rejection(403, 'admission webhook "policy" denied the request')
    with pytest.raises(apply.WriteRejected) as caught:
        fake.reconcile()
    assert "Rollout patch (403)" in caught.value.message
    assert fake.rollout["status"]["phase"] == "Degraded"
    assert _warnings(events) == ["InvalidSpec"]


def test_rejected_revision_annotation_never_leaves_a_healthy_status_behind(
    cluster: tuple[FakeCluster, list[dict[str, Any]]],
) -> None:
    """The revision annotation is written before the status: a status that says the reconcile
    went well is written only when every write did."""
    fake, events = cluster
    _settle(fake)
    fake.calls.clear()
    _edit(fake, image="web:v2")
    fake.refuse["patch-rollouts"] = _rejection(422, "metadata.annotations: Too long: must have at most 262144 bytes")
    with pytest.raises(apply.WriteRejected):
        fake.reconcile()
    assert fake.calls.count("patch-status") == 1  # only the report
    assert fake.rollout["status"]["phase"] == "Degraded"
    assert fake.conditions()["Healthy"]["status"] == "False"


def test_rejection_keeps_transition_time_and_drops_a_stale_create_error(monkeypatch: pytest.MonkeyPatch) -> None:
    rollout = dict(ROLLOUT, status={"phase": "Degraded", "stableRS": "abc", "conditions": [
        _cond("ReplicaSetCreateError", "True", "ReplicaSetCreateError", "an older rejection"),
        _cond("InvalidSpec", "True", "InvalidSpec", "an older rejection"),
        _cond("Healthy", "False", "RolloutHealthy", "Rollout is not healthy"),
    ]})
    events: list[dict[str, Any]] = []
    writer, fake = _writer(rollout, None, events, monkeypatch)
    writer.replica_sets_done = True  # this reconcile created its ReplicaSets: the create error is stale
    with pytest.raises(apply.WriteRejected):
        raise writer.rejected("Service", "patch", _rejection(422, "spec.selector: Invalid value"))
    status = fake.status_patches[0]["status"]
    by_type = {c["type"]: c for c in status["conditions"]}
    assert "ReplicaSetCreateError" not in by_type
    assert by_type["InvalidSpec"]["lastTransitionTime"] == OLD  # still True: the transition is the old one
    assert by_type["InvalidSpec"]["lastUpdateTime"] != OLD
    assert by_type["Healthy"] == _cond("Healthy", "False", "RolloutHealthy", "Rollout is not healthy")
    assert "stableRS" not in status  # untouched, not deleted


def test_plan_carries_no_stale_create_error_forward() -> None:
    """The engine's status is written only after every create succeeded, so it never repeats
    a ReplicaSetCreateError: after the fix the first status written is free of it."""
    rollout = _basic_rollout()
    rollout["status"] = {"phase": "Degraded", "conditions": [
        _cond("ReplicaSetCreateError", "True", "ReplicaSetCreateError", "rejected (422): Bad_Name"),
        _cond("Healthy", "False", "RolloutHealthy", "Rollout is not healthy"),
    ]}
    result = make_plan(RolloutContext(rollout=rollout, now=datetime.now(UTC)))
    assert result.replica_sets_to_create  # the fixed template's ReplicaSet
    assert [c["type"] for c in result.status["conditions"] if c["type"] == "ReplicaSetCreateError"] == []
