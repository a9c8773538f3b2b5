"""The error types and the hard limits of the condition-expression language.

Shared by the parser (common/expr/_syntax.py), the evaluator
(common/expr/_runtime.py), the time values (_time.py) and the regex engine
(_regex.py). The limits exist because condition text comes from users'
AnalysisTemplates and notification ConfigMaps: every cost an expression can
cause (time, memory, recursion) is bounded by one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Source text longer than this is rejected before tokenizing.
MAX_SOURCE_LENGTH = 2_000
# Nesting of the parse tree; evaluation recursion depth is bounded by it.
MAX_DEPTH = 64
# Number of nodes in one parse tree.
MAX_NODES = 1_000
# Units of work (list elements visited, regex steps) one evaluation may spend.
MAX_STEPS = 1_000_000
# Length of a string or list produced by an operator or builtin.
MAX_PRODUCED_LENGTH = 1_000_000
# Integers are Go int64 in expr; we raise instead of wrapping around.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
# Regular expressions for `matches`.
MAX_PATTERN_LENGTH = 512
MAX_MATCH_INPUT_LENGTH = 10_000
# Numeric strings given to asInt/asFloat/int/float.
MAX_NUMERIC_STRING_LENGTH = 100
# Messages quote a condition whole up to this length, else an excerpt around the
# error's column: a message that echoes a 400 KB condition is a status nobody can store.
MAX_QUOTED_SOURCE = 120
EXCERPT_CONTEXT = 40
ELLIPSIS = "…"
MSG_EXCERPT = "{text} [excerpt at column {column} of {length} characters]"


class ExpressionError(Exception):
    """Every failure to compile or evaluate a condition, and nothing else.

    ``position`` is the 0-based column in the source for syntax errors and for
    runtime errors raised by a known node; None when no column applies.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ExpressionError({self.message!r}, position={self.position!r})"


class MissingValueError(ExpressionError):
    """An error whose cause is a nil value: a field the object does not have.

    Analysis treats it as any other ExpressionError (same message); a
    notification `when` reads it as "false", because a trigger must not be
    silenced by an error when the object merely lacks the field yet.
    """


class ExprValue:
    """Base of the evaluator's own values (time, duration).

    They are not mappings, so no field of theirs can be fetched by name; their
    methods come from fixed tables in _time.py, never from Python attributes.
    """

    __slots__ = ()
    TYPE_NAME = "value"


def quote_source(source: str, position: int | None = None) -> str:
    """``source`` for a message: whole when short, else ~80 characters around ``position``."""
    if not isinstance(source, str):  # a condition that is not text at all (a YAML number)
        source = repr(source)
    if len(source) <= MAX_QUOTED_SOURCE:
        return source
    column = min(max(position or 0, 0), len(source))
    start = max(column - EXCERPT_CONTEXT, 0)
    end = min(start + 2 * EXCERPT_CONTEXT, len(source))
    text = source[start:end]
    if start > 0:
        text = ELLIPSIS + text
    if end < len(source):
        text += ELLIPSIS
    return MSG_EXCERPT.format(text=text, column=column, length=len(source))


def type_name(value: Any) -> str:
    """A short, language-level name for a value's type, for error messages."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, ExprValue):
        return value.TYPE_NAME
    # Never the Python class name: it says nothing useful to a template author.
    return "unsupported value"


def is_ascii_digits(text: str) -> bool:
    """str.isdigit() also accepts e.g. '²', which int() then rejects: only 0-9 count."""
    return bool(text) and all("0" <= ch <= "9" for ch in text)
