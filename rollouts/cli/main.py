"""``tidegate`` / ``kubectl-tidegate``: run the controller or act on Rollouts.

Subcommands: ``controller`` (runs the rollout and analysis controllers on kopf),
and the operator actions Argo's kubectl plugin offers, written as the same
patches (``promote [--full]``, ``abort``, ``retry``, ``pause``, ``resume``), plus
``get`` to print a rollout's state.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rollouts.cli import actions
from rollouts.config import CONFIG

COMPONENTS = ("rollouts", "analysis")


def _controller(args: argparse.Namespace) -> int:
    import logging

    import kopf
    import structlog
    from prometheus_client import start_http_server

    CONFIG.namespaces = list(args.namespace or [])
    CONFIG.instance_id = args.instance_id or ""
    CONFIG.metrics_port = args.metrics_port
    CONFIG.workers = args.workers
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidegate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ctl = sub.add_parser("controller", help="run the controllers (rollouts and analysis)")
    ctl.add_argument("--namespace", "-n", action="append", help="watch only this namespace (repeatable)")
    ctl.add_argument("--instance-id", default="", help="only handle objects with this controller-instance-id label")
    ctl.add_argument("--metrics-port", type=int, default=8090, help="Prometheus metrics port (0: off)")
    ctl.add_argument("--metrics-local", action="store_true", help="serve metrics on 127.0.0.1 only")
    ctl.add_argument("--log-format", choices=("text", "json"), default="text")
    ctl.add_argument("--components", default=",".join(COMPONENTS),
                     help="comma-separated subset of: " + ", ".join(COMPONENTS))
    ctl.add_argument("--workers", type=int, default=16, help="concurrent rollout reconciles")
    ctl.add_argument("--verbose", "-v", action="store_true")
    ctl.set_defaults(func=_controller)

    actions.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
