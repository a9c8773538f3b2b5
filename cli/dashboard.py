"""``tidegate dashboard``: serve the web dashboard of Rollouts and Applications until Ctrl-C.

Registered by cli/main.py. Builds the ApiClient from the caller's kubeconfig
(cli/kubeopts.py), so the dashboard reads and acts with the caller's credentials, and hands
it to dashboard/server.py. Prints the URL it serves once the port is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from cli.controller import add_env_defaults
from cli.kubeopts import add_kube_flags, api_client, context_namespace
from views.appdiff import DEFAULT_APP_NAMESPACE

DEFAULT_PORT = 3100
DEFAULT_ADDRESS = "127.0.0.1"
# Seven watches each hold a connection open; actions and diffs need a few more at once.
POOL_SIZE = 16
MSG_BIND_FAILED = "tidegate dashboard: cannot serve on {address}:{port}: {error}"


ENV_PREFIX = "TIDEGATE_DASHBOARD_"


def add_subcommands(sub: Any) -> None:
    """Register ``dashboard`` on the top-level subparsers sub."""
    parser = sub.add_parser("dashboard", help="serve a live web dashboard of Rollouts and Applications")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port")
    parser.add_argument("--address", default=DEFAULT_ADDRESS,
                        help="address to bind (127.0.0.1: this machine only)")
    parser.add_argument("--read-only", action="store_true", help="show everything, refuse every action")
    parser.add_argument("--all-namespaces", "-A", action="store_true", help="rollouts of every namespace")
    parser.add_argument("--app-namespace", default=DEFAULT_APP_NAMESPACE,
                        help="the namespace of the Applications")
    add_kube_flags(parser)
    # as the controller's: every flag also reads TIDEGATE_DASHBOARD_<FLAG> (the chart's Deployment)
    add_env_defaults(parser, prefix=ENV_PREFIX)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dashboard.server import Settings, serve

    settings = Settings(address=args.address, port=args.port, read_only=args.read_only,
                        namespaces=None if args.all_namespaces else [context_namespace(args)],
                        app_namespace=args.app_namespace)
    client = api_client(args, pool_size=POOL_SIZE)

    def announce(line: str) -> None:
        print(line, flush=True)

    try:
        asyncio.run(serve(settings, client, announce=announce))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(MSG_BIND_FAILED.format(address=args.address, port=args.port, error=exc.strerror or exc),
              file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            client.close()
    return 0
