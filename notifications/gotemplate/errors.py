"""The template engine's error type, its limits and the callable wrapper data may carry.

Used by every module of notifications.gotemplate and by its callers (the notifications
renderer catches TemplateError and turns it into an Event on the object).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ERROR_FORMAT = "template: {name}:{line}:{col}: {message}"


class TemplateError(Exception):
    """Every failure of parsing or rendering: names the template, line and column.

    The column is Go's: the byte offset of the offending node within its line, from 0.
    """

    def __init__(self, message: str, *, name: str, line: int, col: int) -> None:
        super().__init__(ERROR_FORMAT.format(name=name, line=line, col=col, message=message))
        self.name = name
        self.line = line
        self.col = col
        self.message = message


class TemplateFunc:
    """A callable the caller puts in the data (e.g. `.repo.RepoURLToHTTPS`) for `call`.

    Only instances of this class can be called by a template; any other Python object
    in the data is treated as plain data (read through Mapping keys and list indexes).
    """

    __slots__ = ("fn", "name")

    def __init__(self, fn: Callable[..., Any], *, name: str) -> None:
        self.fn = fn
        self.name = name

    def __repr__(self) -> str:
        return f"TemplateFunc({self.name})"


@dataclass(frozen=True)
class Limits:
    """Bounds on one render; each one exceeded raises TemplateError.

    max_steps also bounds range iterations (each iteration costs a step) and
    max_depth bounds the nesting of blocks, parentheses and template calls.
    """

    max_output: int = 262144
    max_steps: int = 100_000
    max_depth: int = 64
    timeout_seconds: float = 1.0


def position(text: str, offset: int) -> tuple[int, int]:
    """Line (from 1) and Go's column (byte offset in the line, from 0) of an offset."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    start = text.rfind("\n", 0, offset) + 1
    return line, len(text[start:offset].encode("utf-8", "surrogatepass"))
