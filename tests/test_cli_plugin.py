"""Unit tests of cli/plugin.py: golden header and tree (terminal and plain), the list table,
-o json, ``status`` exit codes and ``--watch`` with a stand-in feed (no cluster).

UPDATE_GOLDEN=1 rewrites the files under tests/golden/plugin/ instead of comparing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console, RenderableType
from rich.table import Table

from cli import plugin
from cli.main import build_parser
from views import rollout as rv

FIXTURES = Path(__file__).parent / "fixtures" / "plugin"
GOLDEN = Path(__file__).parent / "golden" / "plugin"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WIDTH = 100
SCENARIOS = ["canary-paused", "healthy-routed", "aborted", "bluegreen"]


def snapshot_of(name: str) -> plugin.Snapshot:
    docs = list(yaml.safe_load_all((FIXTURES / f"{name}.yaml").read_text()))
    kinds: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return plugin.Snapshot(rollout=kinds["Rollout"][0], replicasets=kinds.get("ReplicaSet", []),
                           pods=kinds.get("Pod", []), analysis_runs=kinds.get("AnalysisRun", []))


def render(renderable: RenderableType, *, terminal: bool) -> str:
    out = io.StringIO()
    if terminal:
        console = Console(file=out, force_terminal=True, color_system="standard", width=WIDTH, highlight=False)
    else:
        console = plugin.make_console(file=out, terminal=False, width=WIDTH)
    if isinstance(renderable, Table):
        plugin.print_table(console, renderable)
    else:
        console.print(renderable)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1"
    assert text == path.read_text()


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "plain"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_get_rollout_golden(scenario: str, terminal: bool) -> None:
    snap = snapshot_of(scenario)
    view = plugin.view_of(snap, now=NOW)
    screen = plugin.rollout_screen(view, fancy=terminal, now=NOW, wide=scenario == "canary-paused",
                                   raw=snap.rollout)
    text = render(screen, terminal=terminal)
    check_golden(f"{scenario}.{'terminal' if terminal else 'plain'}.txt", text)
    assert ("\x1b[" in text) == terminal  # colours only on a terminal
    assert ("✔" in text or "॥" in text or "✖" in text or "◌" in text) == terminal  # icons too


def _views() -> list[rv.RolloutView]:
    snaps = [snapshot_of(s) for s in SCENARIOS]
    return plugin.list_views([s.rollout for s in snaps if s.rollout],
                             [rs for s in snaps for rs in s.replicasets], now=NOW)


@pytest.mark.parametrize(("all_namespaces", "wide", "terminal"), [
    (False, False, False), (True, False, False), (True, True, False), (False, False, True),
], ids=["plain", "all-namespaces", "wide", "terminal"])
def test_list_rollouts_golden(all_namespaces: bool, wide: bool, terminal: bool) -> None:
    table = plugin.rollouts_table(_views(), fancy=terminal, namespaces=all_namespaces, wide=wide)
    text = render(table, terminal=terminal)
    check_golden(f"list{'-A' if all_namespaces else ''}{'-wide' if wide else ''}"
                 f".{'terminal' if terminal else 'plain'}.txt", text)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert plain.split()[: 2 if all_namespaces else 1] == (["NAMESPACE", "NAME"] if all_namespaces else ["NAME"])


def test_list_views_use_only_their_namespace_replicasets() -> None:
    views = {v.name: v for v in _views()}
    assert views["demo"].actual_weight == 25
    assert views["web"].actual_weight == 100
    assert [v.name for v in _views()] == ["web", "api", "bg", "demo"]  # prod/web sorts first


def parse(argv: Sequence[str]) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


class StandInFeed:
    """A stand-in for KubeFeed: hands out a fixed sequence of snapshots, one per wait()."""

    def __init__(self, snapshots: Sequence[plugin.Snapshot], *, interrupt_at_end: bool = False) -> None:
        self.snapshots = list(snapshots)
        self.position = 0
        self.started = self.stopped = False
        self.interrupt_at_end = interrupt_at_end
        self.waits: list[float | None] = []

    def start(self) -> None:
        self.started = True

    def snapshot(self) -> plugin.Snapshot:
        return self.snapshots[self.position]

    def wait(self, timeout: float | None) -> bool:
        self.waits.append(timeout)
        if self.position + 1 < len(self.snapshots):
            self.position += 1
            return True
        if self.interrupt_at_end:
            raise KeyboardInterrupt
        return False

    def stop(self) -> None:
        self.stopped = True


def test_get_output_json() -> None:
    out = io.StringIO()
    args = parse(["get", "ro", "demo", "-n", "shop", "-o", "json"])
    code = plugin.run_get(args, feed=StandInFeed([snapshot_of("canary-paused")]),
                          console=plugin.make_console(file=out, terminal=False))
    data = json.loads(out.getvalue())
    assert code == 0
    # run_get reads the clock: by now the old ReplicaSet's scale-down deadline is past.
    view = plugin.view_of(snapshot_of("canary-paused"), now=datetime.now(tz=UTC))
    assert view is not None and data == rv.to_dict(view)
    assert data["setWeight"] == 25 and data["step"] == 1


def test_get_output_yaml() -> None:
    out = io.StringIO()
    args = parse(["get", "rollout", "web", "-n", "prod", "-o", "yaml"])
    assert plugin.run_get(args, feed=StandInFeed([snapshot_of("healthy-routed")]),
                          console=plugin.make_console(file=out, terminal=False)) == 0
    assert yaml.safe_load(out.getvalue())["status"] == "Healthy"


def test_get_missing_rollout_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["get", "rollout", "nope", "-n", "shop"])
    code = plugin.run_get(args, feed=StandInFeed([plugin.Snapshot(rollout=None)]),
                          console=plugin.make_console(file=io.StringIO(), terminal=False))
    assert code == 1
    assert 'rollout "nope" not found in namespace "shop"' in capsys.readouterr().err


def test_list_output_json() -> None:
    out = io.StringIO()
    args = parse(["list", "rollouts", "-A", "-o", "json"])
    assert plugin.run_list(args, views=_views(), console=plugin.make_console(file=out, terminal=False)) == 0
    items = json.loads(out.getvalue())["items"]
    assert [i["name"] for i in items] == ["web", "api", "bg", "demo"]
    assert all("revisions" not in i for i in items)


def _with_status(name: str, phase: str, message: str = "") -> plugin.Snapshot:
    snap = snapshot_of(name)
    rollout = json.loads(json.dumps(snap.rollout))
    rollout["status"]["phase"], rollout["status"]["message"] = phase, message
    return plugin.Snapshot(rollout=rollout, replicasets=snap.replicasets)


class FakeClock:
    """Seconds that advance by ``step`` on every reading (so a timeout can run out)."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize(("phases", "watch", "timeout", "code", "last_line"), [
    ([("Progressing", "more replicas need to be updated"), ("Healthy", "")], True, 0.0, 0, "Healthy"),
    ([("Paused", "CanaryPauseStep"), ("Degraded", "RolloutAborted: too slow")], True, 0.0, 1,
     "rollout is Degraded: RolloutAborted: too slow"),
    ([("Paused", "CanaryPauseStep")], True, 5.0, 2,
     "timed out after 5s waiting for rollout to be Healthy (now Paused)"),
    ([("Progressing", "x")], False, 0.0, 2, "timed out after 0s waiting for rollout to be Healthy (now Progressing)"),
    ([("Healthy", "")], False, 0.0, 0, "Healthy"),
], ids=["healthy-0", "degraded-1", "timeout-2", "no-watch-unfinished-2", "no-watch-healthy-0"])
def test_status_exit_codes(phases: list[tuple[str, str]], watch: bool, timeout: float, code: int,
                           last_line: str) -> None:
    feed = StandInFeed([_with_status("canary-paused", p, m) for p, m in phases])
    out = io.StringIO()
    assert plugin.follow_status(feed, out, watch=watch, timeout=timeout, clock=FakeClock(1.0)) == code
    lines = out.getvalue().splitlines()
    assert lines[-1] == last_line
    assert feed.started and feed.stopped


def test_status_prints_each_change_once() -> None:
    phases = [("Progressing", "a"), ("Progressing", "a"), ("Paused", "CanaryPauseStep"), ("Healthy", "")]
    feed = StandInFeed([_with_status("canary-paused", p, m) for p, m in phases])
    out = io.StringIO()
    assert plugin.follow_status(feed, out, watch=True, timeout=0.0) == 0
    assert out.getvalue().splitlines() == ["Progressing - a", "Paused - CanaryPauseStep", "Healthy"]


def test_status_defaults_follow_argo() -> None:
    args = parse(["status", "demo"])
    assert (args.watch, args.timeout) == (True, 0.0)
    args = parse(["status", "demo", "--no-watch", "--timeout", "5m"])
    assert (args.watch, args.timeout) == (False, 300.0)


def test_watch_redraws_each_change_and_ctrl_c_exits_0() -> None:
    steps = []
    for index in (0, 1, 2):
        snap = snapshot_of("canary-paused")
        rollout = json.loads(json.dumps(snap.rollout))
        rollout["status"]["currentStepIndex"] = index
        steps.append(plugin.Snapshot(rollout=rollout, replicasets=snap.replicasets))
    feed = StandInFeed(steps, interrupt_at_end=True)
    out = io.StringIO()
    args = parse(["get", "rollout", "demo", "-n", "shop", "--watch"])
    code = plugin.run_get(args, feed=feed, console=plugin.make_console(file=out, terminal=False))
    assert code == 0 and feed.stopped
    text = out.getvalue()
    assert [f"{i}/4" in text for i in (0, 1, 2)] == [True, True, True]


def test_watch_on_a_terminal_uses_live() -> None:
    feed = StandInFeed([snapshot_of("healthy-routed")], interrupt_at_end=True)
    out = io.StringIO()
    args = parse(["get", "rollout", "web", "-n", "prod", "-w"])
    console = Console(file=out, force_terminal=True, width=WIDTH)
    assert plugin.run_get(args, feed=feed, console=console) == 0
    assert "Healthy" in out.getvalue() and "\x1b[" in out.getvalue()


@pytest.mark.parametrize("shell", ["bash", "zsh", "tcsh"])
def test_completion(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert plugin.run_completion(parse(["completion", shell])) == 0
    script = capsys.readouterr().out
    assert "tidegate" in script and "rollout" in script


@pytest.mark.parametrize(("argv", "kind"), [
    (["get", "ro", "x"], "ro"), (["get", "rollouts", "x"], "rollouts"), (["list", "ro"], "ro"),
], ids=["get-ro", "get-rollouts", "list-ro"])
def test_aliases(argv: list[str], kind: str) -> None:
    assert parse(argv).kind == kind


@pytest.mark.parametrize(("since", "text"), [
    (5, "5s"), (119, "119s"), (190, "3m10s"), (900, "15m"), (7500, "2h5m"), (90000, "1d"),
], ids=["seconds", "under-2m", "minutes", "many-minutes", "hours", "days"])
def test_age(since: int, text: str) -> None:
    from datetime import timedelta

    assert plugin.age(NOW - timedelta(seconds=since), NOW) == text


# --- KubeFeed against a stand-in for the API server ------------------------------------------


class StandInResponse:
    """A stand-in for urllib3's response: a list body, or a watch stream of JSON lines."""

    def __init__(self, body: dict[str, Any] | None = None, events: Sequence[dict[str, Any]] = ()) -> None:
        self.data = json.dumps(body or {}).encode()
        self.events = events
        self.released = False

    def stream(self, _amount: int) -> Any:
        text = b"".join(json.dumps(e).encode() + b"\n" for e in self.events)
        # Split events across chunks the way a real stream may.
        yield text[:7]
        yield text[7:]

    def release_conn(self) -> None:
        self.released = True

    def shutdown(self) -> None:
        self.released = True


class StandInApi:
    """Scripted answers for one kind: each list and each watch call takes the next one."""

    def __init__(self, lists: list[dict[str, Any]], watches: list[Any]) -> None:
        self.lists, self.watches = lists, watches
        self.calls: list[tuple[str, str | None]] = []
        self.done = __import__("threading").Event()

    def __call__(self, *_args: Any, watch: bool = False, resource_version: str | None = None, **_kw: Any) -> Any:
        self.calls.append(("watch" if watch else "list", resource_version))
        if not watch:
            return StandInResponse(body=self.lists.pop(0))
        if not self.watches:
            self.done.set()
            raise OSError("stand-in: no more watches scripted")
        answer = self.watches.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return StandInResponse(events=answer)


def _obj(name: str, version: str, phase: str = "Healthy") -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}, "status": {"phase": phase}}


def test_kube_feed_lists_then_watches_and_reestablishes() -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    rollouts = StandInApi(
        lists=[{"metadata": {"resourceVersion": "10"}, "items": [_obj("demo", "10", "Progressing")]},
               {"metadata": {"resourceVersion": "50"}, "items": [_obj("demo", "50", "Progressing")]},
               {"metadata": {"resourceVersion": "60"}, "items": [_obj("demo", "60", "Healthy")]}],
        watches=[
            [{"type": "MODIFIED", "object": _obj("demo", "11", "Paused")},
             {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}],  # server ended the watch
            [{"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}],
            ApiException(status=410),
        ],
    )
    empty = {"metadata": {"resourceVersion": "1"}, "items": []}
    others = {kind: StandInApi(lists=[dict(empty)], watches=[]) for kind in
              ("replicasets", "pods", "analysis_runs")}
    feed = plugin.KubeFeed(client.ApiClient(), "shop", "demo", calls={"rollout": rollouts, **others})
    feed.start()
    try:
        assert rollouts.done.wait(timeout=10)
        wait_ok = feed.wait(timeout=1)
        snapshot = feed.snapshot()
    finally:
        feed.stop()
    assert wait_ok
    # list at 10, watch from 10, re-watch from the bookmark's 12, ERROR 410: list (50), watch,
    # a 410 raised by the call: list (60), watch (none scripted: the stand-in reports done)
    assert rollouts.calls == [("list", None), ("watch", "10"), ("watch", "12"), ("list", None), ("watch", "50"),
                              ("list", None), ("watch", "60")]
    assert snapshot.rollout is not None and snapshot.rollout["status"]["phase"] == "Healthy"


def test_kube_feed_applies_added_modified_deleted() -> None:
    from kubernetes import client

    empty = {"metadata": {"resourceVersion": "1"}, "items": []}
    pods = StandInApi(lists=[{"metadata": {"resourceVersion": "5"}, "items": [_obj("p1", "5")]}],
                      watches=[[{"type": "ADDED", "object": _obj("p2", "6")},
                                {"type": "MODIFIED", "object": _obj("p1", "7", "Running")},
                                {"type": "DELETED", "object": _obj("p2", "8")}]])
    others = {kind: StandInApi(lists=[dict(empty)], watches=[]) for kind in ("rollout", "replicasets", "analysis_runs")}
    feed = plugin.KubeFeed(client.ApiClient(), "shop", "demo", calls={"pods": pods, **others})
    feed.start()
    try:
        assert pods.done.wait(timeout=10)
        names = {p["metadata"]["name"]: p["status"]["phase"] for p in feed.snapshot().pods}
    finally:
        feed.stop()
    assert names == {"p1": "Running"}


def test_redraws_are_at_most_five_a_second() -> None:
    import time

    feed = StandInFeed([snapshot_of("healthy-routed")] * 4, interrupt_at_end=True)
    stamps: list[float] = []
    with pytest.raises(KeyboardInterrupt):
        plugin._redraw_loop(feed, lambda: stamps.append(time.monotonic()), clock=time.monotonic)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert len(stamps) == 3 and all(gap >= plugin.REDRAW_INTERVAL - 0.01 for gap in gaps), gaps


def test_piped_get_is_the_plain_golden_without_line_end_padding() -> None:
    out = io.StringIO()
    args = parse(["get", "rollout", "api", "-n", "shop"])
    assert plugin.run_get(args, feed=StandInFeed([snapshot_of("aborted")]),
                          console=plugin.make_console(file=out, terminal=False, width=WIDTH)) == 0
    text = out.getvalue()
    assert all(line == line.rstrip() for line in text.splitlines())
    assert text == (GOLDEN / "aborted.plain.txt").read_text()  # no pods or deadlines: the clock does not matter


# --- list rollouts --watch ---------------------------------------------------------------------


class StandInListFeed:
    """A stand-in for KubeFeed(name=None): a fixed sequence of (rollouts, ReplicaSets), one per
    wait(); Ctrl-C after the last."""

    def __init__(self, listings: Sequence[tuple[list[Any], list[Any]]]) -> None:
        self.listings = list(listings)
        self.position = 0
        self.started = self.stopped = False

    def start(self) -> None:
        self.started = True

    def listing(self) -> tuple[list[Any], list[Any]]:
        return self.listings[self.position]

    def wait(self, timeout: float | None) -> bool:
        if self.position + 1 < len(self.listings):
            self.position += 1
            return True
        raise KeyboardInterrupt

    def stop(self) -> None:
        self.stopped = True


def _rollout_at(step: int, phase: str, name: str = "demo") -> tuple[dict[str, Any], list[Any]]:
    snap = snapshot_of("canary-paused")
    rollout = json.loads(json.dumps(snap.rollout))
    rollout["metadata"]["name"] = name
    rollout["status"]["currentStepIndex"], rollout["status"]["phase"] = step, phase
    return rollout, list(snap.replicasets)


def _listings() -> list[tuple[list[Any], list[Any]]]:
    """demo and other Paused at 1; demo moves to 2; nothing changes; demo Healthy at 4."""
    other, sets = _rollout_at(1, "Paused", name="other")
    states = [(1, "Paused"), (2, "Progressing"), (2, "Progressing"), (4, "Healthy")]
    return [([_rollout_at(step, phase)[0], other], sets) for step, phase in states]


def test_list_watch_prints_the_table_then_each_changed_row_and_ctrl_c_exits_0() -> None:
    feed = StandInListFeed(_listings())
    out = io.StringIO()
    args = parse(["list", "rollouts", "-n", "shop", "--watch"])
    assert plugin.run_list(args, feed=feed, console=plugin.make_console(file=out, terminal=False)) == 0
    assert feed.started and feed.stopped
    lines = out.getvalue().splitlines()
    # the header once, both rows, then only demo's row on each change (none for the unchanged state)
    assert [line.split()[:5] for line in lines] == [
        ["NAME", "STRATEGY", "STATUS", "STEP", "SET-WEIGHT"],
        ["demo", "Canary", "Paused", "1/4", "25"],
        ["other", "Canary", "Paused", "1/4", "25"],
        ["demo", "Canary", "Progressing", "2/4", "25"],
        ["demo", "Canary", "Healthy", "4/4", "100"],
    ]
    # later rows line up under the header, a longer phase included
    starts = [[m.start() for m in re.finditer(r"\S+", line)] for line in lines]
    assert all(row == starts[0] for row in starts), lines


def test_list_watch_json_prints_one_line_per_change() -> None:
    feed = StandInListFeed(_listings())
    out = io.StringIO()
    args = parse(["list", "rollouts", "-n", "shop", "-w", "-o", "json"])
    assert plugin.run_list(args, feed=feed, console=plugin.make_console(file=out, terminal=False)) == 0
    items = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(i["name"], i["status"], i["step"]) for i in items] == [
        ("demo", "Paused", 1), ("other", "Paused", 1), ("demo", "Progressing", 2), ("demo", "Healthy", 4)]


def test_list_watch_of_an_empty_namespace_says_so_and_keeps_watching(capsys: pytest.CaptureFixture[str]) -> None:
    rollout, sets = _rollout_at(0, "Progressing")
    feed = StandInListFeed([([], []), ([rollout], sets)])
    out = io.StringIO()
    args = parse(["list", "rollouts", "-n", "shop", "-w"])
    assert plugin.run_list(args, feed=feed, console=plugin.make_console(file=out, terminal=False)) == 0
    assert "No resources found in shop namespace." in capsys.readouterr().err
    assert [line.split()[:4] for line in out.getvalue().splitlines()] == [["demo", "Canary", "Progressing", "0/4"]]


def test_kube_feed_of_every_namespace_keeps_same_named_rollouts_apart() -> None:
    from kubernetes import client

    def rollout(namespace: str, version: str, phase: str) -> dict[str, Any]:
        return {"metadata": {"name": "web", "namespace": namespace, "resourceVersion": version},
                "status": {"phase": phase}}

    rollouts = StandInApi(lists=[{"metadata": {"resourceVersion": "5"}, "items": [rollout("a", "4", "Healthy")]}],
                          watches=[[{"type": "ADDED", "object": rollout("b", "6", "Paused")},
                                    {"type": "MODIFIED", "object": rollout("a", "7", "Progressing")}]])
    sets = StandInApi(lists=[{"metadata": {"resourceVersion": "5"}, "items": []}], watches=[])
    feed = plugin.KubeFeed(client.ApiClient(), None, None, calls={"rollout": rollouts, "replicasets": sets})
    feed.start()
    try:
        assert rollouts.done.wait(timeout=10)
        listed, _ = feed.listing()
    finally:
        feed.stop()
    assert sorted((r["metadata"]["namespace"], r["status"]["phase"]) for r in listed) == [
        ("a", "Progressing"), ("b", "Paused")]
