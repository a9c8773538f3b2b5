"""Building blocks for analysis e2e tests: an exporter Prometheus scrapes, runs, waiters.

Used by e2e/test_analysis.py (fixtures are imported there) and bench/analysis_load.py
(``scraped_exporter``). Everything talks to the real local cluster and the real
Prometheus of the harness: the test exporter (e2e/exporter.py) runs in this
process on a free port, a file_sd target file named after the test makes
Prometheus scrape it (1 s interval, 1 s file refresh), and ``scraped_exporter``
waits until Prometheus really has its series before a test uses them.

Series are labelled by ``service``; tests sharing one exporter each use their own
service name (``unique_service``), and other engineers' exporters on the same
Prometheus use other names, so a test only ever sees its own traffic.
"""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from e2e.conftest import wait_until
from e2e.exporter import ExporterServer, start_exporter

GROUP, VERSION = "argoproj.io", "v1alpha1"
PLURALS = {"AnalysisRun": "analysisruns", "AnalysisTemplate": "analysistemplates"}
TARGET_LABEL = "tidegate_e2e_target"
SCRAPE_TIMEOUT_SECONDS = 30.0

# The seed's success-rate query, with a short rate window so data exists within seconds.
SUCCESS_RATE_QUERY = (
    'sum(rate(inference_requests_total{{service="{{{{args.service-name}}}}",status="success"}}[{window}]))'
    ' / sum(rate(inference_requests_total{{service="{{{{args.service-name}}}}"}}[{window}]))'
)


# --- Prometheus and the exporter -------------------------------------------------------------

def prom_query(prometheus_url: str, query: str) -> list[dict[str, Any]]:
    """An instant query's ``data.result`` (a vector's samples); raises on an HTTP error."""
    answer = requests.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=10)
    answer.raise_for_status()
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def wait_for_data(prometheus_url: str, query: str, *, timeout: float = SCRAPE_TIMEOUT_SECONDS) -> float:
    """Wait until ``query`` returns a sample; return its first value."""
    samples = wait_until(lambda: prom_query(prometheus_url, query), timeout=timeout, interval=0.5,
                         message=f"Prometheus data for {query}")
    return float(samples[0]["value"][1])


def _address(server: ExporterServer) -> str:
    host, port = server.server_address[:2]
    return f"{host!s}:{port}"


@contextmanager
def scraped_exporter(prometheus_url: str, targets_dir: str | os.PathLike[str],
                     name: str) -> Iterator[ExporterServer]:
    """An in-process exporter on a free port that Prometheus scrapes until the block ends.

    Writes ``<targets_dir>/<name>.json`` (file_sd) and waits for ``up == 1`` of the
    target; removes the file and stops the server afterwards.
    """
    server = start_exporter(0)
    target_file = Path(targets_dir) / f"{name}.json"
    try:
        target_file.write_text(json.dumps([{"targets": [_address(server)], "labels": {TARGET_LABEL: name}}]))
        up = f'up{{instance="{_address(server)}"}} == 1'
        wait_for_data(prometheus_url, up)
        yield server
    finally:
        target_file.unlink(missing_ok=True)
        server.stop()


def unique_service(prefix: str = "svc") -> str:
    """A service name no other test (or engineer) scrapes into the same Prometheus."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def success_rate_query(window: str = "10s") -> str:
    return SUCCESS_RATE_QUERY.format(window=window)


# --- manifests -----------------------------------------------------------------------------

def prometheus_metric(name: str, *, address: str, query: str, interval: str = "1s", count: int = 4,
                      success: str | None = "result[0] >= 0.99", failure: str | None = None,
                      **extra: Any) -> dict[str, Any]:
    """A Prometheus metric; ``extra`` adds fields (failureLimit=..., consecutiveErrorLimit=...)."""
    metric: dict[str, Any] = {
        "name": name, "interval": interval, "count": count,
        "provider": {"prometheus": {"address": address, "query": query}},
    }
    if success is not None:
        metric["successCondition"] = success
    if failure is not None:
        metric["failureCondition"] = failure
    metric.update(extra)
    return metric


def analysis_template(name: str, metrics: list[dict[str, Any]],
                      args: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"metrics": metrics}
    if args is not None:
        spec["args"] = args
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AnalysisTemplate",
            "metadata": {"name": name}, "spec": spec}


def analysis_run(name: str, metrics: list[dict[str, Any]],
                 args: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An AnalysisRun as a user (or `kubectl argo rollouts` tooling) creates it directly."""
    spec: dict[str, Any] = {"metrics": metrics}
    if args is not None:
        spec["args"] = args
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AnalysisRun",
            "metadata": {"name": name}, "spec": spec}


# --- the cluster ---------------------------------------------------------------------------

class Analysis:
    """AnalysisRun/AnalysisTemplate/Secret helpers for one test namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)

    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        plural = PLURALS[doc["kind"]]
        return self.custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.ns, plural, copy.deepcopy(doc))

    def secret(self, name: str, data: dict[str, str]) -> None:
        self.core.create_namespaced_secret(
            self.ns, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data))

    def run(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.ns, "analysisruns", name)

    def runs(self, label_selector: str = "") -> list[dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.ns, "analysisruns", label_selector=label_selector)["items"]
        return sorted(items, key=lambda r: r["metadata"]["creationTimestamp"])

    def maybe_run(self, name: str) -> dict[str, Any] | None:
        try:
            return self.run(name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def wait_run(self, name: str, phase: str, *, timeout: float = 60) -> dict[str, Any]:
        """Wait for the run's phase; return its status."""
        def check() -> dict[str, Any] | None:
            run = self.maybe_run(name)
            status = (run or {}).get("status") or {}
            return status if status.get("phase") == phase else None

        return wait_until(check, timeout=timeout, interval=0.3,  # type: ignore[no-any-return]
                          message=f"AnalysisRun {name} phase {phase}")

    def events(self) -> list[client.CoreV1Event]:
        return list(self.core.list_namespaced_event(self.ns).items)

    def event_reasons(self, name: str) -> list[str]:
        return [e.reason for e in self.events() if e.involved_object.name == name]


def watch_rollout(api: client.ApiClient, namespace: str, name: str, *, since: str,
                  until: Callable[[dict[str, Any]], bool], timeout: float) -> list[dict[str, Any]]:
    """Every status of the Rollout written after resourceVersion ``since``, up to ``until``.

    A watch, not polling: a state that lasts less than a poll interval is still seen.
    """
    custom = client.CustomObjectsApi(api)
    statuses: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    stream = watch.Watch()
    try:
        for event in stream.stream(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "rollouts",
                                   field_selector=f"metadata.name={name}", resource_version=since,
                                   timeout_seconds=max(int(timeout), 1)):
            statuses.append(dict(event["object"].get("status") or {}))
            if until(statuses[-1]) or time.monotonic() > deadline:
                break
    finally:
        stream.stop()
    assert statuses and until(statuses[-1]), f"{name}: condition not reached; statuses seen: {statuses}"
    return statuses


def kubectl_yaml(kubectl: Any, *args: str) -> Any:
    """``kubectl get ... -o yaml`` parsed; fails the test on a kubectl error."""
    done = kubectl("get", *args, "-o", "yaml")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def metric_result(status: dict[str, Any], metric: str) -> dict[str, Any]:
    found = [r for r in status.get("metricResults") or [] if r["name"] == metric]
    assert found, f"no metricResult {metric!r} in {status}"
    result: dict[str, Any] = found[0]
    return result
