"""Safe evaluation of AnalysisTemplate successCondition / failureCondition.

Called by the AnalysisRun state machine (analysis/run.py) once a provider returns a
measurement value: ``assess(value, metric.successCondition,
metric.failureCondition)`` gives the measurement's phase and message, exactly
as Argo's ``utils/evaluate/evaluate.go: EvaluateResult`` does (reference §3.2).
The language is the expr-lang v1.17 subset Argo users write (reference §3.4),
parsed by our own tokenizer and parser (_syntax.py) and evaluated by closures
over the tree (_runtime.py); user text is never handed to eval/exec/compile,
and no Python attribute is ever read from a value. Every failure is an
ExpressionError; ``assess`` never raises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from analysis.api.phases import AnalysisPhase
from analysis.conditions._common import ExpressionError, quote_source, type_name
from analysis.conditions._runtime import BUILTINS, Ctx, build
from analysis.conditions._syntax import FUNCTIONS, parse

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
MSG_NOT_TEXT = "expression must be a string, not {type}"
MSG_NO_DATA = (
    'could not evaluate {field} "{source}": metric result is nil or empty: '
    "no data returned from the metric provider"
)
MSG_COULD_NOT_EVALUATE = 'could not evaluate {field} "{source}": {message}'
MSG_TOO_DEEP_AT_RUNTIME = "value is nested too deeply to evaluate"
MSG_INTERNAL = "internal error while evaluating the expression ({kind})"
_COMPILE_CACHE_SIZE = 1024

# The parser's table of functions and the runtime's must name the same set.
assert set(FUNCTIONS) == set(BUILTINS), set(FUNCTIONS) ^ set(BUILTINS)


@dataclass(frozen=True)
class CompiledExpression:
    """A parsed and checked expression, ready to evaluate many times."""

    source: str
    _program: Callable[[Ctx], Any] = field(repr=False, compare=False)

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        """The expression's value in env; raises ExpressionError only."""
        try:
            return self._program(Ctx(env))
        except ExpressionError:
            raise
        # The limits make these unreachable by design; they stay as a last
        # line so that no other exception type can reach the reconcile.
        except RecursionError:
            raise ExpressionError(MSG_TOO_DEEP_AT_RUNTIME) from None
        except Exception as error:  # noqa: BLE001
            raise ExpressionError(MSG_INTERNAL.format(kind=type(error).__name__)) from None


@functools.lru_cache(maxsize=_COMPILE_CACHE_SIZE)
def _compile(source: str) -> CompiledExpression:
    try:
        return CompiledExpression(source=source, _program=build(parse(source)))
    except ExpressionError:
        raise
    except RecursionError:
        raise ExpressionError(MSG_TOO_DEEP_AT_RUNTIME) from None
    except Exception as error:  # noqa: BLE001
        raise ExpressionError(MSG_INTERNAL.format(kind=type(error).__name__)) from None


def compile_expression(source: str) -> CompiledExpression:
    """Parse and statically check source (cached by text); raises ExpressionError."""
    if not isinstance(source, str):
        raise ExpressionError(MSG_NOT_TEXT.format(type=type(source).__name__))
    return _compile(source)


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
