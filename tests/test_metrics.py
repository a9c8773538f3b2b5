"""Metrics: Argo's names and labels updated from fixture reconciles, series removed with their object.

rollouts/metrics.py, analysis/metrics.py, gitops/metrics.py and the request
counter of common/kubewrite.py, read back from prometheus_client's registry.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY, Counter

from analysis import metrics as analysis_metrics
from common.kubewrite import install_request_counter, request_labels
from gitops import metrics as gitops_metrics
from rollouts import metrics as rollout_metrics


def _value(metric: str, /, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def _series(metric: str, /, **labels: str) -> list[dict[str, str]]:
    out = []
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                out.append(dict(sample.labels))
    return out


# --- rollouts --------------------------------------------------------------------------------

ROLLOUT = {
    "spec": {"replicas": 5, "strategy": {"canary": {"steps": [
        {"setWeight": 20}, {"pause": {"duration": "30s"}}, {"pause": {}}, {"analysis": {"templates": []}}]}}},
    "status": {"replicas": 6, "availableReplicas": 4, "updatedReplicas": 2},
}


def test_a_reconcile_publishes_info_replicas_and_phase() -> None:
    key = ("metrics-ns", "web")
    rollout_metrics.observe_reconcile(key=key, seconds=0.02, phase="Progressing", traffic_router="istio",
                                      body=ROLLOUT)
    labels = {"namespace": "metrics-ns", "name": "web"}
    assert _value("rollout_info", **labels, strategy="canary", traffic_router="istio", phase="Progressing") == 1
    assert _value("rollout_info_replicas_available", **labels) == 4
    assert _value("rollout_info_replicas_unavailable", **labels) == 2
    assert _value("rollout_info_replicas_desired", **labels) == 5
    assert _value("rollout_info_replicas_updated", **labels) == 2
    assert _value("rollout_phase", **labels, strategy="canary", phase="Progressing") == 1
    assert _value("rollout_phase", **labels, strategy="canary", phase="Healthy") == 0
    assert _value("rollout_reconcile_count", **labels) == 1

    rollout_metrics.observe_reconcile(key=key, seconds=0.02, phase="Healthy", traffic_router="istio",
                                      body=ROLLOUT)
    assert _series("rollout_info", **labels) == [{**labels, "strategy": "canary", "traffic_router": "istio",
                                                  "phase": "Healthy"}]
    assert _value("rollout_phase", **labels, strategy="canary", phase="Progressing") == 0

    rollout_metrics.forget_rollout(key)
    for name in ("rollout_info", "rollout_phase", "rollout_info_replicas_available",
                 "rollout_info_replicas_desired", "rollout_reconcile_count"):
        assert _series(name, **labels) == [], name


def _at(seconds: float) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


T0 = 1_800_000_000.0


def _body(step: int, pause_started: float | None = None, pod_hash: str = "abc") -> dict[str, Any]:
    status: dict[str, Any] = {"currentStepIndex": step, "currentPodHash": pod_hash}
    if pause_started is not None:
        status["pauseConditions"] = [{"reason": "CanaryPauseStep", "startTime": _at(pause_started)}]
    return {**ROLLOUT, "status": status}


@pytest.mark.parametrize(
    ("body", "after", "promoted", "done", "written", "expected"),
    [
        (_body(1, pause_started=T0), 2, T0 + 29.0, None, T0 + 30.4, ("pause", 0.4)),  # deadline, not the event
        (_body(2), 3, T0 + 5.0, T0 + 1.0, T0 + 5.25, ("pause", 0.25)),  # promote seen at T0+5
        (_body(3), 4, T0 + 1.0, T0 + 8.0, T0 + 8.5, ("analysis", 0.5)),  # finished run seen at T0+8
        (_body(0), 1, T0, T0, T0 + 1.0, None),  # setWeight: the controller's own step
        (_body(2), 2, T0, T0, T0 + 1.0, None),  # did not advance
        (_body(2), 3, None, T0, T0 + 1.0, None),  # no promote seen
        (_body(3), 4, T0, None, T0 + 1.0, None),  # no finished run seen
    ],
    ids=["timed-pause", "promoted-pause", "analysis", "set-weight", "no-advance", "no-promote", "no-run-end"],
)
def test_step_reaction(body: dict[str, Any], after: int, promoted: float | None, done: float | None,
                       written: float, expected: tuple[str, float] | None) -> None:
    status = {"currentStepIndex": after, "currentPodHash": "abc"}
    found = rollout_metrics.step_reaction(body=body, status=status, promoted_at=promoted,
                                          analysis_done_at=done, written_at=written)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found[0] == expected[0]
        assert found[1] == pytest.approx(expected[1])


def test_a_new_revision_restarting_the_steps_is_no_reaction() -> None:
    status = {"currentStepIndex": 3, "currentPodHash": "new"}
    assert rollout_metrics.step_reaction(body=_body(2), status=status, promoted_at=T0, analysis_done_at=T0,
                                         written_at=T0 + 1) is None


def test_observe_step_fills_the_histogram() -> None:
    before = _value("tidegate_step_reaction_seconds_count", step_type="analysis") or 0.0
    rollout_metrics.observe_step(body=_body(3), status={"currentStepIndex": 4, "currentPodHash": "abc"},
                                 promoted_at=None, analysis_done_at=T0, written_at=T0 + 0.1)
    assert _value("tidegate_step_reaction_seconds_count", step_type="analysis") == before + 1


# --- analysis --------------------------------------------------------------------------------

def test_an_analysis_run_publishes_phase_metric_phase_and_type_then_goes() -> None:
    labels = {"namespace": "metrics-ns", "name": "run-1"}
    infos = [analysis_metrics.MetricInfo(metric="success-rate", type="Web", dry_run=False, phase="Running")]
    analysis_metrics.observe_run(**labels, phase="Running", metrics=infos)
    analysis_metrics.observe_reconcile(**labels, seconds=0.01)
    assert _value("analysis_run_info", **labels, phase="Running") == 1
    assert _value("analysis_run_phase", **labels, phase="Running") == 1
    assert _value("analysis_run_phase", **labels, phase="Successful") == 0
    assert _value("analysis_run_metric_type", **labels, metric="success-rate", type="Web") == 1
    assert _value("analysis_run_metric_phase", **labels, metric="success-rate", type="Web", dry_run="false",
                  phase="Running") == 1
    analysis_metrics.observe_run(**labels, phase="Successful", metrics=[])
    assert _value("analysis_run_phase", **labels, phase="Running") == 0
    assert _series("analysis_run_metric_type", **labels) == []
    analysis_metrics.forget_run(**labels)
    for name in ("analysis_run_info", "analysis_run_phase", "analysis_run_reconcile_count"):
        assert _series(name, **labels) == [], name


# --- gitops ----------------------------------------------------------------------------------

APP: dict[str, Any] = {
    "spec": {"project": "default", "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"},
             "source": {"repoURL": "https://deploy:hunter2-token@git.example.com/org/config.git"}},
    "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"},
               "operationState": {"phase": "Succeeded", "finishedAt": "2026-01-01T00:00:00Z"}},
}


def test_app_info_carries_no_credential_and_goes_with_the_application() -> None:
    key = ("metrics-apps", "guestbook")
    gitops_metrics.observe_app(key, APP)
    [series] = _series("argocd_app_info", namespace="metrics-apps", name="guestbook")
    assert series["repo"] == "https://git.example.com/org/config.git"
    assert "hunter2" not in str(series)
    later = {**APP, "status": {**APP["status"], "operationState": {"phase": "Succeeded",
                                                                   "finishedAt": "2026-01-01T00:01:00Z"}}}
    gitops_metrics.observe_app(key, later)
    assert _value("argocd_app_sync_total", namespace="metrics-apps", name="guestbook", project="default",
                  phase="Succeeded", dest_server="https://kubernetes.default.svc") == 1
    gitops_metrics.forget_app(key)
    assert _series("argocd_app_info", namespace="metrics-apps", name="guestbook") == []


@pytest.mark.parametrize(
    ("url", "label"),
    [("https://u:p@h/r.git", "https://h/r.git"), ("https://h/r.git", "https://h/r.git"),
     ("file:///tmp/r.git", "file:///tmp/r.git"), ("git@github.com:o/r.git", "git@github.com:o/r.git")],
    ids=["user-password", "plain", "file", "scp-like"],
)
def test_repo_label(url: str, label: str) -> None:
    assert gitops_metrics.repo_label(url) == label


# --- requests --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("method", "url", "labels"),
    [("GET", "https://k/api/v1/namespaces/a/pods/p", ("pods", "get")),
     ("GET", "https://k/apis/argoproj.io/v1alpha1/namespaces/a/rollouts", ("rollouts", "list")),
     ("GET", "https://k/apis/argoproj.io/v1alpha1/rollouts?watch=true&resourceVersion=1", ("rollouts", "watch")),
     ("PATCH", "https://k/apis/argoproj.io/v1alpha1/namespaces/a/rollouts/r/status", ("rollouts", "patch")),
     ("POST", "https://k/api/v1/namespaces/a/events", ("events", "create")),
     ("PUT", "https://k/apis/apps/v1/namespaces/a/replicasets/x", ("replicasets", "update")),
     ("DELETE", "https://k/apis/argoproj.io/v1alpha1/namespaces/a/analysisruns/x", ("analysisruns", "delete")),
     ("GET", "https://k/api/v1/namespaces/a", ("namespaces", "get")),
     ("GET", "https://k/apis", ("discovery", "get")),
     ("GET", "https://k/version", ("other", "get"))],
    ids=["get", "list", "watch", "patch-status", "create", "update", "delete", "namespace", "discovery", "other"],
)
def test_request_labels(method: str, url: str, labels: tuple[str, str]) -> None:
    assert request_labels(method, url) == labels


class _Response:
    status = 200


def test_every_request_is_counted_once_with_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Counter("test_requests_total", "test", ["kind", "verb", "status_code"], registry=None)

    def answer(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.endswith("/missing"):
            raise ApiException(status=404)
        if url.endswith("/down"):
            raise ConnectionError("refused")
        return _Response()

    monkeypatch.setattr(rest.RESTClientObject, "request", answer)
    install_request_counter(counter)
    install_request_counter(counter)  # idempotent: no double count
    client = object.__new__(rest.RESTClientObject)
    client.request("GET", "https://k/api/v1/namespaces/a/pods/p")
    with pytest.raises(ApiException):
        client.request("GET", "https://k/api/v1/namespaces/a/pods/missing")
    with pytest.raises(ConnectionError):
        client.request("DELETE", "https://k/api/v1/namespaces/a/pods/down")
    assert counter.labels(kind="pods", verb="get", status_code="200")._value.get() == 1
    assert counter.labels(kind="pods", verb="get", status_code="404")._value.get() == 1
    assert counter.labels(kind="pods", verb="delete", status_code="error")._value.get() == 1
