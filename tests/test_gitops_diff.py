"""gitops/diff.py: the comparison, ignoreDifferences, field owners and the rollout's fields."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gitops.diff import (
    DiffConfigError,
    FieldPath,
    IgnoreRule,
    carry_ignored,
    carry_rollout_fields,
    compare,
    field_manager,
    field_managers,
    format_path,
    ignore_extraneous,
    jq_paths,
    parse_jq,
    rollout_fields,
    rules_from_app,
    rules_from_settings,
)


def deployment(*, image: str = "model:v1", replicas: int = 2, env: list[dict[str, Any]] | None = None,
               managed: list[dict[str, Any]] | None = None, annotations: dict[str, str] | None = None,
               ) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "model", "image": image}
    if env is not None:
        container["env"] = env
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "inference", "namespace": "ml", "resourceVersion": "7", "generation": 3,
                     "annotations": annotations or {}, "managedFields": managed or []},
        "spec": {"replicas": replicas,
                 "template": {"spec": {"containers": [container, {"name": "sidecar", "image": "proxy:1"}]}}},
        "status": {"readyReplicas": 1},
    }


# --- the comparison and ignoreDifferences ------------------------------------------------------

EDIT_MANAGED = [
    {"manager": "tidegate", "operation": "Apply", "fieldsV1": {"f:spec": {
        "f:template": {"f:spec": {"f:containers": {'k:{"name":"model"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}},
    {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
    {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {"f:readyReplicas": {}}}},
]

COMPARE_CASES = [
    # (id, live changes, rules, differing paths)
    ("equal-but-status-and-volatile-metadata", {"status": {"readyReplicas": 0}, "rv": "8"}, [], []),
    ("replicas-edited", {"replicas": 5}, [], ["spec.replicas"]),
    ("image-edited", {"image": "model:v9"}, [], ["spec.template.spec.containers[0].image"]),
    ("pointer-ignores-replicas", {"replicas": 5}, [{"kind": "Deployment", "group": "apps",
                                                    "jsonPointers": ["/spec/replicas"]}], []),
    ("pointer-for-another-kind-does-not", {"replicas": 5}, [{"kind": "StatefulSet", "group": "apps",
                                                             "jsonPointers": ["/spec/replicas"]}],
     ["spec.replicas"]),
    ("pointer-for-another-name-does-not", {"replicas": 5}, [{"kind": "Deployment", "group": "apps",
                                                             "name": "other", "jsonPointers": ["/spec/replicas"]}],
     ["spec.replicas"]),
    ("pointer-into-list", {"image": "model:v9"},
     [{"kind": "Deployment", "group": "apps", "jsonPointers": ["/spec/template/spec/containers/0/image"]}], []),
    ("jq-each", {"image": "model:v9"},
     [{"kind": "Deployment", "group": "apps", "jqPathExpressions": [".spec.template.spec.containers[].image"]}],
     []),
    ("jq-select-matching-name", {"image": "model:v9"},
     [{"kind": "Deployment", "group": "apps",
       "jqPathExpressions": ['.spec.template.spec.containers[] | select(.name == "model") | .image']}], []),
    ("jq-select-other-name-keeps-drift", {"image": "model:v9"},
     [{"kind": "Deployment", "group": "apps",
       "jqPathExpressions": ['.spec.template.spec.containers[] | select(.name == "sidecar")']}],
     ["spec.template.spec.containers[0].image"]),
    ("jq-index", {"image": "model:v9"},
     [{"kind": "Deployment", "group": "apps", "jqPathExpressions": [".spec.template.spec.containers[0]"]}], []),
    ("managers-ignore-their-fields", {"replicas": 5},
     [{"kind": "Deployment", "group": "apps", "managedFieldsManagers": ["kubectl-edit"]}], []),
    ("managers-keep-others-fields", {"replicas": 5, "image": "model:v9"},
     [{"kind": "Deployment", "group": "apps", "managedFieldsManagers": ["kubectl-edit"]}],
     ["spec.template.spec.containers[0].image"]),
    ("glob-group-and-kind-match-any", {"replicas": 5}, [{"group": "*", "kind": "*",
                                                         "jsonPointers": ["/spec/replicas"]}], []),
    ("omitted-group-is-the-core-group", {"replicas": 5}, [{"kind": "Deployment", "jsonPointers": ["/spec/replicas"]}],
     ["spec.replicas"]),
]


def _live(changes: dict[str, Any]) -> dict[str, Any]:
    live = deployment(image=changes.get("image", "model:v1"), replicas=changes.get("replicas", 2),
                      managed=EDIT_MANAGED)
    if "status" in changes:
        live["status"] = changes["status"]
    if "rv" in changes:
        live["metadata"]["resourceVersion"] = changes["rv"]
    return live


@pytest.mark.parametrize(("changes", "entries", "paths"),
                         [pytest.param(*c[1:], id=c[0]) for c in COMPARE_CASES])
def test_compare(changes: dict[str, Any], entries: list[dict[str, Any]], paths: list[str]) -> None:
    target = deployment(managed=EDIT_MANAGED)  # the dry run: live with Git's values
    result = compare(target, _live(changes), rules=rules_from_app(entries))
    assert result.formatted == paths
    assert result.differs is bool(paths)


SETTINGS_CASES = [
    ("group-kind-key", {"resource.customizations.ignoreDifferences.apps_Deployment":
                        "jsonPointers:\n- /spec/replicas\n"}, []),
    ("all-key", {"resource.customizations.ignoreDifferences.all": "jsonPointers:\n- /spec/replicas\n"}, []),
    ("managers-in-settings", {"resource.customizations.ignoreDifferences.all":
                              "managedFieldsManagers:\n- kubectl-edit\n"}, []),
    ("another-kind", {"resource.customizations.ignoreDifferences.apps_StatefulSet":
                      "jsonPointers:\n- /spec/replicas\n"}, ["spec.replicas"]),
    ("not-yaml-mapping-is-skipped", {"resource.customizations.ignoreDifferences.all": "- /spec/replicas"},
     ["spec.replicas"]),
    ("other-keys-unrelated", {"timeout.reconciliation": "180s"}, ["spec.replicas"]),
]


@pytest.mark.parametrize(("data", "paths"), [pytest.param(*c[1:], id=c[0]) for c in SETTINGS_CASES])
def test_argocd_cm_customizations(data: dict[str, str], paths: list[str]) -> None:
    result = compare(deployment(managed=EDIT_MANAGED), _live({"replicas": 5}), rules=rules_from_settings(data))
    assert result.formatted == paths


def test_core_kind_key_in_settings_matches_the_core_group() -> None:
    rules = rules_from_settings({"resource.customizations.ignoreDifferences.Service": "jsonPointers: [/spec/x]",
                                 "resource.customizations.ignoreDifferences._ConfigMap": "jsonPointers: [/data]"})
    assert [(r.group, r.kind) for r in rules] == [("", "Service"), ("", "ConfigMap")]
    assert rules[0].matches(group="", kind="Service", name="a", namespace="b")
    assert not rules[0].matches(group="apps", kind="Service", name="a", namespace="b")


# --- the jq subset ----------------------------------------------------------------------------

DOC = {"spec": {"http": [{"name": "primary", "route": [{"weight": 90}, {"weight": 10}]},
                         {"name": "mirror", "route": [{"weight": 100}]}],
                "labels": {"a.b/c": "x"}, "flag": True, "n": 3}}

JQ_CASES = [
    ("key-path", ".spec.n", [("spec", "n")]),
    ("each-each", ".spec.http[].route[].weight",
     [("spec", "http", 0, "route", 0, "weight"), ("spec", "http", 0, "route", 1, "weight"),
      ("spec", "http", 1, "route", 0, "weight")]),
    ("select-string", '.spec.http[] | select(.name == "mirror")', [("spec", "http", 1)]),
    ("select-then-path", '.spec.http[] | select(.name == "primary") | .route[1].weight',
     [("spec", "http", 0, "route", 1, "weight")]),
    ("select-not-equal", '.spec.http[] | select(.name != "primary")', [("spec", "http", 1)]),
    ("select-and", '.spec.http[] | select(.name == "primary" and .route[0].weight == 90)', [("spec", "http", 0)]),
    ("select-or", '.spec.http[] | select(.name == "x" or .name == "mirror")', [("spec", "http", 1)]),
    ("select-number-is-not-string", '.spec.http[] | select(.route[0].weight == "90")', []),
    ("quoted-key", '.spec.labels."a.b/c"', [("spec", "labels", "a.b/c")]),
    ("bracket-key", '.spec.labels["a.b/c"]', [("spec", "labels", "a.b/c")]),
    ("negative-index", ".spec.http[-1]", [("spec", "http", 1)]),
    ("missing-path", ".spec.nothing.here", []),
    ("index-out-of-range", ".spec.http[7]", []),
]


@pytest.mark.parametrize(("expr", "paths"), [pytest.param(*c[1:], id=c[0]) for c in JQ_CASES])
def test_jq_paths(expr: str, paths: list[FieldPath]) -> None:
    assert jq_paths(DOC, expr) == paths


@pytest.mark.parametrize("expr", [
    pytest.param("spec.n", id="no-leading-dot"),
    pytest.param('.spec | del(.n)', id="functions-other-than-select"),
    pytest.param('.spec.http[] | select(.name == input)', id="select-non-literal"),
    pytest.param('.spec.http[] | select(.name == "x"', id="unclosed"),
    pytest.param('.a; rm -rf /', id="shell-text"),
    pytest.param('.a[1.5]', id="fractional-index"),
    pytest.param('.__import__("os")', id="call-syntax"),
])
def test_jq_outside_the_subset_is_refused_never_run(expr: str) -> None:
    with pytest.raises(DiffConfigError):
        parse_jq(expr)


def test_bad_entry_in_app_is_an_error_naming_the_expression() -> None:
    with pytest.raises(DiffConfigError, match="jqPathExpression '.a | sort'"):
        rules_from_app([{"kind": "Deployment", "jqPathExpressions": [".a | sort"]}])
    with pytest.raises(DiffConfigError, match="jsonPointer 'spec/replicas'"):
        rules_from_app([{"kind": "Deployment", "jsonPointers": ["spec/replicas"]}])


def test_pointer_escapes() -> None:
    live: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "c", "annotations": {"a/b~c": "1"}}}
    target = copy.deepcopy(live)
    target["metadata"]["annotations"]["a/b~c"] = "2"
    assert compare(target, live).formatted == ['metadata.annotations["a/b~c"]']
    rules = rules_from_app([{"kind": "ConfigMap", "jsonPointers": ["/metadata/annotations/a~1b~0c"]}])
    assert not compare(target, live, rules=rules).differs


# --- field owners ------------------------------------------------------------------------------

OWNED = {
    "metadata": {"managedFields": [
        {"manager": "tidegate", "operation": "Apply", "fieldsV1": {"f:spec": {
            "f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}, "f:targetPort": {}}},
            "f:http": {}, "f:finalizers": {'v:"a"': {}}}}},
        {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {
            "f:ports": {'k:{"port":80,"protocol":"TCP"}': {"f:name": {}}}, "f:replicas": {}}}},
    ]},
    "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080, "name": "web"}],
             "http": [{"route": [{"weight": 5}]}], "replicas": 2, "finalizers": ["a", "b"]},
}

OWNER_CASES = [
    ("plain-leaf", ("spec", "replicas"), ["kubectl-edit"]),
    ("keyed-list-item-field", ("spec", "ports", 0, "targetPort"), ["tidegate"]),
    ("keyed-list-item-other-field", ("spec", "ports", 0, "name"), ["kubectl-edit"]),
    ("atomic-list-owns-its-insides", ("spec", "http", 0, "route", 0, "weight"), ["tidegate"]),
    ("set-item", ("spec", "finalizers", 0), ["tidegate"]),
    ("set-item-unowned", ("spec", "finalizers", 1), []),
    ("nobody", ("spec", "selector"), []),
]


@pytest.mark.parametrize(("path", "owners"), [pytest.param(*c[1:], id=c[0]) for c in OWNER_CASES])
def test_field_managers(path: FieldPath, owners: list[str]) -> None:
    assert field_managers(OWNED, path) == owners
    assert field_manager(OWNED, path) == (owners[-1] if owners else None)


def test_format_path() -> None:
    assert format_path(("spec", "template", "spec", "containers", 0, "image")) == \
        "spec.template.spec.containers[0].image"
    assert format_path(("metadata", "labels", "app.kubernetes.io/name")) == \
        'metadata.labels["app.kubernetes.io/name"]'


# --- IgnoreExtraneous ----------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("IgnoreExtraneous", True, id="alone"),
    pytest.param("ServerSideDiff=true, IgnoreExtraneous", True, id="among-others"),
    pytest.param("ServerSideDiff=true", False, id="other-option"),
    pytest.param(None, False, id="absent"),
])
def test_ignore_extraneous(value: str | None, expected: bool) -> None:
    annotations = {} if value is None else {"argocd.argoproj.io/compare-options": value}
    assert ignore_extraneous(deployment(annotations=annotations)) is expected


# --- the rollout's fields -----------------------------------------------------------------------

def rollout(*, routes: list[str] | None = None, subsets: bool = True) -> dict[str, Any]:
    istio: dict[str, Any] = {"virtualService": {"name": "model-vsvc", **({"routes": routes} if routes else {})}}
    if subsets:
        istio["destinationRule"] = {"name": "model-dr", "canarySubsetName": "canary", "stableSubsetName": "stable"}
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "model", "namespace": "ml"},
            "spec": {"strategy": {"canary": {"trafficRouting": {"istio": istio}}}}}


def virtual_service(stable: int, canary: int, *, mirror: int = 100, name: str = "model-vsvc") -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "ml"},
            "spec": {"hosts": ["model"], "http": [
                {"name": "primary", "route": [{"destination": {"host": "model", "subset": "stable"}, "weight": stable},
                                              {"destination": {"host": "model", "subset": "canary"}, "weight": canary}]},
                {"name": "mirror", "route": [{"destination": {"host": "mirror"}, "weight": mirror}]}]}}


def destination_rule(stable_hash: str | None, canary_hash: str | None, *, extra: str = "") -> dict[str, Any]:
    def subset(name: str, value: str | None) -> dict[str, Any]:
        labels = {"app": "model", **({"rollouts-pod-template-hash": value} if value else {})}
        return {"name": name, "labels": labels}

    subsets = [subset("canary", canary_hash), subset("stable", stable_hash)]
    if extra:
        subsets[0]["labels"]["tier"] = extra
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": "model-dr", "namespace": "ml"}, "spec": {"host": "model", "subsets": subsets}}


ROLLOUT_CASES = [
    # (id, rollout, Git's object, live object, differing paths after carrying)
    ("weights-moved-by-the-canary", rollout(routes=["primary"]), virtual_service(100, 0), virtual_service(70, 30), []),
    ("unselected-route-weight-is-drift", rollout(routes=["primary"]), virtual_service(100, 0),
     virtual_service(70, 30, mirror=50), ["spec.http[1].route[0].weight"]),
    ("other-virtual-service-is-not-rollout-managed", rollout(routes=["primary"]),
     virtual_service(100, 0, name="other"), virtual_service(70, 30, name="other"),
     ["spec.http[0].route[0].weight", "spec.http[0].route[1].weight"]),
    ("no-routes-named-and-two-http-routes-selects-none", rollout(), virtual_service(100, 0),
     virtual_service(70, 30), ["spec.http[0].route[0].weight", "spec.http[0].route[1].weight"]),
    ("hash-labels-written-by-the-rollout", rollout(routes=["primary"]), destination_rule(None, None),
     destination_rule("abc", "def"), []),
    ("other-subset-label-is-drift", rollout(routes=["primary"]), destination_rule(None, None),
     destination_rule("abc", "def", extra="gold"), ['spec.subsets[0].labels.tier']),
]


@pytest.mark.parametrize(("owner", "git", "live", "paths"), [pytest.param(*c[1:], id=c[0]) for c in ROLLOUT_CASES])
def test_rollout_fields_are_carried_and_never_drift(owner: dict[str, Any], git: dict[str, Any],
                                                     live: dict[str, Any], paths: list[str]) -> None:
    owned = rollout_fields([owner, git])
    carried = carry_rollout_fields(git, live, owned)
    # what a server-side apply of the carried manifest stores (no other manager here) is the
    # manifest: compared plainly, the canary's values are already there
    assert compare(carried, live).formatted == paths
    # ... and the comparison alone also leaves the owned paths out, carried or not
    assert compare(git, live, owned=owned).formatted == paths


def test_carried_weights_follow_destinations_not_positions() -> None:
    owned = rollout_fields([rollout(routes=["primary"])])
    git = virtual_service(100, 0)
    git["spec"]["http"][0]["route"].reverse()  # Git lists canary first; live stable first
    carried = carry_rollout_fields(git, virtual_service(70, 30), owned)
    assert [(d["destination"]["subset"], d["weight"]) for d in carried["spec"]["http"][0]["route"]] == [
        ("canary", 30), ("stable", 70)]
    assert git["spec"]["http"][0]["route"][0]["weight"] == 0  # the manifest itself is not changed


def test_carry_without_a_rollout_or_live_changes_nothing() -> None:
    git = virtual_service(100, 0)
    assert carry_rollout_fields(git, virtual_service(70, 30), rollout_fields([])) == git
    assert carry_rollout_fields(git, None, rollout_fields([rollout(routes=["primary"])])) == git


def test_rollout_in_another_namespace_form_of_the_name() -> None:
    owner = rollout(routes=["primary"])
    owner["spec"]["strategy"]["canary"]["trafficRouting"]["istio"]["virtualService"]["name"] = "model-vsvc.ml"
    owner["metadata"]["namespace"] = "elsewhere"
    owned = rollout_fields([owner])
    assert not compare(virtual_service(100, 0), virtual_service(70, 30), owned=owned).differs


def test_rollout_status_never_drifts() -> None:
    git = rollout(routes=["primary"])
    live = {**copy.deepcopy(git), "status": {"canary": {"weights": {"canary": {"weight": 30}}}, "phase": "Paused"}}
    assert not compare(git, live, owned=rollout_fields([git])).differs


def test_ignore_rule_matches_scope() -> None:
    rule = IgnoreRule(group="apps", kind="Deployment", namespace="ml")
    assert rule.matches(group="apps", kind="Deployment", name="x", namespace="ml")
    assert not rule.matches(group="apps", kind="Deployment", name="x", namespace="other")


# --- through the controller (tests/test_gitops_controller.py's fake cluster) ----------------------

from test_gitops_controller import Env, cm  # noqa: E402 - the controller tests' fake cluster

from gitops.plan import ResourceKey  # noqa: E402

VS_KEY = ResourceKey("networking.istio.io", "VirtualService", "dest", "model-vsvc")
CONFIG_KEY = ResourceKey("", "ConfigMap", "dest", "config")


def canary_env(*, self_heal: bool = True) -> Env:
    owner = rollout(routes=["primary"], subsets=False)
    del owner["metadata"]["namespace"]
    vs = virtual_service(100, 0)
    del vs["metadata"]["namespace"]
    env = Env([owner, vs, cm("config", 0, a="1")])
    env.kube.app["spec"]["syncPolicy"]["automated"]["selfHeal"] = self_heal
    for _ in range(6):
        env.reconcile()
    assert env.status["operationState"]["phase"] == "Succeeded", env.status["operationState"]
    assert env.status["sync"]["status"] == "Synced"
    return env


def weights(env: Env) -> list[int]:
    return [d["weight"] for d in env.kube.objects[VS_KEY]["spec"]["http"][0]["route"]]


def test_the_canary_moving_weights_is_not_drift_and_self_heal_leaves_them() -> None:
    env = canary_env()
    applied = len(env.kube.applied)
    env.kube.objects[VS_KEY]["spec"]["http"][0]["route"][0]["weight"] = 70  # the rollout's step
    env.kube.objects[VS_KEY]["spec"]["http"][0]["route"][1]["weight"] = 30
    for _ in range(3):
        env.reconcile()
    assert env.status["sync"]["status"] == "Synced"
    assert env.kube.applied[applied:] == []  # no self-heal
    assert weights(env) == [70, 30]


def test_a_sync_carries_the_live_weights_into_what_it_applies() -> None:
    env = canary_env(self_heal=False)
    env.kube.objects[VS_KEY]["spec"]["http"][0]["route"][0]["weight"] = 70
    env.kube.objects[VS_KEY]["spec"]["http"][0]["route"][1]["weight"] = 30
    env.kube.objects[VS_KEY]["spec"]["hosts"] = ["edited"]  # real drift on the same object
    env.reconcile()
    assert env.status["sync"]["status"] == "OutOfSync"
    env.kube.app["operation"] = {"sync": {"prune": False}, "initiatedBy": {"username": "me"}}
    for _ in range(4):
        env.reconcile()
    assert env.kube.objects[VS_KEY]["spec"]["hosts"] == ["model"]  # Git wins where it owns
    assert weights(env) == [70, 30]  # ... and the canary keeps its weights
    assert env.status["sync"]["status"] == "Synced"


@pytest.mark.parametrize(("ignore", "settings", "status"), [
    pytest.param(None, None, "OutOfSync", id="edit-is-drift"),
    pytest.param([{"kind": "ConfigMap", "jsonPointers": ["/data/a"]}], None, "Synced", id="app-pointer"),
    pytest.param([{"kind": "ConfigMap", "jqPathExpressions": [".data"]}], None, "Synced", id="app-jq"),
    pytest.param(None, {"resource.customizations.ignoreDifferences._ConfigMap": "jsonPointers: [/data/a]"},
                 "Synced", id="argocd-cm"),
    pytest.param([{"kind": "ConfigMap", "name": "other", "jsonPointers": ["/data/a"]}], None, "OutOfSync",
                 id="pointer-for-another-name"),
])
def test_ignore_differences_in_the_controller(ignore: list[dict[str, Any]] | None,
                                              settings: dict[str, str] | None, status: str) -> None:
    env = Env([cm("config", 0, a="1")], automated=False)
    if ignore is not None:
        env.kube.app["spec"]["ignoreDifferences"] = ignore
    env.controller.argocd_cm = lambda: {"data": settings} if settings else None
    env.kube.app["operation"] = {"sync": {"prune": False}, "initiatedBy": {"username": "me"}}
    for _ in range(3):
        env.reconcile()
    assert env.status["sync"]["status"] == "Synced"
    env.kube.objects[CONFIG_KEY]["data"] = {"a": "edited"}  # kubectl edit
    env.reconcile()
    assert env.status["sync"]["status"] == status


def test_a_bad_jq_expression_is_a_comparison_error() -> None:
    env = Env([cm("config", 0, a="1")], automated=False)
    env.kube.app["spec"]["ignoreDifferences"] = [{"kind": "ConfigMap", "jqPathExpressions": [".data | keys"]}]
    env.reconcile()
    assert env.status["conditions"][0]["type"] == "ComparisonError"
    assert "jqPathExpression '.data | keys'" in env.status["conditions"][0]["message"]


@pytest.mark.parametrize(("annotation", "status"), [
    pytest.param("IgnoreExtraneous", "Synced", id="ignore-extraneous"),
    pytest.param(None, "OutOfSync", id="plain-extraneous"),
])
def test_an_extraneous_resource_with_ignore_extraneous_does_not_make_the_app_out_of_sync(
        annotation: str | None, status: str) -> None:
    old = cm("old", 0)
    if annotation:
        old["metadata"]["annotations"]["argocd.argoproj.io/compare-options"] = annotation
    env = Env([cm("config", 0, a="1"), old], automated=False)
    env.kube.app["operation"] = {"sync": {"prune": False}, "initiatedBy": {"username": "me"}}
    for _ in range(3):
        env.reconcile()
    env.manifests = [cm("config", 0, a="1")]
    env.repos.commit = "b" * 40
    env.reconcile()
    entry = next(r for r in env.status["resources"] if r["name"] == "old")
    assert (entry["status"], entry.get("requiresPruning")) == ("OutOfSync", True)  # itself: OutOfSync
    assert env.status["sync"]["status"] == status


# --- RespectIgnoreDifferences -------------------------------------------------------------------

RESPECT_CASES = [
    # (id, rules, live changes, (replicas, image) of what the sync applies)
    ("pointer-keeps-live-replicas", [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}],
     {"replicas": 5, "image": "model:v9"}, (5, "model:v1")),
    ("jq-keeps-live-image", [{"group": "apps", "kind": "Deployment",
                              "jqPathExpressions": ['.spec.template.spec.containers[] | select(.name == "model") | .image']}],
     {"replicas": 5, "image": "model:v9"}, (2, "model:v9")),
    ("another-kind-carries-nothing", [{"group": "apps", "kind": "StatefulSet", "jsonPointers": ["/spec/replicas"]}],
     {"replicas": 5}, (2, "model:v1")),
    ("managers-are-not-carried", [{"group": "apps", "kind": "Deployment", "managedFieldsManagers": ["kubectl-edit"]}],
     {"replicas": 5}, (2, "model:v1")),
]


@pytest.mark.parametrize(("entries", "changes", "applied"), [pytest.param(*c[1:], id=c[0]) for c in RESPECT_CASES])
def test_carry_ignored(entries: list[dict[str, Any]], changes: dict[str, Any], applied: tuple[int, str]) -> None:
    git = deployment()
    out = carry_ignored(git, _live(changes), rules_from_app(entries))
    assert (out["spec"]["replicas"], out["spec"]["template"]["spec"]["containers"][0]["image"]) == applied
    assert git["spec"]["replicas"] == 2  # the manifest itself is not changed


def test_carry_ignored_creates_missing_maps_but_never_list_items() -> None:
    git: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    live = {**git, "data": {"a": "1"}, "items": [{"x": 1}]}
    rules = rules_from_app([{"kind": "ConfigMap", "jsonPointers": ["/data/a", "/items/0/x"]}])
    assert carry_ignored(git, live, rules) == {**git, "data": {"a": "1"}}
    assert carry_ignored(git, None, rules) == git


@pytest.mark.parametrize(("options", "replicas"), [
    pytest.param(["RespectIgnoreDifferences=true"], 5, id="respect-keeps-the-edit"),
    pytest.param([], 1, id="without-it-the-sync-resets-it"),
])
def test_a_sync_respects_ignore_differences_when_asked(options: list[str], replicas: int) -> None:
    env = Env([{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"replicas": 1, "paused": False}}], automated=False)
    env.kube.app["spec"]["syncPolicy"]["syncOptions"] = options
    env.kube.app["spec"]["ignoreDifferences"] = [{"group": "apps", "kind": "Deployment",
                                                 "jsonPointers": ["/spec/replicas"]}]
    env.kube.app["operation"] = {"sync": {"prune": False}, "initiatedBy": {"username": "me"}}
    for _ in range(3):
        env.reconcile()
    key = ResourceKey("apps", "Deployment", "dest", "web")
    env.kube.objects[key]["spec"].update(replicas=5, paused=True)  # an ignored edit and a real one
    env.reconcile()
    assert env.status["sync"]["status"] == "OutOfSync"
    env.kube.app["operation"] = {"sync": {"prune": False}, "initiatedBy": {"username": "me"}}
    for _ in range(3):
        env.reconcile()
    assert env.kube.objects[key]["spec"] == {"replicas": replicas, "paused": False}


def service(selector_hash: str | None, *, name: str = "model-canary", extra: str = "") -> dict[str, Any]:
    selector = {"app": "model", **({"rollouts-pod-template-hash": selector_hash} if selector_hash else {}),
                **({"tier": extra} if extra else {})}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ml"},
            "spec": {"selector": selector, "ports": [{"port": 80}]}}


def service_rollout() -> dict[str, Any]:
    owner = rollout(routes=["primary"])
    owner["spec"]["strategy"]["canary"].update(canaryService="model-canary", stableService="model-stable")
    return owner


SERVICE_CASES = [
    # (id, Git's Service, live Service, differing paths)
    ("canary-service-hash-written-by-the-rollout", service(None), service("abc"), []),
    ("stable-service-hash-written-by-the-rollout", service(None, name="model-stable"),
     service("abc", name="model-stable"), []),
    ("other-selector-label-is-drift", service(None), service("abc", extra="gold"), ["spec.selector.tier"]),
    ("a-service-the-rollout-does-not-name-drifts", service(None, name="other"), service("abc", name="other"),
     ['spec.selector["rollouts-pod-template-hash"]']),
]


@pytest.mark.parametrize(("git", "live", "paths"), [pytest.param(*c[1:], id=c[0]) for c in SERVICE_CASES])
def test_the_rollouts_service_selector_hash_is_carried_and_never_drift(
        git: dict[str, Any], live: dict[str, Any], paths: list[str]) -> None:
    owned = rollout_fields([service_rollout(), git])
    assert compare(carry_rollout_fields(git, live, owned), live).formatted == paths
    assert compare(git, live, owned=owned).formatted == paths
