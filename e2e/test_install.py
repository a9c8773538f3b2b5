"""e2e: the Helm chart installs on the real cluster, and its RBAC is enough and no more.

(a) ``helm template`` of the chart applies with ``kubectl apply --server-side
--dry-run=server`` and then for real, as a unique release in the test's
namespace (CRDs are not rendered: the shared cluster has them; cluster-scoped
names carry the release name and are deleted after).
(b) The real ``tidegate controller`` process runs with a kubeconfig whose only
credential is a TokenRequest token for the chart's ServiceAccount, never the
admin's: a canary Rollout goes through promotion and through an abort, an
AnalysisRun measures with the job provider using a Secret argument, and an
Application syncs a Git repository (a bare repo over file://).
(c) That token is refused what the chart does not grant: deleting a Namespace,
reading a Secret in another namespace.

The release watches only the test's namespace (``controller.watchNamespaces``)
and narrows what the sync module may deploy to ConfigMaps
(``components.gitops.managedResources``), so (c) holds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.analysis_kit import Analysis, analysis_run
from e2e.conftest import wait_until
from e2e.install_kit import CHART, Release, run, token_kubeconfig
from e2e.kit import (
    GITOPS_READY,
    GROUP,
    VERSION,
    Cluster,
    Controller,
    canary_weight,
    rollout,
    run_git,
    service,
    virtual_service,
)

pytestmark = pytest.mark.e2e

CONFIGMAP_RULES = ('[{"apiGroups":[""],"resources":["configmaps"],'
                   '"verbs":["get","list","watch","create","patch","update","delete"]}]')
DENIED = ("Forbidden", "forbidden")
# A refusal as the API client or kopf reports it. The status code stands alone: a bare "403"
# substring also matched a timestamp's microseconds ("...54.654032Z") and failed a CI run.
PERMISSION_WARNING = re.compile(r"Not enough permissions|Forbidden|(?<![\w.:-])403(?![\w.:-])")


@pytest.fixture
def release(cluster_env: dict[str, str], namespace: str) -> Iterator[Release]:
    """The chart applied (dry run, then for real) as release ``t-<namespace>`` in the test's namespace."""
    rel = Release(cluster_env, name=f"t-{namespace}", namespace=namespace, values={
        "controller.watchNamespaces[0]": namespace,
        "components.gitops.appNamespaces[0]": namespace,
    }, json_values={"components.gitops.managedResources": CONFIGMAP_RULES})
    try:
        dry = rel.apply(dry_run=True)
        assert "(server dry run)" in dry
        rel.apply(dry_run=False)
        yield rel
    finally:
        rel.delete()


@pytest.fixture
def token_env(cluster_env: dict[str, str], release: Release, tmp_path: Path) -> dict[str, str]:
    """The cluster environment with KUBECONFIG pointing at the chart ServiceAccount's token."""
    path, _ = token_kubeconfig(cluster_env, release, tmp_path / "chart-sa.kubeconfig")
    return {**cluster_env, "KUBECONFIG": str(path)}


def _assert_no_permission_errors(log: str) -> None:
    lines = [line for line in log.splitlines() if PERMISSION_WARNING.search(line)]
    assert not lines, "the controller hit RBAC refusals:\n" + "\n".join(lines[:20])


def test_chart_crds_apply_server_side_over_the_installed_ones(cluster_env: dict[str, str]) -> None:
    # The shared cluster has the CRDs (applied from crds/ by another manager): a server dry run
    # taking over their fields shows the chart's copies are valid and would apply
    out = run(cluster_env, "kubectl", "apply", "--server-side", "--force-conflicts", "--dry-run=server",
              "--field-manager", "tidegate-e2e", "-f", str(CHART / "crds")).stdout
    assert out.count("serverside-applied (server dry run)") == len(list((CHART / "crds").glob("*.yaml")))


def test_chart_renders_applies_and_creates_its_objects(
        release: Release, cluster_env: dict[str, str], namespace: str) -> None:
    # Then every rendered object exists in the cluster
    for doc in release.documents():
        args = ["kubectl", "get", doc["kind"].lower(), doc["metadata"]["name"], "-o", "name"]
        if doc["metadata"].get("namespace"):
            args += ["-n", doc["metadata"]["namespace"]]
        assert run(cluster_env, *args).stdout.strip(), doc["metadata"]["name"]
    kinds = sorted({doc["kind"] for doc in release.documents()})
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding",
                     "Service", "ServiceAccount"]
    # ... and the component roles are bound in the watched namespace only
    bindings = run(cluster_env, "kubectl", "get", "rolebindings", "-n", namespace, "-o", "name").stdout
    for component in ("rollouts", "analysis", "gitops", "notifications", "leader-election"):
        assert f"rolebinding.rbac.authorization.k8s.io/{release.name}-tidegate-{component}" in bindings


def test_chart_token_takes_a_canary_through_promotion_and_abort(
        api_client: client.ApiClient, namespace: str, token_env: dict[str, str], tmp_path: Path) -> None:
    cluster = Cluster(api_client, namespace)  # the test's own objects are made as admin
    ctl = Controller(token_env, namespace, tmp_path / "controller.log",
                     extra_args=["--components", "rollouts,analysis,notifications"])
    ctl.start()
    try:
        # Given a healthy v1 behind host-level Istio routing, reconciled with the chart's token
        cluster.create(service("model-canary", "model"))
        cluster.create(service("model-stable", "model"))
        cluster.create(virtual_service("model-vsvc", canary_host="model-canary", stable_host="model-stable"))
        cluster.create(rollout("model", abortScaleDownDelaySeconds=2))
        v1 = cluster.wait_phase("model", "Healthy")["stableRS"]

        # When v2 is rolled out, Then it pauses at 10%
        cluster.set_image("model", "registry.local/model:v2")
        status = cluster.wait_status("model", lambda s: s.get("phase") == "Paused", message="paused")
        assert canary_weight(status) == 10
        wait_until(lambda: cluster.vs_weights("model-vsvc") == (90, 10), timeout=15, message="VS 90/10")

        # When promoted, Then v2 is stable with all traffic
        cluster.patch_rollout("model", {"status": {"pauseConditions": None}}, status=True)
        v2 = cluster.wait_phase("model", "Healthy")["stableRS"]
        assert v2 != v1
        wait_until(lambda: cluster.vs_weights("model-vsvc") == (100, 0), timeout=15, message="VS 100/0")

        # When v3 is rolled out and aborted at its pause
        cluster.set_image("model", "registry.local/model:v3")
        cluster.wait_status("model", lambda s: s.get("phase") == "Paused" and s.get("currentPodHash") != v2,
                            message="paused on v3")
        cluster.patch_rollout("model", {"status": {"abort": True}}, status=True)

        # Then traffic returns to v2, phase Degraded, and the abort Event was posted
        status = cluster.wait_phase("model", "Degraded")
        assert status["stableRS"] == v2
        wait_until(lambda: cluster.vs_weights("model-vsvc") == (100, 0), timeout=15, message="VS back to 100/0")
        assert "RolloutAborted" in [e.reason for e in cluster.events("model")]
        _assert_no_permission_errors(ctl.log())
    finally:
        ctl.stop()


def test_chart_token_runs_a_job_analysis_with_a_secret_argument(
        api_client: client.ApiClient, namespace: str, token_env: dict[str, str], tmp_path: Path) -> None:
    # Given a Secret and an AnalysisRun whose job metric takes an argument from it
    analysis = Analysis(api_client, namespace)
    analysis.secret("smoke-token", {"token": "not-a-real-token"})
    check = {"name": "check", "image": "busybox", "command": ["true"],
             "env": [{"name": "TOKEN", "value": "{{args.token}}"}]}
    metric = {"name": "smoke-job", "provider": {"job": {"spec": {
        "backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [check]}}}}}}
    args = [{"name": "token", "valueFrom": {"secretKeyRef": {"name": "smoke-token", "key": "token"}}}]
    ctl = Controller(token_env, namespace, tmp_path / "controller.log",
                     extra_args=["--components", "rollouts,analysis"])
    ctl.start()
    try:
        # When the controller runs it with the chart's token
        analysis.create(analysis_run("smoke", [metric], args=args))

        # Then the Job ran (kwok completes its pod) and the run is Successful
        status = analysis.wait_run("smoke", "Successful", timeout=60)
        job_name = status["metricResults"][0]["measurements"][0]["metadata"]["job-name"]
        assert job_name in {j.metadata.name for j in analysis.batch.list_namespaced_job(namespace).items}
        _assert_no_permission_errors(ctl.log())
    finally:
        ctl.stop()


def test_chart_token_restarts_by_eviction_and_a_pod_disruption_budget_holds_it(
        api_client: client.ApiClient, core: client.CoreV1Api, namespace: str,
        token_env: dict[str, str], tmp_path: Path) -> None:
    cluster = Cluster(api_client, namespace)
    policy = client.PolicyV1Api(api_client)

    def pod_names() -> set[str]:
        return {p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector="app=web").items
                if p.metadata.deletion_timestamp is None}

    def blocked() -> list[client.CoreV1Event]:
        return [e for e in cluster.events("web") if e.reason == "RestartEvictionBlocked"]

    ctl = Controller(token_env, namespace, tmp_path / "controller.log", extra_args=["--components", "rollouts"])
    ctl.start()
    try:
        # Given a healthy Rollout of 2 pods and a PodDisruptionBudget that allows no disruption
        cluster.create(rollout("web", replicas=2, steps=[], traffic=None))
        cluster.wait_phase("web", "Healthy", timeout=90)
        wait_until(lambda: len(pod_names()) == 2, timeout=60, message="2 pods")
        before = pod_names()
        policy.create_namespaced_pod_disruption_budget(namespace, {
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}})

        def budget_counted() -> bool:
            status = policy.read_namespaced_pod_disruption_budget("web", namespace).status
            return status is not None and status.current_healthy == 2

        wait_until(budget_counted, timeout=60, message="the budget counts 2 healthy pods")

        # When the Rollout is restarted with the plugin, on the chart's token too
        run(token_env, "kubectl", "tidegate", "restart", "web", "-n", namespace)
        restart_at = cluster.rollout("web")["spec"]["restartAt"]

        # Then the eviction is refused: one Warning Event names the pod and the budget, no pod
        # goes, and the Rollout says it is restarting; two more re-checks (5 s apart) add no Event
        event = wait_until(lambda: blocked()[0] if blocked() else None, timeout=30, message="blocked Event")
        assert event.type == "Warning" and "PodDisruptionBudget" in event.message
        assert any(name in event.message for name in before), (event.message, before)
        time.sleep(11)
        assert len(blocked()) == 1, [e.message for e in blocked()]
        assert pod_names() == before
        status = cluster.rollout("web")["status"]
        assert (status["phase"], status["message"]) == ("Progressing", "rollout is restarting")
        assert "restartedAt" not in status

        # When the budget allows one disruption, Then the restart replaces both pods and finishes
        policy.patch_namespaced_pod_disruption_budget("web", namespace, {"spec": {"minAvailable": 1}})
        cluster.wait_status("web", lambda s: s.get("restartedAt") == restart_at, timeout=120,
                            message="restartedAt")
        assert not pod_names() & before
        cluster.wait_phase("web", "Healthy")
        _assert_no_permission_errors(ctl.log())
    finally:
        ctl.stop()


def _configmap_app(name: str, namespace: str, repo_url: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo_url, "targetRevision": "main", "path": "app"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            "syncPolicy": {"automated": {"prune": True}},
        },
    }


def test_chart_token_syncs_an_application(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        token_env: dict[str, str], tmp_path: Path) -> None:
    # Given a Git repository holding one ConfigMap
    bare, work = tmp_path / "remote.git", tmp_path / "work"
    run_git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare), home=tmp_path)
    run_git(tmp_path, "init", "-q", "-b", "main", str(work), home=tmp_path)
    (work / "app").mkdir()
    (work / "app" / "cm.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "model-config"},
         "data": {"model.version": "v1"}}))
    run_git(work, "add", "-A", home=tmp_path)
    run_git(work, "commit", "-q", "-m", "config", home=tmp_path)
    run_git(work, "push", "-q", f"file://{bare}", "main", home=tmp_path)
    head = run_git(work, "rev-parse", "HEAD", home=tmp_path).strip()

    ctl = Controller(token_env, namespace, tmp_path / "controller.log", ready=GITOPS_READY,
                     extra_args=["--components", "gitops", "--app-namespace", namespace,
                                 "--app-resync", "600"])
    ctl.start()
    try:
        # When an automated Application points at it
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "applications",
                                               _configmap_app("config", namespace, f"file://{bare}"))

        # Then it is Synced and Healthy at that commit, and the ConfigMap exists
        def synced() -> dict[str, Any] | None:
            app = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "config")
            status = app.get("status") or {}
            ok = ((status.get("sync") or {}).get("status") == "Synced"
                  and (status.get("health") or {}).get("status") == "Healthy")
            return status if ok else None

        status = wait_until(synced, timeout=120, interval=0.5,
                            message=f"Application Synced; log:\n{ctl.log()[-3000:]}")
        assert status["sync"]["revision"] == head
        assert core.read_namespaced_config_map("model-config", namespace).data == {"model.version": "v1"}
        _assert_no_permission_errors(ctl.log())
    finally:
        ctl.stop()


@pytest.mark.parametrize("action", [
    pytest.param(("delete", "namespace", "{ns}"), id="delete-a-namespace"),
    pytest.param(("get", "secret", "-n", "kube-system"), id="read-secrets-in-another-namespace"),
    pytest.param(("create", "clusterrolebinding", "escalate-{ns}", "--clusterrole=cluster-admin",
                  "--serviceaccount={ns}:default"), id="bind-cluster-admin"),
    pytest.param(("delete", "deployment", "--all", "-n", "kube-system"), id="delete-another-namespaces-deployments"),
])
def test_chart_token_is_denied_what_the_chart_does_not_grant(
        action: tuple[str, ...], token_env: dict[str, str], namespace: str) -> None:
    args = [part.format(ns=namespace) for part in action]
    proc = run(token_env, "kubectl", *args, check=False)
    assert proc.returncode != 0 and any(word in proc.stderr for word in DENIED), (proc.stdout, proc.stderr)


def test_chart_token_may_do_what_the_chart_grants(token_env: dict[str, str], namespace: str) -> None:
    # The control for the test above: the same token can list what the controller reads
    proc = run(token_env, "kubectl", "get", "rollouts.argoproj.io,replicasets,services", "-n", namespace,
               check=False)
    assert proc.returncode == 0, proc.stderr
