"""Unit tests of views/rollout.py: status, step, weights, tags and the JSON shape (no cluster)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from views import rollout as rv

FIXTURES = Path(__file__).parent / "fixtures" / "plugin"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def load(name: str) -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all((FIXTURES / name).read_text()):
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def build(name: str, edit: Any = None) -> rv.RolloutView:
    objects = load(name)
    rollout = objects["Rollout"][0]
    if edit is not None:
        edit(rollout)
    return rv.build(rollout, replicasets=objects.get("ReplicaSet", []), pods=objects.get("Pod", []),
                    analysis_runs=objects.get("AnalysisRun", []), now=NOW)


def _set(path: str, value: object) -> Any:
    def edit(rollout: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = rollout
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return edit


@pytest.mark.parametrize(("fixture", "edit", "status", "message"), [
    ("canary-paused.yaml", None, "Paused", "CanaryPauseStep"),
    ("healthy-routed.yaml", None, "Healthy", ""),
    ("aborted.yaml", None, "Degraded", "RolloutAborted: Rollout aborted update to revision 2: error rate too high"),
    ("bluegreen.yaml", None, "Progressing", rv.MSG_SPEC_NOT_OBSERVED),
    ("canary-paused.yaml", _set("status.phase", None), "Progressing", rv.MSG_NOT_OBSERVED),
    ("canary-paused.yaml", _set("status.conditions", [{"type": "InvalidSpec", "status": "True", "message": "bad"}]),
     "Degraded", "InvalidSpec: bad"),
], ids=["paused", "healthy", "aborted-is-degraded", "generation-not-observed", "no-phase-yet", "invalid-spec"])
def test_status_and_message(fixture: str, edit: Any, status: str, message: str) -> None:
    view = build(fixture, edit)
    assert (view.status, view.message) == (status, message)


@pytest.mark.parametrize(("fixture", "edit", "step", "set_weight", "actual"), [
    ("canary-paused.yaml", None, 1, 25, 25),  # basic canary: 1 of 4 available pods
    ("canary-paused.yaml", _set("status.currentStepIndex", 0), 0, 25, 25),
    ("canary-paused.yaml", _set("status.currentStepIndex", 4), 4, 100, 25),
    ("canary-paused.yaml", _set("status.currentStepIndex", 9), 4, 100, 25),
    ("canary-paused.yaml", _set("status.abort", True), 1, 0, 25),
    ("healthy-routed.yaml", None, 2, 100, 100),  # fully promoted: all traffic on this revision
    ("healthy-routed.yaml", _set("status.currentStepIndex", 1), 1, 10, 0),  # routed: weight in status
    ("healthy-routed.yaml", _set("status.canary.weights.canary.weight", 10), 2, 100, 100),
    ("aborted.yaml", None, 0, 0, 0),
    ("bluegreen.yaml", None, None, None, None),
], ids=["basic-step-1", "step-0", "past-last-step", "index-clamped", "aborted-zero",
        "routed-done", "routed-from-status", "done-ignores-canary-service", "aborted-fixture", "bluegreen-none"])
def test_step_and_weights(fixture: str, edit: Any, step: int | None, set_weight: int | None,
                          actual: int | None) -> None:
    view = build(fixture, edit)
    assert (view.step, view.set_weight, view.actual_weight) == (step, set_weight, actual)


def test_only_the_rollouts_own_objects_are_used() -> None:
    view = build("canary-paused.yaml")
    names = [rs.name for r in view.revisions for rs in r.replica_sets]
    runs = [run.name for r in view.revisions for run in r.analysis_runs]
    pods = [p.name for r in view.revisions for rs in r.replica_sets for p in rs.pods]
    assert names == ["demo-bbb222", "demo-aaa111", "demo-zzz000"]
    assert runs == ["demo-bbb222-3-2", "demo-aaa111-2-2"]
    assert "other-ccc333-x" not in pods and len(pods) == 4


def test_owner_with_another_uid_is_not_ours() -> None:
    objects = load("canary-paused.yaml")
    stale = copy.deepcopy(objects["ReplicaSet"][0])
    stale["metadata"]["name"] = "demo-old"
    stale["metadata"]["ownerReferences"][0]["uid"] = "u-deleted"
    view = rv.build(objects["Rollout"][0], replicasets=[stale], pods=[], analysis_runs=[], now=NOW)
    assert view.revisions == []


def test_tags_images_and_scale_down() -> None:
    view = build("canary-paused.yaml")
    tags = {rs.name: (rs.tags, rs.scale_down_at) for r in view.revisions for rs in r.replica_sets}
    assert tags == {
        "demo-bbb222": (["canary"], None),
        "demo-aaa111": (["stable"], None),
        "demo-zzz000": ([], datetime(2026, 1, 1, 12, 0, 25, tzinfo=UTC)),
    }
    assert view.images == [rv.ImageView("shop/app:green", ["canary"]), rv.ImageView("shop/app:blue", ["stable"])]


def test_scale_down_deadline_in_the_past_is_dropped() -> None:
    objects = load("canary-paused.yaml")
    later = datetime(2026, 1, 1, 12, 1, tzinfo=UTC)
    view = rv.build(objects["Rollout"][0], replicasets=objects["ReplicaSet"], pods=[], analysis_runs=[], now=later)
    assert all(rs.scale_down_at is None for r in view.revisions for rs in r.replica_sets)


@pytest.mark.parametrize(("pod", "status", "ready", "counts"), [
    ("demo-aaa111-p1", "Running", True, (1, 1)),
    ("demo-bbb222-q1", "CrashLoopBackOff", False, (1, 2)),
], ids=["running-ready", "waiting-reason-wins"])
def test_pods(pod: str, status: str, ready: bool, counts: tuple[int, int]) -> None:
    view = build("canary-paused.yaml")
    found = {p.name: p for r in view.revisions for rs in r.replica_sets for p in rs.pods}[pod]
    assert (found.status, found.ready, (found.ready_containers, found.containers)) == (status, ready, counts)


def test_terminating_pod() -> None:
    view = build("healthy-routed.yaml")
    pods = {p.name: p.status for rs in view.revisions[0].replica_sets for p in rs.pods}
    assert pods == {"web-abc-1": "Running", "web-abc-2": "Terminating"}


def test_analysis_counts_are_summed_over_metrics() -> None:
    run = build("canary-paused.yaml").revisions[0].analysis_runs[0]
    assert run == rv.RunView("demo-bbb222-3-2", "Running", successful=5, failed=1, inconclusive=1, error=2)


@pytest.mark.parametrize(("step", "text"), [
    ({"setWeight": 20}, "setWeight: 20"),
    ({"pause": {}}, "pause"),
    ({"pause": {"duration": 30}}, "pause: 30s"),
    ({"pause": {"duration": "1h"}}, "pause: 1h"),
    ({"analysis": {"templates": [{"templateName": "a"}, {"templateName": "b"}]}}, "analysis: templates a,b"),
    ({"setCanaryScale": {"replicas": 3}}, "setCanaryScale: replicas 3"),
    ({"setCanaryScale": {"matchTrafficWeight": True}}, "setCanaryScale: matchTrafficWeight"),
    ({"setHeaderRoute": {"name": "h"}}, "setHeaderRoute: h"),
], ids=["weight", "pause-forever", "pause-int", "pause-text", "analysis", "scale", "match", "header"])
def test_step_text(step: Mapping[str, Any], text: str) -> None:
    assert rv.step_text(step) == text


@pytest.mark.parametrize(("index", "states"), [
    (0, ["current", "next", "next", "next"]),
    (2, ["done", "done", "current", "next"]),
    (4, ["done", "done", "done", "done"]),
], ids=["first", "middle", "finished"])
def test_steps_states(index: int, states: list[str]) -> None:
    rollout = load("canary-paused.yaml")["Rollout"][0]
    rollout["status"]["currentStepIndex"] = index
    assert [s.state for s in rv.steps(rollout)] == states
    assert [s.index for s in rv.steps(rollout)] == [0, 1, 2, 3]


def test_to_dict_has_exactly_the_documented_keys() -> None:
    data = rv.to_dict(build("canary-paused.yaml"))
    assert list(data) == ["namespace", "name", "status", "message", "strategy", "step", "steps", "setWeight",
                          "actualWeight", "images", "replicas", "revisions"]
    assert list(data["replicas"]) == ["desired", "current", "updated", "ready", "available"]
    revision = data["revisions"][0]
    assert list(revision) == ["revision", "replicaSets", "analysisRuns"]
    assert list(revision["replicaSets"][0]) == ["name", "tags", "desired", "ready", "scaleDownAt", "pods"]
    assert revision["replicaSets"][0]["pods"][0] == {
        "name": "demo-bbb222-q1", "status": "CrashLoopBackOff", "ready": False, "readyContainers": 1,
        "containers": 2, "createdAt": "2026-01-01T11:58:30Z"}
    assert list(revision["analysisRuns"][0]) == ["name", "phase", "successful", "failed", "inconclusive", "error"]
    assert data["revisions"][2]["replicaSets"][0]["scaleDownAt"] == "2026-01-01T12:00:25Z"
    summary = rv.summary_dict(build("canary-paused.yaml"))
    assert "revisions" not in summary and {k: v for k, v in data.items() if k != "revisions"} == summary
