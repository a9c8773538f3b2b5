"""e2e: an Application synced from a real Git repository, wave by wave, then refreshed.

The repository is a bare repo the test makes and serves over ``file://``; the
controller is the real ``tidegate controller --components gitops`` process,
watching Applications in the test's own namespace (``--app-namespace``).

The sync-wave objects are the seed's (../shared/seed/sync-waves.yaml), completed
as seed/README.md asks, keeping their names, kinds and waves. What was completed
and why:

* the Namespace is the test's own destination namespace, not ``ml-serving``, so
  runs on the shared cluster never collide (the kind and wave 0 are kept);
* the Secret gets one key; the PVC a 1Gi request bound to a PersistentVolume
  the test creates (the local cluster has no provisioner), so it becomes Bound;
* the Service a selector and a port; the Deployment one replica of a stub image
  (kwok runs its pods); the HPA the Deployment as its target;
* a ConfigMap ``model-config`` in wave 1 is added: the refresh test changes it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.conftest import TEST_LABEL, wait_until
from e2e.hpa import HpaStandIn
from e2e.kit import GROUP, VERSION, ApplicationWatch, GitopsController, run_git

pytestmark = pytest.mark.e2e

WAVES = {"Namespace": 0, "Secret": 1, "ConfigMap": 1, "PersistentVolumeClaim": 2, "Service": 3,
         "Deployment": 4, "HorizontalPodAutoscaler": 5}


def wave_objects(dest: str, pv_name: str, *, config_value: str) -> list[dict[str, Any]]:
    def meta(name: str, wave: int) -> dict[str, Any]:
        return {"name": name, "annotations": {"argocd.argoproj.io/sync-wave": str(wave)}}

    labels = {"app": "inference"}
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {**meta(dest, 0), "labels": {TEST_LABEL: "true"}}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": meta("model-credentials", 1),
         "stringData": {"token": "not-a-real-token"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("model-config", 1),
         "data": {"model.version": config_value}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta("model-cache", 2),
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                  "volumeName": pv_name, "resources": {"requests": {"storage": "1Gi"}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta("inference-service", 3),
         "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("inference", 4),
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "model",
                                                        "image": "registry.local/model:v1"}]}}}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
         "metadata": meta("inference-hpa", 5),
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "inference"},
                  "minReplicas": 1, "maxReplicas": 2}},
    ]


# --- a real Git repository ----------------------------------------------------------------------

class GitRepo:
    """A bare repository (the remote, over file://) and a work tree that pushes to it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        self.git("init", "--bare", "-b", "main", str(self.bare), cwd=root)
        self.git("init", "-b", "main", str(self.work), cwd=root)
        self.git("remote", "add", "origin", self.url)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return run_git(cwd or self.work, *args, home=self.work.parent)

    def commit(self, files: dict[str, list[dict[str, Any]]], message: str) -> str:
        for rel, docs in files.items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD")


def operation_entry(app: dict[str, Any]) -> tuple[str, list[str]]:
    """The Application's operationState as (message, applied kinds)."""
    op = (app.get("status") or {}).get("operationState") or {}
    kinds = [r["kind"] for r in (op.get("syncResult") or {}).get("resources") or []]
    return str(op.get("message") or ""), kinds


@pytest.fixture
def destination(core: client.CoreV1Api, namespace: str) -> Iterator[tuple[str, str]]:
    """The destination namespace the sync creates and the name of its PVC's volume; removed after."""
    dest, pv_name = f"{namespace}-ml", f"{namespace}-model-cache"
    # The local cluster has no metrics API and no HPA controller: a stand-in marks the
    # wave-5 HPA as the HPA controller would at target (e2e/hpa.py).
    with HpaStandIn(core.api_client, dest):
        yield dest, pv_name
    for delete in (lambda: core.delete_namespace(dest), lambda: core.delete_persistent_volume(pv_name)):
        try:
            delete()
        except ApiException as exc:
            if exc.status != 404:
                raise


def create_volume(core: client.CoreV1Api, pv_name: str, dest: str) -> None:
    """The PersistentVolume the PVC names (no provisioner here): once it exists the PVC is Bound."""
    core.create_persistent_volume(client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=pv_name, labels={TEST_LABEL: "true"}),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"], storage_class_name="manual",
            host_path=client.V1HostPathVolumeSource(path=f"/tmp/{pv_name}"),  # noqa: S108
            claim_ref=client.V1ObjectReference(namespace=dest, name="model-cache"))))


def application(name: str, namespace: str, *, repo_url: str, dest: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo_url, "targetRevision": "main", "path": "waves"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": dest},
            "syncPolicy": {"automated": {"prune": True}, "syncOptions": ["CreateNamespace=true"]},
        },
    }


def test_seed_sync_waves_apply_in_order_then_a_refresh_syncs_a_new_commit(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str, tmp_path: Path,
        destination: tuple[str, str], gitops_controller: GitopsController) -> None:
    dest, pv_name = destination

    def app() -> dict[str, Any]:
        return dict(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "waves"))

    # Given a Git repository holding the seed's sync-wave objects
    repo = GitRepo(tmp_path)
    first = repo.commit({"waves/sync-waves.yaml": wave_objects(dest, pv_name, config_value="v1")}, "waves")

    # When an automated Application with CreateNamespace points at it
    recorder = ApplicationWatch(custom, namespace, "waves", entry=operation_entry)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "applications",
                                           application("waves", namespace, repo_url=repo.url, dest=dest))

    # Then wave 2's PVC is applied and the operation waits for it: no volume exists yet
    waiting_for_pvc = "waiting for healthy state of /PersistentVolumeClaim/model-cache"
    wait_until(lambda: any(m == waiting_for_pvc for m, _ in recorder.seen), timeout=60, interval=0.2,
               message=f"the sync to wait for the PVC; seen {recorder.seen}; log:\n{gitops_controller.log()[-3000:]}")
    time.sleep(3)  # several reconciles: still waiting, wave 3 not applied
    op = (app().get("status") or {})["operationState"]
    assert op["phase"] == "Running" and op["message"] == waiting_for_pvc
    assert [r["kind"] for r in op["syncResult"]["resources"]] == [
        "Namespace", "Secret", "ConfigMap", "PersistentVolumeClaim"]

    # When the volume appears (the PVC becomes Bound)
    create_volume(core, pv_name, dest)

    # Then the operation goes on and succeeds; the app is Synced and Healthy at that commit
    def settled() -> dict[str, Any] | None:
        status = app().get("status") or {}
        op = status.get("operationState") or {}
        done = (op.get("phase") == "Succeeded" and (status.get("sync") or {}).get("status") == "Synced"
                and (status.get("health") or {}).get("status") == "Healthy")
        return status if done else None

    status = wait_until(settled, timeout=180, interval=0.5,
                        message=f"the Application to be Synced and Healthy; log:\n{gitops_controller.log()[-3000:]}")
    assert status["sync"]["revision"] == first
    result = status["operationState"]["syncResult"]
    assert result["revision"] == first
    applied = [(r["kind"], r["name"]) for r in result["resources"]]
    assert applied == [("Namespace", dest), ("Secret", "model-credentials"), ("ConfigMap", "model-config"),
                       ("PersistentVolumeClaim", "model-cache"), ("Service", "inference-service"),
                       ("Deployment", "inference"), ("HorizontalPodAutoscaler", "inference-hpa")]
    assert all(r["status"] == "Synced" and r["syncPhase"] == "Sync" for r in result["resources"])
    # ... and the objects were created in wave order (creation timestamps never go back a wave)
    created = {r["kind"]: _created(core, r, dest) for r in result["resources"]}
    by_wave = sorted(created.items(), key=lambda item: WAVES[item[0]])
    assert [t for _, t in by_wave] == sorted(t for _, t in by_wave), by_wave
    # ... and no wave was applied while the previous one was not yet healthy
    recorder.stop()
    for message, kinds in recorder.seen:
        if message == waiting_for_pvc:
            assert "Service" not in kinds, recorder.seen
        if message.startswith("waiting for healthy state of apps/Deployment/inference"):
            assert "HorizontalPodAutoscaler" not in kinds, recorder.seen
    health = {r["kind"]: (r.get("health") or {}).get("status") for r in status["resources"]}
    assert health["PersistentVolumeClaim"] == "Healthy" and health["Deployment"] == "Healthy"

    # When a commit changes the ConfigMap and the Application is annotated for refresh
    second = repo.commit({"waves/sync-waves.yaml": wave_objects(dest, pv_name, config_value="v2")},
                         "model v2")
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "applications", "waves",
        {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}})

    # Then the new commit is synced (polling is set to 600 s: the refresh did it)
    wait_until(lambda: core.read_namespaced_config_map("model-config", dest).data == {"model.version": "v2"},
               timeout=60, interval=0.5, message="the ConfigMap change to be synced")

    def synced_second() -> dict[str, Any] | None:
        current = app()
        status = current.get("status") or {}
        op = status.get("operationState") or {}
        ok = (op.get("phase") == "Succeeded" and op["syncResult"]["revision"] == second
              and status["sync"] == {**status["sync"], "status": "Synced", "revision": second})
        return current if ok else None

    current = wait_until(synced_second, timeout=60, interval=0.5, message="the second sync to settle")
    # ... and the refresh annotation is removed once done
    assert "argocd.argoproj.io/refresh" not in (current["metadata"].get("annotations") or {})
    # ... and a settled Application is not rewritten (our own write's watch event is no hot loop)
    version = app()["metadata"]["resourceVersion"]
    time.sleep(3)
    assert app()["metadata"]["resourceVersion"] == version

    # Clean up: the Application first (no finalizer: its resources stay until the namespace goes)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "waves")


def _created(core: client.CoreV1Api, entry: dict[str, Any], dest: str) -> datetime:
    kind, name = entry["kind"], entry["name"]
    readers = {
        "Namespace": lambda: core.read_namespace(name),
        "Secret": lambda: core.read_namespaced_secret(name, dest),
        "ConfigMap": lambda: core.read_namespaced_config_map(name, dest),
        "PersistentVolumeClaim": lambda: core.read_namespaced_persistent_volume_claim(name, dest),
        "Service": lambda: core.read_namespaced_service(name, dest),
        "Deployment": lambda: client.AppsV1Api(core.api_client).read_namespaced_deployment(name, dest),
        "HorizontalPodAutoscaler": lambda: client.AutoscalingV2Api(core.api_client)
        .read_namespaced_horizontal_pod_autoscaler(name, dest),
    }
    created = readers[kind]().metadata.creation_timestamp
    assert isinstance(created, datetime)
    return created
