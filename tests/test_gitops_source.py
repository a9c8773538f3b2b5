"""gitops.source against real git repositories made in tmp_path.

The remotes are real: bare repositories over file://, one served by ``git daemon``
on 127.0.0.1 (git://) and one over dumb HTTP behind Basic auth (the credentials
travel through GIT_ASKPASS). No git call is faked; only ``ssh`` is replaced by a
script that records how it was called, to see the key file without a sshd.
"""

from __future__ import annotations

import base64
import http.server
import os
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from gitops import proc
from gitops.source import (
    RepoCache,
    RepoCredentials,
    SourceError,
    credentials_from_secrets,
    credentials_lookup,
    normalize_url,
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


class Remote:
    """A work repository and the bare repository it pushes to (the remote under test)."""

    def __init__(self, tmp: Path, name: str = "config") -> None:
        self.work = tmp / f"{name}-work"
        self.bare = tmp / f"{name}.git"
        self.work.mkdir()
        git(self.work, "init", "--quiet", "--initial-branch=main")
        git(tmp, "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git(self.work, "remote", "add", "origin", str(self.bare))

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for rel, text in files.items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "-m", message)
        return git(self.work, "rev-parse", "HEAD")

    def push(self, *refs: str) -> None:
        git(self.work, "push", "--quiet", "--force", "origin", *(refs or ("main",)))


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path)


@pytest.fixture
def cache(tmp_path: Path) -> RepoCache:
    return RepoCache(tmp_path / "cache", timeout=30)


# --- resolve -------------------------------------------------------------------------


def test_resolve_head_branch_tags_and_commits(remote: Remote, cache: RepoCache) -> None:
    first = remote.commit({"a.yaml": "a: 1\n"})
    git(remote.work, "tag", "v1")
    git(remote.work, "tag", "-a", "v1-annotated", "-m", "release")
    second = remote.commit({"a.yaml": "a: 2\n"})
    git(remote.work, "branch", "feature", first)
    remote.push("main", "feature", "v1", "v1-annotated")

    assert cache.resolve(remote.url, "HEAD") == second
    assert cache.resolve(remote.url, "") == second
    assert cache.resolve(remote.url, "main") == second
    assert cache.resolve(remote.url, "refs/heads/main") == second
    assert cache.resolve(remote.url, "feature") == first
    assert cache.resolve(remote.url, "v1") == first
    assert cache.resolve(remote.url, "v1-annotated") == first  # peeled to the commit
    assert cache.resolve(remote.url, first) == first
    assert cache.resolve(remote.url, first[:8]) == first


def test_ls_remote_lists_refs_with_annotated_tags_peeled(remote: Remote, cache: RepoCache) -> None:
    sha = remote.commit({"a.yaml": "a: 1\n"})
    git(remote.work, "tag", "-a", "v2", "-m", "release")
    remote.push("main", "v2")

    assert cache.ls_remote(remote.url) == {
        "HEAD": sha, "refs/heads/main": sha, "refs/tags/v2": sha}


def test_unknown_revision_names_url_and_revision(remote: Remote, cache: RepoCache) -> None:
    remote.commit({"a.yaml": "a: 1\n"})
    remote.push()

    with pytest.raises(SourceError) as err:
        cache.resolve(remote.url, "no-such-branch")
    assert err.value.message == (
        f"unable to resolve 'no-such-branch' to a commit SHA in {remote.url}: "
        "no such branch, tag or commit")
    with pytest.raises(SourceError, match="unable to resolve 'deadbeef'"):
        cache.resolve(remote.url, "deadbeef")
    with pytest.raises(SourceError, match="unable to resolve '" + "0" * 40):
        cache.resolve(remote.url, "0" * 40)


def test_a_new_commit_is_fetched_incrementally(remote: Remote, cache: RepoCache) -> None:
    first = remote.commit({"a.yaml": "a: 1\n"})
    remote.push()
    assert cache.checkout(remote.url, "main").commit == first
    second = remote.commit({"b.yaml": "b: 1\n"})
    remote.push()

    checkout = cache.checkout(remote.url, "main")

    assert checkout.commit == second
    assert (checkout.path / "b.yaml").read_text() == "b: 1\n"
    assert len(list((cache.root / "repos").iterdir())) == 1  # one bare clone per URL


def test_a_cached_commit_needs_no_network(remote: Remote, cache: RepoCache) -> None:
    sha = remote.commit({"a.yaml": "a: 1\n"})
    remote.push()
    cache.checkout(remote.url, "main")
    os.rename(remote.bare, remote.bare.with_suffix(".gone"))

    assert cache.resolve(remote.url, sha) == sha
    assert cache.checkout(remote.url, sha).commit == sha
    with pytest.raises(SourceError, match=r"git ls-remote of file://.* failed: .*"):
        cache.resolve(remote.url, "main")


@pytest.mark.parametrize(
    ("url", "revision"),
    [
        pytest.param("ext::sh -c touch% /tmp/pwned", "main", id="ext-protocol"),
        pytest.param("--upload-pack=touch /tmp/pwned", "main", id="option-as-url"),
        pytest.param("/plain/path", "main", id="path-without-file-scheme"),
        pytest.param("file:///x.git", "--output=/tmp/x", id="option-as-revision"),
        pytest.param("file:///x.git", "main~1", id="revision-syntax"),
        pytest.param("file:///x.git", "a..b", id="range"),
    ],
)
def test_urls_and_revisions_that_could_run_something_are_refused(
    cache: RepoCache, url: str, revision: str
) -> None:
    with pytest.raises(SourceError):
        cache.resolve(url, revision)


# --- checkout ------------------------------------------------------------------------


def test_checkout_is_the_commit_tree_shared_and_read_only(remote: Remote, cache: RepoCache) -> None:
    first = remote.commit({"env/prod/values.yaml": "replicas: 2\n", "README.md": "x\n"})
    git(remote.work, "tag", "v1")
    second = remote.commit({"env/prod/values.yaml": "replicas: 3\n"})
    remote.push("main", "v1")

    at_tag = cache.checkout(remote.url, "v1")
    at_main = cache.checkout(remote.url, "main")

    assert at_tag.commit == first and at_main.commit == second
    assert (at_tag.path / "env/prod/values.yaml").read_text() == "replicas: 2\n"
    assert (at_main.path / "env/prod/values.yaml").read_text() == "replicas: 3\n"
    assert not (at_main.path / ".git").exists()
    assert cache.checkout(remote.url, second) == at_main
    mode = (at_main.path / "README.md").stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)

    cache.forget_trees(remote.url, keep={second})
    assert not at_tag.path.exists() and at_main.path.exists()


def test_a_symlink_out_of_the_tree_fails_the_checkout(remote: Remote, cache: RepoCache) -> None:
    remote.commit({"ok.yaml": "a: 1\n"})
    os.symlink("/etc/passwd", remote.work / "leak.yaml")
    os.symlink("ok.yaml", remote.work / "inside.yaml")
    sha = remote.commit({})
    remote.push()

    with pytest.raises(SourceError) as err:
        cache.checkout(remote.url, "main")
    assert err.value.message == (
        f"{remote.url} at {sha}: symlink leak.yaml points outside the repository")
    assert not list((cache.root / "trees").rglob("*.yaml"))


def test_concurrent_checkouts_of_one_url_share_one_tree(remote: Remote, cache: RepoCache) -> None:
    sha = remote.commit({"a.yaml": "a: 1\n"})
    remote.push()
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(cache.checkout(remote.url, "main")))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {r.commit for r in results} == {sha} and len({r.path for r in results}) == 1


# --- git daemon (git://) -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    base = tmp_path / "served"
    base.mkdir()
    port = _free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
         f"--port={port}", f"--base-path={base}", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield base, port
    finally:
        daemon.terminate()
        daemon.wait(10)


def test_git_protocol_through_git_daemon(
    tmp_path: Path, git_daemon: tuple[Path, int], cache: RepoCache
) -> None:
    base, port = git_daemon
    remote = Remote(tmp_path)
    sha = remote.commit({"app.yaml": "kind: ConfigMap\n"})
    remote.push()
    os.rename(remote.bare, base / "config.git")
    url = f"git://127.0.0.1:{port}/config.git"

    assert cache.ls_remote(url)["refs/heads/main"] == sha
    checkout = cache.checkout(url, "HEAD")
    assert checkout.commit == sha
    assert (checkout.path / "app.yaml").read_text() == "kind: ConfigMap\n"


# --- credentials ---------------------------------------------------------------------


USER, PASSWORD = "deploy", "s3cr3t-Pa55/word"


@pytest.fixture
def http_remote(tmp_path: Path) -> Iterator[tuple[str, Remote]]:
    """The bare repository over dumb HTTP, behind Basic auth for USER/PASSWORD."""
    remote = Remote(tmp_path)
    remote.commit({"a.yaml": "a: 1\n"})
    remote.push()
    git(remote.bare, "update-server-info")
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    serve_root = str(tmp_path)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=serve_root, **kwargs)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{remote.bare.name}", remote
    finally:
        server.shutdown()
        server.server_close()


def test_https_style_credentials_reach_git_through_askpass(
    tmp_path: Path, http_remote: tuple[str, Remote]
) -> None:
    url, remote = http_remote
    cache = RepoCache(tmp_path / "cache", timeout=30,
                      credentials=lambda u: RepoCredentials(username=USER, password=PASSWORD))

    checkout = cache.checkout(url, "main")

    assert (checkout.path / "a.yaml").read_text() == "a: 1\n"
    assert checkout.commit == git(remote.work, "rev-parse", "HEAD")


def test_wrong_credentials_fail_without_showing_them(
    tmp_path: Path, http_remote: tuple[str, Remote]
) -> None:
    url, _ = http_remote
    wrong = "wrong-" + PASSWORD
    cache = RepoCache(tmp_path / "cache", timeout=30,
                      credentials=lambda u: RepoCredentials(username=USER, password=wrong))

    with pytest.raises(SourceError) as err:
        cache.resolve(url, "main")
    assert url in err.value.message and "ls-remote" in err.value.message
    assert wrong not in err.value.message and "wrong-" not in str(err.value)


def test_a_password_in_the_url_is_never_shown(cache: RepoCache) -> None:
    url = f"http://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{_free_port()}/repo.git"

    with pytest.raises(SourceError) as err:
        cache.resolve(url, "main")
    assert "s3cr3t" not in err.value.message and "revision 'main'" in err.value.message
    assert f"http://{USER}:*****@127.0.0.1" in err.value.message


def test_ssh_key_goes_to_a_0600_file_named_in_git_ssh_command_and_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in ``ssh`` records its arguments and the key file, then fails like a refused host."""
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAkey-material\n-----END OPENSSH PRIVATE KEY-----\n"
    bin_dir, record = tmp_path / "bin", tmp_path / "ssh-calls"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {record}\n'
        'while [ $# -gt 0 ]; do if [ "$1" = -i ]; then '
        f'stat -c %a "$2" >> {record}; cat "$2" >> {record}; fi; shift; done\n'
        "echo 'Permission denied (publickey).' >&2; exit 255\n")
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    cache = RepoCache(tmp_path / "cache", timeout=30,
                      credentials=lambda u: RepoCredentials(ssh_private_key=key))

    with pytest.raises(SourceError) as err:
        cache.resolve("ssh://git@127.0.0.1:2222/org/config.git", "main")

    calls = record.read_text()
    assert "BatchMode=yes" in calls and "IdentitiesOnly=yes" in calls
    assert "\n600\n" in calls and "AAAAkey-material" in calls  # the file, not the argv
    assert "AAAAkey-material" not in calls.splitlines()[0]
    assert "Permission denied (publickey)" in err.value.message
    assert "key-material" not in err.value.message
    assert not list((cache.root / "tmp").glob("key-*"))


# --- Argo CD repository Secrets ------------------------------------------------------


def secret(kind: str, data: dict[str, str], *, encoded: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"metadata": {"labels": {"argocd.argoproj.io/secret-type": kind}}}
    if encoded:
        doc["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        doc["stringData"] = data
    return doc


SECRETS = [
    secret("repo-creds", {"url": "https://github.com/org", "username": "org-bot",
                          "password": "org-token"}),
    secret("repo-creds", {"url": "https://github.com/org/ml-", "username": "ml-bot",
                          "password": "ml-token"}),
    secret("repository", {"url": "https://github.com/org/ml-platform-config.git",
                          "username": "cfg", "password": "cfg-token"}),
    secret("repository", {"url": "https://github.com/org/ml-models"}),
    secret("repository", {"url": "git@github.com:org/infra.git",
                          "sshPrivateKey": "KEY", "insecure": "true"}, encoded=False),
    secret("cluster", {"url": "https://github.com/org/other", "password": "not-a-repo"}),
]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://github.com/org/ml-platform-config", ("cfg", "cfg-token", None),
                     id="repository-exact-ignoring-.git"),
        pytest.param("https://GitHub.com/org/ml-platform-config/", ("cfg", "cfg-token", None),
                     id="repository-host-case-and-slash"),
        pytest.param("https://github.com/org/ml-models", ("ml-bot", "ml-token", None),
                     id="repository-without-creds-inherits-longest-prefix"),
        pytest.param("https://github.com/org/web", ("org-bot", "org-token", None),
                     id="repo-creds-prefix"),
        pytest.param("ssh://git@github.com/org/infra", (None, None, "KEY"),
                     id="scp-like-secret-url"),
        pytest.param("https://github.com/org/other", ("org-bot", "org-token", None),
                     id="cluster-secrets-are-not-repositories"),
        pytest.param("https://gitlab.com/org/x", None, id="no-match"),
    ],
)
def test_credentials_from_argo_cd_secrets(
    url: str, expected: tuple[str | None, str | None, str | None] | None
) -> None:
    creds = credentials_from_secrets(url, SECRETS)
    if expected is None:
        assert creds is None
    else:
        assert creds is not None
        assert (creds.username, creds.password, creds.ssh_private_key) == expected
    assert credentials_lookup(SECRETS)(url) == creds


def test_credentials_never_print() -> None:
    creds = RepoCredentials(username="u", password="hunter2", ssh_private_key="KEY")
    assert "hunter2" not in repr(creds) and "KEY" not in repr(creds)


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("https://GitHub.com/Org/Repo.git", "https://github.com/Org/Repo"),
        ("git@github.com:org/repo.git", "ssh://git@github.com/org/repo"),
        ("file:///srv/git/repo.git/", "file:///srv/git/repo"),
    ],
)
def test_normalize_url(url: str, normal: str) -> None:
    assert normalize_url(url) == normal


# --- deadlines and output caps (gitops.proc) -----------------------------------------


def test_a_remote_that_never_answers_hits_the_deadline(tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"git://127.0.0.1:{silent.getsockname()[1]}/config.git"
        cache = RepoCache(tmp_path / "cache", timeout=1)
        started = time.monotonic()

        with pytest.raises(SourceError) as err:
            cache.resolve(url, "main")

    assert time.monotonic() - started < 10
    assert err.value.message == (
        f"git ls-remote of {url} (revision 'main') did not finish within 1s")


def test_tool_output_beyond_the_limit_kills_the_tool() -> None:
    with pytest.raises(proc.ToolOutputTooLarge):
        proc.run(["yes"], env=dict(os.environ), timeout=10, stdout_limit=1_000_000)


def test_tool_stderr_keeps_its_head_and_tail() -> None:
    script = "head -c 100000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 3"
    result = proc.run(["sh", "-c", script], env=dict(os.environ), timeout=10,
                      stderr_limit=1000)

    assert result.returncode == 3
    assert result.stderr.startswith("x" * 500) and result.stderr.endswith("END\n")
    assert "bytes of stderr left out" in result.stderr and len(result.stderr) < 1100


def test_tool_deadline_kills_its_children_too() -> None:
    started = time.monotonic()
    with pytest.raises(proc.ToolTimeout):
        proc.run(["sh", "-c", "sleep 30 & sleep 30; wait"], env=dict(os.environ), timeout=0.5)
    assert time.monotonic() - started < 5


def test_a_ref_outside_branches_and_tags_is_fetched_by_name(remote: Remote, cache: RepoCache) -> None:
    remote.commit({"a.yaml": "a: 1\n"})
    remote.push()
    pr = remote.commit({"a.yaml": "a: pr\n"})
    remote.push("HEAD:refs/pull/7/head")

    checkout = cache.checkout(remote.url, "refs/pull/7/head")

    assert checkout.commit == pr and (checkout.path / "a.yaml").read_text() == "a: pr\n"


def test_locks_left_by_a_killed_fetch_do_not_wedge_the_cache(remote: Remote, cache: RepoCache) -> None:
    remote.commit({"a.yaml": "a: 1\n"})
    remote.push()
    cache.resolve(remote.url, "main")
    git_dir = next((cache.root / "repos").iterdir())
    (git_dir / "packed-refs.lock").write_text("")
    (git_dir / "refs" / "heads" / "main.lock").write_text("")
    second = remote.commit({"a.yaml": "a: 2\n"})
    remote.push()

    assert cache.resolve(remote.url, "main") == second


# --- the test-only repoURL rewrite (git's insteadOf) -----------------------------------

SEED_URL = "https://github.com/org/ml-platform-config"


@pytest.mark.parametrize("whole_url", [
    pytest.param(True, id="the-seed-url-to-a-bare-repo"),
    pytest.param(False, id="an-org-prefix-to-a-directory-of-bare-repos"),
])
def test_a_rewritten_url_is_fetched_from_the_local_repo(tmp_path: Path, whole_url: bool) -> None:
    """Given a rewrite of the seed's URL (or its org prefix) to local bare repos, the seed's
    URL resolves and checks out from them (no network); messages keep the seed's URL."""
    remote = Remote(tmp_path, name="ml-platform-config")
    rewrite = ((SEED_URL, remote.url) if whole_url
               else ("https://github.com/org/", tmp_path.as_uri() + "/"))
    written = SEED_URL
    first = remote.commit({"environments/production/values.yaml": "replicas: 1\n"})
    remote.push()
    cache = RepoCache(tmp_path / "cache", timeout=30, url_rewrites=[rewrite])

    assert cache.ls_remote(written)["refs/heads/main"] == first
    checkout = cache.checkout(written, "main")

    assert checkout.commit == first
    assert (checkout.path / "environments/production/values.yaml").read_text() == "replicas: 1\n"
    with pytest.raises(SourceError) as caught:
        cache.resolve(written, "no-such-branch")
    assert caught.value.url == written


def test_without_a_rewrite_the_seed_url_is_not_fetched_locally(tmp_path: Path, remote: Remote) -> None:
    """The same URL with a rewrite of another prefix goes to its real host, which fails here
    (no network; a bogus host keeps it fast): the rewrite above is what made it work."""
    cache = RepoCache(tmp_path / "cache", timeout=30,
                      url_rewrites=[("https://example.invalid/other", remote.url)])

    with pytest.raises(SourceError) as caught:
        cache.ls_remote("https://tidegate-no-such-host.invalid/org/ml-platform-config")
    assert "tidegate-no-such-host.invalid" in caught.value.message


def test_rewrites_default_to_the_process_config(tmp_path: Path, remote: Remote,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A RepoCache made without rewrites (as gitops/handlers.py makes it) uses CONFIG's."""
    from gitops.config import CONFIG

    first = remote.commit({"a.yaml": "a: 1\n"})
    remote.push()
    monkeypatch.setattr(CONFIG, "repo_url_rewrites", [(SEED_URL, remote.url)])

    assert RepoCache(tmp_path / "cache", timeout=30).resolve(SEED_URL, "main") == first


@pytest.mark.parametrize(("env", "pairs"), [
    pytest.param("", [], id="unset"),
    pytest.param(f"{SEED_URL}=file:///tmp/seed.git", [(SEED_URL, "file:///tmp/seed.git")], id="one"),
    pytest.param(f" {SEED_URL}=file:///a.git\n\thttps://h/x=file:///b.git ",
                 [(SEED_URL, "file:///a.git"), ("https://h/x", "file:///b.git")], id="two-any-space"),
    pytest.param("https://h/x?a=b=file:///c.git", [("https://h/x?a", "b=file:///c.git")],
                 id="split-at-the-first-equals"),
])
def test_rewrites_from_the_environment(env: str, pairs: list[tuple[str, str]]) -> None:
    from gitops.config import REPO_URL_REWRITE_ENV, repo_url_rewrites_from_env

    assert repo_url_rewrites_from_env({REPO_URL_REWRITE_ENV: env}) == pairs


@pytest.mark.parametrize("value", [
    pytest.param("no-equals-sign", id="no-equals"),
    pytest.param("=file:///a.git", id="no-from"),
    pytest.param(f"{SEED_URL}=", id="no-to"),
    pytest.param(f"{SEED_URL}=file:///a b.git", id="space"),
    pytest.param(f"{SEED_URL}=--upload-pack=touch", id="option-like-to"),
])
def test_a_malformed_rewrite_is_refused_with_the_expected_form(value: str) -> None:
    from gitops.config import parse_repo_url_rewrite

    with pytest.raises(ValueError, match="is not FROM=TO"):
        parse_repo_url_rewrite(value)


def test_the_controller_flag_adds_to_the_environment_and_refuses_a_bad_pair(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.controller import _repo_url_rewrites
    from cli.main import build_parser
    from gitops.config import REPO_URL_REWRITE_ENV

    monkeypatch.setenv(REPO_URL_REWRITE_ENV, "https://h/a=file:///a.git")
    args = build_parser().parse_args(
        ["controller", "--repo-url-rewrite", f"{SEED_URL}=file:///seed.git"])
    assert _repo_url_rewrites(args) == [("https://h/a", "file:///a.git"),
                                        (SEED_URL, "file:///seed.git")]
    bad = build_parser().parse_args(["controller", "--repo-url-rewrite", "nonsense"])
    assert "is not FROM=TO" in str(_repo_url_rewrites(bad))
