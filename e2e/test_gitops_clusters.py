"""e2e: a destination named by an Argo CD cluster Secret, synced with that Secret's credentials.

Given a ServiceAccount with a token Secret, bound (in the destination namespace
only) to a ClusterRole for ConfigMaps, and an Argo CD cluster Secret that names
the same API server by another URL (``https://localhost:<port>`` where the
kubeconfig says ``127.0.0.1``; caData from the kubeconfig) with that token and
``namespaces`` set to the destination (Argo CD's namespaced mode):

* an Application with ``destination.name: <that cluster>`` syncs through it;
* once the ServiceAccount's RoleBinding is deleted, a sync fails with the API
  server's Forbidden message naming the ServiceAccount: the objects were
  written with the Secret's identity, not the controller's own;
* an Application naming an unknown cluster gets Argo CD's InvalidSpecError
  message and creates nothing.

The controller is the real ``tidegate controller --components gitops`` process,
the Git repository a real bare repo over ``file://``. Everything namespaced lives
in the test's namespace and its ``-dest`` namespace; the one cluster-scoped
object (the ClusterRole) carries the test namespace in its name.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.conftest import TEST_LABEL, wait_until
from e2e.kit import GROUP, VERSION, GitopsController
from e2e.test_gitops_policy import Apps, absent, configmap, op_of
from e2e.test_gitops_sync import GitRepo

pytestmark = pytest.mark.e2e

SA = "deployer"
CLUSTER = "remote"


def kubeconfig_cluster(env: dict[str, str]) -> tuple[str, bytes]:
    """The API server's URL and CA from the kubeconfig the tests use."""
    doc = yaml.safe_load(Path(env["KUBECONFIG"]).read_text())
    entry = doc["clusters"][0]["cluster"]
    ca = entry.get("certificate-authority-data")
    data = base64.b64decode(ca) if ca else Path(entry["certificate-authority"]).read_bytes()
    return str(entry["server"]), data


@pytest.fixture
def remote(api_client: client.ApiClient, core: client.CoreV1Api, namespace: str,
           cluster_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The ServiceAccount, its token, its RBAC and the cluster Secret; all removed after."""
    rbac = client.RbacAuthorizationV1Api(api_client)
    dest, role = f"{namespace}-dest", f"{namespace}-deployer"
    labels = {TEST_LABEL: "true"}
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=dest, labels=labels)))
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name=SA, labels=labels)))
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=f"{SA}-token", labels=labels,
                                     annotations={"kubernetes.io/service-account.name": SA}),
        type="kubernetes.io/service-account-token"))
    rbac.create_cluster_role(client.V1ClusterRole(
        metadata=client.V1ObjectMeta(name=role, labels=labels),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"],
                                   verbs=["get", "list", "watch", "create", "update", "patch", "delete"])]))
    rbac.create_namespaced_role_binding(dest, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name=SA, labels=labels),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name=SA, namespace=namespace)]))
    try:
        token = wait_until(lambda: (core.read_namespaced_secret(f"{SA}-token", namespace).data or {}).get("token"),
                           timeout=30, message="the token controller fills the ServiceAccount's token")
        server, ca = kubeconfig_cluster(cluster_env)
        parts = urlsplit(server)
        assert parts.hostname == "127.0.0.1", f"the test expects a loopback API server, got {server}"
        other_url = f"https://localhost:{parts.port}"  # the same server by another name (in its cert)
        config = {"bearerToken": base64.b64decode(token).decode(),
                  "tlsClientConfig": {"caData": base64.b64encode(ca).decode()}}
        core.create_namespaced_secret(namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name="cluster-remote",
                                         labels={**labels, "argocd.argoproj.io/secret-type": "cluster"}),
            string_data={"name": CLUSTER, "server": other_url, "config": json.dumps(config),
                         "namespaces": dest}))
        yield {"dest": dest, "server": other_url, "token": str(config["bearerToken"])}
    finally:
        _gone(rbac.delete_cluster_role, role)
        _gone(core.delete_namespace, dest)


def _gone(delete: Any, name: str) -> None:
    try:
        delete(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def app_doc(name: str, namespace: str, *, repo_url: str, dest: str, cluster: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"project": "default",
                 "source": {"repoURL": repo_url, "targetRevision": "main", "path": "app"},
                 "destination": {"name": cluster, "namespace": dest},
                 "syncPolicy": {"automated": {"prune": True}}},
    }


def test_an_app_syncs_through_a_cluster_secret_with_its_credentials(
        api_client: client.ApiClient, custom: client.CustomObjectsApi, core: client.CoreV1Api,
        namespace: str, tmp_path: Path, remote: dict[str, str], gitops_controller: GitopsController) -> None:
    rbac = client.RbacAuthorizationV1Api(api_client)
    apps = Apps(custom, namespace, gitops_controller)
    dest = remote["dest"]
    repo = GitRepo(tmp_path)
    repo.commit({"app/objects.yaml": [configmap("settings", a="1")]}, "objects")
    try:
        # When an Application names the cluster of the Secret
        apps.create(app_doc("through", namespace, repo_url=repo.url, dest=dest, cluster=CLUSTER))
        # Then it syncs, through that cluster
        status = apps.wait("through", lambda s: op_of(s).get("phase") == "Succeeded"
                           and (s.get("sync") or {}).get("status") == "Synced", "synced through the Secret")
        assert status["sync"]["comparedTo"]["destination"] == {"name": CLUSTER, "namespace": dest}
        live = core.read_namespaced_config_map("settings", dest)
        assert live.data == {"a": "1"}
        assert "tidegate" in {m.manager for m in live.metadata.managed_fields or []}

        # When the ServiceAccount loses its RBAC and a sync is asked for
        rbac.delete_namespaced_role_binding(SA, dest)
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "through",
                                              {"operation": {"sync": {"revision": "main"},
                                                             "initiatedBy": {"username": "e2e"}}})
        # Then it fails with the server's Forbidden message for the Secret's identity
        status = apps.wait("through", lambda s: op_of(s).get("phase") == "Failed", "the sync fails")
        who = f'User "system:serviceaccount:{namespace}:{SA}"'
        assert "is forbidden" in op_of(status)["message"] and who in op_of(status)["message"], op_of(status)
        failed = [r for r in op_of(status)["syncResult"]["resources"] if r["status"] == "SyncFailed"]
        assert failed and who in failed[0]["message"]
        # and the Secret's token is in no log line and no status
        assert remote["token"] not in gitops_controller.log()
        assert remote["token"] not in json.dumps(status)
    finally:
        apps.delete_all()


def test_an_app_naming_an_unknown_cluster_is_an_invalid_spec_and_creates_nothing(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str, tmp_path: Path,
        remote: dict[str, str], gitops_controller: GitopsController) -> None:
    apps = Apps(custom, namespace, gitops_controller)
    dest = remote["dest"]
    repo = GitRepo(tmp_path)
    repo.commit({"app/objects.yaml": [configmap("never", a="1")]}, "objects")
    try:
        # When an Application names a cluster no Secret declares
        apps.create(app_doc("lost", namespace, repo_url=repo.url, dest=dest, cluster="nowhere"))
        # Then it carries Argo CD's message, and nothing is created
        status = apps.wait("lost", lambda s: any(c.get("type") == "InvalidSpecError"
                                                 for c in s.get("conditions") or []), "an InvalidSpecError")
        assert status["conditions"][0]["message"] == "there are no clusters with this name: nowhere"
        assert status["sync"]["status"] == "Unknown"
        assert absent(lambda: core.read_namespaced_config_map("never", dest))
        assert absent(lambda: core.read_namespaced_config_map("never", namespace))
    finally:
        apps.delete_all()
