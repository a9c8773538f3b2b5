"""The engine's entry point: ``plan(ctx) -> Plan`` for one reconcile of one Rollout.

Called by the rollout controller's work-queue worker (rollouts/handlers.py) with
everything rollouts/kube/observe.py observed. Pure and deterministic: the same
context gives the same plan, and everything is derived from observed objects plus the Rollout's status,
so a restarted controller resumes where it was (no step skipped, no duplicate
AnalysisRun: a run that exists is followed, never re-created).

Shape (Argo's rolloutContext.reconcile, semantics reference §6):
1. invalid spec or references -> InvalidSpec plan, nothing else;
2. desired ReplicaSet missing, or template/steps changed -> create/reset plan;
3. otherwise progress: abort/retry/promote-full, analysis, pause, step
   completion, promotion, scaling, traffic, services, status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from common.api import (
    SpecError,
    format_time,
)
from rollouts.api.constants import (
    ANNOTATION_REVISION,
    DEFAULT_REPLICAS,
    INVALID_SPEC_REQUEUE_SECONDS,
    ConditionReason,
    ConditionType,
    EventReason,
    EventType,
    PodTemplateHash,
)
from rollouts.api.models import Rollout
from rollouts.engine import history, mesh, progress, restart, routing, scaling
from rollouts.engine import status as st
from rollouts.engine.assemble import MSG_COMPLETED_CONDITION, build_status, deadline_left
from rollouts.engine.context import Event, Plan, RolloutContext
from rollouts.engine.draft import Draft
from rollouts.engine.hashing import pod_template_hash
from rollouts.engine.observe import View, build_view, rs_info
from rollouts.engine.runs import TemplateSources
from rollouts.engine.validation import References, invalid_message, reference_wait_plan, validate

MSG_ROLLOUT_UPDATED = "Rollout updated to revision {revision}"
MSG_RS_CREATED_EVENT = "Created ReplicaSet {name} (revision {revision})"
MSG_SKIP_STEPS = "Rollback to stable ReplicaSet {name}: skipping all steps"


def plan(ctx: RolloutContext) -> Plan:
    """Decide everything one reconcile must write. Never raises for bad input."""
    rollout = ctx.model
    if rollout is None:
        return invalid_plan(ctx, str(ctx.spec_error))
    problems = validate(rollout, _references(ctx, rollout))
    if problems:
        return reference_wait_plan(ctx, problems) or invalid_plan(ctx, invalid_message(rollout, problems))
    view = build_view(ctx, rollout)
    try:
        result = reset_plan(view) if view.new_rs is None or view.changed else progress_plan(view)
    except SpecError as err:
        return invalid_plan(ctx, err.message)
    if rollout.spec.replicas is None:
        # Argo writes the default back so an HPA can scale the Rollout.
        result = dataclasses.replace(result, spec_patch={"spec": {"replicas": 1}})
    return result


def _references(ctx: RolloutContext, rollout: Rollout) -> References:
    return References(
        namespace=rollout.metadata.namespace or "",
        services=ctx.services,
        virtual_services=ctx.virtual_services,
        destination_rule=ctx.destination_rule,
        analysis_templates=ctx.analysis_templates,
        cluster_analysis_templates=ctx.cluster_analysis_templates,
    )


# --- 1. invalid spec ---------------------------------------------------------------------


def invalid_plan(ctx: RolloutContext, message: str) -> Plan:
    """InvalidSpec condition, phase Degraded, one Event per new message, re-queue in 20 s.

    Every condition is recomputed from what is observed (as Argo recomputes its
    status), never copied: a Healthy or Completed left from before the invalid
    update would contradict InvalidSpec.
    """
    status: dict[str, Any] = dict(ctx.rollout.get("status") or {})
    previous_conditions = status.get("conditions") or []
    previous = st.find_condition(previous_conditions, ConditionType.INVALID_SPEC)
    conditions = st.invalid_spec_conditions(_invalid_inputs(ctx, status, message), format_time(ctx.now))
    generation = (ctx.rollout.get("metadata") or {}).get("generation")
    status.update(
        {
            "conditions": conditions,
            "phase": "Degraded",
            "message": f"{ConditionReason.INVALID_SPEC}: {message}",
            "observedGeneration": str(generation) if generation is not None else None,
        }
    )
    events: tuple[Event, ...] = ()
    if previous is None or previous.get("message") != message:
        events = (Event(type=EventType.WARNING, reason=str(EventReason.INVALID_SPEC), message=message),)
    return Plan(status=status, events=events, requeue_after=INVALID_SPEC_REQUEUE_SECONDS)


def _invalid_inputs(ctx: RolloutContext, status: Mapping[str, Any], message: str) -> st.InvalidInputs:
    """The observed facts the conditions of an invalid Rollout are computed from.

    Read from the raw document: a spec that does not parse still has ReplicaSets,
    a replica count and (usually) a pod template to compare with the stable one.
    """
    spec = ctx.rollout.get("spec") or {}
    replicas = spec.get("replicas") if isinstance(spec, Mapping) else None
    wanted = replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else DEFAULT_REPLICAS
    infos = [info for info in (rs_info(doc) for doc in ctx.replica_sets) if info is not None]
    template = spec.get("template") if isinstance(spec, Mapping) else None
    collisions = status.get("collisionCount")
    desired: str | None = None
    if isinstance(template, Mapping):
        desired = pod_template_hash(template, collisions if isinstance(collisions, int) and collisions >= 0 else None)
    stable = next((rs for rs in infos if desired is not None and rs.hash == desired == status.get("stableRS")), None)
    completed = None
    if stable is not None:
        completed = MSG_COMPLETED_CONDITION.format(revision=stable.revision, hash=stable.hash)
    return st.InvalidInputs(
        previous=status.get("conditions") or [],
        message=message,
        available=sum(rs.available for rs in infos) >= wanted,
        completed_message=completed,
        in_flight=desired is not None and desired == status.get("currentPodHash"),
    )


# --- 2. new revision: create the ReplicaSet and/or reset the steps -----------------------


def _draft(view: View) -> Draft:
    canary = view.status.get("canary") or {}
    return Draft(
        index=view.steps.index,
        pause_conditions=[dict(c) for c in view.status.get("pauseConditions") or ()],
        controller_pause=bool(view.status.get("controllerPause")),
        abort=bool(view.status.get("abort")),
        aborted_at=view.status.get("abortedAt"),
        promote_full=bool(view.status.get("promoteFull")),
        stable_hash=view.stable_hash,
        step_run_status=canary.get("currentStepAnalysisRunStatus"),
        background_run_status=canary.get("currentBackgroundAnalysisRunStatus"),
    )


def reset_plan(view: View) -> Plan:
    """Template or steps changed: reset step progress; create the RS if it is missing."""
    back_to_stable = view.stable_hash is not None and view.stable_hash == view.new_hash
    draft = _draft(view)
    draft.index = (view.steps.count if back_to_stable else 0) if view.steps.count else None
    draft.pause_conditions, draft.controller_pause = [], False
    draft.abort, draft.aborted_at, draft.promote_full = False, None, False
    draft.step_run_status = draft.background_run_status = None
    view = dataclasses.replace(view, steps=dataclasses.replace(view.steps, index=draft.index))
    rev = progress.revision(view)
    created: tuple[dict[str, Any], ...] = ()
    if view.new_rs is None:
        rev = str(view.max_revision + 1)
        manifest = scaling.rs_manifest(view, rev)
        created = (manifest,)
        draft.event(EventReason.ROLLOUT_UPDATED, MSG_ROLLOUT_UPDATED.format(revision=rev))
        draft.event(EventReason.NEW_RS_CREATED, MSG_RS_CREATED_EVENT.format(name=manifest["metadata"]["name"], revision=rev))
    elif view.new_rs.revision < view.max_revision and not back_to_stable:
        # Re-using an older RS (undo): it becomes the newest revision, as in Argo.
        rev = str(view.max_revision + 1)
        scaling.update_rs(draft, view, view.new_rs, annotations={ANNOTATION_REVISION: rev})
        draft.event(EventReason.ROLLOUT_UPDATED, MSG_ROLLOUT_UPDATED.format(revision=rev))
    if back_to_stable and view.status.get("currentPodHash") != view.new_hash:
        draft.event(EventReason.SKIP_STEPS, MSG_SKIP_STEPS.format(name=f"{view.name}-{view.new_hash}"))
    progress.terminate_stale_runs(view, draft)
    status = build_status(view, draft, created=bool(created))
    return _finish(view, draft, status, replica_sets_to_create=created, revision=rev)


# --- 3. progress -------------------------------------------------------------------------


def _is_scaling_event(view: View) -> bool:
    """spec.replicas changed since the active RSs were last scaled (Argo's isScalingEvent)."""
    active = [rs for rs in (view.new_rs, view.stable_rs) if rs is not None and rs.spec > 0]
    return any(rs.desired_replicas_annotation != str(view.spec_replicas) for rs in active)


def _steps_may_advance(view: View, draft: Draft, scaling_event: bool) -> bool:
    return not (draft.abort or scaling_event or view.rollout.spec.paused or draft.promote_full)


def progress_plan(view: View) -> Plan:
    """One step of an in-flight (or finished) rollout."""
    now = view.ctx.now
    draft = _draft(view)
    progress.apply_abort_request(view, draft)
    progress.apply_retry(view, draft)
    if view.stable_rs is None:
        progress.promote(view, draft, progress.WHY_INITIAL)
    progress.apply_promote_full(view, draft)
    scaling_event = _is_scaling_event(view)
    step_done = _evaluate_step(view, draft, scaling_event, now)
    progress.apply_abort(view, draft, now)
    progress.terminate_stale_runs(view, draft)
    target = scaling.targets(view, draft)
    if _steps_may_advance(view, draft, scaling_event):
        step_done = step_done or _weight_step_done(view, draft, target)
        if step_done:
            progress.advance_step(view, draft)
            progress.enter_pause_step(view, draft, now)
    if not (draft.abort or scaling_event or view.rollout.spec.paused):
        _maybe_promote(view, draft)
    _apply_scaling(view, draft, target, scaling_event, now)
    routing.plan_traffic(view, draft, target)
    routing.plan_services(view, draft)
    status = build_status(view, draft)
    _deadline_effects(view, draft, status)
    restarting = restart.plan_restart(view)
    if restarting.restarted_at is not None:
        status["restartedAt"] = restarting.restarted_at
    if restarting.requeue_after is not None:
        draft.waits.append(restarting.requeue_after)
    result = _finish(view, draft, status, revision=progress.revision(view))
    return dataclasses.replace(result, replica_sets_to_delete=history.replica_sets_to_delete(view),
                               pods_to_evict=restarting.evict)


def _evaluate_step(view: View, draft: Draft, scaling_event: bool, now: datetime) -> bool:
    """Analysis and pause steps; True when the current one is complete."""
    sources = TemplateSources(
        namespaced=view.ctx.analysis_templates, cluster=view.ctx.cluster_analysis_templates
    )
    if scaling_event:
        return False
    analysis_done = progress.reconcile_step_analysis(view, draft, sources)
    progress.reconcile_background_analysis(view, draft, sources)
    if view.rollout.spec.paused:
        return False
    pause_done = progress.reconcile_pause_step(view, draft, now)
    return analysis_done or pause_done


def _weight_step_done(view: View, draft: Draft, target: scaling.Targets) -> bool:
    """setWeight / setCanaryScale are done when counts (and the router weight) are there."""
    step = view.steps.current
    if step is None or (step.set_weight is None and step.set_canary_scale is None):
        return False
    if not scaling.at_desired_counts(view, target):
        return False
    if view.routed and step.set_weight is not None and target.canary > 0:
        # A canary with no pods to send to gets weight 0 (Argo: "when newRS is not available
        # or replicas num is 0, never weight to canary"), so with replicas 0 the step's weight
        # is never reached; Argo completes the step on the replica counts alone.
        return routing.desired_weight(view, draft, target) == target.weight
    return True


def _maybe_promote(view: View, draft: Draft) -> None:
    """All steps done (or promote-full) and the new RS fully available -> it becomes stable."""
    if draft.stable_hash == view.new_hash or view.new_rs is None:
        return
    if not (view.steps.finished or draft.promote_full):
        return
    if view.new_rs.available < view.spec_replicas:
        return
    if draft.promote_full:
        why = progress.WHY_FULL_PROMOTION
    else:
        why = progress.WHY_ALL_STEPS.format(count=view.steps.count)
    progress.promote(view, draft, why)


def _apply_scaling(
    view: View, draft: Draft, target: scaling.Targets, scaling_event: bool, now: datetime
) -> None:
    new, stable = view.new_rs, view.stable_rs
    referenced = routing.referenced_hashes(view)
    if scaling_event:
        for rs in (new, stable):
            if rs is not None:
                scaling.sync_desired_annotation(draft, view, rs)
    if new is not None and draft.stable_hash == view.new_hash:
        scaling.update_rs(draft, view, new, replicas=view.spec_replicas)
        scaling.clear_deadline(draft, view, new)
        old = [rs for rs in view.all_rs if rs.name != new.name]
        if draft.promoted_now and stable is not None:
            referenced.add(stable.hash)
        scaling.scale_old(draft, view, old, referenced, now)
        return
    if new is not None and draft.abort and view.routed:
        scaling.scale_abort_canary(draft, view, now)
    elif new is not None:
        scaling.update_rs(draft, view, new, replicas=target.next_canary)
        scaling.clear_deadline(draft, view, new)
    if stable is not None:
        scaling.update_rs(draft, view, stable, replicas=target.next_stable)
        scaling.clear_deadline(draft, view, stable)
    scaling.scale_old(draft, view, list(view.others), referenced, now)


def _deadline_effects(view: View, draft: Draft, status: dict[str, Any]) -> None:
    """ProgressDeadlineExceeded: one event; with progressDeadlineAbort also abort."""
    cond = st.find_condition(status["conditions"], ConditionType.PROGRESSING)
    before = st.find_condition(view.status.get("conditions") or (), ConditionType.PROGRESSING)
    if cond is None or cond.get("reason") != ConditionReason.PROGRESS_DEADLINE_EXCEEDED:
        left = deadline_left(view, draft, cond)
        if left is not None and left > 0:
            draft.waits.append(left)
        return
    if before is None or before.get("reason") != ConditionReason.PROGRESS_DEADLINE_EXCEEDED:
        draft.event(EventReason.PROGRESS_DEADLINE_EXCEEDED, str(cond.get("message")), warning=True)
    if view.rollout.spec.progress_deadline_abort and draft.stable_hash != view.new_hash:
        status["abort"] = True


def _finish(
    view: View,
    draft: Draft,
    status: dict[str, Any],
    revision: str,
    replica_sets_to_create: tuple[dict[str, Any], ...] = (),
) -> Plan:
    annotations = view.rollout.metadata.annotations or {}
    rollout_annotations: dict[str, str | None] = {}
    if annotations.get(ANNOTATION_REVISION) != revision:
        rollout_annotations[ANNOTATION_REVISION] = revision
    writes, traffic_error = mesh.mesh_writes(view.ctx, draft.traffic)
    result = Plan(
        status=status,
        replica_sets_to_create=replica_sets_to_create,
        replica_set_updates=dict(draft.rs_updates),
        service_selectors={k: PodTemplateHash(v) for k, v in draft.service_selectors.items()},
        traffic=draft.traffic,
        mesh_writes=writes,
        analysis_runs_to_create=tuple(draft.runs_to_create),
        analysis_runs_to_terminate=tuple(draft.runs_to_terminate),
        events=tuple(draft.events),
        rollout_annotations=rollout_annotations,
        remove_abort_annotation=draft.remove_abort_annotation,
        requeue_after=min(draft.waits) if draft.waits else None,
    )
    return result if traffic_error is None else mesh.traffic_error_plan(view.ctx, result, traffic_error)
