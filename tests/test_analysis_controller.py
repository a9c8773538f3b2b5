"""The AnalysisRun controller's reconcile (analysis/controller.py) with fake API and providers.

No cluster: FakeKube stands in for the API server (it applies our merge patches to
the stored run and bumps resourceVersion), FakeProvider for the metric providers.
The clock is injected; provider calls still go through a real thread pool.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from analysis.api.phases import AnalysisPhase
from analysis.controller import Controller, redact_status, status_patch
from analysis.providers.base import MeasurementContext
from analysis.run import Observation

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
NS = "ml-serving"
SECRET = "s3cr3t-t0ken"
PROMETHEUS: dict[str, Any] = {"prometheus": {"address": "http://prom:9090", "query": "up"}}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    return at(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- fakes --------------------------------------------------------------------------------

@dataclass
class FakeKube:
    """Keeps one AnalysisRun; applies merge patches to its status like the API server."""

    body: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    patches: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, str]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    secret_reads: list[str] = field(default_factory=list)

    def read_secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        self.secret_reads.append(name)
        return self.secrets.get(name)

    def patch_run(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        self.patches.append(copy.deepcopy(dict(patch)))
        status = dict(self.body.get("status") or {})
        for key, value in patch["status"].items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = copy.deepcopy(value)
        self.body["status"] = status
        meta = self.body["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return copy.deepcopy(self.body)

    def delete_run(self, namespace: str, name: str) -> None:
        self.deleted.append((namespace, name))

    def post_event(self, involved: Mapping[str, Any], *, event_type: str, reason: str,
                   message: str) -> None:
        self.events.append({"type": event_type, "reason": reason, "message": message})


Behaviour = Callable[[MeasurementContext], Observation]


@dataclass
class FakeProvider:
    """Answers ``run`` with ``behaviour``; records every call."""

    behaviour: Behaviour = lambda ctx: Observation(value=0.97)  # noqa: E731
    kind: str = "Fake"
    terminate_phase: AnalysisPhase = AnalysisPhase.INCONCLUSIVE
    calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    contexts: list[MeasurementContext] = field(default_factory=list)
    collected: list[tuple[str, int]] = field(default_factory=list)

    def run(self, ctx: MeasurementContext) -> Observation:
        self.calls.append(("run", str(ctx.metric["name"]), {}))
        self.contexts.append(ctx)
        return self.behaviour(ctx)

    def resume(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation:
        self.calls.append(("resume", str(ctx.metric["name"]), dict(metadata)))
        return Observation(phase=AnalysisPhase.SUCCESSFUL, message="job done",
                           metadata=dict(metadata))

    def terminate(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation:
        self.calls.append(("terminate", str(ctx.metric["name"]), dict(metadata)))
        return Observation(phase=self.terminate_phase, message="Metric Terminated",
                           metadata=dict(metadata))

    def garbage_collect(self, ctx: MeasurementContext, limit: int) -> None:
        self.collected.append((str(ctx.metric["name"]), limit))


@dataclass
class Harness:
    kube: FakeKube
    provider: FakeProvider
    controller: Controller
    clock: list[datetime]

    def reconcile(self, body: Mapping[str, Any] | None = None, *, now: float = 0) -> float | None:
        """Reconcile ``body`` (default: the run as the fake API server holds it) at T0+now."""
        self.clock[0] = at(now)
        current = copy.deepcopy(self.kube.body) if body is None else body
        return asyncio.run(self.controller.reconcile((NS, current["metadata"]["name"]), current))

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.kube.body.get("status") or {})


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(4)
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


def make_harness(pool: ThreadPoolExecutor, body: dict[str, Any], *,
                 provider: FakeProvider | None = None, deadline: float = 5.0) -> Harness:
    kube = FakeKube(body=copy.deepcopy(body))
    fake = provider or FakeProvider()
    clock = [T0]
    controller = Controller(kube=kube, providers=lambda metric: fake, measure_pool=pool,
                            api_pool=pool, clock=lambda: clock[0], measurement_deadline=deadline)
    return Harness(kube=kube, provider=fake, controller=controller, clock=clock)


def run_body(name: str, metrics: list[dict[str, Any]], *, status: dict[str, Any] | None = None,
             **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "resourceVersion": "10"},
        "spec": {"metrics": metrics, **spec},
    }
    if status is not None:
        body["status"] = status
    return body


def metric(name: str = "success-rate", **fields: Any) -> dict[str, Any]:
    return {"name": name, "provider": PROMETHEUS, "successCondition": "result >= 0.95", **fields}


def sample(series: str, /, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(series, labels)


# --- the status patch ---------------------------------------------------------------------

def test_first_reconcile_patches_the_exact_status(pool: ThreadPoolExecutor) -> None:
    h = make_harness(pool, run_body("first", [metric()]))

    assert h.reconcile() is None  # one measurement, nothing left to wait for

    summary = {"count": 1, "successful": 1, "failed": 0, "inconclusive": 0, "error": 0}
    assert h.kube.patches == [{
        "metadata": {"resourceVersion": "10"},  # the write is conditional on what we read
        "status": {
            "phase": "Successful",
            "startedAt": stamp(0),
            "completedAt": stamp(0),
            "runSummary": summary,
            "dryRunSummary": {"count": 0, "successful": 0, "failed": 0, "inconclusive": 0,
                              "error": 0},
            "metricResults": [{
                "name": "success-rate",
                "phase": "Successful",
                "measurements": [{"phase": "Successful", "startedAt": stamp(0),
                                  "finishedAt": stamp(0), "value": "0.97"}],
                "count": 1,
                "successful": 1,
                "consecutiveSuccess": 1,
            }],
        },
    }]
    assert h.kube.events == [{"type": "Normal", "reason": "AnalysisRunSuccessful",
                              "message": "AnalysisRun Successful"}]
    assert h.provider.calls == [("run", "success-rate", {})]


def test_completed_run_is_not_patched_again(pool: ThreadPoolExecutor) -> None:
    h = make_harness(pool, run_body("done", [metric()]))
    h.reconcile()

    h.reconcile(now=30)

    assert len(h.kube.patches) == 1
    assert len(h.kube.events) == 1
    assert len(h.provider.calls) == 1


def test_running_run_with_nothing_due_is_not_patched(pool: ThreadPoolExecutor) -> None:
    h = make_harness(pool, run_body("idle", [metric(interval="60s", count=3)]))
    assert h.reconcile() == 60.0
    assert h.status["phase"] == "Running"

    assert h.reconcile(now=20) == 40.0

    assert len(h.kube.patches) == 1
    assert len(h.provider.calls) == 1
    assert [e["reason"] for e in h.kube.events] == ["AnalysisRunRunning"]


def test_second_measurement_patches_only_what_changed(pool: ThreadPoolExecutor) -> None:
    h = make_harness(pool, run_body("second", [metric(interval="60s", count=3)]))
    h.reconcile()

    h.reconcile(now=60)

    # startedAt, phase and the summaries are unchanged, so they are not sent again.
    assert set(h.kube.patches[1]["status"]) == {"metricResults"}
    result = h.status["metricResults"][0]
    assert [m["startedAt"] for m in result["measurements"]] == [stamp(0), stamp(60)]
    assert result["count"] == 2


def test_stale_index_body_is_skipped(pool: ThreadPoolExecutor) -> None:
    original = run_body("stale", [metric(interval="60s", count=3)])
    h = make_harness(pool, original)
    h.reconcile()

    # The index still holds resourceVersion 10 while our write made it 11.
    assert h.reconcile(original, now=60) is None

    assert len(h.provider.calls) == 1
    assert len(h.kube.patches) == 1


def test_our_own_write_coming_back_costs_no_second_assessment(pool: ThreadPoolExecutor,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    h = make_harness(pool, run_body("echo", [metric(interval="60s", count=3)]))
    h.reconcile()
    resolves: list[str] = []
    original = h.controller._resolve
    monkeypatch.setattr(h.controller, "_resolve", lambda run: resolves.append("r") or original(run))

    # The watch delivers our write (same resourceVersion) 1 s later: just wait 59 s more.
    assert h.reconcile(now=1) == pytest.approx(59)
    assert resolves == []
    # At the due time the same body is reconciled in full and measured again.
    h.reconcile(now=60)
    assert resolves == ["r"]
    assert len(h.provider.calls) == 2


def test_status_patch_sends_null_only_to_delete() -> None:
    old = {"phase": "Running", "message": "was", "startedAt": "t"}
    new = {"phase": "Running", "message": None, "completedAt": None, "startedAt": "t"}

    assert status_patch(old, new) == {"message": None}


# --- when the next reconcile is due ---------------------------------------------------------

def in_flight_status(resume_in: float) -> dict[str, Any]:
    return {
        "phase": "Running",
        "startedAt": stamp(0),
        "metricResults": [{
            "name": "job",
            "phase": "Running",
            "measurements": [{"phase": "Running", "startedAt": stamp(0),
                              "resumeAt": stamp(resume_in), "metadata": {"job-name": "j-1"}}],
        }],
    }


JOB_METRIC: dict[str, Any] = {"name": "job", "provider": {"job": {"spec": {}}}}


@pytest.mark.parametrize(
    ("metrics", "status", "behaviour", "expected_wakeup", "expected_calls"),
    [
        pytest.param([metric(interval="60s", count=3)], None, None, 60.0, 1, id="interval"),
        pytest.param([metric(interval="60s", count=3)], None,
                     lambda ctx: Observation.error("no data"), 10.0, 1, id="error-retries-in-10s"),
        pytest.param([metric(initialDelay="20s")], None, None, 20.0, 0, id="initial-delay"),
        pytest.param([metric(interval="5m", count=2), metric("fast", interval="30s", count=2)],
                     None, None, 30.0, 2, id="earliest-metric-wins"),
        pytest.param([JOB_METRIC], in_flight_status(resume_in=15), None, 15.0, 0,
                     id="in-flight-resume-later"),
        pytest.param([metric()], None, None, None, 1, id="single-measurement-done"),
    ],
)
def test_next_wakeup(pool: ThreadPoolExecutor, metrics: list[dict[str, Any]],
                     status: dict[str, Any] | None, behaviour: Behaviour | None,
                     expected_wakeup: float | None, expected_calls: int) -> None:
    provider = FakeProvider(behaviour=behaviour) if behaviour else FakeProvider()
    h = make_harness(pool, run_body("wake", metrics, status=status), provider=provider)

    assert h.reconcile() == expected_wakeup
    assert len(provider.calls) == expected_calls


def test_in_flight_measurement_is_resumed_when_due(pool: ThreadPoolExecutor) -> None:
    h = make_harness(pool, run_body("resume", [JOB_METRIC], status=in_flight_status(15)))

    assert h.reconcile(now=15) is None

    assert h.provider.calls == [("resume", "job", {"job-name": "j-1"})]
    measurement = h.status["metricResults"][0]["measurements"][0]
    assert measurement["startedAt"] == stamp(0)  # the in-flight measurement keeps its start
    assert measurement["finishedAt"] == stamp(15)
    assert h.status["phase"] == "Successful"


# --- secrets ----------------------------------------------------------------------------------

SECRET_ARGS = [
    {"name": "token", "valueFrom": {"secretKeyRef": {"name": "prom-auth", "key": "token"}}},
    {"name": "again", "valueFrom": {"secretKeyRef": {"name": "prom-auth", "key": "token"}}},
]


def echo_secret(ctx: MeasurementContext) -> Observation:
    query = str(ctx.metric["provider"]["prometheus"]["query"])
    return Observation(phase=AnalysisPhase.FAILED, message=f"bad answer for {query}",
                       display_value=f"[{SECRET}]", metadata={"query": query})


def test_secrets_are_redacted_in_status_and_events(pool: ThreadPoolExecutor) -> None:
    secret_metric = metric(provider={"prometheus": {
        "address": "http://prom:9090", "query": "up{token='{{args.token}}'}"}})
    h = make_harness(pool, run_body("secret", [secret_metric], args=SECRET_ARGS),
                     provider=FakeProvider(behaviour=echo_secret))
    h.kube.secrets["prom-auth"] = {"token": SECRET}

    h.reconcile()

    # The provider saw the real value; nothing we wrote or posted contains it.
    assert h.provider.contexts[0].metric["provider"]["prometheus"]["query"] == f"up{{token='{SECRET}'}}"
    written = json.dumps([h.kube.patches, h.kube.events])
    assert SECRET not in written
    measurement = h.status["metricResults"][0]["measurements"][0]
    assert measurement["message"] == "bad answer for up{token='*****'}"
    assert measurement["value"] == "[*****]"
    assert measurement["metadata"] == {"query": "up{token='*****'}"}
    assert h.status["phase"] == "Failed"
    assert "*****" in h.status["message"]
    assert h.kube.events[0]["reason"] == "AnalysisRunFailed"
    assert h.kube.events[0]["type"] == "Warning"
    assert "*****" in h.kube.events[0]["message"]
    assert h.kube.secret_reads == ["prom-auth"]  # read once per reconcile, however many args


def test_missing_secret_ends_the_run_in_error(pool: ThreadPoolExecutor) -> None:
    h = make_harness(pool, run_body("nosecret", [metric()], args=SECRET_ARGS[:1]))

    assert h.reconcile() is None

    assert h.status["phase"] == "Error"
    assert h.status["message"].startswith("Unable to resolve metric arguments: ")
    assert 'secret "prom-auth" has no key "token"' in h.status["message"]
    assert h.provider.calls == []
    assert h.kube.events[0]["reason"] == "AnalysisRunError"


def test_redact_status_leaves_names_and_times_alone() -> None:
    status = {"message": "x=ab", "startedAt": "ab",
              "metricResults": [{"name": "ab", "message": "ab", "metadata": {"k": "ab"},
                                 "measurements": [{"value": "ab", "startedAt": "ab"}]}]}

    assert redact_status(status, ["ab"]) == {
        "message": "x=*****", "startedAt": "ab",
        "metricResults": [{"name": "ab", "message": "*****", "metadata": {"k": "*****"},
                           "measurements": [{"value": "*****", "startedAt": "ab"}]}],
    }


# --- terminate ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("terminate_phase", "run_phase", "run_message"),
    [
        # Argo's job provider ends a terminated Job measurement Successful.
        pytest.param(AnalysisPhase.SUCCESSFUL, "Successful", "Run Terminated",
                     id="terminated-measurement-successful"),
        # Tidegate's providers (and the reference, section 3.5) say Inconclusive; then the
        # metric's verdict outranks "Run Terminated".
        pytest.param(AnalysisPhase.INCONCLUSIVE, "Inconclusive",
                     'Metric "job" assessed Inconclusive due to inconclusive (1) > '
                     'inconclusiveLimit (0): "Error Message: Metric Terminated"',
                     id="terminated-measurement-inconclusive"),
    ],
)
def test_terminate_ends_in_flight_measurements_through_the_provider(
        pool: ThreadPoolExecutor, terminate_phase: AnalysisPhase, run_phase: str,
        run_message: str) -> None:
    h = make_harness(pool, run_body("term", [JOB_METRIC], status=in_flight_status(300),
                                    terminate=True),
                     provider=FakeProvider(terminate_phase=terminate_phase))

    assert h.reconcile(now=5) is None

    assert h.provider.calls == [("terminate", "job", {"job-name": "j-1"})]
    measurement = h.status["metricResults"][0]["measurements"][0]
    assert measurement["message"] == "Metric Terminated"
    assert measurement["finishedAt"] == stamp(5)
    assert (h.status["phase"], h.status["message"]) == (run_phase, run_message)
    assert h.status["completedAt"] == stamp(5)
    assert h.kube.events[-1]["reason"] == f"AnalysisRun{run_phase}"


def test_terminate_without_in_flight_measurement_says_run_terminated(
        pool: ThreadPoolExecutor) -> None:
    body = run_body("term2", [metric(interval="60s")])
    h = make_harness(pool, body)
    h.reconcile()
    h.kube.body["spec"]["terminate"] = True

    assert h.reconcile(now=10) is None

    assert h.status["phase"] == "Successful"
    assert h.status["message"] == "Run Terminated"
    assert len(h.provider.calls) == 1  # no new measurement once terminating
    assert [e["reason"] for e in h.kube.events] == ["AnalysisRunRunning", "AnalysisRunSuccessful"]
    assert h.kube.events[1]["message"] == "AnalysisRun Successful: Run Terminated"


# --- providers that misbehave -----------------------------------------------------------------

def raise_with_secret(ctx: MeasurementContext) -> Observation:
    raise RuntimeError(f"boom while using {ctx.secrets[0]}")


def test_provider_exception_becomes_an_error_measurement(pool: ThreadPoolExecutor) -> None:
    h = make_harness(pool, run_body("boom", [metric(interval="60s", count=3)],
                                    args=SECRET_ARGS[:1]),
                     provider=FakeProvider(behaviour=raise_with_secret))
    h.kube.secrets["prom-auth"] = {"token": SECRET}

    assert h.reconcile() == 10.0  # an Error measurement is retried after 10s

    result = h.status["metricResults"][0]
    assert result["measurements"][0]["phase"] == "Error"
    assert result["measurements"][0]["message"] == (
        "Fake provider failed: RuntimeError: boom while using *****")
    assert result["consecutiveError"] == 1
    assert h.status["phase"] == "Running"


def test_hung_provider_becomes_an_error_measurement(pool: ThreadPoolExecutor) -> None:
    release = threading.Event()

    def hang(ctx: MeasurementContext) -> Observation:
        release.wait(5)
        return Observation(value=1)

    h = make_harness(pool, run_body("hang", [metric(interval="60s", count=3)]),
                     provider=FakeProvider(behaviour=hang), deadline=0.05)
    try:
        assert h.reconcile() == 10.0
    finally:
        release.set()

    measurement = h.status["metricResults"][0]["measurements"][0]
    assert measurement["phase"] == "Error"
    assert measurement["message"] == "Fake provider did not answer within 0.05s"


def test_garbage_collect_gets_the_retention_limit(pool: ThreadPoolExecutor) -> None:
    h = make_harness(pool, run_body("gc", [metric(), metric("other")],
                                    measurementRetention=[{"metricName": "other", "limit": 3}]))

    h.reconcile()

    assert sorted(h.provider.collected) == [("other", 3), ("success-rate", 10)]


def test_resolved_prometheus_query_is_kept_on_the_metric_result(pool: ThreadPoolExecutor) -> None:
    answer = Observation(value=0.99, metadata={"ResolvedPrometheusQuery": "up{job='x'}"})
    h = make_harness(pool, run_body("query", [metric()]),
                     provider=FakeProvider(behaviour=lambda ctx: answer))

    h.reconcile()

    assert h.status["metricResults"][0]["metadata"] == {"ResolvedPrometheusQuery": "up{job='x'}"}


def test_unreadable_spec_ends_the_run_in_error(pool: ThreadPoolExecutor) -> None:
    h = make_harness(pool, run_body("broken", [metric(count=True)]))

    assert h.reconcile() is None

    assert h.status["phase"] == "Error"
    assert h.status["message"].startswith(
        "AnalysisRun spec cannot be read: AnalysisRun ml-serving/broken: spec.metrics[0].count")
    assert h.provider.calls == []
    h.reconcile(now=5)
    assert len(h.kube.patches) == 1  # already Error: not patched again


# --- TTL --------------------------------------------------------------------------------------

def completed(phase: str) -> dict[str, Any]:
    return {"phase": phase, "startedAt": stamp(0), "completedAt": stamp(0)}


@pytest.mark.parametrize(
    ("ttl", "phase", "now", "expected", "deleted"),
    [
        pytest.param(None, "Successful", 999, None, False, id="no-ttl-kept"),
        pytest.param({"secondsAfterCompletion": 60}, "Failed", 20, 40.0, False, id="waits"),
        pytest.param({"secondsAfterCompletion": 60}, "Failed", 60, None, True, id="expired"),
        pytest.param({"secondsAfterCompletion": 600, "secondsAfterSuccess": 30}, "Successful",
                     30, None, True, id="success-override"),
        pytest.param({"secondsAfterCompletion": 600, "secondsAfterFailure": 30}, "Successful",
                     30, 570.0, False, id="failure-override-not-for-success"),
    ],
)
def test_ttl_strategy(pool: ThreadPoolExecutor, ttl: dict[str, int] | None, phase: str,
                      now: float, expected: float | None, deleted: bool) -> None:
    spec = {"ttlStrategy": ttl} if ttl else {}
    h = make_harness(pool, run_body("ttl", [metric()], status=completed(phase), **spec))

    assert h.reconcile(now=now) == expected

    assert h.kube.deleted == ([(NS, "ttl")] if deleted else [])
    assert h.kube.patches == []


# --- Prometheus metrics -------------------------------------------------------------------------

def test_metrics_follow_the_phase_and_vanish_with_the_run(pool: ThreadPoolExecutor) -> None:
    h = make_harness(pool, run_body("metrics", [metric(interval="60s", count=2)]))
    h.reconcile()
    base = {"namespace": NS, "name": "metrics"}
    assert sample("analysis_run_info", **base, phase="Running") == 1
    labels = {**base, "metric": "success-rate", "type": "Prometheus", "dry_run": "false"}
    assert sample("analysis_run_metric_phase", **labels, phase="Running") == 1
    assert sample("analysis_run_metric_type", **base, metric="success-rate",
                  type="Prometheus") == 1

    h.reconcile(now=60)

    assert sample("analysis_run_info", **base, phase="Running") is None  # stale set removed
    assert sample("analysis_run_info", **base, phase="Successful") == 1
    assert sample("analysis_run_metric_phase", **labels, phase="Running") is None
    assert sample("analysis_run_metric_phase", **labels, phase="Successful") == 1

    assert asyncio.run(h.controller.reconcile((NS, "metrics"), None)) is None

    assert sample("analysis_run_info", **base, phase="Successful") is None
    assert sample("analysis_run_metric_type", **base, metric="success-rate",
                  type="Prometheus") is None


# --- kopf wiring (analysis/handlers.py) ---------------------------------------------------------

def test_handlers_pick_the_newest_indexed_body_and_retry_conflicts_fast() -> None:
    from kubernetes.client.exceptions import ApiException

    from analysis import handlers

    older = run_body("wired", [metric()])
    newer = copy.deepcopy(older)
    newer["metadata"]["resourceVersion"] = "12"
    handlers.SHELL.indices = {handlers.INDEX_ID: {(NS, "wired"): [newer, older]}}
    try:
        assert handlers._current((NS, "wired")) is newer
        assert handlers._current((NS, "gone")) is None
    finally:
        handlers.SHELL.indices = {}

    assert handlers._on_error((NS, "wired"), ApiException(status=409)) == 0.2
    before = sample("analysis_run_reconcile_error_total", namespace=NS, name="wired") or 0.0
    assert handlers._on_error((NS, "wired"), RuntimeError("boom")) == 5.0
    assert sample("analysis_run_reconcile_error_total", namespace=NS, name="wired") == before + 1


@pytest.mark.parametrize(
    ("instance_id", "labels", "expected"),
    [
        pytest.param("", {}, True, id="unsharded-takes-unlabelled"),
        pytest.param("", {"argo-rollouts.argoproj.io/controller-instance-id": "a"}, False,
                     id="unsharded-skips-labelled"),
        pytest.param("a", {"argo-rollouts.argoproj.io/controller-instance-id": "a"}, True,
                     id="shard-takes-its-own"),
        pytest.param("a", {}, False, id="shard-skips-unlabelled"),
    ],
)
def test_instance_id_sharding(monkeypatch: pytest.MonkeyPatch, instance_id: str,
                              labels: dict[str, str], expected: bool) -> None:
    from analysis import handlers
    from analysis.config import CONFIG

    monkeypatch.setattr(CONFIG, "instance_id", instance_id)

    assert handlers._in_shard(labels) is expected
