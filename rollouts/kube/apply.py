"""Apply a Plan from the pure engine to the API server, writing only what changes.

Called by rollouts/handlers.py in a worker thread (the kubernetes client blocks).
It decides nothing: every write is spelled out in the Plan, down to the Istio
documents; this module compares each with what the reconcile observed, sends
the ones that change something through the RolloutPort (port.py; a recording
fake in tests), and counts them (common.kubewrite). Order: Rollout spec
defaults, ReplicaSets created, ReplicaSets scaled/annotated, Service selectors,
DestinationRule then VirtualServices, AnalysisRuns created/terminated, pods
evicted for a restart, the Rollout's revision annotation, status (one merge patch, skipped when equal),
removal of the abort annotation, old ReplicaSets deleted, then Events.
Creating an object that already exists counts as success: a restart or a
lagging index never duplicates a child.

A 4xx answer to any of these writes (they all derive from the user's spec) is the
user's error: ``_Writer.rejected`` reports it in status and once as an Event, and
raises WriteRejected, which the handler logs in one line and retries with back-off.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from common.kubewrite import CountedWriter, EventDeduper, merge_patch, server_message
from common.logging import get_logger
from common.shell import VersionTracker
from rollouts import metrics
from rollouts.api.constants import (
    ANNOTATION_ABORT,
    ANNOTATION_MANAGED_BY,
    LABEL_POD_TEMPLATE_HASH,
    ConditionReason,
    ConditionType,
    RolloutPhase,
)
from rollouts.engine.context import MeshKind, MeshWrite, Plan, RolloutContext
from rollouts.engine.status import FALSE, MSG_NOT_HEALTHY, TRUE, Cond, set_condition
from rollouts.kube.port import KubeRolloutPort, RolloutPort

__all__ = ["Outcome", "VersionTracker", "WriteRejected", "WriteTracker", "apply_plan", "execute"]

log = get_logger("tidegate.rollouts.apply")
LOG_EVENT_FAILED = "could not post rollout event"
LOG_TRAFFIC_ERROR = "rollout traffic routing failed"

LOG_RESTART_BLOCKED = "restart: a PodDisruptionBudget refused a pod's eviction; retrying"
REASON_RESTART_BLOCKED = "RestartEvictionBlocked"
MSG_RESTART_BLOCKED = "Restart waits: evicting pod {pod} would break a PodDisruptionBudget ({reason})"

RESTART_BLOCKED = EventDeduper()
"""The pod whose eviction a PodDisruptionBudget last refused, per Rollout: each block is
reported once, and a restart that moves on forgets it, so a later block is news."""

REPORTED = EventDeduper()
"""The error reports (rejected writes) already posted as Events, per Rollout: one per
distinct message even when the status saying it cannot be written. A reconcile that
applies without a rejection forgets its Rollout's, so the same error coming back is
reported again."""


@dataclass
class Outcome:
    writes: int
    status: dict[str, Any] | None
    traffic_router: str
    written_rollout: dict[str, Any] | None = None
    """The Rollout as our status patch returned it (None when status was unchanged)."""
    only_status: bool = False
    """The status patch was this reconcile's only write."""


class WriteTracker(Protocol):
    """What apply needs of a stale-write guard (common.shell.VersionTracker, re-exported here
    as apply.VersionTracker): it records every Rollout body our writes return."""

    def record(self, key: tuple[str, str], body: Mapping[str, Any]) -> None: ...


# A 4xx answer to a write derived from the user's spec is the user's error, not a transient
# one: 409 (conflict) and 429 (throttled) are retried as before.
USER_ERROR_CODES = frozenset({400, 403, 404, 413, 422})
MAX_REJECTION_MESSAGE = 1024
CONDITION_RS_CREATE_ERROR = str(ConditionType.REPLICA_SET_CREATE_ERROR)
CONDITION_INVALID_SPEC = str(ConditionType.INVALID_SPEC)
# Conditions of the plan that a rejected write leaves true: both are computed from observed
# pods and ReplicaSets (an update in flight is not Completed even when a write failed).
_OBSERVED_CONDITIONS = (ConditionType.AVAILABLE, ConditionType.COMPLETED)
MSG_WRITE_REJECTED = "Rollout {namespace}/{name}: the API server rejected the {kind} {verb} ({code}): {message}"
MSG_REPORT_FAILED = "{message} (the status patch reporting it failed too: {code})"
MSG_EVENT_FAILED = "{message} (the Event reporting it failed: {code})"


class WriteRejected(Exception):
    """A write derived from the user's spec was rejected with a 4xx; the status already says so."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status in USER_ERROR_CODES


def rejection_status(
    current: Mapping[str, Any], *, condition_type: str, message: str, now: str,
    planned: Mapping[str, Any] | None = None, drop: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The status patch for a rejected write: its condition, Healthy False, phase Degraded.

    ``planned`` is the status the engine planned for this reconcile: its Available and
    Completed conditions are taken over. ``drop`` names conditions this reconcile
    proved stale. Timestamps follow status.set_condition (kept while status holds).
    """
    conditions = [dict(c) for c in current.get("conditions") or [] if c.get("type") not in drop]
    for cond in (planned or {}).get("conditions") or []:
        if cond.get("type") in _OBSERVED_CONDITIONS:
            set_condition(conditions, Cond(ConditionType(cond["type"]), str(cond.get("status")),
                                           str(cond.get("reason")), str(cond.get("message"))), now)
    set_condition(conditions, Cond(ConditionType(condition_type), TRUE, condition_type, message), now)
    set_condition(conditions, Cond(ConditionType.HEALTHY, FALSE, ConditionReason.HEALTHY, MSG_NOT_HEALTHY), now)
    return {"phase": str(RolloutPhase.DEGRADED), "message": f"{condition_type}: {message}", "conditions": conditions}


class _Writer:
    """One reconcile's writes through the port, counted (the benchmark reports API writes per step)."""

    def __init__(self, port: RolloutPort, ctx: RolloutContext, planned: Mapping[str, Any] | None = None,
                 reported: EventDeduper | None = None) -> None:
        self.port = port
        self.ctx = ctx
        self.planned = planned
        """The status the engine planned (what a rejected write keeps of it: see rejection_status)."""
        self.reported = REPORTED if reported is None else reported
        self.replica_sets_done = False
        """Every ReplicaSet create of this reconcile succeeded (a ReplicaSetCreateError is stale)."""
        meta = ctx.rollout["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.counted = CountedWriter()
        self.written_rollout: dict[str, Any] | None = None

    @property
    def writes(self) -> int:
        return self.counted.writes

    def create(self, kind: str, call: Any) -> None:
        """A create: 409 (it exists: a restart or a lagging index) is success."""
        try:
            self.counted.send(kind, "create", call, code=201, count_errors=True)
        except ApiException as exc:
            if exc.status != 409:
                raise self.rejected(kind, "create", exc) from None

    def guarded(self, kind: str, verb: str, call: Any) -> Any:
        """A write to an existing object: a 404 there means it vanished (retry), any other 4xx is the spec's."""
        try:
            return self.counted.send(kind, verb, call)
        except ApiException as exc:
            if exc.status == 404:
                raise
            raise self.rejected(kind, verb, exc) from None

    def rejected(self, kind: str, verb: str, exc: ApiException) -> Exception:
        """Say in status (and once in an Event) that the API server rejected a write; return what to raise."""
        if not is_user_error(exc):
            error: Exception = exc
            return error
        message = MSG_WRITE_REJECTED.format(namespace=self.namespace, name=self.name, kind=kind, verb=verb,
                                            code=exc.status, message=server_message(exc, MAX_REJECTION_MESSAGE))
        condition_type = CONDITION_RS_CREATE_ERROR if kind == "ReplicaSet" else CONDITION_INVALID_SPEC
        # After our own status patch, the Rollout it returned is what the next patch changes.
        current = (self.written_rollout or self.ctx.rollout).get("status") or {}
        already = any(c.get("type") == condition_type and c.get("message") == message
                      for c in current.get("conditions") or [])
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        drop = (CONDITION_RS_CREATE_ERROR,) if self.replica_sets_done else ()
        # Only phase, message and conditions change: the rest of status (stableRS, the
        # step index, weights) stays as it was, or a fixed spec would restart from nothing.
        reported = {**current, **rejection_status(current, condition_type=condition_type, message=message,
                                                  now=now, planned=self.planned, drop=drop)}
        patch = merge_patch(current, reported)
        if patch:
            try:
                self.counted.send("Rollout", "patch-status",
                                  lambda: self.port.patch_rollout_status(self.namespace, self.name, patch))
            except ApiException as report_exc:
                # The rejected write may have been this very status; the Event and the
                # one log line still say it, and the next attempt is backed off.
                message = MSG_REPORT_FAILED.format(message=message, code=report_exc.status)
        # The status is the durable record (a restart posts no second Event); the deduper
        # covers a status that cannot be written.
        if not already and self.reported.should_post(self.ctx.rollout, condition_type, message):
            try:
                self.port.post_event(self.ctx.rollout, event_type="Warning", reason=condition_type,
                                     message=message)
            except ApiException as event_exc:  # best effort, as every Event
                message = MSG_EVENT_FAILED.format(message=message, code=event_exc.status)
        return WriteRejected(message)

    # --- each part of the plan ------------------------------------------------------------

    def rollout_spec(self, patch: Mapping[str, Any] | None) -> None:
        if patch:
            self.guarded("Rollout", "patch", lambda: self.port.patch_rollout(self.namespace, self.name, patch))

    def replica_sets(self, plan: Plan) -> None:
        for manifest in plan.replica_sets_to_create:
            self.create("ReplicaSet", lambda m=manifest: self.port.create_replica_set(self.namespace, m))
        self.replica_sets_done = True
        observed = {rs["metadata"]["name"]: rs for rs in self.ctx.replica_sets}
        for name, update in plan.replica_set_updates.items():
            current = observed.get(name, {})
            body: dict[str, Any] = {}
            if update.replicas is not None and (current.get("spec") or {}).get("replicas") != update.replicas:
                body["spec"] = {"replicas": update.replicas}
            annotations = (current.get("metadata") or {}).get("annotations") or {}
            changed = {k: v for k, v in update.annotations.items() if annotations.get(k) != v}
            if changed:
                body["metadata"] = {"annotations": changed}
            if body:
                self.guarded("ReplicaSet", "patch",
                             lambda n=name, b=body: self.port.patch_replica_set(self.namespace, n, b))

    def services(self, plan: Plan) -> None:
        for service_name, pod_hash in plan.service_selectors.items():
            current = self.ctx.services.get(service_name)
            if current is None:
                continue  # the engine reports a missing Service as InvalidSpec
            selector = (current.get("spec") or {}).get("selector") or {}
            managed = ((current.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_MANAGED_BY)
            if selector.get(LABEL_POD_TEMPLATE_HASH) == pod_hash and managed == self.name:
                continue
            body = {
                "metadata": {"annotations": {ANNOTATION_MANAGED_BY: self.name}},
                "spec": {"selector": {LABEL_POD_TEMPLATE_HASH: pod_hash}},
            }
            self.guarded("Service", "patch",
                         lambda n=service_name, b=body: self.port.patch_service(self.namespace, n, b))

    def _observed_mesh(self, write: MeshWrite) -> Mapping[str, Any] | None:
        if write.kind is MeshKind.VIRTUAL_SERVICE:
            return self.ctx.virtual_services.get(write.key)
        return self.ctx.destination_rule

    def mesh(self, plan: Plan) -> None:
        """The plan's Istio replaces, in its order; one equal to what was observed is not sent."""
        for write in plan.mesh_writes:
            if self._observed_mesh(write) == write.document:
                continue
            if write.kind is MeshKind.VIRTUAL_SERVICE:
                self.guarded(str(write.kind), "update",
                             lambda d=write.document: self.port.replace_virtual_service(d))
            else:
                self.guarded(str(write.kind), "update",
                             lambda d=write.document: self.port.replace_destination_rule(d))

    def analysis_runs(self, plan: Plan) -> None:
        for manifest in plan.analysis_runs_to_create:
            self.create("AnalysisRun", lambda m=manifest: self.port.create_analysis_run(self.namespace, m))
        observed = {run["metadata"]["name"]: run for run in self.ctx.analysis_runs}
        for name in plan.analysis_runs_to_terminate:
            run = observed.get(name)
            if run is not None and (run.get("spec") or {}).get("terminate"):
                continue
            try:
                self.counted.send("AnalysisRun", "patch", partial(
                    self.port.patch_analysis_run, self.namespace, name, {"spec": {"terminate": True}}))
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def old_replica_sets(self, plan: Plan) -> None:
        """Delete what the plan names (revisionHistoryLimit); one already gone is done."""
        for name in plan.replica_sets_to_delete:
            try:
                self.counted.send("ReplicaSet", "delete", partial(self.port.delete_replica_set, self.namespace, name))
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def pods(self, plan: Plan) -> None:
        """Evict the pods a restart replaces, oldest first; one already gone is done.

        A PodDisruptionBudget that an eviction would break answers 429: the rest wait for a
        later reconcile (the restart re-checks every few seconds), and the block is said once
        per pod in a log line and a Warning Event, not on every re-check."""
        for name in plan.pods_to_evict:
            try:
                self.counted.send("Pod", "evict", partial(self.port.evict_pod, self.namespace, name))
            except ApiException as exc:
                if exc.status == 404:
                    continue
                if exc.status == 429:
                    self.restart_blocked(name, server_message(exc, MAX_REJECTION_MESSAGE))
                    return
                raise
            RESTART_BLOCKED.clear(self.ctx.rollout)  # it moved on: a later block is news

    def restart_blocked(self, pod: str, reason: str) -> None:
        if not RESTART_BLOCKED.should_post(self.ctx.rollout, REASON_RESTART_BLOCKED, pod):
            return
        message = MSG_RESTART_BLOCKED.format(pod=pod, reason=reason)
        log.info(LOG_RESTART_BLOCKED, namespace=self.namespace, name=self.name, pod=pod, reason=reason)
        try:
            self.port.post_event(self.ctx.rollout, event_type="Warning", reason=REASON_RESTART_BLOCKED,
                                 message=message)
        except ApiException as exc:  # best effort, as every Event
            log.warning(LOG_EVENT_FAILED, namespace=self.namespace, name=self.name, code=exc.status)

    def status(self, plan: Plan, tracker: WriteTracker) -> None:
        patch = merge_patch(self.ctx.rollout.get("status") or {}, plan.status)
        if not patch:
            return
        written = self.guarded("Rollout", "patch-status",
                               lambda: self.port.patch_rollout_status(self.namespace, self.name, patch))
        tracker.record((self.namespace, self.name), written)
        self.written_rollout = written if isinstance(written, dict) else None

    def revision_annotations(self, plan: Plan, tracker: WriteTracker) -> None:
        """Before the status: a status saying all went well is written only after every write did."""
        current = (self.ctx.rollout.get("metadata") or {}).get("annotations") or {}
        wanted: dict[str, str | None] = {k: v for k, v in plan.rollout_annotations.items() if current.get(k) != v}
        self._annotate(wanted, tracker)

    def abort_annotation(self, plan: Plan, tracker: WriteTracker) -> None:
        """After the status: the abort request is dropped only once status records the abort."""
        current = (self.ctx.rollout.get("metadata") or {}).get("annotations") or {}
        if plan.remove_abort_annotation and ANNOTATION_ABORT in current:
            self._annotate({ANNOTATION_ABORT: None}, tracker)

    def _annotate(self, wanted: Mapping[str, str | None], tracker: WriteTracker) -> None:
        if not wanted:
            return
        body = {"metadata": {"annotations": dict(wanted)}}
        written = self.guarded("Rollout", "patch", lambda: self.port.patch_rollout(self.namespace, self.name, body))
        tracker.record((self.namespace, self.name), written)

    def events(self, plan: Plan, pool: Executor | None) -> None:
        """Post the plan's Events: best effort, off the reconcile's critical path when a pool is given.

        A queued Event keeps only the Rollout's identity, not the reconcile's
        snapshot: under a burst thousands may wait, and each must stay small.
        """
        now = datetime.now(UTC)
        meta = self.ctx.rollout.get("metadata") or {}
        involved = {
            "apiVersion": self.ctx.rollout.get("apiVersion"), "kind": self.ctx.rollout.get("kind"),
            "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid", "resourceVersion")},
        }
        for event in plan.events:
            metrics.ROLLOUT_EVENTS.labels(type=str(event.type), reason=str(event.reason)).inc()
            if pool is None:
                _post(self.port, involved, event, now)
            else:
                pool.submit(_post, self.port, involved, event, now)


def _post(port: RolloutPort, involved: Mapping[str, Any], event: Any, at: datetime) -> None:
    try:
        port.post_event(involved, event_type=str(event.type), reason=str(event.reason),
                        message=event.message, at=at)
    except ApiException as exc:  # an Event is best effort; the status already says it
        meta = involved["metadata"]
        log.warning(LOG_EVENT_FAILED, namespace=meta["namespace"], name=meta["name"],
                    reason=str(event.reason), error=str(exc.reason))


def execute(
    port: RolloutPort, ctx: RolloutContext, plan: Plan, tracker: WriteTracker,
    event_pool: Executor | None = None, reported: EventDeduper | None = None,
) -> Outcome:
    """Perform ``plan``'s writes through ``port``, in order; Events go to ``event_pool`` when given."""
    writer = _Writer(port, ctx, planned=plan.status, reported=reported)
    writer.rollout_spec(plan.spec_patch)
    writer.replica_sets(plan)
    writer.services(plan)
    writer.mesh(plan)
    writer.analysis_runs(plan)
    writer.pods(plan)
    writer.revision_annotations(plan, tracker)
    writer.status(plan, tracker)
    writer.abort_annotation(plan, tracker)
    writer.old_replica_sets(plan)
    writer.events(plan, event_pool)
    writer.reported.clear(ctx.rollout)  # no write was rejected: a rejection coming back is news
    if plan.traffic_error is not None and plan.events:
        log.warning(LOG_TRAFFIC_ERROR, namespace=writer.namespace, name=writer.name, error=plan.traffic_error)
    canary = ((ctx.rollout.get("spec") or {}).get("strategy") or {}).get("canary") or {}
    router = "Istio" if "istio" in (canary.get("trafficRouting") or {}) else ""
    return Outcome(
        writes=writer.writes, status=plan.status, traffic_router=router,
        written_rollout=writer.written_rollout,
        only_status=writer.written_rollout is not None and writer.writes == 1,
    )


def apply_plan(
    api: Any, ctx: RolloutContext, plan: Plan, tracker: WriteTracker, event_pool: Executor | None = None
) -> Outcome:
    """``execute`` over the kubernetes client (``api`` is the shared ApiClient)."""
    return execute(KubeRolloutPort(api), ctx, plan, tracker, event_pool)
