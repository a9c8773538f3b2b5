"""Git sources of Applications: a commit for a ``targetRevision``, and its files.

Who calls it: the sync module's reconcile (``RepoCache.checkout`` for each of an
Application's sources, then ``gitops.render``), its poller (``ls_remote``, one
per repo URL per interval however many Applications share it) and the webhook
(``resolve``). Nothing here knows Kubernetes: ``credentials_from_secrets`` reads
Argo CD's repository Secrets as plain dicts the caller already has.

Everything goes through the ``git`` CLI (file://, git://, http(s)://, ssh:// and
scp-like ``user@host:path`` URLs):

* one bare cache repository per repo URL, ``<root>/repos/<sha256(url)>.git``,
  fetched incrementally (all branches and tags, forced, pruned) only when a
  commit it needs is missing;
* ``resolve`` asks the remote (``ls-remote``) for HEAD, branches and tags, in
  git's own order (``refs/<rev>``, ``refs/tags/<rev>``, ``refs/heads/<rev>``);
  a full commit sha already in the cache needs no network at all, a short one
  is looked up in the cache after a fetch;
* ``checkout`` writes the commit's tree once to ``<root>/trees/<sha256(url)>/<sha>``
  (through a private index file, so concurrent checkouts never share git state)
  and hands the same directory to every later caller: it is shared and must not
  be modified (``gitops.render`` copies what it edits). A symlink leading out of
  the tree fails the checkout, so rendering can never read the controller's files.

Safety: git runs with no system or global config (no credential helpers, filters
or hooks of the host), ``GIT_TERMINAL_PROMPT=0``, a protocol allow-list, a total
deadline per call and bounded output (``gitops.proc``). Credentials reach git
only through its environment (``GIT_ASKPASS`` reading two variables; an ssh key
in a 0600 file named by ``GIT_SSH_COMMAND``, removed after the call), never its
command line; every message is redacted of them and of any password in the URL.

For tests and demos only, ``url_rewrites`` (default: ``gitops.config.CONFIG
.repo_url_rewrites``, the controller's ``--repo-url-rewrite FROM=TO``) reach every
git call as git's own ``url.<TO>.insteadOf <FROM>`` (in its environment, as the
settings above): a repoURL starting with FROM is fetched from TO, while the cache,
credentials and every message keep the URL as the Application wrote it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shlex
import shutil
import stat
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from common.redaction import redactor
from gitops import proc
from gitops.config import CONFIG

# --- Argo CD's names ---------------------------------------------------------------------

SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"
SECRET_TYPE_REPOSITORY = "repository"
SECRET_TYPE_REPO_CREDS = "repo-creds"

# --- limits ------------------------------------------------------------------------------

DEFAULT_TIMEOUT_S = 60.0
# ls-remote of a repository with many tags is large, but not this large.
LS_REMOTE_OUTPUT_LIMIT = 32 * 1024 * 1024
GIT_OUTPUT_LIMIT = 16 * 1024 * 1024
# A checkout bigger than this (sum of blob sizes) is refused before it is written.
MAX_TREE_BYTES = 1024 * 1024 * 1024
MESSAGE_LIMIT = 2000

ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
_URL_SCHEMES = {"file", "git", "http", "https", "ssh"}
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._~-]+@[A-Za-z0-9.-]+:(?!//)")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_SHORT_SHA = re.compile(r"^[0-9a-f]{4,39}$")
# A ref name or sha: no option injection, no revision syntax (~ ^ : ..), no spaces.
_REVISION = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/+@-]+$")

HEAD = "HEAD"

MSG_BAD_URL = "repository URL {url!r} is not a git URL (file://, git://, http(s)://, ssh:// or user@host:path)"
MSG_BAD_REVISION = "targetRevision {revision!r} of {url} is not a branch, tag, commit or HEAD"
MSG_NOT_FOUND = "unable to resolve {revision!r} to a commit SHA in {url}: no such branch, tag or commit"
MSG_GIT_FAILED = "git {verb} of {url} (revision {revision!r}) failed: {detail}"
MSG_TIMEOUT = "git {verb} of {url} (revision {revision!r}) did not finish within {timeout:g}s"
MSG_TOO_LARGE = "git {verb} of {url} (revision {revision!r}): {detail}"
MSG_SYMLINK = "{url} at {commit}: symlink {path} points outside the repository"
MSG_TREE_TOO_LARGE = "{url} at {commit}: the tree holds {size} bytes, more than the limit of {limit}"


@dataclass(frozen=True)
class RepoCredentials:
    """Credentials for one repository, as Argo CD's repository Secrets hold them."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssh_private_key: str | None = field(default=None, repr=False)
    # Argo CD's ``insecure: "true"``: skip the ssh host key check.
    insecure: bool = False

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.ssh_private_key) if s)


@dataclass(frozen=True)
class Checkout:
    path: Path
    commit: str


class SourceError(Exception):
    """A repository or revision that cannot be read; ``message`` names the URL and revision."""

    def __init__(self, message: str, *, url: str = "", revision: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.revision = revision


def no_credentials(url: str) -> RepoCredentials | None:
    return None


# --- URLs --------------------------------------------------------------------------------


def normalize_url(url: str) -> str:
    """Argo CD's sense of "the same repository": case of scheme/host, ``.git`` and ``/``."""
    url = url.strip()
    if _SCP_LIKE.match(url):
        user_host, _, path = url.partition(":")
        user, _, host = user_host.rpartition("@")
        url = f"ssh://{user}@{host}/{path.lstrip('/')}"
    parts = urlsplit(url)
    netloc = parts.netloc.lower()
    path = parts.path.rstrip("/")
    path = path.removesuffix(".git")
    return f"{parts.scheme.lower()}://{netloc}{path}"


def url_key(url: str) -> str:
    """The cache directory name of a repository."""
    return hashlib.sha256(url.strip().encode("utf-8")).hexdigest()[:40]


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _display_url(url: str) -> str:
    """The URL without its password, if it carries one."""
    password = _url_password(url)
    return url.replace(f":{password}@", ":*****@", 1) if password else url


def _check_url(url: str) -> None:
    if not url or url.startswith("-") or any(c.isspace() or ord(c) < 32 for c in url):
        raise SourceError(MSG_BAD_URL.format(url=_display_url(url)), url=_display_url(url))
    if _SCP_LIKE.match(url):
        return
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _URL_SCHEMES:
        raise SourceError(MSG_BAD_URL.format(url=_display_url(url)), url=_display_url(url))


# --- Argo CD repository Secrets ----------------------------------------------------------


def _secret_field(secret: Mapping[str, Any], key: str) -> str | None:
    string_data = secret.get("stringData") or {}
    if isinstance(string_data.get(key), str):
        return str(string_data[key])
    raw = (secret.get("data") or {}).get(key)
    if not isinstance(raw, str):
        return None
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _secret_type(secret: Mapping[str, Any]) -> str | None:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    value = labels.get(SECRET_TYPE_LABEL)
    return value if isinstance(value, str) else None


def _to_credentials(secret: Mapping[str, Any]) -> RepoCredentials | None:
    creds = RepoCredentials(
        username=_secret_field(secret, "username"),
        password=_secret_field(secret, "password"),
        ssh_private_key=_secret_field(secret, "sshPrivateKey"),
        insecure=(_secret_field(secret, "insecure") or "").lower() == "true",
    )
    if not (creds.password or creds.ssh_private_key or creds.username):
        return None
    return creds


def credentials_from_secrets(
    url: str, secrets: Iterable[Mapping[str, Any]]
) -> RepoCredentials | None:
    """The credentials Argo CD would use for ``url``, from its repository Secrets.

    A ``repository`` Secret whose ``url`` is the same repository wins (its
    credentials; without any, it inherits as Argo CD does); otherwise the
    ``repo-creds`` Secret whose ``url`` is the longest prefix of ``url``. Secrets
    are dicts as the API returns them (``data`` base64, or ``stringData``).
    """
    wanted = normalize_url(url)
    exact: RepoCredentials | None = None
    best_prefix, best_len = None, -1
    for secret in secrets:
        kind = _secret_type(secret)
        secret_url = _secret_field(secret, "url")
        if not secret_url:
            continue
        if kind == SECRET_TYPE_REPOSITORY and normalize_url(secret_url) == wanted:
            exact = exact or _to_credentials(secret)
        elif kind == SECRET_TYPE_REPO_CREDS and url.startswith(secret_url):
            if len(secret_url) > best_len:
                best_prefix, best_len = _to_credentials(secret), len(secret_url)
    return exact or best_prefix


def credentials_lookup(
    secrets: Iterable[Mapping[str, Any]],
) -> Callable[[str], RepoCredentials | None]:
    """A ``credentials`` callable for RepoCache over a fixed list of Secrets."""
    kept = list(secrets)
    return lambda url: credentials_from_secrets(url, kept)


# --- the cache ---------------------------------------------------------------------------


_ASKPASS = """#!/bin/sh
# Written by tidegate (gitops/source.py): answers git's prompts from its environment.
case "$1" in
  Username*|username*) printf '%s\\n' "$TIDEGATE_GIT_USERNAME" ;;
  *) printf '%s\\n' "$TIDEGATE_GIT_PASSWORD" ;;
esac
"""


class RepoCache:
    """Bare clones and checked-out trees of git repositories under ``root``.

    Thread-safe: calls for one URL are serialised (a second ``ls_remote`` of a URL
    while one is running waits for it and shares its answer); different URLs run
    in parallel. One process owns a root.
    """

    def __init__(
        self,
        root: Path,
        *,
        credentials: Callable[[str], RepoCredentials | None] = no_credentials,
        timeout: float = DEFAULT_TIMEOUT_S,
        url_rewrites: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.timeout = timeout
        # Tests and demos only: (FROM, TO) pairs, given to git as url.<TO>.insteadOf <FROM>.
        self.url_rewrites = tuple(CONFIG.repo_url_rewrites if url_rewrites is None else url_rewrites)
        self._credentials = credentials
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._ls_remote_flights: dict[str, _Flight] = {}
        for sub in ("repos", "trees", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "tmp", 0o700)
        self._askpass = self.root / "askpass.sh"
        if not self._askpass.exists():
            tmp = self.root / "tmp" / f"askpass-{uuid.uuid4().hex}"
            tmp.write_text(_ASKPASS)
            os.chmod(tmp, 0o700)
            os.replace(tmp, self._askpass)

    # -- public ---------------------------------------------------------------------------

    def ls_remote(self, url: str) -> dict[str, str]:
        """The remote's refs: ``{"HEAD": sha, "refs/heads/main": sha, ...}``.

        Annotated tags map to the commit they point at (git's peeled ``^{}`` line).
        """
        _check_url(url)
        return self._ls_remote_shared(url, HEAD)

    def _ls_remote_shared(self, url: str, revision: str) -> dict[str, str]:
        key = url_key(url)
        with self._locks_guard:
            flight = self._ls_remote_flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._ls_remote_flights[key] = _Flight()
        if not leader:
            return flight.wait()
        try:
            refs = self._ls_remote(url, revision)
        except BaseException as exc:
            flight.fail(exc)
            raise
        else:
            flight.done(refs)
            return refs
        finally:
            with self._locks_guard:
                self._ls_remote_flights.pop(key, None)

    def resolve(self, url: str, revision: str) -> str:
        """The commit sha ``revision`` (branch, tag, commit, HEAD or empty) names in ``url``."""
        _check_url(url)
        revision = (revision or "").strip() or HEAD
        if revision != HEAD and not _REVISION.match(revision):
            raise self._error(MSG_BAD_REVISION, url=url, revision=revision)
        if _FULL_SHA.match(revision):
            with self._lock(url):
                if not self._has_commit(url, revision):
                    self._fetch(url, revision)
                if not self._has_commit(url, revision):
                    raise self._error(MSG_NOT_FOUND, url=url, revision=revision)
            return revision
        refs = self._ls_remote_shared(url, revision)
        matched = _match_ref(refs, revision)
        with self._lock(url):
            if matched is not None:
                ref, sha = matched
                if not self._has_commit(url, sha):
                    self._fetch(url, revision, ref=ref)
                if not self._has_commit(url, sha):
                    raise self._error(MSG_NOT_FOUND, url=url, revision=revision)
                return sha
            if _SHORT_SHA.match(revision):
                found = self._short_sha(url, revision)
                if found is None:
                    self._fetch(url, revision)
                    found = self._short_sha(url, revision)
                if found is not None:
                    return found
        raise self._error(MSG_NOT_FOUND, url=url, revision=revision)

    def checkout(self, url: str, revision: str) -> Checkout:
        """The files of the commit ``revision`` names, in a directory shared by all callers."""
        commit = self.resolve(url, revision)
        target = self.root / "trees" / url_key(url) / commit
        if target.is_dir():
            return Checkout(path=target, commit=commit)
        with self._lock(url):
            if not target.is_dir():
                self._write_tree(url, revision, commit, target)
        return Checkout(path=target, commit=commit)

    def forget_trees(self, url: str, *, keep: Iterable[str] = ()) -> None:
        """Remove the checked-out trees of ``url`` except the commits in ``keep``."""
        kept = set(keep)
        trees = self.root / "trees" / url_key(url)
        with self._lock(url):
            for tree in trees.iterdir() if trees.is_dir() else ():
                if tree.name not in kept:
                    shutil.rmtree(tree, ignore_errors=True)

    # -- git ------------------------------------------------------------------------------

    def _lock(self, url: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(url_key(url), threading.Lock())

    def _git_dir(self, url: str) -> Path:
        return self.root / "repos" / f"{url_key(url)}.git"

    def _ls_remote(self, url: str, revision: str) -> dict[str, str]:
        out = self._git(["ls-remote", "--", url], url=url, revision=revision, verb="ls-remote",
                        remote=True, limit=LS_REMOTE_OUTPUT_LIMIT)
        refs: dict[str, str] = {}
        peeled: dict[str, str] = {}
        for line in out.decode("utf-8", errors="replace").splitlines():
            sha, _, ref = line.partition("\t")
            if not _FULL_SHA.match(sha) or not ref:
                continue
            if ref.endswith("^{}"):
                peeled[ref[:-3]] = sha
            else:
                refs[ref] = sha
        refs.update(peeled)
        return refs

    def _ensure_repo(self, url: str) -> Path:
        git_dir = self._git_dir(url)
        if (git_dir / "HEAD").exists():
            return git_dir
        tmp = self.root / "tmp" / f"init-{uuid.uuid4().hex}.git"
        self._git(["init", "--quiet", "--bare", str(tmp)], url=url, revision=HEAD, verb="init")
        os.replace(tmp, git_dir)
        return git_dir

    def _fetch(self, url: str, revision: str, *, ref: str | None = None) -> None:
        """Fetch every branch and tag (and ``ref``, when it is neither, e.g. refs/pull/1/head)."""
        git_dir = self._ensure_repo(url)
        _clear_stale_locks(git_dir)
        refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]
        if ref is not None and ref != HEAD and not ref.startswith(("refs/heads/", "refs/tags/")):
            refspecs.append(f"+{ref}:{ref}")
        self._git(
            ["--git-dir", str(git_dir), "fetch", "--quiet", "--force", "--prune",
             "--no-write-fetch-head", "--", url, *refspecs],
            url=url, revision=revision, verb="fetch", remote=True,
        )

    def _has_commit(self, url: str, sha: str) -> bool:
        git_dir = self._git_dir(url)
        if not (git_dir / "HEAD").exists():
            return False
        result = self._run(["--git-dir", str(git_dir), "cat-file", "-e", f"{sha}^{{commit}}"],
                           url=url, revision=sha, verb="cat-file")
        return result.returncode == 0

    def _short_sha(self, url: str, short: str) -> str | None:
        git_dir = self._git_dir(url)
        if not (git_dir / "HEAD").exists():
            return None
        result = self._run(
            ["--git-dir", str(git_dir), "rev-parse", "--verify", "--quiet",
             f"{short}^{{commit}}"],
            url=url, revision=short, verb="rev-parse",
        )
        sha = result.stdout.decode("ascii", errors="replace").strip()
        return sha if result.returncode == 0 and _FULL_SHA.match(sha) else None

    def _write_tree(self, url: str, revision: str, commit: str, target: Path) -> None:
        git_dir = self._git_dir(url)
        self._check_tree_size(url, revision, commit)
        target.parent.mkdir(parents=True, exist_ok=True)
        work = target.parent / f".tmp-{commit}-{uuid.uuid4().hex}"
        index = self.root / "tmp" / f"index-{uuid.uuid4().hex}"
        work.mkdir()
        try:
            env = {"GIT_INDEX_FILE": str(index)}
            base = ["--git-dir", str(git_dir), "--work-tree", str(work)]
            self._git([*base, "read-tree", commit], url=url, revision=revision,
                      verb="read-tree", extra_env=env)
            self._git([*base, "checkout-index", "--all", "--force"], url=url,
                      revision=revision, verb="checkout-index", extra_env=env)
            _check_symlinks(work, url=_display_url(url), commit=commit)
            _make_read_only(work)
            os.replace(work, target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        finally:
            index.unlink(missing_ok=True)

    def _check_tree_size(self, url: str, revision: str, commit: str) -> None:
        out = self._git(["--git-dir", str(self._git_dir(url)), "ls-tree", "-r", "-l",
                         "--full-tree", commit],
                        url=url, revision=revision, verb="ls-tree")
        size = 0
        for line in out.decode("utf-8", errors="replace").splitlines():
            fields = line.split(None, 4)
            if len(fields) >= 4 and fields[3].isdigit():
                size += int(fields[3])
        if size > MAX_TREE_BYTES:
            raise SourceError(
                MSG_TREE_TOO_LARGE.format(url=_display_url(url), commit=commit, size=size,
                                          limit=MAX_TREE_BYTES),
                url=_display_url(url), revision=revision)

    def _git(
        self,
        args: list[str],
        *,
        url: str,
        revision: str,
        verb: str,
        remote: bool = False,
        limit: int = GIT_OUTPUT_LIMIT,
        extra_env: Mapping[str, str] | None = None,
    ) -> bytes:
        result = self._run(args, url=url, revision=revision, verb=verb, remote=remote,
                           limit=limit, extra_env=extra_env)
        if result.returncode != 0:
            detail = result.stderr.strip() or f"exit status {result.returncode}"
            raise self._error(MSG_GIT_FAILED, url=url, revision=revision, verb=verb,
                              detail=detail, creds=self._creds(url) if remote else None)
        return result.stdout

    def _run(
        self,
        args: list[str],
        *,
        url: str,
        revision: str,
        verb: str,
        remote: bool = False,
        limit: int = GIT_OUTPUT_LIMIT,
        extra_env: Mapping[str, str] | None = None,
    ) -> proc.Result:
        creds = self._creds(url) if remote else None
        with self._environment(creds) as env:
            env.update(extra_env or {})
            try:
                return proc.run(["git", *args], env=env, timeout=self.timeout,
                                stdout_limit=limit)
            except proc.ToolTimeout:
                raise self._error(MSG_TIMEOUT, url=url, revision=revision, verb=verb,
                                  timeout=self.timeout) from None
            except proc.ToolOutputTooLarge as exc:
                raise self._error(MSG_TOO_LARGE, url=url, revision=revision, verb=verb,
                                  detail=str(exc)) from None
            except proc.ToolNotFound as exc:
                raise self._error(MSG_GIT_FAILED, url=url, revision=revision, verb=verb,
                                  detail=str(exc)) from None

    def _creds(self, url: str) -> RepoCredentials | None:
        return self._credentials(url)

    @contextmanager
    def _environment(self, creds: RepoCredentials | None) -> Iterator[dict[str, str]]:
        """git's environment: no host config, no prompts, credentials only in variables."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root / "tmp"),
            "LANG": "C",
            "LC_ALL": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
            "GIT_ASKPASS": str(self._askpass),
            "GIT_CONFIG_KEY_0": "core.hooksPath",
            "GIT_CONFIG_VALUE_0": os.devnull,
            "GIT_CONFIG_KEY_1": "credential.helper",
            "GIT_CONFIG_VALUE_1": "",
            "TIDEGATE_GIT_USERNAME": (creds.username if creds else None) or "",
            "TIDEGATE_GIT_PASSWORD": (creds.password if creds else None) or "",
        }
        count = 2
        for source, target in self.url_rewrites:
            env[f"GIT_CONFIG_KEY_{count}"] = f"url.{target}.insteadOf"
            env[f"GIT_CONFIG_VALUE_{count}"] = source
            count += 1
        env["GIT_CONFIG_COUNT"] = str(count)
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30"]
        if creds is not None and creds.insecure:
            ssh += ["-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={os.devnull}"]
        key_file: Path | None = None
        try:
            if creds is not None and creds.ssh_private_key:
                fd, name = tempfile.mkstemp(prefix="key-", dir=self.root / "tmp")
                key_file = Path(name)
                os.fchmod(fd, 0o600)
                key = creds.ssh_private_key
                with os.fdopen(fd, "w") as handle:
                    handle.write(key if key.endswith("\n") else key + "\n")
                ssh += ["-i", str(key_file), "-o", "IdentitiesOnly=yes"]
            env["GIT_SSH_COMMAND"] = shlex.join(ssh)
            yield env
        finally:
            if key_file is not None:
                key_file.unlink(missing_ok=True)

    def _error(
        self,
        template: str,
        *,
        url: str,
        revision: str,
        creds: RepoCredentials | None = None,
        **fields: Any,
    ) -> SourceError:
        secrets = list(creds.secrets() if creds else ())
        password = _url_password(url)
        if password:
            secrets += [password, unquote(password)]
        shown = _display_url(url)
        message = template.format(url=shown, revision=revision, **fields)
        message = redactor(secrets).clip(message, limit=MESSAGE_LIMIT, tail=MESSAGE_LIMIT // 2)
        return SourceError(message, url=shown, revision=revision)


class _Flight:
    """One ls-remote in progress whose answer other callers wait for."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._refs: dict[str, str] = {}
        self._error: BaseException | None = None

    def done(self, refs: dict[str, str]) -> None:
        self._refs = refs
        self._event.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._event.set()

    def wait(self) -> dict[str, str]:
        self._event.wait()
        if self._error is not None:
            raise self._error
        return dict(self._refs)


def _match_ref(refs: Mapping[str, str], revision: str) -> tuple[str, str] | None:
    """(ref, sha) in git's order for a name: itself, refs/<name>, refs/tags/, refs/heads/."""
    if revision == HEAD:
        return (HEAD, refs[HEAD]) if HEAD in refs else None
    for candidate in (revision, f"refs/{revision}", f"refs/tags/{revision}",
                      f"refs/heads/{revision}"):
        if candidate.startswith("refs/") and candidate in refs:
            return candidate, refs[candidate]
    return None


def _clear_stale_locks(git_dir: Path) -> None:
    """Remove lock files a killed git left behind (a fetch past its deadline).

    Safe because the caller holds this repository's lock and one process owns
    the cache root: no other git runs in ``git_dir`` now.
    """
    for lock in (git_dir / "packed-refs.lock", git_dir / "shallow.lock",
                 git_dir / "config.lock", git_dir / "HEAD.lock"):
        lock.unlink(missing_ok=True)
    refs = git_dir / "refs"
    if refs.is_dir():
        for lock in refs.rglob("*.lock"):
            lock.unlink(missing_ok=True)


def _check_symlinks(tree: Path, *, url: str, commit: str) -> None:
    root = tree.resolve()
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in (*dirnames, *filenames):
            path = Path(dirpath) / name
            if not path.is_symlink():
                continue
            target = (path.parent / os.readlink(path)).resolve()
            if target != root and root not in target.parents:
                raise SourceError(
                    MSG_SYMLINK.format(url=url, commit=commit, path=path.relative_to(tree)),
                    url=url, revision=commit)


def _make_read_only(tree: Path) -> None:
    """Files lose their write bits: a renderer that edits the shared tree fails loudly."""
    for dirpath, _dirnames, filenames in os.walk(tree):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
