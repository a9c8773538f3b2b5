"""gitops/controller.py through a fake cluster: waves gated by health, status as Argo CD names it."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gitops.api import ApplicationSource
from gitops.controller import AppController, Settings
from gitops.kube import KubeError
from gitops.plan import ResourceKey, key_of

KEY = ("argocd", "app")


class FakeKube:
    """Objects by ResourceKey; apply stores the manifest, a PVC stays Pending until bound."""

    def __init__(self) -> None:
        self.objects: dict[ResourceKey, dict[str, Any]] = {}
        self.app: dict[str, Any] = {}
        self.applied: list[str] = []
        self.deleted: list[str] = []
        self.reject: dict[str, str] = {}

    def namespaced(self, api_version: str, kind: str) -> bool:
        return kind != "Namespace"

    def get(self, api_version: str, key: ResourceKey) -> dict[str, Any] | None:
        obj = self.objects.get(key)
        return copy.deepcopy(obj) if obj is not None else None

    def apply(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        if name in self.reject:
            raise KubeError(self.reject[name])
        key = key_of(manifest)
        obj = copy.deepcopy(dict(manifest))
        if key in self.objects and "status" in self.objects[key]:
            obj["status"] = self.objects[key]["status"]
        elif manifest["kind"] == "PersistentVolumeClaim":
            obj["status"] = {"phase": "Pending"}
        if not dry_run:
            self.objects[key] = obj
            self.applied.append(name)
        return copy.deepcopy(obj)

    def delete(self, api_version: str, key: ResourceKey, *, propagation: str = "Foreground") -> None:
        self.objects.pop(key, None)
        self.deleted.append(key.name)

    def patch_application(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        def merge(into: dict[str, Any], change: Mapping[str, Any]) -> None:
            for k, v in change.items():
                if v is None:
                    into.pop(k, None)
                elif isinstance(v, Mapping) and isinstance(into.get(k), dict):
                    merge(into[k], v)
                else:
                    into[k] = copy.deepcopy(v)
        merge(self.app, patch)
        return self.app


@dataclass
class FakeCheckout:
    path: Path
    commit: str


class FakeRepos:
    def __init__(self) -> None:
        self.commit = "a" * 40
        self.fail = ""

    def resolve(self, url: str, revision: str) -> str:
        if self.fail:
            raise ValueError(self.fail)
        return self.commit

    def checkout(self, url: str, revision: str) -> FakeCheckout:
        return FakeCheckout(Path("/repo"), revision)


def cm(name: str, wave: int, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "data": data,
            "metadata": {"name": name, "annotations": {"argocd.argoproj.io/sync-wave": str(wave)}}}


def pvc(name: str, wave: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "spec": {"resources": {}},
            "metadata": {"name": name, "annotations": {"argocd.argoproj.io/sync-wave": str(wave)}}}


class Env:
    def __init__(self, manifests: list[dict[str, Any]], *, automated: bool = True,
                 project: dict[str, Any] | None = None) -> None:
        self.kube = FakeKube()
        self.projects: dict[tuple[str, str], dict[str, Any]] = {}
        if project is not None:
            self.projects[("argocd", "default")] = {"metadata": {"name": "default"}, "spec": project}
        self.repos = FakeRepos()
        self.manifests = manifests
        self.now = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
        policy: dict[str, Any] = {"syncOptions": ["CreateNamespace=true"]}
        if automated:
            policy["automated"] = {"prune": True}
        self.kube.app = {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "app", "namespace": "argocd"},
            "spec": {"project": "default", "source": {"repoURL": "file:///repo", "path": "."},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": "dest"},
                     "syncPolicy": policy},
        }
        self.controller = AppController(kube=self.kube, repos=self.repos, render=self.render,
                                        source_errors=(ValueError,), clock=lambda: self.now,
                                        settings=Settings(reconcile_seconds=120, wave_delay_seconds=2),
                                        projects=lambda ns, name: self.projects.get((ns, name)))

    def render(self, source: ApplicationSource, root: Path, *, app_name: str,
               namespace: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.manifests)

    def reconcile(self) -> float | None:
        self.now += timedelta(seconds=1)
        return self.controller.reconcile(KEY, copy.deepcopy(self.kube.app))

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.kube.app.get("status") or {})


def test_waves_apply_in_order_and_wait_for_health() -> None:
    env = Env([cm("config", 1, a="1"), pvc("cache", 2), cm("late", 3)])
    assert env.reconcile() == 2  # the namespace (CreateNamespace) first
    assert env.kube.applied == ["dest"]
    env.reconcile()
    assert env.kube.applied == ["dest", "config"]
    env.reconcile()
    assert env.kube.applied == ["dest", "config", "cache"]
    env.reconcile()
    op = env.status["operationState"]
    assert op["phase"] == "Running"
    assert op["message"] == "waiting for healthy state of /PersistentVolumeClaim/cache"
    assert env.kube.applied == ["dest", "config", "cache"]  # wave 3 waits for the PVC
    env.kube.objects[ResourceKey("", "PersistentVolumeClaim", "dest", "cache")]["status"] = {"phase": "Bound"}
    env.reconcile()
    op = env.status["operationState"]
    assert op["phase"] == "Succeeded" and op["message"] == "successfully synced (all tasks run)"
    assert [(r["kind"], r["name"], r["status"], r["syncPhase"]) for r in op["syncResult"]["resources"]] == [
        ("Namespace", "dest", "Synced", "PreSync"), ("ConfigMap", "config", "Synced", "Sync"),
        ("PersistentVolumeClaim", "cache", "Synced", "Sync"), ("ConfigMap", "late", "Synced", "Sync")]
    assert op["syncResult"]["revision"] == "a" * 40
    env.reconcile()
    assert env.status["sync"]["status"] == "Synced"
    assert env.status["health"] == {"status": "Healthy"}
    assert [(r["kind"], r["name"], r["status"]) for r in env.status["resources"]] == [
        ("ConfigMap", "config", "Synced"), ("ConfigMap", "late", "Synced"),
        ("PersistentVolumeClaim", "cache", "Synced")]
    tracked = env.kube.objects[ResourceKey("", "ConfigMap", "dest", "config")]
    assert tracked["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] == "app:/ConfigMap:dest/config"


def test_nothing_written_when_nothing_changed() -> None:
    env = Env([cm("config", 0)])
    for _ in range(4):
        env.reconcile()
    before = copy.deepcopy(env.kube.app)
    env.reconcile()
    assert env.kube.app == before


def test_a_new_commit_is_synced_and_a_removed_resource_pruned() -> None:
    env = Env([cm("config", 0, a="1"), cm("old", 0)])
    for _ in range(4):
        env.reconcile()
    env.manifests = [cm("config", 0, a="2")]
    env.repos.commit = "b" * 40
    env.reconcile()
    env.reconcile()
    assert env.kube.objects[ResourceKey("", "ConfigMap", "dest", "config")]["data"] == {"a": "2"}
    assert env.kube.deleted == ["old"]
    assert env.status["operationState"]["syncResult"]["revision"] == "b" * 40
    env.reconcile()
    assert env.status["sync"] == {**env.status["sync"], "status": "Synced", "revision": "b" * 40}


def test_a_rejected_object_fails_the_operation_with_the_servers_message() -> None:
    env = Env([cm("config", 0)])
    env.kube.reject["config"] = 'ConfigMap "config" is invalid: data: bad'
    env.reconcile()
    env.reconcile()
    op = env.status["operationState"]
    # an automated sync without a retry spec gets Argo CD's {limit: 5} (backoff 5s, 10s, ...)
    assert (op["phase"], op["retryCount"], op["operation"]["retry"]) == ("Running", 1, {"limit": 5})
    assert op["message"].startswith('one or more objects failed to apply, reason: '
                                    'ConfigMap "config" is invalid: data: bad. Retrying attempt #1 at ')
    for _ in range(5):
        env.now += timedelta(seconds=180)
        env.reconcile()
    op = env.status["operationState"]
    assert op["phase"] == "Failed"
    assert op["message"] == ('one or more objects failed to apply, reason: '
                             'ConfigMap "config" is invalid: data: bad (retried 5 times).')
    env.now += timedelta(seconds=180)
    env.reconcile()  # already attempted at this revision: not retried in a loop
    assert env.status["operationState"]["phase"] == "Failed"
    assert env.status["operationState"]["retryCount"] == 5


def test_a_source_error_is_a_comparison_error() -> None:
    env = Env([cm("config", 0)])
    env.repos.fail = "repository not found"
    env.reconcile()
    assert env.status["conditions"][0]["type"] == "ComparisonError"
    assert env.status["conditions"][0]["message"] == "repository not found"
    assert env.status["sync"]["status"] == "Unknown"


@pytest.mark.parametrize("automated", [False])
def test_without_automated_only_reported(automated: bool) -> None:
    env = Env([cm("config", 0)], automated=automated)
    env.reconcile()
    assert env.kube.applied == []
    assert env.status["sync"]["status"] == "OutOfSync"
    assert env.status["health"] == {"status": "Missing"}
    env.kube.app["operation"] = {"sync": {"prune": False}, "initiatedBy": {"username": "me"}}
    env.reconcile()
    env.reconcile()
    assert "operation" not in env.kube.app
    assert env.status["operationState"]["phase"] == "Succeeded"


def test_the_refresh_annotation_is_removed() -> None:
    env = Env([cm("config", 0)])
    env.kube.app["metadata"]["annotations"] = {"argocd.argoproj.io/refresh": "normal"}
    env.reconcile()
    assert env.kube.app["metadata"]["annotations"] == {}


def job_hook(name: str, phase: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "spec": {},
            "metadata": {"name": name, "annotations": {"argocd.argoproj.io/hook": phase}}}


def test_sync_fail_hooks_run_when_the_sync_fails() -> None:
    env = Env([cm("config", 0), job_hook("notify", "SyncFail")])
    env.kube.app["spec"]["syncPolicy"]["retry"] = {"limit": 0}  # no retries: the first failure ends it
    env.kube.reject["config"] = "denied"
    env.reconcile()
    env.reconcile()
    op = env.status["operationState"]
    assert op["phase"] == "Failed"
    assert [(r["name"], r["syncPhase"], r.get("hookType")) for r in op["syncResult"]["resources"]] == [
        ("dest", "PreSync", None), ("config", "Sync", None), ("notify", "SyncFail", "SyncFail")]


def test_sync_fail_hooks_do_not_run_on_success() -> None:
    env = Env([cm("config", 0), job_hook("notify", "SyncFail")])
    for _ in range(3):
        env.reconcile()
    assert env.status["operationState"]["phase"] == "Succeeded"
    assert "notify" not in env.kube.applied


def test_a_presync_hook_job_blocks_until_complete() -> None:
    env = Env([cm("config", 0), job_hook("migrate", "PreSync")])
    env.reconcile()
    env.reconcile()
    env.reconcile()
    assert env.kube.applied == ["dest", "migrate"]
    assert env.status["operationState"]["message"] == "waiting for healthy state of batch/Job/migrate"
    env.kube.objects[ResourceKey("batch", "Job", "dest", "migrate")]["status"] = {
        "conditions": [{"type": "Complete", "status": "True"}]}
    env.reconcile()
    env.reconcile()
    assert env.kube.applied == ["dest", "migrate", "config"]
    assert env.status["operationState"]["phase"] == "Succeeded"


def test_source_type_comes_from_the_tool() -> None:
    env = Env([cm("config", 0)])
    env.controller.detect = lambda source, path: "kustomize"
    env.reconcile()
    assert env.status["sourceType"] == "Kustomize"


def test_a_sync_that_waits_too_long_fails_naming_what_it_waited_for() -> None:
    env = Env([pvc("cache", 0), cm("late", 1)])
    env.kube.app["spec"]["syncPolicy"]["retry"] = {"limit": 0}  # no retries: the first failure ends it
    env.controller.settings.sync_timeout_seconds = 30
    for _ in range(3):
        env.reconcile()
    assert env.status["operationState"]["phase"] == "Running"
    env.now += timedelta(seconds=40)
    env.reconcile()
    op = env.status["operationState"]
    assert op["phase"] == "Failed"
    assert op["message"] == ("sync deadline of 30s exceeded while waiting for healthy state of "
                             "/PersistentVolumeClaim/cache")
    assert "late" not in env.kube.applied


def test_a_hook_succeeded_hook_is_deleted_and_the_sync_goes_on() -> None:
    hook = job_hook("migrate", "PreSync")
    hook["metadata"]["annotations"]["argocd.argoproj.io/hook-delete-policy"] = "HookSucceeded"
    env = Env([cm("config", 0), hook])
    env.reconcile()
    env.kube.objects[ResourceKey("batch", "Job", "dest", "migrate")]["status"] = {
        "conditions": [{"type": "Complete", "status": "True"}]}
    for _ in range(3):
        env.reconcile()
    assert env.kube.deleted == ["migrate"]
    assert env.kube.applied == ["dest", "migrate", "config"]
    assert env.status["operationState"]["phase"] == "Succeeded"


OPEN = {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
        "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}


@pytest.mark.parametrize(("project", "message"), [
    ({**OPEN, "sourceRepos": ["file:///other/*"]},
     "application repo file:///repo is not permitted in project 'default'"),
    ({**OPEN, "destinations": [{"server": "*", "namespace": "!dest"}]},
     "application destination server 'https://kubernetes.default.svc' and namespace 'dest' do not match "
     "any of the allowed destinations in project 'default'"),
])
def test_a_repo_or_destination_the_project_denies_is_an_invalid_spec(project: dict[str, Any],
                                                                      message: str) -> None:
    env = Env([cm("config", 0)], automated=False, project=project)
    env.reconcile()
    assert env.status["conditions"][0]["type"] == "InvalidSpecError"
    assert env.status["conditions"][0]["message"] == message
    assert env.status["sync"]["status"] == "Unknown"
    env.kube.app["operation"] = {"sync": {"prune": False}, "initiatedBy": {"username": "me"}}
    env.reconcile()
    assert env.status["operationState"]["phase"] == "Error"
    assert env.status["operationState"]["message"] == message
    assert "operation" not in env.kube.app
    assert env.kube.applied == []


def test_a_kind_the_project_denies_fails_its_task_and_creates_nothing() -> None:
    project = {**OPEN, "namespaceResourceBlacklist": [{"group": "", "kind": "Secret"}]}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    env = Env([cm("config", 0), secret], project=project)
    env.kube.app["spec"]["syncPolicy"]["retry"] = {"limit": 0}  # no retries: the first failure ends it
    env.reconcile()
    env.reconcile()
    op = env.status["operationState"]
    assert op["phase"] == "Failed"
    assert op["message"] == "one or more synchronization tasks are not valid"
    assert [(r["kind"], r["status"], r["message"]) for r in op["syncResult"]["resources"]] == [
        ("Secret", "SyncFailed", "resource :Secret is not permitted in project default")]
    assert env.kube.applied == []


def test_create_namespace_needs_namespace_in_the_cluster_whitelist() -> None:
    project = {**OPEN, "clusterResourceWhitelist": []}
    env = Env([cm("config", 0)], project=project)
    env.kube.app["spec"]["syncPolicy"]["retry"] = {"limit": 0}  # no retries: the first failure ends it
    env.reconcile()
    env.reconcile()
    op = env.status["operationState"]
    assert op["message"] == "one or more synchronization tasks are not valid"
    assert op["syncResult"]["resources"][0]["message"] == "resource :Namespace is not permitted in project default"
    assert env.kube.applied == []


def test_a_missing_project_is_an_invalid_spec() -> None:
    env = Env([cm("config", 0)])
    env.kube.app["spec"]["project"] = "team"
    env.reconcile()
    assert env.status["conditions"][0]["message"] == "Application referencing project team which does not exist"
    assert env.kube.applied == []


@pytest.mark.parametrize(("retry", "attempts", "seconds"), [
    ({}, 0, 5.0), ({}, 1, 10.0), ({}, 6, 180.0),  # Argo CD's defaults: 5s, factor 2, cap 3m
    ({"backoff": {"duration": "2s", "factor": 3, "maxDuration": "1m"}}, 2, 18.0),
    ({"backoff": {"duration": "10", "factor": 1}}, 4, 10.0),  # a bare number is seconds
    ({"backoff": {"duration": "1m30s", "maxDuration": "1h"}}, 1, 180.0),
])
def test_backoff(retry: dict[str, Any], attempts: int, seconds: float) -> None:
    from gitops.controller import backoff_seconds
    assert backoff_seconds(retry, attempts) == seconds


def retrying_env() -> Env:
    env = Env([cm("config", 0)])
    env.kube.app["spec"]["syncPolicy"]["retry"] = {
        "limit": 2, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "1m"}}
    env.kube.reject["config"] = 'ConfigMap "config" is invalid: data: bad'
    return env


def test_a_failing_sync_is_retried_with_backoff_then_fails() -> None:
    env = retrying_env()
    env.reconcile()
    requeue = env.reconcile()
    op = env.status["operationState"]
    assert (op["phase"], op["retryCount"]) == ("Running", 1)
    assert op["message"].startswith('one or more objects failed to apply, reason: ConfigMap "config" is invalid')
    assert ". Retrying attempt #1 at " in op["message"]
    assert requeue == 10.0
    assert env.reconcile() == pytest.approx(10.0)  # not due yet (finishedAt has whole seconds)
    env.now += timedelta(seconds=10)
    requeue = env.reconcile()
    op = env.status["operationState"]
    assert (op["phase"], op["retryCount"], requeue) == ("Running", 2, 20.0)
    env.now += timedelta(seconds=20)
    env.reconcile()
    op = env.status["operationState"]
    assert op["phase"] == "Failed"
    assert op["retryCount"] == 2
    assert op["message"].endswith("data: bad (retried 2 times).")
    env.now += timedelta(seconds=60)
    env.reconcile()  # the limit is spent: no more attempts at this revision
    assert env.status["operationState"]["phase"] == "Failed"


def test_a_new_commit_pre_empts_a_failing_sync() -> None:
    env = retrying_env()
    env.reconcile()
    env.reconcile()
    assert env.status["operationState"]["retryCount"] == 1
    env.kube.reject.clear()
    env.repos.commit = "b" * 40  # the fixing commit, long before the retries run out
    env.reconcile()
    env.reconcile()
    op = env.status["operationState"]
    assert op["phase"] == "Succeeded"
    assert op["syncResult"]["revision"] == "b" * 40
    assert "retryCount" not in op
    assert env.status["sync"]["status"] == "Synced"


def heal_env(self_heal: bool) -> Env:
    hook = job_hook("before", "PreSync")
    env = Env([cm("config", 0, a="1"), hook])
    env.kube.app["spec"]["syncPolicy"]["automated"]["selfHeal"] = self_heal
    for _ in range(3):
        env.reconcile()
    env.kube.objects[ResourceKey("batch", "Job", "dest", "before")]["status"] = {
        "conditions": [{"type": "Complete", "status": "True"}]}
    for _ in range(3):
        env.reconcile()
    assert env.status["operationState"]["phase"] == "Succeeded"
    return env


def drift(env: Env) -> None:
    env.kube.objects[ResourceKey("", "ConfigMap", "dest", "config")]["data"] = {"a": "edited"}


def test_self_heal_reverts_drift_without_hooks() -> None:
    env = heal_env(True)
    applied = len(env.kube.applied)
    drift(env)
    env.reconcile()
    env.reconcile()
    op = env.status["operationState"]
    assert op["phase"] == "Succeeded"
    assert op["operation"]["sync"]["selfHealAttemptsCount"] == 1
    assert op["operation"]["sync"]["resources"] == [
        {"group": "", "kind": "ConfigMap", "namespace": "dest", "name": "config"}]
    assert env.kube.objects[ResourceKey("", "ConfigMap", "dest", "config")]["data"] == {"a": "1"}
    assert env.kube.applied[applied:] == ["config"]  # no hook re-run
    env.reconcile()
    assert env.status["sync"]["status"] == "Synced"


def test_repeated_self_heals_back_off() -> None:
    env = heal_env(True)
    drift(env)
    env.reconcile()
    env.reconcile()
    drift(env)  # someone fights the controller
    wait = env.reconcile()
    assert wait is not None and 0 < wait <= 2.0
    assert env.status["sync"]["status"] == "OutOfSync"
    env.now += timedelta(seconds=2)
    env.reconcile()
    env.reconcile()
    assert env.status["operationState"]["operation"]["sync"]["selfHealAttemptsCount"] == 2
    assert env.kube.objects[ResourceKey("", "ConfigMap", "dest", "config")]["data"] == {"a": "1"}


def test_without_self_heal_drift_is_only_reported() -> None:
    env = heal_env(False)
    applied = len(env.kube.applied)
    drift(env)
    env.reconcile()
    env.reconcile()
    assert env.status["sync"]["status"] == "OutOfSync"
    assert env.kube.applied[applied:] == []
    assert env.kube.objects[ResourceKey("", "ConfigMap", "dest", "config")]["data"] == {"a": "edited"}


def test_drift_watch_fingerprint_ignores_status_unless_health_changes() -> None:
    from gitops.watch import fingerprint, tracked_app
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 2},
           "metadata": {"name": "d", "resourceVersion": "1", "generation": 1,
                        "annotations": {"argocd.argoproj.io/tracking-id": "app:apps/Deployment:ns/d"}},
           "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 0,
                      "availableReplicas": 0}}
    one_ready = {**obj, "status": {**obj["status"], "readyReplicas": 1, "availableReplicas": 1},
                 "metadata": {**obj["metadata"], "resourceVersion": "2"}}
    all_ready = {**obj, "status": {**obj["status"], "readyReplicas": 2, "availableReplicas": 2},
                 "metadata": {**obj["metadata"], "resourceVersion": "3"}}
    edited = {**obj, "spec": {"replicas": 3}}
    assert fingerprint(obj) == fingerprint(one_ready)  # still Progressing: no reconcile
    assert fingerprint(one_ready) != fingerprint(all_ready)  # Progressing -> Healthy: reconcile
    assert fingerprint(obj) != fingerprint(edited)
    assert tracked_app(obj, "argocd") == ("argocd", "app")
    assert tracked_app({"metadata": {}}, "argocd") is None


def test_apply_out_of_sync_only_applies_just_what_differs() -> None:
    env = Env([cm("same", 0, a="1"), cm("changed", 0, a="1")])
    for _ in range(4):
        env.reconcile()
    env.kube.app["spec"]["syncPolicy"]["syncOptions"].append("ApplyOutOfSyncOnly=true")
    env.manifests = [cm("same", 0, a="1"), cm("changed", 0, a="2")]
    env.repos.commit = "b" * 40
    env.kube.applied.clear()
    for _ in range(3):
        env.reconcile()
    assert env.status["operationState"]["phase"] == "Succeeded"
    assert env.kube.applied == ["changed"]
    assert env.kube.objects[ResourceKey("", "ConfigMap", "dest", "changed")]["data"] == {"a": "2"}


def test_an_operation_is_written_running_before_it_syncs() -> None:
    env = Env([cm("config", 0, a="1")], automated=True)
    env.kube.app["spec"]["syncPolicy"]["syncOptions"] = []  # one wave, no namespace: done in one pass
    phases: list[str | None] = []
    patch = env.kube.patch_application

    def recording(namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        phases.append(((body.get("status") or {}).get("operationState") or {}).get("phase"))
        return patch(namespace, name, body)

    env.kube.patch_application = recording  # type: ignore[method-assign]
    env.reconcile()
    assert phases[:1] == ["Running"]  # the start is written first
    for _ in range(3):
        env.reconcile()
    assert env.status["operationState"]["phase"] == "Succeeded"
    assert "Succeeded" in phases


def test_a_rollback_to_a_source_the_project_denies_ends_in_error_and_applies_nothing() -> None:
    env = Env([cm("config", 0)], automated=False, project={**OPEN, "sourceRepos": ["file:///repo"]})
    env.reconcile()
    assert "conditions" not in env.status
    env.kube.app["operation"] = {"sync": {"revision": "a" * 40, "source": {"repoURL": "file:///elsewhere"}},
                                 "initiatedBy": {"username": "me"}}
    env.reconcile()
    assert env.status["operationState"]["phase"] == "Error"
    assert env.status["operationState"]["message"] == (
        "application repo file:///elsewhere is not permitted in project 'default'")
    assert env.kube.applied == []


FAILED_OP = {"phase": "Failed", "message": "one or more objects failed to apply", "startedAt": "t0",
             "finishedAt": "t1", "syncResult": {"revision": "a" * 40}}
RUNNING_OP = {"phase": "Running", "message": "", "startedAt": "t0", "syncResult": {"revision": "a" * 40}}
CONDITION = {"type": "ComparisonError", "message": "helm: bad chart"}


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param({}, {"conditions": [CONDITION]},
                 [("Warning", "ComparisonError", "helm: bad chart")], id="a-new-condition"),
    pytest.param({"conditions": [CONDITION]}, {"conditions": [CONDITION]}, [], id="a-standing-condition-is-not-repeated"),
    pytest.param({}, {"operationState": RUNNING_OP},
                 [("Normal", "OperationStarted", "Initiated sync to aaaaaaaaaaaa")], id="an-operation-starts"),
    pytest.param({"operationState": RUNNING_OP}, {"operationState": {**RUNNING_OP, "message": "waiting"}}, [],
                 id="a-running-operation-moving-on"),
    pytest.param({"operationState": RUNNING_OP}, {"operationState": FAILED_OP},
                 [("Warning", "OperationCompleted", "Sync operation Failed: one or more objects failed to apply")],
                 id="an-operation-fails"),
    pytest.param({"operationState": FAILED_OP}, {"operationState": FAILED_OP, "reconciledAt": "later"}, [],
                 id="a-finished-operation-is-reported-once"),
])
def test_status_events_report_each_transition_once(old: dict[str, Any], new: dict[str, Any],
                                                   expected: list[tuple[str, str, str]]) -> None:
    from gitops.controller import status_events
    assert status_events(old, new) == expected


def test_a_rejected_sync_posts_one_warning_event_not_one_per_reconcile() -> None:
    env = Env([cm("config", 0)])
    env.kube.app["spec"]["syncPolicy"]["retry"] = {"limit": 0}
    events: list[tuple[str, str]] = []
    env.controller.events = lambda involved, event_type, reason, message: events.append((event_type, reason))
    env.kube.reject["config"] = 'ConfigMap "config" is invalid: data: bad'
    for _ in range(6):
        env.reconcile()
    assert env.status["operationState"]["phase"] == "Failed"
    assert events.count(("Warning", "OperationCompleted")) == 1
    assert events.count(("Normal", "OperationStarted")) == 1


class StaleWatcher:
    """The drift watch's cache one write behind: it still has the object before another
    controller's write (the notified annotation, at an abort) that the API server already has."""

    def __init__(self, stale: dict[ResourceKey, dict[str, Any]]) -> None:
        self.stale = stale

    def lookup(self, api_version: str, key: ResourceKey) -> tuple[bool, dict[str, Any] | None]:
        return (True, copy.deepcopy(self.stale[key])) if key in self.stale else (False, None)

    def applied(self, obj: Mapping[str, Any]) -> None:
        pass


class SsaKube(FakeKube):
    """A dry run as the API server answers one: the stored object's resourceVersion and the
    annotations other managers own, with the manifest's fields on top."""

    def apply(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        out = super().apply(manifest, dry_run=dry_run)
        stored = self.objects.get(key_of(manifest))
        if dry_run and stored is not None:
            meta = stored.get("metadata") or {}
            out["metadata"]["resourceVersion"] = meta.get("resourceVersion")
            out["metadata"]["annotations"] = {**(meta.get("annotations") or {}),
                                              **(out["metadata"].get("annotations") or {})}
        return out


def test_a_write_the_watch_has_not_delivered_yet_is_not_drift_and_heals_nothing() -> None:
    """Seen in make demo: at an abort, notifications annotated the Rollout; the dry run saw that
    write, the watch's copy did not, and self-heal synced the same revision again (a second
    on-deployed). The comparison now reads the object again when the dry run saw a newer one."""
    from gitops.watch import CachedPort

    env = heal_env(True)
    kube = SsaKube()
    kube.objects, kube.app = env.kube.objects, env.kube.app
    key = ResourceKey("", "ConfigMap", "dest", "config")
    stale = copy.deepcopy(kube.objects[key])
    stale["metadata"]["resourceVersion"] = "4"
    kube.objects[key]["metadata"]["resourceVersion"] = "5"
    kube.objects[key]["metadata"].setdefault("annotations", {})["notified.notifications.argoproj.io"] = "{}"
    env.kube = kube
    env.controller = AppController(kube=CachedPort(kube, StaleWatcher({key: stale})),  # type: ignore[arg-type]
                                   repos=env.repos, render=env.render, source_errors=(ValueError,),
                                   clock=lambda: env.now, settings=Settings(reconcile_seconds=120),
                                   projects=lambda ns, name: env.projects.get((ns, name)))
    applied = len(kube.applied)
    env.reconcile()
    env.reconcile()
    assert env.status["sync"]["status"] == "Synced"
    assert "selfHealAttemptsCount" not in env.status["operationState"]["operation"]["sync"]
    assert kube.applied[applied:] == []
