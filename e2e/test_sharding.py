"""e2e: three sync-module replicas split 300 Applications by shard; restarted as two, the split follows.

Real cluster, real ``tidegate controller --components gitops --shard i/N`` processes
(each with its own metrics port, watching only the test's namespace), one tiny real
Git repository over file://. The Applications have no automated sync: each replica
only compares them, so the test stays light. Which replica handles an Application
is read from its own ``argocd_app_info`` series (published for the Applications its
watch accepts and removed with them); the status every Application gets proves a
replica reconciled it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from e2e.conftest import wait_until
from e2e.kit import GROUP, VERSION, GitopsController
from e2e.test_gitops_sync import GitRepo
from gitops.shard import stable_hash

pytestmark = pytest.mark.e2e

APPS = 300
BATCH_TIMEOUT = 240.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def application(name: str, namespace: str, repo_url: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"project": "default",
                     "source": {"repoURL": repo_url, "targetRevision": "main", "path": "app"},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace}}}


def handled(ctl: GitopsController, namespace: str) -> set[str]:
    """The Applications of ``namespace`` this replica publishes argocd_app_info for."""
    names = set()
    for family in text_string_to_metric_families(ctl.metrics()):
        if family.name == "argocd_app_info":
            names |= {s.labels["name"] for s in family.samples if s.labels.get("namespace") == namespace}
    return names


@pytest.fixture
def replicas(cluster_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[Any]:
    """Start ``count`` shard replicas; all are stopped when the test ends."""
    with ExitStack() as stack:
        def start(count: int) -> list[GitopsController]:
            ctls = []
            for index in range(count):
                ctl = GitopsController(cluster_env, namespace, tmp_path / f"shard-{index}-of-{count}.log",
                                       metrics_port=free_port(), extra_args=["--shard", f"{index}/{count}"])
                stack.callback(ctl.stop)
                ctls.append(ctl)
            return ctls
        yield start


def test_three_shards_split_300_applications_and_two_shards_take_over(
        replicas: Any, namespace: str, custom: client.CustomObjectsApi, kubectl: Any, tmp_path: Path) -> None:
    (tmp_path / "git").mkdir()
    repo = GitRepo(tmp_path / "git")
    repo.commit({"app/config.yaml": [{"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "sharded-config"}, "data": {"v": "1"}}]}, "one")
    names = [f"app-{i:03d}" for i in range(APPS)]
    manifest = {"apiVersion": "v1", "kind": "List",
                "items": [application(name, namespace, repo.url) for name in names]}
    created = kubectl("apply", "--server-side", "-f", "-", input_text=json.dumps(manifest))
    assert created.returncode == 0, created.stderr

    three = replicas(3)
    for count, ctls in ((3, three), (2, None)):
        if ctls is None:
            for ctl in three:
                ctl.stop()
            ctls = replicas(2)
        expected = [{n for n in names if stable_hash(namespace, n) % count == i} for i in range(count)]

        def split(ctls: list[GitopsController] = ctls) -> list[set[str]] | None:
            seen = [handled(ctl, namespace) for ctl in ctls]
            return seen if sum(map(len, seen)) >= APPS else None

        seen = wait_until(split, timeout=BATCH_TIMEOUT, interval=2.0,
                          message=f"{count} shards to publish all {APPS} Applications")
        assert seen == expected, f"{count} shards: sizes {[len(s) for s in seen]}"
        assert set().union(*seen) == set(names)
        assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:]), "an Application in two shards"
        assert all(len(s) > APPS / count / 2 for s in seen), [len(s) for s in seen]
        for index, ctl in enumerate(ctls):
            assert f"shard={index}/{count}" in ctl.log() or f'"shard": "{index}/{count}"' in ctl.log()
        if count == 3:
            def compared() -> bool:
                apps = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "applications")["items"]
                return sum(bool((a.get("status") or {}).get("sync", {}).get("status")) for a in apps) == APPS

            wait_until(compared, timeout=BATCH_TIMEOUT, interval=3.0,
                       message="every Application to get a status from its shard")
