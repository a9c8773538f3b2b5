"""The reconcile of one Application: Git -> rendered manifests -> diff -> sync -> status.

Called by gitops/handlers.py from a worker thread, once per key taken from the
work queue; returns the seconds until the key should be looked at again. The
sync is re-entrant as in Argo CD: each reconcile moves the operation forward by
at most one (phase, wave) step, and the next step starts only once the previous
one is healthy, so a reconcile never blocks waiting; it asks to be requeued.

One reconcile:

0. resolve the destination to a cluster (gitops/clusters.py: the controller's own, or one
   of Argo CD's cluster Secrets; an unknown one is an ``InvalidSpecError`` with Argo CD's
   message); every read and write of managed objects in this reconcile goes to that
   cluster's port, the Application's own status to the controller's cluster;
1. resolve ``targetRevision`` (or keep the revision of the running operation),
   check it out, render it (a source or render error is a ``ComparisonError``
   condition, and the last known resources are left alone);
2. read the live objects (targets, and those the last status listed, the prune
   candidates), and compare each target through a server-side apply dry run;
3. start an operation when ``operation.sync`` is set, or when
   ``syncPolicy.automated`` is on and the app is OutOfSync at a revision not
   already attempted (Argo CD's loop protection); continue a running one;
4. write the status Argo CD's names (``sync``, ``health``, ``resources``,
   ``operationState``, ``conditions``, ``reconciledAt``) in one merge patch,
   skipped when nothing changed but ``reconciledAt`` and that is younger than
   the reconciliation timeout (re-stamping it each time would make our own
   write's watch event a hot loop).

A successful sync (not a selective one, as Argo CD) appends to ``status.history``
(kept to ``spec.revisionHistoryLimit``, 10 by default); a rollback is a manual sync
whose ``operation.sync`` names the revision and source of a history entry.

An Application being deleted (``deletionTimestamp``) with Argo CD's resources
finalizer has its managed resources deleted, highest wave first, each wave gone
before the next (foreground propagation, or background with the ``/background``
finalizer); the finalizer is removed once none is left. Without it, deleting the
Application leaves its resources (Argo CD's non-cascade delete).
"""

from __future__ import annotations

import contextvars
import pickle  # noqa: S403 - only our own rendered manifests, pickled by this process
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from common.api import SpecError, parse
from common.kubewrite import merge_patch
from common.logging import get_logger
from gitops.api import Application, ApplicationDestination, ApplicationSource, parse_application
from gitops.cache import LRU, RENDER_ENTRIES, VERDICT_ENTRIES, digest
from gitops.clusters import ClusterTarget, DestinationError, home_only
from gitops.diff import (
    RESPECT_IGNORE_DIFFERENCES,
    DiffConfigError,
    IgnoreRule,
    RolloutFields,
    carry_ignored,
    carry_rollout_fields,
    compare,
    ignore_extraneous,
    rollout_fields,
    rules_from_app,
    rules_from_settings,
)
from gitops.health import HealthStatus, health, worst
from gitops.kube import GitopsPort, KubeError
from gitops.plan import (
    ResourceKey,
    SyncPlan,
    Task,
    TaskAction,
    annotations_of,
    build_plan,
    hook_phases,
    instance_name,
    is_tracked_by,
    key_of,
    options_from,
    split_api_version,
    sync_options,
    target_objects,
    wave_of,
)
from gitops.project import (
    MSG_MISSING,
    MSG_TASKS_INVALID,
    Destination,
    Project,
    project_from,
    resource_violation,
    spec_violations,
)
from gitops.watch import CachedPort

REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
IN_CLUSTER_NAME = "in-cluster"

SYNCED, OUT_OF_SYNC, UNKNOWN = "Synced", "OutOfSync", "Unknown"
RUNNING, SUCCEEDED, FAILED, ERROR = "Running", "Succeeded", "Failed", "Error"
RESULT_SYNCED, RESULT_FAILED, RESULT_PRUNED, RESULT_PRUNE_SKIPPED = (
    "Synced", "SyncFailed", "Pruned", "PruneSkipped")
COMPARISON_ERROR = "ComparisonError"
APPLICATION_API_VERSION = "argoproj.io/v1alpha1"
NORMAL, WARNING = "Normal", "Warning"
OPERATION_STARTED, OPERATION_COMPLETED = "OperationStarted", "OperationCompleted"  # Argo CD's reasons
MSG_OPERATION_STARTED = "Initiated sync to {revision}"
LOG = get_logger("tidegate.gitops")
# a dry run that saw a newer object than the watch's copy: read it again, at most this often
STALE_LIVE_RETRIES = 2
MSG_SELF_HEAL = "self-heal: live state differs from Git; syncing the resources that differ"
MSG_OPERATION_COMPLETED = "Sync operation {phase}: {message}"
INVALID_SPEC_ERROR = "InvalidSpecError"

MSG_SYNCED_ALL = "successfully synced (all tasks run)"
MSG_SYNCED_NONE = "successfully synced (no more tasks)"
MSG_TASKS_FAILED = "one or more synchronization tasks completed unsuccessfully"
MSG_APPLY_FAILED = "one or more objects failed to apply, reason: {reason}"
MSG_WAITING = "waiting for healthy state of {first}{more}"
MSG_DEADLINE = "sync deadline of {seconds:g}s exceeded while {waiting}"
MSG_RETRYING = "{message}. Retrying attempt #{count} at {at}."
MSG_RETRY_STARTED = "Retrying operation. Attempt #{count}"
MSG_RETRIED = "{message} (retried {count} times)."
MSG_SUPERSEDED = "{message}; superseded by revision {revision} (a new commit pre-empts the retries)"
DEFAULT_AUTOMATED_RETRY = {"limit": 5}  # what Argo CD's autoSync puts in an operation without retry
DEFAULT_BACKOFF = (5.0, 2.0, 180.0)  # Argo CD's retry.backoff defaults: 5s, factor 2, 3m

FINALIZER_FOREGROUND = "resources-finalizer.argocd.argoproj.io"
FINALIZER_BACKGROUND = "resources-finalizer.argocd.argoproj.io/background"
CASCADE_FINALIZERS = (FINALIZER_FOREGROUND, FINALIZER_BACKGROUND)
DELETION_ERROR = "DeletionError"  # Argo CD's condition when deleting the resources fails
# Not an Argo CD condition type: Argo CD only logs what a cascade delete waits for; we say it in status.
DELETION_WAITING = "DeletionInProgress"
MSG_DELETION_WAITING = "waiting for deletion of {first}{more} ({propagation} propagation)"
MSG_DELETION_DESTINATION = ("cannot delete the resources of destination {server!r}: {reason}; the "
                            "finalizer stays (remove it by hand to leave the resources)")
DELETION_RETRY_SECONDS = 10.0  # after a refused delete (RBAC, webhook): not a hot loop
KEEP_POLICY = ("helm.sh/resource-policy", "keep")  # Helm's keep: never deleted by a cascade
DEFAULT_HISTORY_LIMIT = 10  # Argo CD's revisionHistoryLimit default
POD_SPEC_PATHS = (("spec",), ("spec", "template", "spec"),
                  ("spec", "jobTemplate", "spec", "template", "spec"))  # where images live

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
CM_TTL_SECONDS = 10.0
SOURCE_TYPES = {"helm": "Helm", "kustomize": "Kustomize", "directory": "Directory"}  # status.sourceType
HARD_REFRESH = "hard"
# The dry runs of one comparison and the applies of one wave run this many at once (shared by
# every worker): the API server answers them in parallel; serial, a 500-object app took ~1,000
# round trips per reconcile. Namespaces and CRDs of a wave are applied first, one by one.
CALL_CONCURRENCY = 12
APPLY_FIRST_KINDS = frozenset({"Namespace", "CustomResourceDefinition"})


class Sources(Protocol):
    """gitops.source.RepoCache, as far as the reconcile uses it."""

    def resolve(self, url: str, revision: str) -> str: ...

    def checkout(self, url: str, revision: str) -> Any: ...  # .path, .commit


class Render(Protocol):
    """gitops.render.render_source."""

    def __call__(self, source: ApplicationSource, root: Path, *, app_name: str,
                 namespace: str, value_roots: Mapping[str, Path] = ...) -> list[dict[str, Any]]: ...


class EventSink(Protocol):
    """Posts one Kubernetes Event about an Application (handlers: common.events.post_event)."""

    def __call__(self, involved: Mapping[str, Any], event_type: str, reason: str, message: str) -> None: ...


class Recorder(Protocol):
    def record(self, key: tuple[str, str], body: Mapping[str, Any]) -> None: ...


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime(TIME_FORMAT)


def _parse_stamp(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(str(text), TIME_FORMAT).replace(tzinfo=UTC) if text else None
    except ValueError:
        return None


@dataclass
class Observed:
    """What one reconcile read and compared."""

    revision: str
    targets: list[dict[str, Any]]
    live: dict[ResourceKey, dict[str, Any]]
    versions: dict[ResourceKey, str]
    sync: dict[ResourceKey, str]
    prune: list[ResourceKey]
    source_type: str = "Directory"
    owned: RolloutFields = RolloutFields()  # what Rollouts write: never drift (frozen, shared default)
    quiet: frozenset[ResourceKey] = frozenset()  # IgnoreExtraneous: not the app's OutOfSync
    respected: tuple[IgnoreRule, ...] = ()  # RespectIgnoreDifferences: the sync keeps these fields
    # Multi-source apps only (None otherwise): each source's revision and type, in order.
    revisions: list[str] | None = None
    source_types: list[str] | None = None

    def revisions_field(self) -> dict[str, Any]:
        """``{"revisions": [...]}`` for a multi-source app (operation, syncResult, sync status)."""
        return {"revisions": self.revisions} if self.revisions is not None else {}


@dataclass
class Settings:
    reconcile_seconds: float = 120.0
    wave_delay_seconds: float = 2.0
    # A finite default deadline for an operation that waits (Argo CD has none by default,
    # argo-cd #17314); the failure names what it waited for. 0: no deadline.
    sync_timeout_seconds: float = 600.0
    # Argo CD's self-heal backoff (--self-heal-backoff-timeout-seconds 2, factor 3, cap 300 s,
    # cool-down 330 s): the first correction is immediate, repeated ones back off.
    self_heal_backoff_seconds: float = 2.0
    self_heal_backoff_max_seconds: float = 300.0
    self_heal_cooldown_seconds: float = 330.0
    # Argo CD's namespace: its Applications' tracking ids carry the bare name, others <ns>_<name>.
    control_namespace: str = "argocd"


class AppController:
    """Reconciles Applications through a ``GitopsPort``, a repo cache and a renderer."""

    def __init__(self, *, kube: GitopsPort, repos: Sources, render: Render,
                 source_errors: tuple[type[BaseException], ...] = (),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 settings: Settings | None = None, written: Recorder | None = None,
                 events: EventSink | None = None,
                 detect: Callable[[ApplicationSource, Path], str] = lambda source, path: "directory",
                 projects: Callable[[str, str], Mapping[str, Any] | None] = lambda namespace, name: None,
                 watch: Callable[[str, str], None] = lambda api_version, kind: None,
                 argocd_cm: Callable[[], Mapping[str, Any] | None] = lambda: None,
                 kube_for: Callable[[ApplicationDestination], ClusterTarget] | None = None,
                 ) -> None:
        self.home = kube  # the controller's own cluster: Applications are read and written there
        self.repos = repos
        self.render = render
        self.source_errors = source_errors
        self.clock = clock
        self.settings = settings or Settings()
        self.written = written
        self.events = events
        self.detect = detect
        self.projects = projects  # (namespace, name) -> the AppProject document, None if absent
        self.argocd_cm = argocd_cm  # resource.customizations.ignoreDifferences.* (read at most every 10 s)
        self._cm_rules: tuple[datetime, list[IgnoreRule]] | None = None
        # The destination's cluster, resolved once per reconcile (gitops/clusters.py); the default
        # knows only the controller's own cluster. ``watch``: (apiVersion, kind) of a managed kind
        # on it, watched so drift is seen at once.
        self.kube_for = kube_for or home_only(kube, watch)
        self._local = threading.local()  # the reconcile running in this worker thread: its target
        self._rendered: LRU[tuple[bytes, list[str]]] = LRU(RENDER_ENTRIES)  # pickled: a fast copy
        self._verdicts: LRU[str] = LRU(VERDICT_ENTRIES)
        self._calls: ThreadPoolExecutor | None = None
        self._calls_lock = threading.Lock()

    def _parallel(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """``fn`` over ``items`` on the shared call pool, results in the items' order; each call
        sees this reconcile's target (thread-local) and hard-refresh flag."""
        work = list(items)
        if len(work) <= 1:
            return [fn(item) for item in work]
        target, hard = self.target, self._hard

        def call(item: Any) -> Any:
            self._local.target, self._local.hard = target, hard
            return fn(item)

        with self._calls_lock:
            if self._calls is None:
                self._calls = ThreadPoolExecutor(CALL_CONCURRENCY, thread_name_prefix="gitops-call")
            pool = self._calls
        # each call logs with the reconcile's object fields (one context copy per call: a
        # context cannot be entered by two threads at once)
        contexts = [contextvars.copy_context() for _ in work]
        return list(pool.map(lambda ctx, item: ctx.run(call, item), contexts, work))

    @property
    def _hard(self) -> bool:
        """This reconcile is a hard refresh: no cached render or verdict is used."""
        return bool(getattr(self._local, "hard", False))

    @property
    def target(self) -> ClusterTarget | None:
        return getattr(self._local, "target", None)

    @property
    def kube(self) -> GitopsPort:
        """The port of this reconcile's destination cluster (the own cluster before it is resolved)."""
        target = self.target
        return target.kube if target is not None else self.home

    def watch(self, api_version: str, kind: str) -> None:
        target = self.target
        if target is not None:
            target.watch(api_version, kind)

    # --- the reconcile ---------------------------------------------------------------------

    def reconcile(self, key: tuple[str, str], body: Mapping[str, Any] | None) -> float | None:
        self._local.target = None
        notes = ((body or {}).get("metadata") or {}).get("annotations") or {}
        self._local.hard = notes.get(REFRESH_ANNOTATION) == HARD_REFRESH
        if body is None:
            return None  # gone: a finalizer-less Application leaves its resources (non-cascade)
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            return self._finalize(key, body)
        now = self.clock()
        old_status: dict[str, Any] = dict(body.get("status") or {})
        extra: dict[str, Any] = {}
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        if REFRESH_ANNOTATION in annotations:
            extra["metadata"] = {"annotations": {REFRESH_ANNOTATION: None}}
        try:
            app = parse_application(body)
        except SpecError as exc:
            status = self._with_condition(old_status, INVALID_SPEC_ERROR, str(exc), now)
            self._write(key, old_status, status, extra, now, changed_only=False)
            return None
        source = app.spec.source or (app.spec.sources[0] if app.spec.sources else None)
        if source is None:
            message = "application has no source"
            status = self._with_condition(old_status, INVALID_SPEC_ERROR, message, now)
            self._write(key, old_status, status, extra, now, changed_only=False)
            return None
        op_state: dict[str, Any] = dict(old_status.get("operationState") or {})
        running = op_state.get("phase") == RUNNING
        project = project_from(self.projects(key[0], app.spec.project), app.spec.project)
        sources = [source] if app.spec.source else list(app.spec.sources or [])
        # A manual sync or a rollback may name its own source(s) (status included: users can
        # write it): the project must permit those repositories too, or nothing is applied.
        op_sync = ((op_state.get("operation") or {}).get("sync") if running
                   else (body.get("operation") or {}).get("sync")) or {}
        op_repos = [str(s.get("repoURL") or "") for s in [op_sync.get("source"), *(op_sync.get("sources") or [])]
                    if isinstance(s, Mapping)]
        try:
            self._local.target = self.kube_for(app.spec.destination)
            violations = ([MSG_MISSING.format(project=app.spec.project)] if project is None else
                          spec_violations(project, [*(s.repo_url for s in sources), *op_repos],
                                          self._destination(app)))
        except DestinationError as exc:  # Argo CD's ValidatePermissions: an unknown cluster
            violations = [str(exc)]
        if violations:
            # Argo CD's ValidatePermissions: an InvalidSpecError condition; a requested or
            # running operation ends in Error with the same message, and nothing is applied.
            message = "; ".join(violations)
            status = self._with_condition(old_status, INVALID_SPEC_ERROR, message, now)
            status["sync"] = {**(old_status.get("sync") or {}), "status": UNKNOWN}
            requested = (body.get("operation") or {}).get("sync")
            if running or requested is not None:
                operation = op_state.get("operation") if running else {
                    "sync": dict(requested or {}),
                    "initiatedBy": (body.get("operation") or {}).get("initiatedBy") or {"username": "tidegate"}}
                status["operationState"] = {
                    **op_state, "operation": operation, "phase": ERROR, "message": message,
                    "startedAt": op_state.get("startedAt") if running else stamp(now), "finishedAt": stamp(now)}
                if body.get("operation") is not None:
                    extra["operation"] = None
            self._write(key, old_status, status, extra, now, changed_only=True)
            return self.settings.reconcile_seconds
        assert project is not None
        errors: tuple[type[BaseException], ...] = (*self.source_errors, KubeError, DiffConfigError)
        if running and _retry_pending(op_state) and (op_state.get("operation") or {}).get(
                "initiatedBy", {}).get("automated"):
            # Better than Argo CD (argo-cd #11494): a new commit pre-empts an automated sync
            # that keeps failing on the old one, instead of waiting for its retries to run out.
            try:
                latest = self.repos.resolve(source.repo_url, source.target_revision or "HEAD")
            except errors:
                latest = ""
            pinned = str((op_state.get("syncResult") or {}).get("revision") or "")
            if latest and latest != pinned:
                op_state = {**op_state, "phase": FAILED, "finishedAt": stamp(now),
                            "message": MSG_SUPERSEDED.format(message=_without_retry_note(
                                str(op_state.get("message") or "")), revision=latest)}
                running = False
        requested = (body.get("operation") or {}).get("sync")
        pin: Mapping[str, Any] | None = op_state if running else None
        compare_errors: tuple[type[BaseException], ...] = (*errors, SpecError)
        try:
            # A manual sync (a rollback) runs at its revision and, if it names one, its source.
            sync_op = ((op_state.get("operation") or {}).get("sync") if running else requested) or {}
            if sync_op.get("source"):
                source = parse(ApplicationSource, sync_op["source"])
            if not running and requested is not None:
                wanted = str(requested.get("revision") or next(iter(requested.get("revisions") or []), "")
                             or source.target_revision or "HEAD")
                pin = {"syncResult": {"revision": self.repos.resolve(source.repo_url, wanted)}}
            observed = self._observe(app, source, old_status, pin)
        except compare_errors as exc:
            status = self._with_condition(old_status, COMPARISON_ERROR, str(exc), now)
            status["sync"] = {**(old_status.get("sync") or {}), "status": UNKNOWN}
            self._write(key, old_status, status, extra, now, changed_only=False)
            return self.settings.reconcile_seconds
        requeue = self.settings.reconcile_seconds
        if not running:
            started = self._maybe_start(app, body, observed, op_state, now)
            if isinstance(started, float):
                requeue = min(requeue, started)  # a self-heal waits for its backoff
            elif started is not None:
                op_state, running = started, True
                op_state["syncResult"].update(_source_fields(app, source, requested or {}))
                # As Argo CD, the operation's start (phase Running) is written before it syncs,
                # so every operation is seen to begin (notifications' on-sync-running and the
                # re-arming of on-deployed, `tidegate app wait`), however fast it ends.
                begun = self._status(app, source, old_status, observed, op_state, now)
                self._write(key, old_status, begun, extra, now, changed_only=True)
                old_status = begun
                extra = {k: v for k, v in extra.items() if k != "metadata"}
        due: float | None = None
        extra_history: list[dict[str, Any]] | None = None
        if running and _retry_pending(op_state):
            due, op_state = self._retry_due(op_state, now)
        if running and due is not None:
            requeue = due  # the next attempt waits for its backoff
        elif running:
            op_state, requeue = self._advance(app, op_state, observed, now, project)
            if op_state.get("phase") == SUCCEEDED:
                extra_history = _history(app, old_status, op_state, now)
            if op_state.get("phase") in (FAILED, ERROR):
                op_state, requeue = self._retry_or_end(op_state, requeue, now)
            if op_state.get("phase") != RUNNING and body.get("operation") is not None:
                extra["operation"] = None
        status = self._status(app, source, old_status, observed, op_state, now)
        if extra_history is not None:
            status["history"] = extra_history
        self._write(key, old_status, status, extra, now, changed_only=True)
        return requeue

    # --- cascade delete --------------------------------------------------------------------

    def _finalize(self, key: tuple[str, str], body: Mapping[str, Any]) -> float | None:
        """One step of Argo CD's cascade delete; the requeue delay, None once the finalizer is off."""
        meta = body.get("metadata") or {}
        finalizers = [str(f) for f in meta.get("finalizers") or []]
        # Argo CD's GetPropagationPolicy: the first resources finalizer decides.
        policy = next((f for f in finalizers if f in CASCADE_FINALIZERS), None)
        if policy is None:
            return None  # non-cascade: the resources stay; other finalizers belong to others
        propagation = "Background" if policy == FINALIZER_BACKGROUND else "Foreground"
        now = self.clock()
        old_status: dict[str, Any] = dict(body.get("status") or {})
        dest = (body.get("spec") or {}).get("destination") or {}
        try:
            # The resources live in the destination's cluster (gitops/clusters.py).
            self._local.target = self.kube_for(parse(ApplicationDestination, dest))
        except (DestinationError, SpecError) as exc:
            # Never delete by name in the wrong cluster; the finalizer stays until the
            # destination resolves again, or someone removes it by hand.
            message = MSG_DELETION_DESTINATION.format(server=dest.get("server") or dest.get("name"),
                                                      reason=exc)
            status = self._with_condition(old_status, DELETION_ERROR, message, now)
            self._write(key, old_status, status, {}, now, changed_only=True)
            return self.settings.reconcile_seconds
        instance = instance_name(key[1], key[0], self.settings.control_namespace)
        try:
            managed = self._deletable(key, old_status, instance)
            # Objects already being deleted are waited for before the next (lower) wave goes.
            if managed and not any((obj.get("metadata") or {}).get("deletionTimestamp")
                                   for _, obj in managed.values()):
                top = max(wave_of(obj) for _, obj in managed.values())
                for res, (api_version, obj) in sorted(managed.items()):
                    if wave_of(obj) == top:
                        self.kube.delete(api_version, res, propagation=propagation)
                managed = self._deletable(key, old_status, instance)
        except KubeError as exc:
            status = self._with_condition(old_status, DELETION_ERROR, str(exc), now)
            self._write(key, old_status, status, {}, now, changed_only=True)
            return DELETION_RETRY_SECONDS
        if managed:
            # The objects being deleted first: they are what this step waits for.
            names = [f"{k.group}/{k.kind}/{k.name}" for k in sorted(
                managed, key=lambda k: (not (managed[k][1].get("metadata") or {}).get("deletionTimestamp"), k))]
            more = f" and {len(names) - 1} more resources" if len(names) > 1 else ""
            message = MSG_DELETION_WAITING.format(first=names[0], more=more, propagation=propagation)
            status = self._with_condition(old_status, DELETION_WAITING, message, now)
            self._write(key, old_status, status, {}, now, changed_only=True)
            return self.settings.wave_delay_seconds
        patch: dict[str, Any] = {"finalizers": [f for f in finalizers if f not in CASCADE_FINALIZERS]}
        if meta.get("resourceVersion"):
            patch["resourceVersion"] = meta["resourceVersion"]  # a conflict re-reads, never drops another's
        try:
            self.home.patch_application(key[0], key[1], {"metadata": patch})
        except KubeError:
            return self.settings.wave_delay_seconds
        return None

    def _deletable(self, key: tuple[str, str], status: Mapping[str, Any], instance: str,
                   ) -> dict[ResourceKey, tuple[str, dict[str, Any]]]:
        """The live resources of ``status.resources`` this app tracks and a cascade may delete.

        Argo CD's shouldBeDeleted: never a CRD, the Application itself, an object with
        ``Delete=false`` or Helm's ``resource-policy: keep``; never an object another app tracks.
        """
        out: dict[ResourceKey, tuple[str, dict[str, Any]]] = {}
        for res in status.get("resources") or []:
            rkey = ResourceKey(group=str(res.get("group") or ""), kind=str(res.get("kind") or ""),
                               namespace=str(res.get("namespace") or ""), name=str(res.get("name") or ""))
            if rkey.kind == "CustomResourceDefinition" or (
                    rkey.kind == "Application" and rkey.name == key[1] and rkey.namespace == key[0]):
                continue
            version = str(res.get("version") or "v1")
            api_version = f"{rkey.group}/{version}" if rkey.group else version
            try:
                live = self.kube.get(api_version, rkey)
            except KubeError as exc:
                if exc.status is None:
                    continue  # a kind the server no longer serves: nothing left to delete
                raise
            if (live is None or not is_tracked_by(live, instance) or "Delete=false" in sync_options(live)
                    or annotations_of(live).get(KEEP_POLICY[0]) == KEEP_POLICY[1]):
                continue
            out[rkey] = (api_version, live)
        return out

    # --- observe ---------------------------------------------------------------------------

    def _observe(self, app: Application, source: ApplicationSource, old_status: Mapping[str, Any],
                 op_state: Mapping[str, Any] | None) -> Observed:
        namespace = app.spec.destination.namespace or ""
        manifests, revision, revisions, source_types = self._render_sources(app, op_state, source)
        source_type = source_types[0] if source_types else "Directory"
        versions_by_kind = {(split_api_version(str(d.get("apiVersion") or ""))[0], str(d.get("kind"))):
                            str(d.get("apiVersion")) for d in manifests}
        targets = target_objects(
            manifests, app=self._instance(app), namespace=namespace,
            namespaced=lambda group, kind: self.kube.namespaced(
                versions_by_kind.get((group, kind), group), kind))
        live: dict[ResourceKey, dict[str, Any]] = {}
        versions: dict[ResourceKey, str] = {}
        sync: dict[ResourceKey, str] = {}
        owned = rollout_fields(targets)
        rules = [*rules_from_app(app.spec.ignore_differences), *self._settings_rules()]
        compared = [doc for doc in targets if hook_phases(doc) is None]
        for doc in compared:
            key = key_of(doc)
            versions[key] = str(doc["apiVersion"])
            self.watch(versions[key], key.kind)
        context = digest([repr(rules), repr(owned), self.target.server if self.target else ""])
        # The cache answers in this thread; only what needs the API server goes to the call pool.
        first = [self._compare_one(doc, owned, rules, context, cached_only=True) for doc in compared]
        misses = [doc for doc, answer in zip(compared, first, strict=True) if answer is None]
        fetched = iter(self._parallel(lambda doc: self._compare_one(doc, owned, rules, context), misses))
        for doc, answer in zip(compared, first, strict=True):
            current, verdict = answer if answer is not None else next(fetched)
            key = key_of(doc)
            if current is not None:
                live[key] = current
            sync[key] = verdict
        prune: list[ResourceKey] = []
        for res in old_status.get("resources") or []:
            key = ResourceKey(group=str(res.get("group") or ""), kind=str(res.get("kind") or ""),
                              namespace=str(res.get("namespace") or ""), name=str(res.get("name") or ""))
            if key in versions:
                continue
            version = str(res.get("version") or "v1")
            api_version = f"{key.group}/{version}" if key.group else version
            try:
                current = self.kube.get(api_version, key)
            except KubeError:
                continue
            if current is not None and is_tracked_by(current, self._instance(app)):
                live[key], versions[key] = current, api_version
                sync[key] = OUT_OF_SYNC
                prune.append(key)
        quiet = frozenset(k for k in prune if ignore_extraneous(live[k]))
        policy = app.spec.sync_policy
        respect = RESPECT_IGNORE_DIFFERENCES in ((policy.sync_options if policy else None) or [])
        return Observed(revision=revision, targets=targets, live=live, versions=versions, sync=sync,
                        prune=prune, source_type=source_type, owned=owned, quiet=quiet,
                        respected=tuple(rules) if respect else (),
                        revisions=revisions, source_types=source_types if app.spec.sources else None)

    def _compare_one(self, doc: dict[str, Any], owned: RolloutFields, rules: Sequence[IgnoreRule],
                     context: str, *, cached_only: bool = False) -> tuple[dict[str, Any] | None, str] | None:
        """(live object, Synced/OutOfSync) of one target: the live object (the watch's cache, else a
        GET), then the dry run unless the verdict for this manifest and live version is cached.
        ``cached_only``: None unless both come from the caches (no API call)."""
        key = key_of(doc)
        if cached_only:
            known, current = self.kube.cached(str(doc["apiVersion"]), key) if isinstance(
                self.kube, CachedPort) else (False, None)
            if not known or self._hard:
                return None
        else:
            try:
                current = self.kube.get(str(doc["apiVersion"]), key)
            except KubeError:
                current = None  # a kind not served yet (its CRD comes in this sync): missing
        if current is None:
            return None, OUT_OF_SYNC
        sent = carry_rollout_fields(doc, current, owned) if owned.paths(current) else doc
        version = str((current.get("metadata") or {}).get("resourceVersion") or "")
        cache_key = digest([context, sent, version]) if version else ""
        cached = self._verdicts.get(cache_key) if cache_key and not self._hard else None
        if cached is not None:
            return current, cached
        if cached_only:
            return None
        for attempt in range(STALE_LIVE_RETRIES + 1):
            try:
                predicted = self.kube.apply(sent, dry_run=True)
            except KubeError:
                return current, OUT_OF_SYNC  # the sync will say why, with the server's message (not cached)
            seen = str((predicted.get("metadata") or {}).get("resourceVersion") or "")
            if not (version and seen and seen != version) or attempt == STALE_LIVE_RETRIES:
                break
            # The dry run saw a newer object than the watch's copy (another controller wrote it
            # meanwhile, e.g. the notified annotation at an abort): compare like with like, or
            # that write reads as drift and self-heal syncs for nothing.
            fresh = self._read_live(str(doc["apiVersion"]), key)
            if fresh is None:
                return None, OUT_OF_SYNC
            current = fresh
            sent = carry_rollout_fields(doc, current, owned) if owned.paths(current) else doc
            version = str((current.get("metadata") or {}).get("resourceVersion") or "")
            cache_key = digest([context, sent, version]) if version else ""
        drift = compare(predicted, current, rules=rules, owned=owned)
        verdict = OUT_OF_SYNC if drift.differs else SYNCED
        if cache_key:
            self._verdicts.put(cache_key, verdict)
        return current, verdict

    def _read_live(self, api_version: str, key: ResourceKey) -> dict[str, Any] | None:
        """The object as the API server has it now (past the watch's cache)."""
        port = self.kube.inner if isinstance(self.kube, CachedPort) else self.kube
        try:
            found: dict[str, Any] | None = port.get(api_version, key)
        except KubeError:
            return None
        return found

    def _settings_rules(self) -> list[IgnoreRule]:
        """argocd-cm's ignoreDifferences customizations, re-read once they are 10 s old."""
        now = self.clock()
        if self._cm_rules is None or (now - self._cm_rules[0]).total_seconds() > CM_TTL_SECONDS:
            try:
                data = (self.argocd_cm() or {}).get("data") or {}
            except KubeError:
                data = {}  # unreadable settings: no customizations, as when the ConfigMap is absent
            self._cm_rules = (now, rules_from_settings(data))
        return self._cm_rules[1]

    def _render_sources(self, app: Application, op_state: Mapping[str, Any] | None,
                        single: ApplicationSource | None = None,
                        ) -> tuple[list[dict[str, Any]], str, list[str] | None, list[str]]:
        """(manifests, revision, revisions, sourceTypes) of the app's source or sources.

        Multi-source as Argo CD: each source at its own revision (a running operation's
        ``syncResult.revisions`` pin them), rendered in order and concatenated; a source
        with ``ref`` lends its checkout to ``$ref/...`` Helm valueFiles, and is rendered
        itself only when it has a path. A Helm repository source's revision is its
        chart version. ``revisions`` is None for a single-source app.
        """
        name, namespace = app.metadata.name or "", app.spec.destination.namespace or ""
        multi = not app.spec.source and bool(app.spec.sources)
        # ``single``: the source a single-source app renders now (a rollback's, else the spec's).
        sources = list(app.spec.sources or []) if multi else [s for s in [single or app.spec.source] if s]
        result = (op_state.get("syncResult") or {}) if op_state is not None else {}
        pinned = list(result.get("revisions") or []) if multi else [str(result.get("revision") or "")]
        if op_state is None or len(pinned) != len(sources):
            pinned = [source.target_revision or "" if source.chart else
                      self.repos.resolve(source.repo_url, source.target_revision or "HEAD")
                      for source in sources]
        cache_key = None if any(s.chart for s in sources) else digest(
            [[s.to_json() for s in sources], pinned, name, namespace, multi])
        cached = self._rendered.get(cache_key) if cache_key is not None and not self._hard else None
        if cached is not None:
            # a commit renders the same every time; a copy: the reconcile may change what it gets
            return (pickle.loads(cached[0]), pinned[0] if pinned else "", pinned if multi else None,
                    list(cached[1]))
        roots = [Path(".") if source.chart else Path(self.repos.checkout(source.repo_url, rev).path)
                 for source, rev in zip(sources, pinned, strict=True)]
        value_roots = {s.ref: root for s, root in zip(sources, roots, strict=True) if s.ref and not s.chart}
        manifests: list[dict[str, Any]] = []
        types: list[str] = []
        for source, root in zip(sources, roots, strict=True):
            types.append(SOURCE_TYPES.get(self.detect(source, root / (source.path or ".")), "Directory"))
            if multi and source.ref and not source.path and not source.chart:
                continue  # a values-only source: nothing to render
            extra = {"value_roots": value_roots} if value_roots else {}
            manifests += self.render(source, root, app_name=name, namespace=namespace, **extra)
        if cache_key is not None:
            self._rendered.put(cache_key, (pickle.dumps(manifests), list(types)))
        return manifests, pinned[0] if pinned else "", pinned if multi else None, types

    # --- operations ------------------------------------------------------------------------

    def _maybe_start(self, app: Application, body: Mapping[str, Any], observed: Observed,
                     op_state: Mapping[str, Any], now: datetime) -> dict[str, Any] | float | None:
        requested = (body.get("operation") or {}).get("sync")
        policy = app.spec.sync_policy
        automated = policy.automated if policy else None
        options = list((policy.sync_options if policy else None) or [])
        if requested is not None:
            operation = {"sync": {**requested, "revision": observed.revision, **observed.revisions_field()},
                         "initiatedBy": (body.get("operation") or {}).get("initiatedBy") or {"username": "tidegate"}}
            if (body.get("operation") or {}).get("retry"):
                operation["retry"] = (body.get("operation") or {})["retry"]
            prune = bool(requested.get("prune"))
            options = list(requested.get("syncOptions") or options)
        elif automated is not None and any(s == OUT_OF_SYNC for k, s in observed.sync.items()
                                           if k not in observed.quiet):
            last = (op_state.get("syncResult") or {}).get("revision")
            heal_attempts = 0
            if last == observed.revision and (op_state.get("syncResult") or {}).get(
                    "revisions") == observed.revisions and op_state.get("phase") in (SUCCEEDED, FAILED, ERROR):
                if op_state.get("phase") != SUCCEEDED or not automated.self_heal:
                    return None  # already attempted at this revision (Argo CD's loop protection)
                heal_attempts, wait = self._self_heal_backoff(op_state, now)
                if wait > 0:
                    return wait
            prune = bool(automated.prune)
            if not prune and all(observed.sync[k] == SYNCED for k in observed.sync
                                 if k not in observed.prune):
                return None  # only pruning is needed, and automated prune is off
            operation = {"sync": {"revision": observed.revision, **observed.revisions_field(),
                                  "prune": prune, "syncOptions": options},
                         "initiatedBy": {"automated": True}}
            # Argo CD's autoSync: the app's retry, else {limit: 5} (with the default backoff).
            operation["retry"] = (policy.retry.to_json() if policy is not None and policy.retry is not None
                                  else dict(DEFAULT_AUTOMATED_RETRY))
            if heal_attempts:
                # Argo CD's self-heal: only the resources that differ, no hooks.
                operation["sync"]["selfHealAttemptsCount"] = heal_attempts
                operation["sync"]["resources"] = [
                    {"group": k.group, "kind": k.kind, "namespace": k.namespace, "name": k.name}
                    for k in sorted(observed.sync) if observed.sync[k] == OUT_OF_SYNC
                    and (prune or k not in observed.prune)]
                # what drifted, for whoever wonders why a synced app synced again
                LOG.info(MSG_SELF_HEAL, attempt=heal_attempts, resources=[
                    f"{r['kind']}/{r['namespace']}/{r['name']}" for r in operation["sync"]["resources"]][:20])
        else:
            return None
        operation["sync"]["prune"] = prune
        operation["sync"]["syncOptions"] = options
        return {"operation": operation, "phase": RUNNING, "message": "", "startedAt": stamp(now),
                "syncResult": {"revision": observed.revision, **observed.revisions_field(), "resources": []}}

    def _plan(self, app: Application, op_state: Mapping[str, Any], observed: Observed) -> SyncPlan:
        sync = (op_state.get("operation") or {}).get("sync") or {}
        options = options_from(sync.get("syncOptions"), prune=bool(sync.get("prune")))
        if sync.get("resources"):
            options = replace(options, only=frozenset(
                ResourceKey(group=str(r.get("group") or ""), kind=str(r.get("kind") or ""),
                            namespace=str(r.get("namespace") or ""), name=str(r.get("name") or ""))
                for r in sync["resources"]))
        if options.apply_out_of_sync_only:
            # ApplyOutOfSyncOnly=true (the seed's): what the comparison found OutOfSync, incl. Missing.
            options = replace(options, out_of_sync=frozenset(
                k for k, state in observed.sync.items() if state == OUT_OF_SYNC))
        namespace = app.spec.destination.namespace or ""
        exists = True
        if options.create_namespace and namespace:
            exists = self.kube.get("v1", ResourceKey("", "Namespace", "", namespace)) is not None
        started = _parse_stamp(op_state.get("startedAt"))
        return build_plan(observed.targets, observed.live, app=self._instance(app),
                          namespace=namespace, options=options, revision=observed.revision,
                          started_at=int(started.timestamp()) if started else 0,
                          namespace_exists=exists)

    def _self_heal_backoff(self, op_state: Mapping[str, Any], now: datetime) -> tuple[int, float]:
        """(this self-heal's attempt number, seconds still to wait): Argo CD's backoff 2s x 3^n, cap 300s,
        reset once the last self-heal is older than the cool-down (330 s)."""
        previous = int(((op_state.get("operation") or {}).get("sync") or {}).get("selfHealAttemptsCount") or 0)
        finished = _parse_stamp(op_state.get("finishedAt")) or now
        since = (now - finished).total_seconds()
        if previous == 0 or since > self.settings.self_heal_cooldown_seconds:
            return 1, 0.0
        wait = min(self.settings.self_heal_backoff_seconds * 3 ** (previous - 1),
                   self.settings.self_heal_backoff_max_seconds)
        return previous + 1, max(wait - since, 0.0)

    def _retry_due(self, op_state: dict[str, Any], now: datetime) -> tuple[float | None, dict[str, Any]]:
        """Seconds until the pending retry (None: due now, and the operation restarted for it)."""
        count = int(op_state.get("retryCount") or 0)
        # finishedAt has whole seconds: the attempt ended up to one second after it, and the
        # backoff is a minimum (never an early retry).
        finished = (_parse_stamp(op_state.get("finishedAt")) or now) + timedelta(seconds=1)
        wait = backoff_seconds((op_state.get("operation") or {}).get("retry") or {}, count - 1)
        left = (finished - now).total_seconds() + wait
        if left > 0:
            return left, op_state
        restarted = {k: v for k, v in op_state.items() if k != "finishedAt"}
        restarted["message"] = MSG_RETRY_STARTED.format(count=count)
        restarted["syncResult"] = {**(op_state.get("syncResult") or {}), "resources": []}
        return None, restarted

    @staticmethod
    def _retry_or_end(op_state: dict[str, Any], requeue: float, now: datetime) -> tuple[dict[str, Any], float]:
        """Argo CD's retry: a failed operation with retries left stays Running and waits its backoff."""
        retry = (op_state.get("operation") or {}).get("retry") or {}
        count = int(op_state.get("retryCount") or 0)
        limit = retry.get("limit")
        message = str(op_state.get("message") or "")
        if retry and isinstance(limit, int) and (limit < 0 or count < limit):
            wait = backoff_seconds(retry, count)
            at = (now + timedelta(seconds=wait)).astimezone(UTC).strftime("%-I:%M:%S%p")
            return {**op_state, "phase": RUNNING, "retryCount": count + 1,
                    "message": MSG_RETRYING.format(message=message, count=count + 1, at=at)}, wait
        if count:
            op_state = {**op_state, "message": MSG_RETRIED.format(message=message, count=count)}
        return op_state, requeue

    def _destination(self, app: Application) -> Destination:
        """The destination as the project checks it: the resolved cluster's server and name."""
        dest, target = app.spec.destination, self.target
        if target is not None:
            return Destination(server=target.server, name=target.name, namespace=dest.namespace or "")
        return Destination(server=dest.server or IN_CLUSTER_SERVER, name=dest.name or "",
                           namespace=dest.namespace or "")

    def _instance(self, app: Application) -> str:
        """The app part of its objects' tracking ids (Argo CD v3: <namespace>_<app> outside its namespace)."""
        return instance_name(app.metadata.name or "", app.metadata.namespace or "",
                             self.settings.control_namespace)

    def _invalid_tasks(self, app: Application, plan: SyncPlan, project: Project) -> list[dict[str, Any]]:
        """The SyncFailed results of the tasks the project does not permit (gitops-engine's first pass)."""
        dest = self._destination(app)
        invalid: list[dict[str, Any]] = []
        for task in (*plan.tasks, *plan.sync_fail):
            message = resource_violation(project, group=task.key.group, kind=task.key.kind,
                                         namespace=task.key.namespace, namespaced=bool(task.key.namespace),
                                         server=dest.server, name=dest.name)
            if message:
                entry = self._result(task, RESULT_FAILED, message, hook_phase=FAILED)
                entry["status"] = RESULT_FAILED
                invalid.append(entry)
        return invalid

    def _advance(self, app: Application, op_state: dict[str, Any], observed: Observed,
                 now: datetime, project: Project | None = None) -> tuple[dict[str, Any], float]:
        """Move the running operation one step; the new operationState and the requeue delay."""
        plan = self._plan(app, op_state, observed)
        result = dict(op_state.get("syncResult") or {})
        results: list[dict[str, Any]] = [dict(r) for r in result.get("resources") or []]
        index = {_result_key(r): r for r in results}
        delay = self.settings.wave_delay_seconds
        if not results and project is not None:
            invalid = self._invalid_tasks(app, plan, project)
            if invalid:  # checked before the first apply: nothing is created
                return self._finish(op_state, invalid, FAILED, MSG_TASKS_INVALID, now), delay
        for number, step in enumerate(plan.steps):
            pending = [t for t in step.tasks if _task_key(t) not in index]
            if not pending:
                waiting, failed = self._check_step(step.tasks, index)
                if failed:
                    self._run_sync_fail(plan, observed, results)
                    return self._finish(op_state, results, FAILED, MSG_TASKS_FAILED, now), delay
                if waiting:
                    more = f" and {len(waiting) - 1} more resources" if len(waiting) > 1 else ""
                    message = MSG_WAITING.format(first=waiting[0], more=more)
                    started = _parse_stamp(op_state.get("startedAt"))
                    limit = self.settings.sync_timeout_seconds
                    if limit and started and (now - started).total_seconds() > limit:
                        self._run_sync_fail(plan, observed, results)
                        message = MSG_DEADLINE.format(seconds=limit, waiting=message)
                        return self._finish(op_state, results, FAILED, message, now), delay
                    return {**op_state, "message": message,
                            "syncResult": {**result, "resources": results}}, delay
                continue
            errors = self._run_all(pending, observed, results)
            reasons = [e for e in errors if e]
            if reasons:
                self._run_sync_fail(plan, observed, results)
                message = MSG_APPLY_FAILED.format(reason=reasons[0])
                return self._finish(op_state, results, FAILED, message, now), delay
            if number == len(plan.steps) - 1:
                return self._finish(op_state, results, SUCCEEDED, MSG_SYNCED_ALL, now), delay
            return {**op_state, "message": f"waiting for the next wave after {step.phase.value} wave {step.wave}",
                    "syncResult": {**result, "resources": results}}, delay
        skipped = [self._result(t, RESULT_PRUNE_SKIPPED, "ignored (requires pruning)")
                   for t in plan.prune_skipped if _task_key(t) not in index]
        results.extend(skipped)
        message = MSG_SYNCED_ALL if results else MSG_SYNCED_NONE
        return self._finish(op_state, results, SUCCEEDED, message, now), delay

    def _run_sync_fail(self, plan: SyncPlan, observed: Observed, results: list[dict[str, Any]]) -> None:
        """Apply the SyncFail hooks once the operation has failed (not waited for: the operation ends)."""
        for task in plan.sync_fail:
            self._run(task, observed, results)

    def _check_step(self, tasks: Sequence[Task], index: dict[tuple[str, ...], dict[str, Any]],
                    ) -> tuple[list[str], bool]:
        """The tasks of an applied step still waiting (as "group/Kind/name"), and whether one failed."""
        waiting: list[str] = []
        failed = False
        for task in tasks:
            entry = index[_task_key(task)]
            if entry.get("status") == RESULT_FAILED:
                failed = True
                continue
            if entry.get("hookPhase") == SUCCEEDED:
                continue  # done once is done (a HookSucceeded hook is gone by now)
            if task.action is TaskAction.PRUNE:
                gone = self.kube.get(task.api_version, task.key) is None
                entry["hookPhase"] = SUCCEEDED if gone else RUNNING
                if not gone:
                    waiting.append(f"{task.key.group}/{task.key.kind}/{task.key.name}")
                continue
            current = self.kube.get(task.api_version, task.key)
            verdict = health(current) if current is not None else None
            if current is None:
                waiting.append(f"{task.key.group}/{task.key.kind}/{task.key.name}")
            elif verdict is None or verdict.status in (HealthStatus.HEALTHY, HealthStatus.SUSPENDED):
                # Suspended counts as delivered: a Rollout paused at a canary step (argo-cd #25054).
                entry["hookPhase"] = SUCCEEDED
                self._after_hook(task, succeeded=True)
            elif verdict.status is HealthStatus.DEGRADED:
                entry["hookPhase"] = FAILED
                entry["message"] = verdict.message or entry.get("message", "")
                self._after_hook(task, succeeded=False)
                failed = True
            else:
                waiting.append(f"{task.key.group}/{task.key.kind}/{task.key.name}")
        return waiting, failed

    def _after_hook(self, task: Task, *, succeeded: bool) -> None:
        policy = "HookSucceeded" if succeeded else "HookFailed"
        if task.hook and policy in task.hook_delete_policies:
            try:
                self.kube.delete(task.api_version, task.key, propagation="Background")
            except KubeError:
                pass  # left for the next sync's BeforeHookCreation

    def _run_all(self, tasks: Sequence[Task], observed: Observed, results: list[dict[str, Any]]) -> list[str]:
        """Run one step's tasks (Namespaces and CRDs first, one by one; the rest at once); their
        results are appended in the tasks' order, as a serial run would; the error messages."""
        first = [t for t in tasks if t.key.kind in APPLY_FIRST_KINDS]
        rest = [t for t in tasks if t.key.kind not in APPLY_FIRST_KINDS]

        def run(task: Task) -> tuple[str, list[dict[str, Any]]]:
            own: list[dict[str, Any]] = []
            return self._run(task, observed, own), own

        outcomes = dict(zip([id(t) for t in first], [run(t) for t in first], strict=True))
        outcomes.update(zip([id(t) for t in rest], self._parallel(run, rest), strict=True))
        errors: list[str] = []
        for task in tasks:
            error, own = outcomes[id(task)]
            results.extend(own)
            errors.append(error)
        return errors

    def _run(self, task: Task, observed: Observed, results: list[dict[str, Any]]) -> str:
        """Apply or prune one task; its result is appended; returns the error message ("" if none)."""
        try:
            if task.action is TaskAction.PRUNE:
                self.kube.delete(task.api_version, task.key)
                results.append(self._result(task, RESULT_PRUNED, "pruned", hook_phase=RUNNING))
                return ""
            assert task.manifest is not None
            if task.hook and "BeforeHookCreation" in task.hook_delete_policies:
                self.kube.delete(task.api_version, task.key, propagation="Background")
            existed = task.key in observed.live
            manifest = task.manifest
            if observed.owned.paths(observed.live.get(task.key)):
                # the canary's weights as they are now (re-read: the rollout may have moved them)
                manifest = carry_rollout_fields(manifest, self.kube.get(task.api_version, task.key), observed.owned)
            if observed.respected:
                manifest = carry_ignored(manifest, observed.live.get(task.key), observed.respected)
            applied = self.kube.apply(manifest)
            observed.live[task.key] = applied
            verb = "configured" if existed else "created"
            message = f"{task.key.kind.lower()}/{task.key.name} {verb}"
            phase = RUNNING if health(applied) is not None else SUCCEEDED
            results.append(self._result(task, RESULT_SYNCED, message, hook_phase=phase))
            return ""
        except KubeError as exc:
            results.append(self._result(task, RESULT_FAILED, str(exc), hook_phase=FAILED))
            return str(exc)

    @staticmethod
    def _result(task: Task, code: str, message: str, *, hook_phase: str = SUCCEEDED) -> dict[str, Any]:
        _, version = split_api_version(task.api_version)
        entry: dict[str, Any] = {
            "group": task.key.group, "version": version, "kind": task.key.kind,
            "namespace": task.key.namespace, "name": task.key.name,
            "status": "" if task.hook else code, "message": message,
            "hookPhase": hook_phase, "syncPhase": task.phase.value,
        }
        if task.hook:
            entry["hookType"] = task.phase.value
        return entry

    @staticmethod
    def _finish(op_state: Mapping[str, Any], results: list[dict[str, Any]], phase: str, message: str,
                now: datetime) -> dict[str, Any]:
        result = dict(op_state.get("syncResult") or {})
        return {**op_state, "phase": phase, "message": message, "finishedAt": stamp(now),
                "syncResult": {**result, "resources": results}}

    # --- status ----------------------------------------------------------------------------

    def _status(self, app: Application, source: ApplicationSource, old: Mapping[str, Any],
                observed: Observed, op_state: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        healths: list[HealthStatus] = []
        for key in sorted(observed.sync):
            _, version = split_api_version(observed.versions.get(key, "v1"))
            entry: dict[str, Any] = {"group": key.group, "version": version, "kind": key.kind,
                                     "namespace": key.namespace, "name": key.name,
                                     "status": observed.sync[key]}
            current = observed.live.get(key)
            if key in observed.prune:
                entry["requiresPruning"] = True
            elif current is None:
                entry["health"] = {"status": HealthStatus.MISSING.value}
            else:
                verdict = health(current)
                if verdict is not None:
                    entry["health"] = verdict.to_json()
                    healths.append(verdict.status)
            resources.append(entry)
        targets = [k for k in observed.sync if k not in observed.prune]
        if targets and not any(k in observed.live for k in targets):
            app_health = HealthStatus.MISSING
        else:
            app_health = worst(healths)
        out_of_sync = any(status == OUT_OF_SYNC for k, status in observed.sync.items() if k not in observed.quiet)
        # comparedTo is the spec's source(s), also while a rollback runs at another source.
        compared: dict[str, Any] = _source_fields(app, source, {})
        compared["destination"] = app.spec.destination.to_json()
        if app.spec.ignore_differences:
            compared["ignoreDifferences"] = list(app.spec.ignore_differences)
        images = sorted({image for key, live in observed.live.items() if key in observed.sync
                         for image in _images(live)})
        status: dict[str, Any] = {
            **old,
            "sync": {"status": OUT_OF_SYNC if out_of_sync else SYNCED, "revision": observed.revision,
                     "comparedTo": compared},
            "health": {"status": app_health.value},
            "resources": resources,
            "sourceType": observed.source_type,
            "summary": {"images": images} if images else {},
        }
        if observed.source_types is not None:
            # Multi-source, as Argo CD names it: one entry per source, in order.
            status["sync"]["revisions"] = observed.revisions
            status["sync"]["comparedTo"]["sources"] = [s.to_json() for s in app.spec.sources or []]
            status["sync"]["comparedTo"].pop("source", None)
            status["sourceTypes"] = observed.source_types
        status.pop("conditions", None)
        if op_state:
            status["operationState"] = dict(op_state)
        return status

    def _with_condition(self, old: Mapping[str, Any], kind: str, message: str,
                        now: datetime) -> dict[str, Any]:
        status = dict(old)
        previous = {c.get("type"): c for c in old.get("conditions") or []}.get(kind) or {}
        when = previous.get("lastTransitionTime") if previous.get("message") == message else stamp(now)
        status["conditions"] = [{"type": kind, "message": message, "lastTransitionTime": when}]
        return status

    def _write(self, key: tuple[str, str], old: Mapping[str, Any], new: dict[str, Any],
               extra: Mapping[str, Any], now: datetime, *, changed_only: bool) -> None:
        last = _parse_stamp(old.get("reconciledAt"))
        stale = last is None or (now - last).total_seconds() >= self.settings.reconcile_seconds
        new["reconciledAt"] = old.get("reconciledAt")
        patch = merge_patch(old, new)
        # A refresh (the annotation being removed) is a reconcile someone asked for: stamped, as
        # Argo CD does; its write's echo carries no annotation, so it stamps nothing again.
        refreshed = REFRESH_ANNOTATION in ((extra.get("metadata") or {}).get("annotations") or {})
        if patch or stale or not changed_only or refreshed:
            patch["reconciledAt"] = stamp(now)
        body: dict[str, Any] = dict(extra)
        if patch:
            body["status"] = patch
        if not body:
            return
        written = self.home.patch_application(key[0], key[1], body)
        if self.written is not None:
            self.written.record(key, written)
        if self.events is not None and patch:
            involved = {"apiVersion": APPLICATION_API_VERSION, "kind": "Application",
                        "metadata": {"namespace": key[0], "name": key[1]}}
            for event_type, reason, message in status_events(old, new):
                try:
                    self.events(involved, event_type, reason, message)
                except Exception:  # noqa: BLE001 - an Event is a report; the status holds the truth
                    pass


def status_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The Events a status write reports, as (type, reason, message): one per transition, never
    one per reconcile (a standing error keeps its condition and message, so it is not repeated).

    A new or changed condition (InvalidSpecError, ComparisonError, DeletionError, ...) is a
    Warning with the condition's type as reason; an operation starting or ending is Argo CD's
    OperationStarted / OperationCompleted, Warning when it failed."""
    out: list[tuple[str, str, str]] = []
    seen = {(c.get("type"), c.get("message")) for c in old.get("conditions") or [] if isinstance(c, Mapping)}
    for condition in new.get("conditions") or []:
        if isinstance(condition, Mapping) and (condition.get("type"), condition.get("message")) not in seen:
            out.append((WARNING, str(condition.get("type") or "Condition"), str(condition.get("message") or "")))
    before = old.get("operationState") or {}
    after = new.get("operationState") or {}
    if after.get("startedAt") and after.get("startedAt") != before.get("startedAt"):
        out.append((NORMAL, OPERATION_STARTED, MSG_OPERATION_STARTED.format(
            revision=str((after.get("syncResult") or {}).get("revision") or "")[:12] or "HEAD")))
    phase = after.get("phase")
    if phase in (SUCCEEDED, FAILED, ERROR) and (phase != before.get("phase")
                                                 or after.get("finishedAt") != before.get("finishedAt")):
        out.append((NORMAL if phase == SUCCEEDED else WARNING, OPERATION_COMPLETED,
                    MSG_OPERATION_COMPLETED.format(phase=phase, message=str(after.get("message") or ""))))
    return out


def _duration(value: Any, default: float) -> float:
    """A Go duration ("5s", "3m", "1m30s", "1h") or a bare number of seconds."""
    if value is None or value == "":
        return default
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return default
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def backoff_seconds(retry: Mapping[str, Any], attempts: int) -> float:
    """Argo CD's NextRetryAt: duration x factor^attempts, capped at maxDuration (defaults 5s, 2, 3m)."""
    backoff = retry.get("backoff") or {}
    duration = _duration(backoff.get("duration"), DEFAULT_BACKOFF[0])
    factor = float(backoff.get("factor") or DEFAULT_BACKOFF[1])
    cap = _duration(backoff.get("maxDuration"), DEFAULT_BACKOFF[2])
    return min(duration * factor ** max(attempts, 0), cap)


def _retry_pending(op_state: Mapping[str, Any]) -> bool:
    """A Running operation that failed and waits for its next attempt."""
    return (op_state.get("phase") == RUNNING and bool(op_state.get("finishedAt"))
            and int(op_state.get("retryCount") or 0) > 0)


def _source_fields(app: Application, source: ApplicationSource,
                   sync: Mapping[str, Any]) -> dict[str, Any]:
    """``source`` or ``sources`` as Argo CD writes them in comparedTo, syncResult and history."""
    if sync.get("source"):
        return {"source": dict(sync["source"])}
    if sync.get("sources"):
        return {"sources": list(sync["sources"])}
    if app.spec.source is None and app.spec.sources:
        return {"sources": [s.to_json() for s in app.spec.sources]}
    return {"source": (app.spec.source or source).to_json()}


def _history(app: Application, old: Mapping[str, Any], op_state: Mapping[str, Any],
             now: datetime) -> list[dict[str, Any]] | None:
    """status.history with this successful sync appended (None: a selective or dry-run sync,
    which Argo CD does not record); ids count up from Argo CD's 0, trimmed to the limit."""
    operation = op_state.get("operation") or {}
    sync = operation.get("sync") or {}
    if sync.get("resources") or sync.get("dryRun"):
        return None
    history = [dict(h) for h in old.get("history") or []]
    result = op_state.get("syncResult") or {}
    entry: dict[str, Any] = {
        "id": int(history[-1].get("id") or 0) + 1 if history else 0,
        "deployStartedAt": op_state.get("startedAt"),
        "deployedAt": stamp(now),
        "initiatedBy": dict(operation.get("initiatedBy") or {}),
    }
    if result.get("sources"):
        entry["sources"] = list(result["sources"])
        entry["revisions"] = list(result.get("revisions") or [result.get("revision")])
    else:
        entry["revision"] = result.get("revision")
        if result.get("source"):
            entry["source"] = dict(result["source"])
    limit = app.spec.revision_history_limit
    limit = DEFAULT_HISTORY_LIMIT if limit is None else max(limit, 0)
    history.append(entry)
    return history[max(len(history) - limit, 0):] if limit else []


def _images(live: Mapping[str, Any]) -> list[str]:
    """The container and init container images of a pod spec, a pod template or a CronJob's."""
    out: list[str] = []
    for path in POD_SPEC_PATHS:
        node: Any = live
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            continue
        for field in ("initContainers", "containers"):
            for container in node.get(field) or []:
                if isinstance(container, Mapping) and container.get("image"):
                    out.append(str(container["image"]))
    return out


def _without_retry_note(message: str) -> str:
    return re.sub(r"\. Retrying attempt #\d+ at [^.]*\.$", "", message)


def _task_key(task: Task) -> tuple[str, ...]:
    return (task.key.group, task.key.kind, task.key.namespace, task.key.name, task.phase.value)


def _result_key(entry: Mapping[str, Any]) -> tuple[str, ...]:
    return (str(entry.get("group") or ""), str(entry.get("kind") or ""),
            str(entry.get("namespace") or ""), str(entry.get("name") or ""),
            str(entry.get("syncPhase") or ""))
