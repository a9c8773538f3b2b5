"""Time and duration values for notification conditions, and their fixed method tables.

Called by common/expr/_runtime.py for `time.Now()`, `time.Parse(...)`,
`time.Minute` and friends, for `.Sub/.Add/.Before/.After/...` method calls and
for the operators on these values. Argo's conditions run in Go, where these are
time.Time and time.Duration; here they are two small frozen values holding
integer nanoseconds (UTC for instants), so arithmetic is exact and bounded to
int64 like Go's. A method is looked up in a table keyed by (type, name); no
Python attribute of any value is ever reached from condition text.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.expr._common import (
    INT_MAX,
    INT_MIN,
    ExpressionError,
    ExprValue,
    MissingValueError,
    type_name,
)

NANOSECOND = 1
MICROSECOND = 1_000
MILLISECOND = 1_000_000
SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
# Go's layout strings; time.Parse(layout, value) accepts these two only.
RFC3339 = "2006-01-02T15:04:05Z07:00"
RFC3339_NANO = "2006-01-02T15:04:05.999999999Z07:00"
SUPPORTED_LAYOUTS = frozenset({RFC3339, RFC3339_NANO})
# An RFC 3339 timestamp is ~35 characters; anything far longer is refused unread.
MAX_TIMESTAMP_LENGTH = 64
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_ZERO_TIME_NANOS = (dt.date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86_400 * SECOND

MSG_PARSE_TIME = 'time.Parse: "{text}" is not an RFC 3339 timestamp (like 2024-05-01T12:00:00Z)'
MSG_PARSE_NIL = "time.Parse of nil: the field is not set"
MSG_LAYOUT = "time.Parse: only the RFC 3339 layouts (time.RFC3339, time.RFC3339Nano) are supported"
MSG_NO_METHOD = 'a {type} has no method "{name}"'
MSG_METHOD_ON_NIL = "cannot call {name}() on nil"
MSG_METHOD_ARG = "{name}: argument must be a {expected}, not {type}"
MSG_DURATION_OVERFLOW = "time value out of range in {op}"
MSG_NO_CLOCK = "time.Now() is not available here"


@dataclass(frozen=True, slots=True)
class Time(ExprValue):
    """An instant: nanoseconds since the Unix epoch, UTC."""

    nanos: int
    TYPE_NAME = "time"


@dataclass(frozen=True, slots=True)
class Duration(ExprValue):
    """A span of time in nanoseconds, as Go's time.Duration."""

    nanos: int
    TYPE_NAME = "duration"


def checked(nanos: int, op: str, pos: int | None) -> int:
    """Go's int64 range: out of it is an error, never a silent wrap."""
    if INT_MIN <= nanos <= INT_MAX:
        return nanos
    raise ExpressionError(MSG_DURATION_OVERFLOW.format(op=op), pos)


def from_datetime(moment: dt.datetime) -> Time:
    """The injected clock's answer as a Time; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    delta = moment - _EPOCH
    return Time(nanos=(delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds * 1_000)


def parse_time(text: Any, pos: int | None) -> Time:
    """Argo's time.Parse: an RFC 3339 string (Go's time.RFC3339 layout) to a Time."""
    if text is None:
        raise MissingValueError(MSG_PARSE_NIL, pos)
    if not isinstance(text, str):
        raise ExpressionError(
            MSG_METHOD_ARG.format(name="time.Parse", expected="string", type=type_name(text)), pos
        )
    shown = text if len(text) <= MAX_TIMESTAMP_LENGTH else text[:MAX_TIMESTAMP_LENGTH] + "…"
    match = _RFC3339.fullmatch(text) if len(text) <= MAX_TIMESTAMP_LENGTH else None
    if match is None:
        raise ExpressionError(MSG_PARSE_TIME.format(text=shown), pos)
    year, month, day, hour, minute, second = (int(group) for group in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    try:
        # date() checks the calendar (February 30th is refused, as Go refuses it).
        ordinal = dt.date(year, month, day).toordinal()
    except ValueError:
        raise ExpressionError(MSG_PARSE_TIME.format(text=shown), pos) from None
    if hour > 23 or minute > 59 or second > 59:
        raise ExpressionError(MSG_PARSE_TIME.format(text=shown), pos)
    offset = 0
    if zone != "Z":
        zone_hours, zone_minutes = int(zone[1:3]), int(zone[4:6])
        if zone_hours > 23 or zone_minutes > 59:
            raise ExpressionError(MSG_PARSE_TIME.format(text=shown), pos)
        offset = (zone_hours * 3600 + zone_minutes * 60) * (-1 if zone[0] == "-" else 1)
    seconds = (ordinal - _EPOCH_ORDINAL) * 86_400 + hour * 3600 + minute * 60 + second - offset
    nanos = int((fraction or "").ljust(9, "0"))
    return Time(nanos=seconds * SECOND + nanos)


def parse_with_layout(layout: Any, text: Any, pos: int | None) -> Time:
    if layout not in SUPPORTED_LAYOUTS:
        raise ExpressionError(MSG_LAYOUT, pos)
    return parse_time(text, pos)


def to_duration(value: Any, pos: int | None) -> Duration:
    """`time.Duration(n)`: Go's conversion of an integer count of nanoseconds."""
    if isinstance(value, Duration):
        return value
    if value is None:
        raise MissingValueError(
            MSG_METHOD_ARG.format(name="time.Duration", expected="number", type="nil"), pos
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpressionError(
            MSG_METHOD_ARG.format(name="time.Duration", expected="number", type=type_name(value)),
            pos,
        )
    if isinstance(value, float) and not (float(INT_MIN) <= value <= float(INT_MAX)):
        raise ExpressionError(MSG_DURATION_OVERFLOW.format(op="time.Duration"), pos)
    return Duration(nanos=checked(int(value), "time.Duration", pos))


# --------------------------------------------------------------------------- methods

Method = Callable[[Any, list[Any], int], Any]


def _arg(name: str, value: Any, kind: type[ExprValue], pos: int) -> Any:
    if isinstance(value, kind):
        return value
    error = MissingValueError if value is None else ExpressionError
    raise error(
        MSG_METHOD_ARG.format(name=name, expected=kind.TYPE_NAME, type=type_name(value)), pos
    )


def _float_units(unit: int) -> Method:
    def units(receiver: Duration, args: list[Any], pos: int) -> float:
        # As Go: whole units plus the remainder's fraction, to keep precision.
        whole, rest = divmod(abs(receiver.nanos), unit)
        sign = -1.0 if receiver.nanos < 0 else 1.0
        return sign * (float(whole) + float(rest) / float(unit))

    return units


def _time_sub(receiver: Time, args: list[Any], pos: int) -> Duration:
    other: Time = _arg("Sub", args[0], Time, pos)
    return Duration(nanos=checked(receiver.nanos - other.nanos, "Sub", pos))


def _time_add(receiver: Time, args: list[Any], pos: int) -> Time:
    span: Duration = _arg("Add", args[0], Duration, pos)
    return Time(nanos=checked(receiver.nanos + span.nanos, "Add", pos))


def _time_compare(name: str, test: Callable[[int, int], bool]) -> Method:
    def compare(receiver: Time, args: list[Any], pos: int) -> bool:
        other: Time = _arg(name, args[0], Time, pos)
        return test(receiver.nanos, other.nanos)

    return compare


TIME_METHODS: dict[str, Method] = {
    "Sub": _time_sub,
    "Add": _time_add,
    "Before": _time_compare("Before", lambda a, b: a < b),
    "After": _time_compare("After", lambda a, b: a > b),
    "Equal": _time_compare("Equal", lambda a, b: a == b),
    # Go's Unix/UnixMilli round toward negative infinity for instants before 1970.
    "Unix": lambda receiver, args, pos: receiver.nanos // SECOND,
    "UnixMilli": lambda receiver, args, pos: receiver.nanos // MILLISECOND,
    # Go's zero time is year 1; an RFC 3339 parse of 0001-01-01T00:00:00Z gives it.
    "IsZero": lambda receiver, args, pos: receiver.nanos == _ZERO_TIME_NANOS,
}

DURATION_METHODS: dict[str, Method] = {
    "Hours": _float_units(HOUR),
    "Minutes": _float_units(MINUTE),
    "Seconds": _float_units(SECOND),
    "Milliseconds": lambda receiver, args, pos: int(receiver.nanos / MILLISECOND),
    "Nanoseconds": lambda receiver, args, pos: receiver.nanos,
    "Abs": lambda receiver, args, pos: Duration(nanos=min(abs(receiver.nanos), INT_MAX)),
}

METHOD_TABLES: dict[type[ExprValue], dict[str, Method]] = {
    Time: TIME_METHODS,
    Duration: DURATION_METHODS,
}


def call_method(receiver: Any, name: str, args: list[Any], pos: int) -> Any:
    """`receiver.name(args)`, from the fixed tables only."""
    if receiver is None:
        raise MissingValueError(MSG_METHOD_ON_NIL.format(name=name), pos)
    table = METHOD_TABLES.get(type(receiver)) if isinstance(receiver, ExprValue) else None
    method = None if table is None else table.get(name)
    if method is None:
        raise ExpressionError(MSG_NO_METHOD.format(type=type_name(receiver), name=name), pos)
    return method(receiver, args, pos)


# --------------------------------------------------------------------------- operators

_NOT_APPLICABLE = object()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scaled(span: Duration, factor: int | float, op: str, pos: int) -> Duration:
    if isinstance(factor, float):
        product = span.nanos * factor
        if not (float(INT_MIN) <= product <= float(INT_MAX)):  # also false for NaN
            raise ExpressionError(MSG_DURATION_OVERFLOW.format(op=op), pos)
        return Duration(nanos=int(product))
    return Duration(nanos=checked(span.nanos * factor, op, pos))


def arithmetic(op: str, left: Any, right: Any, pos: int) -> Any:
    """`+ - * /` with a time or duration on either side; _NOT_APPLICABLE otherwise."""
    if op == "+":
        if isinstance(left, Duration) and isinstance(right, Duration):
            return Duration(nanos=checked(left.nanos + right.nanos, op, pos))
        if isinstance(left, Time) and isinstance(right, Duration):
            return Time(nanos=checked(left.nanos + right.nanos, op, pos))
        if isinstance(left, Duration) and isinstance(right, Time):
            return Time(nanos=checked(left.nanos + right.nanos, op, pos))
    elif op == "-":
        if isinstance(left, Time) and isinstance(right, Time):
            return Duration(nanos=checked(left.nanos - right.nanos, op, pos))
        if isinstance(left, Time) and isinstance(right, Duration):
            return Time(nanos=checked(left.nanos - right.nanos, op, pos))
        if isinstance(left, Duration) and isinstance(right, Duration):
            return Duration(nanos=checked(left.nanos - right.nanos, op, pos))
    elif op == "*":
        # `1 * time.Minute`, `time.Minute * 5`: Go's untyped constant times a Duration.
        if isinstance(left, Duration) and _is_number(right):
            return _scaled(left, right, op, pos)
        if _is_number(left) and isinstance(right, Duration):
            return _scaled(right, left, op, pos)
    elif op == "/":
        if isinstance(left, Duration) and isinstance(right, Duration):
            if right.nanos == 0:
                raise ExpressionError("integer divide by zero", pos)
            return left.nanos / right.nanos
        if isinstance(left, Duration) and _is_int(right):
            if right == 0:
                raise ExpressionError("integer divide by zero", pos)
            quotient = abs(left.nanos) // abs(right)  # Go truncates toward zero
            return Duration(nanos=quotient if (left.nanos < 0) == (right < 0) else -quotient)
    return _NOT_APPLICABLE


def ordering(left: Any, right: Any) -> tuple[int, int] | None:
    """The two nanosecond counts to compare, when both sides are the same kind of value."""
    if type(left) is type(right) and isinstance(left, Time | Duration):
        return left.nanos, right.nanos
    return None


def not_applicable(value: Any) -> bool:
    return value is _NOT_APPLICABLE


def format_time(value: Time) -> str:
    """RFC 3339 with nanoseconds trimmed, as Go's time.RFC3339Nano prints UTC."""
    seconds, nanos = divmod(value.nanos, SECOND)
    try:
        moment = _EPOCH + dt.timedelta(seconds=seconds)
    except OverflowError:
        return f"<time {value.nanos}ns after the epoch>"
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"
