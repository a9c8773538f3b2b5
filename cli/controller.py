"""``tidegate controller``: the composition root that starts the controllers on kopf.

The one place outside the handler modules allowed to import kopf and
``analysis.handlers`` (see the import contracts in pyproject.toml): it chooses
the components, configures logging and metrics, and hands control to kopf.

Start-up and shutdown, in order:

1. metrics (``--metrics-port``) and probes (``--healthz-port``: ``/healthz`` is 200
   while the process runs; ``/readyz`` is 200 only once this process leads every
   component's Lease and kopf's startup handlers finished, 503 on a standby);
2. leader election (``--leader-elect``, on by default): one Lease per component,
   named ``tidegate-<component>[-<instance-id>][-<hash of the watched namespaces
   and shard>]`` (processes watching different scopes are not replicas), in
   ``--leader-election-namespace``, else ``$POD_NAMESPACE``, else the first
   ``--namespace``, else ``tidegate``. The process blocks here until it holds
   them all; kopf (and so every component) starts only then;
3. ``kopf.run`` in the main thread; the electors renew in background threads, and
   a failed renewal exits the process at once with status 1 (client-go's
   OnStoppedLeading);
4. SIGTERM: kopf's handler stops the operator (no new work; in-flight handlers
   finish or are cancelled); then the Leases are released (holder cleared, duration
   1 s) so a standby takes over within one retry period; kopf's last-resort SIGKILL
   and the release budget keep the whole within ``--shutdown-grace-period``.

Every option also reads ``TIDEGATE_<OPTION>`` (``add_env_defaults``), and says so in ``--help``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any

from common.leader import KubeLeaseApi, LeaderElector, LeaseTiming, holder_identity, lease_name
from common.logging import REQUEST_LOGGERS, configure, get_logger, quiet_request_loggers
from rollouts.config import CONFIG

__all__ = ["COMPONENTS", "DEFAULT_COMPONENTS", "ENV_PREFIX", "REQUEST_LOGGERS", "add_env_defaults",
           "add_leader_flags", "add_notification_flags", "add_repo_url_rewrite_flag", "parse_bool",
           "quiet_request_loggers", "run_controller"]

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


ENV_PREFIX = "TIDEGATE_"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
DEFAULT_LEASE_NAMESPACE = "tidegate"
# What makes two processes replicas of each other rather than separate controllers: processes
# watching different namespaces (or shards) get different Leases. Flags absent here are ignored.
LEASE_SCOPE_FLAGS = ("namespace", "app_namespace", "shard")
RELEASE_BUDGET_SECONDS = 5.0
EXIT_LOST_LEADERSHIP = 1

M_BAD_BOOL = "expected one of {words}, got {value!r}"
M_STANDBY = "leader election: standing by until this process holds every lease"
M_STOPPED_WAITING = "leader election: stop requested while standing by; exiting"
M_EXITING_LOST = "leader election: exiting at once so that only one process acts"
M_SHUTDOWN = "shutdown: kopf stopped; releasing leases"
M_SHUTDOWN_OVERRUN = "shutdown: release overran its budget; exiting anyway"
M_NO_PROBES = "probes: cannot serve /healthz and /readyz on this port"
M_NO_ELECTION = "leader election: off (--leader-elect=false); this process acts alone"


def parse_bool(value: str) -> bool:
    """``true``/``false`` (and 1/0, yes/no, on/off) for boolean flags and their environment variables."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(M_BAD_BOOL.format(words="/".join(TRUE_WORDS + FALSE_WORDS), value=value))


def _shown(value: object) -> str:
    if value is None or value == []:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return str(value)


def add_env_defaults(parser: argparse.ArgumentParser, *, environ: Mapping[str, str] | None = None,
                     prefix: str = ENV_PREFIX) -> None:
    """Give every option of ``parser`` an environment variable and say so in its help.

    For ``--some-flag`` the variable is ``TIDEGATE_SOME_FLAG``: when set it replaces the
    flag's default (the command line still wins). Typed options get the string and
    argparse converts it at parse time, so a bad value is reported like a bad flag;
    on/off switches read true/false; repeatable options read whitespace-separated
    values. Call it after the last ``add_argument``: flags added later get neither.
    """
    env = os.environ if environ is None else environ
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public iterator
        if not action.option_strings or isinstance(action, argparse._HelpAction | argparse._VersionAction):  # noqa: SLF001
            continue
        name = prefix + action.dest.upper()
        raw = env.get(name)
        if raw is not None:
            if isinstance(action, argparse._StoreConstAction):  # noqa: SLF001 - store_true/false
                try:
                    on = parse_bool(raw)
                except argparse.ArgumentTypeError as exc:
                    parser.error(f"{name}: {exc}")
                action.default = action.const if on else not action.const
            elif isinstance(action, argparse._AppendAction):  # noqa: SLF001
                convert: Callable[[str], Any] = action.type if callable(action.type) else str
                action.default = [convert(item) for item in raw.split()]
            else:
                action.default = raw
        shown = _shown(action.default).replace("%", "%%")
        action.help = f"{action.help or ''} (default: {shown}; env {name})".lstrip()


def add_leader_flags(parser: argparse.ArgumentParser) -> None:
    """Leader election (Argo's flags and durations) and the probe port."""
    parser.add_argument("--leader-elect", type=parse_bool, nargs="?", const=True, default=True,
                        metavar="BOOL",
                        help="take a coordination.k8s.io Lease per component before reconciling; "
                             "standbys wait (--leader-elect=false for local development)")
    parser.add_argument("--leader-election-namespace", default=None,
                        help="namespace of the Leases (none: $POD_NAMESPACE, else the first "
                             f"--namespace, else {DEFAULT_LEASE_NAMESPACE})")
    parser.add_argument("--leader-election-lease-duration", type=float, default=15.0,
                        help="seconds a standby waits after the leader's last renewal before taking over")
    parser.add_argument("--leader-election-renew-deadline", type=float, default=10.0,
                        help="seconds the leader keeps trying to renew before it exits")
    parser.add_argument("--leader-election-retry-period", type=float, default=2.0,
                        help="seconds between attempts to acquire or renew")
    parser.add_argument("--shutdown-grace-period", type=float, default=20.0,
                        help="seconds SIGTERM may take, lease release included, before a forced exit")
    parser.add_argument("--healthz-port", type=int, default=8080,
                        help="serve /healthz (alive) and /readyz (leading and started, else 503) "
                             "on this port (0: off)")


def _lease_namespace(args: argparse.Namespace) -> str:
    explicit = getattr(args, "leader_election_namespace", None)
    namespaces = list(getattr(args, "namespace", None) or [])
    return str(explicit or os.environ.get("POD_NAMESPACE") or (namespaces[0] if namespaces else "")
               or DEFAULT_LEASE_NAMESPACE)


def _lease_scope(args: argparse.Namespace) -> list[str]:
    scope: list[str] = []
    for dest in LEASE_SCOPE_FLAGS:
        value = getattr(args, dest, None)
        if value:
            values = value if isinstance(value, list) else [value]
            scope.extend(f"{dest}={item}" for item in values)
    if not getattr(args, "shard", None):
        # a StatefulSet replica's shard (hostname ordinal, TIDEGATE_SHARDS): one Lease per shard,
        # so the shards of one set are not standbys of each other
        from gitops.shard import shard_from_env

        try:
            shard = shard_from_env()
        except ValueError:
            shard = None  # reported where the gitops component reads it
        if shard is not None and shard.count > 1:
            scope.append(f"shard={shard}")
    return scope


def _exit_lost(reason: str) -> None:
    """client-go's OnStoppedLeading: stop acting at once; the pod restarts as a standby."""
    get_logger("tidegate.leader").critical(M_EXITING_LOST, reason=reason)
    os._exit(EXIT_LOST_LEADERSHIP)


def _electors(args: argparse.Namespace, components: Sequence[str]) -> list[LeaderElector]:
    from common.kubeclient import new_api_client

    namespace = _lease_namespace(args)
    api = KubeLeaseApi(new_api_client(pool_size=4), namespace)
    timing = LeaseTiming(lease_duration=args.leader_election_lease_duration,
                         renew_deadline=args.leader_election_renew_deadline,
                         retry_period=args.leader_election_retry_period)
    identity = holder_identity()
    scope = _lease_scope(args)
    return [LeaderElector(api=api, namespace=namespace, component=component, identity=identity,
                          timing=timing, on_stopped_leading=_exit_lost,
                          name=lease_name(component, instance_id=CONFIG.instance_id, scope=scope))
            for component in components]


def _stand_by(electors: Sequence[LeaderElector], stop: threading.Event) -> bool:
    """Block until every Lease is ours (True) or SIGTERM/SIGINT sets ``stop`` first (False).

    kopf has not started yet, so its signal handlers are not installed: ours set
    ``stop``. A signal that lands after the wait but before kopf installs its own
    handlers is passed on to kopf once it has started (``_relay_early_signal``).
    """
    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    for elector in electors:
        elector.start()
    get_logger("tidegate.leader").info(M_STANDBY, leases=[e.name for e in electors],
                                       namespace=electors[0].namespace if electors else "")
    return all(elector.wait_until_leading(stop) for elector in electors)


def _relay_early_signal(stop: threading.Event, started: threading.Event) -> None:
    """Re-send a SIGTERM that our handler caught after the wait, once kopf's handler is in place.

    (Not kopf's ``stop_flag``: kopf waits on a threading.Event in an executor thread
    that never ends unless the flag is set, and asyncio's shutdown would wait for it.)
    """
    def relay() -> None:
        started.wait()
        if stop.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=relay, name="signal-relay", daemon=True).start()


def _release_all(electors: Sequence[LeaderElector]) -> None:
    """Hand every Lease back at once, bounded: a hung API server must not hold the pod."""
    threads = [threading.Thread(target=e.release, name=f"release-{e.component}", daemon=True)
               for e in electors]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + RELEASE_BUDGET_SECONDS  # one budget for all, not one each
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        get_logger("tidegate.leader").warning(M_SHUTDOWN_OVERRUN)


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
    timing_problem = LeaseTiming(lease_duration=args.leader_election_lease_duration,
                                 renew_deadline=args.leader_election_renew_deadline,
                                 retry_period=args.leader_election_retry_period).problem()
    if args.leader_elect and timing_problem:
        print(f"tidegate controller: {timing_problem}", file=sys.stderr)
        return 2
    # One format for every line: ours, kopf's and the HTTP libraries' (common/logging.py).
    configure(log_format=args.log_format, verbose=args.verbose)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1" if args.metrics_local else "0.0.0.0")  # noqa: S104
    started = threading.Event()  # kopf's ready_flag: startup handlers done, components running
    electors = _electors(args, [c for c in COMPONENTS if c in components]) if args.leader_elect else []
    if args.healthz_port:
        from common.health import start_health_server

        try:
            start_health_server(args.healthz_port, lambda: started.is_set() and
                                all(elector.leading.is_set() for elector in electors))
        except OSError as exc:
            # The pod's probes will fail and say so; a developer's second process still runs.
            get_logger("tidegate.controller").error(M_NO_PROBES, port=args.healthz_port, error=str(exc))
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
    log = get_logger("tidegate.controller")
    stop = threading.Event()
    if not electors:
        log.info(M_NO_ELECTION)
    elif not _stand_by(electors, stop):
        log.info(M_STOPPED_WAITING)
        _release_all(electors)
        return 0
    if electors:
        _relay_early_signal(stop, started)
    # kopf's SIGTERM handler stops the operator (no new work, handlers cancelled); its
    # last-resort SIGKILL bounds that part, and the release below is bounded too.
    settings = kopf.OperatorSettings()
    settings.process.ultimate_exiting_timeout = max(
        1.0, args.shutdown_grace_period - RELEASE_BUDGET_SECONDS)
    kopf.run(
        standalone=True,
        clusterwide=not CONFIG.namespaces,
        namespaces=CONFIG.namespaces,
        liveness_endpoint=None,
        settings=settings,
        ready_flag=started,
    )
    started.clear()
    if electors:
        log.info(M_SHUTDOWN)
        _release_all(electors)
    return 0
