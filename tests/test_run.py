"""Tables for the AnalysisRun state machine (analysis/run.py), clock injected."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis.api.models import (
    AnalysisRun,
    AnalysisRunStatus,
    Metric,
    MetricResult,
)
from analysis.api.phases import AnalysisPhase
from analysis.run import (
    DueMeasurement,
    MeasurementKind,
    Observation,
    assess_metric,
    assess_run,
    due_measurements,
    is_terminating,
    mark_error,
    next_wakeup,
    record,
    retention_limit,
)

S, F, INC, E, R = (
    AnalysisPhase.SUCCESSFUL,
    AnalysisPhase.FAILED,
    AnalysisPhase.INCONCLUSIVE,
    AnalysisPhase.ERROR,
    AnalysisPhase.RUNNING,
)
T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
PROVIDER: dict[str, Any] = {"job": {"spec": {}}}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def metric(name: str = "m", **fields: Any) -> Metric:
    return Metric.model_validate({"name": name, "provider": PROVIDER, **fields})


def history(m: Metric, phases: list[AnalysisPhase], step: float = 60) -> AnalysisRunStatus:
    """Record one measurement per phase, ``step`` seconds apart, starting at T0."""
    status = AnalysisRunStatus()
    for index, phase in enumerate(phases):
        observation = (
            Observation(resume_at=at(index * step + 30)) if phase == R else Observation(phase=phase)
        )
        status = record(status, m, observation, at(index * step))
    return status


def run_of(
    metrics: list[Metric],
    status: AnalysisRunStatus | None = None,
    *,
    terminate: bool = False,
    dry_run: Sequence[str] = (),
    started: datetime | None = T0,
) -> AnalysisRun:
    status = status or AnalysisRunStatus()
    if started is not None and status.started_at is None:
        status = status.model_copy(update={"started_at": started})
    return AnalysisRun.model_validate(
        {
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {
                "metrics": [m.to_json() for m in metrics],
                "terminate": terminate,
                "dryRun": [{"metricName": name} for name in dry_run],
            },
            "status": status.to_json(),
        }
    )


def merge(*statuses: AnalysisRunStatus) -> AnalysisRunStatus:
    return AnalysisRunStatus(metric_results=[r for s in statuses for r in s.metric_results])


# --- record: counters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        pytest.param([S], (1, 1, 0, 0, 0, 0, 1), id="success"),
        pytest.param([F], (1, 0, 1, 0, 0, 0, 0), id="failure"),
        pytest.param([INC], (1, 0, 0, 1, 0, 0, 0), id="inconclusive"),
        pytest.param([E], (0, 0, 0, 0, 1, 1, 0), id="error-does-not-count"),
        pytest.param([S, S, E], (2, 2, 0, 0, 1, 1, 0), id="error-resets-success-streak"),
        pytest.param([E, E, S], (1, 1, 0, 0, 2, 0, 1), id="success-resets-error-streak"),
        pytest.param([E, F], (1, 0, 1, 0, 1, 0, 0), id="failure-resets-error-streak"),
        pytest.param([S, S, INC], (3, 2, 0, 1, 0, 0, 0), id="inconclusive-resets-success-streak"),
        pytest.param([S, R], (1, 1, 0, 0, 0, 0, 1), id="in-flight-counts-nothing"),
    ],
)
def test_record_counters(phases: list[AnalysisPhase], expected: tuple[int, ...]) -> None:
    result = history(metric(interval="1m"), phases).result("m")
    assert result is not None
    got = (
        result.count,
        result.successful,
        result.failed,
        result.inconclusive,
        result.error,
        result.consecutive_error,
        result.consecutive_success,
    )
    assert got == expected


def test_record_judges_value_with_conditions_and_displays_it() -> None:
    m = metric(successCondition="result[0] >= 0.95")
    ok = record(AnalysisRunStatus(), m, Observation(value=[0.97, 1.0]), at(5), started_at=at(4))
    bad = record(AnalysisRunStatus(), m, Observation(value=[0.5]), at(5))
    empty = record(AnalysisRunStatus(), m, Observation(value=[]), at(5))
    measured = ok.metric_results[0].measurements[0]
    assert measured.to_json() == {
        "phase": "Successful",
        "startedAt": "2024-05-01T10:00:04Z",
        "finishedAt": "2024-05-01T10:00:05Z",
        "value": "[0.97,1]",
    }
    assert bad.metric_results[0].measurements[0].phase == F
    no_data = empty.metric_results[0].measurements[0]
    assert no_data.phase == E
    assert "no data returned from the metric provider" in (no_data.message or "")
    assert empty.metric_results[0].error == 1


def test_record_in_flight_then_resumed_keeps_start_and_metadata() -> None:
    m = metric()
    started = record(
        AnalysisRunStatus(), m, Observation(resume_at=at(30), metadata={"job-name": "j1"}), at(0)
    )
    flight = started.metric_results[0]
    assert flight.measurements[0].to_json() == {
        "phase": "Running",
        "startedAt": "2024-05-01T10:00:00Z",
        "metadata": {"job-name": "j1"},
        "resumeAt": "2024-05-01T10:00:30Z",
    }
    assert flight.count == 0
    done = record(started, m, Observation(phase=S, message="job done"), at(31))
    result = done.metric_results[0]
    assert len(result.measurements) == 1
    assert result.measurements[0].to_json() == {
        "phase": "Successful",
        "startedAt": "2024-05-01T10:00:00Z",
        "finishedAt": "2024-05-01T10:00:31Z",
        "message": "job done",
        "metadata": {"job-name": "j1"},
    }
    assert (result.count, result.successful, result.message) == (1, 1, "job done")
    # The input status was not modified.
    assert started.metric_results[0].measurements[0].phase == R


def test_record_redacts_secrets_from_message_and_metadata() -> None:
    obs = Observation.error("auth failed with token s3cr3t", url="http://x?key=s3cr3t")
    status = record(AnalysisRunStatus(), metric(), obs, at(0), secrets=("s3cr3t",))
    measured = status.metric_results[0].measurements[0]
    assert measured.message == "auth failed with token *****"
    assert measured.metadata == {"url": "http://x?key=*****"}


def test_record_sets_metric_metadata() -> None:
    status = record(
        AnalysisRunStatus(),
        metric(),
        Observation(phase=S),
        at(0),
        metric_metadata={"ResolvedPrometheusQuery": "up"},
    )
    assert status.metric_results[0].metadata == {"ResolvedPrometheusQuery": "up"}


# --- retention -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retention", "recorded", "kept"),
    [
        pytest.param(10, 12, 10, id="default-10"),
        pytest.param(3, 5, 3, id="custom-3"),
        pytest.param(10, 4, 4, id="fewer-than-limit"),
        pytest.param(0, 3, 1, id="zero-keeps-the-last-one"),
    ],
)
def test_retention_keeps_the_newest(retention: int, recorded: int, kept: int) -> None:
    m = metric(interval="1m")
    status = AnalysisRunStatus()
    for index in range(recorded):
        status = record(status, m, Observation(phase=S), at(index), retention=retention)
    result = status.metric_results[0]
    assert len(result.measurements) == kept
    assert result.measurements[-1].finished_at == at(recorded - 1)
    assert result.count == recorded  # counters are not trimmed


def test_retention_limit_from_spec_rules() -> None:
    run = AnalysisRun.model_validate(
        {
            "spec": {
                "metrics": [],
                "measurementRetention": [
                    {"metricName": ".*", "limit": 20},
                    {"metricName": "^latency$", "limit": 3},
                ],
            }
        }
    )
    assert retention_limit(run.spec, "latency") == 3
    assert retention_limit(run.spec, "errors") == 20
    assert retention_limit(AnalysisRun().spec, "errors") == 10


# --- metric phase --------------------------------------------------------------------------

COUNTED = {"count": 5, "interval": "1m"}


@pytest.mark.parametrize(
    ("fields", "phases", "terminating", "expected", "reason"),
    [
        pytest.param({}, [], False, AnalysisPhase.PENDING, "", id="no-measurement-pending"),
        pytest.param({}, [], True, S, "", id="no-measurement-terminating-successful"),
        pytest.param({}, [R], False, R, "", id="in-flight-running"),
        pytest.param({}, [S], False, S, "", id="default-count-1-success"),
        pytest.param({}, [F], False, F, "failed (1) > failureLimit (0)", id="default-failure"),
        pytest.param(COUNTED, [S], False, R, "", id="count-not-reached"),
        pytest.param(
            {**COUNTED, "failureLimit": 1},
            [F, S, S, S, S],
            False,
            S,
            "",
            id="failures-within-limit-count-reached",
        ),
        pytest.param(
            {**COUNTED, "failureLimit": 1},
            [F, F],
            False,
            F,
            "failed (2) > failureLimit (1)",
            id="failure-limit-exceeded-early",
        ),
        pytest.param(
            COUNTED,
            [INC],
            False,
            INC,
            "inconclusive (1) > inconclusiveLimit (0)",
            id="inconclusive-limit-exceeded",
        ),
        pytest.param({}, [E] * 4, False, R, "", id="four-errors-still-running"),
        pytest.param(
            {},
            [E] * 5,
            False,
            E,
            "consecutiveErrors (5) > consecutiveErrorLimit (4)",
            id="fifth-consecutive-error",
        ),
        pytest.param(
            {**COUNTED, "count": 10},
            [E, E, E, E, S, E, E, E, E],
            False,
            R,
            "",
            id="success-breaks-error-streak",
        ),
        pytest.param(
            {"consecutiveErrorLimit": 0},
            [E],
            False,
            E,
            "consecutiveErrors (1) > consecutiveErrorLimit (0)",
            id="error-limit-0",
        ),
        pytest.param(
            {**COUNTED, "consecutiveErrorLimit": 0},
            [F, E],
            False,
            E,
            "consecutiveErrors (1) > consecutiveErrorLimit (0)",
            id="error-check-wins-over-failed",
        ),
        pytest.param(
            COUNTED,
            [F, INC],
            False,
            INC,
            "inconclusive (1) > inconclusiveLimit (0)",
            id="inconclusive-check-wins-over-failed",
        ),
        pytest.param(
            {"count": 10, "interval": "1m", "failureLimit": 3, "consecutiveSuccessLimit": 2},
            [F, S, S],
            False,
            S,
            "",
            id="success-streak-reached",
        ),
        pytest.param(
            {"count": 4, "interval": "1m", "failureLimit": 2, "consecutiveSuccessLimit": 2},
            [S, F, S, F],
            False,
            INC,
            "count (4) reached before consecutiveSuccess (0) >= consecutiveSuccessLimit (2)",
            id="count-reached-both-limits-inconclusive",
        ),
        pytest.param(
            {"count": 3, "interval": "1m", "failureLimit": -1, "consecutiveSuccessLimit": 2},
            [S, F, S],
            False,
            F,
            "count (3) reached before consecutiveSuccess (1) >= consecutiveSuccessLimit (2)",
            id="count-reached-only-streak-failed",
        ),
        pytest.param(
            {"count": 5, "interval": "1m", "failureLimit": -1, "consecutiveSuccessLimit": 2},
            [F, F, F],
            False,
            R,
            "",
            id="failure-limit-disabled",
        ),
        pytest.param({"interval": "1m"}, [S, S, S], False, R, "", id="indefinite-running"),
        pytest.param({"interval": "1m"}, [S, S], True, S, "", id="indefinite-terminated"),
        pytest.param(COUNTED, [S], True, S, "", id="count-not-reached-terminated"),
        pytest.param({"count": 2, "interval": "1m"}, [S, E], False, R, "", id="errors-not-counted"),
    ],
)
def test_assess_metric(
    fields: dict[str, Any],
    phases: list[AnalysisPhase],
    terminating: bool,
    expected: AnalysisPhase,
    reason: str,
) -> None:
    m = metric(**fields)
    result = history(m, phases).result("m") or MetricResult(name="m")
    assessment = assess_metric(m, result, terminating=terminating)
    assert (assessment.phase, assessment.reason) == (expected, reason)


def test_assess_metric_completed_phase_is_sticky() -> None:
    m = metric(interval="1m")
    result = history(m, [S]).metric_results[0].model_copy(update={"phase": F})
    assert assess_metric(m, result, terminating=False).phase == F


@given(st.lists(st.sampled_from([S, F, INC, E]), max_size=30))
def test_counters_add_up(phases: list[AnalysisPhase]) -> None:
    m = metric(interval="1m", count=100, failureLimit=100, inconclusiveLimit=100)
    result = history(m, phases, step=1).result("m") or MetricResult(name="m")
    assert result.count == result.successful + result.failed + result.inconclusive
    assert result.error == phases.count(E)
    assert result.consecutive_success * result.consecutive_error == 0
    assert assess_metric(m, result, terminating=True).phase.completed


# --- run phase -----------------------------------------------------------------------------


def completed(name: str, phase: AnalysisPhase) -> AnalysisRunStatus:
    """A metric result already assessed ``phase`` (completed phases are sticky)."""
    status = history(metric(name, interval="1m"), [S if phase == R else phase])
    return status.model_copy(
        update={"metric_results": [status.metric_results[0].model_copy(update={"phase": phase})]}
    )


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        pytest.param([S, S], S, id="all-successful"),
        pytest.param([S, R], R, id="one-running"),
        pytest.param([S, F], F, id="failed-worst"),
        pytest.param([S, INC], INC, id="inconclusive"),
        pytest.param([INC, E], E, id="error-worse-than-inconclusive"),
        pytest.param([E, F], F, id="failed-worse-than-error"),
        pytest.param([INC, R], INC, id="terminating-ends-running-metric"),
    ],
)
def test_run_phase_is_worst_metric(phases: list[AnalysisPhase], expected: AnalysisPhase) -> None:
    names = [f"m{i}" for i in range(len(phases))]
    metrics = [metric(name, interval="1m") for name in names]
    status = merge(*(completed(n, p) for n, p in zip(names, phases, strict=True)))
    new = assess_run(run_of(metrics, status), at(100))
    assert new.phase == expected
    assert (new.completed_at is not None) == expected.completed


def test_dry_run_metric_does_not_affect_run() -> None:
    metrics = [metric("real", interval="1m"), metric("shadow")]
    status = merge(completed("real", S), history(metric("shadow"), [F]))
    new = assess_run(run_of(metrics, status, dry_run=["^sha"]), at(100))
    assert new.phase == S
    assert new.message is None
    assert new.run_summary is not None and new.run_summary.to_json() == {
        "count": 1,
        "successful": 1,
        "failed": 0,
        "inconclusive": 0,
        "error": 0,
    }
    assert new.dry_run_summary is not None and new.dry_run_summary.failed == 1
    shadow = new.result("shadow")
    assert shadow is not None and shadow.dry_run and shadow.phase == F
    assert shadow.message == "Metric assessed Failed due to failed (1) > failureLimit (0)"


def test_failed_dry_run_metric_does_not_terminate_the_run() -> None:
    metrics = [metric("real", interval="1m"), metric("shadow")]
    status = merge(history(metric("real", interval="1m"), [S]), completed("shadow", F))
    run = run_of(metrics, status, dry_run=["*"])
    assert not is_terminating(run)
    assert assess_run(run, at(100)).phase == R
    assert due_measurements(run, at(60)) == [DueMeasurement("real", MeasurementKind.START)]


def test_run_message_names_metric_reason_and_error_message() -> None:
    m = metric()
    status = AnalysisRunStatus()
    for second in range(5):
        status = record(status, m, Observation.error("connection refused"), at(second * 10))
    new = assess_run(run_of([m], status), at(50))
    assert new.phase == E
    assert new.message == (
        'Metric "m" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4):'
        ' "Error Message: connection refused"'
    )


def test_run_failed_message() -> None:
    m = metric(count=3, interval="1m", failureLimit=1)
    new = assess_run(run_of([m], history(m, [F, F])), at(200))
    assert (new.phase, new.message) == (
        F,
        'Metric "m" assessed Failed due to failed (2) > failureLimit (1)',
    )
    assert new.completed_at == at(200)


@pytest.mark.parametrize(
    "phases", [pytest.param([], id="no-measurement"), pytest.param([S], id="running-metric")]
)
def test_terminate_ends_successful_with_message(phases: list[AnalysisPhase]) -> None:
    m = metric(interval="1m")
    new = assess_run(run_of([m], history(m, phases), terminate=True), at(300))
    assert (new.phase, new.message, new.completed_at) == (S, "Run Terminated", at(300))


def test_assess_run_stamps_once_and_keeps_timestamps() -> None:
    m = metric(interval="1m")
    first = assess_run(run_of([m], history(m, [S]), started=None), at(10))
    assert first.started_at == at(10) and first.phase == R
    again = assess_run(run_of([m], first), at(20))
    assert again.to_json() == first.to_json()
    finished = assess_run(run_of([m], again, terminate=True), at(30))
    later = assess_run(run_of([m], finished, terminate=True), at(40))
    assert finished.completed_at == later.completed_at == at(30)
    assert later.started_at == at(10)


def test_mark_error() -> None:
    status = mark_error(AnalysisRunStatus(), "Analysis spec invalid: x", at(1))
    assert status.to_json() == {
        "phase": "Error",
        "message": "Analysis spec invalid: x",
        "startedAt": "2024-05-01T10:00:01Z",
        "completedAt": "2024-05-01T10:00:01Z",
    }


# --- scheduling ----------------------------------------------------------------------------


def timed(m: Metric, finished: list[tuple[AnalysisPhase, float]]) -> AnalysisRunStatus:
    status = AnalysisRunStatus()
    for phase, second in finished:
        status = record(status, m, Observation(phase=phase), at(second))
    return status


START, RESUME, TERMINATE = MeasurementKind.START, MeasurementKind.RESUME, MeasurementKind.TERMINATE


@pytest.mark.parametrize(
    ("fields", "finished", "now", "terminate", "expected"),
    [
        pytest.param({}, [], 0, False, [START], id="first-measurement-at-once"),
        pytest.param({"initialDelay": "30s"}, [], 29, False, [], id="initial-delay-not-over"),
        pytest.param({"initialDelay": "30s"}, [], 30, False, [START], id="initial-delay-over"),
        pytest.param(COUNTED, [(S, 0)], 59, False, [], id="interval-not-over"),
        pytest.param(COUNTED, [(S, 0)], 60, False, [START], id="interval-over"),
        pytest.param(
            {"count": 2, "interval": "1m"}, [(S, 0), (F, 60)], 999, False, [], id="count-reached"
        ),
        pytest.param({}, [(S, 0)], 999, False, [], id="no-count-no-interval-once"),
        pytest.param({"interval": "5m"}, [(E, 0)], 9, False, [], id="error-retry-not-yet"),
        pytest.param({"interval": "5m"}, [(E, 0)], 10, False, [START], id="error-retry-10s"),
        pytest.param({"interval": "2s"}, [(E, 0)], 5, False, [], id="error-retry-ignores-interval"),
        pytest.param({}, [(E, 0)], 10, False, [START], id="error-retry-without-interval"),
        pytest.param(
            {"interval": "1m"}, [(S, 0), (S, 60), (S, 120)], 180, False, [START], id="indefinite"
        ),
        pytest.param({"interval": "1m"}, [(S, 0)], 600, True, [], id="terminate-no-new"),
        pytest.param({}, [], 0, True, [], id="terminate-before-first"),
    ],
)
def test_due_measurements(
    fields: dict[str, Any],
    finished: list[tuple[AnalysisPhase, float]],
    now: float,
    terminate: bool,
    expected: list[MeasurementKind],
) -> None:
    m = metric(**fields)
    run = run_of([m], timed(m, finished), terminate=terminate)
    assert due_measurements(run, at(now)) == [DueMeasurement("m", kind) for kind in expected]


def in_flight(m: Metric, resume_at: float | None) -> AnalysisRunStatus:
    obs = Observation(phase=R, resume_at=at(resume_at) if resume_at is not None else None)
    return record(AnalysisRunStatus(), m, obs, at(0))


@pytest.mark.parametrize(
    ("resume_at", "now", "terminate", "expected"),
    [
        pytest.param(30, 29, False, [], id="resume-not-yet"),
        pytest.param(30, 30, False, [RESUME], id="resume-due"),
        pytest.param(None, 1, False, [RESUME], id="no-resume-at-resume-at-once"),
        pytest.param(30, 5, True, [TERMINATE], id="terminating-terminates-in-flight"),
    ],
)
def test_due_in_flight(
    resume_at: float | None, now: float, terminate: bool, expected: list[MeasurementKind]
) -> None:
    m = metric()
    run = run_of([m], in_flight(m, resume_at), terminate=terminate)
    assert due_measurements(run, at(now)) == [DueMeasurement("m", kind) for kind in expected]


def test_failed_metric_stops_other_metrics() -> None:
    metrics = [metric("a"), metric("b", interval="1m")]
    status = merge(completed("a", F), history(metric("b", interval="1m"), [S]))
    run = run_of(metrics, status)
    assert is_terminating(run)
    assert due_measurements(run, at(600)) == []
    assert next_wakeup(run, at(600)) is None


def test_completed_run_has_nothing_due() -> None:
    m = metric(interval="1m")
    status = history(m, [S]).model_copy(update={"phase": S})
    run = run_of([m], status)
    assert due_measurements(run, at(600)) == []
    assert next_wakeup(run, at(600)) is None


@pytest.mark.parametrize(
    ("fields", "finished", "now", "expected"),
    [
        pytest.param({"initialDelay": "30s"}, [], 0, 30, id="initial-delay-end"),
        pytest.param(COUNTED, [(S, 0)], 10, 60, id="next-interval"),
        pytest.param({"interval": "5m"}, [(E, 0)], 1, 10, id="error-retry"),
        pytest.param({"count": 1}, [(S, 0)], 1, None, id="count-reached"),
        pytest.param({}, [], 0, 0, id="first-measurement-now"),
    ],
)
def test_next_wakeup(
    fields: dict[str, Any],
    finished: list[tuple[AnalysisPhase, float]],
    now: float,
    expected: float | None,
) -> None:
    m = metric(**fields)
    wake = next_wakeup(run_of([m], timed(m, finished)), at(now))
    assert wake == (at(expected) if expected is not None else None)


def test_next_wakeup_is_earliest_of_metrics_and_resume_at() -> None:
    slow, flight = metric("slow", interval="5m"), metric("job")
    status = merge(timed(slow, [(S, 0)]), in_flight(flight, 45))
    assert next_wakeup(run_of([slow, flight], status), at(1)) == at(45)
