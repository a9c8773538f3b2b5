"""How large an AnalysisRun status may get, and how it is made to fit. Pure.

A status the API server will not take means no status at all: the run never
gets a phase, nobody is told, and the controller retries forever. The API
server refuses a request body over 3 MiB and etcd an object over 1.5 MiB (the
spec counts too), and a web metric can answer 10 MB of JSON. So:

* ``analysis.run`` clips every measurement's value, message and metadata when it
  records them (``MAX_*_CHARS``), so a huge answer is never kept in memory;
* ``analysis.controller.Controller._write`` calls ``shape_status`` (redact and clip
  every free-text field, whatever wrote it) and then ``fit_status`` before each
  patch: a status over ``STATUS_BUDGET_BYTES`` is degraded step by step, and if
  even the shortest form is over, ``over_budget_status`` ends the run Error with
  a message saying so.

Sizes are counted as ``len(json.dumps(status))``: ASCII-escaped, so characters
and bytes agree, and never smaller than what the kubernetes client sends.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

from analysis.api.phases import AnalysisPhase
from common.redaction import Redactor

# A measured value is shown for people; its head says what it was.
MAX_VALUE_CHARS = 4 * 1024
# Messages (measurement, metric, run) keep their start and their end: the end
# usually says why (the provider's error after a long URL or query).
MAX_MESSAGE_CHARS = 2 * 1024
MESSAGE_TAIL_CHARS = 512
# Metadata values are identifiers and resolved queries.
MAX_METADATA_CHARS = 4 * 1024
# Free text in a degraded status.
SHORT_CHARS = 256
# The whole status: well under etcd's 1.5 MiB object limit, leaving room for a
# large spec (a run's spec is its templates, which users write).
STATUS_BUDGET_BYTES = 256 * 1024

MSG_OVER_BUDGET = (
    "status too large to store: {size} bytes, over the controller's budget of {budget} "
    "bytes even after dropping old measurements and shortening values and messages; "
    "the run stops here. Reduce the number of metrics or what they return "
    "(use jsonPath for web metrics, aggregate Prometheus queries)"
)
MSG_REJECTED = (
    "the API server rejected the status update ({code} {reason}): {detail}; "
    "the run stops here. Reduce what the metrics return "
    "(use jsonPath for web metrics, aggregate Prometheus queries)"
)
MAX_REJECTION_DETAIL_CHARS = 300

_PLAIN = Redactor(())
# The counters a metric result keeps in the shortest form: the run's history in numbers.
_COUNTERS = ("name", "phase", "count", "successful", "failed", "inconclusive", "error",
             "consecutiveError", "consecutiveSuccess", "dryRun")


def status_size(doc: Mapping[str, Any]) -> int:
    """The status's size as the budget counts it."""
    return len(json.dumps(doc))


def _clip_message(redactor: Redactor, text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return redactor.clip(text, limit=limit, tail=min(MESSAGE_TAIL_CHARS, limit // 4))


def _clip_fields(doc: dict[str, Any], redactor: Redactor, *, message: int, value: int,
                 metadata: int) -> None:
    if isinstance(doc.get("message"), str):
        doc["message"] = _clip_message(redactor, doc["message"], message)
    if isinstance(doc.get("value"), str):
        doc["value"] = redactor.clip(doc["value"], limit=value)
    if isinstance(doc.get("metadata"), dict):
        doc["metadata"] = {key: redactor.clip(text, limit=metadata) if isinstance(text, str)
                           else text for key, text in doc["metadata"].items()}


def _each_part(status: dict[str, Any], apply: Callable[[dict[str, Any]], None]) -> None:
    """``apply`` to the status, every metric result and every measurement (in place)."""
    apply(status)
    for result in status.get("metricResults") or []:
        apply(result)
        for measurement in result.get("measurements") or []:
            apply(measurement)


def shape_status(status: dict[str, Any], redactor: Redactor, *,
                 message: int = MAX_MESSAGE_CHARS, value: int = MAX_VALUE_CHARS,
                 metadata: int = MAX_METADATA_CHARS) -> dict[str, Any]:
    """Redact and clip every message, value and metadata value of a status document.

    Only those fields: names and timestamps are the controller's own, and a short
    secret must not mangle them. Changes ``status`` in place and returns it.
    Idempotent, so a status written once compares equal the next time.
    """
    _each_part(status, lambda part: _clip_fields(part, redactor, message=message, value=value,
                                                 metadata=metadata))
    return status


def _old_measurements_bare(status: dict[str, Any]) -> None:
    """Older measurements keep their phase and times; only the last keeps what it said."""
    keep = ("phase", "startedAt", "finishedAt", "resumeAt")
    for result in status.get("metricResults") or []:
        measurements = result.get("measurements") or []
        result["measurements"] = [
            *({k: v for k, v in m.items() if k in keep} for m in measurements[:-1]),
            *measurements[-1:],
        ]


def _last_measurement_only(status: dict[str, Any]) -> None:
    """The state machine reads only the last measurement; counters hold the rest."""
    for result in status.get("metricResults") or []:
        if result.get("measurements"):
            result["measurements"] = result["measurements"][-1:]


def _short_text(status: dict[str, Any]) -> None:
    shape_status(status, _PLAIN, message=SHORT_CHARS, value=SHORT_CHARS, metadata=SHORT_CHARS)


# Each step keeps what the ones before kept, with less detail.
_DEGRADE_STEPS = (_old_measurements_bare, _last_measurement_only, _short_text)


def fit_status(status: Mapping[str, Any], *, budget: int = STATUS_BUDGET_BYTES
               ) -> dict[str, Any] | None:
    """``status`` if it fits ``budget``, else its first shorter form that does, else None."""
    fitted = dict(status)
    if status_size(fitted) <= budget:
        return fitted
    fitted = copy.deepcopy(fitted)
    for step in _DEGRADE_STEPS:
        step(fitted)
        if status_size(fitted) <= budget:
            return fitted
    return None


def final_error_status(status: Mapping[str, Any], *, message: str, now: str,
                       budget: int = STATUS_BUDGET_BYTES) -> dict[str, Any]:
    """The run ended Error because its status cannot be stored: keep only the numbers.

    Metric results keep their name, phase and counters; if even that is over the
    budget (thousands of metrics) they go, and the message says why.
    """
    results = [{k: v for k, v in result.items() if k in _COUNTERS}
               for result in status.get("metricResults") or []]
    error: dict[str, Any] = {
        "phase": str(AnalysisPhase.ERROR),
        "message": _clip_message(_PLAIN, message),
        "startedAt": status.get("startedAt") or now,
        "completedAt": status.get("completedAt") or now,
        "runSummary": status.get("runSummary"),
        "dryRunSummary": status.get("dryRunSummary"),
        "metricResults": results,
    }
    if status_size(error) > budget:
        error["metricResults"] = None
    return error


def over_budget_status(status: Mapping[str, Any], *, now: str,
                       budget: int = STATUS_BUDGET_BYTES) -> dict[str, Any]:
    """``final_error_status`` for a status that no degraded form brings under ``budget``."""
    message = MSG_OVER_BUDGET.format(size=status_size(status), budget=budget)
    return final_error_status(status, message=message, now=now, budget=budget)


def rejected_status(status: Mapping[str, Any], *, code: int | str, reason: str, detail: str,
                    now: str, redactor: Redactor, budget: int = STATUS_BUDGET_BYTES
                    ) -> dict[str, Any]:
    """``final_error_status`` after the API server refused the status patch."""
    message = MSG_REJECTED.format(
        code=code, reason=reason,
        detail=_clip_message(redactor, detail, MAX_REJECTION_DETAIL_CHARS))
    return final_error_status(status, message=message, now=now, budget=budget)
