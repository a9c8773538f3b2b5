"""Tests for notification `when` conditions through common/expr (evaluate_when, compile_when).

Tables: the seed ConfigMap's conditions, Argo CD's catalog triggers (their exact
`when` text from argo-cd notifications_catalog/triggers/*.yaml) and Argo
Rollouts' catalog triggers (which have no `when`: Argo compiles an empty
condition as "false", the controller sends them on events) plus the Rollout
conditions users write, each over objects with and without the fields they
read. Then the time/strings/sync helpers, hostile input, and Hypothesis: no
input makes evaluate_when raise.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.expr import (
    NOTIFICATIONS,
    ExpressionError,
    MissingValueError,
    WhenResult,
    compile_expression,
    compile_when,
    evaluate_when,
)

NOW = dt.datetime(2024, 5, 1, 12, 0, 30, tzinfo=dt.UTC)


def clock() -> dt.datetime:
    return NOW


# --- objects -----------------------------------------------------------------------------


def application(
    *,
    phase: str | None = None,
    health: str | None = None,
    sync: str | None = None,
    started: str = "2024-05-01T11:59:50Z",
    finished: str = "2024-05-01T12:00:00Z",
    healthy_since: str = "2024-05-01T12:00:05Z",
    deleted: bool = False,
    info: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """An Application as the API server returns it; absent arguments leave the field out."""
    status: dict[str, Any] = {}
    if phase is not None:
        operation: dict[str, Any] = {"sync": {"revision": "abc123"}}
        if info is not None:
            operation["info"] = info
        status["operationState"] = {
            "phase": phase,
            "startedAt": started,
            "finishedAt": finished,
            "operation": operation,
            "syncResult": {"revision": "abc123", "resources": []},
        }
    if health is not None:
        status["health"] = {"status": health, "lastTransitionTime": healthy_since}
    if sync is not None:
        status["sync"] = {"status": sync, "revision": "abc123"}
    metadata: dict[str, Any] = {"name": "inference", "namespace": "ml-serving"}
    if deleted:
        metadata["deletionTimestamp"] = "2024-05-01T12:00:20Z"
    app: dict[str, Any] = {"metadata": metadata}
    if status:
        app["status"] = status
    return app


APPS: dict[str, dict[str, Any]] = {
    "bare": application(),
    "deployed": application(phase="Succeeded", health="Healthy", sync="Synced"),
    # Healthy before the sync finished: Argo's on-deployed waits for a new transition.
    "healthy-before-finish": application(
        phase="Succeeded", health="Healthy", sync="Synced", healthy_since="2024-05-01T11:00:00Z"
    ),
    "succeeded-progressing": application(phase="Succeeded", health="Progressing", sync="Synced"),
    "failed": application(phase="Failed", health="Degraded", sync="OutOfSync"),
    "errored": application(phase="Error", sync="OutOfSync"),
    "running": application(phase="Running", health="Progressing", sync="OutOfSync"),
    "unknown": application(sync="Unknown"),
    "degraded-no-operation": application(health="Degraded", sync="Synced"),
    "deleted": application(deleted=True),
}

SEED_ON_DEPLOYED = "app.status.operationState.phase in ['Succeeded']"
SEED_ON_SYNC_FAILED = "app.status.operationState.phase in ['Error', 'Failed']"
CD_CATALOG = {
    "on-created": "true",
    "on-deleted": "app.metadata.deletionTimestamp != nil",
    "on-deployed": (
        "app.status.operationState != nil and app.status.operationState.phase in ['Succeeded']"
        " and app.status.health.status == 'Healthy' and"
        " !time.Parse(app.status.health.lastTransitionTime)"
        ".Before(time.Parse(app.status.operationState.finishedAt))"
    ),
    "on-health-degraded": "app.status.health.status == 'Degraded'",
    "on-sync-failed": (
        "app.status.operationState != nil and app.status.operationState.phase in ['Error', 'Failed']"
    ),
    "on-sync-running": (
        "app.status.operationState != nil and app.status.operationState.phase in ['Running']"
    ),
    "on-sync-status-unknown": "app.status.sync.status == 'Unknown'",
    "on-sync-succeeded": (
        "app.status.operationState != nil and app.status.operationState.phase in ['Succeeded']"
    ),
    # The older catalog text, still in many ConfigMaps.
    "on-sync-succeeded-v1": "app.status.operationState.phase in ['Succeeded']",
}

# (condition, app fixture) -> the trigger fires.
FIRES: dict[str, set[str]] = {
    "seed-on-deployed": {"deployed", "healthy-before-finish", "succeeded-progressing"},
    "seed-on-sync-failed": {"failed", "errored"},
    "on-created": set(APPS),
    "on-deleted": {"deleted"},
    "on-deployed": {"deployed"},
    "on-health-degraded": {"failed", "degraded-no-operation"},
    "on-sync-failed": {"failed", "errored"},
    "on-sync-running": {"running"},
    "on-sync-status-unknown": {"unknown"},
    "on-sync-succeeded": {"deployed", "healthy-before-finish", "succeeded-progressing"},
    "on-sync-succeeded-v1": {"deployed", "healthy-before-finish", "succeeded-progressing"},
}
CONDITIONS = {"seed-on-deployed": SEED_ON_DEPLOYED, "seed-on-sync-failed": SEED_ON_SYNC_FAILED}
CONDITIONS.update(CD_CATALOG)


@pytest.mark.parametrize(
    ("source", "app", "expected"),
    [
        pytest.param(CONDITIONS[name], APPS[app], app in FIRES[name], id=f"{name}/{app}")
        for name in CONDITIONS
        for app in APPS
    ],
)
def test_application_catalog(source: str, app: dict[str, Any], expected: bool) -> None:
    assert evaluate_when(source, {"app": app}, now=clock) == WhenResult(value=expected, error=None)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_catalog_conditions_compile(name: str) -> None:
    assert compile_when(CONDITIONS[name]).source == CONDITIONS[name]


@pytest.mark.parametrize(
    ("source", "app", "expected"),
    [
        pytest.param("app.status.operationState?.syncResult?.revision", "deployed", "abc123",
                     id="revision"),
        pytest.param("app.status.operationState?.syncResult?.revision", "unknown", None,
                     id="revision-missing"),
        pytest.param("app.status.sync.revision", "deployed", "abc123", id="sync-revision"),
        pytest.param("app.metadata.name", "bare", "inference", id="name"),
    ],
)
def test_once_per_values(source: str, app: str, expected: Any) -> None:
    assert compile_when(source).evaluate({"app": APPS[app]}, now=clock) == expected


def test_once_per_without_status_is_a_missing_value() -> None:
    # `?.` guards only the step it is written on, as in expr: `app.status` is nil here.
    with pytest.raises(MissingValueError):
        compile_when("app.status.operationState?.syncResult?.revision").evaluate(
            {"app": APPS["bare"]}
        )


# --- Argo Rollouts ------------------------------------------------------------------------

ROLLOUTS_CATALOG = [
    "on-rollout-completed", "on-rollout-step-completed", "on-rollout-updated",
    "on-rollout-paused", "on-rollout-aborted", "on-scaling-replica-set",
    "on-analysis-run-running", "on-analysis-run-error", "on-analysis-run-failed",
]  # fmt: skip

ROLLOUT_ABORTED = {
    "metadata": {"name": "inference-rollout", "generation": 3},
    "status": {"phase": "Degraded", "abort": True, "message": "RolloutAborted: metric failed",
               "currentStepIndex": 2, "currentPodHash": "abc", "stableRS": "old"},
}
ROLLOUT_HEALTHY = {
    "metadata": {"name": "inference-rollout", "generation": 4},
    "status": {"phase": "Healthy", "currentStepIndex": 4, "currentPodHash": "abc",
               "stableRS": "abc"},
}
ROLLOUT_NEW = {"metadata": {"name": "inference-rollout"}}
RUN_FAILED = {"metadata": {"name": "run-1"}, "status": {"phase": "Failed"}}
RUN_RUNNING = {"metadata": {"name": "run-1"}, "status": {"phase": "Running"}}


@pytest.mark.parametrize("trigger", ROLLOUTS_CATALOG)
@pytest.mark.parametrize("when", ["", "   "], ids=["absent", "blank"])
def test_rollouts_catalog_triggers_have_no_when(trigger: str, when: str) -> None:
    # Argo's catalog gives these no `when`; notifications-engine compiles "" as false.
    env = {"rollout": ROLLOUT_ABORTED, "analysisRun": RUN_FAILED}
    assert evaluate_when(when, env, now=clock) == WhenResult(value=False, error=None)
    assert compile_when(when).evaluate(env) is False


@pytest.mark.parametrize(
    ("source", "env", "expected"),
    [
        pytest.param("rollout.status.phase == 'Degraded'", {"rollout": ROLLOUT_ABORTED}, True,
                     id="aborted-phase"),
        pytest.param("rollout.status.abort == true", {"rollout": ROLLOUT_ABORTED}, True,
                     id="aborted-flag"),
        pytest.param("rollout.status.abort == true", {"rollout": ROLLOUT_NEW}, False,
                     id="aborted-flag-missing"),
        pytest.param(
            "rollout.status.phase == 'Healthy' && rollout.status.currentPodHash == "
            "rollout.status.stableRS", {"rollout": ROLLOUT_HEALTHY}, True, id="completed"),
        pytest.param(
            "rollout.status.phase == 'Healthy' && rollout.status.currentPodHash == "
            "rollout.status.stableRS", {"rollout": ROLLOUT_ABORTED}, False,
            id="completed-not-yet"),
        pytest.param("rollout.status.currentStepIndex > 0", {"rollout": ROLLOUT_HEALTHY}, True,
                     id="step-index"),
        pytest.param("rollout.status.currentStepIndex > 0", {"rollout": ROLLOUT_NEW}, False,
                     id="step-index-missing"),
        pytest.param("analysisRun.status.phase == 'Failed'", {"analysisRun": RUN_FAILED}, True,
                     id="run-failed"),
        pytest.param("analysisRun.status.phase in ['Error', 'Failed']",
                     {"analysisRun": RUN_RUNNING}, False, id="run-running"),
        pytest.param("analysisRun.status.phase not in ['Error', 'Failed']",
                     {"analysisRun": RUN_RUNNING}, True, id="run-not-in"),
        pytest.param("rollout?.status?.phase ?? 'none' == 'none'", {"rollout": None}, True,
                     id="coalesce-nil-object"),
    ],
)
def test_rollout_conditions(source: str, env: dict[str, Any], expected: bool) -> None:
    assert evaluate_when(source, env, now=clock) == WhenResult(value=expected, error=None)


# --- helpers ------------------------------------------------------------------------------

TIMES_ENV = {
    "app": {
        "status": {
            "operationState": {
                "finishedAt": "2024-05-01T12:00:00Z",
                "startedAt": "2024-05-01T11:59:00+00:00",
                "operation": {"info": [{"name": "reason", "value": "canary"},
                                       {"name": "ticket", "value": "ML-42"}]},
            },
        },
    },
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("time.Now().Sub(time.Parse(app.status.operationState.finishedAt))"
                     ".Minutes() < 1", True, id="finished-within-a-minute"),
        pytest.param("time.Now().Sub(time.Parse(app.status.operationState.finishedAt))"
                     ".Seconds() == 30", True, id="sub-seconds"),
        pytest.param("time.Now().Sub(time.Parse(app.status.operationState.finishedAt))"
                     " < time.Minute", True, id="duration-compare"),
        pytest.param("time.Now() - time.Parse(app.status.operationState.finishedAt)"
                     " == 30 * time.Second", True, id="time-minus-time"),
        pytest.param("time.Parse(app.status.operationState.startedAt).Add(1 * time.Minute)"
                     ".Equal(time.Parse(app.status.operationState.finishedAt))", True,
                     id="add-equal"),
        pytest.param("time.Parse(app.status.operationState.startedAt) + time.Minute == "
                     "time.Parse(app.status.operationState.finishedAt)", True, id="plus-duration"),
        pytest.param("time.Parse(app.status.operationState.startedAt)"
                     ".Before(time.Parse(app.status.operationState.finishedAt))", True,
                     id="before"),
        pytest.param("time.Parse(app.status.operationState.startedAt)"
                     ".After(time.Parse(app.status.operationState.finishedAt))", False,
                     id="after"),
        pytest.param("time.Parse(app.status.operationState.startedAt) < time.Now()", True,
                     id="time-ordering"),
        pytest.param("time.Parse('2024-05-01T12:00:00.5+02:00').Unix() == 1714557600", True,
                     id="unix-offset"),
        pytest.param("time.Parse(time.RFC3339, '1970-01-01T00:00:01Z').UnixMilli() == 1000",
                     True, id="layout-form"),
        pytest.param("time.Duration(90000000000).Minutes() == 1.5", True, id="duration-convert"),
        pytest.param("time.Hour / time.Minute == 60", True, id="duration-ratio"),
        pytest.param("(-time.Hour).Abs() == time.Hour", True, id="duration-abs"),
        pytest.param("time.Parse('0001-01-01T00:00:00Z').IsZero()", True, id="zero-time"),
        pytest.param("strings.ToUpper('canary') == 'CANARY'", True, id="upper"),
        pytest.param("strings.ToLower('CANARY') == 'canary'", True, id="lower"),
        pytest.param("strings.Contains(app.status.operationState.finishedAt, 'T12')", True,
                     id="contains"),
        pytest.param("strings.HasPrefix('ml-serving', 'ml-')", True, id="has-prefix"),
        pytest.param("strings.HasSuffix('ml-serving', '-serving')", True, id="has-suffix"),
        pytest.param("strings.ReplaceAll('a-b-c', '-', '/') == 'a/b/c'", True, id="replace-all"),
        pytest.param("strings.ReplaceAll('ab', '', '.') == '.a.b.'", True, id="replace-empty"),
        pytest.param("strings.Split('a,b,c', ',') == ['a', 'b', 'c']", True, id="split"),
        pytest.param("strings.TrimSpace('  x  ') == 'x'", True, id="trim-space"),
        pytest.param("sync.GetInfoItem(app, 'ticket') == 'ML-42'", True, id="info-item"),
        pytest.param("sync.GetInfoItem(app, 'absent') == nil", True, id="info-item-absent"),
        pytest.param("sync.GetInfoItem({}, 'ticket') ?? 'none' == 'none'", True,
                     id="info-item-no-operation"),
        pytest.param("'canary' in ['canary', 'blue']", True, id="in-list"),
        pytest.param("'green' not in ['canary', 'blue']", True, id="not-in-list"),
        pytest.param("app.status.health?.status ?? 'Unknown' == 'Unknown'", True,
                     id="optional-and-coalesce"),
    ],
)
def test_helpers(source: str, expected: bool) -> None:
    assert evaluate_when(source, TIMES_ENV, now=clock) == WhenResult(value=expected, error=None)


def test_now_is_the_injected_clock() -> None:
    later = lambda: NOW + dt.timedelta(minutes=5)  # noqa: E731
    source = "time.Now().Sub(time.Parse(app.status.operationState.finishedAt)).Minutes() < 1"
    assert evaluate_when(source, TIMES_ENV, now=clock).value is True
    assert evaluate_when(source, TIMES_ENV, now=later).value is False


def test_naive_clock_is_utc() -> None:
    naive = lambda: NOW.replace(tzinfo=None)  # noqa: E731
    assert evaluate_when("time.Now().Unix() == 1714564830", {}, now=naive).value is True


A300 = "a" * 300
# Each level multiplies the length; the third would pass a million characters.
REPLACE_BOMB = (
    f"strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll('aaaa', 'a', '{'a' * 10}'),"
    f" 'a', '{A300}'), 'a', '{A300}') == ''"
)

# --- missing fields, errors, hostile input -------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("app.status.operationState.phase in ['Succeeded']", id="nil-walk"),
        pytest.param("app.status.operationState.phase == 'Succeeded'", id="nil-walk-equal"),
        pytest.param("app.status.conditions[0].type == 'SyncError'", id="index-missing"),
        pytest.param("app.status.suspended", id="nil-result"),
        pytest.param("!app.status.suspended", id="not-nil"),
        pytest.param("app.status.replicas > 2", id="nil-ordering"),
        pytest.param("len(app.status.resources) > 0", id="len-of-nil"),
        pytest.param("time.Parse(app.status.health.lastTransitionTime).Before(time.Now())",
                     id="parse-nil"),
        pytest.param("app.status.startedAt.Before(time.Now())", id="method-on-nil"),
        pytest.param("strings.HasPrefix(app.status.sync.revision, 'abc')", id="strings-nil"),
    ],
)
def test_missing_fields_are_false_without_error(source: str) -> None:
    env = {"app": {"metadata": {"name": "x"}, "status": {"conditions": []}}}
    assert evaluate_when(source, env, now=clock) == WhenResult(value=False, error=None)


@pytest.mark.parametrize(
    ("source", "env", "message"),
    [
        pytest.param("app.metadata.name", {"app": {"metadata": {"name": "x"}}},
                     'gave string, not a bool', id="not-bool-string"),
        pytest.param("1 + 1", {}, "gave int, not a bool", id="not-bool-int"),
        pytest.param("app.metadata.name > 3", {"app": {"metadata": {"name": "x"}}},
                     "invalid operation: string > int", id="type-error"),
        pytest.param("time.Parse('yesterday').Unix() > 0", {},
                     '"yesterday" is not an RFC 3339 timestamp', id="bad-timestamp"),
        pytest.param("time.Parse('2024-02-30T00:00:00Z').Unix() > 0", {},
                     "is not an RFC 3339 timestamp", id="impossible-date"),
        pytest.param("time.Parse('Mon Jan 2', '2024-01-01T00:00:00Z').Unix() > 0", {},
                     "only the RFC 3339 layouts", id="other-layout"),
        pytest.param("time.Minute > 5", {}, "invalid operation: duration > int",
                     id="duration-vs-int"),
        pytest.param("time.Now().Minutes() > 1", {}, 'a time has no method "Minutes"',
                     id="wrong-method"),
        pytest.param("time.Now().Sub(1) > time.Minute", {}, "Sub: argument must be a time",
                     id="method-arg"),
        pytest.param("app.Before(time.Now())", {"app": {}},
                     'a map has no method "Before"', id="method-on-map"),
        pytest.param("rollout.status.phase == 'Degraded'", {"app": {}},
                     'unknown name "rollout"', id="unknown-env-name"),
        pytest.param("time.Hour * 1e30 > time.Hour", {}, "time value out of range",
                     id="duration-overflow"),
    ],
)
def test_errors_are_false_with_a_message(source: str, env: dict[str, Any], message: str) -> None:
    result = evaluate_when(source, env, now=clock)
    assert result.value is False
    assert result.error is not None and message in result.error, result.error


@pytest.mark.parametrize(
    ("source", "column"),
    [
        pytest.param("app.status.operationState.phase in ['Succeeded'", 47, id="unclosed-list"),
        pytest.param("app.status.sync.status = 'Unknown'", 23, id="single-equals"),
        pytest.param("time.Nope()", 5, id="unknown-helper"),
        pytest.param("strings.ToUpper()", 0, id="arity"),
        pytest.param("time.Minute()", 0, id="constant-called"),
        pytest.param("time.Now", 0, id="function-not-called"),
        pytest.param("time == 1", 0, id="namespace-alone"),
        pytest.param("isNil(app)", 0, id="analysis-only-function"),
        pytest.param("app.status.Lower()", 11, id="unknown-method"),
    ],
)
def test_syntax_errors_name_the_column(source: str, column: int) -> None:
    result = evaluate_when(source, {"app": {}}, now=clock)
    assert result.value is False
    assert result.error is not None and f"column {column}" in result.error, result.error
    with pytest.raises(ExpressionError) as raised:
        compile_when(source)
    assert raised.value.position == column


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("app.__class__", id="dunder-attribute"),
        pytest.param("app.__class__.__mro__", id="dunder-walk"),
        pytest.param("time.Now().__class__", id="dunder-on-time"),
        pytest.param("time.__dict__", id="dunder-on-namespace"),
        pytest.param("time.Now().nanos > 0", id="time-field-by-name"),
        pytest.param("time.Now()['nanos'] > 0", id="time-field-by-index"),
        pytest.param("time.Minute.nanos > 0", id="duration-field"),
        pytest.param("9" * 5000, id="huge-literal-text"),
        pytest.param("99999999999999999999999 > 1", id="huge-integer"),
        pytest.param("[" * 300 + "]" * 300, id="deep-nesting"),
        pytest.param(REPLACE_BOMB, id="replace-bounded"),
        pytest.param("time.Parse('" + "1" * 1500 + "').Unix() > 0", id="huge-timestamp"),
        pytest.param("time.Parse('9999-12-31T23:59:59Z') + time.Hour * 9223372036 > time.Now()",
                     id="time-overflow"),
    ],
)
def test_hostile_input_is_an_error_not_a_crash(source: str) -> None:
    app = {"metadata": {"name": "x"}}
    result = evaluate_when(source, {"app": app}, now=clock)
    assert result.value is False
    assert result.error is not None
    assert "internal error" not in result.error
    # An error message never echoes a huge condition whole.
    assert len(result.error) < 400


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("app['__class__'] != nil", id="dunder-as-key"),
        pytest.param("app['__dict__'] ?? 'safe' != 'safe'", id="dunder-key-coalesce"),
        pytest.param("1e999 > 1 && 1e999 < 1", id="huge-float"),
    ],
)
def test_hostile_input_reads_only_data(source: str) -> None:
    # Keys are looked up in the object's data only: Python internals are never there.
    result = evaluate_when(source, {"app": {"metadata": {}}}, now=clock)
    assert result == WhenResult(value=False, error=None)


def test_time_values_are_not_mappings() -> None:
    value = compile_when("time.Now()").evaluate({}, now=clock)
    with pytest.raises(ExpressionError):
        compile_when("t.nanos").evaluate({"t": value}, now=clock)


def test_analysis_dialect_is_unchanged() -> None:
    # AnalysisTemplate conditions know neither the namespaces nor methods.
    for source in ("time.Now()", "result.Minutes()", "strings.ToUpper('a')"):
        with pytest.raises(ExpressionError):
            compile_expression(source).evaluate({"result": 1, "time": {}, "strings": {}})
    assert compile_expression("isNil(result)").evaluate({"result": None}) is True
    assert compile_expression("time.Now()", dialect=NOTIFICATIONS).evaluate({}, now=clock)


def test_compile_when_is_cached() -> None:
    assert compile_when("app.x == 1") is compile_when("app.x == 1")


def test_evaluate_when_never_raises_on_a_bad_clock() -> None:
    def broken() -> dt.datetime:
        raise RuntimeError("clock")

    result = evaluate_when("time.Now().Unix() > 0", {}, now=broken)
    assert result.value is False and result.error is not None


# --- fuzzing ------------------------------------------------------------------------------

_TOKENS = [
    "app", "rollout", ".", "?.", "status", "operationState", "phase", "in", "not", "[", "]",
    "'Succeeded'", ",", "==", "!=", "and", "or", "!", "(", ")", "time", "Now", "Parse", "Sub",
    "Minutes", "Before", "Add", "Minute", "strings", "ToUpper", "sync", "GetInfoItem", "nil",
    "??", "1", "1e9", "<", "-", "*", "true", "__class__", "#", "{", "}", ":",
]  # fmt: skip

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["status", "phase", "operationState", "finishedAt",
                                       "health", "metadata", "name", "info", "value"]),
                      children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.text(max_size=200), app=_json)
def test_fuzz_text_never_raises(source: str, app: Any) -> None:
    result = evaluate_when(source, {"app": app}, now=clock)
    assert isinstance(result, WhenResult)
    assert result.value in (True, False)
    assert "internal error" not in (result.error or "")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens=st.lists(st.sampled_from(_TOKENS), max_size=30), app=_json)
def test_fuzz_token_soup_never_raises(tokens: list[str], app: Any) -> None:
    result = evaluate_when(" ".join(tokens), {"app": app, "rollout": app}, now=clock)
    assert isinstance(result, WhenResult)
    assert "internal error" not in (result.error or "")



@pytest.mark.parametrize("source", [5, None, ["true"]], ids=["number", "none", "list"])
def test_non_text_condition_is_an_error(source: Any) -> None:
    # A `when:` YAML value that is not a string (`when: 5`) is reported, not raised.
    result = evaluate_when(source, {}, now=clock)
    assert result.value is False and result.error is not None
    assert "must be a string" in result.error
