"""gitops/webhook.py: push payloads, secrets and which Applications a push refreshes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import pytest

from gitops.webhook import (
    MAX_BODY_BYTES,
    Push,
    WebhookError,
    WebhookSecrets,
    WebhookServer,
    matching_apps,
    parse,
    repo_key,
)

SECRET = "s3cr3t"


def github_body(url: str = "https://github.com/Org/Repo", ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "after": "a" * 40,
                       "repository": {"html_url": url, "clone_url": url + ".git",
                                      "ssh_url": "git@github.com:Org/Repo.git",
                                      "default_branch": "main"}}).encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def app(url: str, revision: str | None = "main") -> dict[str, Any]:
    source: dict[str, Any] = {"repoURL": url}
    if revision is not None:
        source["targetRevision"] = revision
    return {"spec": {"source": source}}


def test_repo_key_ignores_scheme_user_suffix_and_case() -> None:
    keys = {repo_key(u) for u in ("https://github.com/Org/Repo.git", "git@github.com:org/repo",
                                   "ssh://git@GitHub.com/org/repo.git/", "http://github.com/org/repo/")}
    assert keys == {"github.com/org/repo"}
    assert repo_key("file:///tmp/x/remote.git") == "/tmp/x/remote"
    assert repo_key("https://github.com/org/repo") != repo_key("https://github.com/org/repo2")


def test_github_push_signed() -> None:
    body = github_body()
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(body)}
    [push] = parse(headers, body, WebhookSecrets(github=SECRET))
    assert push.branch == "main" and push.commit == "a" * 40
    assert "github.com/org/repo" in push.repos


@pytest.mark.parametrize("signature", ["", "sha256=" + "0" * 64, sign(b"other")])
def test_github_bad_signature_is_401(signature: str) -> None:
    body = github_body()
    with pytest.raises(WebhookError) as err:
        parse({"X-GitHub-Event": "push", "X-Hub-Signature-256": signature}, body,
              WebhookSecrets(github=SECRET))
    assert err.value.status == 401


def test_no_secret_configured_accepts_unsigned_as_argo_cd() -> None:
    assert parse({"X-GitHub-Event": "push"}, github_body(), WebhookSecrets())


def test_github_ping_refreshes_nothing() -> None:
    body = b'{"zen": "hi"}'
    assert parse({"X-GitHub-Event": "ping", "X-Hub-Signature-256": sign(body)}, body,
                 WebhookSecrets(github=SECRET)) == []


def test_gitlab_token() -> None:
    body = json.dumps({"ref": "refs/heads/dev", "checkout_sha": "b" * 40,
                       "project": {"web_url": "https://gitlab.com/g/p",
                                   "git_ssh_url": "git@gitlab.com:g/p.git"}}).encode()
    [push] = parse({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET}, body,
                   WebhookSecrets(gitlab=SECRET))
    assert push.branch == "dev" and push.commit == "b" * 40
    with pytest.raises(WebhookError) as err:
        parse({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"}, body,
              WebhookSecrets(gitlab=SECRET))
    assert err.value.status == 401


def test_bitbucket_uuid_and_changes() -> None:
    body = json.dumps({"repository": {"full_name": "team/repo",
                                      "links": {"html": {"href": "https://bitbucket.org/team/repo"}}},
                       "push": {"changes": [{"new": {"name": "main", "type": "branch",
                                                     "target": {"hash": "c" * 40}}},
                                            {"new": {"name": "v1", "type": "tag"}},
                                            {"new": None}]}}).encode()
    pushes = parse({"X-Event-Key": "repo:push", "X-Hook-UUID": "{u}"}, body,
                   WebhookSecrets(bitbucket_uuid="{u}"))
    assert [p.ref for p in pushes] == ["refs/heads/main", "refs/tags/v1"]
    with pytest.raises(WebhookError):
        parse({"X-Event-Key": "repo:push", "X-Hook-UUID": "{x}"}, body,
              WebhookSecrets(bitbucket_uuid="{u}"))


def test_refusals() -> None:
    with pytest.raises(WebhookError) as err:
        parse({}, b"{}", WebhookSecrets())
    assert err.value.status == 400
    with pytest.raises(WebhookError) as err:
        parse({"X-GitHub-Event": "push"}, b"not json", WebhookSecrets())
    assert err.value.status == 400
    with pytest.raises(WebhookError) as err:
        parse({"X-GitHub-Event": "push"}, b" " * (MAX_BODY_BYTES + 1), WebhookSecrets())
    assert err.value.status == 413


def test_matching_by_repo_and_revision() -> None:
    push = Push(provider="github", repos=frozenset({"github.com/org/repo"}), ref="refs/heads/main",
                default_branch="main")
    apps = [
        ("same", app("git@github.com:org/repo.git", "main")),
        ("refs", app("https://github.com/ORG/repo", "refs/heads/main")),
        ("head", app("https://github.com/org/repo", "HEAD")),
        ("empty", app("https://github.com/org/repo", None)),
        ("other-branch", app("https://github.com/org/repo", "dev")),
        ("tag", app("https://github.com/org/repo", "v1")),
        ("other-repo", app("https://github.com/org/repo2", "main")),
        ("multi", {"spec": {"sources": [{"repoURL": "https://x/y", "targetRevision": "main"},
                                        {"repoURL": "https://github.com/org/repo",
                                         "targetRevision": "main"}]}}),
    ]
    assert matching_apps(apps, [push]) == ["same", "refs", "head", "empty", "multi"]
    dev = Push(provider="github", repos=push.repos, ref="refs/heads/dev", default_branch="main")
    assert matching_apps(apps, [dev]) == ["other-branch"]
    tag = Push(provider="github", repos=push.repos, ref="refs/tags/v1")
    assert matching_apps(apps, [tag]) == ["tag"]


def test_server_answers_and_refreshes_only_when_verified() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    refreshed: list[list[Push]] = []

    async def secrets() -> WebhookSecrets:
        return WebhookSecrets(github=SECRET)

    async def on_push(pushes: list[Push]) -> int:
        refreshed.append(pushes)
        return 3

    async def scenario() -> None:
        server = WebhookServer(port=0, host="127.0.0.1", secrets=secrets, on_push=on_push)
        async with TestClient(TestServer(server.app())) as http:
            body = github_body()
            bad = await http.post("/api/webhook", data=body,
                                  headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(b"x")})
            assert bad.status == 401
            assert refreshed == []
            good = await http.post("/api/webhook", data=body,
                                   headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(body)})
            assert good.status == 200 and (await good.json()) == {"refreshed": 3}
            big = await http.post("/api/webhook", data=b"x" * (MAX_BODY_BYTES + 10),
                                  headers={"X-GitHub-Event": "push"})
            assert big.status == 413
        assert len(refreshed) == 1

    asyncio.run(scenario())
