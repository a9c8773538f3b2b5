"""gitops/plan.py: phases, waves, kind order, namespace first, prune order, CreateNamespace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.plan import (
    TRACKING_ID_ANNOTATION,
    PlanOptions,
    ResourceKey,
    SyncPhase,
    TaskAction,
    build_plan,
    is_tracked_by,
    key_of,
    options_from,
    parse_tracking_id,
    target_objects,
    tracking_id,
)

SEED_WAVES = Path(__file__).parent / "fixtures" / "gitops" / "sync-waves.yaml"


def obj(kind: str, name: str, *, api: str = "v1", wave: int | None = None,
        **notes: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    annotations = dict(notes)
    if wave is not None:
        annotations["argocd.argoproj.io/sync-wave"] = str(wave)
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": api, "kind": kind, "metadata": meta}


def order(plan: Any) -> list[tuple[str, int, str, str]]:
    return [(step.phase.value, step.wave, task.key.kind, task.key.name)
            for step in plan.steps for task in step.tasks]


def plan_of(manifests: list[dict[str, Any]], live: dict[ResourceKey, Any] | None = None,
            **options: Any) -> Any:
    targets = target_objects(manifests, app="app", namespace="dest")
    return build_plan(targets, live or {}, app="app", namespace="dest",
                      options=PlanOptions(**options), revision="0123456789abcdef", started_at=1700)


def test_the_seed_sync_waves_run_0_to_5_in_order() -> None:
    docs = [d for d in yaml.safe_load_all(SEED_WAVES.read_text()) if d]
    plan = plan_of(docs)
    assert [(s.wave, [t.key.kind for t in s.tasks]) for s in plan.steps] == [
        (0, ["Namespace"]), (1, ["Secret"]), (2, ["PersistentVolumeClaim"]), (3, ["Service"]),
        (4, ["Deployment"]), (5, ["HorizontalPodAutoscaler"]),
    ]


@pytest.mark.parametrize(("manifests", "expected"), [
    pytest.param([obj("Deployment", "a", api="apps/v1"), obj("Service", "b"), obj("ConfigMap", "c")],
                 [("Sync", 0, "ConfigMap", "c"), ("Sync", 0, "Service", "b"),
                  ("Sync", 0, "Deployment", "a")], id="kind order inside a wave"),
    pytest.param([obj("ConfigMap", "z"), obj("ConfigMap", "a")],
                 [("Sync", 0, "ConfigMap", "a"), ("Sync", 0, "ConfigMap", "z")], id="then name"),
    pytest.param([obj("Widget", "w", api="example.com/v1"), obj("Deployment", "d", api="apps/v1")],
                 [("Sync", 0, "Deployment", "d"), ("Sync", 0, "Widget", "w")],
                 id="unknown kinds last"),
    pytest.param([obj("ConfigMap", "late", wave=2), obj("ConfigMap", "early", wave=-1)],
                 [("Sync", -1, "ConfigMap", "early"), ("Sync", 2, "ConfigMap", "late")],
                 id="negative waves first"),
    pytest.param([obj("ConfigMap", "x", **{"argocd.argoproj.io/sync-wave": "soon"})],
                 [("Sync", 0, "ConfigMap", "x")], id="a wave that is no integer is 0"),
    pytest.param([obj("Job", "migrate", api="batch/v1", **{"argocd.argoproj.io/hook": "PreSync"}),
                  obj("Job", "smoke", api="batch/v1", **{"argocd.argoproj.io/hook": "PostSync"}),
                  obj("ConfigMap", "c", wave=5)],
                 [("PreSync", 0, "Job", "migrate"), ("Sync", 5, "ConfigMap", "c"),
                  ("PostSync", 0, "Job", "smoke")], id="hook phases around the sync"),
    pytest.param([obj("Job", "both", api="batch/v1", **{"argocd.argoproj.io/hook": "PreSync,PostSync"})],
                 [("PreSync", 0, "Job", "both"), ("PostSync", 0, "Job", "both")],
                 id="one hook in two phases"),
    pytest.param([obj("ConfigMap", "skipped", **{"argocd.argoproj.io/hook": "Skip"})], [],
                 id="Skip is never applied"),
    pytest.param([obj("ConfigMap", "weighted", **{"helm.sh/hook-weight": "3"})],
                 [("Sync", 3, "ConfigMap", "weighted")], id="helm hook weight as the wave"),
])
def test_order(manifests: list[dict[str, Any]], expected: list[tuple[str, int, str, str]]) -> None:
    assert order(plan_of(manifests)) == expected


def test_a_namespace_moves_in_front_of_the_first_task_in_it() -> None:
    ns = obj("Namespace", "other", wave=3)
    cm = obj("ConfigMap", "c", wave=1)
    cm["metadata"]["namespace"] = "other"
    assert order(plan_of([ns, cm])) == [("Sync", 1, "Namespace", "other"), ("Sync", 1, "ConfigMap", "c")]


def test_a_crd_moves_in_front_of_its_first_resource() -> None:
    crd = obj("CustomResourceDefinition", "widgets.example.com", api="apiextensions.k8s.io/v1", wave=4)
    crd["spec"] = {"group": "example.com", "names": {"kind": "Widget"}}
    widget = obj("Widget", "w", api="example.com/v1", wave=1)
    assert order(plan_of([crd, widget]))[0] == ("Sync", 1, "CustomResourceDefinition", "widgets.example.com")


def test_a_hook_with_generate_name_gets_argo_cds_deterministic_name() -> None:
    hook = {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"generateName": "migrate-", "annotations": {"argocd.argoproj.io/hook": "PreSync"}}}
    (task,) = plan_of([hook]).tasks
    assert task.key.name == "migrate-0123456-presync-1700"
    assert task.hook and task.hook_delete_policies == ("BeforeHookCreation",)
    assert TRACKING_ID_ANNOTATION not in (task.manifest or {})["metadata"].get("annotations", {})


def test_sync_fail_hooks_are_kept_apart() -> None:
    plan = plan_of([obj("Job", "cleanup", api="batch/v1", **{"argocd.argoproj.io/hook": "SyncFail",
                   "argocd.argoproj.io/hook-delete-policy": "HookSucceeded"})])
    assert plan.steps == ()
    assert [t.key.name for t in plan.sync_fail] == ["cleanup"]
    assert plan.sync_fail[0].hook_delete_policies == ("HookSucceeded",)


def test_targets_get_the_destination_namespace_and_a_tracking_id() -> None:
    cm, ns = target_objects([obj("ConfigMap", "c"), {**obj("Namespace", "n"),
                             "metadata": {"name": "n", "namespace": "x"}}], app="app", namespace="dest")
    assert cm["metadata"]["namespace"] == "dest"
    assert cm["metadata"]["annotations"][TRACKING_ID_ANNOTATION] == "app:/ConfigMap:dest/c"
    assert "namespace" not in ns["metadata"]
    assert ns["metadata"]["annotations"][TRACKING_ID_ANNOTATION] == "app:/Namespace:/n"


@pytest.mark.parametrize(("value", "expected"), [
    ("app:apps/Deployment:ns/web", ("app", ResourceKey("apps", "Deployment", "ns", "web"))),
    ("app:/Namespace:/ns", ("app", ResourceKey("", "Namespace", "", "ns"))),
    ("nonsense", None),
    ("app:Deployment:ns/web", None),
])
def test_tracking_id_round_trip(value: str, expected: Any) -> None:
    assert parse_tracking_id(value) == expected
    if expected:
        assert tracking_id(expected[0], expected[1]) == value


def live(kind: str, name: str, *, app: str = "app", wave: int = 0, options: str = "",
         api: str = "v1", namespace: str = "dest") -> tuple[ResourceKey, dict[str, Any]]:
    doc = obj(kind, name, api=api, wave=wave)
    doc["metadata"]["namespace"] = namespace
    notes = doc["metadata"].setdefault("annotations", {})
    notes[TRACKING_ID_ANNOTATION] = tracking_id(app, key_of(doc))
    if options:
        notes["argocd.argoproj.io/sync-options"] = options
    return key_of(doc), doc


def test_prune_only_what_this_app_tracks_for_itself() -> None:
    ours = live("ConfigMap", "gone")
    theirs = live("ConfigMap", "other", app="another")
    copied_key, copied = live("ConfigMap", "copy")
    copied["metadata"]["annotations"][TRACKING_ID_ANNOTATION] = "app:/ConfigMap:dest/original"
    plan = plan_of([obj("ConfigMap", "kept")], dict([ours, theirs, (copied_key, copied)]), prune=True)
    assert [(t.action, t.key.name) for t in plan.tasks] == [
        (TaskAction.PRUNE, "gone"), (TaskAction.APPLY, "kept")]
    assert is_tracked_by(ours[1], "app") and not is_tracked_by(copied, "app")


def test_prune_runs_in_reverse_wave_order() -> None:
    resources = dict([live("ConfigMap", "w1", wave=1), live("ConfigMap", "w3", wave=3),
                      live("ConfigMap", "w5", wave=5)])
    plan = plan_of([obj("ConfigMap", "kept", wave=0)], resources, prune=True)
    prunes = [(s.wave, t.key.name) for s in plan.steps for t in s.tasks if t.action is TaskAction.PRUNE]
    assert prunes == [(1, "w5"), (3, "w3"), (5, "w1")]


def test_prune_last_goes_after_the_last_sync_wave() -> None:
    resources = dict([live("ConfigMap", "old", wave=0, options="PruneLast=true")])
    plan = plan_of([obj("ConfigMap", "a", wave=2)], resources, prune=True)
    assert order(plan) == [("Sync", 2, "ConfigMap", "a"), ("Sync", 3, "ConfigMap", "old")]


@pytest.mark.parametrize(("prune", "options"), [
    pytest.param(False, "", id="prune off"),
    pytest.param(True, "Prune=false", id="Prune=false on the live object"),
])
def test_prune_skipped(prune: bool, options: str) -> None:
    plan = plan_of([], dict([live("ConfigMap", "old", options=options)]), prune=prune)
    assert plan.steps == ()
    assert [t.key.name for t in plan.prune_skipped] == ["old"]


def test_create_namespace_is_a_presync_task_when_missing() -> None:
    targets = target_objects([obj("ConfigMap", "c")], app="app", namespace="dest")
    plan = build_plan(targets, {}, app="app", namespace="dest",
                      options=PlanOptions(create_namespace=True), namespace_exists=False)
    assert order(plan) == [("PreSync", 0, "Namespace", "dest"), ("Sync", 0, "ConfigMap", "c")]
    assert plan.namespace_created == "dest" and not plan.tasks[0].tracked


def test_create_namespace_leaves_a_namespace_in_git_alone() -> None:
    targets = target_objects([obj("Namespace", "dest"), obj("ConfigMap", "c")], app="app", namespace="dest")
    plan = build_plan(targets, {}, app="app", namespace="dest",
                      options=PlanOptions(create_namespace=True), namespace_exists=False)
    assert plan.namespace_created is None
    assert order(plan) == [("Sync", 0, "Namespace", "dest"), ("Sync", 0, "ConfigMap", "c")]


def test_apply_out_of_sync_only() -> None:
    targets = target_objects([obj("ConfigMap", "same"), obj("ConfigMap", "changed")], app="app",
                             namespace="dest")
    changed = ResourceKey("", "ConfigMap", "dest", "changed")
    plan = build_plan(targets, {}, app="app", namespace="dest",
                      options=PlanOptions(apply_out_of_sync_only=True, out_of_sync=frozenset({changed})))
    assert [t.key for t in plan.tasks] == [changed]


def test_options_from_sync_options() -> None:
    opts = options_from(["CreateNamespace=true", "PruneLast=true"], prune=True)
    assert opts == PlanOptions(prune=True, prune_last=True, create_namespace=True)
    assert SyncPhase.PRE_SYNC.value == "PreSync"
