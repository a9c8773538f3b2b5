"""`make demo`: the seed's whole story, Git to a canary, on the local cluster.

Who calls it: the Makefile's ``demo`` target (``python -m examples.demo``) once
the local cluster is up; ``--clean`` removes what a run left and exits. What it
does, in order (docs/demo.md tells the story with the output):

1. pushes examples/gitops/ (laid out as the seed: the Helm chart at
   ``environments/production`` with ``values.yaml`` + ``values-production.yaml``,
   the ``models/llm-service`` kustomization) to a bare Git repository under
   ``.cluster/demo/``, served over ``file://``;
2. starts the test exporter that plays the model's stable and canary servers
   (scraped by the harness's Prometheus), the mesh stand-in, the KServe stand-in
   (e2e/kserve.py: the InferenceService CRD and a loop marking InferenceServices
   Ready), local stand-ins for Slack's and PagerDuty's servers
   (e2e.receivers.SlackStandIn, PagerDutyStandIn), and
   ``tidegate controller --components rollouts,analysis,gitops,notifications``;
3. applies the seed's notifications ConfigMap (examples/gitops/argocd/
   notifications-cm.yaml, with Slack and PagerDuty services pointed at the
   stand-ins), the seed's AppProject and Application (subscribed to on-deployed
   and on-sync-failed) plus an Application for the llm-service kustomization,
   and prints the first sync wave by wave from the operation's result; then an
   ``argo-rollouts-notification-configmap`` in ml-serving (the chart's Rollout
   subscribes to the shipped on-rollout-completed and on-rollout-aborted);
4. act 1: a commit bumps the model to v3; a signed GitHub push webhook makes the
   controller sync it at once, and the canary promotes it;
5. act 2: a commit bumps the model to v4, whose canary fails 5% of requests;
   the analysis aborts it: the Application stays Synced, its Rollout Degraded;
6. act 3: ``git revert`` of that commit brings the Application back to Healthy;
7. prints what arrived at the Slack and PagerDuty stand-ins, per trigger, and
   checks it: on-deployed once per synced revision, on-rollout-completed for v3,
   on-rollout-aborted for v4 with its reason, each once. Every message is also
   printed as it arrives, during the story.

Stand-ins, named as such in the output: Istio's data plane (``MeshStandIn``
reads the VirtualService weights and sets the exporter's request rates in those
proportions) and KServe's controller (``e2e.kserve.KServeStandIn``). Every
decision - sync, waves, canary steps, analysis, abort - is Tidegate's.

Each step, and each expected notification, has a deadline: past it the demo says which step did not happen and
exits 1 (the controller's log is in ``.cluster/logs/tidegate-controller.log``).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from e2e.exporter import start_exporter
from e2e.hpa import HpaStandIn
from e2e.kserve import KServeStandIn, install_inferenceservice_crd
from e2e.receivers import PagerDutyStandIn, SlackStandIn

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / ".cluster"
GITOPS = REPO / "examples" / "gitops"
WORK = CLUSTER / "demo"
NAMESPACE = "ml-serving"
APP_NAMESPACE = "argocd"
APP, MODEL_APP, PROJECT = "ml-platform", "llm-service", "ml-production"
ROLLOUT = "inference-rollout"
CONFIG_REPO_URL = "https://github.com/org/ml-platform-config"
MODELS_REPO_URL = "https://github.com/org/ml-models"
CHART_PATH = "environments/production"
MODELS_PATH = "models/llm-service"
VALUES_PRODUCTION = f"{CHART_PATH}/values-production.yaml"
PV_NAME = "tidegate-demo-model-cache"
GROUP, VERSION = "argoproj.io", "v1alpha1"
TOTAL_RPS = 50.0
WAVE_ANNOTATION = "argocd.argoproj.io/sync-wave"
REWRITE_FLAG = "--repo-url-rewrite"
CONTROLLER_LOG = CLUSTER / "logs" / "tidegate-controller.log"
DASHBOARD_LOG = CLUSTER / "logs" / "tidegate-dashboard.log"
EXPLAIN_WIDTH = 190  # columns of `tidegate explain` shown per line (queries run long)
DASHBOARD_PORT = 3100  # tidegate dashboard's default; another free port when it is taken

# Deadlines of the steps, seconds (a slow, shared 2-core machine included).
FIRST_SYNC_S = 180.0
SYNC_S = 60.0
CANARY_S = 240.0
READY_S = 60.0
NOTIFY_S = 45.0  # from the event a notification reports to its arrival at the stand-in
QUIET_S = 4.0  # watched at the end for a duplicate arriving late

# Notifications: the seed's ConfigMap as written, plus what it leaves to the installation.
NOTIFICATIONS_CM = GITOPS / "argocd" / "notifications-cm.yaml"
ARGOCD_SECRET, ROLLOUTS_CM, ROLLOUTS_SECRET = ("argocd-notifications-secret", "argo-rollouts-notification-configmap",
                                               "argo-rollouts-notification-secret")
SLACK_TOKEN = "xoxb-demo-stand-in-token"  # noqa: S105 - the Slack stand-in's token, not a secret
PAGERDUTY_KEY = "demo0123456789abcdef0123456789ab"
SUBSCRIBE = "notifications.argoproj.io/subscribe."
CHANNEL, ON_CALL = "ml-team", "ml-on-call"
COMPONENTS = "rollouts,analysis,gitops,notifications"
# The seed's on-sync-failed sends a template ``pagerduty`` it does not define; without a
# message of its own it adds only the PagerDuty event to the seed's Slack text.
PAGERDUTY_TEMPLATE = {"pagerdutyv2": {"summary": "{{.app.metadata.name}} sync failed at {{.app.status.sync.revision}}",
                                      "severity": "critical", "source": "tidegate-demo"}}
# Which trigger a Slack message came from, read from its text (the templates' wording), and
# what it is about: the seed's on-deployed names the revision, the catalog's Rollout
# messages the pod template hash.
TRIGGER_TEXT = (
    ("on-deployed", re.compile(r"^Application \S+ sync Succeeded\s*$.*?^Revision: (\S+)", re.M | re.S)),
    ("on-sync-failed", re.compile(r"^Application \S+ sync (?:Failed|Error)\s*$.*?^Revision: (\S+)", re.M | re.S)),
    ("on-rollout-completed", re.compile(r"^Rollout \S+ is fully promoted to revision (\S+?)\.$", re.M)),
    ("on-rollout-aborted", re.compile(r"^Rollout \S+ was aborted: (.*)$", re.M | re.S)),
)
SHOWN_LINES = 3

# The seed's AppProject lists only core, apps and serving.kserve.io namespaced
# kinds, so as written it refuses the seed's own Rollout, AnalysisTemplates and
# VirtualService, and the HPA and PDB of its llm-service kustomization. The demo
# adds these groups (and prints that it does).
EXTRA_NAMESPACED_KINDS = [{"group": "argoproj.io", "kind": "*"}, {"group": "networking.istio.io", "kind": "*"},
                          {"group": "autoscaling", "kind": "*"}, {"group": "policy", "kind": "*"}]

MSG_DEADLINE = "demo: {what} did not happen within {seconds:.0f} s; see {log}"
MSG_CLASH = ("demo: namespace {namespace} exists and was not made by the demo (someone else is using "
             "it); retry later, or delete it yourself")
MSG_KUBECTL = "demo: kubectl {args} failed: {error}"
MSG_WEBHOOK = "demo: the webhook answered {status}: {body}"
MSG_NOT_ARRIVED = "the notification {what} at the Slack stand-in"
MSG_TWICE = "demo: {trigger} for {key} arrived {count} times, expected once"
MSG_UNEXPECTED = "demo: {trigger} arrived for {keys}, expected {expected}"
DEMO_LABEL = "tidegate.dev/demo"

T = TypeVar("T")
# Called on every poll of wait_for: prints the notifications that arrived meanwhile.
TICKS: list[Callable[[], None]] = []


# --- plumbing -----------------------------------------------------------------------------------

def load_env() -> dict[str, str]:
    env = dict(os.environ)
    for line in (CLUSTER / "env").read_text().splitlines():
        if "=" in line and not line.startswith(("export", "#")):
            key, _, value = line.partition("=")
            env[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    return env


def run(argv: list[str], *, env: dict[str, str], cwd: Path | None = None, timeout: float = 60) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(MSG_KUBECTL.format(args=" ".join(argv), error=done.stderr.strip()[-2000:])
                         if argv[0] == "kubectl" else f"demo: {' '.join(argv[:3])} failed: {done.stderr.strip()}")
    return done.stdout


def wait_for(what: str, check: Callable[[], T | None], *, timeout: float, interval: float = 0.3) -> T:
    """``check()``'s first truthy value, or exit 1 naming ``what`` once ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for tick in TICKS:
            tick()
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(MSG_DEADLINE.format(what=what, seconds=timeout, log=CONTROLLER_LOG.relative_to(REPO)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GitRepo:
    """The demo's Git server: a bare repository (the remote, over file://) and a work tree."""

    def __init__(self, root: Path) -> None:
        self.bare, self.work = root / "ml-platform-config.git", root / "work"
        self.env = {"GIT_AUTHOR_NAME": "ml-platform", "GIT_AUTHOR_EMAIL": "ml-platform@example.com",
                    "GIT_COMMITTER_NAME": "ml-platform", "GIT_COMMITTER_EMAIL": "ml-platform@example.com",
                    "HOME": str(root), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self.git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=root)
        self.git("init", "-q", "-b", "main", str(self.work), cwd=root)
        self.git("remote", "add", "origin", self.url)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return run(["git", *args], env=self.env, cwd=cwd or self.work).strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD")

    def set_model_version(self, version: str, message: str) -> str:
        path = self.work / VALUES_PRODUCTION
        lines = [f"  version: {version}" if line.startswith("  version: ") else line
                 for line in path.read_text().splitlines()]
        path.write_text("\n".join(lines) + "\n")
        return self.commit(message)

    def revert_head(self) -> str:
        self.git("revert", "--no-edit", "HEAD")
        self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD")


class MeshStandIn(threading.Thread):
    """Sets the exporter's request rates to follow the VirtualService weights (mesh stand-in)."""

    def __init__(self, custom: Any, exporter_url: str) -> None:
        super().__init__(daemon=True)
        self.custom = custom
        self.url = exporter_url
        self.stop = threading.Event()

    def control(self, service: str, **settings: float) -> None:
        body = json.dumps({"service": service, **settings}).encode()
        request = urllib.request.Request(f"{self.url}/control", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).read()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                stable, canary = vs_weights(self.custom)
                self.control("inference-stable", rate=TOTAL_RPS * stable / 100)
                # a canary with no traffic still answers health probes: keep a trickle
                self.control("inference-canary", rate=max(TOTAL_RPS * canary / 100, 1.0))
            except ApiException as exc:
                if exc.status != 404:  # not synced yet: nothing to follow
                    print(f"  (mesh stand-in: {exc.reason})", file=sys.stderr)
            except Exception as exc:  # noqa: BLE001 - the stand-in must not stop the demo
                print(f"  (mesh stand-in: {exc})", file=sys.stderr)
            self.stop.wait(0.5)


@dataclass(frozen=True)
class Note:
    """One notification as it arrived at a stand-in: which trigger, and what it is about."""

    service: str
    channel: str
    trigger: str
    key: str
    text: str


class Inbox:
    """What arrived at the Slack and PagerDuty stand-ins, printed as it comes (from ``wait_for``)."""

    def __init__(self, slack: SlackStandIn, pagerduty: PagerDutyStandIn) -> None:
        self.slack, self.pagerduty = slack, pagerduty
        self.notes: list[Note] = []
        self.started = time.monotonic()  # the current act's start, for the printed times
        self._slack_seen = self._pagerduty_seen = 0

    def drain(self) -> None:
        slack = self.slack.requests[self._slack_seen:]
        pagerduty = self.pagerduty.requests[self._pagerduty_seen:]
        self._slack_seen += len(slack)
        self._pagerduty_seen += len(pagerduty)
        for received in slack:
            message = received.json if isinstance(received.json, dict) else {}
            text = str(message.get("text") or "")
            self.arrived(Note("Slack", "#" + str(message.get("channel") or "?"), *classify(text), text))
        for received in pagerduty:
            event = received.json if isinstance(received.json, dict) else {}
            payload = event.get("payload") or {}
            text = f"{event.get('event_action', '?')} ({payload.get('severity', '?')}): {payload.get('summary', '')}"
            self.arrived(Note("PagerDuty", "routing key " + str(event.get("routing_key", "?"))[:6] + "...",
                              "on-sync-failed", "", text))

    def arrived(self, note: Note) -> None:
        self.notes.append(note)
        lines = [line.strip() for line in note.text.splitlines() if line.strip()]
        more = f"   (+{len(lines) - SHOWN_LINES} lines)" if len(lines) > SHOWN_LINES else ""
        print(f"  {time.monotonic() - self.started:5.1f}s  >> {note.service} {note.channel} <- {note.trigger}: "
              f"{' | '.join(lines[:SHOWN_LINES])}{more}")

    def find(self, trigger: str, key: str | None = None) -> list[Note]:
        return [n for n in self.notes if n.trigger == trigger and (key is None or n.key == key)]

    def expect(self, what: str, trigger: str, key: str | None = None) -> Note:
        """The first ``trigger`` notification (about ``key``), or exit 1 once NOTIFY_S passed."""
        found = wait_for(MSG_NOT_ARRIVED.format(what=what), lambda: self.find(trigger, key), timeout=NOTIFY_S)
        return found[0]

    def quiet(self, seconds: float) -> None:
        """Watch for late arrivals (a duplicate would show here)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.drain()
            time.sleep(0.2)


def classify(text: str) -> tuple[str, str]:
    """(trigger, what it is about) of a Slack message, from the templates' wording."""
    for trigger, pattern in TRIGGER_TEXT:
        found = pattern.search(text)
        if found:
            return trigger, found.group(1).strip()
    return "?", ""


def vs_weights(custom: Any) -> tuple[int, int]:
    """(stable, canary) weights of the VirtualService as the API server has them now."""
    vs = custom.get_namespaced_custom_object("networking.istio.io", "v1beta1", NAMESPACE,
                                             "virtualservices", "inference-vsvc")
    route = vs["spec"]["http"][0]["route"]
    return int(route[0].get("weight", 0)), int(route[1].get("weight", 0))


def start_controller(env: dict[str, str], *, webhook_port: int, rewrites: list[str]) -> subprocess.Popen[bytes]:
    CONTROLLER_LOG.parent.mkdir(parents=True, exist_ok=True)
    log = CONTROLLER_LOG.open("ab")
    argv = [sys.executable, "-m", "cli.main", "controller", "--components", COMPONENTS,
            # only the demo's namespaces: other controllers may share this cluster
            "--namespace", NAMESPACE, "--namespace", APP_NAMESPACE, "--app-namespace", APP_NAMESPACE,
            # Rollouts' notification configuration: ml-serving's own (no argo-rollouts namespace here)
            "--notifications-namespace", NAMESPACE,
            "--metrics-port", "0", "--webhook-port", str(webhook_port),
            # the Lease lives where it can from the start (ml-serving is created by the first sync)
            "--leader-election-namespace", "default", "--healthz-port", "0"]
    for rewrite in rewrites:
        argv += [REWRITE_FLAG, rewrite]
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    (CLUSTER / "pids").mkdir(exist_ok=True)
    (CLUSTER / "pids" / "tidegate-controller").write_text(str(proc.pid))
    return proc


def start_dashboard(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``tidegate dashboard`` on 127.0.0.1 for the demo's namespaces, and its URL."""
    port = DASHBOARD_PORT
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            port = free_port()
    DASHBOARD_LOG.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "cli.main", "dashboard", "--port", str(port), "-n", NAMESPACE,
            "--app-namespace", APP_NAMESPACE]
    proc = subprocess.Popen(argv, env=env, stdout=DASHBOARD_LOG.open("ab"), stderr=subprocess.STDOUT, cwd=REPO)
    (CLUSTER / "pids").mkdir(exist_ok=True)
    (CLUSTER / "pids" / "tidegate-dashboard").write_text(str(proc.pid))
    url = f"http://127.0.0.1:{port}/"

    def answers() -> bool | None:
        try:
            with urllib.request.urlopen(url + "api/config", timeout=2) as reply:  # noqa: S310 - our own loopback URL
                return reply.status == 200 or None
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None:
                raise SystemExit(f"demo: tidegate dashboard exited; see {DASHBOARD_LOG}") from None
            return None

    wait_for("the dashboard to answer", answers, timeout=READY_S)
    return proc, url


def show_explain(env: dict[str, str]) -> None:
    """``tidegate explain`` of the aborted canary: its steps, then only the failed measurements."""
    out = run([sys.executable, "-m", "cli.main", "explain", ROLLOUT, "-n", NAMESPACE], env=env, cwd=REPO)
    print(f"  kubectl tidegate explain {ROLLOUT} -n {NAMESPACE} (rebuilt from status, AnalysisRuns and Events):")
    steps, _, measurements = out.partition("Measurements:")
    for line in steps.strip().splitlines():
        print(f"    {line.rstrip()[:EXPLAIN_WIDTH]}".rstrip())
    failed = [line for line in measurements.splitlines() if re.search(r"\sFailed\b", line)]
    print(f"    Measurements: {len(failed)} failed" + (", the last:" if failed else ""))
    if failed:
        print(f"    {failed[-1].rstrip()[:EXPLAIN_WIDTH]}")


def send_push(port: int, secret: str, *, repo_url: str, before: str, after: str) -> None:
    """The push GitHub would send for this commit, signed with the webhook secret."""
    body = json.dumps({"ref": "refs/heads/main", "before": before, "after": after,
                       "repository": {"html_url": repo_url, "default_branch": "main"}}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/webhook", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-GitHub-Event": "push",
                 "X-Hub-Signature-256": signature})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(MSG_WEBHOOK.format(status=exc.code, body=exc.read()[:300].decode(errors="replace"))) from exc


# --- the cluster --------------------------------------------------------------------------------

class Cluster:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        config.load_kube_config(config_file=env["KUBECONFIG"])
        self.api = client.ApiClient()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(["kubectl", *args], env=self.env, input=stdin, capture_output=True, text=True,
                              check=False, timeout=120)
        if done.returncode != 0:
            raise SystemExit(MSG_KUBECTL.format(args=" ".join(args), error=done.stderr.strip()))
        return done.stdout

    def app(self, name: str) -> dict[str, Any]:
        try:
            return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, APP_NAMESPACE,
                                                                 "applications", name))
        except ApiException as exc:
            if exc.status == 404:
                return {}
            raise

    def rollout(self) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "rollouts", ROLLOUT))

    def namespace_is_ours(self, name: str) -> bool | None:
        """None: absent; True: made by a demo run; False: someone else's."""
        try:
            ns = self.core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        labels = ns.metadata.labels or {}
        return DEMO_LABEL in labels or labels.get("app.kubernetes.io/part-of") == "ml-platform"

    def clean(self) -> None:
        """Remove what a previous run left: Applications (finalizers dropped), namespaces, the volume."""
        try:
            apps = self.custom.list_namespaced_custom_object(GROUP, VERSION, APP_NAMESPACE, "applications")["items"]
        except ApiException:
            apps = []
        for app in apps:
            name = app["metadata"]["name"]
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, APP_NAMESPACE, "applications", name,
                                                       {"metadata": {"finalizers": None}})
        for name in (NAMESPACE, APP_NAMESPACE):
            subprocess.run(["kubectl", "delete", "namespace", name, "--ignore-not-found", "--wait=true",
                            "--timeout=90s"], env=self.env, capture_output=True, check=False, timeout=120)
        subprocess.run(["kubectl", "delete", "pv", PV_NAME, "--ignore-not-found", "--wait=true", "--timeout=60s"],
                       env=self.env, capture_output=True, check=False, timeout=90)

    def create_volume(self) -> None:
        """The model cache's PersistentVolume (no provisioner here), reserved for ml-serving/model-cache."""
        self.core.create_persistent_volume(client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name=PV_NAME, labels={DEMO_LABEL: "true"}),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"], storage_class_name="manual",
                host_path=client.V1HostPathVolumeSource(path=f"/tmp/{PV_NAME}"),  # noqa: S108 - a fake node's path
                claim_ref=client.V1ObjectReference(namespace=NAMESPACE, name="model-cache"))))


# --- what the story prints ----------------------------------------------------------------------

def short(sha: str | None) -> str:
    return (sha or "-")[:7]


def app_state(app: dict[str, Any]) -> tuple[str, str, str, str]:
    """(sync status, revision, health, operation phase) of an Application."""
    status = app.get("status") or {}
    sync = status.get("sync") or {}
    return (str(sync.get("status") or "-"), short(sync.get("revision")),
            str((status.get("health") or {}).get("status") or "-"),
            str((status.get("operationState") or {}).get("phase") or "-"))


def app_line(app: dict[str, Any]) -> str:
    sync, revision, health, phase = app_state(app)
    line = f"{app['metadata']['name']}: {sync} at {revision}, {health} (last operation {phase})"
    return "\n     ".join([line, *unhealthy(app)])


def resource_health(app: dict[str, Any], kind: str) -> str:
    """The health the Application reports for its (first) resource of ``kind``."""
    found = [r for r in (app.get("status") or {}).get("resources") or [] if r.get("kind") == kind]
    return str((found[0].get("health") or {}).get("status") or "") if found else ""


def unhealthy(app: dict[str, Any]) -> list[str]:
    """Each resource of the app whose health is known and not Healthy, with its message."""
    out = []
    for res in (app.get("status") or {}).get("resources") or []:
        health = res.get("health") or {}
        if health.get("status") not in (None, "Healthy"):
            out.append(f"{res['kind']}/{res['name']} {health['status']}: {health.get('message', '')}".rstrip(": "))
    return out


def rendered_waves(repo: GitRepo, env: dict[str, str]) -> dict[tuple[str, str], int]:
    """(kind, name) -> sync wave of every object the two Applications render, read from Git's tree."""
    chart = repo.work / CHART_PATH
    text = run(["helm", "template", APP, str(chart), "--namespace", NAMESPACE,
                "-f", str(chart / "values.yaml"), "-f", str(chart / "values-production.yaml")], env=env)
    text += "\n---\n" + run(["kustomize", "build", str(repo.work / MODELS_PATH)], env=env)
    waves = {}
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict) and doc.get("kind"):
            meta = doc.get("metadata") or {}
            waves[(doc["kind"], meta.get("name", ""))] = int((meta.get("annotations") or {}).get(WAVE_ANNOTATION, 0))
    return waves


def follow_first_sync(cluster: Cluster, name: str, waves: dict[tuple[str, str], int], started: float) -> None:
    """Print the operation's syncResult entries as they appear, by wave, and what it waits for."""
    seen: set[tuple[str, str]] = set()
    last_message = ""

    def step() -> dict[str, Any] | None:
        nonlocal last_message
        app = cluster.app(name)
        op = (app.get("status") or {}).get("operationState") or {}
        for entry in (op.get("syncResult") or {}).get("resources") or []:
            key = (entry.get("kind", ""), entry.get("name", ""))
            if key not in seen:
                seen.add(key)
                wave = waves.get(key, 0)
                print(f"  {time.monotonic() - started:5.1f}s  wave {wave}  {key[0] + '/' + key[1]:<44} "
                      f"{entry.get('status', '')}: {entry.get('message', '')}")
        message = str(op.get("message") or "")
        # "waiting for healthy state of ..." says what a wave waits for; the 2 s pause
        # between waves ("waiting for the next wave") is left out.
        if message != last_message and message.startswith("waiting for healthy"):
            print(f"  {time.monotonic() - started:5.1f}s         ... {message}")
        last_message = message
        if op.get("phase") in ("Failed", "Error"):
            raise SystemExit(f"demo: the first sync of {name} failed: {message}")
        sync, _, _, phase = app_state(app)
        return app if (phase == "Succeeded" and sync == "Synced") else None

    # Synced here; Healthy follows once the InferenceService is Ready (the llm-service
    # app's HPA scales the predictor Deployment the KServe stand-in creates then).
    app = wait_for(f"the first sync of {name} (Succeeded, Synced)", step, timeout=FIRST_SYNC_S)
    print(f"  => {app_line(app)}")


def wait_synced(cluster: Cluster, name: str, revision: str, started: float) -> dict[str, Any]:
    def synced() -> dict[str, Any] | None:
        app = cluster.app(name)
        status = app.get("status") or {}
        op = status.get("operationState") or {}
        done = (op.get("phase") == "Succeeded" and (op.get("syncResult") or {}).get("revision") == revision)
        return app if done else None

    app = wait_for(f"the sync of commit {short(revision)}", synced, timeout=SYNC_S, interval=0.1)
    applied = [f"{r['kind']}/{r['name']}" for r in app["status"]["operationState"]["syncResult"]["resources"]]
    print(f"  {time.monotonic() - started:5.1f}s  {APP} synced {short(revision)}: applied {', '.join(applied)}")
    return app


def measured(value: Any) -> str:
    """A measurement as the analysis stored it ("[0.9500000000000002]"), with 3 significant digits."""
    try:
        numbers = json.loads(str(value))
    except ValueError:
        return str(value)
    if isinstance(numbers, list) and all(isinstance(n, int | float) for n in numbers):
        return "[" + ", ".join(f"{n:.3g}" for n in numbers) + "]"
    return str(value)


def rollout_line(cluster: Cluster, ro: dict[str, Any]) -> tuple[Any, ...]:
    status = ro.get("status") or {}
    runs = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "analysisruns")["items"]
    run_text = ""
    for item in sorted(runs, key=lambda r: r["metadata"]["creationTimestamp"])[-1:]:
        results = (item.get("status") or {}).get("metricResults") or []
        values = ", ".join(f"{m['name']}={measured((m.get('measurements') or [{}])[-1].get('value', '?'))}" for m in results)
        run_text = f"analysis {(item.get('status') or {}).get('phase', 'Pending')} {values}"
    steps = len(((ro["spec"].get("strategy") or {}).get("canary") or {}).get("steps") or [])
    image = ro["spec"]["template"]["spec"]["containers"][0]["image"]
    return (image, status.get("phase"), status.get("currentStepIndex"), steps, vs_weights(cluster.custom),
            status.get("message") or "", run_text, app_state(cluster.app(APP))[::2])


def watch_rollout(cluster: Cluster, *, image: str, until: str, started: float) -> tuple[Any, ...]:
    """Print every change of step, weights, analysis and the app's state until the Rollout is ``until``."""
    last: tuple[Any, ...] = ()

    def step() -> tuple[Any, ...] | None:
        nonlocal last
        ro = cluster.rollout()
        state = rollout_line(cluster, ro)
        if state != last:
            ro_image, phase, index, steps, (stable, canary), message, run_text, (sync, health) = state
            print(f"  {time.monotonic() - started:5.1f}s  {ro_image:<13} {phase or '-':<11} step {index!s:>2}/{steps}"
                  f"  VS {stable:>3}/{canary:<3} app {sync}/{health:<11} {message}  {run_text}".rstrip())
            last = state
        status = ro.get("status") or {}
        settled = (str(status.get("observedGeneration")) == str(ro["metadata"].get("generation"))
                   and ro["spec"]["template"]["spec"]["containers"][0]["image"] == image
                   and status.get("phase") == until
                   and (until != "Healthy" or status.get("stableRS") == status.get("currentPodHash")))
        return state if settled else None

    state = wait_for(f"the Rollout to become {until} with {image}", step, timeout=CANARY_S, interval=0.5)

    def app_sees_it() -> dict[str, Any] | None:
        app = cluster.app(APP)
        return app if resource_health(app, "Rollout") == until else None

    app = wait_for(f"{APP} to show its Rollout {until}", app_sees_it, timeout=READY_S)
    print(f"  {time.monotonic() - started:5.1f}s  => {app_line(app)}")
    return state


# --- the story ----------------------------------------------------------------------------------

def prepare_repo(env: dict[str, str]) -> GitRepo:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    repo = GitRepo(WORK)
    for part in ("environments", "models"):
        shutil.copytree(GITOPS / part, repo.work / part)
    repo.commit("ml-platform: production serves model v2")
    return repo


def argocd_objects() -> list[dict[str, Any]]:
    """The seed's Application (subscribed) and AppProject, and the llm-service Application, repoURLs as written."""
    docs = [d for name in ("application-and-project.yaml", "llm-service.yaml")
            for d in yaml.safe_load_all((GITOPS / "argocd" / name).read_text()) if d]
    for doc in docs:
        if doc["kind"] == "AppProject":
            doc["spec"]["namespaceResourceWhitelist"] += EXTRA_NAMESPACED_KINDS
        if doc["kind"] == "Application" and doc["metadata"]["name"] == APP:
            doc["metadata"].setdefault("annotations", {}).update(APP_SUBSCRIPTIONS)
    return docs


APP_SUBSCRIPTIONS = {f"{SUBSCRIBE}on-deployed.slack": CHANNEL, f"{SUBSCRIBE}on-sync-failed.slack": CHANNEL,
                     f"{SUBSCRIBE}on-sync-failed.pagerdutyv2": ON_CALL}


def secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "stringData": data}


def slack_service(slack: SlackStandIn) -> str:
    """Slack's chat.postMessage at the stand-in; the token is a ``$key`` of the Secret, never in the ConfigMap."""
    return yaml.safe_dump({"apiURL": slack.api_url, "token": "$slack-token"})


def argocd_notifications(slack: SlackStandIn, pagerduty: PagerDutyStandIn) -> list[dict[str, Any]]:
    """The seed's argocd-notifications-cm as written, plus the services and template it leaves out; its Secret."""
    cm = yaml.safe_load(NOTIFICATIONS_CM.read_text())
    cm["data"]["service.slack"] = slack_service(slack)
    cm["data"]["service.pagerdutyv2"] = yaml.safe_dump({"apiURL": pagerduty.url,
                                                        "serviceKeys": {ON_CALL: "$pagerduty-key"}})
    cm["data"]["template.pagerduty"] = yaml.safe_dump(PAGERDUTY_TEMPLATE)
    return [cm, secret(ARGOCD_SECRET, APP_NAMESPACE, {"slack-token": SLACK_TOKEN, "pagerduty-key": PAGERDUTY_KEY})]


def rollouts_notifications(slack: SlackStandIn) -> list[dict[str, Any]]:
    """ml-serving's argo-rollouts-notification-configmap: only the Slack service; the triggers are the catalog's."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ROLLOUTS_CM, "namespace": NAMESPACE},
          "data": {"service.slack": slack_service(slack)}}
    return [cm, secret(ROLLOUTS_SECRET, NAMESPACE, {"slack-token": SLACK_TOKEN})]


def summarize(inbox: Inbox, revisions: dict[str, str], hashes: dict[str, str], reason: str) -> None:
    """Print what arrived per trigger; exit 1 unless it is what the story should have sent, each once."""
    inbox.quiet(QUIET_S)
    print("\n== what arrived at the Slack and PagerDuty stand-ins, per trigger")
    names = {**revisions, **hashes}
    for trigger in ("on-deployed", "on-sync-failed", "on-rollout-completed", "on-rollout-aborted", "?"):
        notes = inbox.find(trigger)
        if trigger == "?" and not notes:
            continue
        where = ", ".join(sorted({f"{n.service} {n.channel}" for n in notes})) or "-"
        about = ", ".join("v4" if n.key == reason else f"{short(n.key)} ({names.get(n.key, '?')})"
                          for n in notes if n.key)
        if trigger == "on-sync-failed" and not notes:
            about = "(no sync failed: nothing for Slack or PagerDuty)"
        print(f"  {trigger:<21} {len(notes)}  {where:<16} {about}".rstrip())
    print(f"  the abort's reason, as sent: {reason}")
    counts: dict[tuple[str, str], int] = {}
    for note in inbox.notes:
        counts[(note.trigger, note.key)] = counts.get((note.trigger, note.key), 0) + 1
    for (trigger, key), count in counts.items():
        if count > 1:
            raise SystemExit(MSG_TWICE.format(trigger=trigger, key=key or "its object", count=count))
    expected = {"on-deployed": set(revisions), "on-rollout-completed": set(hashes),
                "on-rollout-aborted": {reason}, "on-sync-failed": set(), "?": set()}
    for trigger, keys in expected.items():
        got = {n.key for n in inbox.find(trigger)}
        if got != keys:
            raise SystemExit(MSG_UNEXPECTED.format(trigger=trigger, keys=sorted(got) or "nothing",
                                                   expected=sorted(keys) or "nothing"))
    print(f"  => on-deployed once per synced revision ({len(revisions)}), on-rollout-completed once per promoted "
          "revision, on-rollout-aborted once with the analysis's reason; nothing else")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true", help="remove what the demo left on the cluster and exit")
    parser.add_argument("--linger", action="store_true",
                        help="at the end, keep the controller and the dashboard running until Ctrl-C")
    args = parser.parse_args()
    env = load_env()
    cluster = Cluster(env)
    if args.clean:
        cluster.clean()
        print("demo: removed the Applications, namespaces ml-serving and argocd, and the demo's volume")
        return 0
    for name in (NAMESPACE, APP_NAMESPACE):
        if cluster.namespace_is_ours(name) is False:
            raise SystemExit(MSG_CLASH.format(namespace=name))
    cluster.clean()  # a previous run's objects, so the demo can be run again and again

    print("== setting the stage")
    repo = prepare_repo(env)
    print(f"Git: {repo.url} <- examples/gitops/ ({CHART_PATH}: Helm chart, values.yaml + values-production.yaml;"
          f" {MODELS_PATH}: the seed's kustomization), commit {short(repo.git('rev-parse', 'HEAD'))}")
    exporter = start_exporter(0, services=("inference-stable", "inference-canary"))
    target = Path(env["TIDEGATE_PROMETHEUS_TARGETS"]) / "demo.json"
    target.write_text(json.dumps([{"targets": [exporter.url.split("//")[1]], "labels": {"job": "demo"}}]))
    env["TIDEGATE_PROMETHEUS_ADDRESS"] = env["PROMETHEUS_URL"]
    print(f"model servers: played by the test exporter at {exporter.url}, scraped by Prometheus {env['PROMETHEUS_URL']}")
    mesh = MeshStandIn(cluster.custom, exporter.url)
    mesh.start()
    print("Istio data plane: a stand-in (MeshStandIn) sets the servers' request rates from the VirtualService weights")
    install_inferenceservice_crd(cluster.api)
    kserve = KServeStandIn(cluster.api, NAMESPACE, delay=3.0)
    kserve.start()
    print("KServe: not installed; its InferenceService CRD is, and a stand-in (e2e.kserve.KServeStandIn)"
          " marks InferenceServices Ready and creates their predictor Deployments")
    hpa = HpaStandIn(cluster.api, NAMESPACE)
    hpa.start()
    print("HPA: no metrics API here, so no HPA controller; a stand-in (e2e.hpa.HpaStandIn) writes what it"
          " would at target once an HPA's scale target exists")
    cluster.create_volume()
    print(f"storage: no provisioner here; the demo made PersistentVolume {PV_NAME} for the model cache")
    slack, pagerduty = SlackStandIn(token=SLACK_TOKEN), PagerDutyStandIn(routing_keys=(PAGERDUTY_KEY,))
    inbox = Inbox(slack, pagerduty)
    TICKS.append(inbox.drain)
    print(f"Slack and PagerDuty: not reachable here; stand-ins (e2e.receivers.SlackStandIn at {slack.url},"
          f" PagerDutyStandIn at {pagerduty.url}) check the payloads those APIs expect; '>>' lines show what arrives")

    rewrites = [f"{CONFIG_REPO_URL}={repo.url}", f"{MODELS_REPO_URL}={repo.url}"]
    webhook_port, webhook_secret = free_port(), secrets.token_hex(16)
    env["TIDEGATE_WEBHOOK_GITHUB_SECRET"] = webhook_secret
    controller = start_controller(env, webhook_port=webhook_port, rewrites=rewrites)
    print(f"tidegate controller --components {COMPONENTS} (pid {controller.pid}), webhook on "
          f":{webhook_port}; log: {CONTROLLER_LOG.relative_to(REPO)}")
    print(f"  the seed's repoURLs are fetched from {repo.url} ({REWRITE_FLAG}, a test-only setting)")
    dashboard: subprocess.Popen[bytes] | None = None
    try:
        dashboard, dashboard_url = start_dashboard(env)
        print(f"Dashboard: {dashboard_url}#/rollouts/{NAMESPACE}/{ROLLOUT} (tidegate dashboard, pid {dashboard.pid}): "
              "open it now to watch the canary live; the Applications are under "
              f"{dashboard_url}#/apps")
        print(f"  or in a terminal: . .cluster/env; kubectl tidegate get rollout {ROLLOUT} -n {NAMESPACE} --watch")
        cluster.kubectl("create", "namespace", APP_NAMESPACE)
        cluster.kubectl("label", "namespace", APP_NAMESPACE, f"{DEMO_LABEL}=true")
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(argocd_notifications(slack, pagerduty)))
        print("notifications: the seed's argocd-notifications-cm as written (on-deployed, on-sync-failed, template"
              " slack-ml-team), plus service.slack (apiURL: the Slack stand-in, token: $slack-token from "
              f"{ARGOCD_SECRET}), service.pagerdutyv2 and template.pagerduty (the seed sends it, does not define it)")
        print(f"  {APP} subscribes: " + ", ".join(f"{k.removeprefix(SUBSCRIBE)}: {v}"
                                                 for k, v in APP_SUBSCRIPTIONS.items()))
        docs = argocd_objects()
        project = next(d for d in docs if d["kind"] == "AppProject")
        apps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Application"}
        extra = ", ".join(k["group"] for k in EXTRA_NAMESPACED_KINDS)
        print(f"AppProject {PROJECT}: the seed's, plus namespaced kinds of {extra} (the seed's project as written "
              "refuses its own Rollout, VirtualService, HPA and PDB)")
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(project))
        waves = rendered_waves(repo, env)

        print(f"\n== the first sync of {APP} (the seed's Application: {CHART_PATH}, both value files), wave by wave")
        started = time.monotonic()
        inbox.started = started
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(apps[APP]))
        follow_first_sync(cluster, APP, waves, started)
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(rollouts_notifications(slack)))
        print(f"  notifications: {ROLLOUTS_CM} in {NAMESPACE} (service.slack only; the Rollout, from Git, subscribes"
              " to the shipped catalog's on-rollout-completed and on-rollout-aborted: ml-team)")
        print(f"\n== the first sync of {MODEL_APP} ({MODELS_PATH}: InferenceService, HPA, PDB, generated ConfigMap)")
        started = time.monotonic()
        inbox.started = started
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(apps[MODEL_APP]))
        follow_first_sync(cluster, MODEL_APP, waves, started)

        def model_ready() -> dict[str, Any] | None:
            app = cluster.app(MODEL_APP)
            return app if app_state(app)[2] == "Healthy" else None

        app = wait_for(f"{MODEL_APP} to be Healthy (its InferenceService Ready, the HPA's target there)",
                       model_ready, timeout=READY_S)
        print(f"  {time.monotonic() - started:5.1f}s  => {app_line(app)}")

        head = repo.git("rev-parse", "HEAD")
        webhook_url = CONFIG_REPO_URL
        v2_hash = str((cluster.rollout().get("status") or {}).get("stableRS") or "")
        inbox.expect(f"on-deployed for {short(head)}", "on-deployed", head)
        inbox.expect(f"on-rollout-completed for v2 ({v2_hash})", "on-rollout-completed", v2_hash)

        print("\n== act 1: a commit releases model v3; the webhook syncs it, the canary promotes it")
        v3 = repo.set_model_version("v3", "model v3")
        started = time.monotonic()
        inbox.started = started
        send_push(webhook_port, webhook_secret, repo_url=webhook_url, before=head, after=v3)
        print(f"  commit {short(v3)} 'model v3' pushed; signed GitHub push webhook sent")
        wait_synced(cluster, APP, v3, started)
        watch_rollout(cluster, image="inference:v3", until="Healthy", started=started)
        v3_hash = str(cluster.rollout()["status"].get("stableRS") or "")
        inbox.expect(f"on-deployed for {short(v3)}", "on-deployed", v3)
        inbox.expect(f"on-rollout-completed for v3 ({v3_hash})", "on-rollout-completed", v3_hash)
        print("  v3 is the stable model")

        print("\n== act 2: a commit releases model v4, whose canary fails 5% of requests")
        mesh.control("inference-canary", error_rate=0.05)
        v4 = repo.set_model_version("v4", "model v4")
        started = time.monotonic()
        inbox.started = started
        send_push(webhook_port, webhook_secret, repo_url=webhook_url, before=v3, after=v4)
        print(f"  commit {short(v4)} 'model v4' pushed; webhook sent")
        wait_synced(cluster, APP, v4, started)
        state = watch_rollout(cluster, image="inference:v4", until="Degraded", started=started)
        app = cluster.app(APP)
        stable, canary = vs_weights(cluster.custom)
        print(f"  traffic back on v3 (VirtualService stable {stable} / canary {canary}); Git and the Rollout's"
              f" spec still say {state[0]}: the Application is {app_state(app)[0]}")
        if app_state(app)[0] != "Synced" or resource_health(app, "Rollout") != "Degraded":
            raise SystemExit(f"demo: after the abort {APP} should be Synced with its Rollout Degraded: "
                             f"{app_line(app)}")
        show_explain(env)
        inbox.expect(f"on-deployed for {short(v4)}", "on-deployed", v4)
        reason = inbox.expect("on-rollout-aborted for v4", "on-rollout-aborted").key
        if "success-rate" not in reason:
            raise SystemExit(f"demo: on-rollout-aborted should name the failed analysis (success-rate): {reason}")

        print("\n== act 3: git revert of the v4 commit; the Application comes back to Healthy")
        mesh.control("inference-canary", error_rate=0.0)
        reverted = repo.revert_head()
        started = time.monotonic()
        inbox.started = started
        send_push(webhook_port, webhook_secret, repo_url=webhook_url, before=v4, after=reverted)
        print(f"  commit {short(reverted)} '{repo.git('log', '-1', '--format=%s')}' pushed; webhook sent")
        wait_synced(cluster, APP, reverted, started)
        watch_rollout(cluster, image="inference:v3", until="Healthy", started=started)
        inbox.expect(f"on-deployed for {short(reverted)}", "on-deployed", reverted)
        summarize(inbox, {head: "v2", v3: "v3", v4: "v4", reverted: "revert of v4"}, {v2_hash: "v2", v3_hash: "v3"},
                  reason)

        def healthy() -> dict[str, Any] | None:
            app = cluster.app(APP)
            return app if app_state(app)[0] == "Synced" and app_state(app)[2] == "Healthy" else None

        print(f"\n== {APP} and {MODEL_APP} at the end")
        app = wait_for(f"{APP} to be Synced and Healthy", healthy, timeout=READY_S)
        print(f"  => {app_line(app)}")
        print(f"  => {app_line(cluster.app(MODEL_APP))}")
        print("\n== tidegate app list")
        print(run([sys.executable, "-m", "cli.main", "app", "list"], env=env, cwd=REPO).rstrip())
        print("\nExplore:  . .cluster/env; kubectl -n argocd get applications; kubectl -n ml-serving get ro,rs,ar,vs,isvc")
        print("          python -m cli.main app get ml-platform; git -C .cluster/demo/work log --oneline")
        print(f"          kubectl tidegate explain {ROLLOUT} -n {NAMESPACE}; the dashboard: {dashboard_url}")
        print("Clean:    python -m examples.demo --clean   Stop: make cluster-down")
        if args.linger:
            print(f"\nThe controller and the dashboard ({dashboard_url}) keep running; Ctrl-C stops them.")
            try:
                while controller.poll() is None and dashboard.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        if dashboard is not None:
            dashboard.terminate()
        mesh.stop.set()
        kserve.stop()
        hpa.stop()
        controller.terminate()
        for proc in (controller, dashboard):
            if proc is None:
                continue
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        exporter.stop()
        target.unlink(missing_ok=True)
        slack.close()
        pagerduty.close()


if __name__ == "__main__":
    raise SystemExit(main())
