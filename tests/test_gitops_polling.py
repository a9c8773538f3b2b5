"""gitops/polling.py and gitops/metrics.py: one ls-remote per repository per round, refresh latency."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from gitops.metrics import RefreshClock
from gitops.metrics import repo_label as metric_repo
from gitops.polling import Poller, interval_from, parse_duration, tracked_ref
from gitops.webhook import repo_key

A, B = "a" * 40, "b" * 40


class FakeRepos:
    def __init__(self) -> None:
        self.refs: dict[str, dict[str, str]] = {}
        self.calls: list[str] = []

    def ls_remote(self, url: str) -> dict[str, str]:
        self.calls.append(repo_key(url))
        return dict(self.refs[repo_key(url)])


def app(url: str, revision: str = "main") -> dict[str, Any]:
    return {"spec": {"source": {"repoURL": url, "targetRevision": revision}}}


def test_durations_and_interval() -> None:
    assert parse_duration("180s") == 180 and parse_duration("3m") == 180
    assert parse_duration("1h30m") == 5400 and parse_duration("2.5") == 2.5
    assert parse_duration("soon") is None and parse_duration("") is None
    assert interval_from(None) == 120
    assert interval_from({"data": {"timeout.reconciliation": "3s"}}) == 3
    assert interval_from({"data": {"timeout.reconciliation": "0s"}}) == 0


def test_tracked_ref() -> None:
    refs = {"HEAD": A, "refs/heads/main": A, "refs/tags/v1": B}
    assert tracked_ref(refs, "HEAD") == A and tracked_ref(refs, "") == A
    assert tracked_ref(refs, "main") == A and tracked_ref(refs, "refs/heads/main") == A
    assert tracked_ref(refs, "v1") == B
    assert tracked_ref(refs, A) is None and tracked_ref(refs, "gone") is None


def test_one_ls_remote_per_repo_and_only_moved_refs_refresh() -> None:
    repos = FakeRepos()
    url = "https://github.com/org/repo"
    repos.refs[repo_key(url)] = {"HEAD": A, "refs/heads/main": A, "refs/heads/dev": A}
    repos.refs[repo_key("https://github.com/org/other")] = {"HEAD": A, "refs/heads/main": A}
    apps: list[tuple[tuple[str, str], Mapping[str, Any]]] = [
        (("argocd", f"app{i}"), app(url if i % 2 else url.upper() + ".git")) for i in range(50)]
    apps.append((("argocd", "dev"), app(url, "dev")))
    apps.append((("argocd", "other"), app("https://github.com/org/other")))
    enqueued: list[tuple[tuple[str, str], str]] = []

    async def interval() -> float:
        return 1.0

    poller = Poller(repos=repos, apps=lambda: apps,  # type: ignore[arg-type]
                    enqueue=lambda key, sha: enqueued.append((key, sha)), interval=interval)
    assert asyncio.run(poller.poll_once()) == []  # first sight: remembered only
    assert sorted(repos.calls) == ["github.com/org/other", "github.com/org/repo"]
    repos.calls.clear()
    repos.refs[repo_key(url)]["refs/heads/main"] = B
    refreshed = asyncio.run(poller.poll_once())
    assert len(repos.calls) == 2
    assert len(refreshed) == 50 and ("argocd", "dev") not in refreshed
    assert all(sha == B for _, sha in enqueued)
    assert asyncio.run(poller.poll_once()) == []  # not moved again


def test_first_sight_refreshes_an_app_showing_an_older_commit() -> None:
    repos = FakeRepos()
    url = "https://github.com/org/repo"
    repos.refs[repo_key(url)] = {"HEAD": B, "refs/heads/main": B}
    behind, current = app(url), app(url)
    behind["status"] = {"sync": {"revision": A}}
    current["status"] = {"sync": {"revision": B}}
    enqueued: list[tuple[str, str]] = []

    async def interval() -> float:
        return 1.0

    poller = Poller(repos=repos, apps=lambda: [(("n", "behind"), behind), (("n", "current"), current)],
                    enqueue=lambda key, sha: enqueued.append(key), interval=interval)
    assert asyncio.run(poller.poll_once()) == [("n", "behind")]


def test_refresh_clock_observes_the_sync_that_applied_the_commit() -> None:
    now = [1_000_000.0]
    clock = RefreshClock(clock=lambda: now[0])
    key = ("argocd", "app")
    clock.triggered(key, "webhook", B)
    old = {"status": {"operationState": {"phase": "Succeeded", "finishedAt": "2001-09-09T01:46:40Z",
                                         "syncResult": {"revision": A}}}}
    assert clock.observe(key, old) is None
    now[0] += 2.5
    done = {"status": {"operationState": {"phase": "Succeeded", "finishedAt": "2001-09-09T01:46:42Z",
                                          "syncResult": {"revision": B}}}}
    assert clock.observe(key, done) == 2.5
    assert clock.pending(key) is None


def test_metric_repo_label_carries_no_credentials() -> None:
    assert metric_repo("https://user:hunter2@git.example.com/org/repo.git") == "https://git.example.com/org/repo.git"
    assert metric_repo("git@github.com:org/repo.git") == "git@github.com:org/repo.git"
    assert metric_repo("file:///tmp/repo.git") == "file:///tmp/repo.git"
