"""e2e: a multi-source Application, a Helm chart in one repo and its values in another.

Given two real Git repositories the test makes, a chart repo served over
``file://`` and a values repo served on loopback by ``git daemon`` (``git://``),
and the real ``tidegate controller --components gitops`` watching the test's own
namespace (``timeout.reconciliation: 3s``, so polling finds commits quickly):

* an Application with ``sources:`` (the chart from the first repo, ``helm.valueFiles:
  [$values/prod/values.yaml]``; the second repo with ``ref: values``) syncs: the
  ConfigMap the chart renders holds the values repo's value; the status names both
  revisions (``sync.revisions``), both source types and the operation's revisions;
* a commit to the values repo alone changes the live ConfigMap (the chart repo did
  not change: the revisions of every source count, not only the first's).

Everything is created in the test's namespace, which the fixture deletes.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.conftest import wait_until
from e2e.kit import GitopsController
from e2e.test_gitops_sync import GitRepo

pytestmark = pytest.mark.e2e

GROUP, VERSION = "argoproj.io", "v1alpha1"
CONFIG_MAP = "sources-config"

CHART = {
    "chart/Chart.yaml": "apiVersion: v2\nname: model-server\nversion: 0.1.0\n",
    "chart/values.yaml": "model: from-chart-defaults\nbatch: 8\n",
    "chart/templates/cm.yaml": (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {CONFIG_MAP}\n"
        "data:\n  model: {{ .Values.model | quote }}\n  batch: {{ .Values.batch | quote }}\n"),
}


def write_and_push(repo: GitRepo, files: dict[str, str], message: str) -> str:
    """Commit raw files (Helm templates are not YAML until rendered) and push; the new SHA."""
    for rel, text in files.items():
        path = repo.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", message)
    repo.git("push", "-q", "origin", "main")
    return repo.git("rev-parse", "HEAD")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[tuple[GitRepo, str]]:
    """A bare repo served read-only by ``git daemon`` on a loopback port; (repo, git:// URL)."""
    root = tmp_path / "daemon"
    root.mkdir()
    repo = GitRepo(root)
    port = free_port()
    daemon = subprocess.Popen(  # noqa: S603 - fixed argv, our own paths
        ["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1", f"--port={port}",
         f"--base-path={root}", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_until(listening, timeout=15, message=f"git daemon on 127.0.0.1:{port}")
        yield repo, f"git://127.0.0.1:{port}/remote.git"
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)


@pytest.fixture
def controller(cluster_env: dict[str, str], core: client.CoreV1Api, namespace: str,
               tmp_path: Path) -> Iterator[GitopsController]:
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="argocd-cm"), data={"timeout.reconciliation": "3s"}))
    ctl = GitopsController(cluster_env, namespace, tmp_path / "controller.log")
    try:
        yield ctl
    finally:
        ctl.stop()


def application(namespace: str, *, chart_url: str, values_url: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
        "metadata": {"name": "multi-source", "namespace": namespace},
        "spec": {
            "project": "default",
            "sources": [
                {"repoURL": chart_url, "targetRevision": "main", "path": "chart",
                 "helm": {"valueFiles": ["$values/prod/values.yaml"]}},
                {"repoURL": values_url, "targetRevision": "main", "ref": "values"},
            ],
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            "syncPolicy": {"automated": {"prune": True}},
        },
    }


def live_data(core: client.CoreV1Api, namespace: str) -> dict[str, str] | None:
    try:
        return dict(core.read_namespaced_config_map(CONFIG_MAP, namespace).data or {})
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def app_status(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    app = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "multi-source")
    return dict(app.get("status") or {})


def test_a_chart_with_values_from_another_repo_syncs_and_follows_the_values_repo(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str, tmp_path: Path,
        git_daemon: tuple[GitRepo, str], controller: GitopsController) -> None:
    # Given: the chart over file://, its production values over git://
    (tmp_path / "chart-repo").mkdir()
    chart_repo = GitRepo(tmp_path / "chart-repo")
    chart_sha = write_and_push(chart_repo, CHART, "chart")
    values_repo, values_url = git_daemon
    values_sha = write_and_push(values_repo, {"prod/values.yaml": "model: llama-v2\n"}, "values v2")

    # When: the multi-source Application is created
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "applications", application(
        namespace, chart_url=chart_repo.url, values_url=values_url))

    # Then: the chart's ConfigMap holds the values repo's value over the chart's defaults
    wait_until(lambda: live_data(core, namespace) == {"model": "llama-v2", "batch": "8"}, timeout=90,
               interval=0.2, message=f"{CONFIG_MAP} from both repos; log:\n{controller.log()[-3000:]}")

    def synced_at(revisions: list[str]) -> dict[str, Any] | None:
        status = app_status(custom, namespace)
        op = status.get("operationState") or {}
        done = (status.get("sync") or {}).get("status") == "Synced" and op.get("phase") == "Succeeded"
        return status if done and (status.get("sync") or {}).get("revisions") == revisions else None

    status = wait_until(lambda: synced_at([chart_sha, values_sha]), timeout=60,
                        message=f"Synced at both revisions; log:\n{controller.log()[-3000:]}")
    assert status["sourceTypes"] == ["Helm", "Directory"]
    assert status["operationState"]["syncResult"]["revisions"] == [chart_sha, values_sha]
    assert [s["repoURL"] for s in status["sync"]["comparedTo"]["sources"]] == [chart_repo.url, values_url]

    # When: only the values repo gets a commit
    time.sleep(1)
    new_values_sha = write_and_push(values_repo, {"prod/values.yaml": "model: llama-v3\nbatch: 16\n"},
                                    "values v3")

    # Then: polling sees it, the automated sync applies it, and the status names the new revision
    wait_until(lambda: live_data(core, namespace) == {"model": "llama-v3", "batch": "16"}, timeout=90,
               interval=0.2, message=f"{CONFIG_MAP} to follow the values repo; log:\n{controller.log()[-3000:]}")
    status = wait_until(lambda: synced_at([chart_sha, new_values_sha]), timeout=60,
                        message=f"Synced at the new values revision; log:\n{controller.log()[-3000:]}")
    assert status["operationState"]["syncResult"]["revisions"] == [chart_sha, new_values_sha]
