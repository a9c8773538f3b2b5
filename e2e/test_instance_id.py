"""End-to-end sharding by instance id (Argo's ``argo-rollouts.argoproj.io/controller-instance-id``).

Given three Rollouts in one fresh namespace, labelled A, labelled B and
unlabelled, and controllers started with ``--instance-id A`` and
``--instance-id B``: each takes its own Rollout (and the step AnalysisRun it
creates, which carries the label) through a canary, and the unlabelled one is
left alone; a third controller without ``--instance-id`` then takes the
unlabelled one. "Handled" is read from each process's own ``rollout_reconcile``
and ``analysis_run_reconcile`` series: the names a process reconciled.
All three lead at once: their Leases differ by instance id.

The analysis steps measure ``BackendStub`` (e2e/test_leader.py), a stand-in for
a metrics backend on loopback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.kit import Cluster
from e2e.test_leader import LEADING, BackendStub, Candidate, host_level, web_template

pytestmark = pytest.mark.e2e

GROUP, VERSION = "argoproj.io", "v1alpha1"
INSTANCE_LABEL = "argo-rollouts.argoproj.io/controller-instance-id"
STEPS: list[dict[str, Any]] = [{"setWeight": 25}, {"analysis": {"templates": [{"templateName": "ok"}]}}, {"setWeight": 50},
         {"pause": {"duration": "1s"}}]
UNTOUCHED_FOR_SECONDS = 5.0


@pytest.fixture
def backend() -> Iterator[BackendStub]:
    stub = BackendStub()
    yield stub
    stub.stop()


def reconciled(ctl: Candidate, metric: str, namespace: str) -> set[str]:
    """Names this process reconciled (its ``<metric>_count`` series in ``namespace``)."""
    pattern = re.compile(rf'^{metric}_count\{{name="([^"]+)",namespace="{re.escape(namespace)}"\}}', re.MULTILINE)
    text = ctl.metrics()
    found = set(pattern.findall(text))
    # label order is prometheus_client's (sorted as declared): accept namespace-first too
    other = re.compile(rf'^{metric}_count\{{namespace="{re.escape(namespace)}",name="([^"]+)"\}}', re.MULTILINE)
    return found | set(other.findall(text))


def rolled_out(cluster: Cluster, name: str, *, old: str) -> dict[str, Any]:
    """Wait for Healthy on a new stable ReplicaSet (not ``old``, the v1 hash) after every step."""
    return cluster.wait_status(
        name, lambda s: s.get("phase") == "Healthy" and s.get("currentStepIndex") == len(STEPS)
        and s.get("stableRS") == s.get("currentPodHash") != old, timeout=90, message="Healthy on v2")


def runs_by_rollout(api: client.ApiClient, namespace: str) -> dict[str, list[dict[str, Any]]]:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "analysisruns")["items"]
    grouped: dict[str, list[dict[str, Any]]] = {}
    for run in items:
        owners: list[dict[str, Any]] = run["metadata"].get("ownerReferences") or []
        owner = str(owners[0].get("name", "")) if owners else ""
        grouped.setdefault(owner, []).append(run)
    return grouped


@pytest.fixture
def start(cluster_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[Any]:
    started: list[Candidate] = []

    def run(label: str, *args: str) -> Candidate:
        ctl = Candidate(cluster_env, namespace, tmp_path / f"{label}.log", ready=LEADING, extra_args=list(args))
        started.append(ctl)
        ctl.start()
        return ctl

    try:
        yield run
    finally:
        for ctl in started:
            ctl.stop()


def test_each_instance_handles_only_its_labelled_rollouts(
    api_client: client.ApiClient, cluster: Cluster, namespace: str, backend: BackendStub, start: Any,
) -> None:
    # Given Rollouts labelled A and B and an unlabelled one, and controllers for A and B
    cluster.create(web_template("ok", backend.url, count=1, interval="1s"))
    host_level(cluster, "model-a", STEPS, labels={INSTANCE_LABEL: "A"})
    host_level(cluster, "model-b", STEPS, labels={INSTANCE_LABEL: "B"})
    host_level(cluster, "model-none", STEPS)
    ctl_a = start("a", "--instance-id", "A")
    ctl_b = start("b", "--instance-id", "B")
    started_at = time.monotonic()
    v1 = {name: cluster.wait_phase(name, "Healthy")["stableRS"] for name in ("model-a", "model-b")}

    # When each labelled Rollout gets a new version
    for name in ("model-a", "model-b", "model-none"):
        cluster.set_image(name, "registry.local/model:v2")

    # Then each goes through its analysis step to v2, and the unlabelled one is untouched
    rolled_out(cluster, "model-a", old=v1["model-a"])
    rolled_out(cluster, "model-b", old=v1["model-b"])
    time.sleep(max(0.0, UNTOUCHED_FOR_SECONDS - (time.monotonic() - started_at)))
    assert not cluster.rollout("model-none").get("status"), "no controller may touch an unlabelled Rollout"
    runs = runs_by_rollout(api_client, namespace)
    for name, instance in (("model-a", "A"), ("model-b", "B")):
        assert [r["metadata"]["labels"].get(INSTANCE_LABEL) for r in runs[name]] == [instance]
        assert runs[name][0]["status"]["phase"] == "Successful"
    assert reconciled(ctl_a, "rollout_reconcile", namespace) == {"model-a"}
    assert reconciled(ctl_b, "rollout_reconcile", namespace) == {"model-b"}
    assert reconciled(ctl_a, "analysis_run_reconcile", namespace) == {r["metadata"]["name"] for r in runs["model-a"]}
    assert reconciled(ctl_b, "analysis_run_reconcile", namespace) == {r["metadata"]["name"] for r in runs["model-b"]}

    # When a controller without --instance-id starts
    ctl_none = start("none")

    # Then it, and only it, takes the unlabelled Rollout (first deploy: straight to Healthy)
    cluster.wait_phase("model-none", "Healthy", timeout=60)
    assert reconciled(ctl_none, "rollout_reconcile", namespace) == {"model-none"}
    assert reconciled(ctl_a, "rollout_reconcile", namespace) == {"model-a"}
    assert reconciled(ctl_b, "rollout_reconcile", namespace) == {"model-b"}
