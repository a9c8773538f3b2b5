"""e2e: notifications delivered once, from the real controller, to local stand-ins for Slack and PagerDuty.

The controller is the real ``tidegate controller --components notifications``
process (plus ``rollouts`` for the Rollout test), watching the test's own
namespace (``--namespace`` and ``--app-namespace``): its ConfigMaps live there.
Slack's and PagerDuty's servers are absent here; ``e2e/receivers.py``'s
``SlackStandIn`` and ``PagerDutyStandIn`` stand in for them (they check the
payloads those APIs expect), ``WebhookReceiver`` for a webhook.

The Application's status is written by the test as the sync controller writes
it (phase, revision, resources): the notifications component reads only that,
and driving it directly lets the test pick each transition.

The seed's ConfigMap (../shared/seed/notifications-cm.yaml) is used as written,
completed with what it leaves to the installation: a ``service.slack`` entry
pointing at the Slack stand-in (its token from ``argocd-notifications-secret``),
a ``service.pagerdutyv2`` entry pointing at the PagerDuty stand-in, and the
``pagerduty`` template its ``on-sync-failed`` trigger sends but does not define.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.conftest import wait_until
from e2e.kit import GROUP, VERSION, Cluster, Controller, rollout, service, virtual_service
from e2e.notifications_kit import (
    RESOURCES,
    SLACK_TOKEN,
    STATE,
    SUBSCRIBE,
    app_status,
    application,
    seed_cm,
)
from e2e.receivers import Answer, PagerDutyStandIn, Received, SlackStandIn, WebhookReceiver

pytestmark = pytest.mark.e2e

ROUTING_KEY = "e2e0123456789abcdef0123456789abc"
READY = "notifications controller started"
QUIET_SECONDS = 4.0  # how long "nothing more arrives" is watched for
HOLD_SECONDS = 10.0  # the longest a held stand-in keeps a send waiting


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NotificationsController(Controller):
    """``tidegate controller --components notifications[,...]`` for the test's namespace."""

    def __init__(self, env: dict[str, str], namespace: str, log_path: Path, *,
                 components: str = "notifications", metrics_port: int = 0) -> None:
        super().__init__(env, namespace, log_path, ready=READY, metrics_port=metrics_port,
                         extra_args=["--components", components, "--app-namespace", namespace])
        self.start()

    def restart(self) -> None:
        self.stop()
        self.log_path.write_text("")
        self.start()


@pytest.fixture
def controllers(cluster_env: dict[str, str], namespace: str,
                tmp_path: Path) -> Iterator[Callable[..., NotificationsController]]:
    started: list[NotificationsController] = []

    def start(components: str = "notifications", metrics_port: int = 0) -> NotificationsController:
        ctl = NotificationsController(cluster_env, namespace, tmp_path / f"controller-{len(started)}.log",
                                      components=components, metrics_port=metrics_port)
        started.append(ctl)
        return ctl

    yield start
    for ctl in started:
        ctl.stop()


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=SLACK_TOKEN) as stand_in:
        yield stand_in


@pytest.fixture
def pagerduty() -> Iterator[PagerDutyStandIn]:
    with PagerDutyStandIn(routing_keys=(ROUTING_KEY,)) as stand_in:
        yield stand_in


def put_config(core: client.CoreV1Api, namespace: str, *, name: str, secret_name: str,
               data: dict[str, str], secrets: dict[str, str]) -> None:
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=secret_name), string_data=secrets))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name), data=data))


def slack_service(stand_in: SlackStandIn) -> str:
    return yaml.safe_dump({"token": "$slack-token", "apiURL": stand_in.api_url})


# --- Applications ---------------------------------------------------------------------------------

class Apps:
    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        self.custom, self.ns = custom, namespace

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "applications", body)

    def get(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "applications", name))

    def set_status(self, name: str, status: dict[str, Any]) -> None:
        # Argo CD's CRD has no status subresource: the sync controller merge-patches the object.
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, "applications", name,
                                                   {"status": status})

    def state(self, name: str) -> dict[str, Any]:
        text = (self.get(name)["metadata"].get("annotations") or {}).get(STATE) or "{}"
        return dict(json.loads(text))

    def warnings(self, core: client.CoreV1Api, name: str) -> list[client.CoreV1Event]:
        items = core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items
        return [e for e in items if e.type == "Warning"]


def seed_message(name: str, phase: str, revision: str) -> str:
    """The seed's Slack template rendered as Go's text/template renders it."""
    check = ":white_check_mark:" if phase == "Succeeded" else ""
    cross = ":x:" if phase == "Failed" else ""
    lines = "".join(f"\n- {r['kind']}/{r['name']}: {r['status']}\n" for r in RESOURCES)
    return f"{check}\n{cross}\nApplication {name} sync {phase}\nRevision: {revision}\n{lines}\n"


def quiet(count: Callable[[], int], expected: int) -> None:
    """Nothing more arrives for a while."""
    deadline = time.monotonic() + QUIET_SECONDS
    while time.monotonic() < deadline:
        assert count() == expected, f"{count()} arrived, expected {expected}"
        time.sleep(0.2)


def test_seed_configmap_on_deployed_once_per_revision_across_a_restart_and_on_sync_failed_to_slack_and_pagerduty(
        core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str,
        slack: SlackStandIn, pagerduty: PagerDutyStandIn,
        controllers: Callable[..., NotificationsController]) -> None:
    # Given the seed's ConfigMap, completed with the stand-ins' services, and an Application
    # subscribed to both of its triggers
    data = dict(seed_cm()["data"])
    data["service.slack"] = slack_service(slack)
    data["service.pagerdutyv2"] = yaml.safe_dump({"apiURL": pagerduty.url,
                                                  "serviceKeys": {"ml-on-call": "$pagerduty-key"}})
    # No message of its own: the trigger sends both templates as one notification (Argo merges
    # them in order), so the Slack text stays the seed's.
    data["template.pagerduty"] = yaml.safe_dump({
        "pagerdutyv2": {"summary": "{{.app.metadata.name}} sync failed at {{.app.status.sync.revision}}",
                        "severity": "critical", "source": "tidegate"}})
    put_config(core, namespace, name="argocd-notifications-cm", secret_name="argocd-notifications-secret",
               data=data, secrets={"slack-token": SLACK_TOKEN, "pagerduty-key": ROUTING_KEY})
    apps = Apps(custom, namespace)
    apps.create(application("fraud-model", namespace, annotations={
        f"{SUBSCRIBE}on-deployed.slack": "ml-team",
        f"{SUBSCRIBE}on-sync-failed.slack": "ml-team",
        f"{SUBSCRIBE}on-sync-failed.pagerdutyv2": "ml-on-call"}))
    ctl = controllers()

    def slack_texts() -> list[tuple[str, str]]:
        return [(r.json["channel"], r.json.get("text", "")) for r in slack.requests if r.json]

    # When the sync of revision r1 succeeds
    apps.set_status("fraud-model", app_status("Succeeded", "r1"))

    # Then Slack gets the seed's message rendered, once
    slack.wait_for(1, timeout=30)
    assert slack_texts() == [("ml-team", seed_message("fraud-model", "Succeeded", "r1"))], ctl.log()[-3000:]
    wait_until(lambda: len(apps.state("fraud-model")) == 1, timeout=10, message="the state recorded")
    quiet(lambda: len(slack.requests), 1)

    # When the controller restarts, Then nothing is sent again
    ctl.restart()
    quiet(lambda: len(slack.requests), 1)

    # When revision r2 syncs (Running, then Succeeded)
    apps.set_status("fraud-model", app_status("Running", "r2"))
    wait_until(lambda: apps.state("fraud-model") == {}, timeout=20,
               message="the on-deployed condition seen false (its key removed)")
    apps.set_status("fraud-model", app_status("Succeeded", "r2"))

    # Then one more message, for r2
    slack.wait_for(2, timeout=30)
    quiet(lambda: len(slack.requests), 2)
    assert slack_texts()[1] == ("ml-team", seed_message("fraud-model", "Succeeded", "r2"))

    # When the sync of r3 fails
    apps.set_status("fraud-model", app_status("Running", "r3"))
    wait_until(lambda: apps.state("fraud-model") == {}, timeout=20, message="the condition seen false")
    apps.set_status("fraud-model", app_status("Failed", "r3"))

    # Then Slack gets the :x: message and PagerDuty an Events API v2 trigger, each once
    slack.wait_for(3, timeout=30)
    pagerduty.wait_for(1, timeout=30)
    assert slack_texts()[2] == ("ml-team", seed_message("fraud-model", "Failed", "r3"))
    event = pagerduty.requests[0].json
    assert event["routing_key"] == ROUTING_KEY and event["event_action"] == "trigger"
    assert event["payload"]["summary"] == "fraud-model sync failed at r3"
    assert event["payload"]["severity"] == "critical"
    quiet(lambda: len(slack.requests) + len(pagerduty.requests), 4)
    # ... and no Warning Event: every send succeeded; the secret appears in no log line
    assert apps.warnings(core, "fraud-model") == []
    # ... and the delivery log has one Normal Event per send
    sent = core.list_namespaced_event(namespace, field_selector="involvedObject.name=fraud-model").items
    assert sorted(e.message for e in sent if e.reason == "NotificationSent") == sorted(
        [*2 * ['notification "on-deployed" sent to service "slack" (recipient "ml-team")'],
         'notification "on-sync-failed" sent to service "slack" (recipient "ml-team")',
         'notification "on-sync-failed" sent to service "pagerdutyv2" (recipient "ml-on-call")'])
    assert SLACK_TOKEN not in ctl.log() and ROUTING_KEY not in ctl.log()


def test_a_flaky_receiver_gets_the_message_once_and_a_silent_one_leaves_a_warning_event(
        core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str,
        controllers: Callable[..., NotificationsController]) -> None:
    with WebhookReceiver() as flaky, WebhookReceiver() as silent:
        # Given two webhooks: one fails twice then answers, the other never answers
        flaky.fail(2, status=503)
        silent.hang()
        template = {"message": "deployed",
                    "webhook": {name: {"method": "POST", "path": "/deployed",
                                       "body": '{"app": "{{.app.metadata.name}}"}'}
                                for name in ("flaky", "silent")}}
        data = {"trigger.on-deployed": yaml.safe_dump([{"when": "app.status.operationState.phase in ['Succeeded']",
                                                        "send": ["deployed"]}]),
                "template.deployed": yaml.safe_dump(template),
                "service.webhook.flaky": yaml.safe_dump({"url": flaky.url}),
                "service.webhook.silent": yaml.safe_dump({"url": silent.url})}
        put_config(core, namespace, name="argocd-notifications-cm", secret_name="argocd-notifications-secret",
                   data=data, secrets={})
        apps = Apps(custom, namespace)
        apps.create(application("silent-app", namespace, annotations={f"{SUBSCRIBE}on-deployed.silent": ""}))
        apps.create(application("flaky-app", namespace, annotations={f"{SUBSCRIBE}on-deployed.flaky": ""}))
        ctl = controllers(metrics_port=free_port())

        # When both sync (the silent one first)
        apps.set_status("silent-app", app_status("Succeeded", "r1"))
        silent.wait_for(1, timeout=30)
        started = time.monotonic()
        apps.set_status("flaky-app", app_status("Succeeded", "r1"))

        # Then the flaky one gets it after two failures, while the silent one still hangs
        wait_until(lambda: len(apps.state("flaky-app")) == 1, timeout=25,
                   message=f"the flaky webhook's delivery recorded; log:\n{ctl.log()[-3000:]}")
        assert time.monotonic() - started < 25
        answered = [r for r in flaky.requests]
        assert len(answered) == 3 and all(r.json == {"app": "flaky-app"} for r in answered)
        quiet(lambda: len(flaky.requests), 3)

        # ... and the silent one leaves a Warning Event naming the trigger and the service, nothing recorded
        def warned() -> list[str]:
            return [e.message for e in apps.warnings(core, "silent-app") if e.reason == "NotificationFailed"]

        messages = wait_until(warned, timeout=60, message="a Warning Event on the silent app")
        assert 'notification "on-deployed" to service "silent"' in messages[0]
        assert apps.state("silent-app") == {}
        # ... and the controller is still up and serving, and counted both outcomes
        assert ctl.proc is not None and ctl.proc.poll() is None
        counted = ctl.metrics()
        assert 'notification_deliveries_total{service="flaky",succeeded="true",trigger="on-deployed"} 1.0' in counted
        assert 'notification_deliveries_total{service="silent",succeeded="false",trigger="on-deployed"}' in counted


class HeldSlackStandIn(SlackStandIn):
    """The Slack stand-in, answering a request only once the test lets it (bounded wait):
    the controller's worker stays inside that send while the test writes more states."""

    def __init__(self, *, token: str) -> None:
        super().__init__(token=token)
        self.hold = threading.Event()
        self.hold.set()

    def answer(self, received: Received) -> Answer:
        self.hold.wait(timeout=HOLD_SECONDS)
        return super().answer(received)


def test_a_sync_too_fast_for_a_worker_still_notifies_each_new_revision_once(
        core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str,
        controllers: Callable[..., NotificationsController]) -> None:
    with HeldSlackStandIn(token=SLACK_TOKEN) as slack:
        # Given the seed's ConfigMap and an Application subscribed to on-deployed (no oncePer)
        data = dict(seed_cm()["data"])
        data["service.slack"] = slack_service(slack)
        put_config(core, namespace, name="argocd-notifications-cm", secret_name="argocd-notifications-secret",
                   data=data, secrets={"slack-token": SLACK_TOKEN})
        apps = Apps(custom, namespace)
        apps.create(application("quick-model", namespace,
                                annotations={f"{SUBSCRIBE}on-deployed.slack": "ml-team"}))
        ctl = controllers()

        # When r1 succeeds, and while its message is still being sent r2 syncs: Running and
        # Succeeded written back to back (the worker can only plan the last of them)
        slack.hold.clear()
        apps.set_status("quick-model", app_status("Succeeded", "r1"))
        slack.wait_for(1, timeout=30)
        apps.set_status("quick-model", app_status("Running", "r2"))
        apps.set_status("quick-model", app_status("Succeeded", "r2"))
        time.sleep(1.0)  # the watch delivers both states while the send is held
        slack.hold.set()

        # Then the Running state the watch delivered re-armed on-deployed: one message for r2
        slack.wait_for(2, timeout=30)
        wait_until(lambda: len(apps.state("quick-model")) == 1, timeout=10, message="the state recorded")
        quiet(lambda: len(slack.requests), 2)

        # When r3 syncs back to back with nothing in flight, Then one message for r3
        apps.set_status("quick-model", app_status("Running", "r3"))
        apps.set_status("quick-model", app_status("Succeeded", "r3"))
        slack.wait_for(3, timeout=30)
        quiet(lambda: len(slack.requests), 3)

        texts = [r.json.get("text", "") for r in slack.requests if r.json]
        assert texts == [seed_message("quick-model", "Succeeded", r) for r in ("r1", "r2", "r3")], \
            ctl.log()[-3000:]
        assert len(apps.state("quick-model")) == 1


# --- Rollouts ---------------------------------------------------------------------------------------

def completed(name: str, pod_hash: str) -> str:
    """The catalog's rollout-completed message."""
    return f"Rollout {name} is fully promoted to revision {pod_hash}."


def host_level(cluster: Cluster, name: str, annotations: dict[str, str]) -> None:
    cluster.create(service(f"{name}-canary", name))
    cluster.create(service(f"{name}-stable", name))
    cluster.create(virtual_service(f"{name}-vsvc", canary_host=f"{name}-canary", stable_host=f"{name}-stable"))
    doc = rollout(name)
    doc["metadata"]["annotations"] = annotations
    cluster.create(doc)


def test_rollout_aborted_with_its_reason_and_completed_once_each(
        core: client.CoreV1Api, cluster: Cluster, slack: SlackStandIn, kubectl: Any,
        controllers: Callable[..., NotificationsController]) -> None:
    # Given the namespace's own Argo Rollouts notification ConfigMap, holding only the Slack
    # service (the triggers and templates are the shipped catalog's, enabled by name), and two
    # subscribed Rollouts
    put_config(core, cluster.ns, name="argo-rollouts-notification-configmap",
               secret_name="argo-rollouts-notification-secret",
               data={"service.slack": slack_service(slack)}, secrets={"slack-token": SLACK_TOKEN})
    subscribe = {f"{SUBSCRIBE}on-rollout-aborted.slack": "on-call",
                 f"{SUBSCRIBE}on-rollout-completed.slack": "ml-team"}
    host_level(cluster, "aborted", subscribe)
    host_level(cluster, "promoted", subscribe)
    ctl = controllers("rollouts,notifications")

    def texts(channel: str) -> list[str]:
        return [r.json.get("text", "") for r in slack.requests if r.json and r.json.get("channel") == channel]

    first = {name: cluster.wait_phase(name, "Healthy")["stableRS"] for name in ("aborted", "promoted")}
    # the first version completing is a completion too, once each
    wait_until(lambda: len(texts("ml-team")) == 2, timeout=30, message=f"two completions; log:\n{ctl.log()[-3000:]}")
    assert sorted(texts("ml-team")) == sorted(completed(n, h) for n, h in first.items())

    # When both get v2 and pause at 10%; one is aborted by on-call with a reason, the other promoted
    for name in ("aborted", "promoted"):
        cluster.set_image(name, "registry.local/model:v2")
    for name in ("aborted", "promoted"):
        cluster.wait_status(name, lambda s: s.get("phase") == "Paused", message="paused")
    done = kubectl("annotate", "-n", cluster.ns, "rollout", "aborted", "tidegate.dev/abort=p99 too high")
    assert done.returncode == 0, done.stderr
    cluster.patch_rollout("promoted", {"status": {"pauseConditions": None}}, status=True)

    # Then on-call gets on-rollout-aborted with the reason, once
    wait_until(lambda: texts("on-call"), timeout=30, message="the abort notification")
    aborted = texts("on-call")
    assert len(aborted) == 1 and aborted[0].startswith("Rollout aborted was aborted: RolloutAborted: ")
    assert "p99 too high" in aborted[0]
    # ... and the promoted one's completion at v2 arrives once
    v2 = cluster.wait_status("promoted", lambda s: s.get("phase") == "Healthy" and s["stableRS"] != first["promoted"],
                             timeout=60, message="promoted to v2")["stableRS"]
    wait_until(lambda: completed("promoted", v2) in texts("ml-team"), timeout=30,
               message="the completion of v2")
    quiet(lambda: len(slack.requests), 4)
    assert texts("ml-team").count(completed("promoted", v2)) == 1
    # ... with the catalog template's Slack attachment
    last = [r.json for r in slack.requests if r.json and r.json.get("text") == completed("promoted", v2)][0]
    assert last["attachments"][0]["title"] == "promoted"
