"""The small protocol every metric provider implements, and what it returns.

Called by the AnalysisRun controller (analysis/controller.py) once a measurement
is due. A provider never raises into the reconcile: any failure comes back as an
Observation with phase Error and a message a person can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from analysis.api.phases import AnalysisPhase
from analysis.run import Observation
from common.redaction import redact


@dataclass(frozen=True)
class MeasurementContext:
    """Where a measurement happens: the run it belongs to and the clock.

    ``metric`` is the metric as a plain dict (camelCase keys, as in the CRD) with
    every ``{{args.x}}`` already substituted; secrets are real values here and must
    never be copied into messages or metadata (use ``redact``: it knows their encoded forms).
    """

    namespace: str
    run_name: str
    run_uid: str
    metric: Mapping[str, Any]
    now: datetime
    secrets: tuple[str, ...] = ()

    def redact(self, text: str) -> str:
        """Replace every form of every secret value in ``text`` with ``*****``."""
        return redact(text, self.secrets)


class MetricProvider(Protocol):
    """Argo's provider interface, in Python: run, resume, terminate, garbage_collect."""

    kind: str

    def run(self, ctx: MeasurementContext) -> Observation: ...

    def resume(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation: ...

    def terminate(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation: ...

    def garbage_collect(self, ctx: MeasurementContext, limit: int) -> None: ...


MSG_TERMINATED = "Metric Terminated"
MSG_NOT_RESUMABLE = "the {kind} provider measures synchronously and has nothing to resume"


class SynchronousProvider:
    """resume / terminate / garbage_collect for providers that answer inside ``run``.

    A query or a request leaves nothing in flight and no objects behind, so:
    resume is an Error (nothing to resume), terminate ends the measurement
    Inconclusive with "Metric Terminated", and there is nothing to collect.
    """

    kind: str = ""

    def resume(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation:
        return Observation.error(MSG_NOT_RESUMABLE.format(kind=self.kind), **dict(metadata))

    def terminate(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation:
        return Observation(phase=AnalysisPhase.INCONCLUSIVE, message=MSG_TERMINATED, metadata=dict(metadata))

    def garbage_collect(self, ctx: MeasurementContext, limit: int) -> None:
        """Nothing to collect."""
