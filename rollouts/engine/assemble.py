"""Build the complete new ``status`` from a Draft: counters, conditions, phase (§1.11).

Called last by ``reconcile.plan``. Keys set to None are deletions when the I/O
layer merge-patches the status. Timestamps are kept for unchanged conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from common.api import format_time
from rollouts.api.constants import (
    DEFAULT_PROGRESS_DEADLINE_SECONDS,
    ConditionReason,
    ConditionType,
    EventReason,
    RolloutPhase,
)
from rollouts.engine import restart
from rollouts.engine import status as st
from rollouts.engine.draft import Draft
from rollouts.engine.observe import View, parse_time
from rollouts.engine.progress import revision
from rollouts.engine.steps import is_indefinite

MSG_COMPLETED_CONDITION = "Rollout completed update to revision {revision} ({hash})"
MSG_NOT_COMPLETED_EVENT = "Rollout not completed, started update to revision {revision} ({hash})"
_DEADLINE_CLOCK_REASONS = {
    ConditionReason.RS_UPDATED,
    ConditionReason.NEW_RS_CREATED,
    ConditionReason.FOUND_NEW_RS,
    ConditionReason.RESUMED,
    ConditionReason.RETRY,
}


@dataclass(frozen=True)
class Counters:
    """Pod counts across the rollout's ReplicaSets, as observed."""

    replicas: int
    updated: int
    ready: int
    available: int


def counters(view: View) -> Counters:
    return Counters(
        replicas=sum(rs.pods for rs in view.all_rs),
        updated=view.new_rs.pods if view.new_rs else 0,
        ready=sum(rs.ready for rs in view.all_rs),
        available=sum(rs.available for rs in view.all_rs),
    )


def selector_string(view: View) -> str:
    labels = view.rollout.spec.selector.match_labels if view.rollout.spec.selector else None
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


def _made_progress(view: View, draft: Draft, count: Counters) -> bool:
    """Argo's RolloutProgressing: counts grew, old pods shrank, stable/step/hash changed."""
    prev = view.status
    return (
        count.updated > (prev.get("updatedReplicas") or 0)
        or count.ready > (prev.get("readyReplicas") or 0)
        or count.available > (prev.get("availableReplicas") or 0)
        or count.replicas < (prev.get("replicas") or 0)
        or draft.stable_hash != prev.get("stableRS")
        or draft.index != prev.get("currentStepIndex")
        or view.step_hash != prev.get("currentStepHash")
    )


def _paused(view: View, draft: Draft) -> bool:
    return bool(view.rollout.spec.paused) or bool(draft.pause_conditions)


def _complete(view: View, draft: Draft, count: Counters) -> bool:
    return (
        draft.stable_hash == view.new_hash
        and count.updated >= view.spec_replicas
        and count.available >= view.spec_replicas
    )


def progressing(view: View, draft: Draft, count: Counters, created: bool) -> tuple[st.Cond, bool]:
    """The Progressing condition and whether progress was made (touches lastUpdateTime)."""
    rs_name = f"{view.name}-{view.new_hash}"
    previous = st.find_condition(view.status.get("conditions") or (), ConditionType.PROGRESSING)
    if draft.abort:
        message = st.MSG_ABORTED.format(revision=revision(view))
        if draft.abort_reason:
            message = f"{message}: {draft.abort_reason}"
        elif previous is not None and previous.get("reason") == ConditionReason.ABORTED:
            message = str(previous.get("message"))
        return st.Cond(ConditionType.PROGRESSING, st.FALSE, ConditionReason.ABORTED, message), False
    if draft.retrying:
        return st.Cond(ConditionType.PROGRESSING, st.UNKNOWN, ConditionReason.RETRY, st.MSG_RETRY), True
    if created:
        message = st.MSG_RS_CREATED.format(name=rs_name)
        return st.Cond(ConditionType.PROGRESSING, st.TRUE, ConditionReason.NEW_RS_CREATED, message), True
    if _complete(view, draft, count):
        message = st.MSG_RS_PROGRESSED.format(name=rs_name)
        return st.Cond(ConditionType.PROGRESSING, st.TRUE, ConditionReason.NEW_RS_AVAILABLE, message), False
    if _paused(view, draft):
        return st.Cond(ConditionType.PROGRESSING, st.UNKNOWN, ConditionReason.PAUSED, st.MSG_PAUSED), False
    if previous is not None and previous.get("reason") == ConditionReason.PAUSED:
        return st.Cond(ConditionType.PROGRESSING, st.UNKNOWN, ConditionReason.RESUMED, st.MSG_RESUMED), True
    updating = st.Cond(
        ConditionType.PROGRESSING, st.TRUE, ConditionReason.RS_UPDATED, st.MSG_RS_PROGRESSING.format(name=rs_name)
    )
    # Nothing could progress while the spec was invalid: the deadline's clock starts again now.
    invalid_before = previous is not None and previous.get("reason") == ConditionReason.INVALID_SPEC
    if previous is None or invalid_before or _made_progress(view, draft, count):
        return updating, True
    if deadline_left(view, draft, previous) is not None and (deadline_left(view, draft, previous) or 0) <= 0:
        message = st.MSG_RS_TIMED_OUT.format(name=rs_name)
        return st.Cond(ConditionType.PROGRESSING, st.FALSE, ConditionReason.PROGRESS_DEADLINE_EXCEEDED, message), False
    return (
        st.Cond(
            ConditionType.PROGRESSING,
            str(previous.get("status")),
            str(previous.get("reason")),
            str(previous.get("message")),
        ),
        False,
    )


def deadline_left(view: View, draft: Draft, previous: Any) -> float | None:
    """Seconds until progressDeadlineSeconds runs out; None when the clock is stopped."""
    if previous is None or previous.get("reason") not in _DEADLINE_CLOCK_REASONS:
        return None
    if _paused(view, draft) or is_indefinite(view.steps.current):
        return None
    updated = parse_time(previous.get("lastUpdateTime"))
    if updated is None:
        return None
    seconds = view.rollout.spec.progress_deadline_seconds
    limit = timedelta(seconds=DEFAULT_PROGRESS_DEADLINE_SECONDS if seconds is None else seconds)
    return (updated + limit - view.ctx.now).total_seconds()


def conditions(view: View, draft: Draft, count: Counters, created: bool) -> list[dict[str, Any]]:
    """All conditions except Healthy (which needs the phase)."""
    now = format_time(view.ctx.now)
    result: list[dict[str, Any]] = [dict(c) for c in view.status.get("conditions") or ()]
    st.remove_condition(result, ConditionType.INVALID_SPEC)
    # A rejected ReplicaSet create is reported by the I/O layer, which writes this plan's
    # status only after every create succeeded: a plan that creates the ReplicaSet is
    # written only if the create worked, one that creates none found it existing.
    st.remove_condition(result, ConditionType.REPLICA_SET_CREATE_ERROR)
    cond, touch = progressing(view, draft, count, created)
    st.set_condition(result, cond, now, touch=touch)
    available = count.available >= view.spec_replicas
    st.set_condition(
        result,
        st.Cond(
            ConditionType.AVAILABLE,
            st.TRUE if available else st.FALSE,
            ConditionReason.AVAILABLE,
            st.MSG_AVAILABLE if available else st.MSG_NOT_AVAILABLE,
        ),
        now,
    )
    _paused_condition(view, draft, result, now)
    _completed_condition(view, draft, result, now)
    return result


def _paused_condition(view: View, draft: Draft, result: list[dict[str, Any]], now: str) -> None:
    previous = st.find_condition(result, ConditionType.PAUSED)
    if _paused(view, draft) and not draft.abort:
        st.set_condition(result, st.Cond(ConditionType.PAUSED, st.TRUE, ConditionReason.PAUSED, st.MSG_PAUSED), now)
        return
    if previous is None:
        return
    if previous.get("status") == st.TRUE and not draft.abort:
        draft.event(EventReason.RESUMED, st.MSG_RESUMED)
    st.set_condition(result, st.Cond(ConditionType.PAUSED, st.FALSE, ConditionReason.RESUMED, st.MSG_RESUMED), now)


def _completed_condition(view: View, draft: Draft, result: list[dict[str, Any]], now: str) -> None:
    previous = st.find_condition(result, ConditionType.COMPLETED)
    rev = revision(view)
    if draft.stable_hash == view.new_hash:
        message = MSG_COMPLETED_CONDITION.format(revision=rev, hash=view.new_hash)
        st.set_condition(result, st.Cond(ConditionType.COMPLETED, st.TRUE, ConditionReason.COMPLETED, message), now)
        return
    message = MSG_NOT_COMPLETED_EVENT.format(revision=rev, hash=view.new_hash)
    if previous is None or previous.get("status") != st.FALSE or previous.get("message") != message:
        draft.event(EventReason.NOT_COMPLETED, message)
    st.set_condition(
        result, st.Cond(ConditionType.COMPLETED, st.FALSE, ConditionReason.NOT_COMPLETED, message), now
    )


def build_status(view: View, draft: Draft, created: bool = False) -> dict[str, Any]:
    """The complete new status (None values delete keys in a merge patch)."""
    count = counters(view)
    status: dict[str, Any] = dict(view.status)
    generation = view.rollout.metadata.generation
    status.update(
        {
            "observedGeneration": str(generation) if generation is not None else None,
            "currentPodHash": view.new_hash,
            "currentStepHash": view.step_hash,
            "currentStepIndex": draft.index,
            "stableRS": draft.stable_hash,
            "abort": True if draft.abort else None,
            "abortedAt": draft.aborted_at,
            "pauseConditions": draft.pause_conditions or None,
            "controllerPause": True if draft.pause_conditions else None,
            "promoteFull": True if draft.promote_full else None,
            "replicas": count.replicas,
            "updatedReplicas": count.updated,
            "readyReplicas": count.ready,
            "availableReplicas": count.available,
            "HPAReplicas": count.replicas,
            "selector": selector_string(view),
            "canary": _canary_status(view, draft),
        }
    )
    status["conditions"] = conditions(view, draft, count, created)
    phase, message = st.phase_and_message(
        st.PhaseInputs(
            conditions=status["conditions"],
            spec_paused=bool(view.rollout.spec.paused),
            pause_reasons=draft.pause_reasons(),
            controller_pause=False,
            restarting=restart.plan_restart(view).restarting,
            spec_replicas=view.spec_replicas,
            replicas=count.replicas,
            updated=count.updated,
            available=count.available,
            basic_canary=not view.routed,
            stable_hash=draft.stable_hash,
            current_hash=view.new_hash,
        )
    )
    status["phase"], status["message"] = str(phase), message
    healthy = phase == RolloutPhase.HEALTHY
    st.set_condition(
        status["conditions"],
        st.Cond(
            ConditionType.HEALTHY,
            st.TRUE if healthy else st.FALSE,
            ConditionReason.HEALTHY,
            st.MSG_HEALTHY if healthy else st.MSG_NOT_HEALTHY,
        ),
        format_time(view.ctx.now),
    )
    return status


def _canary_status(view: View, draft: Draft) -> dict[str, Any]:
    canary: dict[str, Any] = dict(view.status.get("canary") or {})
    canary["currentStepAnalysisRunStatus"] = draft.step_run_status
    canary["currentBackgroundAnalysisRunStatus"] = draft.background_run_status
    canary["weights"] = draft.weights if view.routed else None
    if draft.weights is None and view.routed:
        canary["weights"] = (view.status.get("canary") or {}).get("weights")
    return canary
