"""Safe evaluation of AnalysisTemplate successCondition / failureCondition.

Called by the AnalysisRun state machine (analysis/run.py) once a provider returns a
measurement value: ``assess(value, metric.successCondition,
metric.failureCondition)`` gives the measurement's phase and message, exactly
as Argo's ``utils/evaluate/evaluate.go: EvaluateResult`` does (reference §3.2).
The language is the expr-lang v1.17 subset Argo users write (reference §3.4),
in its analysis dialect; the language itself lives in common/expr (shared with
notification conditions), and this module adds only what analysis means by a
verdict. Every failure is an ExpressionError; ``assess`` never raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.api.phases import AnalysisPhase
from common.expr import (
    CompiledExpression,
    ExpressionError,
    compile_expression,
    quote_source,
    type_name,
)

__all__ = [
    "CompiledExpression",
    "ExpressionError",
    "assess",
    "compile_expression",
    "evaluate_condition",
    "quote_source",
]

SUCCESS_CONDITION = "successCondition"
FAILURE_CONDITION = "failureCondition"
MSG_NOT_BOOL = 'condition "{source}" returned {type}, not a bool'
MSG_NO_DATA = (
    'could not evaluate {field} "{source}": metric result is nil or empty: '
    "no data returned from the metric provider"
)
MSG_COULD_NOT_EVALUATE = 'could not evaluate {field} "{source}": {message}'
MSG_INTERNAL = "internal error while evaluating the expression ({kind})"


def evaluate_condition(source: str | CompiledExpression, result: Any) -> bool:
    """Evaluate a condition with env {"result": result}; it must give a bool."""
    compiled = source if isinstance(source, CompiledExpression) else compile_expression(source)
    value = compiled.evaluate({"result": result})
    if value is True or value is False:
        return value
    raise ExpressionError(
        MSG_NOT_BOOL.format(source=quote_source(compiled.source), type=type_name(value)))


def _is_no_data(result: Any) -> bool:
    if result is None:
        return True
    return isinstance(result, list | tuple | str | Mapping) and len(result) == 0


def _condition(field_name: str, source: str, result: Any) -> bool | str:
    """The condition's truth, or the message explaining why it could not be evaluated."""
    try:
        return evaluate_condition(source, result)
    except ExpressionError as error:
        quoted = quote_source(source, error.position)
        if _is_no_data(result):
            return MSG_NO_DATA.format(field=field_name, source=quoted)
        return MSG_COULD_NOT_EVALUATE.format(field=field_name, source=quoted, message=error.message)


def assess(
    result: Any, success_condition: str | None, failure_condition: str | None
) -> tuple[AnalysisPhase, str]:
    """The measurement verdict of reference §3.2; never raises.

    Both conditions are evaluated (success first) before deciding, as Argo
    does, so an error in either one makes the measurement an Error.
    """
    try:
        return _assess(result, success_condition, failure_condition)
    except Exception as error:  # noqa: BLE001 - the reconcile must never see one
        return AnalysisPhase.ERROR, MSG_INTERNAL.format(kind=type(error).__name__)


def _assess(
    result: Any, success_condition: str | None, failure_condition: str | None
) -> tuple[AnalysisPhase, str]:
    success: bool | None = None
    failure: bool | None = None
    if success_condition:
        verdict = _condition(SUCCESS_CONDITION, success_condition, result)
        if isinstance(verdict, str):
            return AnalysisPhase.ERROR, verdict
        success = verdict
    if failure_condition:
        verdict = _condition(FAILURE_CONDITION, failure_condition, result)
        if isinstance(verdict, str):
            return AnalysisPhase.ERROR, verdict
        failure = verdict
    if success is None and failure is None:
        return AnalysisPhase.SUCCESSFUL, ""
    if failure is None:
        failure = not success
    if success is None:
        success = not failure
    if failure:
        return AnalysisPhase.FAILED, ""
    if not success:
        return AnalysisPhase.INCONCLUSIVE, ""
    return AnalysisPhase.SUCCESSFUL, ""
