"""Polling, the fallback to webhooks: one ``ls-remote`` per repository URL per interval.

Who calls it: gitops/handlers.py runs ``Poller.run`` as a task of the controller
process and gives it the Applications it knows (``apps``) and a way to refresh
one (``enqueue``). Each round groups the Applications by repository URL, asks
each remote for its refs once (``RepoCache.ls_remote``, which also shares a
call already in flight), and refreshes the Applications whose tracked ref
(branch, tag or HEAD; a commit sha never moves) now points at another commit.
The first sight of a ref refreshes only the Applications whose status shows
another commit (the ref moved before the poller knew it); the others were
reconciled when the controller saw them.

The interval is the ``argocd-cm`` ConfigMap's ``timeout.reconciliation``
(Argo CD's default 120 s; ``0s`` turns polling off), read every round, unless a
fixed interval is given; each round waits the interval plus up to 10 % jitter so
that many controllers do not poll in step.

``CountedRepoCache`` is the RepoCache that counts its git requests in
``argocd_git_request_total``.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.logging import get_logger
from gitops.metrics import GIT_REQUESTS, repo_label
from gitops.source import RepoCache, SourceError
from gitops.webhook import app_sources, repo_key

log = get_logger("tidegate.gitops.polling")

DEFAULT_INTERVAL_SECONDS = 120.0
JITTER_FRACTION = 0.1
MIN_INTERVAL_SECONDS = 1.0
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Key = tuple[str, str]


@dataclass
class PollConfig:
    """Filled by the CLI: a fixed interval (None: argocd-cm's ``timeout.reconciliation``)."""

    interval_seconds: float | None = None


POLL_CONFIG = PollConfig()


class CountedRepoCache(RepoCache):
    """RepoCache counting each ls-remote and fetch it runs (argocd_git_request_total)."""

    def _ls_remote(self, url: str, revision: str) -> dict[str, str]:
        GIT_REQUESTS.labels(repo=repo_label(url), request_type="ls-remote").inc()
        return super()._ls_remote(url, revision)

    def _fetch(self, url: str, revision: str, *, ref: str | None = None) -> None:
        GIT_REQUESTS.labels(repo=repo_label(url), request_type="fetch").inc()
        super()._fetch(url, revision, ref=ref)


def parse_duration(text: str | None) -> float | None:
    """A Go duration (``180s``, ``3m``, ``1h30m``) or bare seconds; None if unreadable."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


def interval_from(config_map: Mapping[str, Any] | None) -> float:
    """``timeout.reconciliation`` of the argocd-cm ConfigMap (its default when absent)."""
    data = (config_map or {}).get("data") or {}
    value = parse_duration(data.get("timeout.reconciliation"))
    return DEFAULT_INTERVAL_SECONDS if value is None else value


def tracked_ref(refs: Mapping[str, str], revision: str | None) -> str | None:
    """The commit the ref ``revision`` names in ``refs`` (None: not a moving ref, or absent)."""
    revision = (revision or "").strip() or "HEAD"
    if revision == "HEAD":
        return refs.get("HEAD")
    if _FULL_SHA.match(revision):
        return None
    for candidate in (revision, f"refs/{revision}", f"refs/tags/{revision}", f"refs/heads/{revision}"):
        if candidate.startswith("refs/") and candidate in refs:
            return refs[candidate]
    return None


@dataclass
class Poller:
    """One ls-remote per repository URL per round; refreshes the apps whose ref moved."""

    repos: RepoCache
    apps: Callable[[], Iterable[tuple[Key, Mapping[str, Any]]]]
    enqueue: Callable[[Key, str], None]  # (app key, the new commit)
    interval: Callable[[], Awaitable[float]]
    run_blocking: Callable[..., Any] | None = None  # loop.run_in_executor-like; None: to_thread
    seen: dict[tuple[str, str], str] = field(default_factory=dict)  # (repo key, revision) -> sha
    rounds: int = 0

    def groups(self) -> dict[str, tuple[str, list[tuple[Key, str, str]]]]:
        """repo key -> (one URL to ask, [(app key, targetRevision, the revision it shows)])."""
        out: dict[str, tuple[str, list[tuple[Key, str, str]]]] = {}
        for key, body in self.apps():
            shown = str(((body.get("status") or {}).get("sync") or {}).get("revision") or "")
            for source in app_sources(body):
                url = source.get("repoURL")
                if not isinstance(url, str) or not url:
                    continue
                group = out.setdefault(repo_key(url), (url, []))
                group[1].append((key, str(source.get("targetRevision") or "HEAD"), shown))
        return out

    def poll_refs(self, url: str) -> dict[str, str] | None:
        try:
            return self.repos.ls_remote(url)
        except SourceError as exc:
            log.info("poll: ls-remote failed", repo=exc.url, error=exc.message)
            return None

    async def poll_once(self) -> list[Key]:
        """One round: the apps refreshed."""
        self.rounds += 1
        groups = self.groups()
        urls = [url for url, _ in groups.values()]
        results = await asyncio.gather(*(self._call(self.poll_refs, url) for url in urls))
        refreshed: list[Key] = []
        for (rkey, (_url, members)), refs in zip(groups.items(), results, strict=True):
            if refs is None:
                continue
            moved: dict[str, str] = {}
            first: dict[str, str] = {}
            for revision in {revision for _, revision, _ in members}:
                sha = tracked_ref(refs, revision)
                if sha is None:
                    continue
                before = self.seen.get((rkey, revision))
                self.seen[(rkey, revision)] = sha
                if before is None:
                    first[revision] = sha
                elif before != sha:
                    moved[revision] = sha
            for app_key, revision, shown in members:
                if app_key in refreshed:
                    continue
                sha = moved.get(revision)
                if sha is None and revision in first and shown and shown != first[revision]:
                    sha = first[revision]  # first sight, and the app shows an older commit
                if sha is not None:
                    self.enqueue(app_key, sha)
                    refreshed.append(app_key)
        return refreshed

    async def _call(self, fn: Callable[[str], dict[str, str] | None], url: str) -> dict[str, str] | None:
        if self.run_blocking is not None:
            result: dict[str, str] | None = await self.run_blocking(fn, url)
            return result
        return await asyncio.to_thread(fn, url)

    async def run(self) -> None:
        """Poll forever; an interval of 0 pauses polling (re-read every minute)."""
        while True:
            try:
                interval = await self.interval()
            except Exception as exc:  # unreadable settings: the default, and say so
                log.error("poll: reading the interval failed", exc_info=exc)
                interval = DEFAULT_INTERVAL_SECONDS
            if interval <= 0:
                await asyncio.sleep(60.0)
                continue
            interval = max(interval, MIN_INTERVAL_SECONDS)
            await asyncio.sleep(interval + random.uniform(0, interval * JITTER_FRACTION))  # noqa: S311
            try:
                refreshed = await self.poll_once()
            except Exception as exc:  # a round that fails must not end polling
                log.error("poll round failed", exc_info=exc)
                continue
            if refreshed:
                log.info("poll: refs moved", refreshed=len(refreshed), interval=interval)
