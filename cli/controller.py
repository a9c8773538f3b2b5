"""``tidegate controller``: the composition root that starts both controllers on kopf.

The one place outside the handler modules allowed to import kopf and
``analysis.handlers`` (see the import contracts in pyproject.toml): it chooses
the components, configures logging and metrics, and hands control to kopf.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys

from rollouts.config import CONFIG

COMPONENTS = ("rollouts", "analysis")
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


# Third-party loggers that print whole request lines (URL with its query, headers)
# at DEBUG: a web metric's URL can carry a secret, so even --verbose keeps them at
# WARNING (issue 7, defect 5).
REQUEST_LOGGERS = ("urllib3", "urllib3.connectionpool", "requests", "kubernetes.client.rest")


def quiet_request_loggers() -> None:
    """Keep the HTTP client libraries from logging request lines, whatever the root level."""
    import logging

    for name in REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def run_controller(args: argparse.Namespace) -> int:
    import logging

    import kopf
    import structlog
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
    renderer = (structlog.processors.JSONRenderer() if args.log_format == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(processors=[structlog.processors.add_log_level,
                                    structlog.processors.TimeStamper(fmt="iso"), renderer])
    logging.basicConfig(level=logging.INFO if not args.verbose else logging.DEBUG,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # kopf logs every handler success at INFO; our own loggers say what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    quiet_request_loggers()
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1" if args.metrics_local else "0.0.0.0")  # noqa: S104
    if "rollouts" in components:
        import rollouts.handlers  # noqa: F401  (registers kopf handlers)
    if "analysis" in components:
        import analysis.handlers  # noqa: F401  (registers kopf handlers)
    kopf.run(
        standalone=True,
        clusterwide=not CONFIG.namespaces,
        namespaces=CONFIG.namespaces,
        liveness_endpoint=None,
    )
    return 0
