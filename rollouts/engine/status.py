"""Rollout conditions, phase and message (semantics reference §1.11), pure.

Called by the reconcile planner after it decided what happens this reconcile.
Timestamps are kept when a condition did not change, so re-planning the same
state writes nothing (a re-stamped time would make every reconcile a write).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollouts.api.constants import ConditionReason, ConditionType, RolloutPhase

# --- messages (Argo's wording) ------------------------------------------------------------
MSG_MANUALLY_PAUSED = "manually paused"
MSG_RESTARTING = "rollout is restarting"
MSG_MORE_REPLICAS = "more replicas need to be updated"
MSG_BECOMING_AVAILABLE = "updated replicas are still becoming available"
MSG_OLD_PENDING = "old replicas are pending termination"
MSG_WAITING_STEPS = "waiting for all steps to complete"
MSG_WAITING_UNPAUSE = "waiting for rollout to unpause"
MSG_RS_PROGRESSING = 'ReplicaSet "{name}" is progressing.'
MSG_RS_PROGRESSED = 'ReplicaSet "{name}" has successfully progressed.'
MSG_RS_CREATED = 'Created new replica set "{name}"'
MSG_RS_TIMED_OUT = 'ReplicaSet "{name}" has timed out progressing.'
MSG_PAUSED = "Rollout is paused"
MSG_RESUMED = "Rollout is resumed"
MSG_RETRY = "Retrying Rollout after abort"
MSG_ABORTED = "Rollout aborted update to revision {revision}"
MSG_AVAILABLE = "Rollout has minimum availability"
MSG_NOT_AVAILABLE = "Rollout does not have minimum availability"
MSG_HEALTHY = "Rollout is healthy"
MSG_NOT_HEALTHY = "Rollout is not healthy"
MSG_NOT_PROGRESSING_INVALID = "Rollout is not progressing: its spec is invalid"
MSG_NOT_COMPLETED_INVALID = "Rollout not completed: its spec is invalid"

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclass(frozen=True)
class Cond:
    """A condition to set: type, status, reason, message."""

    type: ConditionType
    status: str
    reason: str
    message: str


def find_condition(conditions: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    """The condition of that type, or None."""
    for condition in conditions:
        if condition.get("type") == kind:
            return condition
    return None


def set_condition(
    conditions: list[dict[str, Any]], cond: Cond, now: str, touch: bool = False
) -> None:
    """Insert or update ``cond`` in place, keeping timestamps when nothing changed.

    ``lastTransitionTime`` moves only when the status flips; ``lastUpdateTime``
    moves when reason or message change, or when ``touch`` (progress was made).
    """
    position = next((i for i, c in enumerate(conditions) if c.get("type") == cond.type), None)
    previous = None if position is None else conditions[position]
    entry: dict[str, Any] = {
        "type": str(cond.type),
        "status": cond.status,
        "reason": str(cond.reason),
        "message": cond.message,
        "lastTransitionTime": now,
        "lastUpdateTime": now,
    }
    if previous is not None and position is not None:
        same_status = previous.get("status") == cond.status
        same_text = previous.get("reason") == cond.reason and previous.get("message") == cond.message
        if same_status:
            entry["lastTransitionTime"] = previous.get("lastTransitionTime", now)
        if same_status and same_text and not touch:
            entry["lastUpdateTime"] = previous.get("lastUpdateTime", now)
        conditions[position] = entry
    else:
        conditions.append(entry)


def remove_condition(conditions: list[dict[str, Any]], kind: str) -> None:
    """Drop the condition of that type if present."""
    conditions[:] = [c for c in conditions if c.get("type") != kind]


@dataclass(frozen=True)
class InvalidInputs:
    """What a reconcile of a Rollout whose spec is invalid observed (a table row in tests)."""

    previous: Sequence[Mapping[str, Any]]
    """``status.conditions`` as read."""
    message: str
    """Why the spec is invalid."""
    available: bool
    """The ReplicaSets' available pods reach spec.replicas."""
    completed_message: str | None
    """The Completed message when the desired pod template is the stable one, else None."""
    in_flight: bool
    """The desired pod template is the one status already reports as current."""


# A stopped rollout stays stopped while its spec is invalid: the retry after an abort and
# the deadline's Degraded phase are decided from these reasons once the spec is fixed.
_PROGRESSING_KEPT_WHILE_INVALID = (ConditionReason.ABORTED, ConditionReason.PROGRESS_DEADLINE_EXCEEDED)


def invalid_spec_conditions(inputs: InvalidInputs, now: str) -> list[dict[str, Any]]:
    """Every condition of a Rollout whose spec is invalid, recomputed from what was observed.

    Healthy is False whenever InvalidSpec is True; Completed is True only while the
    stable ReplicaSet runs the pod template the spec asks for; Progressing says the
    controller cannot progress (unless an abort or an exceeded deadline already
    stopped it). Paused follows ``status.pauseConditions``, which an invalid reconcile
    leaves as they are, so it is kept. A stale ReplicaSetCreateError goes: InvalidSpec
    now says why nothing is created. Timestamps move only with a condition's status.
    """
    result = [dict(c) for c in inputs.previous]
    remove_condition(result, ConditionType.REPLICA_SET_CREATE_ERROR)
    progressing = find_condition(result, ConditionType.PROGRESSING)
    if progressing is None or progressing.get("reason") not in _PROGRESSING_KEPT_WHILE_INVALID:
        set_condition(result, Cond(ConditionType.PROGRESSING, FALSE, ConditionReason.INVALID_SPEC,
                                   MSG_NOT_PROGRESSING_INVALID), now)
    set_condition(result, Cond(ConditionType.AVAILABLE, TRUE if inputs.available else FALSE,
                               ConditionReason.AVAILABLE,
                               MSG_AVAILABLE if inputs.available else MSG_NOT_AVAILABLE), now)
    set_condition(result, _completed_while_invalid(inputs, find_condition(result, ConditionType.COMPLETED)), now)
    set_condition(result, Cond(ConditionType.INVALID_SPEC, TRUE, ConditionReason.INVALID_SPEC, inputs.message), now)
    set_condition(result, Cond(ConditionType.HEALTHY, FALSE, ConditionReason.HEALTHY, MSG_NOT_HEALTHY), now)
    return result


def _completed_while_invalid(inputs: InvalidInputs, previous: Mapping[str, Any] | None) -> Cond:
    if inputs.completed_message is not None:
        message = inputs.completed_message
        if previous is not None and previous.get("status") == TRUE:
            message = str(previous.get("message"))  # the same completion, as it was worded
        return Cond(ConditionType.COMPLETED, TRUE, ConditionReason.COMPLETED, message)
    if inputs.in_flight and previous is not None and previous.get("status") == FALSE:
        # Still the update already under way: keep its wording, so fixing the spec
        # announces no second "not completed" for the same revision.
        return Cond(ConditionType.COMPLETED, FALSE, str(previous.get("reason")), str(previous.get("message")))
    return Cond(ConditionType.COMPLETED, FALSE, ConditionReason.NOT_COMPLETED, MSG_NOT_COMPLETED_INVALID)


@dataclass(frozen=True)
class PhaseInputs:
    """What phase calculation reads (kept small so it can be tested as a table)."""

    conditions: Sequence[Mapping[str, Any]]
    spec_paused: bool
    pause_reasons: Sequence[str]
    controller_pause: bool
    restarting: bool
    spec_replicas: int
    replicas: int
    updated: int
    available: int
    basic_canary: bool
    stable_hash: str | None
    current_hash: str | None


_DEGRADING = (ConditionReason.ABORTED, ConditionReason.PROGRESS_DEADLINE_EXCEEDED)


def phase_and_message(inputs: PhaseInputs) -> tuple[RolloutPhase, str]:
    """Argo's CalculateRolloutPhase, in its order (the first matching rule wins)."""
    invalid = find_condition(inputs.conditions, ConditionType.INVALID_SPEC)
    if invalid is not None and invalid.get("status") == TRUE:
        return RolloutPhase.DEGRADED, f"{ConditionReason.INVALID_SPEC}: {invalid.get('message', '')}"
    progressing = find_condition(inputs.conditions, ConditionType.PROGRESSING)
    if progressing is not None and progressing.get("reason") in _DEGRADING:
        return RolloutPhase.DEGRADED, f"{progressing['reason']}: {progressing.get('message', '')}"
    if inputs.spec_paused:
        return RolloutPhase.PAUSED, MSG_MANUALLY_PAUSED
    if inputs.pause_reasons:
        return RolloutPhase.PAUSED, inputs.pause_reasons[0]
    if inputs.controller_pause:
        return RolloutPhase.PROGRESSING, MSG_WAITING_UNPAUSE
    return _progress_phase(inputs)


def _progress_phase(inputs: PhaseInputs) -> tuple[RolloutPhase, str]:
    if inputs.restarting:
        return RolloutPhase.PROGRESSING, MSG_RESTARTING
    if inputs.updated < inputs.spec_replicas:
        return RolloutPhase.PROGRESSING, MSG_MORE_REPLICAS
    if inputs.available < inputs.updated:
        return RolloutPhase.PROGRESSING, MSG_BECOMING_AVAILABLE
    if inputs.basic_canary and inputs.replicas > inputs.updated:
        return RolloutPhase.PROGRESSING, MSG_OLD_PENDING
    if not inputs.stable_hash or inputs.stable_hash != inputs.current_hash:
        return RolloutPhase.PROGRESSING, MSG_WAITING_STEPS
    return RolloutPhase.HEALTHY, ""
