"""The project's safe expression language: the expr-lang subset Argo users write.

Called by analysis/conditions (AnalysisTemplate successCondition /
failureCondition, through ``compile_expression``) and by notifications/
(trigger ``when`` conditions, through ``compile_when`` / ``evaluate_when``).
Source text is parsed by our own tokenizer and parser (_syntax.py) and
evaluated by closures over the tree (_runtime.py); user text is never handed
to eval/exec/compile, and no Python attribute is ever read from a value.

Two dialects share the core. The analysis dialect is exactly the language
AnalysisTemplates have always had. The notifications dialect adds Argo CD's
helpers (``time.Now()``, ``time.Parse``, ``time.Minute``, ``strings.*``,
``sync.GetInfoItem``) and the methods of the evaluator's own time values
(``.Sub``, ``.Add``, ``.Before``, ``.Minutes()``, ...), taken from fixed tables.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.expr._common import ExpressionError, MissingValueError, quote_source, type_name
from common.expr._runtime import BUILTINS, CONSTANTS, Ctx, build
from common.expr._syntax import ANALYSIS, NOTIFICATIONS, Dialect, parse
from common.expr._time import Duration, Time

__all__ = [
    "ANALYSIS",
    "NOTIFICATIONS",
    "CompiledExpression",
    "Dialect",
    "Duration",
    "ExpressionError",
    "MissingValueError",
    "Time",
    "WhenResult",
    "compile_expression",
    "compile_uncached",
    "compile_when",
    "evaluate_when",
    "quote_source",
    "type_name",
]

MSG_NOT_TEXT = "expression must be a string, not {type}"
MSG_TOO_DEEP_AT_RUNTIME = "value is nested too deeply to evaluate"
MSG_INTERNAL = "internal error while evaluating the expression ({kind})"
MSG_WHEN_SYNTAX = 'when "{source}" is not a valid condition: {message}'
MSG_WHEN_ERROR = 'when "{source}" could not be evaluated: {message}'
MSG_WHEN_NOT_BOOL = 'when "{source}" gave {type}, not a bool; the trigger stays off'
MSG_AT_COLUMN = "{message} (at column {column})"
_COMPILE_CACHE_SIZE = 1024
# Argo (notifications-engine triggers/service.go) compiles an empty `when` as
# "false": a condition that never fires by itself (Rollouts' catalog triggers are
# sent on events instead).
EMPTY_WHEN = "false"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC)


# Every function a dialect can parse must exist at run time, and every constant.
for _dialect in (ANALYSIS, NOTIFICATIONS):
    _missing = set(_dialect.functions) - set(BUILTINS)
    assert not _missing, _missing
    for _namespace, _members in _dialect.namespaces.items():
        for _member, _spec in _members.items():
            _qualified = f"{_namespace}.{_member}"
            assert _qualified in (CONSTANTS if _spec is None else BUILTINS), _qualified


@dataclass(frozen=True)
class CompiledExpression:
    """A parsed and checked expression, ready to evaluate many times."""

    source: str
    _program: Callable[[Ctx], Any] = field(repr=False, compare=False)

    def evaluate(
        self, env: Mapping[str, Any], *, now: Callable[[], dt.datetime] | None = None
    ) -> Any:
        """The expression's value in env; raises ExpressionError only.

        ``now`` is the clock time.Now() reads (notifications dialect only).
        """
        try:
            return self._program(Ctx(env, now))
        except ExpressionError:
            raise
        except Exception as error:  # noqa: BLE001
            raise _unexpected(error) from None


def compile_uncached(source: str, *, dialect: Dialect = ANALYSIS) -> CompiledExpression:
    """Parse and check source without the cache (benchmarks); raises ExpressionError."""
    try:
        return CompiledExpression(source=source, _program=build(parse(source, dialect)))
    except ExpressionError:
        raise
    except Exception as error:  # noqa: BLE001
        raise _unexpected(error) from None


def _unexpected(error: Exception) -> ExpressionError:
    """Any other failure while compiling or evaluating, as an ExpressionError.

    The limits make these unreachable by design; they stay as a last line so that
    no other exception type can reach the reconcile. Only the class is named: the
    text could quote the data.
    """
    if isinstance(error, RecursionError):
        return ExpressionError(MSG_TOO_DEEP_AT_RUNTIME)
    return ExpressionError(MSG_INTERNAL.format(kind=type(error).__name__))


@functools.lru_cache(maxsize=_COMPILE_CACHE_SIZE)
def _compile(source: str, dialect: Dialect) -> CompiledExpression:
    return compile_uncached(source, dialect=dialect)


def compile_expression(source: str, *, dialect: Dialect = ANALYSIS) -> CompiledExpression:
    """Parse and statically check source (cached by text); raises ExpressionError."""
    if not isinstance(source, str):
        raise ExpressionError(MSG_NOT_TEXT.format(type=type(source).__name__))
    return _compile(source, dialect)


# --------------------------------------------------------------------------- notifications


@dataclass(frozen=True)
class WhenResult:
    """A trigger condition's verdict: ``value`` is True only for a real true.

    ``error`` says why a condition could not be judged (syntax, a non-bool
    result, a type error); it is None when the answer is simply false,
    including when the object lacks a field the condition reads.
    """

    value: bool
    error: str | None


def _when_source(source: str) -> str:
    return source if source.strip() else EMPTY_WHEN


def _describe(error: ExpressionError) -> str:
    """The error's message, naming its column when the message does not already."""
    if error.position is not None and "column" not in error.message:
        return MSG_AT_COLUMN.format(message=error.message, column=error.position)
    return error.message


def compile_when(source: str) -> CompiledExpression:
    """A notification `when` condition, checked (tidegate lint, config loading).

    Raises ExpressionError (whose message names the column) for a syntax error,
    an unknown function or an exceeded limit. An empty condition is "false", as
    Argo compiles it.
    """
    if not isinstance(source, str):
        raise ExpressionError(MSG_NOT_TEXT.format(type=type(source).__name__))
    return _compile(_when_source(source), NOTIFICATIONS)


def evaluate_when(
    source: str, env: Mapping[str, Any], *, now: Callable[[], dt.datetime] = _utc_now
) -> WhenResult:
    """Judge a trigger's `when` over env (``app``, ``rollout``, ...); never raises.

    A missing field or a nil access reads as false without an error; a result
    that is not a bool, a syntax error or any other failure is false with a
    message for the user.
    """
    try:
        return _evaluate_when(source, env, now)
    except Exception as error:  # noqa: BLE001 - a trigger must never take down the loop
        return WhenResult(value=False, error=MSG_INTERNAL.format(kind=type(error).__name__))


def _evaluate_when(
    source: str, env: Mapping[str, Any], now: Callable[[], dt.datetime]
) -> WhenResult:
    try:
        compiled = compile_when(source)
    except ExpressionError as error:
        quoted = quote_source(source, error.position)
        return WhenResult(
            value=False, error=MSG_WHEN_SYNTAX.format(source=quoted, message=_describe(error))
        )
    try:
        value = compiled.evaluate(env, now=now)
    except MissingValueError:
        return WhenResult(value=False, error=None)
    except ExpressionError as error:
        quoted = quote_source(source, error.position)
        return WhenResult(
            value=False, error=MSG_WHEN_ERROR.format(source=quoted, message=_describe(error))
        )
    if value is True or value is False:
        return WhenResult(value=value, error=None)
    if value is None:  # the condition is one field the object does not have
        return WhenResult(value=False, error=None)
    return WhenResult(
        value=False,
        error=MSG_WHEN_NOT_BOOL.format(source=quote_source(source), type=type_name(value)),
    )
