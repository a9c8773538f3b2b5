"""pytest fixtures for end-to-end tests against the real local control plane.

The cluster is the one `make cluster-up` starts (e2e/cluster/up.sh); `make e2e`
starts it when none answers. Each test gets a fresh namespace, deleted after.
In CI (CI=true) an unreachable cluster or Prometheus fails the run; outside CI
the e2e tests are skipped with the command that starts the cluster.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

REPO = Path(__file__).resolve().parent.parent
CLUSTER_DIR = Path(os.environ.get("TIDEGATE_CLUSTER_DIR", REPO / ".cluster"))
TEST_LABEL = "tidegate.dev/e2e"


def require(condition: object, what: str) -> None:
    """A missing prerequisite: fail in CI (CI=true), skip elsewhere with how to fix it."""
    if not condition:
        _unavailable(what)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _unavailable(what: str) -> None:
    message = f"{what}; start it with `make cluster-up` (or run `make e2e`)"
    if _in_ci():
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(f"not in CI: {message}")


def _read_env() -> dict[str, str]:
    env_file = CLUSTER_DIR / "env"
    values: dict[str, str] = {}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if "=" in line and not line.startswith(("export", "#")):
                key, _, value = line.partition("=")
                values[key] = value
    return values


@pytest.fixture(scope="session")
def cluster_env() -> dict[str, str]:
    """KUBECONFIG, PROMETHEUS_URL and PATH for subprocesses (kubectl, the controller)."""
    kubeconfig = CLUSTER_DIR / "kubeconfig"
    if not kubeconfig.exists():
        _unavailable(f"no local cluster: {kubeconfig} does not exist")
    values = _read_env()
    env = dict(os.environ)
    env["KUBECONFIG"] = str(kubeconfig)
    if "PROMETHEUS_URL" in values:
        env["PROMETHEUS_URL"] = values["PROMETHEUS_URL"]
    if "TIDEGATE_PROMETHEUS_TARGETS" in values:
        env["TIDEGATE_PROMETHEUS_TARGETS"] = values["TIDEGATE_PROMETHEUS_TARGETS"]
    bin_dir = values.get("PATH", "").split(":")[0]
    if bin_dir:
        env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    probe = subprocess.run(
        ["kubectl", "--request-timeout=5s", "get", "--raw", "/readyz"],
        env=env, capture_output=True, text=True, check=False,
    )
    if probe.returncode != 0:
        _unavailable(f"the local cluster in {kubeconfig} does not answer: {probe.stderr.strip()}")
    return env


@pytest.fixture(scope="session")
def api_client(cluster_env: dict[str, str]) -> client.ApiClient:
    return config.new_client_from_config(config_file=cluster_env["KUBECONFIG"])


@pytest.fixture(scope="session")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture(scope="session")
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture(scope="session")
def prometheus_url(cluster_env: dict[str, str]) -> str:
    url = cluster_env.get("PROMETHEUS_URL")
    if not url:
        _unavailable("the local cluster has no Prometheus (PROMETHEUS_URL missing from .cluster/env)")
    return str(url)


def _delete_namespace(core: client.CoreV1Api, name: str) -> None:
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace for one test, labelled for cleanup and deleted after."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={TEST_LABEL: "true"}))
    )
    # The ServiceAccount admission plugin rejects pods until KCM made "default".
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException:
            time.sleep(0.2)
    yield name
    _delete_namespace(core, name)


@pytest.fixture
def kubectl(cluster_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the cluster's kubectl; returns the CompletedProcess (never raises on exit code)."""

    def run(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", *args], env=cluster_env, input=input_text,
            capture_output=True, text=True, check=False, timeout=120,
        )

    return run


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2,
               message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")


@pytest.fixture
def cluster(api_client: client.ApiClient, namespace: str) -> Any:
    """e2e.kit.Cluster helpers for the test's namespace."""
    from e2e.kit import Cluster  # e2e.kit imports this module: import late

    return Cluster(api_client, namespace)


@pytest.fixture
def controller(cluster_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[Any]:
    """A real ``tidegate controller`` process watching only the test's namespace."""
    from e2e.kit import running_controller

    with running_controller(cluster_env, namespace, tmp_path / "controller.log") as ctl:
        yield ctl


@pytest.fixture
def gitops_controller(cluster_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[Any]:
    """A real ``tidegate controller --components gitops`` for the test's namespace (e2e.kit)."""
    from e2e.kit import GitopsController

    ctl = GitopsController(cluster_env, namespace, tmp_path / "controller.log")
    try:
        yield ctl
    finally:
        ctl.stop()
