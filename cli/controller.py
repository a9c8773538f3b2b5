"""``tidegate controller``: the composition root that starts the controllers on kopf.

The one place outside the handler modules allowed to import kopf and
``analysis.handlers`` (see the import contracts in pyproject.toml): it chooses
the components, configures logging and metrics, and hands control to kopf.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys

from common.logging import REQUEST_LOGGERS, configure, quiet_request_loggers
from rollouts.config import CONFIG

__all__ = ["COMPONENTS", "DEFAULT_COMPONENTS", "REQUEST_LOGGERS", "add_notification_flags",
           "add_repo_url_rewrite_flag", "quiet_request_loggers", "run_controller"]

COMPONENTS = ("rollouts", "analysis", "gitops", "notifications")
DEFAULT_COMPONENTS = ("rollouts", "analysis", "gitops", "notifications")
M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas at two unless the operator set MALLOC_ARENA_MAX.

    glibc gives threads their own arenas (up to 8 per core); with the apply,
    event and measurement pools that fragments the heap and resident memory
    keeps growing under load. Our threads mostly wait on sockets, so two arenas
    cost nothing in contention.
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def add_repo_url_rewrite_flag(parser: argparse.ArgumentParser) -> None:
    """``--repo-url-rewrite FROM=TO``: the sync module's test-only URL mapping (gitops/config.py)."""
    parser.add_argument(
        "--repo-url-rewrite", action="append", default=[], metavar="FROM=TO",
        help="gitops, FOR TESTS AND DEMOS ONLY: fetch a repoURL starting with FROM from TO "
             "(git's url.TO.insteadOf FROM); Applications, AppProject checks and the webhook "
             "still see FROM (repeatable; also TIDEGATE_GITOPS_REPO_URL_REWRITE, whitespace-"
             "separated FROM=TO pairs)")


def _repo_url_rewrites(args: argparse.Namespace) -> list[tuple[str, str]] | str:
    """The environment's pairs, then the flags'; or the error message of a malformed one."""
    from gitops.config import parse_repo_url_rewrite, repo_url_rewrites_from_env

    try:
        return repo_url_rewrites_from_env() + [
            parse_repo_url_rewrite(value) for value in getattr(args, "repo_url_rewrite", None) or []]
    except ValueError as exc:
        return str(exc)


def add_notification_flags(parser: argparse.ArgumentParser) -> None:
    """The ``controller`` flags of the notifications component (cli/main.py adds them)."""
    parser.add_argument("--notifications-namespace", default=None,
                        help="notifications: where argo-rollouts-notification-configmap and its Secret "
                             "are read for namespaces without their own (default $POD_NAMESPACE or "
                             "argo-rollouts); Applications use argocd-notifications-cm in the first "
                             "--app-namespace")
    parser.add_argument("--notifications-workers", type=int, default=8,
                        help="notifications: objects evaluated at once")
    parser.add_argument("--notification-send-timeout", type=float, default=30.0,
                        help="notifications: seconds one send may take, retries included")
    parser.add_argument("--notification-retry-base", type=float, default=5.0,
                        help="notifications: seconds before a failed send is tried again (doubling, "
                             "up to 300)")


def _configure_notifications(args: argparse.Namespace) -> None:
    """Fill the notifications settings from the flags (absent flags keep the defaults)."""
    from notifications.settings import SETTINGS

    SETTINGS.instance_id = CONFIG.instance_id
    SETTINGS.app_namespaces = list(getattr(args, "app_namespace", None) or SETTINGS.app_namespaces)
    SETTINGS.rollouts_namespace = getattr(args, "notifications_namespace", None) or SETTINGS.rollouts_namespace
    SETTINGS.workers = getattr(args, "notifications_workers", SETTINGS.workers)
    SETTINGS.send_deadline_seconds = getattr(args, "notification_send_timeout", SETTINGS.send_deadline_seconds)
    SETTINGS.retry_base_seconds = getattr(args, "notification_retry_base", SETTINGS.retry_base_seconds)


def run_controller(args: argparse.Namespace) -> int:
    import kopf
    from prometheus_client import start_http_server

    _limit_malloc_arenas()
    CONFIG.namespaces = list(args.namespace or [])
    CONFIG.instance_id = args.instance_id or ""
    CONFIG.workers = args.workers
    from analysis.config import CONFIG as ANALYSIS_CONFIG

    ANALYSIS_CONFIG.instance_id = CONFIG.instance_id
    ANALYSIS_CONFIG.workers = args.analysis_workers
    components = {c.strip() for c in args.components.split(",") if c.strip()}
    unknown = components - set(COMPONENTS)
    if unknown:
        print(f"tidegate controller: --components: unknown {sorted(unknown)}; choose from {COMPONENTS}",
              file=sys.stderr)
        return 2
    # One format for every line: ours, kopf's and the HTTP libraries' (common/logging.py).
    configure(log_format=args.log_format, verbose=args.verbose)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1" if args.metrics_local else "0.0.0.0")  # noqa: S104
    if "rollouts" in components:
        import rollouts.handlers  # noqa: F401  (registers kopf handlers)
    if "analysis" in components:
        import analysis.handlers  # noqa: F401  (registers kopf handlers)
    if "gitops" in components:
        from gitops.config import CONFIG as GITOPS_CONFIG
        from gitops.shard import shard_from_env

        GITOPS_CONFIG.instance_id = CONFIG.instance_id
        GITOPS_CONFIG.app_namespaces = list(getattr(args, "app_namespace", None) or
                                            GITOPS_CONFIG.app_namespaces)
        GITOPS_CONFIG.workers = getattr(args, "gitops_workers", GITOPS_CONFIG.workers)
        GITOPS_CONFIG.shard = getattr(args, "shard", None) or shard_from_env()
        GITOPS_CONFIG.reconcile_seconds = getattr(args, "app_resync", GITOPS_CONFIG.reconcile_seconds)
        GITOPS_CONFIG.sync_timeout_seconds = getattr(args, "sync_timeout",
                                                     GITOPS_CONFIG.sync_timeout_seconds)
        from gitops.polling import POLL_CONFIG
        from gitops.webhook import WEBHOOK_CONFIG, WebhookSecrets

        WEBHOOK_CONFIG.port = getattr(args, "webhook_port", 0) or 0
        # Secrets by environment (never argv, which `ps` shows); argocd-secret's keys otherwise.
        WEBHOOK_CONFIG.secrets = WebhookSecrets(
            github=os.environ.get("TIDEGATE_WEBHOOK_GITHUB_SECRET", ""),
            gitlab=os.environ.get("TIDEGATE_WEBHOOK_GITLAB_SECRET", ""),
            bitbucket_uuid=os.environ.get("TIDEGATE_WEBHOOK_BITBUCKET_UUID", ""))
        POLL_CONFIG.interval_seconds = getattr(args, "repo_poll_interval", None)
        rewrites = _repo_url_rewrites(args)
        if isinstance(rewrites, str):
            print(f"tidegate controller: --repo-url-rewrite: {rewrites}", file=sys.stderr)
            return 2
        GITOPS_CONFIG.repo_url_rewrites = rewrites
        import gitops.handlers  # noqa: F401  (registers kopf handlers)
    if "notifications" in components:
        _configure_notifications(args)
        import notifications.handlers  # noqa: F401  (registers kopf handlers)
    kopf.run(
        standalone=True,
        clusterwide=not CONFIG.namespaces,
        namespaces=CONFIG.namespaces,
        liveness_endpoint=None,
    )
    return 0
