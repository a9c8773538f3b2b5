"""cli/app.py: tidegate app list|get|diff|refresh|sync|wait on a fake API: output and exit codes."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from cli import app as appcli
from cli.app import AppError, ResourceDiff
from cli.main import build_parser

NS = "argocd"


def application(name: str = "guestbook", *, automated: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "project": "default",
        "source": {"repoURL": "https://github.com/org/repo", "targetRevision": "main", "path": "guestbook"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
    }
    if automated is not None:
        spec["syncPolicy"] = {"automated": automated}
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
        "status": {
            "sync": {"status": "Synced", "revision": "53e28ff20cc530b9ada2173fbbd64d48338583ba"},
            "health": {"status": "Healthy"},
            "resources": [{"group": "", "version": "v1", "kind": "Service", "namespace": "default",
                           "name": "guestbook-ui", "status": "Synced", "health": {"status": "Healthy"}},
                          {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "default",
                           "name": "guestbook-ui", "status": "Synced", "health": {"status": "Healthy"}}],
            "operationState": {"phase": "Succeeded", "startedAt": "2026-01-01T00:00:00Z",
                               "finishedAt": "2026-01-01T00:00:05Z", "message": "successfully synced",
                               "syncResult": {"revision": "53e28ff20cc530b9ada2173fbbd64d48338583ba",
                                              "resources": [{"group": "", "kind": "Service",
                                                             "namespace": "default", "name": "guestbook-ui",
                                                             "message": "service/guestbook-ui created"}]}},
        },
    }


class FakeApi:
    def __init__(self, *apps: dict[str, Any]) -> None:
        self.apps = {a["metadata"]["name"]: a for a in apps}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.on_get: Any = None

    def list(self, namespace: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(a) for a in self.apps.values() if a["metadata"]["namespace"] == namespace]

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        if name not in self.apps:
            raise AppError(f"application {name!r} not found in namespace {namespace!r}")
        if self.on_get is not None:
            self.on_get(self.apps[name])
        return copy.deepcopy(self.apps[name])

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.patches.append((name, dict(patch)))
        target = self.apps[name]
        for k, v in patch.items():
            if k == "metadata":
                target["metadata"].setdefault("annotations", {}).update(v["annotations"])
            else:
                target[k] = v
        return copy.deepcopy(target)


def run(api: FakeApi, *argv: str, differ: Any = None) -> tuple[int, str, str]:
    args = build_parser().parse_args(["app", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = appcli.run(args, api=api, differ=differ or (lambda body: []), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_list_columns_as_argocd() -> None:
    api = FakeApi(application("b", automated={"prune": True}), application("a"))
    code, out, _ = run(api, "list")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["NAME", "CLUSTER", "NAMESPACE", "PROJECT", "STATUS", "HEALTH", "SYNCPOLICY",
                                "CONDITIONS", "REPO", "PATH", "TARGET"]
    assert lines[1].split() == ["argocd/a", "https://kubernetes.default.svc", "default", "default", "Synced",
                                "Healthy", "Manual", "<none>", "https://github.com/org/repo", "guestbook", "main"]
    assert lines[2].split()[6] == "Auto-Prune"


def test_list_json_and_yaml_for_scripts() -> None:
    api = FakeApi(application())
    code, out, _ = run(api, "list", "-o", "json")
    assert code == 0 and [a["metadata"]["name"] for a in json.loads(out)] == ["guestbook"]
    code, out, _ = run(api, "get", "guestbook", "-o", "yaml")
    assert code == 0 and yaml.safe_load(out)["metadata"]["name"] == "guestbook"


def test_get_summary_and_resources() -> None:
    code, out, _ = run(FakeApi(application()), "get", "guestbook")
    assert code == 0
    assert "Name:" in out and "argocd/guestbook" in out
    assert "Synced to main (53e28ff)" in out and "Sync Policy:" in out
    table = out[out.index("GROUP"):].splitlines()
    assert table[0].split() == ["GROUP", "KIND", "NAMESPACE", "NAME", "STATUS", "HEALTH", "HOOK", "MESSAGE"]
    assert table[1].split() == ["Service", "default", "guestbook-ui", "Synced", "Healthy",
                                "service/guestbook-ui", "created"]


def test_get_missing_app_exits_1() -> None:
    code, _, err = run(FakeApi(), "get", "nope")
    assert code == 1 and "not found" in err


def test_diff_exit_codes() -> None:
    api = FakeApi(application())
    assert run(api, "diff", "guestbook")[0] == 0
    drift = ResourceDiff(kind="ConfigMap", namespace="default", name="cfg", group="",
                         text="--- live\n+++ desired\n-a: 1\n+a: 2\n")
    code, out, _ = run(api, "diff", "guestbook", differ=lambda body: [drift])
    assert code == 1 and "===== /ConfigMap default/cfg ======" in out and "+a: 2" in out

    def broken(body: Mapping[str, Any]) -> list[ResourceDiff]:
        raise RuntimeError("git ls-remote failed")

    code, _, err = run(api, "diff", "guestbook", differ=broken)
    assert code == 2 and "git ls-remote failed" in err
    assert run(api, "diff", "nope")[0] == 2


def test_sync_writes_the_operation_and_waits() -> None:
    api = FakeApi(application())

    def controller(app: dict[str, Any]) -> None:  # the controller runs the operation
        if app.get("operation"):
            app["status"]["operationState"] = {"phase": "Succeeded", "startedAt": "2026-01-02T00:00:00Z",
                                               "syncResult": {"revision": "x"}}
            app["operation"] = None

    api.on_get = controller
    code, out, _ = run(api, "sync", "guestbook", "--prune", "--sync-option", "CreateNamespace=true")
    assert code == 0
    name, patch = api.patches[0]
    op = patch["operation"]
    assert op["sync"] == {"revision": "main", "prune": True, "syncOptions": ["CreateNamespace=true"],
                          "syncStrategy": {"hook": {}}}
    assert "username" in op["initiatedBy"]
    assert "Phase:" in out and "Succeeded" in out


def test_sync_failed_exits_1_and_async_returns_at_once() -> None:
    api = FakeApi(application())

    def fail(app: dict[str, Any]) -> None:
        if app.get("operation"):
            app["status"]["operationState"] = {"phase": "Failed", "startedAt": "2026-01-02T00:00:00Z"}
            app["operation"] = None

    api.on_get = fail
    code, _, err = run(api, "sync", "guestbook")
    assert code == 1 and "Failed" in err
    api2 = FakeApi(application())
    assert run(api2, "sync", "guestbook", "--async")[0] == 0 and api2.patches


def test_refresh_sets_the_annotation() -> None:
    api = FakeApi(application())

    def controller(app: dict[str, Any]) -> None:
        app["metadata"].get("annotations", {}).pop("argocd.argoproj.io/refresh", None)

    api.on_get = controller
    code, _, _ = run(api, "refresh", "guestbook", "--hard")
    assert code == 0
    assert api.patches[0][1] == {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}}


def test_wait_health_sync_and_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(FakeApi(application()), "wait", "guestbook", "--health", "--sync")[0] == 0
    sick = application()
    sick["status"]["health"] = {"status": "Progressing"}
    now = [0.0]
    monkeypatch.setattr(appcli.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(appcli.time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    code, _, err = run(FakeApi(sick), "wait", "guestbook", "--health", "--timeout", "5")
    assert code == 1 and "timed out (5s)" in err and "healthy" in err
    assert run(FakeApi(sick), "wait", "guestbook", "--sync")[0] == 0


# --- explain -----------------------------------------------------------------------------------

def drifted_app(*, automated: dict[str, Any] | None = None, failed: bool = False) -> dict[str, Any]:
    app = application(automated=automated)
    status = app["status"]
    status["sync"]["status"] = "OutOfSync"
    status["resources"][1]["status"] = "OutOfSync"  # the Deployment
    status["resources"].append({"group": "", "version": "v1", "kind": "ConfigMap", "namespace": "default",
                                "name": "old", "status": "OutOfSync", "requiresPruning": True})
    if failed:
        status["operationState"] = {
            "phase": "Failed", "message": "one or more objects failed to apply, reason: Deployment.apps "
                                          '"guestbook-ui" is invalid: spec.replicas: Invalid value: -1',
            "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:05Z",
            "syncResult": {"revision": "53e28ff20cc530b9ada2173fbbd64d48338583ba", "resources": [
                {"group": "", "kind": "Service", "namespace": "default", "name": "guestbook-ui",
                 "status": "Synced", "message": "service/guestbook-ui configured", "hookPhase": "Succeeded"},
                {"group": "apps", "kind": "Deployment", "namespace": "default", "name": "guestbook-ui",
                 "status": "SyncFailed", "hookPhase": "Failed",
                 "message": 'Deployment.apps "guestbook-ui" is invalid: spec.replicas: Invalid value: -1'}]}}
    return app


REPLICAS_DRIFT = ResourceDiff(kind="Deployment", namespace="default", name="guestbook-ui", group="apps",
                              text="-  replicas: 1\n+  replicas: 3\n",
                              fields=(("spec.replicas", "kubectl-edit"),
                                      ("spec.template.spec.containers[0].image", "")))

EXPLAIN_CASES = [
    ("manual", drifted_app(), [REPLICAS_DRIFT], 0, [
        "Reason: argocd/guestbook is OutOfSync: 2 resources differ from Git at revision 53e28ff "
        "(apps/Deployment default/guestbook-ui and 1 more); run `tidegate app sync guestbook` to apply Git.",
        "apps/Deployment default/guestbook-ui: OutOfSync",
        "  FIELD                                   MANAGER\n"
        "  spec.replicas                           kubectl-edit\n"
        "  spec.template.spec.containers[0].image  <none>\n",
        "/ConfigMap default/old: OutOfSync", "not in Git any more: requires pruning"]),
    ("automated-without-self-heal", drifted_app(automated={"prune": True}), [REPLICAS_DRIFT], 0, [
        "automated sync without selfHeal only reports drift; run `tidegate app sync guestbook`"]),
    ("self-heal", drifted_app(automated={"selfHeal": True}), [REPLICAS_DRIFT], 0, [
        "selfHeal is on, so the controller reverts it"]),
    ("failed-sync", drifted_app(failed=True), [REPLICAS_DRIFT], 0, [
        "Reason: the last sync of argocd/guestbook (revision 53e28ff) ended Failed: one or more objects "
        "failed to apply, reason: Deployment.apps",
        "Failed tasks of the last operation (Failed, revision 53e28ff):",
        'apps/Deployment default/guestbook-ui: Deployment.apps "guestbook-ui" is invalid: spec.replicas: '
        "Invalid value: -1"]),
    ("missing-in-cluster", drifted_app(),
     [ResourceDiff(kind="Deployment", namespace="default", name="guestbook-ui", group="apps", text="",
                   missing=True)], 0, ["missing from the cluster: the sync creates it"]),
    ("synced", application(), [], 0, [
        "Reason: argocd/guestbook is Synced and Healthy at revision 53e28ff: nothing to explain."]),
]


@pytest.mark.parametrize(("app", "diffs", "code", "lines"), [pytest.param(*c[1:], id=c[0]) for c in EXPLAIN_CASES])
def test_explain(app: dict[str, Any], diffs: list[ResourceDiff], code: int, lines: list[str]) -> None:
    got, out, err = run(FakeApi(app), "explain", "guestbook", differ=lambda body: diffs)
    assert (got, err) == (code, "")
    for line in lines:
        assert line in out, out
    if not failed_tasks_expected(app):
        assert "Failed tasks" not in out


def failed_tasks_expected(app: dict[str, Any]) -> bool:
    return bool(appcli.failed_tasks(app))


def test_explain_without_git_still_explains_from_status_and_exits_2() -> None:
    def broken(body: Mapping[str, Any]) -> list[ResourceDiff]:
        raise RuntimeError("git fetch timed out")

    code, out, err = run(FakeApi(drifted_app()), "explain", "guestbook", differ=broken)
    assert code == 2 and "field paths unavailable: git fetch timed out" in err
    assert "Reason: argocd/guestbook is OutOfSync" in out and "requires pruning" in out
    assert run(FakeApi(), "explain", "nope")[0] == 1
