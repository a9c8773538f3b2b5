"""The sync module's caches: live state from the drift watch, cached renders and comparison verdicts.

gitops/watch.py (``DriftWatcher``'s cache, ``CachedPort``), gitops/cache.py and the
controller's use of them (gitops/controller.py), through the controller tests' fake
cluster with resourceVersions: an unchanged manifest at an unchanged live version
makes no dry run; a changed one (or a hard refresh) does.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from common.shell import VersionTracker
from gitops.api import ApplicationSource, parse_application
from gitops.cache import LRU, digest
from gitops.clusters import home_only
from gitops.plan import TRACKING_ID_ANNOTATION, ResourceKey, key_of
from gitops.watch import CachedPort, DriftWatcher
from tests.test_gitops_controller import KEY, Env, FakeKube, cm

CONFIG = ResourceKey("", "ConfigMap", "dest", "config")


class VersionedKube(FakeKube):
    """FakeKube whose writes bump a resourceVersion, counting dry runs (thread-safe enough)."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 100
        self.dry_runs: list[str] = []
        self.gets = 0
        self.delay = 0.0
        self.lock = threading.Lock()

    def get(self, api_version: str, key: ResourceKey) -> dict[str, Any] | None:
        self.gets += 1
        return super().get(api_version, key)

    def apply(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        time.sleep(self.delay)
        with self.lock:
            if dry_run:
                self.dry_runs.append(str(manifest["metadata"]["name"]))
                return super().apply(manifest, dry_run=True)
            key = key_of(manifest)
            before = self.objects.get(key)
            out = super().apply(manifest)
            unchanged = before is not None and {k: v for k, v in before.items() if k != "metadata"} == {
                k: v for k, v in out.items() if k != "metadata"}
            version = before["metadata"]["resourceVersion"] if unchanged and before else self.bump()
            self.objects[key]["metadata"]["resourceVersion"] = version
            return copy.deepcopy(self.objects[key])

    def bump(self) -> str:
        self.version += 1
        return str(self.version)

    def edit(self, key: ResourceKey, **data: str) -> None:
        """Someone else changes the object: a new resourceVersion, as the API server gives."""
        self.objects[key]["data"] = data
        self.objects[key]["metadata"]["resourceVersion"] = self.bump()


def synced_env(manifests: list[dict[str, Any]]) -> tuple[Env, VersionedKube]:
    env = Env(manifests)
    kube = VersionedKube()
    kube.app = env.kube.app
    env.kube = kube
    env.controller.home = kube
    env.controller.kube_for = home_only(kube)
    for _ in range(4):
        env.reconcile()
    assert env.status["sync"]["status"] == "Synced"
    return env, kube


def counting_render(env: Env) -> list[int]:
    calls = [0]

    def render(source: ApplicationSource, root: Path, *, app_name: str, namespace: str,
               value_roots: Mapping[str, Path] | None = None) -> list[dict[str, Any]]:
        calls[0] += 1
        return copy.deepcopy(env.manifests)

    env.controller.render = render
    return calls


# --- comparison verdicts -------------------------------------------------------------------------


def test_an_unchanged_app_is_compared_without_a_dry_run() -> None:
    env, kube = synced_env([cm("config", 0, a="1"), cm("other", 0, b="2")])
    kube.dry_runs.clear()
    env.reconcile()
    assert kube.dry_runs == []
    assert env.status["sync"]["status"] == "Synced"


@pytest.mark.parametrize("change", ["live edited", "manifest changed", "hard refresh"])
def test_a_changed_live_version_manifest_or_a_hard_refresh_runs_the_dry_run_again(change: str) -> None:
    env, kube = synced_env([cm("config", 0, a="1"), cm("other", 0, b="2")])
    env.controller.reconcile(KEY, copy.deepcopy(kube.app))
    kube.dry_runs.clear()
    app = copy.deepcopy(kube.app)
    if change == "live edited":
        kube.edit(CONFIG, a="edited")
    elif change == "manifest changed":
        env.manifests = [cm("config", 0, a="2"), cm("other", 0, b="2")]
        env.repos.commit = "b" * 40
    else:
        app["metadata"]["annotations"] = {"argocd.argoproj.io/refresh": "hard"}
    env.controller.reconcile(KEY, app)
    expected = ["config", "other"] if change == "hard refresh" else ["config"]
    assert sorted(kube.dry_runs) == expected


@pytest.mark.parametrize("self_heal", [False, True], ids=["reported", "healed"])
def test_drift_is_still_seen_with_the_cache(self_heal: bool) -> None:
    env, kube = synced_env([cm("config", 0, a="1")])
    kube.app["spec"]["syncPolicy"]["automated"]["selfHeal"] = self_heal
    kube.edit(CONFIG, a="edited")
    env.reconcile()
    if self_heal:
        env.reconcile()
        assert kube.objects[CONFIG]["data"] == {"a": "1"}  # Git applied again
    else:
        assert env.status["sync"]["status"] == "OutOfSync"
        assert kube.objects[CONFIG]["data"] == {"a": "edited"}


# --- rendered manifests --------------------------------------------------------------------------


def test_an_unchanged_commit_is_not_rendered_again_and_a_new_one_is() -> None:
    env, kube = synced_env([cm("config", 0, a="1")])
    calls = counting_render(env)
    env.reconcile()
    env.reconcile()
    assert calls == [0]
    env.repos.commit = "c" * 40
    env.manifests = [cm("config", 0, a="3")]
    env.reconcile()
    assert calls == [1]
    env.reconcile()
    assert calls == [1]
    assert kube.objects[CONFIG]["data"] == {"a": "3"}


def test_a_cached_render_is_a_copy() -> None:
    env, kube = synced_env([cm("config", 0, a="1")])
    app = parse_application(kube.app)
    first = env.controller._render_sources(app, None)[0]
    first[0]["data"]["a"] = "changed by the reconcile"
    assert env.controller._render_sources(app, None)[0][0]["data"] == {"a": "1"}


# --- concurrency keeps the order -----------------------------------------------------------------


def test_one_waves_parallel_applies_keep_the_serial_result_order() -> None:
    names = [f"c{i:02d}" for i in range(20)]
    env = Env([cm(n, 0, v=n) for n in reversed(names)])
    kube = VersionedKube()
    kube.app, env.kube, env.controller.home = env.kube.app, kube, kube
    env.controller.kube_for = home_only(kube)
    kube.delay = 0.01
    for _ in range(3):
        env.reconcile()
    op = env.status["operationState"]
    assert op["phase"] == "Succeeded"
    assert [r["name"] for r in op["syncResult"]["resources"]] == ["dest", *names]


# --- reconciledAt --------------------------------------------------------------------------------


def test_a_no_op_refresh_stamps_reconciled_at_and_its_echo_does_not() -> None:
    env, kube = synced_env([cm("config", 0)])
    first = env.status["reconciledAt"]
    app = copy.deepcopy(kube.app)
    app["metadata"]["annotations"] = {"argocd.argoproj.io/refresh": "normal"}
    kube.app = app
    env.reconcile()
    assert "argocd.argoproj.io/refresh" not in (kube.app["metadata"].get("annotations") or {})
    stamped = env.status["reconciledAt"]
    assert stamped != first
    before = copy.deepcopy(kube.app)
    env.reconcile()  # the echo of that write: nothing to stamp
    assert kube.app == before


# --- the watch's live-state cache ----------------------------------------------------------------


def tracked(name: str, version: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "data": data,
            "metadata": {"name": name, "namespace": "dest", "uid": name, "resourceVersion": version,
                         "annotations": {TRACKING_ID_ANNOTATION: f"app:/ConfigMap:dest/{name}"}}}


def untracked(name: str, version: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "dest", "uid": name, "resourceVersion": version}}


def watcher() -> tuple[DriftWatcher, list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []
    return DriftWatcher(None, seen.append, control_namespace="argocd"), seen


def test_the_cache_answers_only_once_the_kind_is_listed() -> None:
    w, _ = watcher()
    assert w.lookup("v1", CONFIG) == (False, None)
    w._relisted("v1", "ConfigMap", None, [tracked("config", "5", a="1"), untracked("plain", "6")])
    known, obj = w.lookup("v1", CONFIG)
    assert known and obj is not None and obj["metadata"]["resourceVersion"] == "5"
    assert w.lookup("v1", ResourceKey("", "ConfigMap", "dest", "plain")) == (False, None)  # body not kept
    assert w.lookup("v1", ResourceKey("", "ConfigMap", "dest", "absent")) == (True, None)
    assert w.lookup("apps/v1", ResourceKey("apps", "Deployment", "dest", "d")) == (False, None)


@pytest.mark.parametrize(("event", "version", "expected"), [
    ("MODIFIED", "9", "9"),
    ("MODIFIED", "4", "5"),  # an older event never replaces a newer object
    ("DELETED", "9", None),
], ids=["newer-replaces", "older-ignored", "deleted-gone"])
def test_watch_events_keep_the_last_object(event: str, version: str, expected: str | None) -> None:
    w, _ = watcher()
    w._relisted("v1", "ConfigMap", None, [tracked("config", "5", a="1")])
    w._cache(event, "v1", tracked("config", version, a="2"))
    known, obj = w.lookup("v1", CONFIG)
    assert known
    assert (obj["metadata"]["resourceVersion"] if obj else None) == expected


def test_a_relist_drops_objects_deleted_meanwhile() -> None:
    w, _ = watcher()
    w._relisted("v1", "ConfigMap", None, [tracked("config", "5"), tracked("gone", "6")])
    w._relisted("v1", "ConfigMap", None, [tracked("config", "7")])
    assert w.lookup("v1", ResourceKey("", "ConfigMap", "dest", "gone")) == (True, None)


def test_our_own_apply_is_cached_and_its_event_queues_nothing() -> None:
    w, seen = watcher()
    w._relisted("v1", "ConfigMap", None, [tracked("config", "5", a="1")])
    w._event("ADDED", tracked("config", "5", a="1"), initial=True)
    w.applied(tracked("config", "8", a="2"))
    assert w.lookup("v1", CONFIG)[1]["metadata"]["resourceVersion"] == "8"  # type: ignore[index]
    own = w._cache("MODIFIED", "v1", tracked("config", "8", a="2"))
    w._event("MODIFIED", tracked("config", "8", a="2"), initial=False, own=own)
    assert seen == []
    other = tracked("config", "9", a="edited")  # then someone edits it: that one queues the app
    w._event("MODIFIED", other, initial=False, own=w._cache("MODIFIED", "v1", other))
    assert seen == [("argocd", "app")]


def test_the_cached_port_reads_the_cache_and_falls_back_to_get() -> None:
    w, _ = watcher()
    inner = VersionedKube()
    inner.objects[CONFIG] = tracked("config", "3")
    port = CachedPort(inner, w)
    assert port.get("v1", CONFIG) is not None and inner.gets == 1  # not listed yet: a GET
    w._relisted("v1", "ConfigMap", None, [tracked("config", "5")])
    assert port.get("v1", CONFIG)["metadata"]["resourceVersion"] == "5"  # type: ignore[index]
    assert inner.gets == 1
    port.apply(cm("config", 0, a="x") | {"metadata": {"name": "config", "namespace": "dest", "annotations": {
        TRACKING_ID_ANNOTATION: "app:/ConfigMap:dest/config"}}})
    assert port.get("v1", CONFIG)["data"] == {"a": "x"}  # type: ignore[index]


# --- the LRU -------------------------------------------------------------------------------------


def test_the_lru_keeps_the_most_recent_entries() -> None:
    lru: LRU[int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == (1, None, 3)
    assert digest({"x": 1, "y": [1, 2]}) == digest({"y": [1, 2], "x": 1})


# --- the echo of our own status write ------------------------------------------------------------


class FakeController:
    def __init__(self, delay: float | None) -> None:
        self.calls = 0
        self.delay = delay

    def reconcile(self, key: tuple[str, str], body: Mapping[str, Any] | None) -> float | None:
        self.calls += 1
        return self.delay


@pytest.mark.parametrize(("body_version", "wanted", "delay", "reconciled"), [
    ("7", False, 120.0, False),   # our write seen back, nothing due: skipped
    ("7+refresh", False, 120.0, True),  # a refresh annotation set between our read and our write
    ("7+spec", False, 120.0, True),     # a spec change merged into our write's result
    ("8", False, 120.0, True),    # someone else wrote after us
    ("7", True, 120.0, True),     # the drift watch / webhook / poll asked for it
    ("7", False, 0.0, True),      # the requeue it asked for is due
    ("7", False, None, False),    # nothing will be due: still only the echo
], ids=["echo", "echo-with-refresh", "echo-with-spec-change", "foreign-write", "wanted", "due",
        "no-requeue"])
def test_the_echo_of_our_own_write_is_not_reconciled(
        monkeypatch: pytest.MonkeyPatch, body_version: str, wanted: bool, delay: float | None,
        reconciled: bool) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from gitops import handlers

    key = ("argocd", "echo-app")
    fake = FakeController(delay)
    monkeypatch.setattr(handlers.STATE, "controller", fake)
    monkeypatch.setattr(handlers.STATE, "pool", ThreadPoolExecutor(1))
    bodies: dict[str, Any] = {handlers.INDEX_ID: {key: [{"metadata": {"resourceVersion": "7"}}]}}
    monkeypatch.setattr(handlers.SHELL, "indices", bodies)
    monkeypatch.setattr(handlers, "WANTED", set())
    monkeypatch.setattr(handlers, "NEXT_DUE", {})
    monkeypatch.setattr(handlers, "TRACKER", VersionTracker())
    handlers.TRACKER.record(key, {"metadata": {"resourceVersion": "7"}})
    monkeypatch.setattr(handlers.SHELL, "tracker", handlers.TRACKER)

    asyncio.run(handlers.reconcile(key))  # the first one always runs: it sets when the next is due
    assert fake.calls == 1
    echo: dict[str, Any] = {"metadata": {"resourceVersion": body_version.split("+")[0]}}
    if body_version.endswith("+refresh"):
        echo["metadata"]["annotations"] = {"argocd.argoproj.io/refresh": "normal"}
    if body_version.endswith("+spec"):
        echo["spec"] = {"project": "other"}
    bodies[handlers.INDEX_ID][key] = [echo]
    if wanted:
        handlers.WANTED.add(key)
    asyncio.run(handlers.reconcile(key))
    assert fake.calls == (2 if reconciled else 1)
