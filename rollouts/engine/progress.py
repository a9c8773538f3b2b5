"""Step progress: abort, retry, promote-full, pause steps, analysis runs, promotion.

Called by ``reconcile.plan`` in Argo's order; each function reads the View and
updates the Draft. Pure: ``now`` comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from analysis.api.phases import AnalysisPhase
from common.api import format_time
from rollouts.api.constants import ConditionReason, EventReason, PauseReason
from rollouts.api.models import RolloutAnalysis
from rollouts.engine import runs
from rollouts.engine.draft import Draft
from rollouts.engine.observe import View, parse_time
from rollouts.engine.steps import describe, pause_duration

MSG_ANNOTATION_ABORT = "{reason}"
MSG_ANNOTATION_ABORT_NO_REASON = "aborted with the tidegate.dev/abort annotation"
MSG_STEP_ANALYSIS_ABORT = "Step-based analysis phase error/failed: {message}"
MSG_BACKGROUND_ANALYSIS_ABORT = "Background analysis phase error/failed: {message}"
MSG_ABORTED_EVENT = "Rollout aborted update to revision {revision}"
MSG_STEP_COMPLETED = "Rollout step {index}/{count} completed ({step})"
MSG_PAUSED_EVENT = "Rollout is paused ({reason})"
MSG_COMPLETED_EVENT = "Rollout completed update to revision {revision} ({hash}): {why}"
WHY_INITIAL = "Initial deploy"
WHY_ALL_STEPS = "Completed all {count} canary steps"
WHY_FULL_PROMOTION = "Full promotion requested"


def fully_promoted(view: View) -> bool:
    return view.stable_hash is not None and view.stable_hash == view.new_hash


def revision(view: View) -> str:
    """The revision of the desired ReplicaSet (the next one if it is being created)."""
    if view.new_rs is not None and view.new_rs.revision:
        return str(view.new_rs.revision)
    return str(view.max_revision + 1)


def apply_abort_request(view: View, draft: Draft) -> None:
    """Honour ``tidegate.dev/abort``; ignore any abort on a fully promoted rollout."""
    annotation = view.abort_annotation
    if annotation is not None:
        draft.remove_abort_annotation = True
    if fully_promoted(view):
        draft.abort = False
        return
    if annotation is not None and not draft.abort:
        draft.abort = True
        draft.abort_reason = (
            MSG_ANNOTATION_ABORT.format(reason=annotation.strip())
            if annotation.strip()
            else MSG_ANNOTATION_ABORT_NO_REASON
        )


def apply_retry(view: View, draft: Draft) -> None:
    """``status.abort`` went back to false after an abort: start the steps again."""
    progressing = _condition(view, "Progressing")
    was_aborted = progressing is not None and progressing.get("reason") == ConditionReason.ABORTED
    if draft.abort or not (was_aborted or draft.aborted_at):
        return
    draft.retrying = True
    draft.aborted_at = None
    draft.index = 0 if view.steps.count else None


def _condition(view: View, kind: str) -> dict[str, Any] | None:
    for condition in view.status.get("conditions") or ():
        if condition.get("type") == kind:
            return dict(condition)
    return None


def apply_promote_full(view: View, draft: Draft) -> None:
    """``status.promoteFull``: skip every remaining step and cancel analysis."""
    if not draft.promote_full:
        return
    if fully_promoted(view):
        draft.promote_full = False
        return
    draft.index = view.steps.count if view.steps.count else None
    draft.pause_conditions = []
    draft.controller_pause = False
    draft.abort = False
    _terminate_current_runs(view, draft, include_completed=False)


def apply_abort(view: View, draft: Draft, now: datetime) -> None:
    """Effects of an abort: index back to 0, pauses dropped, runs terminated, one event."""
    if not draft.abort:
        return
    draft.aborted_at = draft.aborted_at or format_time(now)
    draft.index = 0 if view.steps.count else None
    draft.pause_conditions = []
    draft.controller_pause = False
    draft.promote_full = False
    # Completed runs are marked too, so a later retry never re-adopts a failed run.
    _terminate_current_runs(view, draft, include_completed=True)
    progressing = _condition(view, "Progressing")
    if progressing is None or progressing.get("reason") != ConditionReason.ABORTED:
        message = MSG_ABORTED_EVENT.format(revision=revision(view))
        if draft.abort_reason:
            message = f"{message}: {draft.abort_reason}"
        draft.event(EventReason.ABORTED, message, warning=True)


def _terminate_current_runs(view: View, draft: Draft, include_completed: bool) -> None:
    for run in view.ctx.analysis_runs:
        phase = runs.run_phase(run)
        if runs.is_terminated(run) or (phase is not None and phase.completed and not include_completed):
            continue
        draft.terminate(runs.run_name(run))


def terminate_stale_runs(view: View, draft: Draft) -> None:
    """Stop running runs that no longer belong to the current hash, revision or step."""
    rev = revision(view)
    current_keys = [runs.background_key(view.new_hash, rev)]
    if view.steps.current is not None and view.steps.current.analysis is not None:
        current_keys.append(runs.step_key(view.new_hash, rev, view.steps.index or 0))
    for run in view.ctx.analysis_runs:
        phase = runs.run_phase(run)
        if runs.is_terminated(run) or (phase is not None and phase.completed):
            continue
        if not any(runs.matches(run, key) for key in current_keys):
            draft.terminate(runs.run_name(run))


def reconcile_step_analysis(view: View, draft: Draft, sources: runs.TemplateSources) -> bool:
    """Create or follow the current step's run; True when the step is done (Successful).

    Raises SpecError when the run cannot be built (templates or args).
    """
    step = view.steps.current
    if step is None or step.analysis is None or draft.abort or draft.promote_full:
        return False
    if draft.stable_hash == view.new_hash:
        return False  # initial deploy or fully promoted: nothing to analyse (Argo skips it too)
    key = runs.step_key(view.new_hash, revision(view), view.steps.index or 0)
    run = runs.find_current(view.ctx.analysis_runs, key)
    if run is None:
        _create_run(view, draft, step.analysis, key, sources)
        return False
    return _follow_run(view, draft, run, MSG_STEP_ANALYSIS_ABORT, step_run=True)


def reconcile_background_analysis(view: View, draft: Draft, sources: runs.TemplateSources) -> None:
    """Background analysis from ``startingStep`` while an update is in flight."""
    analysis = view.canary.analysis
    if analysis is None or not analysis.templates or draft.abort or draft.promote_full:
        return
    if fully_promoted(view) or view.stable_hash is None:
        return
    if view.steps.index is not None and view.steps.index < (analysis.starting_step or 0):
        return
    key = runs.background_key(view.new_hash, revision(view))
    run = runs.find_current(view.ctx.analysis_runs, key)
    if run is None:
        _create_run(view, draft, analysis, key, sources)
        return
    _follow_run(view, draft, run, MSG_BACKGROUND_ANALYSIS_ABORT, step_run=False)


def _create_run(
    view: View,
    draft: Draft,
    analysis: RolloutAnalysis,
    key: runs.RunKey,
    sources: runs.TemplateSources,
) -> None:
    taken = {runs.run_name(r) for r in view.ctx.analysis_runs}
    taken |= {str(r["metadata"]["name"]) for r in draft.runs_to_create}
    request = runs.RunRequest(
        rollout=view.rollout,
        rollout_doc=view.ctx.rollout,
        analysis=analysis,
        key=key,
        name=runs.unique_name(key.base_name(view.name), taken),
        stable_hash=view.stable_hash,
        instance_id=view.ctx.instance_id,
    )
    manifest = runs.build_run(request, sources)
    draft.runs_to_create.append(manifest)
    status = {"name": request.name, "status": str(AnalysisPhase.PENDING)}
    if key.step_index is None:
        draft.background_run_status = status
    else:
        draft.step_run_status = status


def _follow_run(
    view: View, draft: Draft, run: Mapping[str, Any], abort_message: str, step_run: bool
) -> bool:
    """Record the run's phase in status; abort, pause or report success."""
    phase = runs.run_phase(run)
    message = runs.run_message(run)
    status: dict[str, Any] = {"name": runs.run_name(run), "status": str(phase or AnalysisPhase.PENDING)}
    if message:
        status["message"] = message
    if step_run:
        draft.step_run_status = status
    else:
        draft.background_run_status = status
    if phase in (AnalysisPhase.FAILED, AnalysisPhase.ERROR):
        draft.abort = True
        draft.abort_reason = abort_message.format(message=message or phase)
        return False
    if phase == AnalysisPhase.INCONCLUSIVE:
        return _inconclusive(view, draft)
    return phase == AnalysisPhase.SUCCESSFUL


def _inconclusive(view: View, draft: Draft) -> bool:
    """Pause on an inconclusive run; a user's resume (conditions cleared) skips past it."""
    if _user_unpaused(view):
        return True
    now = format_time(view.ctx.now)
    if draft.add_pause(PauseReason.INCONCLUSIVE_ANALYSIS, now):
        draft.event(EventReason.PAUSED, MSG_PAUSED_EVENT.format(reason=PauseReason.INCONCLUSIVE_ANALYSIS))
    return False


def _user_unpaused(view: View) -> bool:
    """Argo's "unpausing": the controller paused, then someone cleared pauseConditions."""
    return bool(view.status.get("controllerPause")) and not view.status.get("pauseConditions")


def reconcile_pause_step(view: View, draft: Draft, now: datetime) -> bool:
    """Pause at a pause step; True when the pause is over (timer or user resume)."""
    step = view.steps.current
    if step is None or step.pause is None or draft.abort or draft.promote_full:
        return False
    if _user_unpaused(view):
        return True
    duration = pause_duration(step)
    existing = next(
        (c for c in draft.pause_conditions if c.get("reason") == PauseReason.CANARY_PAUSE_STEP), None
    )
    if existing is None:
        if duration is not None and duration.total_seconds() <= 0:
            return True
        draft.add_pause(PauseReason.CANARY_PAUSE_STEP, format_time(now))
        draft.event(EventReason.PAUSED, MSG_PAUSED_EVENT.format(reason=PauseReason.CANARY_PAUSE_STEP))
        if duration is not None:
            draft.waits.append(duration.total_seconds())
        return False
    started = parse_time(existing.get("startTime")) or now
    if duration is None:
        return False
    remaining = (started + duration - now).total_seconds()
    if remaining <= 0:
        return True
    draft.waits.append(remaining)
    return False


def advance_step(view: View, draft: Draft) -> None:
    """Move to the next step (at most one per reconcile) and say so."""
    if view.steps.index is None or view.steps.current is None or draft.step_completed:
        return
    if draft.promoted_now:
        # Promotion already put the index past the last step; Argo returns after
        # promoteStable, before completedCurrentCanaryStep. With replicas 0 the first
        # step's counts are met at once, and would otherwise pull the index back to 1.
        return
    step = view.steps.current
    draft.index = view.steps.index + 1
    draft.step_completed = True
    draft.drop_pause(PauseReason.CANARY_PAUSE_STEP)
    draft.drop_pause(PauseReason.INCONCLUSIVE_ANALYSIS)
    if not draft.pause_conditions:
        draft.controller_pause = False
    draft.step_run_status = None
    draft.event(
        EventReason.STEP_COMPLETED,
        MSG_STEP_COMPLETED.format(index=draft.index, count=view.steps.count, step=describe(step)),
    )


def enter_pause_step(view: View, draft: Draft, now: datetime) -> None:
    """If the step just reached is a pause, begin it in this same plan.

    Argo begins the pause one reconcile (and one status write) later; the state
    and the Events are the same, and a step transition costs one write less.
    """
    if not draft.step_completed or draft.index is None or draft.index >= view.steps.count:
        return
    step = view.steps.steps[draft.index]
    if step.pause is None:
        return
    duration = pause_duration(step)
    if duration is not None and duration.total_seconds() <= 0:
        return
    if draft.add_pause(PauseReason.CANARY_PAUSE_STEP, format_time(now)):
        draft.event(EventReason.PAUSED, MSG_PAUSED_EVENT.format(reason=PauseReason.CANARY_PAUSE_STEP))
        if duration is not None:
            draft.waits.append(duration.total_seconds())


def promote(view: View, draft: Draft, why: str) -> None:
    """Make the desired ReplicaSet stable (Argo's promoteStable)."""
    draft.stable_hash = view.new_hash
    draft.promoted_now = True
    draft.index = view.steps.count if view.steps.count else None
    draft.pause_conditions = []
    draft.controller_pause = False
    draft.abort = False
    draft.promote_full = False
    draft.background_run_status = None
    _terminate_current_runs(view, draft, include_completed=False)
    draft.event(
        EventReason.COMPLETED,
        MSG_COMPLETED_EVENT.format(revision=revision(view), hash=view.new_hash, why=why),
    )
