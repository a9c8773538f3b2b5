"""The seed Rollout (tests/fixtures/seed/rollout-and-analysis.yaml) walked to Healthy.

Test-only overrides, and nothing else, applied to the seed before it is created:

* ``metadata.namespace`` is the test's fresh namespace instead of ``ml-serving``;
* pause durations ``5m`` / ``10m`` become ``1s`` / ``2s`` (the semantics are
  the same; waiting 35 minutes is not a test);
* the two AnalysisTemplates the steps name are defined by the test as trivially
  successful Prometheus metrics against the harness's real Prometheus
  (``vector(1)``), because this test is about the canary engine; the seed's own
  success-rate template is exercised against a real exporter in
  e2e/test_analysis.py.

The Services and the VirtualService the seed refers to are created by the test.
Every intermediate weight of the seed's steps must be seen in the VirtualService.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.conftest import REPO, wait_until
from e2e.kit import Cluster, Controller, WeightRecorder, service

pytestmark = pytest.mark.e2e
SEED = REPO / "tests" / "fixtures" / "seed" / "rollout-and-analysis.yaml"
SHORT_PAUSES = {"5m": "1s", "10m": "2s"}


def seed_rollout(namespace: str) -> dict[str, Any]:
    doc = copy.deepcopy(next(d for d in yaml.safe_load_all(SEED.read_text()) if d["kind"] == "Rollout"))
    doc["metadata"]["namespace"] = namespace
    for step in doc["spec"]["strategy"]["canary"]["steps"]:
        if "pause" in step:
            step["pause"]["duration"] = SHORT_PAUSES[step["pause"]["duration"]]
    return doc


def trivial_template(name: str, prometheus_url: str, args: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": name},
        "spec": {
            "args": [{"name": a} for a in args],
            "metrics": [{
                "name": "always-one", "interval": "1s", "count": 2, "successCondition": "result[0] == 1",
                "provider": {"prometheus": {"address": prometheus_url, "query": "vector(1)"}},
            }],
        },
    }


def test_seed_rollout_reaches_healthy_with_every_intermediate_weight(
    api_client: client.ApiClient, namespace: str, prometheus_url: str, controller: Controller
) -> None:
    cluster = Cluster(api_client, namespace)
    # Given the objects the seed refers to, and the seed Rollout at inference:v2 (its first revision)
    cluster.create(service("inference-canary", "inference"))
    cluster.create(service("inference-stable", "inference"))
    vs = {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "inference-vsvc"},
        "spec": {"hosts": ["inference"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "inference-stable"}, "weight": 100},
            {"destination": {"host": "inference-canary"}, "weight": 0},
        ]}]},
    }
    cluster.create(vs)
    cluster.create(trivial_template("inference-success-rate", prometheus_url, ["service-name"]))
    cluster.create(trivial_template("inference-latency", prometheus_url, []))
    cluster.create(seed_rollout(namespace))
    v1 = cluster.wait_phase("inference-rollout", "Healthy", timeout=90)["stableRS"]
    # ten GPU pods really scheduled on the kwok GPU nodes
    assert cluster.replica_sets("inference")[v1].status.ready_replicas == 10

    with WeightRecorder(cluster, "inference-vsvc") as recorder:
        # When a new model image is rolled out
        cluster.set_image("inference-rollout", "inference:v3")

        # Then the VirtualService goes through every weight of the steps, in order, and ends 100/0
        def promoted() -> bool:
            status = cluster.rollout("inference-rollout").get("status") or {}
            return status.get("phase") == "Healthy" and status.get("stableRS") != v1

        wait_until(promoted, timeout=180, message="Healthy on the new revision")
        wait_until(lambda: recorder.weights[-1] == 0, timeout=10, message="VS back to 100/0")
    assert recorder.weights == [0, 10, 30, 50, 100, 0], recorder.weights
    status = cluster.rollout("inference-rollout")["status"]
    v2 = status["currentPodHash"]
    assert status["stableRS"] == v2 and status["currentStepIndex"] == 9
    assert cluster.selector_hash("inference-stable") == v2
    # both analysis steps ran, once each, and succeeded
    runs = cluster.custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "analysisruns")["items"]
    names = sorted(r["metadata"]["name"] for r in runs if v2 in r["metadata"]["name"])
    assert [re.sub(r".*-", "", n) for n in names] == ["2", "5"], names
    assert {r["status"]["phase"] for r in runs if r["metadata"]["name"] in names} == {"Successful"}
    completed = [e.message for e in cluster.events("inference-rollout") if e.reason == "RolloutStepCompleted"]
    assert sum(1 for m in completed if "/9 completed" in m) >= 9
