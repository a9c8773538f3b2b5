"""The read side of the kubectl plugin: ``get rollout``, ``list rollouts``, ``status``, ``completion``.

Registered by cli/main.py (``tidegate`` and ``kubectl-tidegate``). The objects are read
through the kubernetes client (``KubeFeed``: one list, then watches with timeouts that
are re-established), turned into a views.rollout.RolloutView and drawn with Rich: a
header and a tree of revisions, ReplicaSets, pods and AnalysisRuns, as Argo's
``kubectl argo rollouts get rollout`` shows them. Colours and icons only on a terminal;
piped output is plain and deterministic. ``--watch`` redraws in place (rich.live) on
every change a watch reports, at most five times a second.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Protocol

import yaml
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from cli.kubeopts import add_kube_flags, api_client, context_namespace
from rollouts.api.constants import GROUP, LABEL_POD_TEMPLATE_HASH, VERSION
from views import rollout as rv

# --- names and messages ---------------------------------------------------------------------
PLURAL_ROLLOUTS = "rollouts"
PLURAL_RUNS = "analysisruns"
OUTPUT_JSON, OUTPUT_YAML, OUTPUT_WIDE = "json", "yaml", "wide"
OUTPUTS = (OUTPUT_JSON, OUTPUT_YAML, OUTPUT_WIDE)
SHELLS = ("bash", "zsh", "tcsh")
HEALTHY, DEGRADED = "Healthy", "Degraded"

EXIT_OK, EXIT_DEGRADED, EXIT_TIMEOUT = 0, 1, 2
EXIT_INTERRUPTED = 130  # `status` stopped by Ctrl-C decided nothing: the shell's code for SIGINT
MSG_NOT_FOUND = 'rollout "{name}" not found in namespace "{namespace}"'
MSG_WAITING_FOR = 'waiting for rollout "{name}" in namespace "{namespace}" to exist'
MSG_DEGRADED = "rollout is Degraded: {message}"
MSG_TIMEOUT = "timed out after {seconds:g}s waiting for rollout to be Healthy (now {status})"
MSG_NO_ROLLOUTS = "No resources found in {where}."
MSG_TOO_LARGE = "the API server's answer is larger than {limit} bytes"
STATUS_HELP = (
    "exit 0 once the rollout is Healthy, 1 once it is Degraded (the message is printed), "
    "2 when --timeout runs out. As in `kubectl argo rollouts status`, --watch is on by default "
    "and --timeout 0 (the default) waits forever; with --no-watch the status is read once and "
    "a rollout still Progressing or Paused exits 2 at once."
)

# --- deadlines and caps for calls to the API server ----------------------------------------
REQUEST_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds for list calls
WATCH_SECONDS = 60  # the API server ends each watch after this; it is then re-established
WATCH_READ_TIMEOUT = WATCH_SECONDS + 15
RETRY_DELAY = 1.0
MAX_BODY_BYTES = 64 * 1024 * 1024
REDRAW_INTERVAL = 0.2  # at most five redraws a second, as Argo's plugin
HTTP_GONE = 410
WATCH_CHUNK_BYTES = 64 * 1024
MAX_EVENT_BYTES = 16 * 1024 * 1024
STOP_JOIN_SECONDS = 2.0

# --- look -----------------------------------------------------------------------------------
STATUS_ICONS = {
    "Healthy": ("✔", "green"),
    "Progressing": ("◌", "blue"),
    "Paused": ("॥", "yellow"),
    "Degraded": ("✖", "red"),
    # pods
    "Running": ("✔", "green"),
    "Succeeded": ("✔", "green"),
    "Pending": ("◌", "yellow"),
    "ContainerCreating": ("◌", "yellow"),
    "Terminating": ("◌", "bright_black"),
    # AnalysisRuns
    "Successful": ("✔", "green"),
    "Failed": ("✖", "red"),
    "Error": ("⚠", "red"),
    "Inconclusive": ("?", "yellow"),
}
ROLLOUT_PHASES = ("Healthy", "Progressing", "Paused", "Degraded")
RUN_ICONS = {"Running": ("◌", "blue"), "Pending": ("◌", "yellow")}
"""An AnalysisRun still Running is in progress, not a success as a Running pod is."""
DEFAULT_ICON = ("✖", "red")
ICON_ROLLOUT, ICON_REVISION, ICON_RS, ICON_POD, ICON_RUN = "⟳", "#", "⧉", "□", "α"
TERMINAL_WIDTH_FALLBACK = 120
MAX_TABLE_WIDTH = 1000
STEP_MARKERS = {rv.STEP_DONE: "✔", rv.STEP_CURRENT: "→", rv.STEP_NEXT: " "}
STEP_WORDS = {rv.STEP_DONE: "done", rv.STEP_CURRENT: "current", rv.STEP_NEXT: "next"}


# --- reading the objects -------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Everything one rollout's view is built from, as last seen."""

    rollout: Mapping[str, Any] | None
    replicasets: Sequence[Mapping[str, Any]] = ()
    pods: Sequence[Mapping[str, Any]] = ()
    analysis_runs: Sequence[Mapping[str, Any]] = ()


class Feed(Protocol):
    """Where a watching command reads from: the cluster (KubeFeed) or a test's stand-in."""

    def start(self) -> None:
        """Load the objects and begin watching them."""

    def snapshot(self) -> Snapshot:
        """The objects as last seen."""

    def wait(self, timeout: float | None) -> bool:
        """Block until something changed (True) or ``timeout`` seconds passed (False)."""

    def stop(self) -> None:
        """End the watches."""


class ListFeed(Protocol):
    """Where ``list rollouts --watch`` reads from: every rollout in scope and their ReplicaSets."""

    def start(self) -> None: ...

    def listing(self) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """The rollouts and the ReplicaSets as last seen."""

    def wait(self, timeout: float | None) -> bool: ...

    def stop(self) -> None: ...


def _key(obj: Mapping[str, Any]) -> str:
    """``namespace/name``: one feed may span namespaces (``list rollouts -A --watch``)."""
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


def _body(response: Any) -> dict[str, Any]:
    data = response.data
    if len(data) > MAX_BODY_BYTES:
        raise ValueError(MSG_TOO_LARGE.format(limit=MAX_BODY_BYTES))
    parsed: dict[str, Any] = json.loads(data)
    return parsed


@dataclass
class _Kind:
    """One watched kind: how to list it, and its objects by name."""

    list_call: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    objects: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    listed_version: str = ""
    """The resourceVersion of the last list, where the first watch starts."""


class KubeFeed:
    """One rollout's objects in a namespace, kept current by watches (never polling); with
    ``name`` None, every rollout of the namespace (of every namespace when ``namespace`` is
    None too) and their ReplicaSets, for ``list rollouts --watch``.

    Each kind is listed once, then watched from the list's resourceVersion; a watch
    ends after WATCH_SECONDS and is re-established from the last version seen, and
    a 410 Gone (the version expired) or a failed call starts again with a list.
    """

    def __init__(self, api: Any, namespace: str | None, name: str | None, *,
                 calls: Mapping[str, Callable[..., Any]] | None = None) -> None:
        """``calls`` replaces the list/watch function of a kind ("rollout", "replicasets",
        "pods", "analysis_runs"): unit tests pass a stand-in for the API server there."""
        from kubernetes import client

        custom, apps, core = client.CustomObjectsApi(api), client.AppsV1Api(api), client.CoreV1Api(api)
        managed = {"label_selector": LABEL_POD_TEMPLATE_HASH}
        self._name = name
        if namespace is None:  # every namespace: list rollouts -A --watch (no name)
            rollouts = _Kind(custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL_ROLLOUTS), {})
            replicasets = _Kind(apps.list_replica_set_for_all_namespaces, (), dict(managed))
        else:
            one = {} if name is None else {"field_selector": f"metadata.name={name}"}
            rollouts = _Kind(custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, PLURAL_ROLLOUTS), one)
            replicasets = _Kind(apps.list_namespaced_replica_set, (namespace,), dict(managed))
        self._kinds = {"rollout": rollouts, "replicasets": replicasets}
        if name is not None and namespace is not None:  # one rollout's tree also shows pods and runs
            self._kinds["pods"] = _Kind(core.list_namespaced_pod, (namespace,), dict(managed))
            self._kinds["analysis_runs"] = _Kind(custom.list_namespaced_custom_object,
                                                 (GROUP, VERSION, namespace, PLURAL_RUNS), {})
        for label, call in (calls or {}).items():
            self._kinds[label].list_call = call
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._seen = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: set[Any] = set()

    def _list(self, kind: _Kind) -> str:
        response = kind.list_call(*kind.args, **kind.kwargs, _request_timeout=REQUEST_TIMEOUT,
                                  _preload_content=False)
        body = _body(response)
        with self._changed:
            kind.objects = {_key(item): item for item in body.get("items") or ()}
            self._version += 1
            self._changed.notify_all()
        kind.listed_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        return kind.listed_version

    def load(self) -> None:
        """List every kind once (what a single ``get`` needs)."""
        for kind in self._kinds.values():
            self._list(kind)

    def _watch_forever(self, kind: _Kind) -> None:
        from kubernetes.client.exceptions import ApiException

        version = kind.listed_version  # start() listed every kind already
        while not self._stopping.is_set():
            try:
                if not version:
                    version = self._list(kind)
                version = self._watch_once(kind, version)
            except ApiException as error:
                if error.status != HTTP_GONE:
                    self._stopping.wait(RETRY_DELAY)
                version = ""
            except Exception:  # a dropped connection or a malformed event: list again
                self._stopping.wait(RETRY_DELAY)
                version = ""

    def _watch_once(self, kind: _Kind, version: str) -> str:
        """One watch from ``version`` until the server ends it; returns the last version seen.

        The response is read here rather than through kubernetes.watch so that stop() can
        shut its socket down: a thread blocked in a read would otherwise outlive the command.
        """
        response = kind.list_call(
            *kind.args, **kind.kwargs, watch=True, resource_version=version, allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS, _request_timeout=(REQUEST_TIMEOUT[0], WATCH_READ_TIMEOUT),
            _preload_content=False,
        )
        with self._lock:
            self._responses.add(response)
        try:
            buffer = b""
            for chunk in response.stream(WATCH_CHUNK_BYTES):
                if self._stopping.is_set():
                    break
                buffer += chunk
                if len(buffer) > MAX_EVENT_BYTES:
                    raise ValueError(MSG_TOO_LARGE.format(limit=MAX_EVENT_BYTES))
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        version = self._apply(kind, json.loads(line)) or version
            return version
        finally:
            with self._lock:
                self._responses.discard(response)
            response.release_conn()

    def _apply(self, kind: _Kind, event: Mapping[str, Any]) -> str:
        raw = event.get("object") or {}
        kind_of_event = event.get("type")
        if kind_of_event == "ERROR":
            from kubernetes.client.exceptions import ApiException

            raise ApiException(status=int(raw.get("code") or 0), reason=str(raw.get("message") or ""))
        meta = raw.get("metadata") or {}
        if kind_of_event == "BOOKMARK":
            return str(meta.get("resourceVersion") or "")
        key = _key(raw)
        with self._changed:
            if kind_of_event == "DELETED":
                kind.objects.pop(key, None)
            elif kind_of_event in ("ADDED", "MODIFIED"):
                kind.objects[key] = raw
            self._version += 1
            self._changed.notify_all()
        return str(meta.get("resourceVersion") or "")

    def start(self) -> None:
        self.load()
        for label, kind in self._kinds.items():
            thread = threading.Thread(target=self._watch_forever, args=(kind,), name=f"watch-{label}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _objects(self, label: str) -> list[Mapping[str, Any]]:
        kind = self._kinds.get(label)
        return [] if kind is None else list(kind.objects.values())

    def snapshot(self) -> Snapshot:
        with self._lock:
            self._seen = self._version
            rollout = next((r for r in self._kinds["rollout"].objects.values()
                            if (r.get("metadata") or {}).get("name") == self._name), None)
            return Snapshot(
                rollout=rollout,
                replicasets=self._objects("replicasets"),
                pods=self._objects("pods"),
                analysis_runs=self._objects("analysis_runs"),
            )

    def listing(self) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        with self._lock:
            self._seen = self._version
            return self._objects("rollout"), self._objects("replicasets")

    def wait(self, timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._version != self._seen, timeout=timeout)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            responses = list(self._responses)
        for response in responses:
            response.shutdown()  # wakes a thread blocked in a read of this watch
        for thread in self._threads:
            thread.join(timeout=STOP_JOIN_SECONDS)


def view_of(snapshot: Snapshot, *, now: datetime) -> rv.RolloutView | None:
    if snapshot.rollout is None:
        return None
    return rv.build(snapshot.rollout, replicasets=snapshot.replicasets, pods=snapshot.pods,
                    analysis_runs=snapshot.analysis_runs, now=now)


# --- drawing --------------------------------------------------------------------------------


def make_console(*, file: IO[str] | None = None, terminal: bool | None = None, width: int | None = None) -> Console:
    """A Console with colours and icons only when writing to a terminal (``terminal`` overrides)."""
    out = file or sys.stdout
    is_tty = out.isatty() if terminal is None else terminal
    if is_tty:
        return Console(file=out, force_terminal=True, width=width, highlight=False)
    return Console(file=out, force_terminal=False, no_color=True, color_system=None, highlight=False,
                   width=width or TERMINAL_WIDTH_FALLBACK, emoji=False)


def _status_text(word: str, fancy: bool, icons: Mapping[str, tuple[str, str]] | None = None) -> Text:
    if not fancy:
        return Text(word)
    icon, style = (icons or {}).get(word) or STATUS_ICONS.get(word, DEFAULT_ICON)
    return Text(f"{icon} {word}", style=style)


def age(since: datetime | None, now: datetime) -> str:
    """kubectl's short age: 45s, 3m10s, 2h5m, 4d."""
    if since is None:
        return "-"
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m{seconds % 60}s" if minutes < 10 else f"{minutes}m"
    hours = minutes // 60
    if hours < 24:
        return f"{hours}h{minutes % 60}m" if hours < 10 else f"{hours}h"
    return f"{hours // 24}d"


def _weight(value: int | None) -> str:
    return "-" if value is None else str(value)


def header(view: rv.RolloutView, *, fancy: bool, step_list: Sequence[rv.StepView] = ()) -> RenderableType:
    """Name, status, strategy, step, weights, images and replica counts, as Argo's plugin lays them out."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(min_width=15)
    grid.add_column()

    def row(label: str, value: str | Text) -> None:
        grid.add_row(label, value)

    row("Name:", view.name)
    row("Namespace:", view.namespace)
    row("Status:", _status_text(view.status, fancy))
    if view.message:
        row("Message:", view.message)
    row("Strategy:", view.strategy)
    if view.strategy == rv.STRATEGY_CANARY:
        if view.step is not None:
            row("  Step:", f"{view.step}/{view.steps}")
        row("  SetWeight:", _weight(view.set_weight))
        row("  ActualWeight:", _weight(view.actual_weight))
    for position, image in enumerate(view.images):
        tags = f" ({', '.join(image.tags)})" if image.tags else ""
        row("Images:" if position == 0 else "", f"{image.image}{tags}")
    row("Replicas:", "")
    counts = view.replicas
    for label, value in (("Desired", counts.desired), ("Current", counts.current), ("Updated", counts.updated),
                         ("Ready", counts.ready), ("Available", counts.available)):
        row(f"  {label}:", str(value))
    for step in step_list:
        marker = (STEP_MARKERS if fancy else STEP_WORDS)[step.state]
        row("Steps:" if step.index == 0 else "", f"{marker} {step.index}: {step.text}")
    return grid


def _rs_info(rs: rv.ReplicaSetView, now: datetime) -> str:
    parts = list(rs.tags)
    if rs.scale_down_at is not None:
        parts.append(f"delay:{age(now, rs.scale_down_at)}")
    return ",".join(parts)


def tree(view: rv.RolloutView, *, fancy: bool, now: datetime) -> Tree:
    """Rollout → revisions → ReplicaSets → pods, and each revision's AnalysisRuns."""

    def icon(symbol: str) -> str:
        return f"{symbol} " if fancy else ""

    root_label = Text(f"{icon(ICON_ROLLOUT)}{view.name}  Rollout  ")
    root_label.append_text(_status_text(view.status, fancy))
    root = Tree(root_label, guide_style="bright_black" if fancy else "")
    for revision in view.revisions:
        branch = root.add(f"{icon(ICON_REVISION)}revision:{revision.revision}")
        for rs in revision.replica_sets:
            label = Text(f"{icon(ICON_RS)}{rs.name}  ReplicaSet  ready:{rs.ready}/{rs.desired}")
            info = _rs_info(rs, now)
            if info:
                label.append(f"  {info}", style="cyan" if fancy else "")
            rs_branch = branch.add(label)
            for pod in rs.pods:
                pod_label = Text(f"{icon(ICON_POD)}{pod.name}  Pod  ")
                pod_label.append_text(_status_text(pod.status, fancy))
                pod_label.append(f"  {age(pod.created_at, now)}  ready:{pod.ready_containers}/{pod.containers}")
                rs_branch.add(pod_label)
        for run in revision.analysis_runs:
            run_label = Text(f"{icon(ICON_RUN)}{run.name}  AnalysisRun  ")
            run_label.append_text(_status_text(run.phase, fancy, RUN_ICONS))
            counts = [(run.successful, "✔", "successful"), (run.failed, "✖", "failed"),
                      (run.inconclusive, "?", "inconclusive"), (run.error, "⚠", "error")]
            shown = [f"{symbol} {n}" if fancy else f"{word}:{n}" for n, symbol, word in counts if n]
            if shown:
                run_label.append("  " + ",".join(shown))
            branch.add(run_label)
    return root


def rollout_screen(view: rv.RolloutView | None, *, fancy: bool, now: datetime, wide: bool = False,
                   raw: Mapping[str, Any] | None = None, missing: str = "") -> RenderableType:
    """The whole of ``get rollout``: header, a blank line, the tree (or why there is nothing)."""
    if view is None:
        return Text(missing)
    step_list = rv.steps(raw) if wide and raw is not None else ()
    return Group(header(view, fancy=fancy, step_list=step_list), Text(""), tree(view, fancy=fancy, now=now))


def list_columns(*, namespaces: bool, wide: bool) -> list[str]:
    columns = (["NAMESPACE"] if namespaces else []) + [
        "NAME", "STRATEGY", "STATUS", "STEP", "SET-WEIGHT", "READY", "DESIRED", "UP-TO-DATE", "AVAILABLE"]
    return columns + (["ACTUAL-WEIGHT", "IMAGES"] if wide else [])


def list_cells(view: rv.RolloutView, *, fancy: bool, namespaces: bool, wide: bool) -> list[str | Text]:
    """One rollout's row of ``list rollouts``."""
    step = "-" if view.step is None else f"{view.step}/{view.steps}"
    counts = view.replicas
    cells: list[str | Text] = [view.namespace] if namespaces else []
    cells += [
        view.name, view.strategy, _status_text(view.status, fancy), step, _weight(view.set_weight),
        f"{counts.ready}/{counts.desired}", str(counts.desired), str(counts.updated), str(counts.available)]
    if wide:
        cells += [_weight(view.actual_weight), ",".join(i.image for i in view.images)]
    return cells


def rollouts_table(views: Sequence[rv.RolloutView], *, fancy: bool, namespaces: bool, wide: bool,
                   header: bool = True, min_widths: Sequence[int] = ()) -> Table:
    """``list rollouts``: NAME STRATEGY STATUS STEP SET-WEIGHT READY DESIRED UP-TO-DATE AVAILABLE.

    ``list rollouts --watch`` prints later rows without the header, each column at least
    ``min_widths`` wide, so they line up under the first table."""
    table = Table(box=None, pad_edge=False, show_edge=False, show_header=header,
                  header_style="bold" if fancy else "")
    for index, column in enumerate(list_columns(namespaces=namespaces, wide=wide)):
        table.add_column(column, no_wrap=True, min_width=min_widths[index] if index < len(min_widths) else None)
    for view in views:
        table.add_row(*list_cells(view, fancy=fancy, namespaces=namespaces, wide=wide))
    return table


def emit(console: Console, renderable: RenderableType) -> None:
    """Print ``renderable``; piped output loses the padding Rich leaves at line ends (for scripts)."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` at its natural width (as kubectl does) rather than squeezing its columns."""
    natural = Measurement.get(console, console.options.update_width(MAX_TABLE_WIDTH), table).maximum
    # Console.print caps a width at the console's own: widen the console for this one print.
    width = console.width
    console.width = max(width, natural)
    try:
        emit(console, table)
    finally:
        console.width = width


def _dump(data: Any, output: str) -> str:
    if output == OUTPUT_YAML:
        return yaml.safe_dump(data, sort_keys=False)
    return json.dumps(data, indent=2) + "\n"


# --- commands -------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(tz=UTC)


def watch_screen(feed: Feed, console: Console, render: Callable[[Snapshot], RenderableType], *,
                 clock: Callable[[], float] = time.monotonic) -> int:
    """Redraw on every change the feed reports, at most every REDRAW_INTERVAL; Ctrl-C ends it (exit 0)."""
    try:
        feed.start()
        if console.is_terminal:
            with Live(render(feed.snapshot()), console=console, auto_refresh=False,
                      redirect_stdout=False, redirect_stderr=False) as live:
                _redraw_loop(feed, lambda: live.update(render(feed.snapshot()), refresh=True), clock=clock)
        else:
            emit(console, render(feed.snapshot()))
            _redraw_loop(feed, lambda: emit(console, Group(Text(""), render(feed.snapshot()))), clock=clock)
    except KeyboardInterrupt:
        pass
    finally:
        feed.stop()
    return EXIT_OK


class _Changes(Protocol):
    def wait(self, timeout: float | None) -> bool: ...


def _redraw_loop(feed: _Changes, redraw: Callable[[], None], *, clock: Callable[[], float]) -> None:
    last = clock()
    while True:
        feed.wait(None)
        # Coalesce a burst of events into one redraw: wait out the rest of the interval first.
        pause = REDRAW_INTERVAL - (clock() - last)
        if pause > 0:
            time.sleep(pause)
        redraw()
        last = clock()


def run_get(args: argparse.Namespace, *, feed: Feed | None = None, console: Console | None = None) -> int:
    namespace = context_namespace(args)
    feed = feed or KubeFeed(api_client(args), namespace, args.name)
    console = console or make_console()
    fancy = console.is_terminal
    missing = MSG_NOT_FOUND.format(name=args.name, namespace=namespace)

    def render(snapshot: Snapshot) -> RenderableType:
        now = _now()
        return rollout_screen(view_of(snapshot, now=now), fancy=fancy, now=now, wide=args.output == OUTPUT_WIDE,
                              raw=snapshot.rollout, missing=MSG_WAITING_FOR.format(name=args.name,
                                                                                   namespace=namespace))

    if args.watch:
        return watch_screen(feed, console, render)
    if isinstance(feed, KubeFeed):
        feed.load()
    snapshot = feed.snapshot()
    view = view_of(snapshot, now=_now())
    if view is None:
        print(missing, file=sys.stderr)
        return EXIT_DEGRADED
    if args.output in (OUTPUT_JSON, OUTPUT_YAML):
        console.file.write(_dump(rv.to_dict(view), args.output))
        return EXIT_OK
    emit(console, render(snapshot))
    return EXIT_OK


def _list_all(api: Any, namespace: str | None) -> list[rv.RolloutView]:
    from kubernetes import client

    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    selector = {"label_selector": LABEL_POD_TEMPLATE_HASH}
    if namespace is None:
        rollouts = _body(custom.list_cluster_custom_object(GROUP, VERSION, PLURAL_ROLLOUTS,
                                                           _request_timeout=REQUEST_TIMEOUT, _preload_content=False))
        sets = _body(apps.list_replica_set_for_all_namespaces(**selector, _request_timeout=REQUEST_TIMEOUT,
                                                              _preload_content=False))
    else:
        rollouts = _body(custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL_ROLLOUTS,
                                                              _request_timeout=REQUEST_TIMEOUT,
                                                              _preload_content=False))
        sets = _body(apps.list_namespaced_replica_set(namespace, **selector, _request_timeout=REQUEST_TIMEOUT,
                                                      _preload_content=False))
    return list_views(rollouts.get("items") or [], sets.get("items") or [], now=_now())


def list_views(rollouts: Sequence[Mapping[str, Any]], replicasets: Sequence[Mapping[str, Any]], *,
               now: datetime) -> list[rv.RolloutView]:
    """One summary view per rollout, sorted by namespace and name (pods and runs are not needed)."""
    by_namespace: dict[str, list[Mapping[str, Any]]] = {}
    for rs in replicasets:
        by_namespace.setdefault(str((rs.get("metadata") or {}).get("namespace")), []).append(rs)
    views = [rv.build(r, replicasets=by_namespace.get(str((r.get("metadata") or {}).get("namespace")), []),
                      pods=(), analysis_runs=(), now=now) for r in rollouts]
    return sorted(views, key=lambda v: (v.namespace, v.name))


def watch_list(feed: ListFeed, console: Console, *, namespaces: bool, wide: bool, output: str | None,
               where: str, clock: Callable[[], float] = time.monotonic) -> int:
    """``list rollouts --watch``, as ``kubectl get -w``: the table once, then a row each time a
    rollout's row changes (at most every REDRAW_INTERVAL); Ctrl-C ends it (exit 0). With
    ``-o json|yaml``, each changed rollout's summary as one JSON line or one YAML document."""
    fancy = console.is_terminal
    shown: dict[tuple[str, str], list[str]] = {}
    columns = list_columns(namespaces=namespaces, wide=wide)
    widths = [len(column) for column in columns]
    # the widest phase from the start, so a rollout turning Progressing keeps its row in line
    widths[columns.index("STATUS")] = max(map(len, ROLLOUT_PHASES)) + (2 if fancy else 0)

    def print_changes(first: bool) -> None:
        rollouts, replicasets = feed.listing()
        changed = []
        for view in list_views(rollouts, replicasets, now=_now()):
            plain = [cell.plain if isinstance(cell, Text) else cell
                     for cell in list_cells(view, fancy=fancy, namespaces=namespaces, wide=wide)]
            if shown.get((view.namespace, view.name)) != plain:
                shown[(view.namespace, view.name)] = plain
                changed.append(view)
                widths[:] = [max(width, len(cell)) for width, cell in zip(widths, plain, strict=True)]
        if output == OUTPUT_JSON:
            console.file.write("".join(json.dumps(rv.summary_dict(v)) + "\n" for v in changed))
        elif output == OUTPUT_YAML:
            console.file.write("".join("---\n" + yaml.safe_dump(rv.summary_dict(v), sort_keys=False)
                                       for v in changed))
        elif changed:
            print_table(console, rollouts_table(changed, fancy=fancy, namespaces=namespaces, wide=wide,
                                                header=first, min_widths=widths))
        elif first:
            print(MSG_NO_ROLLOUTS.format(where=where), file=sys.stderr)
        console.file.flush()

    try:
        feed.start()
        print_changes(first=True)
        _redraw_loop(feed, lambda: print_changes(first=False), clock=clock)
    except KeyboardInterrupt:
        pass
    finally:
        feed.stop()
    return EXIT_OK


def run_list(args: argparse.Namespace, *, views: Sequence[rv.RolloutView] | None = None,
             console: Console | None = None, feed: ListFeed | None = None) -> int:
    namespace = None if args.all_namespaces else context_namespace(args)
    where = "any namespace" if namespace is None else f"{namespace} namespace"
    if args.watch:
        return watch_list(feed or KubeFeed(api_client(args), namespace, None), console or make_console(),
                          namespaces=namespace is None, wide=args.output == OUTPUT_WIDE, output=args.output,
                          where=where)
    if views is None:
        views = _list_all(api_client(args), namespace)
    console = console or make_console()
    if args.output in (OUTPUT_JSON, OUTPUT_YAML):
        console.file.write(_dump({"items": [rv.summary_dict(v) for v in views]}, args.output))
        return EXIT_OK
    if not views:
        print(MSG_NO_ROLLOUTS.format(where=where), file=sys.stderr)
        return EXIT_OK
    print_table(console, rollouts_table(views, fancy=console.is_terminal, namespaces=namespace is None,
                                        wide=args.output == OUTPUT_WIDE))
    return EXIT_OK


def follow_status(feed: Feed, out: IO[str], *, watch: bool, timeout: float,
                  clock: Callable[[], float] = time.monotonic) -> int:
    """Print each new ``phase - message``; 0 on Healthy, 1 on Degraded, 2 when ``timeout`` runs out."""
    deadline = clock() + timeout if timeout > 0 else None
    previous: tuple[str, str] | None = None
    feed.start()
    try:
        while True:
            view = view_of(feed.snapshot(), now=_now())
            if view is not None and (view.status, view.message) != previous:
                previous = (view.status, view.message)
                out.write(f"{view.status} - {view.message}\n" if view.message else f"{view.status}\n")
                out.flush()
            if view is not None and view.status == HEALTHY:
                return EXIT_OK
            if view is not None and view.status == DEGRADED:
                out.write(MSG_DEGRADED.format(message=view.message) + "\n")
                return EXIT_DEGRADED
            remaining = None if deadline is None else deadline - clock()
            if not watch or (remaining is not None and remaining <= 0):
                out.write(MSG_TIMEOUT.format(seconds=timeout, status=view.status if view else "absent") + "\n")
                return EXIT_TIMEOUT
            feed.wait(remaining)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        feed.stop()


def run_status(args: argparse.Namespace, *, feed: Feed | None = None) -> int:
    namespace = context_namespace(args)
    feed = feed or KubeFeed(api_client(args), namespace, args.name)
    return follow_status(feed, sys.stdout, watch=args.watch, timeout=args.timeout)


def run_completion(args: argparse.Namespace) -> int:
    import shtab

    from cli.main import build_parser

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return EXIT_OK


def _seconds(text: str) -> float:
    """``30``, ``30s``, ``5m``, ``1h`` as seconds (the spelling Argo's --timeout takes)."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}") from error


def add_subcommands(sub: Any) -> None:
    """Register ``get``, ``list``, ``status`` and ``completion`` on the top-level subparsers ``sub``."""
    get = sub.add_parser("get", help="show a rollout: header and tree of revisions, ReplicaSets, pods, runs")
    get_kinds = get.add_subparsers(dest="kind", required=True)
    ro = get_kinds.add_parser("rollout", aliases=["ro", "rollouts"], help="show one rollout")
    ro.add_argument("name")
    ro.add_argument("--watch", "-w", action="store_true", help="redraw in place on every change (Ctrl-C ends)")
    ro.add_argument("--output", "-o", choices=OUTPUTS, default=None,
                    help="json or yaml (views.rollout.to_dict), or wide (adds the step list)")
    add_kube_flags(ro)
    ro.set_defaults(func=run_get)

    lst = sub.add_parser("list", help="list rollouts")
    lst_kinds = lst.add_subparsers(dest="kind", required=True)
    ros = lst_kinds.add_parser("rollouts", aliases=["ro", "rollout"], help="list rollouts as a table")
    ros.add_argument("--all-namespaces", "-A", action="store_true", help="list rollouts in every namespace")
    ros.add_argument("--watch", "-w", action="store_true",
                     help="then print a rollout's row again each time it changes (Ctrl-C ends)")
    ros.add_argument("--output", "-o", choices=OUTPUTS, default=None,
                     help="json or yaml ({items: [summary]}), or wide (adds ACTUAL-WEIGHT and IMAGES)")
    add_kube_flags(ros)
    ros.set_defaults(func=run_list)

    status = sub.add_parser("status", help="wait for a rollout to be Healthy or Degraded (for CI)",
                            description=STATUS_HELP)
    status.add_argument("name")
    status.add_argument("--watch", "-w", action=argparse.BooleanOptionalAction, default=True,
                        help="keep watching until Healthy or Degraded (default: on)")
    status.add_argument("--timeout", "-t", type=_seconds, default=0.0,
                        help="give up after this long, exit 2 (seconds, or 30s/5m/1h; 0: wait forever)")
    add_kube_flags(status)
    status.set_defaults(func=run_status)

    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(func=run_completion)

