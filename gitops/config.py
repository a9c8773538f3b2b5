"""Process-wide settings of the sync module, filled once by the CLI before kopf starts.

The composition root (cli/controller.py) fills them from its flags;
gitops/handlers.py reads them at start-up and in its namespace and shard filter.

``repo_url_rewrites`` is for tests and demos only: pairs (FROM, TO) that make git
fetch a repoURL starting with FROM from TO instead (git's ``url.<TO>.insteadOf
<FROM>``), while Applications, AppProject checks, credentials and the webhook still
see the URL as written. The controller (cli/controller.py) fills it from the
environment variable ``TIDEGATE_GITOPS_REPO_URL_REWRITE`` (``FROM=TO`` pairs
separated by whitespace) and then its ``--repo-url-rewrite FROM=TO`` flags;
gitops/source.py reads it when a RepoCache is made without explicit rewrites.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from gitops.shard import ALL, Shard

DEFAULT_APP_NAMESPACE = "argocd"  # Argo CD's application namespace
REPO_URL_REWRITE_ENV = "TIDEGATE_GITOPS_REPO_URL_REWRITE"

MSG_BAD_REWRITE = ("repo URL rewrite {value!r} is not FROM=TO (two URLs without spaces, "
                   "e.g. https://github.com/org/ml-platform-config=file:///tmp/config.git)")


def parse_repo_url_rewrite(value: str) -> tuple[str, str]:
    """One ``FROM=TO`` pair; split at the first ``=`` (a URL prefix rarely holds one)."""
    source, sep, target = value.strip().partition("=")
    if not sep or not source or not target or any(
            c.isspace() or ord(c) < 32 for c in source + target) or target.startswith("-"):
        raise ValueError(MSG_BAD_REWRITE.format(value=value))
    return source, target


def repo_url_rewrites_from_env(environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The pairs of ``TIDEGATE_GITOPS_REPO_URL_REWRITE`` (whitespace-separated ``FROM=TO``)."""
    text = (os.environ if environ is None else environ).get(REPO_URL_REWRITE_ENV, "")
    return [parse_repo_url_rewrite(item) for item in text.split()]


@dataclass
class GitopsConfig:
    app_namespaces: list[str] = field(default_factory=lambda: [DEFAULT_APP_NAMESPACE])
    workers: int = 8
    reconcile_seconds: float = 120.0  # argocd-cm timeout.reconciliation (Argo CD's default)
    wave_delay_seconds: float = 2.0  # ARGOCD_SYNC_WAVE_DELAY
    sync_timeout_seconds: float = 600.0  # Argo CD's --sync-timeout, finite here (0: none)
    cache_dir: Path | None = None  # the repo cache; None: a fresh temporary directory (one process owns one)
    instance_id: str = ""
    # Tests and demos only (see the module docstring): (FROM, TO) for git's insteadOf.
    repo_url_rewrites: list[tuple[str, str]] = field(default_factory=list)
    # This replica's share of the Applications (gitops/shard.py); every one by default.
    shard: Shard = ALL


CONFIG = GitopsConfig()
