"""The mutable working copy of one reconcile's decisions (internal to the engine).

``reconcile.plan`` fills a Draft concern by concern (abort, analysis, pause,
scaling, steps, traffic) and freezes it into a ``Plan`` at the end. Keeping it
in one place lets each concern be a short function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollouts.api.constants import EventReason, EventType, PodTemplateHash
from rollouts.engine.context import Event, ReplicaSetUpdate, TrafficIntent


@dataclass
class Draft:
    """Status fields being decided plus the writes collected so far."""

    index: int | None
    pause_conditions: list[dict[str, Any]]
    controller_pause: bool
    abort: bool
    aborted_at: str | None
    promote_full: bool
    stable_hash: PodTemplateHash | None
    step_run_status: dict[str, Any] | None
    background_run_status: dict[str, Any] | None
    abort_reason: str | None = None
    """Why an abort happened this reconcile (appended to the RolloutAborted message)."""
    retrying: bool = False
    step_completed: bool = False
    promoted_now: bool = False
    events: list[Event] = field(default_factory=list)
    rs_updates: dict[str, ReplicaSetUpdate] = field(default_factory=dict)
    runs_to_create: list[dict[str, Any]] = field(default_factory=list)
    runs_to_terminate: list[str] = field(default_factory=list)
    service_selectors: dict[str, PodTemplateHash] = field(default_factory=dict)
    traffic: TrafficIntent | None = None
    weights: dict[str, Any] | None = None
    remove_abort_annotation: bool = False
    waits: list[float] = field(default_factory=list)
    """Seconds until each pending timed thing; the plan re-queues at the smallest."""

    def event(self, reason: EventReason, message: str, warning: bool = False) -> None:
        kind = EventType.WARNING if warning else EventType.NORMAL
        self.events.append(Event(type=kind, reason=str(reason), message=message))

    def terminate(self, name: str) -> None:
        if name not in self.runs_to_terminate:
            self.runs_to_terminate.append(name)

    def pause_reasons(self) -> list[str]:
        return [str(c.get("reason")) for c in self.pause_conditions]

    def add_pause(self, reason: str, now: str) -> bool:
        """Add a pause condition once; True when it was new."""
        if reason in self.pause_reasons():
            return False
        self.pause_conditions.append({"reason": str(reason), "startTime": now})
        self.controller_pause = True
        return True

    def drop_pause(self, reason: str) -> None:
        self.pause_conditions = [c for c in self.pause_conditions if c.get("reason") != reason]
