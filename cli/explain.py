"""``tidegate explain NAME``: why a rollout is where it is, step by step and measurement by measurement.

Reads the Rollout, the AnalysisRuns and ReplicaSets it owns, and the Events about
the Rollout and those runs; views/explain.py turns them into the decision log. Prints
a Rich table per section on a terminal, plain columns when piped, or the log's JSON /
YAML shape (``-o json|yaml``) for scripts. Registered by cli/main.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import yaml

from cli.kubeopts import add_kube_flags, api_client, context_namespace
from views.explain import build, to_dict

GROUP, VERSION = "argoproj.io", "v1alpha1"
REQUEST_TIMEOUT_SECONDS = 15.0
LIST_LIMIT = 500  # objects per page
MAX_PAGES = 4  # a size cap: at most 2000 objects of a kind are read
OUTPUTS = ("text", "json", "yaml")

MSG_NOT_FOUND = "error: rollout {namespace}/{name} not found"
MSG_API_ERROR = "error: reading {what}: {reason}"
TITLE_STEPS = "Steps"
TITLE_MEASUREMENTS = "Measurements"
HEADER_SUMMARY = "Rollout {namespace}/{name} (revision {revision})"
NO_STEPS = "(no canary steps)"
NO_MEASUREMENTS = "(no measurements)"
STEP_COLUMNS = ("#", "STEP", "STATE", "STARTED", "ENDED", "WHY")
MEASUREMENT_COLUMNS = ("RUN", "METRIC", "AT", "VALUE", "VERDICT", "CONDITION", "QUERY")
STATE_STYLES = {"done": "green", "current": "cyan", "paused": "yellow", "aborted": "red",
                "pending": "dim", "skipped": "dim"}
EXIT_OK, EXIT_ERROR = 0, 1


def add_subcommands(sub: Any) -> None:
    """Register ``explain`` on the top-level subparsers sub."""
    parser = sub.add_parser("explain", help="the decision log of a rollout's current revision")
    parser.add_argument("name", help="the Rollout's name")
    add_kube_flags(parser)
    parser.add_argument("--output", "-o", choices=OUTPUTS, default="text",
                        help="text (tables on a terminal, plain columns when piped), json or yaml")
    parser.set_defaults(func=run)


def _owned_by(obj: Mapping[str, Any], uid: str | None) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
    return uid is not None and any(ref.get("uid") == uid for ref in refs)


def _pages(list_call: Callable[..., Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every item of a paged list call, up to MAX_PAGES pages, each call with a deadline."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(MAX_PAGES):
        kwargs: dict[str, Any] = {"limit": LIST_LIMIT, "_request_timeout": REQUEST_TIMEOUT_SECONDS}
        if token:
            kwargs["_continue"] = token
        page = list_call(**kwargs)
        items += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            break
    return items


def read_objects(api: Any, *, namespace: str, name: str) -> dict[str, Any]:
    """The Rollout, its runs, ReplicaSets and Events, as plain camelCase dicts."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    rollout: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", name, _request_timeout=REQUEST_TIMEOUT_SECONDS)
    uid = (rollout.get("metadata") or {}).get("uid")
    runs = [r for r in _pages(lambda **kw: custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "analysisruns", **kw)) if _owned_by(r, uid)]
    apps = client.AppsV1Api(api)
    replicasets = [r for r in _pages(lambda **kw: api.sanitize_for_serialization(
        apps.list_namespaced_replica_set(namespace, **kw))) if _owned_by(r, uid)]
    core = client.CoreV1Api(api)

    def events_of(kind: str, object_name: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind={kind},involvedObject.name={object_name}"
        return _pages(lambda **kw: api.sanitize_for_serialization(
            core.list_namespaced_event(namespace, field_selector=selector, **kw)))

    events = events_of("Rollout", name)
    for run in runs:
        events += events_of("AnalysisRun", str((run.get("metadata") or {}).get("name")))
    return {"rollout": rollout, "analysis_runs": runs, "replicasets": replicasets, "events": events}


def run(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException

    namespace = context_namespace(args)
    try:
        objects = read_objects(api_client(args), namespace=namespace, name=args.name)
    except ApiException as exc:
        if exc.status == 404:
            print(MSG_NOT_FOUND.format(namespace=namespace, name=args.name), file=sys.stderr)
        else:
            print(MSG_API_ERROR.format(what=args.name, reason=exc.reason), file=sys.stderr)
        return EXIT_ERROR
    explanation = build(objects["rollout"], analysis_runs=objects["analysis_runs"],
                        events=objects["events"], replicasets=objects["replicasets"])
    render(to_dict(explanation), output=args.output, namespace=namespace, name=args.name, stream=sys.stdout)
    return EXIT_OK


def render(data: Mapping[str, Any], *, output: str, namespace: str, name: str, stream: TextIO,
           terminal: bool | None = None) -> None:
    """Print the log: JSON, YAML, Rich tables (terminal) or plain columns (piped)."""
    if output == "json":
        stream.write(json.dumps(data, indent=2) + "\n")
        return
    if output == "yaml":
        stream.write(yaml.safe_dump(dict(data), sort_keys=False))
        return
    is_tty = stream.isatty() if terminal is None else terminal
    header = HEADER_SUMMARY.format(namespace=namespace, name=name, revision=data.get("revision") or "?")
    step_rows = [[str(s["index"] + 1), s["step"], s["state"], s["startedAt"] or "-", s["endedAt"] or "-",
                  s["why"]] for s in data["steps"]]
    measurement_rows = [[m["analysisRun"], m["metric"], m["at"] or "-", m["value"] if m["value"] is not None
                         else "-", m["verdict"], m["condition"], m["query"]] for m in data["measurements"]]
    if is_tty:
        _render_rich(header, str(data["summary"]), step_rows, measurement_rows, stream)
    else:
        _render_plain(header, str(data["summary"]), step_rows, measurement_rows, stream)


def _render_rich(header: str, summary: str, steps: Sequence[Sequence[str]],
                 measurements: Sequence[Sequence[str]], stream: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, force_terminal=True, highlight=False)
    console.print(Text(header, style="bold"))
    console.print(summary, markup=False)
    steps_table = Table(title=TITLE_STEPS, title_justify="left")
    for column in STEP_COLUMNS:
        steps_table.add_column(column, overflow="fold")
    for row in steps:
        style = STATE_STYLES.get(row[2], "")
        steps_table.add_row(*row, style=style)
    console.print(steps_table if steps else NO_STEPS)
    runs_table = Table(title=TITLE_MEASUREMENTS, title_justify="left")
    for column in MEASUREMENT_COLUMNS:
        runs_table.add_column(column, overflow="fold")
    for row in measurements:
        runs_table.add_row(*row)
    console.print(runs_table if measurements else NO_MEASUREMENTS)


def _columns(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    # The last column is never padded, so lines carry no trailing spaces.
    return ["  ".join(str(c).ljust(w) if i < len(widths) - 1 else str(c)
                      for i, (c, w) in enumerate(zip(row, widths, strict=False)))
            for row in [list(headers), *rows]]


def _render_plain(header: str, summary: str, steps: Sequence[Sequence[str]],
                  measurements: Sequence[Sequence[str]], stream: TextIO) -> None:
    lines = [header, summary, "", TITLE_STEPS + ":"]
    lines += _columns(STEP_COLUMNS, steps) if steps else [NO_STEPS]
    lines += ["", TITLE_MEASUREMENTS + ":"]
    lines += _columns(MEASUREMENT_COLUMNS, measurements) if measurements else [NO_MEASUREMENTS]
    stream.write("\n".join(lines) + "\n")
