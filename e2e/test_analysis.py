"""End-to-end analysis: AnalysisRuns measured by the real controller against real Prometheus.

Each test: Given a fresh namespace, a ``tidegate controller`` process watching only
it, and an in-process test exporter (e2e/exporter.py) that the harness's
Prometheus scrapes, When a user creates an AnalysisRun (or a Rollout whose steps
or background analysis create them), Then the run's stored status, the Rollout
and the routing in the cluster show what Argo Rollouts would show.

Each test uses its own exporter ``service`` label, so the shared exporter and
Prometheus never mix traffic between tests; the rate window is 10s and the
intervals 1-2s so every test ends within about a minute.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from typing import Any

import pytest
from kubernetes import client

from e2e.analysis_kit import (
    Analysis,
    analysis_run,
    analysis_template,
    kubectl_yaml,
    metric_result,
    prometheus_metric,
    scraped_exporter,
    success_rate_query,
    unique_service,
    wait_for_data,
    watch_rollout,
)
from e2e.conftest import REPO, require, wait_until
from e2e.exporter import ExporterServer
from e2e.kit import (
    Cluster,
    Controller,
    rollout,
    sample,
    service,
    virtual_service,
)

pytestmark = pytest.mark.e2e

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
SERVICE_ARG = "service-name"
ROLLOUT_TYPE = "rollout-type"
MSG_EMPTY = "empty vector"


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exporter(cluster_env: dict[str, str], prometheus_url: str) -> Iterator[ExporterServer]:
    """One exporter for the module (scraped once); tests use distinct service labels."""
    targets = cluster_env.get("TIDEGATE_PROMETHEUS_TARGETS")
    require(targets, "the harness has no TIDEGATE_PROMETHEUS_TARGETS directory (an old .cluster/env)")
    with scraped_exporter(prometheus_url, targets, f"test-analysis-{os.getpid()}") as server:
        yield server


@pytest.fixture
def analysis(api_client: client.ApiClient, namespace: str) -> Analysis:
    return Analysis(api_client, namespace)


@pytest.fixture
def serve(exporter: ExporterServer, prometheus_url: str) -> Callable[..., str]:
    """Start serving a fresh service at ``error_rate``; return its name once Prometheus has data."""

    def start(error_rate: float = 0.0, *, prefix: str = "svc") -> str:
        name = unique_service(prefix)
        exporter.exporter.configure(name, {"error_rate": error_rate, "rate": 20})
        query = success_rate_query().replace("{{args.service-name}}", name)
        # rate() needs two scrapes inside the window; then the ratio is exact.
        value = wait_for_data(prometheus_url, query)
        assert abs(value - (1 - error_rate)) < 1e-6, value
        return name

    return start


def success_rate(prometheus_url: str, **extra: Any) -> dict[str, Any]:
    """The seed's success-rate metric against the harness Prometheus (failureLimit 2)."""
    return prometheus_metric("success-rate", address=prometheus_url, query=success_rate_query(),
                             **{"failureLimit": 2, **extra})


def service_arg(name: str) -> list[dict[str, Any]]:
    return [{"name": SERVICE_ARG, "value": name}]


def vector(value: str) -> list[float]:
    """A measurement's stored value ``[0.95]`` as numbers (float noise differs per scrape)."""
    assert value.startswith("[") and value.endswith("]"), value
    return [float(v) for v in value[1:-1].split(",") if v]


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def host_level(cluster: Cluster, name: str, **rollout_args: Any) -> None:
    """Services, VirtualService and Rollout with host-level Istio routing (as test_rollouts.py)."""
    cluster.create(service(f"{name}-canary", name))
    cluster.create(service(f"{name}-stable", name))
    cluster.create(virtual_service(f"{name}-vsvc", canary_host=f"{name}-canary", stable_host=f"{name}-stable"))
    cluster.create(rollout(name, **rollout_args))


def is_terminated(analysis: Analysis, name: str) -> bool:
    return analysis.run(name)["spec"].get("terminate") is True


def set_image(cluster: Cluster, name: str, image: str) -> None:
    """A merge patch of the pod template (kit's get+replace can race the controller's writes: 409)."""
    containers = [{"name": "model", "image": image}]
    cluster.patch_rollout(name, {"spec": {"template": {"spec": {"containers": containers}}}})


def step_analysis(template: str, service_name: str) -> dict[str, Any]:
    return {"analysis": {"templates": [{"templateName": template}],
                         "args": [{"name": SERVICE_ARG, "value": service_name}]}}


# --- 1. success rate: Successful and Failed ------------------------------------------------

def test_success_rate_run_succeeds_when_healthy_and_fails_at_5_percent_errors(
    analysis: Analysis, controller: Controller, serve: Callable[..., str], prometheus_url: str,
    kubectl: Kubectl, namespace: str,
) -> None:
    # Given a healthy service and one answering 5% errors, and the seed's template
    healthy, broken = serve(0.0), serve(0.05)
    analysis.create(analysis_template("success-rate", [success_rate(prometheus_url)],
                                      args=[{"name": SERVICE_ARG}]))
    metric = success_rate(prometheus_url)

    # When one AnalysisRun per service is created (count 4, interval 1s)
    analysis.create(analysis_run("healthy", [metric], args=service_arg(healthy)))
    analysis.create(analysis_run("broken", [metric], args=service_arg(broken)))

    # Then the healthy run is Successful after 4 measurements of exactly 1
    analysis.wait_run("healthy", "Successful", timeout=40)
    analysis.wait_run("broken", "Failed", timeout=40)
    stored = kubectl_yaml(kubectl, "ar", "-n", namespace)
    runs = {item["metadata"]["name"]: item["status"] for item in stored["items"]}

    good = metric_result(runs["healthy"], "success-rate")
    assert good["phase"] == "Successful"
    assert (good["count"], good["successful"], good.get("failed", 0)) == (4, 4, 0)
    assert [m["value"] for m in good["measurements"]] == ["[1]"] * 4
    assert {m["phase"] for m in good["measurements"]} == {"Successful"}
    assert good["metadata"]["ResolvedPrometheusQuery"] == success_rate_query().replace(
        "{{args.service-name}}", healthy)
    summary = {k: v for k, v in runs["healthy"]["runSummary"].items() if v}
    assert summary == {"count": 1, "successful": 1}
    _assert_measurement_times(runs["healthy"], good, interval=1.0)

    # and the broken run Failed at the third failure (failureLimit 2), each value 0.95
    bad = metric_result(runs["broken"], "success-rate")
    assert bad["phase"] == "Failed"
    assert (bad["count"], bad["failed"]) == (3, 3)
    assert [vector(m["value"]) for m in bad["measurements"]] == [pytest.approx([0.95])] * 3
    assert {m["phase"] for m in bad["measurements"]} == {"Failed"}
    assert runs["broken"]["message"] == (
        'Metric "success-rate" assessed Failed due to failed (3) > failureLimit (2)')
    _assert_measurement_times(runs["broken"], bad, interval=1.0)

    # and each completion was announced with Argo's reasons
    assert "AnalysisRunSuccessful" in analysis.event_reasons("healthy")
    assert "AnalysisRunFailed" in analysis.event_reasons("broken")


def _assert_measurement_times(status: dict[str, Any], result: dict[str, Any], *, interval: float) -> None:
    measurements = result["measurements"]
    started, completed = ts(status["startedAt"]), ts(status["completedAt"])
    previous_finish: datetime | None = None
    for m in measurements:
        begin, end = ts(m["startedAt"]), ts(m["finishedAt"])
        # startedAt is stamped when the first reconcile assesses the run, i.e. after its
        # first measurement started (as in Argo, where initialDelay counts from it)
        assert begin <= end and started <= end <= completed
        if previous_finish is not None:
            # the next measurement is due one interval after the previous finished
            assert (begin - previous_finish).total_seconds() >= interval - 0.001
        previous_finish = end


# --- 2. no data: Error measurements, Error run, aborted rollout ------------------------------

@pytest.mark.parametrize("limit", [2, pytest.param(None, id="default-limit-4")])
def test_empty_vector_gives_error_measurements_then_an_error_run(
    analysis: Analysis, controller: Controller, prometheus_url: str, limit: int | None,
) -> None:
    # Given a query on a service nobody serves (an empty vector)
    extra = {} if limit is None else {"consecutiveErrorLimit": limit}
    metric = success_rate(prometheus_url, **extra)

    # When a run measures it
    analysis.create(analysis_run("no-data", [metric], args=service_arg(unique_service("nobody"))))

    # Then every measurement is an Error saying "no data", and after limit+1 the run is Error
    effective = 4 if limit is None else limit
    status = analysis.wait_run("no-data", "Error", timeout=10.5 * (effective + 1) + 15)
    result = metric_result(status, "success-rate")
    assert result["phase"] == "Error"
    assert result["error"] == result["consecutiveError"] == effective + 1
    assert result.get("count", 0) == 0  # errors do not use up the count
    assert {m["phase"] for m in result["measurements"]} == {"Error"}
    assert all(MSG_EMPTY in m["message"] and "no data" in m["message"] for m in result["measurements"])
    assert status["message"].startswith(
        f'Metric "success-rate" assessed Error due to consecutiveErrors ({effective + 1}) '
        f"> consecutiveErrorLimit ({effective})")
    finishes = [ts(m["finishedAt"]) for m in result["measurements"]]
    # an Error is retried 10s later (Argo's DefaultErrorRetryInterval), not at the 1s interval
    assert all((b - a).total_seconds() >= 9.9 for a, b in zip(finishes, finishes[1:], strict=False))


def test_step_analysis_without_data_aborts_the_rollout_and_never_promotes(
    analysis: Analysis, cluster: Cluster, controller: Controller, prometheus_url: str,
) -> None:
    # Given a healthy v1 whose first step is an analysis of a service without data
    analysis.create(analysis_template("success-rate", [success_rate(prometheus_url, consecutiveErrorLimit=1)],
                                      args=[{"name": SERVICE_ARG}]))
    steps = [step_analysis("success-rate", unique_service("nobody")), {"setWeight": 50}, {"pause": {}}]
    host_level(cluster, "model", steps=steps)
    v1 = cluster.wait_phase("model", "Healthy")["stableRS"]

    # When v2 is rolled out
    set_image(cluster, "model", "registry.local/model:v2")

    # Then the step run ends Error, the rollout aborts, and traffic never leaves stable
    weights = sample(lambda: cluster.vs_weights("model-vsvc"),
                     until=lambda _: (cluster.rollout("model").get("status") or {}).get("abort") is True,
                     timeout=45, interval=0.2)
    assert weights == [(100, 0)]
    status = cluster.rollout("model")["status"]
    v2 = status["currentPodHash"]
    run = analysis.runs(f"{ROLLOUT_TYPE}=Step,rollouts-pod-template-hash={v2}")[0]
    assert run["status"]["phase"] == "Error", json.dumps([run, status], indent=1)
    assert run["metadata"]["name"] == f"model-{v2}-2-0"
    status = cluster.wait_phase("model", "Degraded", timeout=15)
    assert status["stableRS"] == v1
    assert status.get("currentStepIndex", 0) == 0
    assert "Error" in (status.get("message") or "")
    time.sleep(2)  # nothing moves afterwards either
    assert cluster.vs_weights("model-vsvc") == (100, 0)
    assert cluster.rollout("model")["status"]["stableRS"] == v1


def test_initial_deploy_creates_no_analysis_run(
    analysis: Analysis, cluster: Cluster, controller: Controller, prometheus_url: str,
) -> None:
    # Given a Rollout whose first step is an analysis, When it is first created
    analysis.create(analysis_template("success-rate", [success_rate(prometheus_url)],
                                      args=[{"name": SERVICE_ARG}]))
    host_level(cluster, "model", steps=[step_analysis("success-rate", "any"), {"setWeight": 50}])

    # Then it goes straight to Healthy (steps are skipped) and no AnalysisRun is ever created
    cluster.wait_phase("model", "Healthy")
    time.sleep(1)
    assert [r["metadata"]["name"] for r in analysis.runs()] == []


# --- 3. Inconclusive pauses, promote resumes --------------------------------------------------

def test_inconclusive_step_analysis_pauses_the_rollout_until_promoted(
    analysis: Analysis, cluster: Cluster, controller: Controller, serve: Callable[..., str],
    prometheus_url: str, cluster_env: dict[str, str], namespace: str,
) -> None:
    # Given a service at 10% errors: neither >= 0.99 (success) nor < 0.5 (failure)
    name = serve(0.10)
    metric = success_rate(prometheus_url, count=2, failureCondition="result[0] < 0.5")
    analysis.create(analysis_template("success-rate", [metric], args=[{"name": SERVICE_ARG}]))
    steps = [{"setWeight": 20}, step_analysis("success-rate", name), {"setWeight": 60}, {"pause": {}}]
    host_level(cluster, "model", steps=steps)
    cluster.wait_phase("model", "Healthy")

    # When v2 is rolled out
    set_image(cluster, "model", "registry.local/model:v2")

    # Then the step run is Inconclusive and the rollout pauses on it at step 1
    status = cluster.wait_status(
        "model", lambda s: any(c.get("reason") == "InconclusiveAnalysisRun" for c in s.get("pauseConditions") or []),
        timeout=40, message="paused with InconclusiveAnalysisRun")
    run = analysis.runs(f"{ROLLOUT_TYPE}=Step")[0]
    assert run["status"]["phase"] == "Inconclusive"
    result = metric_result(run["status"], "success-rate")
    assert result["inconclusive"] == 1
    assert vector(result["measurements"][0]["value"]) == pytest.approx([0.9])
    assert status["currentStepIndex"] == 1 and status.get("controllerPause") is True
    assert status["phase"] == "Paused"
    time.sleep(2)
    assert cluster.vs_weights("model-vsvc") == (80, 20)  # held at the last weight

    # When promoted with the CLI (the status patch `kubectl argo rollouts promote` sends)
    done = subprocess.run([str(REPO / ".venv/bin/tidegate"), "promote", "model", "-n", namespace],
                          env=cluster_env, capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr

    # Then it moves on to step 2 (60%) and pauses at the final indefinite pause
    status = cluster.wait_status("model", lambda s: s.get("currentStepIndex") == 3 and s.get("phase") == "Paused",
                                 timeout=30, message="paused at step 3")
    assert not any(c.get("reason") == "InconclusiveAnalysisRun" for c in status.get("pauseConditions") or [])
    wait_until(lambda: cluster.vs_weights("model-vsvc") == (40, 60), timeout=10, message="VS 40/60")


# --- 4. step + background analysis, update mid-analysis -----------------------------------

def test_step_and_background_runs_are_terminated_by_an_update_mid_analysis(
    analysis: Analysis, cluster: Cluster, controller: Controller, serve: Callable[..., str],
    prometheus_url: str, api_client: client.ApiClient,
) -> None:
    # Given a long step analysis at step 1 and a background analysis from step 1
    name = serve(0.0)
    long_metric = success_rate(prometheus_url, count=60, interval="1s")
    analysis.create(analysis_template("step-rate", [long_metric], args=[{"name": SERVICE_ARG}]))
    analysis.create(analysis_template("bg-rate", [{**long_metric, "name": "bg-rate"}],
                                      args=[{"name": SERVICE_ARG}]))
    steps = [{"setWeight": 20}, step_analysis("step-rate", name), {"setWeight": 60}, {"pause": {}}]
    background = {"templates": [{"templateName": "bg-rate"}], "startingStep": 1,
                  "args": [{"name": SERVICE_ARG, "value": name}]}
    host_level(cluster, "model", steps=steps, analysis=background)
    v1 = cluster.wait_phase("model", "Healthy")["stableRS"]
    assert analysis.runs() == []  # no analysis when nothing is being updated

    # When v2 is rolled out and both runs are measuring
    set_image(cluster, "model", "registry.local/model:v2")

    def both_running() -> dict[str, dict[str, Any]] | None:
        runs = {r["metadata"]["labels"].get(ROLLOUT_TYPE): r for r in analysis.runs()}
        ok = set(runs) == {"Step", "Background"} and all(
            (r.get("status") or {}).get("phase") == "Running" for r in runs.values())
        return runs if ok else None

    runs = wait_until(both_running, timeout=40, message="a Step and a Background run, Running")
    v2 = cluster.rollout("model")["status"]["currentPodHash"]
    for run in runs.values():
        labels = run["metadata"]["labels"]
        assert labels["rollouts-pod-template-hash"] == v2 and labels["app"] == "model"
        assert run["metadata"]["ownerReferences"][0]["kind"] == "Rollout"
        assert run["metadata"]["annotations"]["rollout.argoproj.io/revision"] == "2"
    assert runs["Step"]["metadata"]["name"] == f"model-{v2}-2-1"
    assert runs["Background"]["metadata"]["name"] == f"model-{v2}-2"
    assert cluster.rollout("model")["status"]["currentStepIndex"] == 1

    # When v3 replaces v2 mid-analysis
    since = cluster.rollout("model")["metadata"]["resourceVersion"]
    set_image(cluster, "model", "registry.local/model:v3")

    # Then v3 restarts at step 0 (setWeight 20: a new canary pod) before reaching step 1
    statuses = watch_rollout(api_client, cluster.ns, "model", since=since, timeout=30,
                             until=lambda s: s.get("currentPodHash") not in (None, v1, v2)
                             and s.get("currentStepIndex") == 1)
    v3 = statuses[-1]["currentPodHash"]
    v3_steps = [s.get("currentStepIndex") for s in statuses if s.get("currentPodHash") == v3]
    assert v3_steps[0] == 0, v3_steps

    # and the v2 runs are terminated (spec.terminate) and end Successful ("Run Terminated")
    for old in runs.values():
        old_name: str = old["metadata"]["name"]
        wait_until(partial(is_terminated, analysis, old_name), timeout=20, message=f"{old_name} terminated")
        status = analysis.wait_run(old_name, "Successful", timeout=20)
        assert status["message"] == "Run Terminated"
    try:
        wait_until(lambda: {r["metadata"]["labels"][ROLLOUT_TYPE] for r in analysis.runs(
            f"rollouts-pod-template-hash={v3}")} == {"Step", "Background"} or None,
            timeout=30, message="v3 Step and Background runs")
    except AssertionError as exc:
        raise AssertionError(json.dumps([str(exc), cluster.rollout("model")["status"], [
            (r["metadata"]["name"], r["metadata"]["labels"], r["spec"].get("terminate"),
             (r.get("status") or {}).get("phase")) for r in analysis.runs()]], indent=1)) from None
    assert cluster.rollout("model")["status"]["stableRS"] == v1


# --- 5. secretKeyRef args never leak ------------------------------------------------------------

SECRET_VALUE = "s3cr3t-e2e-token-7f1d9c"


def test_secret_arg_in_a_header_succeeds_and_never_leaks(
    analysis: Analysis, controller: Controller, serve: Callable[..., str], prometheus_url: str,
    kubectl: Kubectl, namespace: str,
) -> None:
    # Given a token in a Secret, used in an Authorization header and (harmlessly) in the query
    name = serve(0.0)
    analysis.secret("prom-token", {"token": SECRET_VALUE})
    query = success_rate_query().replace(
        'status="success"', 'status="success",token!="{{args.token}}"')
    metric = prometheus_metric(
        "success-rate", address=prometheus_url, query=query, interval="1s", count=2,
        provider={"prometheus": {"address": prometheus_url, "query": query,
                                 "headers": [{"key": "Authorization", "value": "Bearer {{args.token}}"}]}})
    args = [*service_arg(name),
            {"name": "token", "valueFrom": {"secretKeyRef": {"name": "prom-token", "key": "token"}}}]

    # When a run uses it
    analysis.create(analysis_run("with-secret", [metric], args=args))

    # Then it succeeds (Prometheus ignores the header; the matcher matches every series)
    status = analysis.wait_run("with-secret", "Successful", timeout=30)
    result = metric_result(status, "success-rate")
    assert result["successful"] == 2
    assert "*****" in result["metadata"]["ResolvedPrometheusQuery"]

    # and the secret is nowhere: the run's full YAML, the namespace's Events, the controller log
    full = kubectl("get", "ar", "with-secret", "-n", namespace, "-o", "yaml")
    assert full.returncode == 0 and "with-secret" in full.stdout
    assert SECRET_VALUE not in full.stdout
    events = kubectl("get", "events", "-n", namespace, "-o", "yaml")
    assert "AnalysisRunSuccessful" in events.stdout
    assert SECRET_VALUE not in events.stdout
    time.sleep(1)
    assert controller.log(), "the controller log is empty"
    assert SECRET_VALUE not in controller.log()


# --- 6. web and job metrics ---------------------------------------------------------------------

def test_web_metric_succeeds_and_fails_on_the_exporters_control_json(
    analysis: Analysis, controller: Controller, exporter: ExporterServer,
) -> None:
    # Given two services, one at 0% and one at 20% errors, as the exporter's /control reports them
    good, bad = unique_service("web"), unique_service("web")
    exporter.exporter.configure(good, {"error_rate": 0.0})
    exporter.exporter.configure(bad, {"error_rate": 0.2})

    def web_metric(svc: str) -> dict[str, Any]:
        return {"name": "error-rate", "successCondition": "result <= 0.01",
                "provider": {"web": {"url": f"{exporter.url}/control?service={svc}",
                                     "jsonPath": f"{{$['{svc}'].error_rate}}"}}}

    # When one run reads each
    analysis.create(analysis_run("web-good", [web_metric(good)]))
    analysis.create(analysis_run("web-bad", [web_metric(bad)]))

    # Then the first is Successful with value 0, the second Failed with 0.2
    good_status = analysis.wait_run("web-good", "Successful", timeout=20)
    bad_status = analysis.wait_run("web-bad", "Failed", timeout=20)
    # (the JSON number 0.0 is shown as "0.0"; Argo's Go jsonpath would print "0")
    assert [float(m["value"]) for m in metric_result(good_status, "error-rate")["measurements"]] == [0.0]
    assert [m["value"] for m in metric_result(bad_status, "error-rate")["measurements"]] == ["0.2"]


def job_metric(*, fail: bool) -> dict[str, Any]:
    # An integer GPU quantity, as ML teams write it: valid JSON for the API server, which
    # the typed kubernetes client would reject (the provider uses the generic endpoint).
    check = {"name": "check", "image": "busybox", "command": ["true"],
             "resources": {"limits": {"nvidia.com/gpu": 1}}}
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [check]}
    spec: dict[str, Any] = {"backoffLimit": 0, "template": {"spec": pod}}
    if fail:
        # kwok completes a Job's pod at once, racing a 1s deadline; a pod no node can take
        # never runs, so the deadline always wins and the Job is Failed (DeadlineExceeded).
        spec["activeDeadlineSeconds"] = 1
        pod["nodeSelector"] = {"tidegate.dev/no-such-node": "true"}
    return {"name": "smoke-job", "provider": {"job": {"spec": spec}}}


def test_job_metric_succeeds_when_the_job_completes_and_fails_past_its_deadline(
    analysis: Analysis, controller: Controller,
) -> None:
    # Given a Job that kwok completes and one that exceeds activeDeadlineSeconds: 1
    # When a run measures each
    analysis.create(analysis_run("job-ok", [job_metric(fail=False)]))
    analysis.create(analysis_run("job-deadline", [job_metric(fail=True)]))

    # Then the first is Successful and the second Failed, each measured by one owned Job
    ok = analysis.wait_run("job-ok", "Successful", timeout=40)
    failed = analysis.wait_run("job-deadline", "Failed", timeout=40)
    ok_m = metric_result(ok, "smoke-job")["measurements"]
    bad_m = metric_result(failed, "smoke-job")["measurements"]
    assert [m["phase"] for m in ok_m] == ["Successful"]
    assert [m["phase"] for m in bad_m] == ["Failed"]
    assert re.search(r"DeadlineExceeded", bad_m[0]["message"]), bad_m[0]["message"]
    jobs = {j.metadata.name: j for j in analysis.batch.list_namespaced_job(analysis.ns).items}
    assert ok_m[0]["metadata"]["job-name"] in jobs
    owner = jobs[ok_m[0]["metadata"]["job-name"]].metadata.owner_references[0]
    assert (owner.kind, owner.name) == ("AnalysisRun", "job-ok")
