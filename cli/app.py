"""``tidegate app list|get|diff|refresh|sync|wait|history|rollback|explain``: Argo CD's ``argocd app``.

Talks to the Kubernetes API directly (no Argo CD API server): reads and patches
Application objects in the application namespace (``-N``, ``argocd`` by
default) as the controller watches them. Output shapes are Argo CD's: ``list``
prints NAME CLUSTER NAMESPACE PROJECT STATUS HEALTH SYNCPOLICY CONDITIONS REPO
PATH TARGET, ``get`` a summary and the resources table; ``-o json|yaml`` prints
the objects for scripts. Tables are drawn with Rich only on a terminal; piped,
they are plain aligned columns, as ``argocd`` prints them.

* ``sync`` writes the ``operation`` field as ``argocd app sync`` does (the
  controller runs it) and waits for it to finish unless ``--async``;
* ``refresh [--hard]`` sets ``argocd.argoproj.io/refresh`` and waits until the
  controller removed it;
* ``wait`` waits for ``--sync``, ``--health``, ``--operation`` (all three when
  none is given) up to ``--timeout``;
* ``history`` prints ``status.history`` as ``argocd app history`` (per source: ID DATE
  REVISION; ``-o id`` the ids only);
* ``rollback [ID]`` writes the ``operation`` ``argocd app rollback`` makes the API server
  write (the revision and source of history entry ID, the previous one by default),
  refused as Argo CD refuses it while automated sync is on, then waits like ``sync``;
* ``diff`` renders the Application's source from Git here (gitops.source,
  gitops.render) and compares each object as a server-side apply dry run
  (gitops.kube) would store it with the live object, as the controller does.
  Exit codes as ``argocd app diff``: 0 no differences, 1 differences, 2 error.
  The comparison is gitops/diff.py's, the controller's own: ``ignoreDifferences``
  (the app's and argocd-cm's) and the canary's weights are not differences;
* ``explain`` says in one sentence why the app is OutOfSync or failing, then
  every differing resource with its field paths and the field manager owning
  each in the live object, and the last operation's failed tasks with the API
  server's message (Tidegate's own; Argo CD has no such command).

Every call to the cluster goes through ``AppsApi`` (a fake in unit tests); the
diff through a ``Differ``.
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TextIO

import yaml

from views.appdiff import (
    DEFAULT_APP_NAMESPACE,
    MSG_OPERATION_RUNNING,
    AppError,
    Differ,
    ResourceDiff,
    app_source,
    kube_differ,
    operation_running,
    rollback_operation,
    sync_operation,
)

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"
REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"
EXIT_OK, EXIT_DIFF, EXIT_ERROR = 0, 1, 2
POLL_SECONDS = 1.0
SHORT_SHA = 7  # argocd app history shows a revision as "<targetRevision> (<sha[:7]>)"

LIST_COLUMNS = ("NAME", "CLUSTER", "NAMESPACE", "PROJECT", "STATUS", "HEALTH", "SYNCPOLICY",
                "CONDITIONS", "REPO", "PATH", "TARGET")
RESOURCE_COLUMNS = ("GROUP", "KIND", "NAMESPACE", "NAME", "STATUS", "HEALTH", "HOOK", "MESSAGE")


class AppsApi(Protocol):
    def list(self, namespace: str) -> list[dict[str, Any]]: ...

    def get(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]: ...


# --- the real cluster --------------------------------------------------------------------------

class KubeApps:
    """``AppsApi`` over the kubernetes client."""

    def __init__(self, api: Any) -> None:
        from kubernetes import client

        self.api = api
        self.custom = client.CustomObjectsApi(api)

    def list(self, namespace: str) -> list[dict[str, Any]]:
        out = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return [dict(item) for item in out.get("items") or []]

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
        except ApiException as exc:
            if exc.status == 404:
                raise AppError(f"application {name!r} not found in namespace {namespace!r}") from None
            raise AppError(f"reading application {name!r}: {exc.reason}") from None

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                               dict(patch)))


# --- formatting ------------------------------------------------------------------------------

def sync_policy(app: Mapping[str, Any]) -> str:
    automated = ((app.get("spec") or {}).get("syncPolicy") or {}).get("automated")
    if automated is None:
        return "Manual"
    return "Auto-Prune" if automated.get("prune") else "Auto"


def list_row(app: Mapping[str, Any]) -> tuple[str, ...]:
    meta, spec, status = app.get("metadata") or {}, app.get("spec") or {}, app.get("status") or {}
    dest = spec.get("destination") or {}
    source = app_source(app)
    conditions = ",".join(str(c.get("type")) for c in status.get("conditions") or []) or "<none>"
    return (f"{meta.get('namespace')}/{meta.get('name')}", str(dest.get("server") or dest.get("name") or ""),
            str(dest.get("namespace") or ""), str(spec.get("project") or ""),
            str((status.get("sync") or {}).get("status") or ""),
            str((status.get("health") or {}).get("status") or ""), sync_policy(app), conditions,
            str(source.get("repoURL") or ""), str(source.get("path") or ""),
            str(source.get("targetRevision") or ""))


def resource_rows(app: Mapping[str, Any]) -> list[tuple[str, ...]]:
    status = app.get("status") or {}
    messages = {(r.get("group") or "", r.get("kind"), r.get("namespace") or "", r.get("name")):
                (str(r.get("message") or ""), str(r.get("hookType") or ""))
                for r in ((status.get("operationState") or {}).get("syncResult") or {}).get("resources") or []}
    rows: list[tuple[str, ...]] = []
    for r in status.get("resources") or []:
        key = (r.get("group") or "", r.get("kind"), r.get("namespace") or "", r.get("name"))
        message, hook = messages.get(key, ("", ""))
        rows.append((str(r.get("group") or ""), str(r.get("kind") or ""), str(r.get("namespace") or ""),
                     str(r.get("name") or ""), str(r.get("status") or ""),
                     str((r.get("health") or {}).get("status") or ""), hook, message))
    return rows


def summary(app: Mapping[str, Any]) -> list[tuple[str, str]]:
    meta, spec, status = app.get("metadata") or {}, app.get("spec") or {}, app.get("status") or {}
    dest = spec.get("destination") or {}
    source = app_source(app)
    sync = status.get("sync") or {}
    target = str(source.get("targetRevision") or "HEAD")
    revision = str(sync.get("revision") or "")
    sync_text = str(sync.get("status") or "Unknown")
    if revision:
        sync_text += f" to {target} ({revision[:7]})"
    rows = [("Name", f"{meta.get('namespace')}/{meta.get('name')}"),
            ("Project", str(spec.get("project") or "")),
            ("Server", str(dest.get("server") or dest.get("name") or "")),
            ("Namespace", str(dest.get("namespace") or "")),
            ("Repo", str(source.get("repoURL") or "")),
            ("Target", str(source.get("targetRevision") or "")),
            ("Path", str(source.get("path") or "")),
            ("Sync Policy", sync_policy(app)),
            ("Sync Status", sync_text),
            ("Health Status", str((status.get("health") or {}).get("status") or ""))]
    for condition in status.get("conditions") or []:
        rows.append(("Condition", f"{condition.get('type')}: {condition.get('message')}"))
    op = status.get("operationState") or {}
    if op:
        rows += [("Operation", "Sync"), ("Sync Revision", str((op.get("syncResult") or {}).get("revision") or "")),
                 ("Phase", str(op.get("phase") or "")), ("Start", str(op.get("startedAt") or "")),
                 ("Finished", str(op.get("finishedAt") or "")), ("Message", str(op.get("message") or ""))]
    return rows


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO, *,
                rich: bool) -> None:
    if rich:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console(file=out).print(table)
        return
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    for row in (tuple(columns), *rows):
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")


def _print_doc(doc: Any, output: str, out: TextIO) -> None:
    if output == "json":
        out.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    else:
        out.write(yaml.safe_dump(doc, sort_keys=False))


# --- commands --------------------------------------------------------------------------------

@dataclass
class Context:
    api: AppsApi
    out: TextIO
    err: TextIO
    rich: bool
    differ: Callable[[], Differ]
    sleep: Callable[[float], None] = lambda seconds: time.sleep(seconds)
    clock: Callable[[], float] = lambda: time.monotonic()


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    apps = sorted(ctx.api.list(args.app_namespace), key=lambda a: str((a.get("metadata") or {}).get("name")))
    if args.output in ("json", "yaml"):
        _print_doc(apps, args.output, ctx.out)
    elif args.output == "name":
        for app in apps:
            ctx.out.write(f"{app['metadata']['namespace']}/{app['metadata']['name']}\n")
    else:
        print_table(LIST_COLUMNS, [list_row(a) for a in apps], ctx.out, rich=ctx.rich)
    return EXIT_OK


def _print_app(ctx: Context, app: Mapping[str, Any], output: str) -> None:
    if output in ("json", "yaml"):
        _print_doc(dict(app), output, ctx.out)
        return
    rows = summary(app)
    width = max(len(k) for k, _ in rows) + 2
    for key, value in rows:
        ctx.out.write(f"{(key + ':').ljust(width)}{value}\n")
    ctx.out.write("\n")
    print_table(RESOURCE_COLUMNS, resource_rows(app), ctx.out, rich=ctx.rich)


def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    _print_app(ctx, ctx.api.get(args.app_namespace, args.name), args.output)
    return EXIT_OK


def cmd_diff(ctx: Context, args: argparse.Namespace) -> int:
    try:
        app = ctx.api.get(args.app_namespace, args.name)
        diffs = ctx.differ()(app)
    except Exception as exc:  # any failure to compare is exit 2, as argocd app diff
        ctx.err.write(f"tidegate app diff: {exc}\n")
        return EXIT_ERROR
    for diff in diffs:
        group = f"{diff.group}/" if diff.group else "/"
        ctx.out.write(f"===== {group}{diff.kind} {diff.namespace}/{diff.name} ======\n{diff.text}")
        if not diff.text.endswith("\n"):
            ctx.out.write("\n")
    return EXIT_DIFF if diffs else EXIT_OK


def _wait(ctx: Context, args: argparse.Namespace, done: Callable[[Mapping[str, Any]], bool],
          what: str) -> tuple[int, dict[str, Any]]:
    deadline = ctx.clock() + args.timeout if args.timeout else None
    while True:
        app = ctx.api.get(args.app_namespace, args.name)
        if done(app):
            return EXIT_OK, app
        if deadline is not None and ctx.clock() >= deadline:
            ctx.err.write(f"timed out ({args.timeout:g}s) waiting for app {args.name!r} {what}\n")
            return 1, app
        ctx.sleep(POLL_SECONDS)


def _operation_done(app: Mapping[str, Any]) -> bool:
    status = app.get("status") or {}
    return app.get("operation") is None and (status.get("operationState") or {}).get("phase") != "Running"


def cmd_wait(ctx: Context, args: argparse.Namespace) -> int:
    want_sync, want_health, want_op = args.sync, args.health, args.operation
    if not (want_sync or want_health or want_op):
        want_sync = want_health = want_op = True

    def done(app: Mapping[str, Any]) -> bool:
        status = app.get("status") or {}
        return ((not want_sync or (status.get("sync") or {}).get("status") == "Synced")
                and (not want_health or (status.get("health") or {}).get("status") == "Healthy")
                and (not want_op or _operation_done(app)))

    wanted = [w for w, on in (("synced", want_sync), ("healthy", want_health),
                              ("done with its operation", want_op)) if on]
    code, app = _wait(ctx, args, done, "to be " + " and ".join(wanted))
    if code == EXIT_OK:
        _print_app(ctx, app, args.output)
    return code


def cmd_sync(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.api.get(args.app_namespace, args.name)
    if operation_running(app):
        ctx.err.write(MSG_OPERATION_RUNNING.format(name=args.name) + "\n")
        return 1
    previous = str(((app.get("status") or {}).get("operationState") or {}).get("startedAt") or "")
    ctx.api.patch(args.app_namespace, args.name,
                  sync_operation(app, revision=args.revision, prune=args.prune,
                                 options=args.sync_option or [], username=_username()))
    if args.async_:
        ctx.out.write(f"sync of application {args.name!r} requested\n")
        return EXIT_OK
    return _await_operation(ctx, args, previous)


def _await_operation(ctx: Context, args: argparse.Namespace, previous: str) -> int:
    """Wait for the operation just written to finish (a new startedAt); print the app; 1 unless Succeeded."""

    def finished(current: Mapping[str, Any]) -> bool:
        op = (current.get("status") or {}).get("operationState") or {}
        return (current.get("operation") is None and op.get("phase") not in (None, "Running")
                and str(op.get("startedAt") or "") != previous)

    code, current = _wait(ctx, args, finished, "to finish its sync")
    if code != EXIT_OK:
        return code
    _print_app(ctx, current, args.output)
    phase = ((current.get("status") or {}).get("operationState") or {}).get("phase")
    if phase != "Succeeded":
        ctx.err.write(f"Operation has completed with phase: {phase}\n")
        return 1
    return EXIT_OK


def go_time(stamp: str) -> str:
    """An RFC 3339 stamp as Go prints a time.Time (what argocd app history shows)."""
    try:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return stamp
    return when.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def history_sections(app: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(repoURL, [(ID, DATE, REVISION)]) in first-seen order, as argocd app history groups them."""
    sections: dict[str, list[tuple[str, str, str]]] = {}
    for entry in (app.get("status") or {}).get("history") or []:
        date = go_time(str(entry.get("deployedAt") or ""))
        sources = entry.get("sources")
        if sources:
            revisions = list(entry.get("revisions") or [])
            pairs = [(s, revisions[i] if len(revisions) == len(sources) else "")
                     for i, s in enumerate(sources)]
        else:
            pairs = [(entry.get("source") or {}, str(entry.get("revision") or ""))]
        for source, revision in pairs:
            text = str(source.get("targetRevision") or "")
            if len(revision) >= SHORT_SHA:
                text = f"{text} ({revision[:SHORT_SHA]})"
            sections.setdefault(str(source.get("repoURL") or ""), []).append(
                (str(entry.get("id")), date, text))
    return list(sections.items())


def cmd_history(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.api.get(args.app_namespace, args.name)
    history = list((app.get("status") or {}).get("history") or [])
    if args.output in ("json", "yaml"):
        _print_doc(history, args.output, ctx.out)
    elif args.output == "id":
        for entry in history:
            ctx.out.write(f"{entry.get('id')}\n")
    else:
        for number, (repo, rows) in enumerate(history_sections(app)):
            if number:
                ctx.out.write("\n")
            # One aligned block per source, as Go's tabwriter draws argocd's (SOURCE shares column 1).
            first = max(len(c) for c in ("SOURCE", "ID", *(r[0] for r in rows)))
            second = max(len(c) for c in ("DATE", *(r[1] for r in rows)))
            ctx.out.write(f"{'SOURCE'.ljust(first)}  {repo}\n")
            for row in (("ID", "DATE", "REVISION"), *rows):
                ctx.out.write(f"{row[0].ljust(first)}  {row[1].ljust(second)}  {row[2]}".rstrip() + "\n")
    return EXIT_OK


def cmd_rollback(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.api.get(args.app_namespace, args.name)
    previous = str(((app.get("status") or {}).get("operationState") or {}).get("startedAt") or "")
    ctx.api.patch(args.app_namespace, args.name,
                  rollback_operation(app, args.id, prune=args.prune, username=_username()))
    return _await_operation(ctx, args, previous)


def cmd_refresh(ctx: Context, args: argparse.Namespace) -> int:
    kind = "hard" if args.hard else "normal"
    ctx.api.patch(args.app_namespace, args.name, {"metadata": {"annotations": {REFRESH_ANNOTATION: kind}}})

    def refreshed(app: Mapping[str, Any]) -> bool:
        return REFRESH_ANNOTATION not in ((app.get("metadata") or {}).get("annotations") or {})

    code, app = _wait(ctx, args, refreshed, "to be refreshed")
    if code == EXIT_OK:
        _print_app(ctx, app, args.output)
    return code


def _username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "tidegate"


COMMANDS: dict[str, tuple[Callable[[Context, argparse.Namespace], int], str]] = {
    "list": (cmd_list, "list Applications"),
    "get": (cmd_get, "show an Application: summary and resources"),
    "diff": (cmd_diff, "diff Git against the cluster (exit 0 none, 1 differences, 2 error)"),
    "refresh": (cmd_refresh, "refresh an Application now (--hard: Argo CD's hard refresh)"),
    "sync": (cmd_sync, "sync an Application (writes the operation field, as argocd app sync)"),
    "wait": (cmd_wait, "wait for an Application to be synced, healthy, done with its operation"),
    "history": (cmd_history, "show an Application's deployment history (status.history)"),
    "rollback": (cmd_rollback, "sync to a history entry's revision and source (default: the previous)"),
}


def add_subcommands(sub: Any) -> None:
    app = sub.add_parser("app", help="act on Argo CD Applications (list, get, diff, refresh, sync, wait, "
                                     "history, rollback)")
    app_sub = app.add_subparsers(dest="app_command", required=True)
    for name, (_fn, help_text) in COMMANDS.items():
        p = app_sub.add_parser(name, help=help_text)
        if name != "list":
            p.add_argument("name")
        p.add_argument("--app-namespace", "-N", default=DEFAULT_APP_NAMESPACE,
                       help="the namespace of the Applications (default argocd)")
        if name in ("list", "get", "wait", "sync", "refresh", "history", "rollback"):
            choices = (["wide", "json", "yaml"] + (["name"] if name == "list" else [])
                       + (["id"] if name == "history" else []))
            p.add_argument("--output", "-o", choices=choices, default="wide")
        if name in ("wait", "sync", "refresh", "rollback"):
            p.add_argument("--timeout", type=float, default=0 if name == "wait" else 300,
                           help="seconds to wait (0: no limit)")
        if name == "wait":
            p.add_argument("--sync", action="store_true", help="wait for Synced")
            p.add_argument("--health", action="store_true", help="wait for Healthy")
            p.add_argument("--operation", action="store_true", help="wait for no running operation")
        if name == "sync":
            p.add_argument("--revision", help="sync to this revision instead of targetRevision")
            p.add_argument("--prune", action="store_true", help="delete resources no longer in Git")
            p.add_argument("--sync-option", action="append", help="e.g. CreateNamespace=true (repeatable)")
            p.add_argument("--async", dest="async_", action="store_true", help="do not wait for the sync")
        if name == "refresh":
            p.add_argument("--hard", action="store_true", help="hard refresh")
        if name == "rollback":
            p.add_argument("id", nargs="?", type=int, help="the history ID (default: the previous one)")
            p.add_argument("--prune", action="store_true", help="delete resources not in that revision")
        if name in ("diff", "explain"):
            p.add_argument("--control-namespace", default=None,
                           help="the controller's control namespace (its first --app-namespace); objects of "
                                "apps outside it carry <namespace>_<name> tracking ids (default: the "
                                "Applications' namespace)")
        p.set_defaults(func=run)


def run(args: argparse.Namespace, *, api: AppsApi | None = None, differ: Differ | None = None,
        out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    client: Any = None

    def kube() -> Any:
        nonlocal client
        if client is None:
            from common.kubeclient import new_api_client

            client = new_api_client(pool_size=4)
        return client

    ctx = Context(api=api or KubeApps(kube()), out=out, err=err,
                  rich=out.isatty() and not isinstance(out, io.StringIO),
                  differ=(lambda: differ) if differ is not None else (lambda: kube_differ(
                      kube(), control_namespace=getattr(args, "control_namespace", None) or args.app_namespace)))
    fn, _ = COMMANDS[args.app_command]
    try:
        return fn(ctx, args)
    except AppError as exc:
        err.write(f"tidegate app {args.app_command}: {exc}\n")
        return EXIT_ERROR if args.app_command == "diff" else 1


# --- explain -------------------------------------------------------------------------------------

MSG_EXPLAIN_CONDITION = "application {app} cannot be compared with Git: {type}: {message}"
MSG_EXPLAIN_FAILED = "the last sync of {app} (revision {revision}) ended {phase}: {message}"
MSG_EXPLAIN_RUNNING = "a sync of {app} is running: {message}"
MSG_EXPLAIN_OUT_OF_SYNC = "{app} is OutOfSync: {count} from Git at revision {revision} ({first}{more}); {advice}"
MSG_EXPLAIN_UNHEALTHY = "{app} is Synced but {health}: {resource}{message}"
MSG_EXPLAIN_FINE = "{app} is Synced and {health} at revision {revision}: nothing to explain"
ADVICE_SELF_HEAL = "selfHeal is on, so the controller reverts it"
ADVICE_AUTOMATED = "automated sync without selfHeal only reports drift; run `tidegate app sync {name}`"
ADVICE_MANUAL = "run `tidegate app sync {name}` to apply Git"
MSG_MISSING_LIVE = "missing from the cluster: the sync creates it"
MSG_REQUIRES_PRUNING = "not in Git any more: requires pruning"
MSG_NO_FIELDS = "(no field differs now: the controller's view is older than the live object)"
MSG_FIELDS_UNAVAILABLE = "field paths unavailable: {error}"
FIELD_COLUMNS = ("FIELD", "MANAGER")
FAILED_PHASES = ("Failed", "Error")

ResKey = tuple[str, str, str, str]


def _res_key(entry: Mapping[str, Any]) -> ResKey:
    return (str(entry.get("group") or ""), str(entry.get("kind") or ""), str(entry.get("namespace") or ""),
            str(entry.get("name") or ""))


def _res_name(key: ResKey) -> str:
    return f"{key[0]}/{key[1]} {key[2]}/{key[3]}" if key[2] else f"{key[0]}/{key[1]} {key[3]}"


def failed_tasks(app: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The last operation's tasks that failed (SyncFailed, or a hook Failed/Error), in order."""
    op = (app.get("status") or {}).get("operationState") or {}
    return [r for r in (op.get("syncResult") or {}).get("resources") or []
            if r.get("status") == "SyncFailed" or r.get("hookPhase") in FAILED_PHASES]


def explain_reason(app: Mapping[str, Any], out_of_sync: Sequence[ResKey]) -> str:
    """One sentence: why the app is OutOfSync or failing (or that nothing is wrong)."""
    meta, spec, status = app.get("metadata") or {}, app.get("spec") or {}, app.get("status") or {}
    name = str(meta.get("name") or "")
    label = f"{meta.get('namespace')}/{name}"
    op = status.get("operationState") or {}
    revision = str((status.get("sync") or {}).get("revision") or (op.get("syncResult") or {}).get("revision")
                   or "")[:7] or "unknown"
    conditions = status.get("conditions") or []
    if conditions:
        return MSG_EXPLAIN_CONDITION.format(app=label, type=conditions[0].get("type"),
                                            message=conditions[0].get("message"))
    if op.get("phase") in FAILED_PHASES:
        return MSG_EXPLAIN_FAILED.format(app=label, revision=str((op.get("syncResult") or {}).get("revision")
                                                                 or "")[:7] or revision,
                                         phase=op.get("phase"), message=op.get("message"))
    if op.get("phase") == "Running":
        return MSG_EXPLAIN_RUNNING.format(app=label, message=op.get("message") or "starting")
    health = str((status.get("health") or {}).get("status") or "Unknown")
    if out_of_sync or (status.get("sync") or {}).get("status") == "OutOfSync":
        automated = (spec.get("syncPolicy") or {}).get("automated")
        advice = (ADVICE_SELF_HEAL if automated is not None and automated.get("selfHeal")
                  else ADVICE_AUTOMATED if automated is not None else ADVICE_MANUAL).format(name=name)
        count = len(out_of_sync)
        return MSG_EXPLAIN_OUT_OF_SYNC.format(
            app=label, count=f"{count} resources differ" if count != 1 else "1 resource differs", revision=revision,
            first=_res_name(out_of_sync[0]) if out_of_sync else "none listed",
            more=f" and {count - 1} more" if count > 1 else "", advice=advice)
    if health != "Healthy":
        sick = next((r for r in status.get("resources") or []
                     if (r.get("health") or {}).get("status") not in (None, "Healthy")), None)
        message = str(((sick or {}).get("health") or {}).get("message") or "")
        return MSG_EXPLAIN_UNHEALTHY.format(app=label, health=health,
                                            resource=_res_name(_res_key(sick)) if sick else "",
                                            message=f": {message}" if message else "")
    return MSG_EXPLAIN_FINE.format(app=label, health=health, revision=revision)


def cmd_explain(ctx: Context, args: argparse.Namespace) -> int:
    """Why the app is OutOfSync or failing: the sentence, the differing fields and owners, failed tasks."""
    app = ctx.api.get(args.app_namespace, args.name)
    status = app.get("status") or {}
    listed = {_res_key(r): r for r in status.get("resources") or [] if r.get("status") == "OutOfSync"}
    diffs: dict[ResKey, ResourceDiff] = {}
    code = EXIT_OK
    if listed or (status.get("sync") or {}).get("status") != "Synced":
        try:
            diffs = {(d.group, d.kind, d.namespace, d.name): d for d in ctx.differ()(app)}
        except Exception as exc:  # the status still explains a lot: say what is missing, go on
            ctx.err.write(MSG_FIELDS_UNAVAILABLE.format(error=exc) + "\n")
            code = EXIT_ERROR
    keys = [*listed, *(k for k in diffs if k not in listed)]
    ctx.out.write(f"Reason: {explain_reason(app, keys)}.\n")
    for key in keys:
        ctx.out.write(f"\n{_res_name(key)}: OutOfSync\n")
        diff = diffs.get(key)
        if listed.get(key, {}).get("requiresPruning"):
            ctx.out.write(f"  {MSG_REQUIRES_PRUNING}\n")
        elif diff is not None and diff.missing:
            ctx.out.write(f"  {MSG_MISSING_LIVE}\n")
        elif diff is not None and diff.fields:
            rows = [(f"  {path}", manager or "<none>") for path, manager in diff.fields]
            print_table(("  " + FIELD_COLUMNS[0], FIELD_COLUMNS[1]), rows, ctx.out, rich=ctx.rich)
        elif code == EXIT_OK:
            ctx.out.write(f"  {MSG_NO_FIELDS}\n")
    failed = failed_tasks(app)
    if failed:
        op = status.get("operationState") or {}
        revision = str((op.get("syncResult") or {}).get("revision") or "")[:7]
        ctx.out.write(f"\nFailed tasks of the last operation ({op.get('phase')}, revision {revision}):\n")
        for task in failed:
            phase = f" ({task.get('hookType')} hook)" if task.get("hookType") else ""
            ctx.out.write(f"  {_res_name(_res_key(task))}{phase}: {task.get('message')}\n")
    return code


COMMANDS["explain"] = (cmd_explain, "why an Application is OutOfSync or failing: fields, their managers, "
                                    "failed tasks")
