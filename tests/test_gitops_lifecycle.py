"""An Application's lifecycle in gitops/controller.py and cli/app.py, on the controller tests' fakes.

Cascade delete with Argo CD's resources finalizers, ``status.history`` after each
successful sync, rollback (the CLI's ``operation`` and the controller syncing to
``operation.sync.revision`` and ``source``), ``summary.images`` and the rest of Argo
CD's status shape.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from test_cli_app import FakeApi, run
from test_gitops_controller import KEY, Env, FakeCheckout, FakeKube, FakeRepos, cm

from gitops.api import ApplicationSource
from gitops.clusters import home_only
from gitops.kube import KubeError
from gitops.plan import ResourceKey

FOREGROUND = "resources-finalizer.argocd.argoproj.io"
BACKGROUND = "resources-finalizer.argocd.argoproj.io/background"
OTHER = "example.com/keep-me"
TRACKING = "argocd.argoproj.io/tracking-id"


class GcKube(FakeKube):
    """A delete only marks the object (deletionTimestamp), as foreground deletion does; ``gc`` removes it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.refuse = ""

    def delete(self, api_version: str, key: ResourceKey, *, propagation: str = "Foreground") -> None:
        if self.refuse:
            raise KubeError(self.refuse, status=403)
        self.calls.append((key.name, propagation))
        if key in self.objects:
            self.objects[key]["metadata"]["deletionTimestamp"] = "2026-12-03T10:00:00Z"

    def gc(self) -> None:
        for key in [k for k, o in self.objects.items() if o["metadata"].get("deletionTimestamp")]:
            del self.objects[key]


class CommitRepos(FakeRepos):
    """Revisions name commits; a checkout's directory is named after its commit."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: dict[str, str] = {}

    def resolve(self, url: str, revision: str) -> str:
        return self.refs.get(revision, revision if len(revision) == 40 else self.commit)

    def checkout(self, url: str, revision: str) -> FakeCheckout:
        commit = self.resolve(url, revision)
        return FakeCheckout(Path("/repo") / commit, commit)


class CommitEnv(Env):
    """Manifests by commit: ``trees[commit]``."""

    def __init__(self, *, automated: bool) -> None:
        super().__init__([], automated=automated)
        self.repos = CommitRepos()
        self.controller.repos = self.repos
        self.trees: dict[str, list[dict[str, Any]]] = {}

    def render(self, source: ApplicationSource, root: Path, *, app_name: str,
               namespace: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.trees.get(root.name, []))

    def push(self, commit: str, manifests: list[dict[str, Any]]) -> None:
        self.repos.commit = commit
        self.trees[commit] = manifests

    def settle(self, rounds: int = 4) -> None:
        for _ in range(rounds):
            self.reconcile()


def workload(kind: str, name: str, image: str, *, init: str = "") -> dict[str, Any]:
    """A pod spec where Argo CD finds images: a custom kind's template, a CronJob's, a bare Pod's.

    Kinds without a health check, so the fake cluster needs no controller to make them Healthy.
    """
    pod: dict[str, Any] = {"containers": [{"name": "main", "image": image}]}
    if init:
        pod["initContainers"] = [{"name": "init", "image": init}]
    specs: dict[str, tuple[str, dict[str, Any]]] = {
        "Worker": ("example.com/v1", {"template": {"spec": pod}}),
        "CronJob": ("batch/v1", {"jobTemplate": {"spec": {"template": {"spec": pod}}}}),
        "PodLike": ("example.com/v1", pod),
    }
    api_version, spec = specs[kind]
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec}


def synced_env(manifests: list[dict[str, Any]], kube: FakeKube | None = None) -> Env:
    env = Env(manifests)
    if kube is not None:
        kube.app = env.kube.app
        env.kube = kube
        env.controller.home = kube
        env.controller.kube_for = home_only(kube, lambda api_version, kind: None)
    for _ in range(4):
        env.reconcile()
    assert env.status["operationState"]["phase"] == "Succeeded"
    return env


def mark_deleted(env: Env, *finalizers: str) -> None:
    env.kube.app["metadata"]["deletionTimestamp"] = "2026-12-03T10:05:00Z"
    env.kube.app["metadata"]["finalizers"] = list(finalizers)
    env.kube.app["metadata"]["resourceVersion"] = "42"


# --- cascade delete --------------------------------------------------------------------------

@pytest.mark.parametrize(("finalizers", "propagation"), [
    pytest.param([FOREGROUND, OTHER], "Foreground", id="foreground-finalizer"),
    pytest.param([OTHER, BACKGROUND], "Background", id="background-finalizer"),
    pytest.param([BACKGROUND, FOREGROUND], "Background", id="first-resources-finalizer-decides"),
])
def test_cascade_delete_goes_wave_by_wave_then_drops_only_its_finalizer(
        finalizers: list[str], propagation: str) -> None:
    kube = GcKube()
    env = synced_env([cm("early", 0), cm("late", 2), cm("mid", 1)], kube)
    # Given objects the app lists but must not delete: another app's, one with Delete=false
    cms = {k.name: k for k in kube.objects if k.kind == "ConfigMap"}
    kube.objects[cms["mid"]]["metadata"]["annotations"][TRACKING] = "other:/ConfigMap:dest/mid"
    kube.objects[cms["early"]]["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] = "Delete=false"
    env.kube.app["status"]["resources"].append(
        {"group": "apiextensions.k8s.io", "version": "v1", "kind": "CustomResourceDefinition",
         "namespace": "", "name": "crd"})
    mark_deleted(env, *finalizers)

    # When the controller sees the deletion: the highest wave goes first, with the policy
    assert env.reconcile() == 2
    assert kube.calls == [("late", propagation)]
    condition = env.status["conditions"][0]
    assert condition["type"] == "DeletionInProgress"
    assert condition["message"] == f"waiting for deletion of /ConfigMap/late ({propagation} propagation)"
    env.reconcile()
    assert kube.calls == [("late", propagation)]  # still being deleted: nothing else yet
    assert env.kube.app["metadata"]["finalizers"] == finalizers

    # Then, once it is gone, nothing else is the app's to delete: only its finalizers go
    kube.gc()
    assert env.reconcile() is None
    assert kube.calls == [("late", propagation)]
    assert env.kube.app["metadata"]["finalizers"] == [f for f in finalizers if f == OTHER]
    assert {k.name for k in kube.objects if k.kind == "ConfigMap"} == {"early", "mid"}


def test_cascade_delete_waits_for_each_wave() -> None:
    kube = GcKube()
    env = synced_env([cm("a", 0), cm("b", 3), cm("c", 3)], kube)
    mark_deleted(env, FOREGROUND)
    env.reconcile()
    assert kube.calls == [("b", "Foreground"), ("c", "Foreground")]
    assert env.status["conditions"][0]["message"] == (
        "waiting for deletion of /ConfigMap/b and 2 more resources (Foreground propagation)")
    kube.gc()
    env.reconcile()
    assert kube.calls[-1] == ("a", "Foreground")
    kube.gc()
    assert env.reconcile() is None
    assert env.kube.app["metadata"]["finalizers"] == []
    assert env.kube.app["metadata"]["resourceVersion"] == "42"  # the patch was conditional on it


def test_without_the_finalizer_resources_stay_and_nothing_is_written() -> None:
    env = synced_env([cm("config", 0)])
    mark_deleted(env, OTHER)
    before = copy.deepcopy(env.kube.app)
    assert env.reconcile() is None
    assert env.kube.deleted == []
    assert env.kube.app == before
    assert env.controller.reconcile(KEY, None) is None  # gone: nothing to do


def test_a_refused_delete_is_a_deletion_error_and_retried() -> None:
    kube = GcKube()
    env = synced_env([cm("config", 0)], kube)
    mark_deleted(env, FOREGROUND)
    kube.refuse = 'configmaps "config" is forbidden'
    assert env.reconcile() == 10
    assert env.status["conditions"][0]["type"] == "DeletionError"
    assert env.status["conditions"][0]["message"] == 'configmaps "config" is forbidden'
    assert env.kube.app["metadata"]["finalizers"] == [FOREGROUND]


def test_a_cascade_never_deletes_in_another_clusters_destination() -> None:
    env = synced_env([cm("config", 0)])
    env.kube.app["spec"]["destination"] = {"server": "https://remote.example.com", "namespace": "dest"}
    mark_deleted(env, FOREGROUND)
    assert env.reconcile() == 120
    assert env.kube.deleted == []
    assert env.status["conditions"][0]["type"] == "DeletionError"
    assert "'https://remote.example.com'" in env.status["conditions"][0]["message"]
    assert env.kube.app["metadata"]["finalizers"] == [FOREGROUND]


# --- history and rollback ---------------------------------------------------------------------

def test_history_grows_per_synced_commit_and_is_kept_to_the_limit() -> None:
    env = CommitEnv(automated=True)
    env.kube.app["spec"]["revisionHistoryLimit"] = 2
    for n, commit in enumerate(("a" * 40, "b" * 40, "c" * 40)):
        env.push(commit, [cm("config", 0, v=str(n))])
        env.settle()
    history = env.status["history"]
    assert [(h["id"], h["revision"]) for h in history] == [(1, "b" * 40), (2, "c" * 40)]
    entry = history[-1]
    assert entry["source"] == {"repoURL": "file:///repo", "path": "."}
    assert entry["initiatedBy"] == {"automated": True}
    assert entry["deployStartedAt"] <= entry["deployedAt"]
    assert set(entry) == {"id", "revision", "source", "deployStartedAt", "deployedAt", "initiatedBy"}


def test_history_starts_at_id_0_and_defaults_to_10_entries() -> None:
    env = CommitEnv(automated=True)
    for n in range(12):
        env.push(f"{n:040d}", [cm("config", 0, v=str(n))])
        env.settle(rounds=2)
    history = env.status["history"]
    assert [h["id"] for h in history] == list(range(2, 12))


def test_a_selective_sync_is_not_recorded() -> None:
    env = CommitEnv(automated=False)
    env.push("a" * 40, [cm("config", 0), cm("other", 0)])
    env.kube.app["operation"] = {"sync": {"revision": "HEAD", "resources": [
        {"group": "", "kind": "ConfigMap", "name": "config"}]}, "initiatedBy": {"username": "me"}}
    env.settle()
    assert env.status["operationState"]["phase"] == "Succeeded"
    assert "history" not in env.status


def test_a_manual_sync_runs_at_operation_sync_revision() -> None:
    env = CommitEnv(automated=False)
    env.push("a" * 40, [cm("config", 0, v="old")])
    env.push("b" * 40, [cm("config", 0, v="new")])  # HEAD is b
    env.kube.app["operation"] = {"sync": {"revision": "a" * 40}, "initiatedBy": {"username": "me"}}
    env.settle()
    op = env.status["operationState"]
    assert op["phase"] == "Succeeded" and op["syncResult"]["revision"] == "a" * 40
    assert op["operation"]["sync"]["revision"] == "a" * 40
    assert env.kube.objects[ResourceKey("", "ConfigMap", "dest", "config")]["data"] == {"v": "old"}
    assert env.status["sync"]["status"] == "OutOfSync"  # compared with targetRevision (b) again


def test_rollback_reapplies_an_older_revision_and_its_source() -> None:
    env = CommitEnv(automated=False)
    env.repos.refs["v1"] = "a" * 40
    for commit, value in (("a" * 40, "1"), ("b" * 40, "2")):
        env.push(commit, [cm("config", 0, v=value)])
        env.kube.app["operation"] = {"sync": {"revision": "HEAD"}, "initiatedBy": {"username": "me"}}
        env.settle()
    assert [h["id"] for h in env.status["history"]] == [0, 1]
    # the spec moved on since (another path): a rollback still uses the entry's source
    env.kube.app["spec"]["source"]["path"] = "elsewhere"

    api = FakeApi(copy.deepcopy(env.kube.app))
    code, _, err = run(api, "rollback", "app", "0", "--timeout", "0.01")
    assert code == 1 and "timed out" in err  # no controller behind the fake: the operation is written
    written = api.patches[0][1]["operation"]
    assert written["sync"]["revision"] == "a" * 40
    assert written["sync"]["source"] == {"repoURL": "file:///repo", "path": "."}
    assert written["sync"]["syncOptions"] == ["CreateNamespace=true"]

    env.kube.app["operation"] = written
    env.settle()
    op = env.status["operationState"]
    assert op["phase"] == "Succeeded" and op["syncResult"]["revision"] == "a" * 40
    assert op["syncResult"]["source"] == {"repoURL": "file:///repo", "path": "."}
    assert env.kube.objects[ResourceKey("", "ConfigMap", "dest", "config")]["data"] == {"v": "1"}
    assert [(h["id"], h["revision"]) for h in env.status["history"]] == [(0, "a" * 40), (1, "b" * 40),
                                                                         (2, "a" * 40)]
    # comparedTo stays the spec's source
    assert env.status["sync"]["comparedTo"]["source"]["path"] == "elsewhere"


def app_with_history(*, automated: bool = False, entries: int = 3) -> dict[str, Any]:
    env = CommitEnv(automated=automated)
    app = copy.deepcopy(env.kube.app)
    app["spec"]["source"]["targetRevision"] = "main"
    app["status"] = {"history": [
        {"id": n, "revision": f"{n}" * 40, "deployedAt": f"2026-12-0{n + 1}T10:00:00Z",
         "deployStartedAt": f"2026-12-0{n + 1}T09:59:58Z", "initiatedBy": {"username": "me"},
         "source": {"repoURL": "file:///repo", "path": ".", "targetRevision": "main"}}
        for n in range(entries)]}
    return app


@pytest.mark.parametrize(("argv", "automated", "entries", "message"), [
    pytest.param(["1"], True, 3, "rollback cannot be initiated when auto-sync is enabled", id="automated"),
    pytest.param([], False, 1, "Application 'app' should have at least two successful deployments",
                 id="no-previous"),
    pytest.param(["7"], False, 3, "Application 'app' does not have deployment id '7' in history",
                 id="unknown-id"),
])
def test_rollback_refusals_in_argo_cds_words(argv: list[str], automated: bool, entries: int,
                                             message: str) -> None:
    api = FakeApi(app_with_history(automated=automated, entries=entries))
    code, _, err = run(api, "rollback", "app", *argv)
    assert code == 1
    assert err == f"tidegate app rollback: {message}\n"
    assert api.patches == []


@pytest.mark.parametrize(("argv", "revision"), [
    pytest.param([], "1" * 40, id="default-previous"),
    pytest.param(["0"], "0" * 40, id="by-id"),
])
def test_rollback_writes_argo_cds_operation_and_waits(argv: list[str], revision: str) -> None:
    api = FakeApi(app_with_history())

    def controller(app: dict[str, Any]) -> None:
        if app.get("operation"):
            app["status"]["operationState"] = {"phase": "Succeeded", "startedAt": "2026-12-09T00:00:00Z",
                                               "syncResult": {"revision": revision}}
            app["operation"] = None

    api.on_get = controller
    code, out, _ = run(api, "rollback", "app", *argv, "--prune")
    assert code == 0 and "Succeeded" in out
    op = api.patches[0][1]["operation"]
    assert op["sync"] == {"revision": revision, "prune": True, "syncOptions": ["CreateNamespace=true"],
                          "source": {"repoURL": "file:///repo", "path": ".", "targetRevision": "main"},
                          "syncStrategy": {"apply": {}}}
    assert "username" in op["initiatedBy"]


def test_history_prints_argo_cds_table_ids_and_json() -> None:
    api = FakeApi(app_with_history(entries=2))
    code, out, _ = run(api, "history", "app")
    assert code == 0
    assert out == ("SOURCE  file:///repo\n"
                   "ID      DATE                           REVISION\n"
                   "0       2026-12-01 10:00:00 +0000 UTC  main (0000000)\n"
                   "1       2026-12-02 10:00:00 +0000 UTC  main (1111111)\n")
    assert run(api, "history", "app", "-o", "id")[1] == "0\n1\n"
    assert [h["id"] for h in json.loads(run(api, "history", "app", "-o", "json")[1])] == [0, 1]


# --- status shape ----------------------------------------------------------------------------

def test_summary_images_and_the_sources_of_the_status() -> None:
    env = synced_env([workload("Worker", "b", "registry/b:2", init="registry/init:1"),
                      workload("CronJob", "a", "registry/b:2"), workload("PodLike", "c", "registry/a:1"),
                      cm("config", 0)])
    for _ in range(2):
        env.reconcile()
    status = env.status
    assert status["summary"] == {"images": ["registry/a:1", "registry/b:2", "registry/init:1"]}
    source = {"repoURL": "file:///repo", "path": "."}
    assert status["sync"]["comparedTo"] == {
        "source": source, "destination": {"server": "https://kubernetes.default.svc", "namespace": "dest"}}
    assert status["operationState"]["syncResult"]["source"] == source


def test_summary_is_empty_without_images_and_compared_to_names_ignore_differences() -> None:
    env = Env([cm("config", 0)])
    ignore = [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}]
    env.kube.app["spec"]["ignoreDifferences"] = ignore
    for _ in range(3):
        env.reconcile()
    assert env.status["summary"] == {}
    assert env.status["sync"]["comparedTo"]["ignoreDifferences"] == ignore
