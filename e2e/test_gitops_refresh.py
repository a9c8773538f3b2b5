"""e2e: a commit reaches the cluster through the Git webhook, or through polling; app diff.

The repository is a bare repo the test makes and serves over ``file://``; the
controller is the real ``tidegate controller --components gitops`` process
watching Applications in the test's own namespace, which also holds the
``argocd-cm`` (``timeout.reconciliation``) and ``argocd-secret``
(``webhook.github.secret``) the controller reads, as Argo CD's namespace does.

* webhook: polling is set long (600 s); a GitHub push payload with a valid
  ``X-Hub-Signature-256`` syncs the commit at once, a bad signature is a 401
  and changes nothing;
* polling: ``timeout.reconciliation: 3s`` and no webhook server: each commit is
  seen by the poller's ls-remote and synced;
* ``tidegate app sync|wait|diff|list`` on a manual Application: diff exits 0
  once synced and 1 after a manual edit of a managed object.

The commit -> applied latencies (push returned -> ConfigMap changed) are printed
(``pytest -s`` shows them) and checked against the controller's own
``tidegate_refresh_to_applied_seconds``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.conftest import REPO, wait_until
from e2e.kit import GitopsController
from e2e.test_gitops_sync import GitRepo

pytestmark = pytest.mark.e2e

GROUP, VERSION = "argoproj.io", "v1alpha1"
SECRET = "e2e-webhook-secret"
COMMITS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_map(namespace: str, value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "refresh-config", "namespace": namespace},
            "data": {"version": value}}


def application(name: str, namespace: str, repo_url: str, *, automated: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "project": "default",
        "source": {"repoURL": repo_url, "targetRevision": "main", "path": "app"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
    }
    if automated:
        spec["syncPolicy"] = {"automated": {"prune": False}}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def metered_controller(env: dict[str, str], namespace: str, log_path: Path, *,
                       webhook_port: int = 0) -> GitopsController:
    """The gitops controller with /metrics on a free loopback port (and the webhook if given)."""
    return GitopsController(env, namespace, log_path, metrics_port=free_port(),
                            webhook_port=webhook_port)


def metric_value(text: str, metric: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(metric + "{") and not line.startswith(metric + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def settings(core: client.CoreV1Api, namespace: str, *, reconciliation: str) -> None:
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="argocd-cm"), data={"timeout.reconciliation": reconciliation}))
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="argocd-secret"), string_data={"webhook.github.secret": SECRET}))


@pytest.fixture
def controllers() -> Iterator[list[GitopsController]]:
    started: list[GitopsController] = []
    yield started
    for ctl in started:
        ctl.stop()


def current_value(core: client.CoreV1Api, namespace: str) -> str | None:
    try:
        return str((core.read_namespaced_config_map("refresh-config", namespace).data or {}).get("version"))
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_value(core: client.CoreV1Api, namespace: str, value: str, ctl: GitopsController, *,
               timeout: float = 60) -> None:
    wait_until(lambda: current_value(core, namespace) == value, timeout=timeout, interval=0.05,
               message=f"refresh-config to hold {value}; log:\n{ctl.log()[-3000:]}")


def settle(custom: client.CustomObjectsApi, namespace: str, name: str) -> None:
    """Wait for the operation to end, then past the reconcile that follows it (wave delay, 2 s):
    a commit made after this is found only by a refresh (webhook, poll, annotation)."""
    def done() -> bool:
        app = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "applications", name)
        op = (app.get("status") or {}).get("operationState") or {}
        return op.get("phase") == "Succeeded" and not app.get("operation")

    wait_until(done, timeout=60, message=f"{name}'s operation to finish")
    time.sleep(3)


def push_payload(repo: GitRepo, sha: str) -> bytes:
    return json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": sha,
                       "repository": {"name": "remote", "clone_url": repo.url, "html_url": repo.url,
                                      "default_branch": "main"}}).encode()


def post_webhook(port: int, body: bytes, signature: str) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"http://127.0.0.1:{port}/api/webhook", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-GitHub-Event": "push",
                 "X-Hub-Signature-256": signature})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return int(resp.status), str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return int(exc.code), str(exc.read().decode())


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def report(label: str, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    print(f"\n{label}: commit -> applied over {len(ordered)} commits: "
          f"p50 {statistics.median(ordered):.2f}s, max {ordered[-1]:.2f}s "
          f"({', '.join(f'{x:.2f}' for x in latencies)})")


def test_a_commit_is_synced_through_the_webhook_and_a_bad_signature_changes_nothing(
        core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str, tmp_path: Path,
        cluster_env: dict[str, str], controllers: list[GitopsController]) -> None:
    hooked = f"hooked-{namespace}"  # unique: the drift watch finds apps by name only
    # Given polling at 600 s, the webhook secret in argocd-secret, and a synced automated app
    settings(core, namespace, reconciliation="600s")
    repo = GitRepo(tmp_path)
    repo.commit({"app/cm.yaml": [config_map(namespace, "v1")]}, "v1")
    port = free_port()
    ctl = metered_controller(cluster_env, namespace, tmp_path / "controller.log", webhook_port=port)
    controllers.append(ctl)
    wait_until(lambda: "gitops webhook listening" in ctl.log(), timeout=30, message="the webhook server")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "applications",
                                           application(hooked, namespace, repo.url, automated=True))
    wait_value(core, namespace, "v1", ctl)
    settle(custom, namespace, hooked)

    # When a commit is pushed and the webhook arrives with a bad signature
    second = repo.commit({"app/cm.yaml": [config_map(namespace, "v2")]}, "v2")
    body = push_payload(repo, second)
    status, text = post_webhook(port, body, sign(body, "wrong-secret"))

    # Then it is refused and nothing changes (the poll is 600 s away)
    assert status == 401, text
    time.sleep(5)
    assert current_value(core, namespace) == "v1"
    app = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "applications", hooked)
    assert app["status"]["sync"]["revision"] != second

    # When the webhook arrives signed, then the commit is applied at once
    status, text = post_webhook(port, body, sign(body))
    assert status == 200 and json.loads(text) == {"refreshed": 1}, text
    wait_value(core, namespace, "v2", ctl, timeout=30)

    # ... and so is every later commit: measure commit -> applied
    latencies = []
    for number in range(3, 3 + COMMITS):
        settle(custom, namespace, hooked)
        sha = repo.commit({"app/cm.yaml": [config_map(namespace, f"v{number}")]}, f"v{number}")
        started = time.monotonic()
        payload = push_payload(repo, sha)
        assert post_webhook(port, payload, sign(payload))[0] == 200
        wait_value(core, namespace, f"v{number}", ctl, timeout=30)
        latencies.append(time.monotonic() - started)
    report("webhook", latencies)
    assert max(latencies) < 10, latencies

    # ... and the controller measured it too
    def measured() -> str | None:
        text = ctl.metrics()
        return text if metric_value(text, "tidegate_refresh_to_applied_seconds_count",
                                    trigger="webhook") >= COMMITS + 1 else None

    text = wait_until(measured, timeout=30, message="the webhook latencies in the metrics")
    total = metric_value(text, "tidegate_refresh_to_applied_seconds_sum", trigger="webhook")
    print(f"controller: tidegate_refresh_to_applied_seconds (webhook) mean "
          f"{total / metric_value(text, 'tidegate_refresh_to_applied_seconds_count', trigger='webhook'):.2f}s")
    assert metric_value(text, "argocd_git_request_total", request_type="ls-remote") >= 1
    wait_until(lambda: metric_value(ctl.metrics(), "argocd_app_info", name=hooked,
                                    sync_status="Synced", health_status="Healthy") == 1,
               timeout=30, message="argocd_app_info to show the app Synced")
    syncs = metric_value(ctl.metrics(), "argocd_app_sync_total", name=hooked, phase="Succeeded")
    assert syncs >= COMMITS + 1, syncs
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "applications", hooked)


def test_a_commit_is_synced_through_polling_with_one_ls_remote_per_repo(
        core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str, tmp_path: Path,
        cluster_env: dict[str, str], controllers: list[GitopsController]) -> None:
    polled = f"polled-{namespace}"  # unique: the drift watch finds apps by name only
    # Given timeout.reconciliation 3s, no webhook server, and an automated app
    settings(core, namespace, reconciliation="3s")
    repo = GitRepo(tmp_path)
    repo.commit({"app/cm.yaml": [config_map(namespace, "v1")]}, "v1")
    ctl = metered_controller(cluster_env, namespace, tmp_path / "controller.log")
    controllers.append(ctl)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "applications",
                                           application(polled, namespace, repo.url, automated=True))
    wait_value(core, namespace, "v1", ctl)

    # When commits are pushed (and nobody calls), then the poller finds and syncs each
    latencies = []
    for number in range(2, 2 + 3):
        settle(custom, namespace, polled)
        time.sleep(random.uniform(0, 3))  # noqa: S311 - a commit at any phase of the poll, not locked to it
        repo.commit({"app/cm.yaml": [config_map(namespace, f"v{number}")]}, f"v{number}")
        started = time.monotonic()
        wait_value(core, namespace, f"v{number}", ctl, timeout=30)
        latencies.append(time.monotonic() - started)
    report("polling (3 s)", latencies)
    assert max(latencies) < 3 * 1.1 + 5, latencies

    # ... and it counted the polls: one ls-remote per round for the repository
    # (the ConfigMap is applied before the status write that ends the measure: wait for it)
    text = wait_until(lambda: (lambda t: t if metric_value(
        t, "tidegate_refresh_to_applied_seconds_count", trigger="poll") >= 3 else None)(ctl.metrics()),
        timeout=30, message="the poll latencies in the metrics")
    polls = metric_value(text, "argocd_git_request_total", request_type="ls-remote")
    print(f"controller: {polls:g} ls-remote calls for 1 repository")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "applications", polled)


def tidegate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", "app", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_app_cli_sync_wait_and_diff_exit_codes(
        core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str, tmp_path: Path,
        cluster_env: dict[str, str], controllers: list[GitopsController]) -> None:
    manual = f"manual-{namespace}"  # unique: the drift watch finds apps by name only
    # Given a manual Application (no automated sync, so no selfHeal) on a repo
    settings(core, namespace, reconciliation="600s")
    repo = GitRepo(tmp_path)
    repo.commit({"app/cm.yaml": [config_map(namespace, "v1")]}, "v1")
    ctl = metered_controller(cluster_env, namespace, tmp_path / "controller.log")
    controllers.append(ctl)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "applications",
                                           application(manual, namespace, repo.url, automated=False))
    wait_until(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "applications",
                                                            manual).get("status") or {}).get("sync"),
               timeout=60, message="the first comparison")
    ns = ["-N", namespace]

    # Then diff reports the missing ConfigMap (exit 1), sync applies it, diff exits 0
    assert tidegate(cluster_env, "diff", manual, *ns).returncode == 1
    synced = tidegate(cluster_env, "sync", manual, *ns, "--timeout", "60")
    assert synced.returncode == 0, synced.stdout + synced.stderr + ctl.log()[-2000:]
    assert current_value(core, namespace) == "v1"
    waited = tidegate(cluster_env, "wait", manual, *ns, "--sync", "--health", "--timeout", "60")
    assert waited.returncode == 0, waited.stderr
    clean = tidegate(cluster_env, "diff", manual, *ns)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    # When a managed object is edited by hand, then diff shows it and exits 1
    core.patch_namespaced_config_map("refresh-config", namespace, {"data": {"version": "edited"}})
    drift = tidegate(cluster_env, "diff", manual, *ns)
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert "ConfigMap" in drift.stdout and "edited" in drift.stdout and "v1" in drift.stdout
    print("\n" + drift.stdout)

    # ... and list/get speak Argo CD's shapes; a missing app is an error (exit 2 for diff)
    listed = json.loads(tidegate(cluster_env, "list", *ns, "-o", "json").stdout)
    assert [a["metadata"]["name"] for a in listed] == [manual]
    table = tidegate(cluster_env, "list", *ns).stdout.splitlines()
    assert table[0].split()[:7] == ["NAME", "CLUSTER", "NAMESPACE", "PROJECT", "STATUS", "HEALTH",
                                    "SYNCPOLICY"]
    assert "Manual" in table[1]
    assert tidegate(cluster_env, "diff", "absent", *ns).returncode == 2
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "applications", manual)
