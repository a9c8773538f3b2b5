"""``tidegate`` / ``kubectl-tidegate``: run the controllers, watch and steer Rollouts and Applications.

Subcommands, one module each: ``controller`` (cli/controller.py, the composition
root), the kubectl plugin's read side ``get rollout``, ``list rollouts``,
``status`` and ``completion`` (cli/plugin.py), the operator actions written as the
patches Argo's plugin writes (cli/actions.py), ``explain`` (the decision log) and
``lint`` (offline checks) (cli/explain.py, cli/lint.py), ``app ...`` for Argo CD
Applications (cli/app.py), ``notifications ...`` (cli/notifications.py) and
``dashboard`` (cli/dashboard.py, the web view).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli import actions, app, dashboard, explain, lint, notifications, plugin
from cli.controller import (
    COMPONENTS,
    DEFAULT_COMPONENTS,
    add_env_defaults,
    add_leader_flags,
    add_notification_flags,
    add_repo_url_rewrite_flag,
    run_controller,
)
from common.logging import LOG_FORMATS, TEXT
from gitops.shard import parse_shard

PACKAGE = "tidegate"
GIT_COMMIT_ENV = "TIDEGATE_GIT_COMMIT"  # set by the image build; a checkout asks git instead
GIT_TIMEOUT_SECONDS = 2.0
UNKNOWN = "unknown"


def _git_commit() -> str:
    """The build's commit: $TIDEGATE_GIT_COMMIT, else this checkout's HEAD, else "unknown"."""
    import subprocess
    from pathlib import Path

    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return UNKNOWN
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],  # noqa: S607
                              capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN
    return done.stdout.strip()[:40] or UNKNOWN


def version_text() -> str:
    """``tidegate <version> (commit <sha>) python <x.y.z> kopf <v>``: what `version` prints."""
    import platform
    from importlib import metadata

    def dist_version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return UNKNOWN

    return (f"{PACKAGE} {dist_version(PACKAGE)}\ncommit: {_git_commit()}\n"
            f"python: {platform.python_version()}\nkopf: {dist_version('kopf')}")


def run_version(args: argparse.Namespace) -> int:
    print(version_text())
    return 0


class _VersionAction(argparse.Action):
    """``--version``, computed only when asked (git and metadata are not free)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()


PLUGIN_SCRIPT = "kubectl-tidegate"


def build_parser() -> argparse.ArgumentParser:
    # `kubectl tidegate ...` runs the kubectl-tidegate script: its usage lines say so
    invoked = Path(sys.argv[0]).name if sys.argv else ""
    prog = "kubectl tidegate" if invoked == PLUGIN_SCRIPT else "tidegate"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    ctl = sub.add_parser("controller", help="run the controllers (rollouts and analysis)")
    ctl.add_argument("--namespace", "-n", action="append", help="watch only this namespace (repeatable)")
    ctl.add_argument("--instance-id", default="", help="only handle objects with this controller-instance-id label")
    ctl.add_argument("--metrics-port", type=int, default=8090, help="Prometheus metrics port (0: off)")
    ctl.add_argument("--metrics-local", action="store_true", help="serve metrics on 127.0.0.1 only")
    ctl.add_argument("--log-format", choices=LOG_FORMATS, default=TEXT,
                     help="text for a terminal, json (one object per line) for production")
    ctl.add_argument("--components", default=",".join(DEFAULT_COMPONENTS),
                     help="comma-separated subset of: " + ", ".join(COMPONENTS))
    ctl.add_argument("--workers", type=int, default=16, help="concurrent rollout reconciles")
    ctl.add_argument("--analysis-workers", type=int, default=30, help="concurrent AnalysisRun reconciles")
    ctl.add_argument("--app-namespace", action="append",
                     help="gitops: watch Applications in this namespace (repeatable; default argocd)")
    ctl.add_argument("--shard", type=parse_shard, default=None, metavar="I/N",
                     help="gitops: handle only the Applications of shard I of N (stable hash of "
                          "namespace/name; read at start-up, so a new N rebalances as the replicas "
                          "restart; default: a StatefulSet ordinal with $TIDEGATE_SHARDS, else all)")
    ctl.add_argument("--gitops-workers", type=int, default=8, help="concurrent Application reconciles")
    ctl.add_argument("--app-resync", type=float, default=120.0,
                     help="gitops: seconds between polls of an Application's source (timeout.reconciliation)")
    ctl.add_argument("--sync-timeout", type=float, default=600.0,
                     help="gitops: seconds a sync operation may run before it fails (0: no limit)")
    ctl.add_argument("--webhook-port", type=int, default=0,
                     help="gitops: serve POST /api/webhook (Git push webhooks) on this port (0: off; "
                          "secrets from argocd-secret or TIDEGATE_WEBHOOK_GITHUB_SECRET, "
                          "TIDEGATE_WEBHOOK_GITLAB_SECRET, TIDEGATE_WEBHOOK_BITBUCKET_UUID)")
    ctl.add_argument("--repo-poll-interval", type=float, default=None,
                     help="gitops: seconds between ls-remote polls of each repository (default: "
                          "argocd-cm timeout.reconciliation, 120 s; 0: no polling)")
    add_repo_url_rewrite_flag(ctl)
    add_notification_flags(ctl)
    add_leader_flags(ctl)
    ctl.add_argument("--verbose", "-v", action="store_true", help="debug-level logs")
    # Last: every flag above gets its TIDEGATE_* variable and a "(default: ...; env ...)" help.
    add_env_defaults(ctl)
    ctl.set_defaults(func=run_controller)

    ver = sub.add_parser("version", help="print the version, git commit, Python and kopf versions")
    ver.set_defaults(func=run_version)

    # One module per family of subcommands, each owning its parser and its behaviour.
    for module in (plugin, actions, explain, lint, app, notifications, dashboard):
        module.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
