"""Smoke tests: the local control plane is a real, working Kubernetes with Prometheus.

Given the cluster `make cluster-up` starts, these check what every later e2e test
relies on: pods really schedule and become Ready on kwok nodes, our CRDs accept
the seed documents unchanged and reject malformed ones with the API server's own
message, and the harness's Prometheus scrapes series we can query.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from prometheus_api_client import PrometheusConnect

from e2e.conftest import REPO, wait_until

pytestmark = pytest.mark.e2e
FIXTURES = REPO / "tests" / "fixtures"
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def test_deployment_with_three_replicas_gets_three_ready_pods(
    namespace: str, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    # Given a Deployment asking for 3 replicas (and a GPU each, like the seed's model servers)
    labels = {"app": "smoke"}
    container = client.V1Container(
        name="app", image="registry.local/smoke:1",
        resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": "1"}),
    )
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="smoke"),
        spec=client.V1DeploymentSpec(
            replicas=3,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container]),
            ),
        ),
    )
    # When it is created
    apps.create_namespaced_deployment(namespace, deployment)

    # Then three pods are scheduled onto kwok GPU nodes and report Ready
    def ready_pods() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=smoke").items
        ready = [
            p for p in pods
            if p.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        return ready if len(ready) == 3 else []

    pods = wait_until(ready_pods, timeout=60, message="3 Ready pods")
    assert {p.spec.node_name.startswith("kwok-gpu-") for p in pods} == {True}
    status = apps.read_namespaced_deployment(name="smoke", namespace=namespace).status
    assert status.ready_replicas == 3


@pytest.fixture(scope="module")
def fixed_namespaces(core: client.CoreV1Api) -> Iterator[None]:
    """The seed documents name their namespaces (ml-serving, argocd); make them once, then remove them."""
    created = []
    for name in ("ml-serving", "argocd"):
        # A namespace left terminating by an earlier run must finish before it can be re-made.
        wait_until(lambda n=name: _not_terminating(core, n), timeout=60, message=f"namespace {name} to finish terminating")
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
            created.append(name)
        except ApiException as exc:
            if exc.status != 409:
                raise
    yield
    for name in created:
        core.delete_namespace(name)


def _not_terminating(core: client.CoreV1Api, name: str) -> bool:
    try:
        return bool(core.read_namespace(name).status.phase != "Terminating")
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        pytest.param(
            "rollout-and-analysis.yaml",
            {"rollout.argoproj.io/inference-rollout", "analysistemplate.argoproj.io/inference-success-rate"},
            id="rollout-and-analysis",
        ),
        pytest.param(
            "application-and-project.yaml",
            {"application.argoproj.io/ml-platform", "appproject.argoproj.io/ml-production"},
            id="application-and-project",
        ),
    ],
)
def test_seed_documents_are_accepted_unchanged(
    fixed_namespaces: None, kubectl: Kubectl, filename: str, expected: set[str]
) -> None:
    path = FIXTURES / "seed" / filename
    namespace = "argocd" if "application" in filename else "ml-serving"
    applied = kubectl("apply", "-n", namespace, "-f", str(path), "-o", "name")
    assert applied.returncode == 0, applied.stderr
    assert set(applied.stdout.split()) == expected
    # And what the server stored still carries every field we sent (nothing pruned).
    for name in expected:
        got = kubectl("get", "-n", namespace, name, "-o", "yaml")
        assert got.returncode == 0, got.stderr
    # The seed Application carries Argo CD's resources finalizer; no Argo CD runs here to
    # honour it, so drop it or the namespace would never finish terminating.
    for name in expected:
        kubectl("patch", "-n", namespace, name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    deleted = kubectl("delete", "-n", namespace, "-f", str(path), "--wait=true", "--timeout=30s")
    assert deleted.returncode == 0, deleted.stderr


def _malformed_cases() -> list[pytest.ParameterSet]:
    cases = []
    for path in sorted((FIXTURES / "malformed").glob("*.yaml")):
        match = re.search(r"^#\s*expect-apiserver-error:\s*(.+)$", path.read_text(), re.MULTILINE)
        assert match, f"{path} has no '# expect-apiserver-error: <substring>' line"
        cases.append(pytest.param(path, match.group(1).strip(), id=path.stem))
    return cases


@pytest.mark.parametrize(("path", "expected_message"), _malformed_cases())
def test_malformed_documents_are_rejected_with_a_message_naming_the_field(
    namespace: str, kubectl: Kubectl, path: Path, expected_message: str
) -> None:
    result = kubectl("apply", "-n", namespace, "-f", str(path))
    assert result.returncode != 0, f"{path.name} was accepted: {result.stdout}"
    assert expected_message in result.stderr, result.stderr


def test_malformed_fixture_set_is_not_empty() -> None:
    assert len(_malformed_cases()) >= 3


# issue 7 defect 7: the schema bounds (setWeight and setCanaryScale.weight 0-100,
# replicas >= 0, at most 100 steps) reject out-of-range values through the
# malformed fixtures above; these are the edges, which the API server must accept.
EDGE_STEPS: list[dict[str, object]] = [
    {"setWeight": 0},
    {"setCanaryScale": {"weight": 100}},
    {"setCanaryScale": {"replicas": 0}},
    {"setWeight": 100},
]


def _edge_rollout(name: str, steps: list[dict[str, object]], replicas: int) -> str:
    doc = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}},
            "strategy": {"canary": {"steps": steps}},
        },
    }
    return yaml.safe_dump(doc)


@pytest.mark.parametrize(
    ("steps", "replicas"),
    [
        pytest.param(EDGE_STEPS, 0, id="weights-0-and-100-replicas-0"),
        pytest.param([{"setWeight": 1 + i % 100} for i in range(100)], 1, id="100-steps"),
    ],
)
def test_rollout_bounds_accept_their_edges(
    namespace: str, kubectl: Kubectl, steps: list[dict[str, object]], replicas: int
) -> None:
    result = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                     input_text=_edge_rollout("edges", steps, replicas))
    assert result.returncode == 0, result.stderr


def test_prometheus_query_returns_a_scraped_series(prometheus_url: str) -> None:
    prom = PrometheusConnect(url=prometheus_url, disable_ssl=True)

    def scraped() -> list[dict[str, object]]:
        return prom.custom_query('up{job="prometheus"}')  # type: ignore[no-any-return]

    series = wait_until(scraped, timeout=30, message="Prometheus to scrape itself")
    assert series[0]["metric"]["job"] == "prometheus"
    assert float(series[0]["value"][1]) == 1.0
