"""e2e: the sync policies on the real cluster, from real Git repositories the tests make.

* an AppProject that does not allow a repo, a destination or a kind: Argo CD's
  message, and nothing is created;
* an invalid manifest: the sync fails with the API server's message and is
  retried with the configured backoff (retryCount grows, then Failed); a commit
  that fixes it is synced without waiting for the retries to run out;
* a ``kubectl edit``-style patch of a managed object: reverted with selfHeal,
  only reported OutOfSync without it, seen in seconds (the watch on managed kinds);
* a commit removing a resource prunes it, PruneLast after the rest.

The controller is the real ``tidegate controller --components gitops`` process
(polling at 600 s, so nothing here waits for a poll). Everything lives in the
test's own namespace (Applications, AppProject and destination).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.conftest import wait_until
from e2e.kit import GROUP, VERSION, GitopsController
from e2e.test_gitops_sync import GitRepo

pytestmark = pytest.mark.e2e

SERVER = "https://kubernetes.default.svc"


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def app_doc(name: str, namespace: str, *, repo_url: str, dest: str, path: str = "app",
            project: str = "default", **policy: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"project": project,
                 "source": {"repoURL": repo_url, "targetRevision": "main", "path": path},
                 "destination": {"server": SERVER, "namespace": dest},
                 "syncPolicy": policy},
    }


class Apps:
    def __init__(self, custom: client.CustomObjectsApi, namespace: str, ctl: GitopsController) -> None:
        self.custom, self.namespace, self.ctl = custom, namespace, ctl

    def create(self, doc: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "applications", doc)

    def status(self, name: str) -> dict[str, Any]:
        app = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "applications", name)
        return dict(app.get("status") or {})

    def wait(self, name: str, check: Any, what: str, timeout: float = 60) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            status = self.status(name)
            return status if check(status) else None
        return dict(wait_until(ok, timeout=timeout, interval=0.25,
                               message=f"{what}; status {self.status(name)}; log:\n{self.ctl.log()[-3000:]}"))

    def delete_all(self) -> None:
        for item in self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "applications")["items"]:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "applications",
                                                        item["metadata"]["name"])


def op_of(status: dict[str, Any]) -> dict[str, Any]:
    return dict(status.get("operationState") or {})


def absent(read: Any) -> bool:
    try:
        read()
    except ApiException as exc:
        return bool(exc.status == 404)
    return False


def test_the_project_denies_a_repo_a_destination_and_a_kind(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str, tmp_path: Path,
        gitops_controller: GitopsController) -> None:
    apps = Apps(custom, namespace, gitops_controller)
    (tmp_path / "allowed").mkdir()
    (tmp_path / "other").mkdir()
    allowed = GitRepo(tmp_path / "allowed")
    other = GitRepo(tmp_path / "other")
    allowed.commit({"app/objects.yaml": [configmap("plain", a="1"),
                                         {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"},
                                          "stringData": {"t": "x"}}]}, "objects")
    other.commit({"app/objects.yaml": [configmap("from-other", a="1")]}, "objects")
    # Given an AppProject allowing one repo, one namespace, and no Secrets
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "appprojects", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AppProject",
        "metadata": {"name": "team", "namespace": namespace},
        "spec": {"sourceRepos": [allowed.url],
                 "destinations": [{"server": SERVER, "namespace": namespace}],
                 "namespaceResourceBlacklist": [{"group": "", "kind": "Secret"}]}})
    time.sleep(1)  # the project reaches the controller's index
    automated: dict[str, Any] = {"automated": {"prune": True}}
    try:
        # When Applications of that project use another repo, another namespace, and a Secret
        apps.create(app_doc("repo", namespace, repo_url=other.url, dest=namespace, project="team", **automated))
        apps.create(app_doc("dest", namespace, repo_url=allowed.url, dest=f"{namespace}-denied",
                            project="team", **automated))
        apps.create(app_doc("kind", namespace, repo_url=allowed.url, dest=namespace, project="team", **automated))

        # Then each fails with Argo CD's message
        def condition(status: dict[str, Any]) -> str:
            return next((c["message"] for c in status.get("conditions") or []
                         if c["type"] == "InvalidSpecError"), "")

        repo = apps.wait("repo", condition, "the repo to be refused")
        assert condition(repo) == f"application repo {other.url} is not permitted in project 'team'"
        dest = apps.wait("dest", condition, "the destination to be refused")
        assert condition(dest) == (
            f"application destination server '{SERVER}' and namespace '{namespace}-denied' do not match "
            "any of the allowed destinations in project 'team'")
        invalid = "one or more synchronization tasks are not valid"
        kind = apps.wait("kind", lambda s: str(op_of(s).get("message") or "").startswith(invalid)
                         and op_of(s)["syncResult"].get("resources"), "the kind to be refused")
        op = op_of(kind)
        # an automated sync without retry spec is retried as Argo CD's ({limit: 5})
        assert op["phase"] == "Running" and op["retryCount"] >= 1, op
        assert op["message"].startswith(f"{invalid}. Retrying attempt #")
        assert [(r["kind"], r["status"], r["message"]) for r in op["syncResult"]["resources"]] == [
            ("Secret", "SyncFailed", "resource :Secret is not permitted in project team")]
        # ... a requested sync of the denied repo ends in Error with the message too
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "repo", {
            "operation": {"sync": {"prune": True}, "initiatedBy": {"username": "e2e"}}})
        repo = apps.wait("repo", lambda s: op_of(s).get("phase") == "Error", "the requested sync to fail")
        assert op_of(repo)["message"] == condition(repo)

        # ... and nothing was created
        time.sleep(2)
        assert absent(lambda: core.read_namespaced_config_map("from-other", namespace))
        assert absent(lambda: core.read_namespaced_config_map("plain", namespace))
        assert absent(lambda: core.read_namespaced_secret("token", namespace))
        assert absent(lambda: core.read_namespace(f"{namespace}-denied"))

        # When the project is changed to allow the other repo, that Application syncs at once
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "appprojects", "team", {
            "spec": {"sourceRepos": [allowed.url, other.url]}})
        apps.wait("repo", lambda s: op_of(s).get("phase") == "Succeeded" and not condition(s),
                  "the allowed repo to sync", timeout=15)
        assert core.read_namespaced_config_map("from-other", namespace).data == {"a": "1"}
    finally:
        apps.delete_all()


def test_an_invalid_manifest_is_retried_with_backoff_and_a_fixing_commit_pre_empts_the_retries(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str, tmp_path: Path,
        gitops_controller: GitopsController) -> None:
    apps = Apps(custom, namespace, gitops_controller)
    repo = GitRepo(tmp_path)
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}, "data": {"a": "1"}}
    repo.commit({"app/objects.yaml": [bad], "short/objects.yaml": [bad]}, "an invalid name")
    retry = {"limit": 5, "backoff": {"duration": "2s", "factor": 2, "maxDuration": "1m"}}
    try:
        # Given automated Applications with retries whose manifest the API server rejects
        apps.create(app_doc("retries", namespace, repo_url=repo.url, dest=namespace,
                            automated={"prune": True}, retry=retry))
        apps.create(app_doc("gives-up", namespace, repo_url=repo.url, dest=namespace, path="short",
                            automated={"prune": True},
                            retry={"limit": 2, "backoff": {"duration": "1s", "factor": 2}}))

        # Then the sync fails with the server's message and is retried, each wait longer
        seen: dict[int, float] = {}

        def counted(status: dict[str, Any]) -> bool:
            count = int(op_of(status).get("retryCount") or 0)
            seen.setdefault(count, time.monotonic())
            return count >= 3

        status = apps.wait("retries", counted, "three retries", timeout=60)
        op = op_of(status)
        assert op["phase"] == "Running"
        assert 'ConfigMap "Bad_Name" is invalid' in op["message"]
        assert ". Retrying attempt #3 at " in op["message"]
        gaps = [seen[n + 1] - seen[n] for n in (1, 2)]
        assert 1.5 < gaps[0] < 4.5 and 3.5 < gaps[1] < 7.5, (seen, gaps)  # 2s, then 4s

        # ... and with its retries spent, the other one ends Failed saying so
        gave_up = op_of(apps.wait("gives-up", lambda s: op_of(s).get("phase") == "Failed", "the retries to run out"))
        assert gave_up["retryCount"] == 2
        assert gave_up["message"].endswith("(retried 2 times).")
        assert 'ConfigMap "Bad_Name" is invalid' in gave_up["message"]

        # When a commit fixes the manifest and the app is refreshed (the next retry would wait 8 s,
        # two more would follow: Argo CD would keep retrying the old commit, argo-cd #11494)
        fixed_at = time.monotonic()
        fix = repo.commit({"app/objects.yaml": [configmap("good-name", a="1")]}, "a valid name")
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "retries", {
            "metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}})  # as a webhook would

        # Then it is synced at the new commit without waiting for the retries to run out
        status = apps.wait("retries", lambda s: op_of(s).get("phase") == "Succeeded"
                           and op_of(s)["syncResult"]["revision"] == fix, "the fixing commit to sync", timeout=30)
        took = time.monotonic() - fixed_at
        assert took < 5, took
        assert core.read_namespaced_config_map("good-name", namespace).data == {"a": "1"}
        print(f"\nretry gaps {gaps[0]:.1f}s, {gaps[1]:.1f}s; fixing commit synced after {took:.1f}s")
    finally:
        apps.delete_all()


@pytest.mark.parametrize("self_heal", [True, False])
def test_a_manual_edit_is_reverted_with_self_heal_and_only_reported_without(
        self_heal: bool, custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        tmp_path: Path, gitops_controller: GitopsController) -> None:
    apps = Apps(custom, namespace, gitops_controller)
    repo = GitRepo(tmp_path)
    repo.commit({"app/objects.yaml": [configmap("settings", mode="git")]}, "settings")
    try:
        apps.create(app_doc("heal", namespace, repo_url=repo.url, dest=namespace,
                            automated={"prune": True, "selfHeal": self_heal}))
        apps.wait("heal", lambda s: op_of(s).get("phase") == "Succeeded"
                  and (s.get("sync") or {}).get("status") == "Synced", "the first sync")
        time.sleep(1)

        # When someone edits the managed ConfigMap (what kubectl edit sends)
        edited_at = time.monotonic()
        core.patch_namespaced_config_map("settings", namespace, {"data": {"mode": "edited"}})

        if self_heal:
            # Then the edit is reverted within seconds
            wait_until(lambda: core.read_namespaced_config_map("settings", namespace).data == {"mode": "git"},
                       timeout=20, interval=0.1, message=f"the edit to be reverted; log:\n{gitops_controller.log()[-3000:]}")
            took = time.monotonic() - edited_at
            status = apps.wait("heal", lambda s: (s.get("sync") or {}).get("status") == "Synced", "Synced again")
            assert op_of(status)["operation"]["sync"]["selfHealAttemptsCount"] == 1
            print(f"\nselfHeal reverted the edit after {took:.2f}s")
        else:
            # Then it is only reported: OutOfSync within seconds, the edit stays
            status = apps.wait("heal", lambda s: (s.get("sync") or {}).get("status") == "OutOfSync",
                               "the drift to be reported", timeout=20)
            took = time.monotonic() - edited_at
            drifted = [r for r in status["resources"] if r["status"] == "OutOfSync"]
            assert [(r["kind"], r["name"]) for r in drifted] == [("ConfigMap", "settings")]
            time.sleep(3)
            assert core.read_namespaced_config_map("settings", namespace).data == {"mode": "edited"}
            print(f"\ndrift reported OutOfSync after {took:.2f}s")
        assert took < 10, took
    finally:
        apps.delete_all()


def test_a_commit_removing_a_resource_prunes_it_prune_last_after_the_rest(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str, tmp_path: Path,
        gitops_controller: GitopsController) -> None:
    apps = Apps(custom, namespace, gitops_controller)
    repo = GitRepo(tmp_path)
    last = {**configmap("old-last", a="1"),
            "metadata": {"name": "old-last", "annotations": {"argocd.argoproj.io/sync-options": "PruneLast=true"}}}
    repo.commit({"app/objects.yaml": [configmap("kept", v="1"), configmap("old", a="1"), last]}, "three")
    try:
        apps.create(app_doc("prune", namespace, repo_url=repo.url, dest=namespace, automated={"prune": True}))
        apps.wait("prune", lambda s: op_of(s).get("phase") == "Succeeded", "the first sync")
        assert core.read_namespaced_config_map("old-last", namespace).data == {"a": "1"}

        # When a commit removes two of them and changes the third
        second = repo.commit({"app/objects.yaml": [configmap("kept", v="2")]}, "only one")
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "prune", {
            "metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}})

        # Then both are pruned, the PruneLast one after the rest
        status = apps.wait("prune", lambda s: op_of(s).get("phase") == "Succeeded"
                           and op_of(s)["syncResult"]["revision"] == second
                           and (s.get("sync") or {}).get("status") == "Synced", "the prune")
        results = [(r["name"], r["status"]) for r in op_of(status)["syncResult"]["resources"]]
        assert results == [("kept", "Synced"), ("old", "Pruned"), ("old-last", "Pruned")], results
        assert absent(lambda: core.read_namespaced_config_map("old", namespace))
        assert absent(lambda: core.read_namespaced_config_map("old-last", namespace))
        assert core.read_namespaced_config_map("kept", namespace).data == {"v": "2"}
        assert [r["name"] for r in status["resources"]] == ["kept"]
    finally:
        apps.delete_all()
