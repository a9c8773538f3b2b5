"""End-to-end, issue 7 defect 1: an edited AnalysisRun status never makes the controller touch a Job elsewhere.

AnalysisRun has no status subresource, so a user allowed to update a run can
rewrite its measurements' metadata with ``kubectl patch --type merge``. Given a
victim Job in another namespace (created here, labelled for cleanup, deleted
after) and a real ``tidegate controller`` whose kubeconfig could delete it, When
a run's in-flight job measurement is edited to point at the victim and the run
then resumes it, or is terminated (``spec.terminate: true``), Then the victim
Job still exists with its resourceVersion unchanged and the run's measurement is
an Error that names the run, the metric and the refused Job.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from e2e.analysis_kit import Analysis, analysis_run, metric_result
from e2e.conftest import TEST_LABEL, wait_until
from e2e.kit import Controller

pytestmark = pytest.mark.e2e

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
METRIC = "smoke-job"
VICTIM_JOB = "billing-report"
REFUSED = "refusing to act on Job"
CONFLICT = "the object has been modified"
ENDED = ("Successful", "Failed", "Error", "Inconclusive")


@pytest.fixture
def analysis(api_client: client.ApiClient, namespace: str) -> Analysis:
    return Analysis(api_client, namespace)


@pytest.fixture
def victim(core: client.CoreV1Api, api_client: client.ApiClient) -> Iterator[tuple[str, str]]:
    """(namespace, name) of a suspended Job in its own namespace, settled (no more writes to it)."""
    namespace = f"e2e-victim-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(name=namespace, labels={TEST_LABEL: "true"})))
    batch = client.BatchV1Api(api_client)
    try:
        wait_until(lambda: _has_default_account(core, namespace), timeout=30,
                   message=f"ServiceAccount {namespace}/default")
        pod = {"restartPolicy": "Never",
               "containers": [{"name": "report", "image": "busybox", "command": ["true"]}]}
        batch.create_namespaced_job(namespace, {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": VICTIM_JOB, "labels": {TEST_LABEL: "true"}},
            # Suspended: the Job controller marks it once and then leaves it alone.
            "spec": {"suspend": True, "template": {"spec": pod}}})
        wait_until(lambda: _suspended(batch, namespace), timeout=30,
                   message=f"Job {namespace}/{VICTIM_JOB} Suspended")
        yield namespace, VICTIM_JOB
    finally:
        core.delete_namespace(namespace)


def _has_default_account(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except client.ApiException:
        return False
    return True


def _suspended(batch: client.BatchV1Api, namespace: str) -> bool:
    job = batch.read_namespaced_job(VICTIM_JOB, namespace)
    return any(c.type == "Suspended" and c.status == "True" for c in job.status.conditions or ())


def _victim_version(api_client: client.ApiClient, victim: tuple[str, str]) -> str:
    """The victim's resourceVersion; fails if it is gone or being deleted."""
    try:
        job = client.BatchV1Api(api_client).read_namespaced_job(victim[1], victim[0])
    except client.ApiException as exc:
        raise AssertionError(f"Job {victim[0]}/{victim[1]} was deleted ({exc.status})") from exc
    assert job.metadata.deletion_timestamp is None, f"Job {victim[0]}/{victim[1]} is being deleted"
    return str(job.metadata.resource_version)


def never_finishing_job_metric() -> dict[str, Any]:
    """A Job no node can take: its measurement stays in flight until we edit it."""
    pod = {"restartPolicy": "Never", "nodeSelector": {"tidegate.dev/no-such-node": "true"},
           "containers": [{"name": "check", "image": "busybox", "command": ["true"]}]}
    return {"name": METRIC, "provider": {"job": {"spec": {"backoffLimit": 0,
                                                          "template": {"spec": pod}}}}}


def _in_flight(analysis: Analysis, name: str) -> dict[str, Any] | None:
    status = (analysis.maybe_run(name) or {}).get("status") or {}
    results = [r for r in status.get("metricResults") or () if r.get("name") == METRIC]
    measurements = results[0].get("measurements") or [] if results else []
    last = measurements[-1] if measurements else {}
    return last if last.get("phase") == "Running" and (last.get("metadata") or {}).get(
        "job-name") else None


def point_at(kubectl: Kubectl, analysis: Analysis, name: str, victim: tuple[str, str], *,
             terminate: bool = False) -> str:
    """Rewrite the in-flight measurement's metadata to name the victim; return the run's own Job.

    A merge patch replaces lists whole, so the current metricResults go back with one
    field changed, conditional on the resourceVersion read (retried on a conflict).
    """
    deadline = time.monotonic() + 30
    while True:
        run = analysis.run(name)
        status = copy.deepcopy(run["status"])
        result = next(r for r in status["metricResults"] if r["name"] == METRIC)
        measurement = result["measurements"][-1]
        assert measurement["phase"] == "Running", measurement
        own = str(measurement["metadata"]["job-name"])
        measurement["metadata"] = {"job-name": victim[1], "job-namespace": victim[0]}
        patch: dict[str, Any] = {
            "metadata": {"resourceVersion": run["metadata"]["resourceVersion"]},
            "status": {"metricResults": status["metricResults"]}}
        if terminate:
            patch["spec"] = {"terminate": True}
        done = kubectl("-n", analysis.ns, "patch", "analysisrun", name, "--type", "merge",
                       "-p", json.dumps(patch))
        if done.returncode == 0:
            return own
        assert CONFLICT in done.stderr and time.monotonic() < deadline, done.stderr
        time.sleep(0.2)


def _refusal(analysis: Analysis, name: str) -> dict[str, Any] | None:
    status = (analysis.maybe_run(name) or {}).get("status") or {}
    results = [r for r in status.get("metricResults") or () if r.get("name") == METRIC]
    for measurement in results[0].get("measurements") or () if results else ():
        if measurement.get("phase") == "Error" and REFUSED in str(measurement.get("message")):
            return measurement
    return None


def _ended(analysis: Analysis, name: str) -> dict[str, Any] | None:
    status = (analysis.maybe_run(name) or {}).get("status") or {}
    return status if status.get("phase") in ENDED else None


def _assert_refusal(measurement: dict[str, Any], analysis: Analysis, name: str,
                    victim: tuple[str, str]) -> None:
    message = str(measurement["message"])
    assert f"AnalysisRun {analysis.ns}/{name}" in message, message
    assert f'metric "{METRIC}"' in message, message
    assert f"Job {victim[0]}/{victim[1]}" in message, message
    assert "run's own namespace" in message, message


def test_a_resumed_measurement_pointed_at_another_namespace_never_touches_that_job(
    analysis: Analysis, controller: Controller, kubectl: Kubectl, api_client: client.ApiClient,
    victim: tuple[str, str],
) -> None:
    # Given a run whose job measurement is in flight, and a settled victim Job elsewhere
    analysis.create(analysis_run("resume-tampered", [never_finishing_job_metric()]))
    wait_until(lambda: _in_flight(analysis, "resume-tampered"), timeout=40,
               message="an in-flight job measurement")
    before = _victim_version(api_client, victim)

    # When its status is edited to name the victim, and the controller resumes it (every 10 s)
    point_at(kubectl, analysis, "resume-tampered", victim)
    refused = wait_until(lambda: _refusal(analysis, "resume-tampered"), timeout=40,
                         message="an Error measurement refusing the victim Job")

    # Then the measurement is a clear refusal and the victim Job is exactly as it was
    _assert_refusal(refused, analysis, "resume-tampered", victim)
    assert _victim_version(api_client, victim) == before


def test_a_terminated_run_pointed_at_another_namespace_never_deletes_that_job(
    analysis: Analysis, controller: Controller, kubectl: Kubectl, api_client: client.ApiClient,
    victim: tuple[str, str],
) -> None:
    # Given a run whose job measurement is in flight, and a settled victim Job elsewhere
    analysis.create(analysis_run("terminate-tampered", [never_finishing_job_metric()]))
    wait_until(lambda: _in_flight(analysis, "terminate-tampered"), timeout=40,
               message="an in-flight job measurement")
    before = _victim_version(api_client, victim)

    # When one patch names the victim in its status and sets spec.terminate: true
    own = point_at(kubectl, analysis, "terminate-tampered", victim, terminate=True)
    status = wait_until(lambda: _ended(analysis, "terminate-tampered"), timeout=30,
                        message="the terminated run to end")

    # Then the victim Job is untouched, and the run's measurement is a refusal naming run,
    # metric and Job
    time.sleep(2)  # a delete would have been sent with the terminate; give it time to land
    assert _victim_version(api_client, victim) == before
    refused = _refusal(analysis, "terminate-tampered")
    assert refused is not None, metric_result(status, METRIC)
    _assert_refusal(refused, analysis, "terminate-tampered", victim)
    # (one Error measurement is under consecutiveErrorLimit, so the terminated run itself
    # ends as a terminated run does: "Run Terminated"; the refusal is in the measurement)
    assert status["message"] == "Run Terminated", status
    # (the run's own Job is left to garbage collection through its ownerReference)
    assert own != VICTIM_JOB
