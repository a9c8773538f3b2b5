"""e2e: GitOps and canaries do not fight, and a drifted app says why (gitops/diff.py on the real cluster).

The controller is the real ``tidegate controller --components gitops,rollouts,analysis``
process, watching the test's namespace for Rollouts and Applications
(``--app-namespace``); the Applications deliver into that same namespace. The
repository is a bare Git repo over ``file://`` (e2e/test_gitops_sync.GitRepo).
Istio's CRDs are the test CRDs the cluster installs (crds/istio, e2e/cluster/up.sh);
no mesh runs, and none is needed: what is checked is what the controllers write.

* a Rollout with an Istio canary (VirtualService + DestinationRule) delivered by
  an Application with automated selfHeal: the weights and hash labels the
  rollout writes never show as drift (the app stays Synced at that revision
  through every step, no self-heal runs), the app's health goes Suspended at the
  pause and Healthy after the promotion, and no ReplicaSet or AnalysisRun ever
  appears among the app's resources;
* a real ``kubectl edit`` of a managed Deployment: the app is OutOfSync,
  ``tidegate app explain`` names ``spec.replicas`` and the manager ``kubectl-edit``,
  ``tidegate app diff`` exits 1, and 0 after ``tidegate app sync``;
* the same edit with an ``ignoreDifferences`` jsonPointer on ``/spec/replicas``:
  no drift, ``app diff`` exits 0.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.conftest import REPO, wait_until
from e2e.kit import (
    GROUP,
    ISTIO,
    VERSION,
    ApplicationWatch,
    Cluster,
    Controller,
    destination_rule,
    rollout,
    service,
    virtual_service,
)
from e2e.test_gitops_sync import GitRepo

pytestmark = pytest.mark.e2e

REFRESH = "argocd.argoproj.io/refresh"


class DriftController(Controller):
    """``tidegate controller --components gitops,rollouts,analysis`` for the test's namespace."""

    def __init__(self, env: dict[str, str], namespace: str, log_path: Path) -> None:
        super().__init__(env, namespace, log_path, ready="gitops controller started", extra_args=[
            "--components", "gitops,rollouts,analysis", "--app-namespace", namespace, "--app-resync", "600"])
        self.start()
        wait_until(lambda: "rollout controller started" in self.log(), timeout=60,
                   message="the rollout controller to start")


@pytest.fixture
def drift_controller(cluster_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[DriftController]:
    ctl = DriftController(cluster_env, namespace, tmp_path / "controller.log")
    try:
        yield ctl
    finally:
        ctl.stop()


def application(name: str, namespace: str, *, repo_url: str, path: str, self_heal: bool,
                ignore: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "project": "default",
        "source": {"repoURL": repo_url, "targetRevision": "main", "path": path},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
        "syncPolicy": {"automated": {"prune": True, "selfHeal": self_heal}},
    }
    if ignore is not None:
        spec["ignoreDifferences"] = ignore
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


class AppRecorder(ApplicationWatch[tuple[str, str, str, int]]):
    """Every distinct (sync status, sync revision, health, self-heal count) of an Application, from a watch."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str, name: str) -> None:
        self.resource_kinds: set[str] = set()
        super().__init__(custom, namespace, name, entry=self.entry, timeout_seconds=600)

    def entry(self, app: dict[str, Any]) -> tuple[str, str, str, int]:
        status = app.get("status") or {}
        op = status.get("operationState") or {}
        heals = int(((op.get("operation") or {}).get("sync") or {}).get("selfHealAttemptsCount") or 0)
        self.resource_kinds |= {str(r.get("kind")) for r in status.get("resources") or []}
        return (str((status.get("sync") or {}).get("status") or ""),
                str((status.get("sync") or {}).get("revision") or ""),
                str((status.get("health") or {}).get("status") or ""), heals)


def tidegate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, check=False, timeout=120)


def refresh(custom: client.CustomObjectsApi, namespace: str, name: str) -> None:
    """Annotate for refresh and wait until the controller has done it (it removes the annotation)."""
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "applications", name,
                                          {"metadata": {"annotations": {REFRESH: "normal"}}})

    def done() -> bool:
        app = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "applications", name)
        return REFRESH not in ((app.get("metadata") or {}).get("annotations") or {})

    wait_until(done, timeout=60, interval=0.3, message=f"the refresh of {name}")


def app_status(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    app = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "applications", name)
    return dict(app.get("status") or {})


def canary_objects(image: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "3s"}}]
    return [service("model", "model"),
            virtual_service("model-vsvc", canary_host="model", stable_host="model", subsets=True),
            destination_rule("model-dr", "model"),
            rollout("model", image=image, replicas=2, steps=steps, traffic="subset")]


def test_canary_weights_never_drift_through_the_steps(
        custom: client.CustomObjectsApi, namespace: str, tmp_path: Path, cluster: Cluster,
        drift_controller: DriftController) -> None:
    def subset_hashes() -> dict[str, str | None]:
        return {s["name"]: (s.get("labels") or {}).get("rollouts-pod-template-hash")
                for s in cluster.destination_rule("model-dr")["spec"]["subsets"]}

    # Given a Rollout with a subset-level Istio canary in Git, delivered by an app with selfHeal
    repo = GitRepo(tmp_path)
    repo.commit({"canary/objects.yaml": canary_objects("registry.local/model:v1")}, "v1")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "applications", application(
        "canary", namespace, repo_url=repo.url, path="canary", self_heal=True))

    def synced_healthy(revision: str) -> dict[str, Any] | None:
        status = app_status(custom, namespace, "canary")
        ok = ((status.get("sync") or {}).get("status") == "Synced"
              and (status.get("sync") or {}).get("revision") == revision
              and (status.get("health") or {}).get("status") == "Healthy"
              and (status.get("operationState") or {}).get("phase") == "Succeeded")
        return status if ok else None

    wait_until(lambda: synced_healthy(repo.git("rev-parse", "HEAD")), timeout=120, interval=0.5,
               message=f"the first sync; log:\n{drift_controller.log()[-3000:]}")
    stable = subset_hashes()["stable"]
    assert stable and cluster.vs_weights("model-vsvc") == (100, 0)

    # When a commit moves the Rollout to v2 (and the app is refreshed: polling is 600 s)
    recorder = AppRecorder(custom, namespace, "canary")
    v2 = repo.commit({"canary/objects.yaml": canary_objects("registry.local/model:v2")}, "v2")
    refresh(custom, namespace, "canary")

    # Then the canary reaches its first pause at 20%, the hash labels written by the rollout
    status = cluster.wait_status("model", lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 1,
                                 timeout=90, message="Paused at step 1")
    canary_hash = status["currentPodHash"]
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (80, 20), timeout=20, message="VS 80/20")
    wait_until(lambda: subset_hashes() == {"canary": canary_hash, "stable": stable}, timeout=20,
               message="the subsets' hash labels")

    # ... and the app is Synced at v2 with health Suspended, even after a refresh compares again
    def suspended() -> dict[str, Any] | None:
        status = app_status(custom, namespace, "canary")
        ok = ((status.get("sync") or {}).get("status") == "Synced"
              and (status.get("sync") or {}).get("revision") == v2
              and (status.get("health") or {}).get("status") == "Suspended")
        return status if ok else None

    wait_until(suspended, timeout=60, interval=0.5,
               message=f"Synced and Suspended at v2; seen {recorder.seen}; log:\n{drift_controller.log()[-3000:]}")
    refresh(custom, namespace, "canary")
    assert suspended(), app_status(custom, namespace, "canary")
    assert cluster.vs_weights("model-vsvc") == (80, 20)  # no sync reset the weights

    # When promoted (the status patch `kubectl argo rollouts promote` sends)
    cluster.patch_rollout("model", {"status": {"pauseConditions": None}}, status=True)

    # Then it goes through 50% to Healthy at v2, and the app ends Synced and Healthy
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (50, 50), timeout=30, interval=0.1, message="VS 50/50")
    cluster.wait_phase("model", "Healthy", timeout=90)
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (100, 0), timeout=30, message="VS 100/0")
    wait_until(lambda: synced_healthy(v2), timeout=60, interval=0.5,
               message=f"Synced and Healthy at v2; seen {recorder.seen}")
    refresh(custom, namespace, "canary")
    time.sleep(1)
    recorder.stop()

    # ... and once synced at v2 it never went OutOfSync, and no self-heal ever ran
    first = next(i for i, (sync, rev, _, _) in enumerate(recorder.seen) if sync == "Synced" and rev == v2)
    after = recorder.seen[first:]
    assert all(sync == "Synced" for sync, _, _, _ in after), recorder.seen
    assert all(heals == 0 for _, _, _, heals in recorder.seen), recorder.seen
    healths = [h for _, _, h, _ in after]
    assert "Suspended" in healths and healths[-1] == "Healthy", recorder.seen
    assert healths.index("Suspended") < len(healths) - 1
    # ... and what the rollout creates is never the app's (no drift, never a prune candidate)
    assert not recorder.resource_kinds & {"ReplicaSet", "AnalysisRun"}, recorder.resource_kinds
    kinds = {r["kind"] for r in app_status(custom, namespace, "canary")["resources"]}
    assert kinds == {"Service", "VirtualService", "DestinationRule", "Rollout"}
    assert custom.get_namespaced_custom_object(ISTIO, "v1beta1", namespace, "virtualservices", "model-vsvc")

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "canary")


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "model", "image": "registry.local/model:v1"}]}}}}


def kubectl_edit_replicas(env: dict[str, str], namespace: str, name: str, replicas: int) -> None:
    """A real ``kubectl edit`` (field manager kubectl-edit), its editor a sed of the replicas line."""
    editor = f"sed -i -e 's/^  replicas: [0-9]*$/  replicas: {replicas}/'"
    done = subprocess.run(["kubectl", "edit", "deployment", name, "-n", namespace], env={**env, "EDITOR": editor},
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_kubectl_edit_is_explained_and_ignore_differences_hides_it(
        custom: client.CustomObjectsApi, apps: client.AppsV1Api, namespace: str, tmp_path: Path,
        cluster_env: dict[str, str], drift_controller: DriftController) -> None:
    env = cluster_env

    def synced(name: str) -> bool:
        status = app_status(custom, namespace, name)
        return ((status.get("sync") or {}).get("status") == "Synced"
                and (status.get("operationState") or {}).get("phase") == "Succeeded")

    # Given a Deployment delivered by an automated app without selfHeal
    repo = GitRepo(tmp_path)
    repo.commit({"web/deployment.yaml": [deployment("web")]}, "web")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "applications", application(
        "web", namespace, repo_url=repo.url, path="web", self_heal=False))
    wait_until(lambda: synced("web"), timeout=90, interval=0.5,
               message=f"the first sync; log:\n{drift_controller.log()[-3000:]}")
    assert tidegate(env, "app", "diff", "web", "-N", namespace).returncode == 0

    # When someone runs kubectl edit on it
    kubectl_edit_replicas(env, namespace, "web", 3)

    # Then the app is OutOfSync (the managed-kind watch sees it; no selfHeal reverts it)
    wait_until(lambda: (app_status(custom, namespace, "web").get("sync") or {}).get("status") == "OutOfSync",
               timeout=30, interval=0.3, message="the app to be OutOfSync")
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 3

    # ... and explain names the field and its manager, with the reason
    explained = tidegate(env, "app", "explain", "web", "-N", namespace)
    print(f"\n$ tidegate app explain web\n{explained.stdout}{explained.stderr}")
    assert explained.returncode == 0, explained.stderr
    assert (f"Reason: {namespace}/web is OutOfSync: 1 resource differs" in explained.stdout
            and "automated sync without selfHeal only reports drift" in explained.stdout), explained.stdout
    assert f"apps/Deployment {namespace}/web: OutOfSync" in explained.stdout
    field_rows = [line.split() for line in explained.stdout.splitlines() if line.strip().startswith("spec.")]
    assert field_rows == [["spec.replicas", "kubectl-edit"]], explained.stdout

    # ... and app diff exits 1 showing the change
    diff = tidegate(env, "app", "diff", "web", "-N", namespace)
    assert diff.returncode == 1, diff.stderr
    assert "-  replicas: 3" in diff.stdout and "+  replicas: 1" in diff.stdout, diff.stdout

    # When synced, Then Git's value is back and app diff exits 0
    done = tidegate(env, "app", "sync", "web", "-N", namespace, "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 1
    assert tidegate(env, "app", "diff", "web", "-N", namespace).returncode == 0

    # Given the app ignores /spec/replicas of Deployments (ignoreDifferences, a jsonPointer)
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "web", {"spec": {
        "ignoreDifferences": [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}]}})
    refresh(custom, namespace, "web")

    # When the same edit is made
    kubectl_edit_replicas(env, namespace, "web", 3)
    time.sleep(2)  # the watch on Deployments queues the app at once
    refresh(custom, namespace, "web")  # ... and a refresh makes sure it compared after the edit

    # Then it is not drift: Synced, app diff exits 0, the edit stays
    assert (app_status(custom, namespace, "web").get("sync") or {}).get("status") == "Synced"
    diff = tidegate(env, "app", "diff", "web", "-N", namespace)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 3

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "web")
