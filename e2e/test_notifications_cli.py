"""e2e: ``tidegate notifications trigger run`` and ``template notify --dry-run`` on the real cluster.

Issue 10's acceptance: the two commands print what would be sent. Each case runs a real
``python -m cli.main notifications ...`` subprocess against the local cluster, reading a live
Application or Rollout and the notifications ConfigMap from the module's own namespace (passed
as ``-n`` and ``--config-namespace``), and asserts on its exact stdout, stderr and exit code.
The cases only read, so they share one namespace set up once (a module fixture).

The ConfigMap is the seed's (../shared/seed/notifications-cm.yaml) as written, plus a
``service.slack`` pointing at ``e2e/receivers.py``'s ``SlackStandIn`` (Slack itself is absent
here). The stand-in is there to show that nothing is sent: it must get no request. Nothing is
written either: the objects keep their resourceVersion and get no
``notified.notifications.argoproj.io`` annotation. Rollouts read
``argo-rollouts-notification-configmap`` (only the Slack service: the catalog's triggers and
templates); a third ConfigMap holds broken templates for the error cases.

No controller runs: the test writes each object's status itself, as the sync controller (a
merge patch: Argo CD's Application CRD has no status subresource) and the rollouts controller
(the Rollout's status subresource) write it, so the commands judge exactly that status.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.conftest import REPO, TEST_LABEL
from e2e.kit import GROUP, VERSION
from e2e.notifications_kit import SLACK_TOKEN, STATE, SUBSCRIBE, app_status, application, seed_cm
from e2e.receivers import SlackStandIn

pytestmark = pytest.mark.e2e

ARGOCD_CM, ARGOCD_SECRET = "argocd-notifications-cm", "argocd-notifications-secret"
ROLLOUTS_CM, ROLLOUTS_SECRET = "argo-rollouts-notification-configmap", "argo-rollouts-notification-secret"
COMMAND_TIMEOUT = 60.0
PREFIX = "tidegate notifications: "

def rollout(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Rollout",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "model", "image": "registry.local/model:v2"}]}},
                 "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}},
    }


ABORTED_STATUS = {"abort": True, "abortedAt": "2026-12-01T10:05:00Z", "phase": "Degraded",
                  "message": "RolloutAborted: Rollout aborted update to revision 2: p99 too high",
                  "currentPodHash": "6f9c8d7b5", "stableRS": "5d4c3b2a1"}
PAUSED_STATUS = {"phase": "Paused", "message": "CanaryPauseStep", "currentPodHash": "7a8b9c0d1",
                 "stableRS": "5d4c3b2a1", "pauseConditions": [{"reason": "CanaryPauseStep",
                                                               "startTime": "2026-12-01T10:05:00Z"}]}


class Objects:
    """The test namespace's Applications and Rollouts through the real API."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        self.custom, self.ns = custom, namespace

    def create(self, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, plural, body)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name))

    def set_app_status(self, name: str, status: dict[str, Any]) -> None:
        # Argo CD's Application CRD has no status subresource: a merge patch of the object.
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, "applications", name,
                                                   {"status": status})

    def set_rollout_status(self, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, self.ns, "rollouts", name,
                                                          {"status": status})

    def fingerprint(self, plural: str, name: str) -> tuple[str, str | None]:
        """resourceVersion and the notified-state annotation: both unchanged when nothing is written."""
        meta = self.get(plural, name)["metadata"]
        return str(meta["resourceVersion"]), (meta.get("annotations") or {}).get(STATE)


@dataclass
class World:
    """The module's namespace, its objects and the Slack stand-in, shared by every case."""

    namespace: str
    objects: Objects
    slack: SlackStandIn
    before: dict[tuple[str, str], tuple[str, str | None]]
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m cli.main notifications ARGS -n NS --config-namespace NS``: a real subprocess."""
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "notifications", *args,
             "--namespace", self.namespace, "--config-namespace", self.namespace],
            env=self.env, cwd=REPO, capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT)

    def fingerprints(self) -> dict[tuple[str, str], tuple[str, str | None]]:
        return {key: self.objects.fingerprint(*key) for key in self.before}


def put_config(core: client.CoreV1Api, namespace: str, *, name: str, data: dict[str, str],
               secret_name: str | None = None) -> None:
    if secret_name:
        core.create_namespaced_secret(namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name=secret_name), string_data={"slack-token": SLACK_TOKEN}))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name), data=data))


def slack_service(stand_in: SlackStandIn) -> str:
    return yaml.safe_dump({"token": "$slack-token", "apiURL": stand_in.api_url})


BROKEN_CM = "broken-notifications-cm"
BROKEN = {  # templates that fail: to compile (read with the ConfigMap), or to render for the object
    "template.unclosed": yaml.safe_dump({"message": "Application {{.app.metadata.name sync"}),
    "template.out-of-range": yaml.safe_dump({"message": "first: {{index .app.status.operationState.syncResult.resources 5}}"}),
    "template.attribute-walk": yaml.safe_dump({"message": "{{.app.metadata.name.upper}}"}),
}


@pytest.fixture(scope="module")
def world(core: client.CoreV1Api, custom: client.CustomObjectsApi, cluster_env: dict[str, str]) -> Iterator[World]:
    # One namespace for the module: every case only reads it, so they share it (one setup, not 12).
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace,
                                                                          labels={TEST_LABEL: "true"})))
    try:
        with SlackStandIn(token=SLACK_TOKEN) as slack:
            # The seed's ConfigMap as written plus a Slack service (the stand-in) and its Secret;
            # the Rollouts ConfigMap with only the Slack service (its triggers are the catalog's)
            data = dict(seed_cm()["data"])
            data["service.slack"] = slack_service(slack)
            put_config(core, namespace, name=ARGOCD_CM, data=data, secret_name=ARGOCD_SECRET)
            put_config(core, namespace, name=ROLLOUTS_CM, data={"service.slack": slack_service(slack)},
                       secret_name=ROLLOUTS_SECRET)
            put_config(core, namespace, name=BROKEN_CM, data=BROKEN)
            # An Application whose sync of 4f1c2e9 Succeeded and one whose sync of b7d03a1 Failed
            objects = Objects(custom, namespace)
            objects.create("applications", application("fraud-model", namespace, annotations={
                f"{SUBSCRIBE}on-deployed.slack": "ml-team"}))
            objects.create("applications", application("churn-model", namespace, annotations={
                f"{SUBSCRIBE}on-sync-failed.slack": "ml-on-call"}))
            objects.set_app_status("fraud-model", app_status("Succeeded", "4f1c2e9", unhealthy="Degraded"))
            objects.set_app_status("churn-model", app_status("Failed", "b7d03a1", unhealthy="Degraded"))
            # A Rollout aborted at its canary step and one paused there
            objects.create("rollouts", rollout("canary-model", {f"{SUBSCRIBE}on-rollout-aborted.slack": "on-call"}))
            objects.create("rollouts", rollout("paused-model", {}))
            objects.set_rollout_status("canary-model", ABORTED_STATUS)
            objects.set_rollout_status("paused-model", PAUSED_STATUS)
            keys = [("applications", "fraud-model"), ("applications", "churn-model"),
                    ("rollouts", "canary-model"), ("rollouts", "paused-model")]
            before = {key: objects.fingerprint(*key) for key in keys}
            assert all(state is None for _, state in before.values())
            yield World(namespace=namespace, objects=objects, slack=slack, before=before, env=cluster_env)
    finally:
        core.delete_namespace(namespace)


# The seed's on-sync-failed also sends 'pagerduty', a template the seed leaves to the installation.
SEED_WARNING = ("warning: argocd-notifications-cm: trigger.on-sync-failed: condition [0] sends template "
                "'pagerduty', which is not configured\n")
BROKEN_WARNING = (f"warning: {BROKEN_CM}: template.unclosed: message: does not compile: "
                  "template: unclosed.message:1:12: unclosed action\n")
ERROR = "tidegate notifications: "
REASON = ABORTED_STATUS["message"]


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int
    stdout: str  # ``{ns}`` stands for the test's namespace
    stderr: str


CASES = [
    # trigger run: each condition judged against the live object's status
    Case("trigger-on-deployed-app-that-succeeded", ("trigger", "run", "on-deployed", "--app", "fraud-model"), 0,
         "CONDITION                       RESULT  ONCEPER  WHEN\n"
         "[0] Model deployment completed  true    -        app.status.operationState.phase in ['Succeeded']\n",
         SEED_WARNING),
    Case("trigger-on-deployed-app-that-failed", ("trigger", "run", "on-deployed", "--app", "churn-model"), 0,
         "CONDITION                       RESULT  ONCEPER  WHEN\n"
         "[0] Model deployment completed  false   -        app.status.operationState.phase in ['Succeeded']\n",
         SEED_WARNING),
    Case("trigger-on-sync-failed-app-that-failed", ("trigger", "run", "on-sync-failed", "--app", "churn-model"), 0,
         "CONDITION              RESULT  ONCEPER  WHEN\n"
         "[0] Model sync failed  true    -        app.status.operationState.phase in ['Error', 'Failed']\n",
         SEED_WARNING),
    Case("trigger-on-rollout-aborted-rollout-aborted",
         ("trigger", "run", "on-rollout-aborted", "--rollout", "canary-model"), 0,
         "CONDITION                     RESULT  ONCEPER    WHEN\n"
         "[0] The Rollout was aborted.  true    6f9c8d7b5  rollout.status.abort == true\n", ""),
    Case("trigger-on-rollout-aborted-rollout-paused",
         ("trigger", "run", "on-rollout-aborted", "--rollout", "paused-model"), 0,
         "CONDITION                     RESULT  ONCEPER  WHEN\n"
         "[0] The Rollout was aborted.  false   -        rollout.status.abort == true\n", ""),
    # template notify --dry-run: the seed's message rendered for each subscription
    Case("notify-seed-message-app-that-succeeded",
         ("template", "notify", "slack-ml-team", "fraud-model", "--dry-run"), 0,
         "# template slack-ml-team for Application {ns}/fraud-model to slack:ml-team\n"
         "message: |+\n"
         "  :white_check_mark:\n"
         "\n"
         "  Application fraud-model sync Succeeded\n"
         "  Revision: 4f1c2e9\n"
         "\n"
         "  - Deployment/inference: Synced\n"
         "\n"
         "  - Service/inference-svc: Synced\n"
         "\n", SEED_WARNING),
    # (a message starting with a blank line needs YAML's indentation indicator: |2+)
    Case("notify-seed-message-app-that-failed",
         ("template", "notify", "slack-ml-team", "app/churn-model", "--dry-run"), 0,
         "# template slack-ml-team for Application {ns}/churn-model to slack:ml-on-call\n"
         "message: |2+\n"
         "\n"
         "  :x:\n"
         "  Application churn-model sync Failed\n"
         "  Revision: b7d03a1\n"
         "\n"
         "  - Deployment/inference: Synced\n"
         "\n"
         "  - Service/inference-svc: Synced\n"
         "\n", SEED_WARNING),
    Case("notify-catalog-rollout-aborted-with-its-reason",
         ("template", "notify", "rollout-aborted", "rollout/canary-model", "--dry-run"), 0,
         "# template rollout-aborted for Rollout {ns}/canary-model to slack:on-call\n"
         f"message: 'Rollout canary-model was aborted: {REASON}'\n"
         "email:\n"
         "  subject: Rollout canary-model was aborted\n"
         "slack:\n"
         "  attachments: |\n"
         "    [{\n"
         '      "title": "canary-model",\n'
         '      "color": "#E01E5A",\n'
         '      "fields": [\n'
         f'        {{"title": "Reason", "value": "{REASON}", "short": false}}\n'
         "      ]\n"
         "    }]\n"
         "pagerdutyv2:\n"
         f"  summary: 'Rollout canary-model was aborted: {REASON}'\n"
         "  severity: error\n"
         "  source: {ns}/canary-model\n", ""),
    # errors: a non-zero exit and a message naming what is wrong
    Case("bad-trigger-name", ("trigger", "run", "on-deployd", "--app", "fraud-model"), 1, "",
         SEED_WARNING + ERROR + "trigger 'on-deployd' is not configured (nor in the catalog)\n"),
    Case("template-that-does-not-compile",
         ("template", "notify", "unclosed", "fraud-model", "--dry-run", "--config-map", BROKEN_CM), 1, "",
         BROKEN_WARNING + ERROR + f"template 'unclosed' in {BROKEN_CM} is invalid (see the warning above): "
         "nothing to render\n"),
    Case("template-that-fails-to-render-index-out-of-range",
         ("template", "notify", "out-of-range", "fraud-model", "--dry-run", "--config-map", BROKEN_CM), 1,
         "# template out-of-range for Application {ns}/fraud-model to slack:ml-team\n"
         "  error: template 'out-of-range' field message: template: out-of-range.message:1:9: executing "
         '"out-of-range.message" at <index .app.status.operationState.sync...>: error calling index: '
         "index out of range: 5\n", BROKEN_WARNING),
    Case("template-that-walks-into-a-string",
         ("template", "notify", "attribute-walk", "fraud-model", "--dry-run", "--config-map", BROKEN_CM), 1,
         "# template attribute-walk for Application {ns}/fraud-model to slack:ml-team\n"
         "  error: template 'attribute-walk' field message: template: attribute-walk.message:1:2: executing "
         '"attribute-walk.message" at <.app.metadata.name.upper>: can\'t evaluate field upper in type '
         "interface {}\n", BROKEN_WARNING),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_commands_print_what_would_be_sent_and_send_and_write_nothing(world: World, case: Case) -> None:
    # When the command runs against the live objects
    done = world.run(*case.argv)

    # Then it prints exactly what would be sent (or what is wrong) and exits as expected
    assert (done.returncode, done.stdout, done.stderr) == (
        case.code, case.stdout.replace("{ns}", world.namespace), case.stderr)
    # ... and nothing was sent (the Slack stand-in got no request), nothing written to the objects
    assert world.slack.requests == []
    assert world.fingerprints() == world.before
