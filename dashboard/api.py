"""The dashboard's HTTP endpoints: GETs from the live cache, SSE events, POST actions.

Registered by dashboard/server.py ``build_app``; the contract is /work/brief/dashboard-api.md.
GETs never call the API server except for an Application's diffs, which are computed on
the page's request (views.appdiff, the controller's comparison) with a deadline and kept per
Application resourceVersion. POSTs reach here only after server.py's CSRF and read-only
checks; the blocking kubernetes calls run in threads with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dashboard import present
from dashboard.actions import ActionError, Actions
from dashboard.live import APPLICATION, CLOSED, POD, REPLICASET, ROLLOUT, Cache
from views import explain as explain_view
from views.appdiff import Differ

KEEPALIVE_SECONDS = 15.0
ACTION_SECONDS = 30.0
DIFF_SECONDS = 60.0
MAX_DIFF_ENTRIES = 64
MAX_DIFF_TEXT = 200_000  # per resource: a huge ConfigMap's diff is cut, not shipped whole
MAX_BODY = 16 * 1024
DIFF_WORKERS = 2

MSG_ROLLOUT_NOT_FOUND = "rollout {namespace}/{name} not found"
MSG_APP_NOT_FOUND = "application {namespace}/{name} not found"
MSG_LOADING = "the dashboard is still reading {what} from the cluster; try again in a moment"
MSG_NO_ACTIONS = "actions are not available"
MSG_BAD_JSON = "the request body must be a JSON object"
MSG_TIMEOUT = "the API server did not answer within {seconds:.0f}s"
MSG_DIFF_TIMEOUT = "the diff took longer than {seconds:.0f}s"
MSG_DIFF_FAILED = "the diff failed: {error}"
# user:password@ in a URL (a Git remote in a failed clone's message): never shown.
URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
MSG_TRUNCATED = "\n... (diff cut at {size} characters)\n"

Explain = Callable[[Mapping[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]],
                   dict[str, Any]]
"""(rollout, its ReplicaSets, its AnalysisRuns, the Events about both) -> views.explain's JSON."""


def explain(rollout: Mapping[str, Any], sets: list[dict[str, Any]], runs: list[dict[str, Any]],
            events: list[dict[str, Any]]) -> dict[str, Any]:
    return explain_view.to_dict(explain_view.build(rollout, analysis_runs=runs, events=events, replicasets=sets))


@dataclass
class State:
    """What the handlers share: settings, the cache, and the ports to the cluster."""

    read_only: bool
    csrf_token: str
    version: str
    namespaces: list[str] | None
    cache: Cache
    actions: Actions | None = None
    differ: Differ | None = None
    explain: Explain = explain
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    diffs: OrderedDict[tuple[str, ...], dict[str, Any]] = field(default_factory=OrderedDict)
    diff_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(DIFF_WORKERS))


STATE: web.AppKey[State] = web.AppKey("state", State)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def error(message: str, status: int) -> web.Response:
    return _json({"error": message}, status=status)


def _loading(state: State, kind: str) -> bool:
    return state.cache.watched(kind) and kind not in state.cache.synced


# --- GET ------------------------------------------------------------------------------------

async def get_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return _json({"readOnly": state.read_only, "csrfToken": state.csrf_token, "version": state.version,
                  "namespaces": state.namespaces})


async def get_rollouts(request: web.Request) -> web.Response:
    state = request.app[STATE]
    now = state.now()
    models = [present.rollout_model(r, state.cache.rollout_parts(*_key(r)), now)
              for r in state.cache.items(ROLLOUT)]
    return _json(present.rollouts_list(models))


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _absent(state: State, kind: str, what: str, not_found: str) -> web.Response:
    """A detail page's object is not in the cache: 503 while its first list is still coming, else 404."""
    if _loading(state, kind):
        return error(MSG_LOADING.format(what=what), 503)
    return error(not_found, 404)


async def get_rollout(request: web.Request) -> web.Response:
    state = request.app[STATE]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    rollout = state.cache.get(ROLLOUT, namespace, name)
    if rollout is None:
        return _absent(state, ROLLOUT, "rollouts", MSG_ROLLOUT_NOT_FOUND.format(namespace=namespace, name=name))
    parts = state.cache.rollout_parts(namespace, name)
    explained = state.explain(rollout, parts[0], parts[2], state.cache.events(namespace, name, parts[2]))
    return _json(present.rollout_detail(rollout, parts, history=state.cache.history(namespace, name),
                                        explain=explained, now=state.now()))


async def get_applications(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return _json(present.apps_list(state.cache.items(APPLICATION)))


def _children(cache: Cache) -> present.ChildLookup:
    def lookup(kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
        return [*cache.children(REPLICASET, namespace, kind, name), *cache.children(POD, namespace, kind, name)]

    return lookup


def _needs_diff(app: Mapping[str, Any]) -> bool:
    status = app.get("status") or {}
    return (status.get("sync") or {}).get("status") != "Synced" or any(
        r.get("status") == "OutOfSync" for r in status.get("resources") or [])


async def _diffs(state: State, app: Mapping[str, Any]) -> dict[str, Any]:
    """{"diffs": [...], "diffError": str|None}, computed once per Application resourceVersion."""
    if state.differ is None or not _needs_diff(app):
        return {"diffs": [], "diffError": None}
    meta = app.get("metadata") or {}
    key = (str(meta.get("namespace")), str(meta.get("name")), str(meta.get("resourceVersion")),
           str(((app.get("status") or {}).get("sync") or {}).get("revision")))
    if key in state.diffs:
        state.diffs.move_to_end(key)
        return state.diffs[key]
    differ = state.differ
    async with state.diff_slots:
        try:
            found = await asyncio.wait_for(asyncio.to_thread(differ, app), DIFF_SECONDS)
        except TimeoutError:
            return {"diffs": [], "diffError": MSG_DIFF_TIMEOUT.format(seconds=DIFF_SECONDS)}
        except Exception as exc:  # a failed render or dry run: the page still shows the status
            return {"diffs": [], "diffError": MSG_DIFF_FAILED.format(error=_message(exc))}
    items = [{"group": d.group, "kind": d.kind, "namespace": d.namespace, "name": d.name,
              "diff": d.text if len(d.text) <= MAX_DIFF_TEXT
              else d.text[:MAX_DIFF_TEXT] + MSG_TRUNCATED.format(size=MAX_DIFF_TEXT)} for d in found]
    result = {"diffs": items, "diffError": None}
    state.diffs[key] = result
    while len(state.diffs) > MAX_DIFF_ENTRIES:
        state.diffs.popitem(last=False)
    return result


async def get_application(request: web.Request) -> web.Response:
    state = request.app[STATE]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    app = state.cache.get(APPLICATION, namespace, name)
    if app is None:
        return _absent(state, APPLICATION, "applications", MSG_APP_NOT_FOUND.format(namespace=namespace, name=name))
    diffs = await _diffs(state, app)
    body = present.app_detail(app, _children(state.cache), diffs["diffs"])
    body["diffError"] = diffs["diffError"]
    return _json(body)


# --- SSE --------------------------------------------------------------------------------------

async def get_events(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    queue = state.cache.subscribe()
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if item == CLOSED:
                break
            event, namespace, name, kind = item
            data = json.dumps({"namespace": namespace, "name": name, "type": kind})
            await response.write(f"event: {event}\ndata: {data}\n\n".encode())
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away
    finally:
        state.cache.unsubscribe(queue)
    return response


# --- POST -------------------------------------------------------------------------------------

def _message(exc: BaseException) -> str:
    """What went wrong, for a person: the API server's own message, never a traceback or header."""
    return URL_CREDENTIALS.sub("***@", _raw_message(exc))


def _raw_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            parsed = json.loads(body)
        except (TypeError, ValueError):
            parsed = None
        if isinstance(parsed, dict) and parsed.get("message"):
            return str(parsed["message"])[:1000]
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason)[:1000]
    return str(exc).splitlines()[0][:1000] if str(exc) else type(exc).__name__


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ActionError(413, MSG_BAD_JSON)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ActionError(400, MSG_BAD_JSON) from None
    if not isinstance(body, dict):
        raise ActionError(400, MSG_BAD_JSON)
    return body


async def _act(request: web.Request, call: Callable[[Actions, str, str, str, dict[str, Any]], str]) -> web.Response:
    state = request.app[STATE]
    if state.actions is None:
        return error(MSG_NO_ACTIONS, 503)
    body = await _body(request)
    info = request.match_info
    actions = state.actions
    try:
        message = await asyncio.wait_for(
            asyncio.to_thread(call, actions, info["namespace"], info["name"], info["action"], body), ACTION_SECONDS)
    except TimeoutError:
        return error(MSG_TIMEOUT.format(seconds=ACTION_SECONDS), 504)
    return _json({"message": message})


async def post_rollout(request: web.Request) -> web.Response:
    return await _act(request, lambda a, ns, name, action, body: a.rollout(ns, name, action, body))


async def post_application(request: web.Request) -> web.Response:
    return await _act(request, lambda a, ns, name, action, body: a.application(ns, name, action, body))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/config", get_config)
    app.router.add_get("/api/rollouts", get_rollouts)
    app.router.add_get("/api/rollouts/{namespace}/{name}", get_rollout)
    app.router.add_get("/api/applications", get_applications)
    app.router.add_get("/api/applications/{namespace}/{name}", get_application)
    app.router.add_get("/api/events", get_events)
    app.router.add_post("/api/rollouts/{namespace}/{name}/{action}", post_rollout)
    app.router.add_post("/api/applications/{namespace}/{name}/{action}", post_application)
