"""argparse glue for the operator actions (promote, abort, retry, pause, resume)."""

from __future__ import annotations

import argparse
from typing import Any

from rollouts.kube import actions


def _client() -> Any:
    from common.kubeclient import new_api_client

    return new_api_client(pool_size=4)


def _run(args: argparse.Namespace) -> int:
    api = _client()
    ns, name = args.namespace, args.name
    if args.command == "promote":
        message = actions.promote(api, ns, name, full=args.full)
    elif args.command == "abort":
        message = actions.abort(api, ns, name)
    elif args.command == "retry":
        message = actions.retry(api, ns, name)
    elif args.command == "pause":
        message = actions.pause(api, ns, name)
    else:
        message = actions.resume(api, ns, name)
    print(message)
    return 0


def add_subcommands(sub: Any) -> None:
    for command, help_text in (
        ("promote", "advance past the current pause or step (--full: skip all steps)"),
        ("abort", "abort the update and send all traffic back to stable"),
        ("retry", "retry an aborted rollout from step 0"),
        ("pause", "pause the rollout (spec.paused)"),
        ("resume", "clear spec.paused"),
    ):
        p = sub.add_parser(command, help=help_text)
        p.add_argument("name")
        p.add_argument("--namespace", "-n", default="default")
        if command == "promote":
            p.add_argument("--full", action="store_true")
        p.set_defaults(func=_run)

