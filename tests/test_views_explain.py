"""The explain log (views/explain.py) from fixture objects, and how cli/explain.py prints it.

Fixtures in tests/fixtures/explain/ hold what the controllers record for one rollout
(the Rollout, its ReplicaSets, AnalysisRuns and Events) and the expected log.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.explain import render
from views.explain import (
    REDACTED,
    WHY_DONE_NO_EVENT,
    build,
    to_dict,
)

FIXTURES = Path(__file__).parent / "fixtures" / "explain"
SCENARIOS = ("paused", "aborted", "completed")
SECRET = "s3cr3t-t0ken"


def _fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text(encoding="utf-8"))
    return loaded


def _explain(data: dict[str, Any]) -> dict[str, Any]:
    return to_dict(build(data["rollout"], analysis_runs=data["analysisRuns"], events=data["events"],
                         replicasets=data["replicasets"]))


def _event(reason: str, message: str, at: str, kind: str = "Rollout", name: str = "model") -> dict[str, Any]:
    return {"reason": reason, "message": message, "lastTimestamp": at, "involvedObject": {"kind": kind, "name": name}}


@pytest.mark.parametrize("name", SCENARIOS)
def test_log_matches_golden(name: str) -> None:
    data = _fixture(name)
    assert _explain(data) == data["expected"]


def test_secret_arg_is_masked_even_with_a_value() -> None:
    """A secretKeyRef arg is masked whatever else the run carries (here a stray value too)."""
    data = _fixture("aborted")
    run = data["analysisRuns"][0]
    run["spec"]["args"][1]["value"] = SECRET
    run["spec"]["metrics"].append({"name": "web", "provider": {"web": {
        "url": "http://checker/{{args.api-token}}", "headers": [{"key": "Authorization", "value": SECRET}]}}})
    run["status"]["metricResults"].append({"name": "web", "phase": "Successful",
                                           "measurements": [{"phase": "Successful", "value": "1"}]})
    text = json.dumps(_explain(data))
    assert SECRET not in text
    queries = {m["metric"]: m["query"] for m in _explain(data)["measurements"]}
    assert queries["web"] == f"web: http://checker/{REDACTED}"
    assert f'token="{REDACTED}"' in queries["error-rate"]


def test_expired_events_keep_states_and_say_times_are_unknown() -> None:
    data = _fixture("completed")
    data["events"] = []
    log = _explain(data)
    assert log["summary"] == data["expected"]["summary"]
    assert [s["state"] for s in log["steps"]] == ["done", "done", "done"]
    assert all(s["startedAt"] is None and s["endedAt"] is None for s in log["steps"])
    assert all(s["why"] == WHY_DONE_NO_EVENT for s in log["steps"])


def test_same_log_from_the_same_records() -> None:
    """Nothing but the recorded objects feeds the log: rebuilding it (as after a controller
    restart, from a fresh read) gives the same answer, whatever the order of the Events."""
    data = _fixture("aborted")
    shuffled = copy.deepcopy(data)
    shuffled["events"] = list(reversed(shuffled["events"]))
    assert _explain(shuffled) == _explain(data)


def test_retry_after_abort_starts_the_log_again() -> None:
    data = _fixture("aborted")
    data["rollout"]["status"] = {"phase": "Progressing", "message": "more replicas need to be updated",
                                 "currentPodHash": "6d4f", "stableRS": "5c9a", "currentStepIndex": 1,
                                 "pauseConditions": [{"reason": "CanaryPauseStep",
                                                      "startTime": "2026-12-03T12:10:00Z"}]}
    data["analysisRuns"] = []
    data["events"] += [_event("RolloutStepCompleted", "Rollout step 1/5 completed (setWeight: 20)",
                              "2026-12-03T12:10:00Z")]
    log = _explain(data)
    assert log["summary"] == "Paused at step 2/5 (pause: 1m) until 2026-12-03T12:11:00Z"
    first = log["steps"][0]
    assert (first["state"], first["endedAt"]) == ("done", "2026-12-03T12:10:00Z")
    assert [s["state"] for s in log["steps"][1:]] == ["paused", "pending", "pending", "pending"]


@pytest.mark.parametrize(
    ("status", "runs", "expected"),
    [
        pytest.param({"phase": "Progressing", "message": "updated replicas are still becoming available",
                      "currentStepIndex": 0, "currentPodHash": "6d4f", "stableRS": "5c9a"}, [],
                     "Progressing at step 1/5 (setWeight: 20): updated replicas are still becoming available",
                     id="progressing"),
        pytest.param({"phase": "Paused", "message": "manually paused", "currentStepIndex": 3,
                      "currentPodHash": "6d4f", "stableRS": "5c9a"}, [],
                     "Paused by the user (spec.paused) at step 4/5", id="manual-pause"),
        pytest.param({"phase": "Paused", "currentStepIndex": 4, "currentPodHash": "6d4f", "stableRS": "5c9a",
                      "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-12-03T12:00:00Z"}]},
                     [], "Paused at step 5/5 (pause) until promoted", id="indefinite-pause"),
        pytest.param({"phase": "Paused", "currentStepIndex": 2, "currentPodHash": "6d4f", "stableRS": "5c9a",
                      "pauseConditions": [{"reason": "InconclusiveAnalysisRun",
                                           "startTime": "2026-12-03T12:00:00Z"}]},
                     [{"metadata": {"name": "run-x", "labels": {"rollout-type": "Step", "step-index": "2"}},
                       "spec": {"metrics": [{"name": "m", "successCondition": "result > 1",
                                             "failureCondition": "result < 0",
                                             "provider": {"prometheus": {"query": "q"}}}]},
                       "status": {"phase": "Inconclusive", "metricResults": [
                           {"name": "m", "phase": "Inconclusive",
                            "measurements": [{"phase": "Inconclusive", "value": "0.5"}]}]}}],
                     "Paused at step 3/5: analysis run run-x inconclusive: metric m value 0.5 was inconclusive "
                     "(successCondition: result > 1; failureCondition: result < 0); promote or abort",
                     id="inconclusive"),
        pytest.param({}, [], "No status yet: the controller has not reconciled this rollout", id="no-status"),
        pytest.param({"phase": "Degraded", "message": "ProgressDeadlineExceeded: ReplicaSet \"model-6d4f\" has "
                      "timed out progressing.", "currentStepIndex": 0, "currentPodHash": "6d4f", "stableRS": "5c9a"},
                     [], "Degraded at step 1/5: ProgressDeadlineExceeded", id="degraded"),
    ],
)
def test_summary_sentence(status: dict[str, Any], runs: list[dict[str, Any]], expected: str) -> None:
    data = _fixture("paused")
    data["rollout"]["status"] = status
    summary = to_dict(build(data["rollout"], analysis_runs=runs, events=[]))["summary"]
    assert summary.startswith(expected), summary


def test_manual_abort_names_the_reason() -> None:
    data = _fixture("paused")
    data["rollout"]["status"].update({"abort": True, "pauseConditions": None, "currentStepIndex": 0,
                                      "conditions": [{"type": "Progressing", "reason": "RolloutAborted",
                                                      "message": "Rollout aborted update to revision 2: "
                                                                 "latency spike seen by on-call"}]})
    data["events"].append(_event("RolloutAborted", "Rollout aborted update to revision 2: latency spike seen "
                                 "by on-call", "2026-12-03T12:02:30Z"))
    log = _explain(data)
    assert log["summary"] == ("Aborted at step 2/5: Rollout aborted update to revision 2: "
                              "latency spike seen by on-call")
    assert log["steps"][1]["state"] == "aborted"
    assert log["steps"][1]["endedAt"] == "2026-12-03T12:02:30Z"


def test_background_abort_without_events_marks_no_step() -> None:
    """A failed background run has no step-index, and status resets the index to 0 on abort:
    with the Events expired, the log says why but does not guess the step."""
    data = _fixture("aborted")
    run = data["analysisRuns"][0]
    run["metadata"]["labels"] = {"rollouts-pod-template-hash": "6d4f", "rollout-type": "Background"}
    log = to_dict(build(data["rollout"], analysis_runs=data["analysisRuns"], events=[],
                        replicasets=data["replicasets"]))
    assert log["summary"] == ("Aborted: analysis run model-6d4f-2-2 failed: metric error-rate value [0.05] "
                              "met failureCondition result[0] > 0.01")
    assert {s["state"] for s in log["steps"]} == {"pending"}


# --- printing (cli/explain.py) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "terminal", "check"),
    [
        pytest.param("json", False, lambda out, log: json.loads(out) == log, id="json"),
        pytest.param("yaml", False, lambda out, log: yaml.safe_load(out) == log, id="yaml"),
        pytest.param("text", False, lambda out, log: "\x1b[" not in out and log["summary"] in out
                     and "STEP  " in out and "token=\"*****\"" in out, id="plain-when-piped"),
        pytest.param("text", True, lambda out, log: "\x1b[" in out and "Steps" in out and "Measurements" in out,
                     id="rich-on-a-terminal"),
    ],
)
def test_render(output: str, terminal: bool, check: Any) -> None:
    log = _explain(_fixture("aborted"))
    stream = io.StringIO()
    render(log, output=output, namespace="ml", name="model", stream=stream, terminal=terminal)
    assert check(stream.getvalue(), log), stream.getvalue()


def test_a_step_completed_in_the_same_second_as_the_update_keeps_its_times() -> None:
    """Event times have one-second grain: a setWeight step done in the second of the update
    (listed first by the API server) still belongs to the new revision (seen on the dashboard)."""
    data = _fixture("paused")
    same_second = "2026-12-03T12:00:00Z"
    step_done = next(e for e in data["events"] if e["reason"] == "RolloutStepCompleted")
    step_done["lastTimestamp"] = same_second
    data["events"].remove(step_done)
    data["events"].insert(0, step_done)
    first = _explain(data)["steps"][0]
    assert (first["state"], first["startedAt"], first["endedAt"]) == ("done", same_second, same_second)


def test_rollback_to_this_revision_keeps_its_own_steps_and_says_why() -> None:
    """An update to revision 4 that is aborted and rolled back to revision 3's ReplicaSet: the
    log of revision 3 stops where revision 4 opened (seen in make demo's act 3, where revision 4's
    step times were mixed into revision 3's), and the rollback is the reason given."""
    data = _fixture("completed")
    data["events"] += [
        _event("RolloutUpdated", "Rollout updated to revision 4", "2026-12-03T12:05:00Z"),
        _event("NewReplicaSetCreated", "Created ReplicaSet model-7a1b (revision 4)", "2026-12-03T12:05:00Z"),
        _event("RolloutStepCompleted", "Rollout step 1/3 completed (setWeight: 50)", "2026-12-03T12:05:20Z"),
        _event("RolloutAborted", "Rollout aborted update to revision 4: analysis failed", "2026-12-03T12:06:00Z"),
        _event("SkipSteps", "Rollback to stable ReplicaSet model-6d4f: skipping all steps", "2026-12-03T12:07:00Z"),
    ]
    log = _explain(data)
    assert log["summary"] == "Fully promoted: rolled back to the stable ReplicaSet, steps skipped"
    assert log["steps"] == data["expected"]["steps"]


def test_an_update_in_the_second_of_the_initial_deploy_keeps_its_steps() -> None:
    """The initial deploy's opening Events and the update's fall in one second (e2e: the image
    is set as soon as the Rollout is Healthy): revision 2's log starts at its own pair, and its
    steps keep their times (the window of revision 1 must not swallow them)."""
    data = _fixture("paused")
    same_second = "2026-12-03T12:00:00Z"
    data["events"].insert(1, _event("NewReplicaSetCreated", "Created ReplicaSet model-5c9a (revision 1)",
                                    same_second))
    for event in data["events"]:
        if event["reason"] in ("RolloutUpdated", "RolloutCompleted", "NewReplicaSetCreated"):
            event["lastTimestamp"] = same_second
    first = _explain(data)["steps"][0]
    assert first["state"] == "done" and first["startedAt"] == same_second
    assert first["endedAt"] == "2026-12-03T12:02:10Z"
