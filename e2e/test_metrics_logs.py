"""e2e: /metrics names every metric of issue 12 during a rollout and a sync; logs are JSON naming their object.

Real cluster, one real ``tidegate controller`` (every component, ``--log-format
json``, its own metrics port, only the test's namespace). Given a Secret whose value
an AnalysisTemplate passes to a web metric (a local stand-in endpoint, named as
such, answers it), a canary Rollout whose steps run that analysis and a timed
pause, and an Application with automated sync and a refresh annotation pointing at
a real Git repository over file://, When the canary completes and the Application
is synced, Then a scrape of /metrics has a sample of every listed metric, every log
line parses as JSON and every line naming an object (namespace and name) names its
kind too, and no form of the Secret's value is in the log.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from e2e.analysis_kit import Analysis, analysis_template
from e2e.conftest import wait_until
from e2e.kit import GROUP, VERSION, Cluster, Controller, rollout
from e2e.test_gitops_sync import GitRepo
from e2e.test_hardening_secrets import SECRET_ARGS, scan, web_metric

pytestmark = pytest.mark.e2e

SECRET = "tok-5e3f1a9c-metrics-logs"
EXPECTED = (
    "rollout_info", "rollout_info_replicas_available", "rollout_info_replicas_unavailable",
    "rollout_info_replicas_desired", "rollout_info_replicas_updated", "rollout_phase",
    "rollout_reconcile", "rollout_reconcile_error", "rollout_events_total",
    "analysis_run_info", "analysis_run_metric_phase", "analysis_run_metric_type", "analysis_run_phase",
    "analysis_run_reconcile", "analysis_run_reconcile_error",
    "controller_clientset_k8s_request_total",
    "argocd_app_info", "argocd_app_sync_total", "argocd_app_reconcile", "argocd_git_request_total",
    "tidegate_step_reaction_seconds", "tidegate_refresh_to_applied_seconds",
)
# Counters of errors have a sample only once something failed: their family (HELP/TYPE) must be served.
MAY_BE_EMPTY = ("rollout_reconcile_error", "analysis_run_reconcile_error")
READY = ("rollout controller started", "analysis controller started", "gitops controller started")


class _StandIn(BaseHTTPRequestHandler):
    """A stand-in metric endpoint (no real service here): 200 with a success value."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def stand_in() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def controller(cluster_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[Controller]:
    ctl = Controller(cluster_env, namespace, tmp_path / "controller.log", metrics_port=free_port(),
                     ready=READY[0], extra_args=["--log-format", "json", "--app-namespace", namespace,
                                                 "--app-resync", "600"])
    ctl.start()
    try:
        wait_until(lambda: all(line in ctl.log() for line in READY), timeout=60,
                   message="every component to start")
        yield ctl
    finally:
        ctl.stop()


def families(text: str) -> dict[str, int]:
    """Metric name -> number of samples, as the scrape serves them (a counter under its ``_total`` name)."""
    out = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" and family.name + "_total" in EXPECTED else family.name
        out[name] = len(family.samples)
    return out


def test_metrics_and_json_logs_of_a_canary_and_a_sync(
        controller: Controller, api_client: client.ApiClient, namespace: str, stand_in: str,
        custom: client.CustomObjectsApi, tmp_path: Path) -> None:
    analysis, cluster = Analysis(api_client, namespace), Cluster(api_client, namespace)
    analysis.secret("creds", {"token": SECRET})
    analysis.create(analysis_template("check", [web_metric("check", f"{stand_in}/ok", successCondition="true")],
                                      args=SECRET_ARGS))
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "check"}]}},
             {"pause": {"duration": "1s"}}]
    cluster.create(rollout("web", replicas=2, steps=steps, traffic=None))
    cluster.wait_phase("web", "Healthy", timeout=60)

    (tmp_path / "git").mkdir()
    repo = GitRepo(tmp_path / "git")
    repo.commit({"app/config.yaml": [{"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "metrics-config"}, "data": {"v": "1"}}]}, "one")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "applications", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
        "metadata": {"name": "config", "annotations": {"argocd.argoproj.io/refresh": "normal"}},
        "spec": {"project": "default", "source": {"repoURL": repo.url, "targetRevision": "main", "path": "app"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
                 "syncPolicy": {"automated": {}}}})

    # When the canary runs through its analysis and pause
    first = cluster.rollout("web")["status"]["currentPodHash"]
    cluster.patch_rollout("web", {"spec": {"template": {"spec": {"containers": [
        {"name": "model", "image": "registry.local/model:v2"}]}}}})
    cluster.wait_status("web", lambda s: s.get("currentPodHash") != first and s.get("phase") == "Healthy"
                        and s.get("currentStepIndex") == len(steps), timeout=120)
    wait_until(lambda: ((custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "config")
                         .get("status") or {}).get("operationState") or {}).get("phase") == "Succeeded",
               timeout=120, message="the Application's sync to succeed")

    # Then every metric is served, with samples
    def scraped() -> dict[str, int] | None:
        found = families(controller.metrics())
        missing = [m for m in EXPECTED if m not in found or (m not in MAY_BE_EMPTY and not found[m])]
        return None if missing else found

    try:
        wait_until(scraped, timeout=30, interval=1.0, message="every metric to have a sample")
    except AssertionError:
        found = families(controller.metrics())
        raise AssertionError(f"missing: {[m for m in EXPECTED if not found.get(m)]}") from None
    text = controller.metrics()
    assert 'verb="get"' in text or 'verb="list"' in text, "reads are counted too"
    assert scan(text, SECRET) == []

    # And the log is JSON lines naming their objects, without the secret
    log = controller.log()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert lines, "an empty log proves nothing"
    object_lines = [line for line in lines if line.get("namespace") and line.get("name")]
    assert object_lines, "no line about an object"
    assert [line for line in object_lines if not line.get("kind")] == []
    assert {line["kind"] for line in object_lines} >= {"Rollout", "Application"}, {
        line["kind"] for line in object_lines}
    # (the pause and analysis steps were reacted to, and said so)
    reactions = [line for line in lines if line.get("event") == "rollout status advanced"
                 and line.get("reaction_seconds") is not None]
    assert {line["to_step"] for line in reactions} >= {2, 3}, reactions
    assert scan(log, SECRET) == []
