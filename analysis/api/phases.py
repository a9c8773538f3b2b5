"""Analysis phases and their one worst-first order.

Shared by the AnalysisRun controller (which decides phases) and the rollout
controller (which only reads a run's phase). Argo's order, best to worst:
Successful < Running < Pending < Inconclusive < Error < Failed.
"""

from __future__ import annotations

import enum


class AnalysisPhase(enum.StrEnum):
    """Phase of a measurement, a metric or a whole AnalysisRun (Argo's names)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    ERROR = "Error"
    INCONCLUSIVE = "Inconclusive"

    @property
    def completed(self) -> bool:
        """True for the phases a run or metric never leaves."""
        return self in _COMPLETED

    @property
    def severity(self) -> int:
        """Rank in Argo's order; a larger number is worse."""
        return _ORDER.index(self)


# Best first, worst last (Argo: utils/analysis/helpers.go analysisStatusOrder).
_ORDER: tuple[AnalysisPhase, ...] = (
    AnalysisPhase.SUCCESSFUL,
    AnalysisPhase.RUNNING,
    AnalysisPhase.PENDING,
    AnalysisPhase.INCONCLUSIVE,
    AnalysisPhase.ERROR,
    AnalysisPhase.FAILED,
)
_COMPLETED = frozenset(
    {AnalysisPhase.SUCCESSFUL, AnalysisPhase.FAILED, AnalysisPhase.ERROR, AnalysisPhase.INCONCLUSIVE}
)


def worst(phases: list[AnalysisPhase] | tuple[AnalysisPhase, ...]) -> AnalysisPhase | None:
    """The worst phase of several, or None when there are none."""
    return max(phases, key=lambda p: p.severity) if phases else None
