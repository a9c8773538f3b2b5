"""Git push webhooks (``POST /api/webhook``): which Applications a push refreshes.

Who calls it: gitops/handlers.py serves ``WebhookServer`` on ``--webhook-port``
and enqueues the keys ``matching_apps`` returns; nothing here knows kopf or
Kubernetes. Payloads and secrets are Argo CD's (``argocd-secret`` keys):

* GitHub: ``X-GitHub-Event: push``, signed with ``X-Hub-Signature-256``
  (HMAC-SHA256 of the body) under ``webhook.github.secret``;
* GitLab: ``X-Gitlab-Event: Push Hook`` / ``Tag Push Hook``, ``X-Gitlab-Token``
  equal to ``webhook.gitlab.secret``;
* Bitbucket Cloud: ``X-Event-Key: repo:push``, ``X-Hook-UUID`` equal to
  ``webhook.bitbucket.uuid``.

As in Argo CD, a provider with no secret configured accepts unsigned pushes;
with one, a missing or wrong signature is a 401 and nothing is refreshed. Every
comparison is constant-time (``hmac.compare_digest``). The body is capped
(``MAX_BODY_BYTES``, Argo CD's default 50 MiB is far more than a push needs) and
a request has a total deadline.

Matching (Argo CD's): an Application is refreshed when one of its sources has
the pushed repository's URL (compared without scheme, user, ``.git``, trailing
``/`` and case: ``https://github.com/Org/Repo.git`` and ``git@github.com:org/repo``
are one repository) and its ``targetRevision`` names the pushed branch or tag
(``main``, ``refs/heads/main``), or is ``HEAD``/empty and the push is to the
default branch (or the payload does not say which branch is the default).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

GITHUB, GITLAB, BITBUCKET = "github", "gitlab", "bitbucket"
SECRET_KEYS = {GITHUB: "webhook.github.secret", GITLAB: "webhook.gitlab.secret",
               BITBUCKET: "webhook.bitbucket.uuid"}
MAX_BODY_BYTES = 1024 * 1024
REQUEST_DEADLINE_SECONDS = 10.0
PATH = "/api/webhook"

_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~-]+@)?([A-Za-z0-9.-]+):(?!//)(.*)$")


class WebhookError(Exception):
    """A request refused: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Push:
    """One push: the repository's URLs (as ``repo_key``s), and the ref it moved."""

    provider: str
    repos: frozenset[str]
    ref: str  # refs/heads/main or refs/tags/v1
    commit: str = ""
    default_branch: str | None = None
    display_url: str = ""

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None

    @property
    def tag(self) -> str | None:
        return self.ref.removeprefix("refs/tags/") if self.ref.startswith("refs/tags/") else None


@dataclass
class WebhookSecrets:
    github: str = field(default="", repr=False)
    gitlab: str = field(default="", repr=False)
    bitbucket_uuid: str = field(default="", repr=False)

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> WebhookSecrets:
        """From ``argocd-secret``'s decoded data."""
        return cls(github=data.get(SECRET_KEYS[GITHUB], ""), gitlab=data.get(SECRET_KEYS[GITLAB], ""),
                   bitbucket_uuid=data.get(SECRET_KEYS[BITBUCKET], ""))

    def merged(self, other: WebhookSecrets) -> WebhookSecrets:
        """These secrets, each one missing taken from ``other``."""
        return WebhookSecrets(github=self.github or other.github, gitlab=self.gitlab or other.gitlab,
                              bitbucket_uuid=self.bitbucket_uuid or other.bitbucket_uuid)


def repo_key(url: str) -> str:
    """A repository URL without scheme, user, port-less case, ``.git`` or trailing ``/``."""
    url = url.strip()
    scp = _SCP_LIKE.match(url) if "://" not in url else None
    if scp:
        host, path = scp.group(1), scp.group(2)
    else:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        path = parts.path
    path = "/" + path.strip("/")
    path = path.removesuffix(".git").rstrip("/")
    return f"{host}{path}".lower()


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def provider_of(headers: Mapping[str, str]) -> str | None:
    if _header(headers, "X-GitHub-Event"):
        return GITHUB
    if _header(headers, "X-Gitlab-Event"):
        return GITLAB
    if _header(headers, "X-Event-Key") or _header(headers, "X-Hook-UUID"):
        return BITBUCKET
    return None


def verify(provider: str, headers: Mapping[str, str], body: bytes, secrets: WebhookSecrets) -> None:
    """Raise a 401 ``WebhookError`` unless the request carries the provider's secret."""
    if provider == GITHUB and secrets.github:
        given = _header(headers, "X-Hub-Signature-256")
        digest = hmac.new(secrets.github.encode("utf-8"), body, hashlib.sha256).hexdigest()
        if not _equal(given, f"sha256={digest}"):
            raise WebhookError(401, "github webhook: HMAC verification failed")
    elif provider == GITLAB and secrets.gitlab:
        if not _equal(_header(headers, "X-Gitlab-Token"), secrets.gitlab):
            raise WebhookError(401, "gitlab webhook: invalid X-Gitlab-Token")
    elif provider == BITBUCKET and secrets.bitbucket_uuid:
        if not _equal(_header(headers, "X-Hook-UUID"), secrets.bitbucket_uuid):
            raise WebhookError(401, "bitbucket webhook: UUID mismatch")


def _strings(*values: Any) -> list[str]:
    return [v for v in values if isinstance(v, str) and v]


def _get(doc: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(part)
    return doc


def _github(event: str, payload: Mapping[str, Any]) -> Push | None:
    if event != "push":
        return None  # ping and other events refresh nothing
    repo = payload.get("repository") or {}
    urls = _strings(_get(repo, "html_url"), _get(repo, "clone_url"), _get(repo, "ssh_url"),
                    _get(repo, "git_url"), _get(repo, "url"))
    return Push(provider=GITHUB, repos=frozenset(repo_key(u) for u in urls),
                ref=str(payload.get("ref") or ""), commit=str(payload.get("after") or ""),
                default_branch=_get(repo, "default_branch") or None,
                display_url=urls[0] if urls else "")


def _gitlab(event: str, payload: Mapping[str, Any]) -> Push | None:
    if event not in ("Push Hook", "Tag Push Hook", "System Hook"):
        return None
    project = payload.get("project") or {}
    urls = _strings(_get(project, "web_url"), _get(project, "git_http_url"),
                    _get(project, "git_ssh_url"), _get(payload, "repository", "homepage"),
                    _get(payload, "repository", "git_http_url"))
    return Push(provider=GITLAB, repos=frozenset(repo_key(u) for u in urls),
                ref=str(payload.get("ref") or ""),
                commit=str(payload.get("checkout_sha") or payload.get("after") or ""),
                default_branch=_get(project, "default_branch") or None,
                display_url=urls[0] if urls else "")


def _bitbucket(event: str, payload: Mapping[str, Any]) -> list[Push]:
    if event != "repo:push":
        return []
    repo = payload.get("repository") or {}
    full_name = _get(repo, "full_name")
    urls = _strings(_get(repo, "links", "html", "href"))
    if isinstance(full_name, str) and full_name:
        urls += [f"https://bitbucket.org/{full_name}", f"git@bitbucket.org:{full_name}.git"]
    repos = frozenset(repo_key(u) for u in urls)
    pushes = []
    for change in _get(payload, "push", "changes") or []:
        new = _get(change, "new") or {}
        name, kind = _get(new, "name"), _get(new, "type")
        if not isinstance(name, str) or not name:
            continue
        ref = f"refs/tags/{name}" if kind == "tag" else f"refs/heads/{name}"
        pushes.append(Push(provider=BITBUCKET, repos=repos, ref=ref,
                           commit=str(_get(new, "target", "hash") or ""),
                           display_url=urls[0] if urls else ""))
    return pushes


def parse(headers: Mapping[str, str], body: bytes, secrets: WebhookSecrets) -> list[Push]:
    """The pushes a verified request announces ([] for other events); ``WebhookError`` if refused."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookError(413, f"webhook payload larger than {MAX_BODY_BYTES} bytes")
    provider = provider_of(headers)
    if provider is None:
        raise WebhookError(400, "unknown webhook event: no X-GitHub-Event, X-Gitlab-Event or X-Event-Key")
    verify(provider, headers, body, secrets)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(400, f"{provider} webhook: the payload is not JSON: {exc}") from None
    if not isinstance(payload, Mapping):
        raise WebhookError(400, f"{provider} webhook: the payload is not a JSON object")
    if provider == GITHUB:
        push = _github(_header(headers, "X-GitHub-Event"), payload)
        return [push] if push else []
    if provider == GITLAB:
        push = _gitlab(_header(headers, "X-Gitlab-Event"), payload)
        return [push] if push else []
    return _bitbucket(_header(headers, "X-Event-Key"), payload)


def revision_matches(target_revision: str | None, push: Push) -> bool:
    """Argo CD's rule: the push moved the branch or tag ``target_revision`` names."""
    revision = (target_revision or "").strip()
    if revision in ("", "HEAD"):
        return push.branch is not None and (push.default_branch is None
                                            or push.branch == push.default_branch)
    short = push.branch if push.branch is not None else push.tag
    return revision in (push.ref, short) or revision == f"refs/{push.ref.removeprefix('refs/')}"


def app_sources(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = body.get("spec") or {}
    sources = [spec["source"]] if isinstance(spec.get("source"), Mapping) else []
    sources += [s for s in spec.get("sources") or [] if isinstance(s, Mapping)]
    return sources


def matches(body: Mapping[str, Any], push: Push) -> bool:
    """True if the Application ``body`` tracks the repository and ref ``push`` moved."""
    for source in app_sources(body):
        url = source.get("repoURL")
        if isinstance(url, str) and repo_key(url) in push.repos and revision_matches(
                source.get("targetRevision"), push):
            return True
    return False


def matching_apps(apps: Iterable[tuple[Any, Mapping[str, Any]]], pushes: Iterable[Push]) -> list[Any]:
    """The keys of the Applications (key, body) any of ``pushes`` refreshes."""
    pushes = list(pushes)
    return [key for key, body in apps if any(matches(body, push) for push in pushes)]


@dataclass
class WebhookConfig:
    """Filled by the CLI: the port (0: no server) and secrets given by flag or environment.

    A secret given here wins over the ``argocd-secret`` key of the same provider.
    """

    port: int = 0
    host: str = "0.0.0.0"  # noqa: S104 - Git hosts must reach it
    secrets: WebhookSecrets = field(default_factory=WebhookSecrets)


WEBHOOK_CONFIG = WebhookConfig()
ARGOCD_SECRET = "argocd-secret"
ARGOCD_CM = "argocd-cm"


# --- the HTTP server -------------------------------------------------------------------------

Handler = Callable[[list[Push]], Awaitable[int]]


class WebhookServer:
    """``POST /api/webhook`` on ``port``; ``on_push`` refreshes and returns how many apps."""

    def __init__(self, *, port: int, host: str, secrets: Callable[[], Awaitable[WebhookSecrets]],
                 on_push: Handler, deadline: float = REQUEST_DEADLINE_SECONDS) -> None:
        self.port, self.host = port, host
        self.secrets, self.on_push, self.deadline = secrets, on_push, deadline
        self.runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(PATH, self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await asyncio.wait_for(self._handle(request), timeout=self.deadline)
        except TimeoutError:
            return web.json_response({"error": "webhook request deadline exceeded"}, status=408)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return web.json_response({"error": "payload too large"}, status=413)
        try:
            body = await request.content.read(MAX_BODY_BYTES + 1)
            pushes = parse(dict(request.headers), body, await self.secrets())
        except WebhookError as exc:
            return web.json_response({"error": exc.message}, status=exc.status)
        refreshed = await self.on_push(pushes) if pushes else 0
        return web.json_response({"refreshed": refreshed})

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
