"""The dashboard's aiohttp application: settings, guards, static page, watches, and serving.

cli/dashboard.py (``tidegate dashboard``) builds ``Settings`` and an ApiClient from the
caller's kubeconfig and calls ``serve``; tests call ``build_app`` with a fed cache and fake
actions. Every request passes two guards: the Host must name this machine (a page that
re-binds its DNS name to 127.0.0.1 cannot read the API) and errors come back as
``{"error"}`` without tracebacks; every POST also needs the per-process CSRF token in
``X-Tidegate-CSRF``, a JSON content type and, if sent, an Origin equal to ours, and is refused
outright with ``--read-only``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from aiohttp import web

from dashboard import api, present
from dashboard.actions import ActionError, Actions, KubeActions
from dashboard.live import Cache, Watcher, targets
from views.appdiff import DEFAULT_APP_NAMESPACE, Differ, kube_differ

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
CSRF_HEADER = "X-Tidegate-CSRF"
JSON_TYPE = "application/json"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
ANY_ADDRESSES = frozenset({"0.0.0.0", "::", ""})
SHUTDOWN_SECONDS = 2.0

MSG_READ_ONLY = "the dashboard is read-only"
MSG_CSRF = "missing or wrong X-Tidegate-CSRF header: reload the page"
MSG_CONTENT_TYPE = "the request must be application/json"
MSG_ORIGIN = "cross-origin request refused"
MSG_HOST = "unknown Host header: open the dashboard by the address it printed"
MSG_INTERNAL = "internal error (see the dashboard's log)"
MSG_NOT_FOUND = "not found"
MSG_NO_PAGE = "the dashboard's page (dashboard/static/index.html) is not installed"
MSG_URL = "Tidegate dashboard: {url}"
MSG_READ_ONLY_NOTE = "(read-only: actions are disabled)"


def _version() -> str:
    try:
        return metadata.version("tidegate")
    except metadata.PackageNotFoundError:
        return "dev"


@dataclass
class Settings:
    """What ``tidegate dashboard`` was asked for (namespaces None: all namespaces, -A)."""

    address: str = "127.0.0.1"
    port: int = 3100
    read_only: bool = False
    namespaces: list[str] | None = None
    app_namespace: str = DEFAULT_APP_NAMESPACE
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    version: str = field(default_factory=_version)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _allowed_host(settings: Settings, request: web.Request) -> bool:
    if settings.address in ANY_ADDRESSES:
        return True  # bound to every interface on purpose: the user chose to expose it
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return host in LOCAL_HOSTS or host == settings.address


def _post_refusal(settings: Settings, request: web.Request) -> str | None:
    if settings.read_only:
        return MSG_READ_ONLY
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return MSG_ORIGIN
    if request.content_type != JSON_TYPE:
        return MSG_CONTENT_TYPE
    token = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(token.encode(), settings.csrf_token.encode()):
        return MSG_CSRF
    return None


def guards(settings: Settings) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _allowed_host(settings, request):
            return api.error(MSG_HOST, 403)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            refusal = _post_refusal(settings, request)
            if refusal is not None:
                return api.error(refusal, 403)
        try:
            return await handler(request)
        except ActionError as exc:
            return api.error(str(exc), exc.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return api.error(MSG_NOT_FOUND if exc.status == 404 else exc.reason, exc.status)
        except Exception as exc:
            status = getattr(exc, "status", None)
            if isinstance(status, int) and 400 <= status < 600 and hasattr(exc, "reason"):
                return api.error(api._message(exc), status)  # the API server refused: say why
            log.exception("dashboard request %s %s failed", request.method, request.path)
            return api.error(MSG_INTERNAL, 500)

    return guard


async def index(request: web.Request) -> web.StreamResponse:
    page = STATIC_DIR / "index.html"
    if not page.is_file():
        return api.error(MSG_NO_PAGE, 404)
    return web.FileResponse(page, headers={"Cache-Control": "no-cache"})


def build_app(settings: Settings, *, cache: Cache | None = None, actions: Actions | None = None,
              differ: Differ | None = None, api_client: Any = None) -> web.Application:
    """The application; with ``api_client``, it watches the cluster and acts on it while it runs."""
    now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731 (one clock for views and samples)
    cache = cache or Cache()
    if cache.weights is None:
        cache.weights = lambda rollout, sets: present.weights(rollout, sets, now())
    if api_client is not None:
        actions = actions or KubeActions(api_client)
        differ = differ or kube_differ(api_client, control_namespace=settings.app_namespace)
    app = web.Application(middlewares=[guards(settings)], client_max_size=api.MAX_BODY)
    app[api.STATE] = api.State(read_only=settings.read_only, csrf_token=settings.csrf_token,
                               version=settings.version, namespaces=settings.namespaces, cache=cache,
                               actions=actions, differ=differ, now=now)
    app.on_shutdown.append(lambda _app: _close_streams(cache))
    app.router.add_get("/", index)
    api.add_routes(app)
    if STATIC_DIR.is_dir():
        app.router.add_static("/static", STATIC_DIR)
    if api_client is not None:
        app.cleanup_ctx.append(_watching(settings, cache, api_client))
    return app


async def _close_streams(cache: Cache) -> None:
    cache.close_subscribers()


def _watching(settings: Settings, cache: Cache, api_client: Any) -> Callable[[web.Application], Any]:
    async def ctx(app: web.Application) -> Any:
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        watchers = [Watcher(api_client, t, cache, loop, stop) for t in targets(settings.namespaces,
                                                                                 settings.app_namespace)]
        cache.watching.update(w.target.kind for w in watchers)
        for watcher in watchers:
            watcher.start()
        yield
        stop.set()  # daemon threads: each ends at its watch's next event or timeout

    return ctx


async def serve(settings: Settings, api_client: Any, *, announce: Callable[[str], None]) -> None:
    """Serve until cancelled (Ctrl-C); ``announce`` gets the URL once the port is bound."""
    app = build_app(settings, api_client=api_client)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_SECONDS, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host=settings.address, port=settings.port)
        await site.start()
        host = f"[{settings.address}]" if ":" in settings.address else settings.address
        announce(MSG_URL.format(url=f"http://{host}:{settings.port}/")
                 + (f" {MSG_READ_ONLY_NOTE}" if settings.read_only else ""))
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
