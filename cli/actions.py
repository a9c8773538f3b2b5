"""argparse glue for the operator actions on a Rollout, as ``kubectl argo rollouts`` has them.

Registered by cli/main.py: ``promote NAME [--full]``, ``abort NAME [--reason]``,
``retry [rollout] NAME``, ``pause NAME``, ``resume NAME``, ``restart NAME [--in]``,
``set image NAME CONTAINER=IMAGE`` and ``undo NAME [--to-revision N]``. Each sends
the patch rollouts/kube/actions.py builds and prints what it changed; an error
prints one line naming the object and field and exits 1 (no traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from cli.kubeopts import add_kube_flags, api_client, context_namespace
from rollouts.kube import actions

EXIT_ERROR = 1
RETRY_KINDS = ("rollout", "rollouts", "ro")
MSG_RETRY_USAGE = "retry: expected NAME or 'rollout NAME', got: {words}"
MSG_ERROR = "error: {message}"

Action = Callable[[Any, str, str, argparse.Namespace], str]


def _retry_name(words: list[str]) -> str:
    if len(words) == 1 and words[0] not in RETRY_KINDS:
        return words[0]
    if len(words) == 2 and words[0] in RETRY_KINDS:
        return words[1]
    raise actions.ActionError(MSG_RETRY_USAGE.format(words=" ".join(words)))


def _promote(api: Any, ns: str, name: str, args: argparse.Namespace) -> str:
    return actions.promote(api, ns, name, full=args.full)


def _abort(api: Any, ns: str, name: str, args: argparse.Namespace) -> str:
    return actions.abort(api, ns, name, reason=args.reason)


def _retry(api: Any, ns: str, name: str, args: argparse.Namespace) -> str:
    return actions.retry(api, ns, name)


def _pause(api: Any, ns: str, name: str, args: argparse.Namespace) -> str:
    return actions.pause(api, ns, name)


def _resume(api: Any, ns: str, name: str, args: argparse.Namespace) -> str:
    return actions.resume(api, ns, name)


def _restart(api: Any, ns: str, name: str, args: argparse.Namespace) -> str:
    return actions.restart(api, ns, name, delay=actions.parse_duration(args.in_))


def _set_image(api: Any, ns: str, name: str, args: argparse.Namespace) -> str:
    container, image = actions.parse_image_arg(args.image)
    return actions.set_image(api, ns, name, container, image)


def _undo(api: Any, ns: str, name: str, args: argparse.Namespace) -> str:
    return actions.undo(api, ns, name, to_revision=args.to_revision)


def _run(args: argparse.Namespace) -> int:
    action: Action = args.action
    try:
        name = _retry_name(args.words) if action is _retry else args.name
        # Validate the arguments before connecting: a typo needs no cluster.
        if action is _restart:
            actions.parse_duration(args.in_)
        elif action is _set_image:
            actions.parse_image_arg(args.image)
        api = api_client(args)
        message = action(api, context_namespace(args), name, args)
    except actions.ActionError as err:
        print(MSG_ERROR.format(message=err.message), file=sys.stderr)
        return EXIT_ERROR
    print(message)
    return 0


def _parser(sub: Any, command: str, help_text: str, action: Action, *, name: bool = True) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(command, help=help_text)
    if name:
        p.add_argument("name", help="the Rollout")
    add_kube_flags(p)
    p.set_defaults(func=_run, action=action)
    return p


def add_subcommands(sub: Any) -> None:
    promote = _parser(sub, "promote", "advance past the current pause or step (--full: skip all steps)", _promote)
    promote.add_argument("--full", action="store_true", help="skip every remaining step and analysis")
    abort = _parser(sub, "abort", "abort the update and send all traffic back to stable", _abort)
    abort.add_argument("--reason", default=None,
                       help="why (recorded in the rollout's RolloutAborted message)")
    retry = _parser(sub, "retry", "retry an aborted rollout from step 0 (retry NAME or retry rollout NAME)",
                    _retry, name=False)
    retry.add_argument("words", nargs="+", metavar="[rollout] NAME")
    _parser(sub, "pause", "pause the rollout (spec.paused=true)", _pause)
    _parser(sub, "resume", "resume a paused rollout (spec.paused=false)", _resume)
    restart = _parser(sub, "restart", "restart the rollout's pods (spec.restartAt)", _restart)
    restart.add_argument("--in", dest="in_", default="0s", metavar="DURATION",
                         help="restart after this long (e.g. 30s, 5m; default: now)")
    set_parser = sub.add_parser("set", help="update a rollout's spec (set image)")
    set_sub = set_parser.add_subparsers(dest="set_command", required=True)
    image = _parser(set_sub, "image", "set a container's image (CONTAINER=IMAGE; *=IMAGE for all)", _set_image)
    image.add_argument("image", metavar="CONTAINER=IMAGE")
    undo = _parser(sub, "undo", "roll back to the previous (or a given) revision's pod template", _undo)
    undo.add_argument("--to-revision", type=int, default=None, metavar="N",
                      help="the revision to go back to (default: the previous one)")
