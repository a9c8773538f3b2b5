"""Evaluation of parsed condition expressions: operators and builtins.

Called by common/expr/__init__.py. Each tree node is turned once into a
small Python closure (no code generation from user text), so evaluating the
same condition thousands of times costs only closure calls. Semantics follow
expr-lang v1.17 where conditions can observe them: `/` and `**` give floats,
ints are 64-bit (we raise instead of wrapping), `==` across types is false,
ordering across types is an error, missing map keys read as nil. Every error is
an ExpressionError; every loop is charged to a per-evaluation step budget.
An error caused by a nil operand (a field the object lacks) is the subclass
MissingValueError, with the same message, so that notification conditions can
read it as false. The notification dialect's namespaced functions (`time.*`,
`strings.*`, `sync.*`) are builtins under their qualified names.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from common.expr import _syntax as ast
from common.expr import _time
from common.expr._common import (
    INT_MAX,
    INT_MIN,
    MAX_MATCH_INPUT_LENGTH,
    MAX_NUMERIC_STRING_LENGTH,
    MAX_PRODUCED_LENGTH,
    MAX_STEPS,
    ExpressionError,
    ExprValue,
    MissingValueError,
    is_ascii_digits,
    type_name,
)
from common.expr._regex import Regex

MSG_UNKNOWN_NAME = 'unknown name "{name}"'
MSG_STEPS = "expression needs more than {limit} steps to evaluate"
MSG_TOO_LARGE = "{what} would be longer than {limit} elements"
MSG_OVERFLOW = "integer overflow in {op}"
MSG_POW_OVERFLOW = "result of ** is too large"
MSG_OPERATION = "invalid operation: {left} {op} {right}"
MSG_UNARY = "invalid operation: {op}{operand}"
MSG_NOT_BOOL = "{what} must be a bool, not {type}"
MSG_DIV_ZERO = "integer divide by zero"
MSG_INDEX = "index out of range: {index} (array length is {length})"
MSG_FETCH = "cannot fetch {key} from {type}"
MSG_BAD_INDEX = "cannot use {type} as an index"
MSG_SLICE = "cannot slice {type}"
MSG_IN = 'operator "in" not defined on {type}'
MSG_ARG = "{name}: invalid argument of type {type}"
MSG_EMPTY = "{name} of an empty list"
MSG_PARSE = '{name}: cannot parse "{text}" as {what}'
MSG_MATCH_INPUT = "matches: input is {length} characters long; the limit is {limit}"
MSG_HASHABLE = "cannot use {type} as a map key"
MSG_UNKNOWN_CONSTANT = 'unknown name "{name}"'

Fn = Callable[["Ctx"], Any]



class Ctx:
    """What one evaluation carries: the env, the `#` stack and the step budget."""

    __slots__ = ("env", "now", "stack", "steps")

    def __init__(
        self, env: Mapping[str, Any], now: Callable[[], dt.datetime] | None = None
    ) -> None:
        self.env = env
        # The injected clock for time.Now(); None where the dialect has no time.
        self.now = now
        self.stack: list[Any] = []
        self.steps = 0

    def charge(self, units: int) -> None:
        self.steps += units
        if self.steps > MAX_STEPS:
            raise ExpressionError(MSG_STEPS.format(limit=MAX_STEPS))


# --------------------------------------------------------------------------- value helpers

_NUMBER_TYPES = (int, float)


def is_number(value: Any) -> bool:
    kind = type(value)
    if kind is int or kind is float:
        return True
    return isinstance(value, _NUMBER_TYPES) and not isinstance(value, bool)


def is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _int(value: int, op: str, pos: int | None) -> int:
    if INT_MIN <= value <= INT_MAX:
        return value
    raise ExpressionError(MSG_OVERFLOW.format(op=op), pos)


def _bool(value: Any, what: str, pos: int | None) -> bool:
    if value is True or value is False:
        return value
    error = MissingValueError if value is None else ExpressionError
    raise error(MSG_NOT_BOOL.format(what=what, type=type_name(value)), pos)


def _mismatch(left: Any, op: str, right: Any, pos: int | None) -> ExpressionError:
    error = MissingValueError if left is None or right is None else ExpressionError
    return error(
        MSG_OPERATION.format(left=type_name(left), op=op, right=type_name(right)), pos
    )


def equal(left: Any, right: Any, ctx: Ctx) -> bool:
    """expr's Equal: numbers compare by value across int/float; other types never match."""
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if is_number(left) and is_number(right):
        return bool(left == right)
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    if is_list(left) and is_list(right):
        if len(left) != len(right):
            return False
        ctx.charge(len(left))
        return all(equal(a, b, ctx) for a, b in zip(left, right, strict=True))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        if len(left) != len(right):
            return False
        ctx.charge(len(left))
        return all(key in right and equal(value, right[key], ctx) for key, value in left.items())
    if isinstance(left, ExprValue) and isinstance(right, ExprValue):
        return type(left) is type(right) and left == right
    return False


def _timed(left: Any, op: str, right: Any, pos: int) -> Any:
    """An operator on time values, or the usual mismatch error."""
    result = _time.arithmetic(op, left, right, pos)
    if _time.not_applicable(result):
        raise _mismatch(left, op, right, pos)
    return result


# --------------------------------------------------------------------------- operators


def _add(left: Any, right: Any, pos: int) -> Any:
    if is_number(left) and is_number(right):
        total = left + right
        return _int(total, "+", pos) if isinstance(total, int) else total
    if isinstance(left, str) and isinstance(right, str):
        if len(left) + len(right) > MAX_PRODUCED_LENGTH:
            raise ExpressionError(
                MSG_TOO_LARGE.format(what="string", limit=MAX_PRODUCED_LENGTH), pos
            )
        return left + right
    return _timed(left, "+", right, pos)


def _sub(left: Any, right: Any, pos: int) -> Any:
    if is_number(left) and is_number(right):
        diff = left - right
        return _int(diff, "-", pos) if isinstance(diff, int) else diff
    return _timed(left, "-", right, pos)


def _mul(left: Any, right: Any, pos: int) -> Any:
    # No string or list repetition: expr has none, and it is the cheapest way
    # to ask for gigabytes ("a" * 1000000000).
    if is_number(left) and is_number(right):
        product = left * right
        return _int(product, "*", pos) if isinstance(product, int) else product
    return _timed(left, "*", right, pos)


def _div(left: Any, right: Any, pos: int) -> Any:
    if not (is_number(left) and is_number(right)):
        return _timed(left, "/", right, pos)
    if right == 0:
        if isinstance(right, int):
            raise ExpressionError(MSG_DIV_ZERO, pos)
        # IEEE 754 as in Go: x/0.0 is a signed infinity, 0/0.0 and NaN/0.0 are NaN.
        if left == 0 or math.isnan(left):
            return math.nan
        return math.copysign(math.inf, left) * math.copysign(1.0, right)
    return float(left) / float(right)


def _mod(left: Any, right: Any, pos: int) -> Any:
    if not (
        isinstance(left, int)
        and isinstance(right, int)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    ):
        raise _mismatch(left, "%", right, pos)
    if right == 0:
        raise ExpressionError(MSG_DIV_ZERO, pos)
    # Go truncates toward zero: the remainder takes the dividend's sign.
    remainder = abs(left) % abs(right)
    return remainder if left >= 0 else -remainder


def _pow(left: Any, right: Any, pos: int) -> Any:
    if not (is_number(left) and is_number(right)):
        raise _mismatch(left, "**", right, pos)
    base, exponent = float(left), float(right)
    try:
        return math.pow(base, exponent)
    except OverflowError:
        raise ExpressionError(MSG_POW_OVERFLOW, pos) from None
    except ValueError:
        # Go's math.Pow answers where Python raises: 0**-1 is +Inf, (-8)**0.5 is NaN.
        return math.inf if base == 0 else math.nan


def _ordering(op: str) -> Callable[[Any, Any, int], bool]:
    compare: Callable[[Any, Any], bool] = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }[op]

    def ordered(left: Any, right: Any, pos: int) -> bool:
        if (is_number(left) and is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        ):
            return compare(left, right)
        nanos = _time.ordering(left, right)
        if nanos is not None:
            return compare(*nanos)
        raise _mismatch(left, op, right, pos)

    return ordered


def _strings(op: str) -> Callable[[Any, Any, int], bool]:
    test: Callable[[str, str], bool] = {
        "contains": lambda a, b: b in a,
        "startsWith": lambda a, b: a.startswith(b),
        "endsWith": lambda a, b: a.endswith(b),
    }[op]

    def string_op(left: Any, right: Any, pos: int) -> bool:
        if isinstance(left, str) and isinstance(right, str):
            return test(left, right)
        raise _mismatch(left, op, right, pos)

    return string_op


_ARITHMETIC: dict[str, Callable[[Any, Any, int], Any]] = {
    "+": _add,
    "-": _sub,
    "*": _mul,
    "/": _div,
    "%": _mod,
    "**": _pow,
    "<": _ordering("<"),
    "<=": _ordering("<="),
    ">": _ordering(">"),
    ">=": _ordering(">="),
    "contains": _strings("contains"),
    "startsWith": _strings("startsWith"),
    "endsWith": _strings("endsWith"),
}


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> Regex:
    return Regex(pattern)


def _matches(left: Any, right: Any, pos: int, ctx: Ctx) -> bool:
    if not (isinstance(left, str) and isinstance(right, str)):
        raise _mismatch(left, "matches", right, pos)
    if len(left) > MAX_MATCH_INPUT_LENGTH:
        raise ExpressionError(
            MSG_MATCH_INPUT.format(length=len(left), limit=MAX_MATCH_INPUT_LENGTH), pos
        )
    return compile_regex(right).search(left, ctx.charge)


def _in(needle: Any, haystack: Any, pos: int, ctx: Ctx) -> bool:
    if haystack is None:
        return False
    if is_list(haystack):
        ctx.charge(len(haystack))
        return any(equal(needle, item, ctx) for item in haystack)
    if isinstance(haystack, Mapping):
        try:
            return needle in haystack
        except TypeError:
            raise ExpressionError(MSG_HASHABLE.format(type=type_name(needle)), pos) from None
    raise ExpressionError(MSG_IN.format(type=type_name(haystack)), pos)


def _index_number(key: Any, pos: int) -> int:
    if isinstance(key, bool) or not is_number(key):
        raise ExpressionError(MSG_BAD_INDEX.format(type=type_name(key)), pos)
    if isinstance(key, float):
        if not math.isfinite(key):
            raise ExpressionError(MSG_BAD_INDEX.format(type="non-finite float"), pos)
        return int(key)  # expr truncates float indexes (runtime.ToInt)
    return int(key)


def fetch(base: Any, key: Any, pos: int) -> Any:
    """`base[key]` / `base.key` on lists, strings and maps only: never Python attributes."""
    if (is_list(base) or isinstance(base, str)) and not isinstance(key, str):
        index = _index_number(key, pos)
        length = len(base)
        if index < 0:
            index += length
        if not 0 <= index < length:
            # An element the list does not have: a missing value, as a nil field is.
            raise MissingValueError(MSG_INDEX.format(index=index, length=length), pos)
        return base[index]
    if isinstance(base, Mapping):
        try:
            return base.get(key)
        except TypeError:
            raise ExpressionError(MSG_HASHABLE.format(type=type_name(key)), pos) from None
    shown = key if isinstance(key, int | float | str) else type_name(key)
    error = MissingValueError if base is None else ExpressionError
    raise error(MSG_FETCH.format(key=shown, type=type_name(base)), pos)


def _slice(base: Any, low: Any, high: Any, pos: int) -> Any:
    if not (is_list(base) or isinstance(base, str)):
        raise ExpressionError(MSG_SLICE.format(type=type_name(base)), pos)
    length = len(base)
    start = 0 if low is None else _index_number(low, pos)
    stop = length if high is None else _index_number(high, pos)
    # Clamp exactly as expr's runtime.Slice does.
    start = max(start + length if start < 0 else start, 0)
    stop = min(max(stop + length if stop < 0 else stop, 0), length)
    start = min(start, stop)
    return base[start:stop]


# --------------------------------------------------------------------------- formatting


def format_float(value: float) -> str:
    """Go's fmt "%v" for a float64 (strconv 'g', shortest), as expr's string() gives."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    exponent += len("".join(map(str, digit_tuple))) - len(digits)
    point = len(digits) + exponent  # position of the decimal point in digits
    prefix = "-" if sign else ""
    exp10 = point - 1
    if exp10 < -4 or exp10 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


def format_value(value: Any, ctx: Ctx) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, _time.Time):
        return _time.format_time(value)
    if is_list(value):
        ctx.charge(len(value))
        text = "[" + " ".join(format_value(item, ctx) for item in value) + "]"
    elif isinstance(value, Mapping):
        ctx.charge(len(value))
        pairs = sorted((format_value(k, ctx), format_value(v, ctx)) for k, v in value.items())
        text = "map[" + " ".join(f"{k}:{v}" for k, v in pairs) + "]"
    else:
        raise ExpressionError(MSG_ARG.format(name="string", type=type_name(value)))
    if len(text) > MAX_PRODUCED_LENGTH:
        raise ExpressionError(MSG_TOO_LARGE.format(what="string", limit=MAX_PRODUCED_LENGTH))
    return text


# --------------------------------------------------------------------------- builtins

Builtin = Callable[[Ctx, list[Fn], int], Any]
BUILTINS: dict[str, Builtin] = {}


def _builtin(name: str) -> Callable[[Builtin], Builtin]:
    def register(fn: Builtin) -> Builtin:
        BUILTINS[name] = fn
        return fn

    return register


def _eager(name: str) -> Callable[[Callable[[list[Any], int, Ctx], Any]], Builtin]:
    """Register a builtin whose arguments are all evaluated first (Go call semantics)."""

    def register(impl: Callable[[list[Any], int, Ctx], Any]) -> Builtin:
        def call(ctx: Ctx, args: list[Fn], pos: int) -> Any:
            return impl([arg(ctx) for arg in args], pos, ctx)

        BUILTINS[name] = call
        return call

    return register


def _arg_error(name: str, value: Any, pos: int) -> ExpressionError:
    error = MissingValueError if value is None else ExpressionError
    return error(MSG_ARG.format(name=name, type=type_name(value)), pos)


def _number_arg(name: str, value: Any, pos: int) -> int | float:
    if not is_number(value):
        raise _arg_error(name, value, pos)
    number: int | float = value
    return number


def _list_arg(name: str, value: Any, pos: int) -> Sequence[Any]:
    if not is_list(value):
        raise _arg_error(name, value, pos)
    items: Sequence[Any] = value
    return items


def _numbers(name: str, values: Sequence[Any], pos: int, ctx: Ctx) -> list[int | float]:
    ctx.charge(len(values))
    return [_number_arg(name, value, pos) for value in values]


@_eager("len")
def _len(args: list[Any], pos: int, ctx: Ctx) -> int:
    (value,) = args
    if isinstance(value, str | Mapping) or is_list(value):
        return len(value)
    raise _arg_error("len", value, pos)


@_eager("abs")
def _abs(args: list[Any], pos: int, ctx: Ctx) -> Any:
    value = _number_arg("abs", args[0], pos)
    result = abs(value)
    return _int(result, "abs", pos) if isinstance(result, int) else result


def _extreme(name: str, pick: Callable[[list[int | float]], int | float]) -> None:
    @_eager(name)
    def extreme(args: list[Any], pos: int, ctx: Ctx) -> Any:
        values = args[0] if len(args) == 1 and is_list(args[0]) else args
        numbers = _numbers(name, values, pos, ctx)
        if not numbers:
            raise ExpressionError(MSG_EMPTY.format(name=name), pos)
        return pick(numbers)


_extreme("max", max)
_extreme("min", min)


@_eager("sum")
def _sum(args: list[Any], pos: int, ctx: Ctx) -> Any:
    numbers = _numbers("sum", _list_arg("sum", args[0], pos), pos, ctx)
    if all(isinstance(n, int) for n in numbers):
        return _int(sum(int(n) for n in numbers), "sum", pos)
    return math.fsum(numbers)


@_eager("mean")
def _mean(args: list[Any], pos: int, ctx: Ctx) -> float:
    numbers = _numbers("mean", _list_arg("mean", args[0], pos), pos, ctx)
    if not numbers:
        # An empty vector is "no data", never a silent number (DESIGN.md §4).
        raise ExpressionError(MSG_EMPTY.format(name="mean"), pos)
    return math.fsum(numbers) / len(numbers)


@_eager("median")
def _median(args: list[Any], pos: int, ctx: Ctx) -> float:
    numbers = sorted(_numbers("median", _list_arg("median", args[0], pos), pos, ctx))
    if not numbers:
        raise ExpressionError(MSG_EMPTY.format(name="median"), pos)
    middle = len(numbers) // 2
    if len(numbers) % 2:
        return float(numbers[middle])
    return (float(numbers[middle - 1]) + float(numbers[middle])) / 2


@_eager("first")
def _first(args: list[Any], pos: int, ctx: Ctx) -> Any:
    items = _list_arg("first", args[0], pos)
    return items[0] if items else None


@_eager("last")
def _last(args: list[Any], pos: int, ctx: Ctx) -> Any:
    items = _list_arg("last", args[0], pos)
    return items[-1] if items else None


def _parse_int(name: str, text: str, pos: int) -> int:
    # Go's strconv.ParseInt(s, 10, 64): optional sign, ASCII digits, nothing else.
    body = text[1:] if text[:1] in "+-" else text
    if (
        not body
        or len(text) > MAX_NUMERIC_STRING_LENGTH
        or not body.isascii()
        or not is_ascii_digits(body)
    ):
        raise ExpressionError(MSG_PARSE.format(name=name, text=text[:50], what="an integer"), pos)
    return _int(int(text), name, pos)


def _parse_float(name: str, text: str, pos: int) -> float:
    # Go's strconv.ParseFloat: no surrounding spaces, no bare underscores.
    bad = len(text) > MAX_NUMERIC_STRING_LENGTH or text != text.strip() or "_" in text
    try:
        if bad:
            raise ValueError(text)
        return float(text)
    except ValueError:
        raise ExpressionError(
            MSG_PARSE.format(name=name, text=text[:50], what="a float"), pos
        ) from None


def _to_int(name: str, value: Any, pos: int) -> int:
    if isinstance(value, str):
        return _parse_int(name, value, pos)
    number = _number_arg(name, value, pos)
    if isinstance(number, float):
        if not math.isfinite(number):
            raise ExpressionError(
                MSG_PARSE.format(name=name, text=format_float(number), what="an integer"), pos
            )
        return _int(int(number), name, pos)
    return number


def _to_float(name: str, value: Any, pos: int) -> float:
    if isinstance(value, str):
        return _parse_float(name, value, pos)
    return float(_number_arg(name, value, pos))


@_eager("int")
def _int_builtin(args: list[Any], pos: int, ctx: Ctx) -> int:
    return _to_int("int", args[0], pos)


@_eager("asInt")
def _as_int(args: list[Any], pos: int, ctx: Ctx) -> int:
    return _to_int("asInt", args[0], pos)


@_eager("float")
def _float_builtin(args: list[Any], pos: int, ctx: Ctx) -> float:
    return _to_float("float", args[0], pos)


@_eager("asFloat")
def _as_float(args: list[Any], pos: int, ctx: Ctx) -> float:
    return _to_float("asFloat", args[0], pos)


@_eager("string")
def _string(args: list[Any], pos: int, ctx: Ctx) -> str:
    return format_value(args[0], ctx)


def _string_fn(name: str, impl: Callable[[str, list[str]], Any]) -> None:
    @_eager(name)
    def string_fn(args: list[Any], pos: int, ctx: Ctx) -> Any:
        for arg in args:
            if not isinstance(arg, str):
                raise _arg_error(name, arg, pos)
        return impl(args[0], args[1:])


_string_fn("lower", lambda s, rest: s.lower())
_string_fn("upper", lambda s, rest: s.upper())
_string_fn("trim", lambda s, rest: s.strip(rest[0]) if rest else s.strip())
_string_fn("trimPrefix", lambda s, rest: s.removeprefix(rest[0]))
_string_fn("trimSuffix", lambda s, rest: s.removesuffix(rest[0]))


def _go_round(value: float) -> float:
    # Go's math.Round: half away from zero (Python's round is half to even).
    if not math.isfinite(value):
        return value
    return math.copysign(math.floor(abs(value) + 0.5), value)


def _rounding(name: str, impl: Callable[[float], float]) -> None:
    @_eager(name)
    def rounding(args: list[Any], pos: int, ctx: Ctx) -> float:
        value = float(_number_arg(name, args[0], pos))
        return float(impl(value)) if math.isfinite(value) else value


_rounding("round", _go_round)
_rounding("floor", math.floor)
_rounding("ceil", math.ceil)


@_eager("isNaN")
def _is_nan(args: list[Any], pos: int, ctx: Ctx) -> bool:
    return math.isnan(_number_arg("isNaN", args[0], pos))


@_eager("isInf")
def _is_inf(args: list[Any], pos: int, ctx: Ctx) -> bool:
    return math.isinf(_number_arg("isInf", args[0], pos))


# Argo quirk (utils/evaluate/evaluate.go isNilFunc/defaultFunc): the argument is
# evaluated (Go evaluates call arguments) but ignored; the whole `result` is tested.
@_eager("isNil")
def _is_nil(args: list[Any], pos: int, ctx: Ctx) -> bool:
    return ctx.env.get("result") is None


@_eager("default")
def _default(args: list[Any], pos: int, ctx: Ctx) -> Any:
    result = ctx.env.get("result")
    return args[1] if result is None else result


def _predicate(name: str, finish: Callable[[Ctx, Sequence[Any], Fn, int], Any]) -> None:
    @_builtin(name)
    def predicate(ctx: Ctx, args: list[Fn], pos: int) -> Any:
        items = _list_arg(name, args[0](ctx), pos)
        return finish(ctx, items, args[1], pos) if len(args) > 1 else finish(ctx, items, _self, pos)


def _self(ctx: Ctx) -> Any:
    return ctx.stack[-1]


def _each(
    ctx: Ctx, items: Sequence[Any], body: Fn, what: str, pos: int
) -> Iterator[tuple[Any, Any]]:
    """Yield (item, predicate value) pairs, charging one step per element."""
    stack = ctx.stack
    for item in items:
        ctx.charge(1)
        stack.append(item)
        try:
            value = body(ctx)
        finally:
            stack.pop()
        yield item, value


def _truths(
    ctx: Ctx, items: Sequence[Any], body: Fn, name: str, pos: int
) -> Iterator[tuple[Any, bool]]:
    for item, value in _each(ctx, items, body, name, pos):
        yield item, _bool(value, f"the predicate of {name}", pos)


def _all(ctx: Ctx, items: Sequence[Any], body: Fn, pos: int) -> bool:
    return all(ok for _, ok in _truths(ctx, items, body, "all", pos))


def _any(ctx: Ctx, items: Sequence[Any], body: Fn, pos: int) -> bool:
    return any(ok for _, ok in _truths(ctx, items, body, "any", pos))


def _none(ctx: Ctx, items: Sequence[Any], body: Fn, pos: int) -> bool:
    return not any(ok for _, ok in _truths(ctx, items, body, "none", pos))


def _one(ctx: Ctx, items: Sequence[Any], body: Fn, pos: int) -> bool:
    hits = 0
    for _, ok in _truths(ctx, items, body, "one", pos):
        hits += ok
        if hits > 1:
            return False
    return hits == 1


def _filter(ctx: Ctx, items: Sequence[Any], body: Fn, pos: int) -> list[Any]:
    return [item for item, ok in _truths(ctx, items, body, "filter", pos) if ok]


def _map(ctx: Ctx, items: Sequence[Any], body: Fn, pos: int) -> list[Any]:
    return [value for _, value in _each(ctx, items, body, "map", pos)]


def _count(ctx: Ctx, items: Sequence[Any], body: Fn, pos: int) -> int:
    return sum(1 for _, ok in _truths(ctx, items, body, "count", pos) if ok)


def _find(ctx: Ctx, items: Sequence[Any], body: Fn, pos: int) -> Any:
    return next((item for item, ok in _truths(ctx, items, body, "find", pos) if ok), None)


def _find_index(ctx: Ctx, items: Sequence[Any], body: Fn, pos: int) -> int:
    for index, (_, ok) in enumerate(_truths(ctx, items, body, "findIndex", pos)):
        if ok:
            return index
    return -1


for _predicate_name, _predicate_impl in (
    ("all", _all),
    ("any", _any),
    ("none", _none),
    ("one", _one),
    ("filter", _filter),
    ("map", _map),
    ("count", _count),
    ("find", _find),
    ("findIndex", _find_index),
):
    _predicate(_predicate_name, _predicate_impl)

# --------------------------------------------------------------------------- notification helpers
# Argo CD's and notifications-engine's `time`, `strings` and `sync` helpers,
# registered under their qualified names; only the notifications dialect
# parses calls to them.

MSG_SPLIT_EMPTY = "strings.Split: the separator must not be empty"
MSG_INFO_ITEMS = "sync.GetInfoItem: operation info must be a list, not {type}"

CONSTANTS: dict[str, Any] = {
    "time.Nanosecond": _time.Duration(nanos=_time.NANOSECOND),
    "time.Microsecond": _time.Duration(nanos=_time.MICROSECOND),
    "time.Millisecond": _time.Duration(nanos=_time.MILLISECOND),
    "time.Second": _time.Duration(nanos=_time.SECOND),
    "time.Minute": _time.Duration(nanos=_time.MINUTE),
    "time.Hour": _time.Duration(nanos=_time.HOUR),
    "time.RFC3339": _time.RFC3339,
    "time.RFC3339Nano": _time.RFC3339_NANO,
}


@_eager("time.Now")
def _time_now(args: list[Any], pos: int, ctx: Ctx) -> _time.Time:
    if ctx.now is None:
        raise ExpressionError(_time.MSG_NO_CLOCK, pos)
    return _time.from_datetime(ctx.now())


@_eager("time.Parse")
def _time_parse(args: list[Any], pos: int, ctx: Ctx) -> _time.Time:
    if len(args) == 2:
        return _time.parse_with_layout(args[0], args[1], pos)
    return _time.parse_time(args[0], pos)


@_eager("time.Duration")
def _time_duration(args: list[Any], pos: int, ctx: Ctx) -> _time.Duration:
    return _time.to_duration(args[0], pos)


def _checked_text(name: str, text: str, pos: int) -> str:
    if len(text) > MAX_PRODUCED_LENGTH:
        raise ExpressionError(MSG_TOO_LARGE.format(what=f"{name}'s string",
                                                   limit=MAX_PRODUCED_LENGTH), pos)
    return text


def _replace_all(text: str, old: str, new: str, pos: int, ctx: Ctx) -> str:
    # Go inserts `new` around every rune when `old` is empty; bound the size first.
    hits = len(text) + 1 if old == "" else text.count(old)
    ctx.charge(hits)
    if len(text) + hits * (len(new) - len(old)) > MAX_PRODUCED_LENGTH:
        raise ExpressionError(MSG_TOO_LARGE.format(what="strings.ReplaceAll's string",
                                                   limit=MAX_PRODUCED_LENGTH), pos)
    if old == "":
        return new + "".join(ch + new for ch in text)
    return text.replace(old, new)


def _split(text: str, sep: str, pos: int, ctx: Ctx) -> list[str]:
    if sep == "":
        # Go splits into single characters; a bounded, always-finite list.
        ctx.charge(len(text))
        return list(text)
    parts = text.split(sep)
    ctx.charge(len(parts))
    return parts


def _strings_fn(name: str, impl: Callable[[list[str], int, Ctx], Any]) -> None:
    @_eager(name)
    def strings_fn(args: list[Any], pos: int, ctx: Ctx) -> Any:
        for arg in args:
            if not isinstance(arg, str):
                raise _arg_error(name, arg, pos)
        return impl(args, pos, ctx)


_strings_fn("strings.ToUpper", lambda a, pos, ctx: _checked_text("strings.ToUpper", a[0].upper(), pos))
_strings_fn("strings.ToLower", lambda a, pos, ctx: _checked_text("strings.ToLower", a[0].lower(), pos))
_strings_fn("strings.TrimSpace", lambda a, pos, ctx: a[0].strip())
_strings_fn("strings.Contains", lambda a, pos, ctx: a[1] in a[0])
_strings_fn("strings.HasPrefix", lambda a, pos, ctx: a[0].startswith(a[1]))
_strings_fn("strings.HasSuffix", lambda a, pos, ctx: a[0].endswith(a[1]))
_strings_fn("strings.Split", lambda a, pos, ctx: _split(a[0], a[1], pos, ctx))
_strings_fn("strings.ReplaceAll", lambda a, pos, ctx: _replace_all(a[0], a[1], a[2], pos, ctx))


@_eager("sync.GetInfoItem")
def _get_info_item(args: list[Any], pos: int, ctx: Ctx) -> Any:
    """The value of the named item of app.status.operationState.operation.info, or nil."""
    app, name = args
    if not isinstance(name, str):
        raise _arg_error("sync.GetInfoItem", name, pos)
    items: Any = app
    for key in ("status", "operationState", "operation", "info"):
        if not isinstance(items, Mapping):
            return None
        items = items.get(key)
    if items is None:
        return None
    if not is_list(items):
        raise ExpressionError(MSG_INFO_ITEMS.format(type=type_name(items)), pos)
    ctx.charge(len(items))
    for item in items:
        if isinstance(item, Mapping) and item.get("name") == name:
            return item.get("value")
    return None


# --------------------------------------------------------------------------- tree -> closures


def build(node: ast.Node) -> Fn:
    """Turn a checked tree into one closure taking a Ctx."""
    builder = _BUILDERS.get(type(node))
    if builder is None:  # pragma: no cover - the parser makes no other nodes
        raise ExpressionError(f"unsupported expression at column {node.pos}", node.pos)
    return builder(node)


def _literal(node: ast.Node) -> Fn:
    assert isinstance(node, ast.Literal)
    value = node.value
    return lambda ctx: value


def _name(node: ast.Node) -> Fn:
    assert isinstance(node, ast.Name)
    name, pos = node.name, node.pos

    def lookup(ctx: Ctx) -> Any:
        try:
            return ctx.env[name]
        except KeyError:
            raise ExpressionError(MSG_UNKNOWN_NAME.format(name=name), pos) from None

    return lookup


def _pointer(node: ast.Node) -> Fn:
    return _self


def _list(node: ast.Node) -> Fn:
    assert isinstance(node, ast.ListLit)
    items = [build(item) for item in node.items]
    return lambda ctx: [item(ctx) for item in items]


def _mapping(node: ast.Node) -> Fn:
    assert isinstance(node, ast.MapLit)
    pairs = [(build(key), build(value)) for key, value in node.pairs]
    pos = node.pos

    def make(ctx: Ctx) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key, value in pairs:
            k = key(ctx)
            if not isinstance(k, str | int | float | bool) and k is not None:
                raise ExpressionError(MSG_HASHABLE.format(type=type_name(k)), pos)
            result[k] = value(ctx)
        return result

    return make


def _unary(node: ast.Node) -> Fn:
    assert isinstance(node, ast.Unary)
    operand, op, pos = build(node.operand), node.op, node.pos
    if op == "!":
        return lambda ctx: not _bool(operand(ctx), "the operand of !", pos)

    def arithmetic(ctx: Ctx) -> Any:
        value = operand(ctx)
        if isinstance(value, _time.Duration):
            nanos = value.nanos if op == "+" else -value.nanos
            return _time.Duration(nanos=_time.checked(nanos, op, pos))
        if not is_number(value):
            error = MissingValueError if value is None else ExpressionError
            raise error(MSG_UNARY.format(op=op, operand=type_name(value)), pos)
        if op == "+":
            return value
        return _int(-value, "-", pos) if isinstance(value, int) else -value

    return arithmetic


def _binary(node: ast.Node) -> Fn:
    assert isinstance(node, ast.Binary)
    left, right, op, pos = build(node.left), build(node.right), node.op, node.pos
    if op == "&&":
        return lambda ctx: (
            _bool(left(ctx), "the left side of &&", pos)
            and _bool(right(ctx), "the right side of &&", pos)
        )
    if op == "||":
        return lambda ctx: (
            _bool(left(ctx), "the left side of ||", pos)
            or _bool(right(ctx), "the right side of ||", pos)
        )
    if op == "??":

        def coalesce(ctx: Ctx) -> Any:
            value = left(ctx)
            return right(ctx) if value is None else value

        return coalesce
    if op == "==":
        return lambda ctx: equal(left(ctx), right(ctx), ctx)
    if op == "!=":
        return lambda ctx: not equal(left(ctx), right(ctx), ctx)
    if op == "in":
        return lambda ctx: _in(left(ctx), right(ctx), pos, ctx)
    if op == "matches":
        if isinstance(node.right, ast.Literal) and isinstance(node.right.value, str):
            compile_regex(node.right.value)  # report a bad literal pattern at compile time
        return lambda ctx: _matches(left(ctx), right(ctx), pos, ctx)
    operation = _ARITHMETIC[op]
    return lambda ctx: operation(left(ctx), right(ctx), pos)


def _ternary(node: ast.Node) -> Fn:
    assert isinstance(node, ast.Ternary)
    cond, then, otherwise, pos = build(node.cond), build(node.then), build(node.otherwise), node.pos
    return lambda ctx: then(ctx) if _bool(cond(ctx), "the condition of ?:", pos) else otherwise(ctx)


def _member(node: ast.Node) -> Fn:
    assert isinstance(node, ast.Member)
    obj, pos, optional = build(node.obj), node.pos, node.optional
    if isinstance(node.key, ast.Literal):
        constant = node.key.value

        def fetch_constant(ctx: Ctx) -> Any:
            base = obj(ctx)
            if base is None and optional:
                return None
            return fetch(base, constant, pos)

        return fetch_constant
    key = build(node.key)

    def fetch_dynamic(ctx: Ctx) -> Any:
        base = obj(ctx)
        if base is None and optional:
            return None
        return fetch(base, key(ctx), pos)

    return fetch_dynamic


def _slicing(node: ast.Node) -> Fn:
    assert isinstance(node, ast.Slice)
    obj, pos = build(node.obj), node.pos
    low = build(node.low) if node.low is not None else None
    high = build(node.high) if node.high is not None else None
    return lambda ctx: _slice(
        obj(ctx), None if low is None else low(ctx), None if high is None else high(ctx), pos
    )


def _closure(node: ast.Node) -> Fn:
    assert isinstance(node, ast.Closure)
    return build(node.body)


def _call(node: ast.Node) -> Fn:
    assert isinstance(node, ast.Call)
    builtin, pos = BUILTINS[node.name], node.pos
    args = [build(arg) for arg in node.args]
    return lambda ctx: builtin(ctx, args, pos)


def _constant(node: ast.Node) -> Fn:
    assert isinstance(node, ast.Constant)
    if node.name not in CONSTANTS:  # pragma: no cover - the dialects name only known ones
        raise ExpressionError(MSG_UNKNOWN_CONSTANT.format(name=node.name), node.pos)
    value = CONSTANTS[node.name]
    return lambda ctx: value


def _method_call(node: ast.Node) -> Fn:
    assert isinstance(node, ast.MethodCall)
    obj, name, pos, optional = build(node.obj), node.name, node.pos, node.optional
    args = [build(arg) for arg in node.args]

    def call(ctx: Ctx) -> Any:
        receiver = obj(ctx)
        if receiver is None and optional:
            return None
        return _time.call_method(receiver, name, [arg(ctx) for arg in args], pos)

    return call


_BUILDERS: dict[type[ast.Node], Callable[[ast.Node], Fn]] = {
    ast.Constant: _constant,
    ast.MethodCall: _method_call,
    ast.Literal: _literal,
    ast.Name: _name,
    ast.Pointer: _pointer,
    ast.ListLit: _list,
    ast.MapLit: _mapping,
    ast.Unary: _unary,
    ast.Binary: _binary,
    ast.Ternary: _ternary,
    ast.Member: _member,
    ast.Slice: _slicing,
    ast.Closure: _closure,
    ast.Call: _call,
}
