"""Canary steps: which one is current, what weight it asks for, how long a pause lasts.

Pure helpers for the reconcile planner (semantics reference §1.2, §1.3 and §2
"weight sequencing").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from common.api import parse_duration
from rollouts.api.models import CanaryStep, SetCanaryScale

FULL_WEIGHT = 100


@dataclass(frozen=True)
class StepView:
    """The steps of a rollout and where it stands in them."""

    steps: tuple[CanaryStep, ...]
    index: int | None
    """``status.currentStepIndex``; None when the rollout has no steps."""

    @property
    def count(self) -> int:
        return len(self.steps)

    @property
    def current(self) -> CanaryStep | None:
        """The step being executed, or None when all are done (or there are none)."""
        if self.index is None or self.index >= len(self.steps):
            return None
        return self.steps[self.index]

    @property
    def finished(self) -> bool:
        """True once the index reached ``len(steps)`` (or there are no steps)."""
        return self.index is None or self.index >= len(self.steps)


def make_step_view(steps: Sequence[CanaryStep] | None, index: int | None) -> StepView:
    """A StepView with the index clamped to ``0..len(steps)`` (None when no steps)."""
    all_steps = tuple(steps or ())
    if not all_steps:
        return StepView(steps=all_steps, index=None)
    clamped = min(max(index or 0, 0), len(all_steps))
    return StepView(steps=all_steps, index=clamped)


def set_weight_at(view: StepView, index: int | None) -> int:
    """The desired canary weight at ``index``: the last setWeight at or before it.

    0 before any setWeight; 100 once every step is done (Argo's GetCurrentSetWeight).
    """
    if index is None or index >= len(view.steps):
        return FULL_WEIGHT
    weight = 0
    for step in view.steps[: index + 1]:
        if step.set_weight is not None:
            weight = step.set_weight
    return weight


def previous_set_weight(view: StepView) -> int:
    """The setWeight that was in force before the current step (0 at the first step)."""
    if view.index is None:
        return FULL_WEIGHT
    if view.index == 0:
        return 0
    return set_weight_at(view, view.index - 1)


def canary_scale_at(view: StepView) -> SetCanaryScale | None:
    """The setCanaryScale in force: the latest at or before the index, unless it matches traffic."""
    if view.index is None or view.index >= len(view.steps):
        return None
    for step in reversed(view.steps[: view.index + 1]):
        if step.set_canary_scale is not None:
            scale = step.set_canary_scale
            return None if scale.match_traffic_weight else scale
    return None


def pause_duration(step: CanaryStep) -> timedelta | None:
    """A pause step's duration; None for an indefinite pause (or a non-pause step).

    An int is seconds, a bare numeric string is seconds too, anything else is a Go
    duration (``30s``, ``5m``, ``1h``). Raises ValueError on a bad string.
    """
    if step.pause is None or step.pause.duration is None:
        return None
    raw = step.pause.duration
    if isinstance(raw, int):
        return timedelta(seconds=raw)
    if raw.strip().lstrip("-").isdigit():
        return timedelta(seconds=int(raw))
    return parse_duration(raw)


def describe(step: CanaryStep) -> str:
    """Short text for events: ``setWeight: 10``, ``pause: 5m``, ``pause``, ``analysis``."""
    if step.set_weight is not None:
        return f"setWeight: {step.set_weight}"
    if step.pause is not None:
        return "pause" if step.pause.duration is None else f"pause: {step.pause.duration}"
    for name, value in (
        ("analysis", step.analysis),
        ("setCanaryScale", step.set_canary_scale),
        ("experiment", step.experiment),
        ("plugin", step.plugin),
    ):
        if value is not None:
            return name
    return "step"


def is_indefinite(step: CanaryStep | None) -> bool:
    """Steps whose waiting time does not count against progressDeadlineSeconds."""
    return step is not None and (
        step.pause is not None or step.analysis is not None or step.experiment is not None
    )
