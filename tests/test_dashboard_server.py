"""dashboard/: the HTTP contract (dashboard-api.md) on a cache fed by hand and fake actions.

No cluster: the cache is fed as the watches would feed it (``Cache.apply``), the actions
are a recording fake (``RecordingActions``), the Application differ a stand-in function,
and ``KubeActions`` runs on a recording stand-in for CustomObjectsApi.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dashboard.actions import ActionError, KubeActions
from dashboard.live import (
    ADDED,
    ANALYSISRUN,
    APPLICATION,
    MODIFIED,
    POD,
    REPLICASET,
    ROLLOUT,
    ROLLOUT_EVENT,
    RUN_EVENT,
    Cache,
)
from dashboard.server import CSRF_HEADER, MSG_READ_ONLY, Settings, build_app
from views.appdiff import ResourceDiff

TOKEN = "test-token"
UID = "uid-model"


def rollout_obj(*, weight_step: int = 1, phase: str = "Paused") -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "model", "namespace": "ml", "uid": UID, "generation": 2},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "model"}},
                 "template": {"spec": {"containers": [{"name": "model", "image": "model:v2"}]}},
                 "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}]}}},
        "status": {"phase": phase, "message": "CanaryPauseStep", "currentStepIndex": weight_step,
                   "stableRS": "aaa", "currentPodHash": "bbb", "observedGeneration": "2",
                   "replicas": 5, "updatedReplicas": 1, "readyReplicas": 5, "availableReplicas": 5,
                   "canary": {"weights": {"canary": {"weight": 20, "podTemplateHash": "bbb"},
                                          "stable": {"weight": 80, "podTemplateHash": "aaa"}}}},
    }


def replica_set(hash_: str, revision: int, image: str) -> dict[str, Any]:
    return {"metadata": {"name": f"model-{hash_}", "namespace": "ml",
                         "labels": {"rollouts-pod-template-hash": hash_},
                         "annotations": {"rollout.argoproj.io/revision": str(revision)},
                         "ownerReferences": [{"kind": "Rollout", "name": "model", "uid": UID}]},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "model", "image": image}]}}},
            "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}}


def pod(name: str, replica_set_name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml", "creationTimestamp": "2026-01-01T00:00:00Z",
                         "ownerReferences": [{"kind": "ReplicaSet", "name": replica_set_name}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "model", "ready": True}]}}


def analysis_run() -> dict[str, Any]:
    return {"metadata": {"name": "model-bbb-1", "namespace": "ml", "creationTimestamp": "2026-01-01T00:01:00Z",
                         "labels": {"rollouts-pod-template-hash": "bbb"},
                         "ownerReferences": [{"kind": "Rollout", "name": "model", "uid": UID}]},
            "spec": {"metrics": [{"name": "latency", "successCondition": "result < 0.5",
                                  "provider": {"prometheus": {"query": "q"}}}]},
            "status": {"phase": "Running", "startedAt": "2026-01-01T00:01:00Z",
                       "metricResults": [{"name": "latency", "phase": "Running", "count": 1, "successful": 1,
                                          "measurements": [{"value": "0.2", "phase": "Successful",
                                                            "startedAt": "2026-01-01T00:01:00Z",
                                                            "finishedAt": "2026-01-01T00:01:01Z"}]}]}}


def application(*, sync: str = "OutOfSync") -> dict[str, Any]:
    return {"metadata": {"name": "guestbook", "namespace": "argocd", "resourceVersion": "7"},
            "spec": {"project": "default", "source": {"repoURL": "https://git.example/repo", "path": "app",
                                                      "targetRevision": "main"}},
            "status": {"sync": {"status": sync, "revision": "abc123"}, "health": {"status": "Healthy"},
                       "resources": [{"group": "apps", "kind": "Deployment", "namespace": "web", "name": "front",
                                      "status": sync, "health": {"status": "Healthy"}}],
                       "history": [{"id": 1, "revision": "r1", "deployedAt": "2026-01-01T00:00:00Z",
                                    "source": {"repoURL": "https://git.example/repo"}}],
                       "operationState": {"phase": "Succeeded", "message": "done",
                                          "startedAt": "2026-01-01T00:00:00Z",
                                          "syncResult": {"revision": "r1", "resources": [
                                              {"kind": "Deployment", "namespace": "web", "name": "front",
                                               "status": "Synced", "message": "configured"}]}}}}


def event(kind: str, name: str, reason: str = "RolloutPaused") -> dict[str, Any]:
    return {"metadata": {"name": f"{name}.{reason}", "namespace": "ml"},
            "involvedObject": {"kind": kind, "name": name, "namespace": "ml"}, "reason": reason,
            "message": "Rollout is paused (CanaryPauseStep)", "type": "Normal",
            "lastTimestamp": "2026-01-01T00:02:00Z", "firstTimestamp": "2026-01-01T00:02:00Z"}


def owned_by_deployment() -> dict[str, Any]:
    return {"metadata": {"name": "front-123", "namespace": "web",
                         "ownerReferences": [{"kind": "Deployment", "name": "front"}]},
            "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}


def fed_cache() -> Cache:
    cache = Cache(weights=lambda rollout, sets: (20, 20))
    cache.apply(REPLICASET, ADDED, replica_set("aaa", 1, "model:v1"))
    cache.apply(REPLICASET, ADDED, replica_set("bbb", 2, "model:v2"))
    cache.apply(POD, ADDED, pod("model-bbb-x", "model-bbb"))
    cache.apply(ANALYSISRUN, ADDED, analysis_run())
    cache.apply(ROLLOUT, ADDED, rollout_obj())
    cache.apply(APPLICATION, ADDED, application())
    cache.apply(REPLICASET, ADDED, owned_by_deployment())
    return cache


class RecordingActions:
    """A stand-in for KubeActions: records each call, answers a message."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, str, str, str, dict[str, Any]]] = []
        self.fail = fail

    def rollout(self, namespace: str, name: str, action: str, body: Mapping[str, Any]) -> str:
        self.calls.append(("rollout", namespace, name, action, dict(body)))
        if self.fail is not None:
            raise self.fail
        return f"{action} done"

    def application(self, namespace: str, name: str, action: str, body: Mapping[str, Any]) -> str:
        self.calls.append(("application", namespace, name, action, dict(body)))
        return f"{action} done"


def stand_in_differ(app: Mapping[str, Any]) -> list[ResourceDiff]:
    return [ResourceDiff(kind="Deployment", namespace="web", name="front", group="apps",
                         text="--- live\n+++ desired\n-replicas: 1\n+replicas: 2\n")]


def run(test: Callable[[TestClient[Any, Any]], Awaitable[None]], *, read_only: bool = False,
        actions: Any = None, cache: Cache | None = None) -> None:
    async def main() -> None:
        settings = Settings(read_only=read_only, csrf_token=TOKEN, version="t", namespaces=["ml"])
        app = build_app(settings, cache=cache or fed_cache(), actions=actions or RecordingActions(),
                        differ=stand_in_differ)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await test(client)

    asyncio.run(main())


def good_headers(client: TestClient[Any, Any]) -> dict[str, str]:
    return {CSRF_HEADER: TOKEN, "Content-Type": "application/json",
            "Origin": f"http://127.0.0.1:{client.server.port}"}


# --- GET shapes ---------------------------------------------------------------------------------

def test_config() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get("/api/config")
        assert await response.json() == {"readOnly": False, "csrfToken": TOKEN, "version": "t",
                                         "namespaces": ["ml"]}

    run(check)


def test_rollout_list_and_counts() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        body = await (await client.get("/api/rollouts")).json()
        assert body["counts"] == {"Paused": 1}
        (item,) = body["items"]
        assert "revisions" not in item
        assert (item["namespace"], item["name"], item["status"], item["setWeight"]) == ("ml", "model", "Paused", 20)
        assert set(item) >= {"strategy", "step", "steps", "actualWeight", "images", "replicas", "message"}

    run(check)


def test_rollout_detail_shape() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        body = await (await client.get("/api/rollouts/ml/model")).json()
        assert set(body) == {"rollout", "steps", "weightHistory", "analysisRuns", "explain"}
        assert [s["state"] for s in body["steps"]] == ["done", "current", "next"]
        assert body["weightHistory"][-1]["setWeight"] == 20
        pods = [p["name"] for rev in body["rollout"]["revisions"] for rs in rev["replicaSets"] for p in rs["pods"]]
        assert pods == ["model-bbb-x"]
        (run_,) = body["analysisRuns"]
        (metric,) = run_["metrics"]
        assert metric["successCondition"] == "result < 0.5"
        assert metric["measurements"][0]["number"] == 0.2
        assert set(body["explain"]) >= {"summary", "steps", "measurements"}

    run(check)


@pytest.mark.parametrize("path", ["/api/rollouts/ml/absent", "/api/applications/argocd/absent"],
                         ids=["rollout", "application"])
def test_absent_is_404_with_error(path: str) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get(path)
        assert response.status == 404
        assert "absent" in (await response.json())["error"]

    run(check)


def test_application_list_and_detail() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        listed = await (await client.get("/api/applications")).json()
        assert listed["counts"] == {"Healthy": 1}
        assert listed["items"][0] == {"namespace": "argocd", "name": "guestbook", "project": "default",
                                      "repo": "https://git.example/repo", "path": "app", "targetRevision": "main",
                                      "revision": "abc123", "sync": "OutOfSync", "health": "Healthy",
                                      "operation": "Succeeded"}
        body = await (await client.get("/api/applications/argocd/guestbook")).json()
        assert body["tree"][0]["children"][0]["name"] == "front-123"  # Deployment -> ReplicaSet from the cache
        assert body["diffs"] == [{"group": "apps", "kind": "Deployment", "namespace": "web", "name": "front",
                                  "diff": "--- live\n+++ desired\n-replicas: 1\n+replicas: 2\n"}]
        assert body["operation"]["results"][0]["message"] == "configured"
        assert body["history"][0]["id"] == 1
        assert body["resources"][0]["status"] == "OutOfSync"

    run(check)


def failing_differ(app: Mapping[str, Any]) -> list[ResourceDiff]:
    raise RuntimeError("git clone https://bot:ghp_s3cret@git.example/repo failed: exit 128")


def test_failed_diff_is_reported_without_credentials() -> None:
    async def main() -> None:
        app = build_app(Settings(csrf_token=TOKEN), cache=fed_cache(), differ=failing_differ)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            body = await (await client.get("/api/applications/argocd/guestbook")).json()
            assert body["diffs"] == []
            assert "git clone https://***@git.example/repo failed" in body["diffError"]
            assert "s3cret" not in json.dumps(body)

    asyncio.run(main())


def test_synced_application_computes_no_diff() -> None:
    cache = fed_cache()
    cache.apply(APPLICATION, MODIFIED, application(sync="Synced"))

    async def check(client: TestClient[Any, Any]) -> None:
        body = await (await client.get("/api/applications/argocd/guestbook")).json()
        assert body["diffs"] == []

    run(check, cache=cache)


# --- SSE ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,obj,expected", [
    (ROLLOUT, rollout_obj(weight_step=2), ("rollout", "model", "MODIFIED")),
    (POD, pod("model-bbb-y", "model-bbb"), ("rollout", "model", "MODIFIED")),
    (ANALYSISRUN, analysis_run(), ("rollout", "model", "MODIFIED")),
    (APPLICATION, application(sync="Synced"), ("application", "guestbook", "MODIFIED")),
    (ROLLOUT_EVENT, event("Rollout", "model"), ("rollout", "model", "MODIFIED")),
    (RUN_EVENT, event("AnalysisRun", "model-bbb-1"), ("rollout", "model", "MODIFIED")),
], ids=["rollout", "pod-of-its-replicaset", "analysisrun", "application", "event-of-rollout", "event-of-its-run"])
def test_sse_event_on_cache_change(kind: str, obj: dict[str, Any], expected: tuple[str, str, str]) -> None:
    cache = fed_cache()

    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get("/api/events")
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert await response.content.readline() == b": connected\n"
        await response.content.readline()
        cache.apply(kind, MODIFIED, obj)
        event = (await asyncio.wait_for(response.content.readline(), 5)).decode()
        data = json.loads((await asyncio.wait_for(response.content.readline(), 5)).decode().removeprefix("data: "))
        assert (event.strip().removeprefix("event: "), data["name"], data["type"]) == expected
        response.close()

    run(check, cache=cache)


def test_explain_reads_the_cached_events() -> None:
    cache = fed_cache()
    cache.apply(ROLLOUT_EVENT, ADDED, event("Rollout", "model"))
    cache.apply(ROLLOUT_EVENT, ADDED, event("Rollout", "other", reason="RolloutAborted"))
    assert [e["involvedObject"]["name"] for e in cache.events("ml", "model", cache.rollout_parts("ml", "model")[2])] \
        == ["model"]

    async def check(client: TestClient[Any, Any]) -> None:
        body = await (await client.get("/api/rollouts/ml/model")).json()
        assert body["explain"]["summary"]
        assert {m["metric"] for m in body["explain"]["measurements"]} == {"latency"}

    run(check, cache=cache)


def test_weight_history_records_changes_only() -> None:
    weights = iter([(20, 0), (20, 0), (20, 20)])
    cache = Cache(weights=lambda rollout, sets: next(weights), clock=lambda: "t")
    for _ in range(3):
        cache.apply(ROLLOUT, MODIFIED, rollout_obj())
    assert cache.history("ml", "model") == [{"time": "t", "setWeight": 20, "actualWeight": 0},
                                            {"time": "t", "setWeight": 20, "actualWeight": 20}]


def test_relist_deletes_what_vanished() -> None:
    cache = fed_cache()
    cache.replace(REPLICASET, [replica_set("bbb", 2, "model:v2")])
    assert [r["metadata"]["name"] for r in cache.items(REPLICASET)] == ["model-bbb"]


# --- guards -------------------------------------------------------------------------------------

def _drop(headers: dict[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != key}


@pytest.mark.parametrize("change,message", [
    (lambda h: _drop(h, CSRF_HEADER), "X-Tidegate-CSRF"),
    (lambda h: {**h, CSRF_HEADER: "wrong"}, "X-Tidegate-CSRF"),
    (lambda h: {**h, "Origin": "http://evil.example"}, "cross-origin"),
    (lambda h: {**h, "Content-Type": "application/x-www-form-urlencoded"}, "application/json"),
    (lambda h: {**h, "Content-Type": "text/plain"}, "application/json"),
], ids=["missing-token", "wrong-token", "foreign-origin", "form-content-type", "text-plain"])
def test_csrf_refusals(change: Callable[[dict[str, str]], dict[str, str]], message: str) -> None:
    actions = RecordingActions()

    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post("/api/rollouts/ml/model/abort", data=b"{}",
                                     headers=change(good_headers(client)))
        assert response.status == 403
        assert message in (await response.json())["error"]

    run(check, actions=actions)
    assert actions.calls == []


def test_foreign_host_refused() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get("/api/config", headers={"Host": "rebound.example:3100"})
        assert response.status == 403

    run(check)


@pytest.mark.parametrize("path", ["/api/rollouts/ml/model/promote", "/api/applications/argocd/guestbook/sync"],
                         ids=["rollout", "application"])
def test_read_only_refuses(path: str) -> None:
    actions = RecordingActions()

    async def check(client: TestClient[Any, Any]) -> None:
        config = await (await client.get("/api/config")).json()
        assert config["readOnly"] is True
        response = await client.post(path, data=b"{}", headers=good_headers(client))
        assert (response.status, await response.json()) == (403, {"error": MSG_READ_ONLY})

    run(check, read_only=True, actions=actions)
    assert actions.calls == []


# --- dispatch -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path,body,call", [
    ("/api/rollouts/ml/model/abort", {"reason": "slow"}, ("rollout", "ml", "model", "abort", {"reason": "slow"})),
    ("/api/rollouts/ml/model/promote-full", None, ("rollout", "ml", "model", "promote-full", {})),
    ("/api/applications/argocd/guestbook/rollback", {"id": 1},
     ("application", "argocd", "guestbook", "rollback", {"id": 1})),
], ids=["abort-with-reason", "promote-full-no-body", "app-rollback"])
def test_post_dispatches(path: str, body: dict[str, Any] | None, call: tuple[Any, ...]) -> None:
    actions = RecordingActions()

    async def check(client: TestClient[Any, Any]) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        response = await client.post(path, data=data, headers=good_headers(client))
        assert response.status == 200
        assert (await response.json())["message"] == f"{call[3]} done"

    run(check, actions=actions)
    assert actions.calls == [call]


class StandInApiError(Exception):
    """Shaped like kubernetes' ApiException: status, reason, a JSON body."""

    def __init__(self) -> None:
        super().__init__("(403)\nReason: Forbidden\nHTTP response headers: Authorization: Bearer s3cret")
        self.status, self.reason = 403, "Forbidden"
        self.body = json.dumps({"message": "rollouts.argoproj.io \"model\" is forbidden: User \"dev\" cannot patch"})


@pytest.mark.parametrize("fail,status,expected", [
    (StandInApiError(), 403, "is forbidden"),
    (RuntimeError("Traceback (most recent call last): token=s3cret"), 500, "internal error"),
    (ActionError(409, "busy"), 409, "busy"),
], ids=["api-server-refusal", "unexpected-bug", "refused-action"])
def test_errors_carry_no_traceback_or_secret(fail: Exception, status: int, expected: str) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post("/api/rollouts/ml/model/pause", data=b"{}", headers=good_headers(client))
        text = await response.text()
        assert response.status == status
        assert expected in json.loads(text)["error"]
        assert "Traceback" not in text and "s3cret" not in text

    run(check, actions=RecordingActions(fail=fail))


class RecordingCustom:
    """A stand-in for CustomObjectsApi: serves one object, records patches."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["_request_timeout"]
        return self.obj

    def patch_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str,
                                       body: dict[str, Any], **kwargs: Any) -> None:
        assert kwargs["_request_timeout"]
        self.patches.append(("spec", plural, body))

    def patch_namespaced_custom_object_status(self, group: str, version: str, namespace: str, plural: str,
                                              name: str, body: dict[str, Any], **kwargs: Any) -> None:
        assert kwargs["_request_timeout"]
        self.patches.append(("status", plural, body))


@pytest.mark.parametrize("action,body,patches", [
    ("abort", {"reason": "p99 too high"},
     [("spec", "rollouts", {"metadata": {"annotations": {"tidegate.dev/abort": "p99 too high"}}})]),
    ("abort", {}, [("status", "rollouts", {"status": {"abort": True}})]),
    ("retry", {}, [("status", "rollouts", {"status": {"abort": False}})]),
    ("pause", {}, [("spec", "rollouts", {"spec": {"paused": True}})]),
    ("resume", {}, [("spec", "rollouts", {"spec": {"paused": False}})]),
    ("promote", {}, [("status", "rollouts", {"status": {"pauseConditions": None}})]),
    ("promote-full", {}, [("status", "rollouts", {"status": {"promoteFull": True, "pauseConditions": None}})]),
], ids=["abort-reason-annotation", "abort-status", "retry", "pause", "resume", "promote", "promote-full"])
def test_rollout_actions_send_the_cli_patches(action: str, body: dict[str, Any],
                                              patches: list[tuple[str, str, dict[str, Any]]]) -> None:
    obj = rollout_obj()
    obj["status"]["pauseConditions"] = [{"reason": "CanaryPauseStep"}]
    custom = RecordingCustom(obj)
    KubeActions(None, custom=custom).rollout("ml", "model", action, body)
    assert custom.patches == patches


@pytest.mark.parametrize("action,body,check", [
    ("refresh", {}, lambda p: p == {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}),
    ("sync", {"prune": True}, lambda p: p["operation"]["sync"] == {"revision": "main", "prune": True,
                                                                   "syncStrategy": {"hook": {}}}),
], ids=["refresh", "sync-prune"])
def test_application_actions(action: str, body: dict[str, Any], check: Callable[[dict[str, Any]], bool]) -> None:
    custom = RecordingCustom(application())
    KubeActions(None, custom=custom).application("argocd", "guestbook", action, body)
    ((_, plural, patch),) = custom.patches
    assert plural == "applications" and check(patch)


@pytest.mark.parametrize("action,body,status", [
    ("rollback", {}, 409),  # one history entry: Argo CD's "at least two successful deployments"
    ("sync", {"prune": "yes"}, 400),
    ("delete", {}, 404),
], ids=["rollback-too-few", "bad-field", "unknown-action"])
def test_application_action_refusals(action: str, body: dict[str, Any], status: int) -> None:
    custom = RecordingCustom(application())
    with pytest.raises(ActionError) as caught:
        KubeActions(None, custom=custom).application("argocd", "guestbook", action, body)
    assert caught.value.status == status
    assert custom.patches == []


@pytest.mark.parametrize("argv,expected", [
    (["dashboard"], (3100, "127.0.0.1", False, False, "argocd")),
    (["dashboard", "--port", "4000", "--address", "0.0.0.0", "--read-only", "-A", "--app-namespace", "apps"],
     (4000, "0.0.0.0", True, True, "apps")),
], ids=["defaults", "every-flag"])
def test_cli_flags(argv: list[str], expected: tuple[Any, ...]) -> None:
    from cli.main import build_parser

    args = build_parser().parse_args([*argv, "-n", "ml", "--context", "kind"])
    assert (args.port, args.address, args.read_only, args.all_namespaces, args.app_namespace) == expected
    assert (args.namespace, args.context) == ("ml", "kind")


@pytest.mark.parametrize(("stored", "expected"), [
    pytest.param("0.25", 0.25, id="scalar"),
    pytest.param("[0.13]", 0.13, id="one-sample-vector"),
    pytest.param("[ 7 ]", 7.0, id="vector-with-spaces"),
    pytest.param("[0.1,0.2]", None, id="two-samples"),
    pytest.param("NaN", None, id="not-a-number"),
    pytest.param("ok", None, id="text"),
])
def test_measurement_values_charted_as_numbers(stored: str, expected: float | None) -> None:
    from dashboard.present import _number

    assert _number(stored) == expected
