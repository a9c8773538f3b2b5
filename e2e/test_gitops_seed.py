"""e2e: the seed's Application and AppProject, as written, synced from a local Git repository.

The seed (tests/fixtures/seed/application-and-project.yaml, a byte-for-byte copy of
../shared/seed/application-and-project.yaml) points at
https://github.com/org/ml-platform-config, which this machine cannot reach. The
test keeps that URL in the Application and the AppProject and starts the
controller with the test-only ``--repo-url-rewrite`` (docs/gitops-testing.md), so
git fetches it from a bare repository the test makes over ``file://``. Only
``metadata.namespace`` of the two seed objects is changed: they go to the test's
own application namespace (``--app-namespace``) instead of ``argocd``.

The repository is laid out as the seed's: the chart of
tests/fixtures/gitops/ml-platform-config under ``environments/production``
(values.yaml, then values-production.yaml), and the seed's ``llm-service``
kustomization (tests/fixtures/gitops/llm-service: the seed's files, with the
hpa.yaml and pdb.yaml it names completed for tests) under ``models/llm-service``.

The seed names no Application for the kustomization, so the test adds one,
``llm-service``, with the same repoURL and destination, in the ``default``
project: the seed's ``ml-production`` project allows only the core, ``apps`` and
``serving.kserve.io`` groups in namespaces, and the kustomization's HPA
(``autoscaling``) and PDB (``policy``) are neither.

KServe is absent: e2e/kserve.py installs the InferenceService CRD (shared, never
deleted) and ``KServeStandIn`` — a stand-in for KServe's controller, named as
such in every condition it writes — marks ``llm-service`` Ready a few seconds
after it appears.

``ml-serving`` is a fixed name (the seed's): e2e/test_smoke.py uses it too, so the
test deletes it first if present, waits until it is gone, and again at the end.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.conftest import REPO, load_yaml_documents, wait_until
from e2e.hpa import HpaStandIn
from e2e.kit import ApplicationWatch, Controller, run_git
from e2e.kserve import KServeStandIn, install_inferenceservice_crd

pytestmark = pytest.mark.e2e

GROUP, VERSION = "argoproj.io", "v1alpha1"
SEED = REPO / "tests" / "fixtures" / "seed" / "application-and-project.yaml"
CHART = REPO / "tests" / "fixtures" / "gitops" / "ml-platform-config"
LLM_SERVICE = REPO / "tests" / "fixtures" / "gitops" / "llm-service"
SEED_URL = "https://github.com/org/ml-platform-config"
ML_SERVING = "ml-serving"
CHART_CRD = "modelconfigs.ml.example.com"  # the chart's crds/ (the seed project allows CRDs)
STAND_IN_DELAY = 5.0


# --- the repository -----------------------------------------------------------------------------

def git(cwd: Path, *args: str) -> str:
    return run_git(cwd, *args, home=cwd)


def seed_repository(root: Path) -> tuple[Path, str]:
    """A bare repo (the remote) holding the seed's layout on main; its path and the commit."""
    bare, work = root / "ml-platform-config.git", root / "work"
    git(root, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    shutil.copytree(CHART, work)
    shutil.copytree(LLM_SERVICE, work / "models" / "llm-service")
    git(work, "init", "--quiet", "--initial-branch=main")
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "the seed's layout")
    git(work, "push", "--quiet", bare.as_uri(), "main")
    return bare, git(work, "rev-parse", "HEAD")


# --- the seed's objects ---------------------------------------------------------------------------

def seed_objects(namespace: str) -> dict[str, dict[str, Any]]:
    """The seed's Application and AppProject by kind, moved to ``namespace``, nothing else changed."""
    docs = {doc["kind"]: doc for doc in load_yaml_documents(SEED)}
    for doc in docs.values():
        doc["metadata"]["namespace"] = namespace
    return docs


def llm_service_application(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
        "metadata": {"name": "llm-service", "namespace": namespace},
        "spec": {
            "project": "default",
            "source": {"repoURL": SEED_URL, "targetRevision": "main", "path": "models/llm-service"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": ML_SERVING},
            "syncPolicy": {"automated": {"prune": True}},
        },
    }


def health_entry(app: dict[str, Any]) -> tuple[str | None, str | None]:
    """(app health, InferenceService health) of the llm-service Application."""
    status = app.get("status") or {}
    isvc: dict[str, Any] = next((r for r in status.get("resources") or []
                                 if r.get("kind") == "InferenceService"), {})
    return (status.get("health") or {}).get("status"), (isvc.get("health") or {}).get("status")


# --- the controller and the cluster ---------------------------------------------------------------

class SeedController(Controller):
    """``tidegate controller --components gitops`` with the seed's URL rewritten to ``bare``."""

    def __init__(self, env: dict[str, str], namespace: str, log_path: Path, *, bare: Path) -> None:
        args = ["--components", "gitops", "--app-namespace", namespace, "--app-resync", "600",
                "--repo-url-rewrite", f"{SEED_URL}={bare.as_uri()}"]
        super().__init__(env, namespace, log_path, extra_args=args, ready="gitops controller started")


def _gone(read: Any) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def delete_ml_serving(core: client.CoreV1Api) -> None:
    """Delete ml-serving (if present) and wait until it is gone: the sync must create it."""
    try:
        core.delete_namespace(ML_SERVING)
    except ApiException as exc:
        if exc.status != 404:
            raise
    wait_until(lambda: _gone(lambda: core.read_namespace(ML_SERVING)), timeout=120, interval=0.5,
               message=f"namespace {ML_SERVING} to be gone")


@pytest.fixture
def ml_serving(core: client.CoreV1Api) -> Iterator[None]:
    delete_ml_serving(core)
    yield
    delete_ml_serving(core)


def delete_application(custom: client.CustomObjectsApi, namespace: str, name: str) -> None:
    """Delete an Application; if its finalizer is still there after a while, drop it.

    Cascade delete may not be there yet (gitops/controller.py); the test's cleanup
    must not hang on it: the namespaces and the chart's CRD are removed by the test.
    """
    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "applications", name)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise

    def gone() -> bool:
        return _gone(lambda: custom.get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                 "applications", name))

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not gone():
        time.sleep(0.5)
    if not gone():
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "applications", name,
                                              {"metadata": {"finalizers": None}})


def delete_chart_crd(api_client: client.ApiClient, namespace: str) -> None:
    """The chart's CRD, if this test's ml-platform made it and the cascade delete left it.

    Its tracking id names the app as Argo CD v3 does: ``ml-platform`` in the control
    namespace, ``<namespace>_ml-platform`` in another application namespace.
    """
    ext = client.ApiextensionsV1Api(api_client)
    try:
        crd = ext.read_custom_resource_definition(CHART_CRD)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    tracking = (crd.metadata.annotations or {}).get("argocd.argoproj.io/tracking-id", "")
    if tracking.partition(":")[0] in ("ml-platform", f"{namespace}_ml-platform"):
        ext.delete_custom_resource_definition(CHART_CRD)


# --- the test -------------------------------------------------------------------------------------

def test_the_seed_application_and_the_llm_service_kustomization_sync_from_a_local_repo(
        api_client: client.ApiClient, custom: client.CustomObjectsApi, core: client.CoreV1Api,
        apps: client.AppsV1Api, namespace: str, tmp_path: Path, cluster_env: dict[str, str],
        ml_serving: None) -> None:
    def app(name: str) -> dict[str, Any]:
        return dict(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "applications", name))

    def wait_app(name: str, check: Any, *, timeout: float, what: str) -> Any:
        """wait_until, failing with the Application's status and the controller's log."""
        try:
            return wait_until(check, timeout=timeout, interval=0.5, message=what)
        except AssertionError as exc:
            shown = (app(name).get("status") or {})
            raise AssertionError(f"{exc}\nstatus of {name}: {shown}\ncontroller log:\n{ctl.log()[-3000:]}") from None

    def settled(name: str, revision: str) -> Any:
        def check() -> dict[str, Any] | None:
            status = app(name).get("status") or {}
            op = status.get("operationState") or {}
            done = (op.get("phase") == "Succeeded" and (op.get("syncResult") or {}).get("revision") == revision
                    and (status.get("sync") or {}).get("status") == "Synced"
                    and (status.get("health") or {}).get("status") == "Healthy")
            return status if done else None
        return check

    # Given the seed's layout in a local bare repository, and ml-serving absent
    bare, commit = seed_repository(tmp_path)
    assert _gone(lambda: core.read_namespace(ML_SERVING))
    # ... and the controller fetching the seed's URL from it (test-only rewrite)
    ctl = SeedController(cluster_env, namespace, tmp_path / "controller.log", bare=bare)
    seed = seed_objects(namespace)
    try:
        ctl.start()
        # When the seed's AppProject and Application are applied as written (but for their namespace)
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "appprojects", seed["AppProject"])
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "applications", seed["Application"])

        # Then it syncs the chart at that commit and is Synced and Healthy
        status = wait_app("ml-platform", settled("ml-platform", commit), timeout=180,
                          what="ml-platform to be Synced and Healthy")
        live = app("ml-platform")
        # ... the Application still names the seed's URL (the rewrite is git's business only)
        assert live["spec"]["source"]["repoURL"] == SEED_URL
        assert status["sourceType"] == "Helm"
        assert status["sync"]["revision"] == commit
        applied = {(r["kind"], r["name"]) for r in status["operationState"]["syncResult"]["resources"]}
        assert {("ConfigMap", "ml-platform-model"), ("Service", "ml-platform-inference"),
                ("Deployment", "ml-platform-inference"),
                ("CustomResourceDefinition", CHART_CRD)} <= applied, applied
        # ... into ml-serving, which CreateNamespace made
        assert core.read_namespace(ML_SERVING).status.phase == "Active"
        for resource in status["resources"]:
            if resource["kind"] != "CustomResourceDefinition":
                assert resource.get("namespace") == ML_SERVING, resource
        # ... with values.yaml then values-production.yaml: the second wins where both set a value
        deployment = apps.read_namespaced_deployment("ml-platform-inference", ML_SERVING)
        assert deployment.spec.replicas == 3  # values.yaml 1, values-production.yaml 3
        container = deployment.spec.template.spec.containers[0]
        assert container.image == "registry.example.com/inference-server:v2.1.0"  # v2.0.0 overridden
        assert [(e.name, e.value) for e in container.env] == [("LOG_LEVEL", "info")]  # values.yaml only
        config = core.read_namespaced_config_map("ml-platform-model", ML_SERVING)
        assert config.data == {"MODEL_VERSION": "v2.1.0", "MAX_BATCH_SIZE": "16"}

        # Given the InferenceService CRD and the KServe stand-in (KServe is absent)
        install_inferenceservice_crd(api_client)
        # (and no metrics API: the HPA stand-in writes what the HPA controller would, e2e/hpa.py)
        with KServeStandIn(api_client, ML_SERVING, delay=STAND_IN_DELAY) as stand_in, \
                HpaStandIn(api_client, ML_SERVING):
            # When an Application of the seed's llm-service kustomization (same repo) is created
            recorder = ApplicationWatch(custom, namespace, "llm-service", entry=health_entry)
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "applications",
                                                   llm_service_application(namespace))

            # Then the kustomization renders and applies: the generated ConfigMap's hash name,
            # commonLabels on every object, the namespace of the kustomization
            stand_in.wait_for("llm-service", "True", timeout=120)

            def synced() -> dict[str, Any] | None:
                status = app("llm-service").get("status") or {}
                op = status.get("operationState") or {}
                isvc = [r for r in status.get("resources") or [] if r["kind"] == "InferenceService"]
                ok = (op.get("phase") == "Succeeded" and (status.get("sync") or {}).get("status") == "Synced"
                      and isvc and (isvc[0].get("health") or {}).get("status") == "Healthy")
                return status if ok else None

            status = wait_app("llm-service", synced, timeout=120,
                              what="llm-service to be Synced with a Healthy InferenceService")
            recorder.stop()
            assert status["sourceType"] == "Kustomize"
            applied_kustomize = [(r["kind"], r["name"]) for r in status["operationState"]["syncResult"]["resources"]]
            assert sorted(applied_kustomize) == sorted([
                ("ConfigMap", "model-config-h6h888b45m"), ("InferenceService", "llm-service"),
                ("HorizontalPodAutoscaler", "llm-service"), ("PodDisruptionBudget", "llm-service")])
            labels = {"app.kubernetes.io/managed-by": "argocd", "model.ml/version": "v2.1.0"}
            generated = core.read_namespaced_config_map("model-config-h6h888b45m", ML_SERVING)
            assert generated.data == {"MODEL_VERSION": "v2.1.0", "MAX_BATCH_SIZE": "32",
                                      "ENABLE_CACHING": "true"}
            assert labels.items() <= (generated.metadata.labels or {}).items()
            isvc = custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", ML_SERVING,
                                                       "inferenceservices", "llm-service")
            assert labels.items() <= isvc["metadata"]["labels"].items()
            assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://models/llm/v2.1.0"
            assert isvc["status"]["url"] == "http://llm-service.ml-serving.example.com"
            hpa = client.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler(
                "llm-service", ML_SERVING)
            assert labels.items() <= (hpa.metadata.labels or {}).items()

            # ... the InferenceService was Progressing until the stand-in marked it Ready, then Healthy
            isvc_health = [h for _, h in recorder.seen if h]
            assert "Progressing" in isvc_health, recorder.seen
            assert isvc_health[-1] == "Healthy", recorder.seen
            assert isvc_health.index("Progressing") < len(isvc_health) - 1
            # ... and so was the app: not Healthy while its InferenceService was Progressing
            assert all(a != "Healthy" for a, h in recorder.seen if h == "Progressing"), recorder.seen
            # ... and the app is Healthy once it is: the KServe stand-in made the predictor
            # Deployment the HPA scales, and every resource is Healthy
            final = wait_app("llm-service", lambda: (app("llm-service").get("status") or {})
                             if (app("llm-service").get("status") or {}).get("health", {}).get("status")
                             == "Healthy" else None, timeout=60, what="llm-service to be Healthy")
            assert {(r.get("health") or {}).get("status") for r in final["resources"]} <= {None, "Healthy"}, \
                final["resources"]
            delete_application(custom, namespace, "llm-service")
    finally:
        for name in ("llm-service", "ml-platform"):
            delete_application(custom, namespace, name)
        ctl.stop()
        delete_chart_crd(api_client, namespace)


def test_the_seed_copy_is_used_as_written() -> None:
    """Only metadata.namespace differs from the seed file: the objects are the seed's."""
    original = {doc["kind"]: doc for doc in yaml.safe_load_all(SEED.read_text()) if doc}
    moved = seed_objects("e2e-x")
    for kind, doc in moved.items():
        expected = copy.deepcopy(original[kind])
        expected["metadata"]["namespace"] = "e2e-x"
        assert doc == expected
    assert moved["Application"]["spec"]["source"]["repoURL"] == SEED_URL
