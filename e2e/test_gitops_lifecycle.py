"""e2e: an Application's lifecycle on the real cluster: cascade delete, history, rollback.

A real bare Git repository over ``file://`` (``GitRepo``) and the real
``tidegate controller --components gitops`` (``GitopsController``), both from
e2e/test_gitops_sync.py, watching Applications in the test's own namespace.

* deleting an Application with ``resources-finalizer.argocd.argoproj.io`` (or its
  ``/background`` form) deletes what it manages, a cluster-scoped ClusterRole too,
  then the Application goes; an object it does not track, and the namespace
  CreateNamespace made (untracked, as in Argo CD), stay; without the finalizer
  everything stays;
* every synced commit adds a ``status.history`` entry; ``tidegate app rollback``
  to an older ID re-applies that revision (automated off) and is refused while
  automated sync is on.

Cluster-scoped names carry the test namespace (the cluster is shared); Applications
left behind get their finalizers removed so the namespace can go.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.conftest import REPO, TEST_LABEL, wait_until
from e2e.kit import GROUP, VERSION, ApplicationWatch, GitopsController
from e2e.test_gitops_sync import GitRepo

pytestmark = pytest.mark.e2e

FOREGROUND = "resources-finalizer.argocd.argoproj.io"
BACKGROUND = "resources-finalizer.argocd.argoproj.io/background"
PLURAL = "applications"


def manifests(dest: str, role: str, *, value: str) -> list[dict[str, Any]]:
    labels = {"app": "web"}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"value": value}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
            "name": "web", "annotations": {"argocd.argoproj.io/sync-wave": "1"}},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "web", "image": "registry.local/web:v1"}]}}}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": role, "labels": {TEST_LABEL: "true"}},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
    ]


def application(name: str, namespace: str, *, repo_url: str, dest: str, finalizer: str | None,
                automated: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if finalizer:
        meta["finalizers"] = [finalizer]
    policy: dict[str, Any] = {"syncOptions": ["CreateNamespace=true"]}
    if automated:
        policy["automated"] = {"prune": True}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Application", "metadata": meta,
            "spec": {"project": "default",
                     "source": {"repoURL": repo_url, "targetRevision": "main", "path": "app"},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": dest},
                     "syncPolicy": policy}}


class ConditionRecorder(ApplicationWatch[str]):
    """Every condition message the Application showed, from a watch (the deletion is quick)."""

    def observe(self, app: dict[str, Any]) -> None:
        for condition in (app.get("status") or {}).get("conditions") or []:
            text = f"{condition.get('type')}: {condition.get('message')}"
            if text not in self.seen:
                self.seen.append(text)


def tidegate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", "app", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture
def leftovers(core: client.CoreV1Api, custom: client.CustomObjectsApi,
              namespace: str) -> Iterator[tuple[str, str]]:
    """The destination namespace and the ClusterRole name; both (and stuck Applications) removed after."""
    dest, role = f"{namespace}-life", f"{namespace}-reader"
    yield dest, role
    for app in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL).get("items") or []:
        if app["metadata"].get("finalizers"):
            custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, app["metadata"]["name"],
                                                  {"metadata": {"finalizers": None}})
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    deletes: list[Callable[[], Any]] = [lambda: core.delete_namespace(dest),
                                        lambda: rbac.delete_cluster_role(role)]
    for delete in deletes:
        try:
            delete()
        except ApiException as exc:
            if exc.status != 404:
                raise


def _exists(read: Any) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _settled(custom: client.CustomObjectsApi, namespace: str, name: str,
             revision: str) -> dict[str, Any] | None:
    app = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    status = app.get("status") or {}
    op = status.get("operationState") or {}
    ok = (op.get("phase") == "Succeeded" and (op.get("syncResult") or {}).get("revision") == revision
          and (status.get("health") or {}).get("status") == "Healthy" and app.get("operation") is None)
    return dict(app) if ok else None


@pytest.mark.parametrize("finalizer", [
    pytest.param(FOREGROUND, id="foreground"),
    pytest.param(BACKGROUND, id="background"),
    pytest.param(None, id="no-finalizer"),
])
def test_deleting_an_application_cascades_only_with_the_finalizer(
        core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str, tmp_path: Path,
        leftovers: tuple[str, str], gitops_controller: GitopsController, finalizer: str | None) -> None:
    dest, role = leftovers
    name = f"life-{namespace}"  # unique on the cluster: the drift watch finds apps by name
    apps = client.AppsV1Api(core.api_client)
    rbac = client.RbacAuthorizationV1Api(core.api_client)

    # Given an automated Application, with or without the resources finalizer, synced from Git
    repo = GitRepo(tmp_path)
    commit = repo.commit({"app/all.yaml": manifests(dest, role, value="v1")}, "app")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, application(
        name, namespace, repo_url=repo.url, dest=dest, finalizer=finalizer, automated=True))
    wait_until(lambda: _settled(custom, namespace, name, commit), timeout=120, interval=0.5,
               message=f"the first sync; log:\n{gitops_controller.log()[-3000:]}")
    # ... and an object in its namespace it does not track
    core.create_namespaced_config_map(dest, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="survivor"), data={"mine": "no"}))

    # When the Application is deleted
    recorder = ConditionRecorder(custom, namespace, name)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    # Then it goes (its finalizer removed by the controller once its resources are gone)
    wait_until(lambda: not _exists(lambda: custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)), timeout=120, interval=0.5,
        message=f"the Application to be gone; log:\n{gitops_controller.log()[-3000:]}")
    managed = {
        "ConfigMap settings": lambda: core.read_namespaced_config_map("settings", dest),
        "Deployment web": lambda: apps.read_namespaced_deployment("web", dest),
        f"ClusterRole {role}": lambda: rbac.read_cluster_role(role),
    }
    recorder.stop()
    if finalizer is None:
        time.sleep(3)  # give a wrong controller time to delete something
        assert {what: _exists(read) for what, read in managed.items()} == dict.fromkeys(managed, True)
        assert recorder.seen == []
    else:
        # ... with its resources, cluster-scoped too, no longer there
        assert {what: _exists(read) for what, read in managed.items()} == dict.fromkeys(managed, False)
        policy = "Background" if finalizer == BACKGROUND else "Foreground"
        assert recorder.seen, "the Application never said what its deletion waits for"
        assert all(s.startswith("DeletionInProgress: waiting for deletion of ") and s.endswith(
            f"({policy} propagation)") for s in recorder.seen), recorder.seen
        print(f"{policy}: {recorder.seen}")
    # ... and what it does not track stays: the survivor and the namespace CreateNamespace made
    assert core.read_namespaced_config_map("survivor", dest).data == {"mine": "no"}
    assert _exists(lambda: core.read_namespace(dest))


def test_history_grows_per_commit_and_rollback_reapplies_an_older_revision(
        core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str, tmp_path: Path,
        cluster_env: dict[str, str], leftovers: tuple[str, str], gitops_controller: GitopsController) -> None:
    dest, role = leftovers
    name = f"hist-{namespace}"
    cli = ("-N", namespace, "--timeout", "120")

    # Given a manual Application synced at two commits
    repo = GitRepo(tmp_path)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, application(
        name, namespace, repo_url=repo.url, dest=dest, finalizer=FOREGROUND, automated=False))
    commits = []
    for value in ("v1", "v2"):
        commits.append(repo.commit({"app/all.yaml": manifests(dest, role, value=value)}, value))
        done = tidegate(cluster_env, "sync", name, *cli)
        assert done.returncode == 0, done.stderr + gitops_controller.log()[-3000:]
        assert core.read_namespaced_config_map("settings", dest).data == {"value": value}

    # Then the history has one entry per synced commit, ids from 0, printed as argocd prints it
    done = tidegate(cluster_env, "history", name, "-N", namespace, "-o", "json")
    history = json.loads(done.stdout)
    assert [(h["id"], h["revision"]) for h in history] == [(0, commits[0]), (1, commits[1])]
    assert history[0]["source"]["path"] == "app" and history[0]["initiatedBy"]["username"]
    table = tidegate(cluster_env, "history", name, "-N", namespace).stdout.splitlines()
    assert table[0].split() == ["SOURCE", repo.url]
    assert table[1].split() == ["ID", "DATE", "REVISION"]
    assert table[2].split()[0] == "0" and table[2].endswith(f"main ({commits[0][:7]})")

    # When it is rolled back to ID 0
    done = tidegate(cluster_env, "rollback", name, "0", *cli)
    assert done.returncode == 0, done.stderr + gitops_controller.log()[-3000:]

    # Then the first commit is applied again and recorded; the app is OutOfSync with main
    assert core.read_namespaced_config_map("settings", dest).data == {"value": "v1"}
    app = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    assert [(h["id"], h["revision"]) for h in app["status"]["history"]] == [
        (0, commits[0]), (1, commits[1]), (2, commits[0])]
    assert app["status"]["operationState"]["operation"]["sync"]["revision"] == commits[0]
    assert app["status"]["operationState"]["syncResult"]["source"]["path"] == "app"
    assert app["status"]["summary"] == {"images": ["registry.local/web:v1"]}
    wait_until(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
                        .get("status") or {}).get("sync", {}).get("status") == "OutOfSync",
               timeout=30, message="the app to be OutOfSync with main after the rollback")

    # When automated sync is on, a rollback is refused with Argo CD's message
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                          {"spec": {"syncPolicy": {"automated": {"prune": True}}}})
    done = tidegate(cluster_env, "rollback", name, "0", *cli)
    assert done.returncode == 1
    assert "rollback cannot be initiated when auto-sync is enabled" in done.stderr
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    wait_until(lambda: not _exists(lambda: custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)), timeout=120, interval=0.5,
        message="the Application (cascade) to be gone")
