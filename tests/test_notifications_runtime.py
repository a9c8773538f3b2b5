"""The notifications runtime (notifications/delivery.py) with a fake cluster and fake services.

No cluster, no HTTP: ``FakePort`` stands in for the API server (it keeps the
objects' annotations and records every patch and Event), ``FakeService`` for a
Slack or PagerDuty service (it succeeds, fails a number of times, or never
answers), and a small planner stands in for notifications.engine.plan: it asks
for every wanted delivery whose key is not yet in the state annotation, and its
annotation is the current state plus those keys (the engine's contract). The
backoff clock is a number the test moves by hand.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from common.fairness import TenantSlots
from notifications import delivery as delivery_module
from notifications import metrics
from notifications.config import NotificationConfig
from notifications.delivery import (
    REASON_FAILED,
    STATE_ANNOTATION,
    Backoff,
    ConfigCache,
    Loaded,
    Notifier,
    Source,
    read_state,
    write_state,
)
from notifications.engine import Delivery, Plan
from notifications.services import DeliveryError, Notification, Service
from notifications.settings import NotificationSettings

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SECRET = "xoxb-very-secret-token"  # noqa: S105 - a test value


class FakePort:
    """The API server: objects' annotations, the patches and Events written."""

    def __init__(self, configmaps: dict[tuple[str, str], dict[str, str]] | None = None,
                 secrets: dict[tuple[str, str], dict[str, str]] | None = None) -> None:
        self.configmaps = configmaps or {}
        self.secrets = secrets or {}
        self.patches: list[tuple[str, str, str, dict[str, str]]] = []
        self.events: list[tuple[str, str, str]] = []  # Warning Events
        self.normal: list[tuple[str, str, str]] = []  # the delivery log
        self.fail_annotate = 0
        self.reads = 0
        self.version = 100

    def read_configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        self.reads += 1
        return self.configmaps.get((namespace, name))

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        return self.secrets.get((namespace, name), {})

    def annotate(self, kind: str, namespace: str, name: str, annotations: Mapping[str, str]) -> dict[str, Any]:
        if self.fail_annotate:
            self.fail_annotate -= 1
            raise RuntimeError("the API server is unavailable")
        self.patches.append((kind, namespace, name, dict(annotations)))
        self.version += 1
        return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": str(self.version),
                             "annotations": dict(annotations)}}

    def event(self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str) -> None:
        (self.events if event_type == "Warning" else self.normal).append((event_type, reason, message))

    def recorded(self) -> list[dict[str, Any]]:
        """The state annotation of every patch, in order."""
        return [read_state(p[3][STATE_ANNOTATION]) for p in self.patches]


@dataclass
class FakeService:
    """A service that fails ``failures`` times (``hang``: never answers) and then succeeds."""

    name: str
    type: str = "slack"
    failures: int = 0
    hang: bool = False
    error: str = "HTTP 500 from the receiver"
    attempts: int = 0
    delivered: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def send(self, notification: Notification, recipient: str, *, deadline_seconds: float = 30.0) -> None:
        self.attempts += 1
        if self.hang:
            self.release.wait(timeout=10)  # a receiver that never answers (released at the test's end)
            raise DeliveryError("connection reset")
        if self.failures:
            self.failures -= 1
            raise DeliveryError(self.error)
        self.delivered.append(f"{recipient}: {notification.message}")


def wanted(trigger: str, service: str, recipient: str = "ml-team") -> Delivery:
    return Delivery(trigger=trigger, condition=0, service=service, recipient=recipient, templates=("t",),
                    notification=Notification(message=f"{trigger} fired"),
                    key=f"rev1:{trigger}:[0].h:{service}:{recipient}")


@dataclass
class FakePlanner:
    """The engine's contract in small: deliveries not yet in the state; annotation = state + them."""

    deliveries: list[Delivery]
    dropped: list[str] = field(default_factory=list)  # state keys whose condition went false
    errors: list[str] = field(default_factory=list)
    calls: int = 0

    def __call__(self, obj: Mapping[str, Any], *, kind: str, config: NotificationConfig,
                 project: Mapping[str, Any] | None, context_vars: Mapping[str, Any], now: datetime) -> Plan:
        self.calls += 1
        state = read_state(((obj.get("metadata") or {}).get("annotations") or {}).get(STATE_ANNOTATION))
        todo = [d for d in self.deliveries if d.key not in state]
        target = {k: v for k, v in state.items() if k not in self.dropped}
        target.update({d.key: int(now.timestamp()) for d in todo})
        annotation = write_state(target) if target != state else None
        return Plan(deliveries=todo, annotation=annotation, errors=list(self.errors))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def loaded(services: Mapping[str, Service]) -> Loaded:
    from common.redaction import redactor

    return Loaded(source=Source("team-a", "argocd-notifications-cm", "argocd-notifications-secret"),
                  config=NotificationConfig(), services=services, errors=(),
                  redactor=redactor([SECRET]))


def notifier(port: FakePort, planner: FakePlanner, clock: Clock, *, deadline: float = 5.0,
             per_namespace: int = 2) -> Notifier:
    settings = NotificationSettings(send_deadline_seconds=deadline)
    return Notifier(port=port, configs=ConfigCache(port, ttl=30), settings=settings,
                    send_pool=ThreadPoolExecutor(4), kube_pool=ThreadPoolExecutor(2),
                    slots=TenantSlots(limit=per_namespace), backoff=Backoff(base=5, cap=40, clock=clock),
                    planner=planner, now=lambda: NOW)


class ObjectStore:
    """The object as the watch would deliver it next: the port's last patch applied."""

    def __init__(self, port: FakePort, namespace: str = "team-a", name: str = "model") -> None:
        self.port, self.namespace, self.name = port, namespace, name

    def body(self) -> dict[str, Any]:
        annotations = {}
        for _, ns, name, patch in self.port.patches:
            if (ns, name) == (self.namespace, self.name):
                annotations.update(patch)
        return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"namespace": self.namespace, "name": self.name, "uid": "u1",
                             "annotations": annotations}}


def count(trigger: str, service: str, succeeded: str) -> float:
    value = metrics.DELIVERIES.labels(trigger=trigger, service=service, succeeded=succeeded)._value.get()
    return float(value)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- the state is written only after success ----------------------------------------------------

def test_the_state_records_only_the_deliveries_that_succeeded() -> None:
    port, clock = FakePort(), Clock()
    slack, pagerduty = FakeService("slack"), FakeService("pagerduty", type="pagerdutyv2", failures=99)
    planner = FakePlanner([wanted("on-sync-failed", "slack"), wanted("on-sync-failed", "pagerduty")])
    store = ObjectStore(port)
    before = count("on-sync-failed", "pagerduty", "false")

    retry = run(notifier(port, planner, clock).notify(
        "Application", store.body(), loaded=loaded({"slack": slack, "pagerduty": pagerduty})))

    # Slack got it and its key was written right after; PagerDuty's key never was
    assert slack.delivered == ["ml-team: on-sync-failed fired"]
    assert port.recorded() == [{planner.deliveries[0].key: int(NOW.timestamp())}]
    assert retry == 5.0
    # ... and the failure is a Warning Event naming the trigger and the service, and a metric
    assert port.events == [("Warning", REASON_FAILED,
                            'notification "on-sync-failed" to service "pagerduty" (recipient "ml-team") '
                            "failed: HTTP 500 from the receiver")]
    assert count("on-sync-failed", "pagerduty", "false") == before + 1
    # ... and the success is in the delivery log
    assert port.normal == [("Normal", "NotificationSent",
                            'notification "on-sync-failed" sent to service "slack" (recipient "ml-team")')]


def test_a_send_is_not_repeated_once_recorded_and_nothing_is_written_when_nothing_changed() -> None:
    port, clock = FakePort(), Clock()
    slack = FakeService("slack")
    planner = FakePlanner([wanted("on-deployed", "slack")])
    store = ObjectStore(port)
    n = notifier(port, planner, clock)

    run(n.notify("Application", store.body(), loaded=loaded({"slack": slack})))
    run(n.notify("Application", store.body(), loaded=loaded({"slack": slack})))

    assert slack.attempts == 1 and len(slack.delivered) == 1
    assert len(port.patches) == 1


def test_a_condition_gone_false_is_removed_from_the_state_without_a_send() -> None:
    port, clock = FakePort(), Clock()
    body = ObjectStore(port).body()
    body["metadata"]["annotations"] = {STATE_ANNOTATION: write_state({"old:key": 1, "kept": 2})}
    planner = FakePlanner([], dropped=["old:key"])

    run(notifier(port, planner, clock).notify("Application", body, loaded=loaded({})))

    assert port.recorded() == [{"kept": 2}]


def test_a_send_whose_record_failed_is_recorded_later_without_sending_again() -> None:
    port, clock = FakePort(), Clock()
    slack = FakeService("slack")
    planner = FakePlanner([wanted("on-deployed", "slack")])
    store = ObjectStore(port)
    n = notifier(port, planner, clock)
    port.fail_annotate = 1

    with pytest.raises(RuntimeError):
        run(n.notify("Application", store.body(), loaded=loaded({"slack": slack})))
    run(n.notify("Application", store.body(), loaded=loaded({"slack": slack})))

    assert slack.attempts == 1
    assert port.recorded() == [{planner.deliveries[0].key: int(NOW.timestamp())}]


# --- retried with backoff, then delivered once ----------------------------------------------------

def test_a_failing_service_is_retried_with_backoff_then_delivered_once() -> None:
    port, clock = FakePort(), Clock()
    slack = FakeService("slack", failures=2)
    planner = FakePlanner([wanted("on-deployed", "slack")])
    store = ObjectStore(port)
    n = notifier(port, planner, clock)
    services = {"slack": slack}

    def notify() -> float | None:
        result: float | None = run(n.notify("Application", store.body(), loaded=loaded(services)))
        return result

    # (seconds the clock moved before the look, retry delay returned, attempts so far, delivered)
    steps = [
        (0.0, 5.0, 1, 0),    # first failure: tried again in 5 s
        (1.0, 4.0, 1, 0),    # an object change meanwhile does not send before the backoff is over
        (4.0, 10.0, 2, 0),   # second failure: the delay doubles
        (10.0, None, 3, 1),  # third attempt succeeds: recorded, nothing to retry
        (60.0, None, 3, 1),  # and it is never sent again
    ]
    for moved, delay, attempts, delivered in steps:
        clock.now += moved
        assert notify() == delay
        assert (slack.attempts, len(slack.delivered)) == (attempts, delivered)
    assert len(port.patches) == 1
    # one Event for the failure (the same message is not posted twice)
    assert [e[1] for e in port.events] == [REASON_FAILED]


@pytest.mark.parametrize(("failures", "delays"), [
    pytest.param(1, [5.0], id="one-failure"),
    pytest.param(4, [5.0, 10.0, 20.0, 40.0], id="doubling"),
    pytest.param(6, [5.0, 10.0, 20.0, 40.0, 40.0, 40.0], id="capped"),
])
def test_backoff_doubles_up_to_the_cap(failures: int, delays: list[float]) -> None:
    clock = Clock()
    backoff = Backoff(base=5, cap=40, clock=clock)
    seen = []
    for _ in range(failures):
        seen.append(backoff.failed(("Application", "ns", "a", "k")))
    assert seen == delays
    assert backoff.remaining(("Application", "ns", "a", "k")) == delays[-1]
    backoff.forget(("Application", "ns", "a"))
    assert backoff.remaining(("Application", "ns", "a", "k")) == 0.0


# --- a receiver that never answers ------------------------------------------------------------------

def test_a_never_answering_service_is_bounded_reported_and_blocks_no_other_tenant(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery_module, "DEADLINE_GRACE_SECONDS", 0.2)
    port, clock = FakePort(), Clock()
    hung, slack = FakeService("hung", hang=True), FakeService("slack")
    n = notifier(port, FakePlanner([wanted("on-deployed", "hung")]), clock, deadline=0.5, per_namespace=1)
    other = notifier(port, FakePlanner([wanted("on-deployed", "slack")]), clock)
    other.send_pool, other.slots = n.send_pool, n.slots  # one shared pool and one set of slots
    finished: dict[str, float] = {}

    async def both() -> None:
        start = time.monotonic()

        async def tenant(name: str, notifier_: Notifier, services: Mapping[str, Service]) -> None:
            body = ObjectStore(port, namespace=name).body()
            await notifier_.notify("Application", body, loaded=loaded(services))
            finished[name] = time.monotonic() - start

        await asyncio.gather(tenant("team-a", n, {"hung": hung}),
                             tenant("team-b", other, {"slack": slack}))

    try:
        run(both())
    finally:
        hung.release.set()
    # team-b was served while team-a's send hung; team-a gave up after the deadline (+ grace)
    assert slack.delivered and finished["team-b"] < 0.5
    assert 0.6 <= finished["team-a"] < 3.0
    assert port.events == [("Warning", REASON_FAILED,
                            'notification "on-deployed" to service "hung" (recipient "ml-team") '
                            "failed: no answer within 0.5s")]
    assert [p[1] for p in port.patches] == ["team-b"]  # nothing recorded for the hung send


def test_an_unknown_service_and_a_secret_in_an_error_are_reported_without_the_secret() -> None:
    port, clock = FakePort(), Clock()
    leaky = FakeService("slack", failures=1, error=f"401 for token {SECRET}")
    planner = FakePlanner([wanted("on-deployed", "slack"), wanted("on-deployed", "teams")])

    run(notifier(port, planner, clock).notify("Application", ObjectStore(port).body(),
                                              loaded=loaded({"slack": leaky})))

    messages = [e[2] for e in port.events]
    assert messages == [
        'notification "on-deployed" to service "slack" (recipient "ml-team") failed: 401 for token *****',
        'notification "on-deployed" to service "teams" (recipient "ml-team") failed: service "teams" '
        "is not configured in team-a/argocd-notifications-cm",
    ]
    assert not any(SECRET in m for m in messages)
    assert port.patches == []


def test_plan_errors_become_one_warning_event_each() -> None:
    port, clock = FakePort(), Clock()
    planner = FakePlanner([], errors=['template "slack-ml-team": line 1, column 7: unknown function "exec"'])
    n = notifier(port, planner, clock)
    body = ObjectStore(port).body()

    run(n.notify("Application", body, loaded=loaded({})))
    run(n.notify("Application", body, loaded=loaded({})))

    assert port.events == [("Warning", "NotificationTemplateError",
                            'notifications: template "slack-ml-team": line 1, column 7: unknown function "exec"')]


# --- the configuration cache --------------------------------------------------------------------------

def test_config_cache_reads_once_falls_back_to_the_next_source_and_reloads_on_change() -> None:
    home = Source("argo-rollouts", "argo-rollouts-notification-configmap", "argo-rollouts-notification-secret")
    own = Source("team-a", home.configmap, home.secret)
    port = FakePort(configmaps={("argo-rollouts", home.configmap): {"trigger.x": "[]"}},
                    secrets={("argo-rollouts", home.secret): {"slack-token": SECRET}})
    loads: list[Mapping[str, str]] = []

    def loader(cm: Mapping[str, str], secrets: Mapping[str, str], name: str) -> Any:
        loads.append(dict(cm))
        return NotificationConfig(), {}, [f"service.slack: token {SECRET} rejected"]

    clock = Clock()
    cache = ConfigCache(port, ttl=30, loader=loader, clock=clock)

    first = cache.first([own, home])
    assert first is not None and first.source == home
    assert first.errors == ("service.slack: token ***** rejected",)
    assert cache.first([own, home]) is first and len(loads) == 1  # cached, the missing one too
    # a tenant's own ConfigMap appears: once the watch says so, it is used
    port.configmaps[("team-a", own.configmap)] = {"trigger.y": "[]"}
    assert cache.invalidate("team-a", own.configmap) == [own]
    chosen = cache.first([own, home])
    assert chosen is not None and chosen.source == own and loads[-1] == {"trigger.y": "[]"}
    # a Secret change reloads the configuration that uses it
    assert cache.invalidate("argo-rollouts", home.secret) == [home]
    # and without a watch, after the TTL
    clock.now += 31
    cache.first([own])
    assert len(loads) == 3


@pytest.mark.parametrize(("text", "state"), [
    pytest.param(None, {}, id="absent"),
    pytest.param("", {}, id="empty"),
    pytest.param("not json", {}, id="unreadable"),
    pytest.param("[1, 2]", {}, id="not-an-object"),
    pytest.param('{"a:on-deployed:[0].x:slack:ch":1764583200}', {"a:on-deployed:[0].x:slack:ch": 1764583200},
                 id="argo"),
])
def test_read_state(text: str | None, state: dict[str, Any]) -> None:
    assert read_state(text) == state


def test_write_state_is_gos_json_of_a_map() -> None:
    assert write_state({"b": 2, "a": 1}) == '{"a":1,"b":2}'
    assert json.loads(write_state({"k": 1})) == {"k": 1}


def test_a_hung_send_gives_its_worker_back_so_one_worker_serves_another_tenant(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from common.workqueue import WorkQueue, run_workers

    monkeypatch.setattr(delivery_module, "DEADLINE_GRACE_SECONDS", 0.2)
    port, clock = FakePort(), Clock()
    hung, slack = FakeService("hung", hang=True), FakeService("slack")
    services: Mapping[str, Service] = {"hung": hung, "slack": slack}
    planners = {"team-a": FakePlanner([wanted("on-deployed", "hung")]),
                "team-b": FakePlanner([wanted("on-deployed", "slack")])}
    n = notifier(port, planners["team-a"], clock, deadline=1.0)
    finished: dict[str, float] = {}

    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        start = time.monotonic()

        async def handle(tenant: str) -> float | None:
            n.planner = planners[tenant]
            await n.notify("Application", ObjectStore(port, namespace=tenant).body(), loaded=loaded(services))
            finished[tenant] = time.monotonic() - start
            return None

        workers = asyncio.create_task(run_workers(queue, handle, workers=1, on_error=lambda k, e: 60.0))
        queue.add("team-a")
        await asyncio.sleep(0.1)  # team-a's send is in flight (and hangs)
        queue.add("team-b")
        while len(finished) < 2:
            await asyncio.sleep(0.05)
        workers.cancel()

    try:
        run(asyncio.wait_for(scenario(), timeout=10))
    finally:
        hung.release.set()
    # one worker: team-b was served while team-a's send was waiting for its deadline
    assert finished["team-b"] < finished["team-a"]
    assert finished["team-b"] < 0.9
    assert slack.delivered and not hung.delivered


@pytest.mark.parametrize(("kind", "namespace", "expected"), [
    pytest.param("Application", "team-a", [("argocd", "argocd-notifications-cm")], id="app-argocd-namespace"),
    pytest.param("Rollout", "team-a", [("team-a", "argo-rollouts-notification-configmap"),
                                       ("argo-rollouts", "argo-rollouts-notification-configmap")],
                 id="rollout-own-then-controller"),
    pytest.param("AnalysisRun", "argo-rollouts", [("argo-rollouts", "argo-rollouts-notification-configmap")],
                 id="run-in-controller-namespace"),
])
def test_where_each_kind_reads_its_configuration(kind: str, namespace: str,
                                                  expected: list[tuple[str, str]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from notifications import handlers
    from notifications.settings import SETTINGS

    monkeypatch.setattr(SETTINGS, "app_namespaces", ["argocd", "team-a"])
    monkeypatch.setattr(SETTINGS, "rollouts_namespace", "argo-rollouts")
    assert [(s.namespace, s.configmap) for s in handlers.sources(kind, namespace)] == expected


# --- every watched state counts: a fast Succeeded -> Running -> Succeeded is sent again ---------

SEED_CM = {
    "trigger.on-deployed": "- description: Model deployment completed\n  send: [slack-ml-team]\n"
                           "  when: app.status.operationState.phase in ['Succeeded']\n",
    "trigger.on-deployed-once": "- send: [slack-ml-team]\n  oncePer: app.status.sync.revision\n"
                                "  when: app.status.operationState.phase in ['Succeeded']\n",
    "template.slack-ml-team": "message: deployed {{.app.status.sync.revision}}\n",
}
SUBSCRIBE = "notifications.argoproj.io/subscribe.{trigger}.slack"


class Watch:
    """The API server's object and the watch events it delivers, each with a resourceVersion;
    our annotation patches (the port's) are applied to the object as the server would."""

    def __init__(self, port: FakePort, triggers: tuple[str, ...]) -> None:
        self.port, self.version, self.applied = port, 0, 0
        self.annotations = {SUBSCRIBE.format(trigger=t): "ml-team" for t in triggers}
        self.status: dict[str, Any] = {}

    def set(self, phase: str, revision: str) -> dict[str, Any]:
        """A status update: the event body the watch delivers for it."""
        self.status = {"operationState": {"phase": phase}, "sync": {"revision": revision}}
        return self.body()

    def body(self) -> dict[str, Any]:
        for _, _, _, patch in self.port.patches[self.applied:]:
            self.annotations.update(patch)
        self.applied = len(self.port.patches)
        self.version = max(self.version, self.port.version) + 1
        self.port.version = self.version
        return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"namespace": "team-a", "name": "model", "resourceVersion": str(self.version),
                             "annotations": dict(self.annotations)},
                "spec": {"project": "default"}, "status": json.loads(json.dumps(self.status))}


def real_notifier(port: FakePort) -> tuple[Notifier, Loaded]:
    from common.redaction import redactor
    from notifications.config import parse_config

    n = Notifier(port=port, configs=ConfigCache(port, ttl=30), settings=NotificationSettings(),
                 send_pool=ThreadPoolExecutor(2), kube_pool=ThreadPoolExecutor(2),
                 slots=TenantSlots(limit=2), backoff=Backoff(base=5, cap=40, clock=Clock()), now=lambda: NOW)
    config = parse_config(SEED_CM)
    assert not config.errors
    return n, Loaded(source=Source("argocd", "argocd-notifications-cm", "argocd-notifications-secret"),
                     config=config, services={"slack": FakeService("slack")}, errors=(), redactor=redactor([]))


def sent(ld: Loaded) -> list[str]:
    service = ld.services["slack"]
    assert isinstance(service, FakeService)
    return [m.strip() for m in service.delivered]


@pytest.mark.parametrize(("trigger", "phases", "expected"), [
    pytest.param("on-deployed", [("Running", "B"), ("Succeeded", "B")],
                 ["ml-team: deployed A", "ml-team: deployed B"], id="running-unplanned-re-arms-B"),
    pytest.param("on-deployed", [("Running", "B"), ("Failed", "B"), ("Succeeded", "B")],
                 ["ml-team: deployed A", "ml-team: deployed B"], id="two-false-states-still-one-send"),
    pytest.param("on-deployed", [("Succeeded", "A")],
                 ["ml-team: deployed A"], id="true-to-true-without-a-false-state-sends-nothing"),
    pytest.param("on-deployed-once", [("Running", "B"), ("Succeeded", "B")],
                 ["ml-team: deployed A", "ml-team: deployed B"], id="oncePer-unaffected"),
    pytest.param("on-deployed-once", [("Running", "A"), ("Succeeded", "A")],
                 ["ml-team: deployed A"], id="oncePer-same-revision-not-re-armed"),
])
def test_a_state_only_the_watch_saw_re_arms_a_trigger_without_once_per(
        trigger: str, phases: list[tuple[str, str]], expected: list[str]) -> None:
    port = FakePort()
    n, ld = real_notifier(port)
    watch = Watch(port, (trigger,))
    first = watch.set("Succeeded", "A")
    n.observe("Application", first, loaded=ld)
    run(n.notify("Application", first, loaded=ld))
    assert sent(ld) == ["ml-team: deployed A"]

    # The watch delivers every state; the worker runs once, on the last body only.
    for phase, revision in phases:
        n.observe("Application", watch.set(phase, revision), loaded=ld)
    latest = watch.body()
    run(n.notify("Application", latest, loaded=ld))
    # ... and again on the echo of its own write, and on a later unrelated update: no second send
    echo = watch.body()
    n.observe("Application", echo, loaded=ld)
    run(n.notify("Application", echo, loaded=ld))
    run(n.notify("Application", watch.body(), loaded=ld))

    assert sent(ld) == expected
    # the record: on-deployed's one key; oncePer's one key per revision sent
    record = read_state(watch.body()["metadata"]["annotations"][STATE_ANNOTATION])
    assert len(record) == (len(expected) if trigger.endswith("once") else 1)


def test_a_restart_does_not_re_send_and_a_newer_state_waits_for_its_own_plan() -> None:
    port = FakePort()
    n, ld = real_notifier(port)
    watch = Watch(port, ("on-deployed",))
    first = watch.set("Succeeded", "A")
    run(n.notify("Application", first, loaded=ld))
    echo = watch.body()

    # A restart: nothing in memory, the annotation decides; the same Succeeded is not sent again.
    restarted, ld2 = real_notifier(port)
    restarted.observe("Application", echo, loaded=ld2)
    run(restarted.notify("Application", echo, loaded=ld2))
    assert sent(ld2) == []

    # A Running observed after the body a worker is planning on does not re-arm that body
    # (it would send A twice); it re-arms the next plan, of a newer body.
    stale = watch.body()
    n.observe("Application", watch.set("Running", "B"), loaded=ld)
    run(n.notify("Application", stale, loaded=ld))
    assert sent(ld) == ["ml-team: deployed A"]
    run(n.notify("Application", watch.set("Succeeded", "B"), loaded=ld))
    assert sent(ld) == ["ml-team: deployed A", "ml-team: deployed B"]
