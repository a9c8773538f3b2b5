"""The functions templates may call: Go's builtins and the Sprig functions notifications use.

Each takes the render Context and its evaluated arguments and returns data; a failure
is an EvalError, which render.py reports as Go does ("error calling NAME: ..."). Every
function that can build a large string checks the size before building it. The only
user callables are TemplateFunc values, reached through `call`. Used by parse.py (which
names exist) and render.py.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from notifications.gotemplate.errors import TemplateFunc
from notifications.gotemplate.printf import sprintf
from notifications.gotemplate.values import (
    EvalError,
    go_json,
    go_quote,
    is_list,
    size_estimate,
    sprint,
    sprint_value,
    sprintln,
    strval,
    truth,
    type_name,
)

MSG_ARGS = "wrong number of args for {name}: want {want} got {got}"
MSG_TYPE = "wrong type for value; expected {want}; got {got}"
MSG_INVALID = "invalid value; expected {want}"
MSG_TOO_BIG = "result would exceed the output limit of {n} bytes"
MSG_NOT_CALLABLE = "non-function {what} of type {kind}"
MSG_FUNC_FAILED = "{name}: {error}"
MSG_INCOMPARABLE = "incompatible types for comparison: {a} and {b}"
MSG_UNCOMPARABLE = "uncomparable type {kind}: {value}"
MSG_INDEX_RANGE = "index out of range: {i}"
MSG_CANT_INDEX = "can't index item of type {kind}"
MSG_SLICE = "can't slice item of type {kind}"
MSG_DIV_ZERO = "integer divide by zero"
MSG_BAD_REGEX = "regular expression refused: {why}"
MSG_LEN = "len of type {kind}"
MSG_NO_LIST = "cannot find {which} on type {kind}"

REGEX_MAX_PATTERN = 256
REGEX_MAX_INPUT = 65536


@dataclass
class Context:
    max_output: int
    call_fn: Callable[[Any, list[Any]], Any]

    def check_size(self, n: int) -> None:
        if n > self.max_output:
            raise EvalError(MSG_TOO_BIG.format(n=self.max_output))


@dataclass(frozen=True)
class Spec:
    fn: Callable[[Context, Any], Any]
    lazy: bool = False


FUNCS: dict[str, Spec] = {}


def _reg(name: str, *, lazy: bool = False) -> Callable[[Callable[[Context, Any], Any]], Callable[[Context, Any], Any]]:
    def deco(fn: Callable[[Context, Any], Any]) -> Callable[[Context, Any], Any]:
        FUNCS[name] = Spec(fn, lazy)
        return fn

    return deco


def has_func(name: str) -> bool:
    return name in FUNCS


# ---- argument helpers


def _arity(name: str, args: Sequence[Any], want: int, *, at_least: bool = False) -> None:
    if (len(args) < want) if at_least else (len(args) != want):
        shown = f"at least {want}" if at_least else str(want)
        raise EvalError(MSG_ARGS.format(name=name, want=shown, got=len(args)))


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise EvalError(MSG_INVALID.format(want="string"))
    raise EvalError(MSG_TYPE.format(want="string", got=type_name(value)))


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None:
        raise EvalError(MSG_INVALID.format(want="int"))
    raise EvalError(MSG_TYPE.format(want="int", got=type_name(value)))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        raise EvalError(MSG_INVALID.format(want="bool"))
    raise EvalError(MSG_TYPE.format(want="bool", got=type_name(value)))


def to_int64(value: Any) -> int:
    """spf13/cast's ToInt64 as Sprig uses it: 0 for what does not convert."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and abs(value) != float("inf") else 0
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(".0"):
            text = text[:-2]
        try:
            return int(text, 0) if not text.lstrip("+-").startswith("0") or text.lstrip("+-") == "0" or text.lstrip("+-")[1:2].isalpha() else int(text, 8)
        except ValueError:
            return 0
    return 0


def _strslice(value: Any) -> list[str]:
    if value is None:
        return []
    if is_list(value):
        return [strval(v) for v in value if v is not None]
    return [strval(value)]


def _list(value: Any, which: str) -> Sequence[Any]:
    if is_list(value):
        return value  # type: ignore[no-any-return]
    raise EvalError(MSG_NO_LIST.format(which=which, kind=type_name(value)))


def invoke(fn: Any, args: list[Any]) -> Any:
    """Calls a TemplateFunc; its exception becomes an EvalError naming it."""
    if not isinstance(fn, TemplateFunc):
        raise EvalError(MSG_NOT_CALLABLE.format(what="nil" if fn is None else "value", kind=type_name(fn)))
    try:
        return fn.fn(*args)
    except Exception as exc:  # the caller's function: any failure is reported, never raised
        raise EvalError(MSG_FUNC_FAILED.format(name=fn.name, error=exc)) from None


# ---- Go builtins


@_reg("and", lazy=True)
def _and(ctx: Context, thunks: list[Callable[[], Any]]) -> Any:
    _arity("and", thunks, 1, at_least=True)
    value: Any = None
    for thunk in thunks:
        value = thunk()
        if not truth(value):
            return value
    return value


@_reg("or", lazy=True)
def _or(ctx: Context, thunks: list[Callable[[], Any]]) -> Any:
    _arity("or", thunks, 1, at_least=True)
    value: Any = None
    for thunk in thunks:
        value = thunk()
        if truth(value):
            return value
    return value


@_reg("not")
def _not(ctx: Context, args: list[Any]) -> Any:
    _arity("not", args, 1)
    return not truth(args[0])


@_reg("len")
def _len(ctx: Context, args: list[Any]) -> Any:
    _arity("len", args, 1)
    value = args[0]
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, (Mapping, list, tuple)):
        return len(value)
    if value is None:
        raise EvalError("reflect: call of reflect.Value.Type on zero Value")
    raise EvalError(MSG_LEN.format(kind=type_name(value)))


def _index1(value: Any, key: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get(key) if isinstance(key, str) else None
    if isinstance(value, (list, tuple, str)):
        if not isinstance(key, int) or isinstance(key, bool):
            raise EvalError(f"cannot index slice/array with type {type_name(key)}")
        seq: Sequence[Any] = value.encode("utf-8") if isinstance(value, str) else value
        if not 0 <= key < len(seq):
            raise EvalError(MSG_INDEX_RANGE.format(i=key))
        return seq[key]
    if value is None:
        raise EvalError("index of untyped nil")
    raise EvalError(MSG_CANT_INDEX.format(kind=type_name(value)))


@_reg("index")
def _index(ctx: Context, args: list[Any]) -> Any:
    _arity("index", args, 1, at_least=True)
    value = args[0]
    for key in args[1:]:
        value = _index1(value, key)
    return value


@_reg("slice")
def _slice(ctx: Context, args: list[Any]) -> Any:
    _arity("slice", args, 1, at_least=True)
    value = args[0]
    if not isinstance(value, (str, list, tuple)):
        raise EvalError(MSG_SLICE.format(kind=type_name(value)))
    bounds = [_int(a) for a in args[1:]]
    if len(bounds) > (2 if isinstance(value, str) else 3):
        raise EvalError(f"too many slice indexes: {len(bounds)}")
    seq: Any = value.encode("utf-8") if isinstance(value, str) else value
    lo = bounds[0] if bounds else 0
    hi = bounds[1] if len(bounds) > 1 else len(seq)
    if not 0 <= lo <= hi <= len(seq):
        raise EvalError(f"index out of range: {lo}:{hi}")
    part = seq[lo:hi]
    if isinstance(value, str):
        return part.decode("utf-8", "replace")
    return list(part)


@_reg("print")
def _print(ctx: Context, args: list[Any]) -> Any:
    ctx.check_size(sum(size_estimate(a, ctx.max_output) for a in args))
    return sprint(args)


@_reg("println")
def _println(ctx: Context, args: list[Any]) -> Any:
    ctx.check_size(sum(size_estimate(a, ctx.max_output) for a in args))
    return sprintln(args)


@_reg("printf")
def _printf(ctx: Context, args: list[Any]) -> Any:
    _arity("printf", args, 1, at_least=True)
    ctx.check_size(sum(size_estimate(a, ctx.max_output) for a in args))
    out = sprintf(_str(args[0]), args[1:], limit=ctx.max_output)
    ctx.check_size(len(out))
    return out


@_reg("call")
def _call(ctx: Context, args: list[Any]) -> Any:
    _arity("call", args, 1, at_least=True)
    return ctx.call_fn(args[0], list(args[1:]))


def _escape_arg(args: list[Any]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(args)


@_reg("html")
def _html(ctx: Context, args: list[Any]) -> Any:
    text = _escape_arg(args)
    table = {"&": "&amp;", "'": "&#39;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "\0": "\ufffd"}
    return "".join(table.get(ch, ch) for ch in text)


@_reg("js")
def _js(ctx: Context, args: list[Any]) -> Any:
    text = _escape_arg(args)
    table = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E",
             "&": "\\u0026", "=": "\\u003D", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    out: list[str] = []
    for ch in text:
        if ch in table:
            out.append(table[ch])
        elif ord(ch) < 0x20 or (ord(ch) >= 0x80 and not ch.isprintable()):
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


@_reg("urlquery")
def _urlquery(ctx: Context, args: list[Any]) -> Any:
    return urllib.parse.quote_plus(_escape_arg(args), safe="-_.~")


# Go's basic kinds, keyed by the type name a value has (values.type_name): what
# eq/lt compare; anything else (maps, slices, funcs, times) is "other".
_BASIC_KINDS = {"<nil>": "nil", "bool": "bool", "int": "int", "float64": "float", "string": "string"}


def _basic(value: Any) -> str:
    return _BASIC_KINDS.get(type_name(value), "other")


def _eq_pair(a: Any, b: Any) -> bool:
    ka, kb = _basic(a), _basic(b)
    if ka == "nil" or kb == "nil":
        return a is None and b is None
    if ka != kb:
        raise EvalError(MSG_INCOMPARABLE.format(a=type_name(a), b=type_name(b)))
    if ka == "other":
        if isinstance(a, (Mapping, list, tuple)):
            raise EvalError(MSG_UNCOMPARABLE.format(kind=type_name(a), value=sprint_value(a)))
        return a is b
    return bool(a == b)


@_reg("eq")
def _eq(ctx: Context, args: list[Any]) -> Any:
    _arity("eq", args, 1, at_least=True)
    first = args[0]
    if isinstance(first, (Mapping, list, tuple)):
        raise EvalError(MSG_UNCOMPARABLE.format(kind=type_name(first), value=sprint_value(first)))
    if len(args) == 1:
        raise EvalError("missing argument for comparison")
    return any(_eq_pair(first, other) for other in args[1:])


@_reg("ne")
def _ne(ctx: Context, args: list[Any]) -> Any:
    _arity("ne", args, 2)
    return not _eq(ctx, args)


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _basic(a), _basic(b)
    if ka != kb:
        raise EvalError(MSG_INCOMPARABLE.format(a=type_name(a), b=type_name(b)))
    if ka not in ("int", "float", "string"):
        raise EvalError("invalid type for comparison")
    return bool(a < b)


@_reg("lt")
def _flt(ctx: Context, args: list[Any]) -> Any:
    _arity("lt", args, 2)
    return _lt(args[0], args[1])


@_reg("le")
def _fle(ctx: Context, args: list[Any]) -> Any:
    _arity("le", args, 2)
    return _lt(args[0], args[1]) or _eq_pair(args[0], args[1])


@_reg("gt")
def _fgt(ctx: Context, args: list[Any]) -> Any:
    _arity("gt", args, 2)
    return not (_lt(args[0], args[1]) or _eq_pair(args[0], args[1]))


@_reg("ge")
def _fge(ctx: Context, args: list[Any]) -> Any:
    _arity("ge", args, 2)
    return not _lt(args[0], args[1])


# ---- Sprig: strings


def _str1(name: str, fn: Callable[[str], Any]) -> None:
    def impl(ctx: Context, args: list[Any]) -> Any:
        _arity(name, args, 1)
        return fn(_str(args[0]))

    FUNCS[name] = Spec(impl)


def _go_title(text: str) -> str:
    out: list[str] = []
    prev_sep = True
    for ch in text:
        out.append(ch.upper() if prev_sep else ch)
        prev_sep = not (ch.isalnum() or ch == "_")
    return "".join(out)


_str1("upper", str.upper)
_str1("lower", str.lower)
_str1("title", _go_title)
_str1("trim", lambda s: s.strip(" \t\n\r\v\f\u0085\u00a0"))
_str1("nospace", lambda s: "".join(s.split()))
_str1("b64enc", lambda s: base64.b64encode(s.encode("utf-8")).decode("ascii"))
_str1("sha256sum", lambda s: hashlib.sha256(s.encode("utf-8")).hexdigest())
_str1("sha1sum", lambda s: hashlib.sha1(s.encode("utf-8")).hexdigest())  # noqa: S324 - a digest for display, as Sprig


@_reg("b64dec")
def _b64dec(ctx: Context, args: list[Any]) -> Any:
    _arity("b64dec", args, 1)
    try:
        return base64.b64decode(_str(args[0]), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError) as exc:
        return f"illegal base64 data: {exc}"  # Sprig returns the error text


def _str2(name: str, fn: Callable[[str, str], Any]) -> None:
    def impl(ctx: Context, args: list[Any]) -> Any:
        _arity(name, args, 2)
        return fn(_str(args[0]), _str(args[1]))

    FUNCS[name] = Spec(impl)


_str2("trimPrefix", lambda p, s: s[len(p):] if p and s.startswith(p) else s)
_str2("trimSuffix", lambda p, s: s[: -len(p)] if p and s.endswith(p) else s)
_str2("trimAll", lambda c, s: s.strip(c))
_str2("contains", lambda sub, s: sub in s)
_str2("hasPrefix", lambda p, s: s.startswith(p))
_str2("hasSuffix", lambda p, s: s.endswith(p))


def _go_split(sep: str, text: str) -> list[str]:
    return list(text) if sep == "" else text.split(sep)


@_reg("split")
def _split(ctx: Context, args: list[Any]) -> Any:
    _arity("split", args, 2)
    return {f"_{i}": part for i, part in enumerate(_go_split(_str(args[0]), _str(args[1])))}


@_reg("splitList")
def _split_list(ctx: Context, args: list[Any]) -> Any:
    _arity("splitList", args, 2)
    return _go_split(_str(args[0]), _str(args[1]))


@_reg("join")
def _join(ctx: Context, args: list[Any]) -> Any:
    _arity("join", args, 2)
    sep = _str(args[0])
    parts = _strslice(args[1])
    ctx.check_size(sum(len(p) for p in parts) + len(sep) * max(len(parts) - 1, 0))
    return sep.join(parts)


@_reg("replace")
def _replace(ctx: Context, args: list[Any]) -> Any:
    _arity("replace", args, 3)
    old, new, src = _str(args[0]), _str(args[1]), _str(args[2])
    count = len(src) + 1 if old == "" else src.count(old)
    ctx.check_size(len(src) + count * (len(new) - len(old)))
    return src.replace(old, new)


@_reg("repeat")
def _repeat(ctx: Context, args: list[Any]) -> Any:
    _arity("repeat", args, 2)
    count, text = _int(args[0]), _str(args[1])
    if count < 0:
        raise EvalError("strings: negative Repeat count")
    ctx.check_size(count * len(text))
    return text * count


def _indent_impl(ctx: Context, args: list[Any], name: str) -> str:
    _arity(name, args, 2)
    spaces, text = _int(args[0]), _str(args[1])
    pad = " " * max(spaces, 0)
    ctx.check_size(len(text) + (text.count("\n") + 1) * len(pad))
    return pad + text.replace("\n", "\n" + pad)


@_reg("indent")
def _indent(ctx: Context, args: list[Any]) -> Any:
    return _indent_impl(ctx, args, "indent")


@_reg("nindent")
def _nindent(ctx: Context, args: list[Any]) -> Any:
    return "\n" + _indent_impl(ctx, args, "nindent")


@_reg("trunc")
def _trunc(ctx: Context, args: list[Any]) -> Any:
    _arity("trunc", args, 2)
    count, text = _int(args[0]), _str(args[1])
    if count < 0 and len(text) + count > 0:
        return text[len(text) + count :]
    if count >= 0 and len(text) > count:
        return text[:count]
    return text


@_reg("abbrev")
def _abbrev(ctx: Context, args: list[Any]) -> Any:
    _arity("abbrev", args, 2)
    width, text = _int(args[0]), _str(args[1])
    if width < 4 or len(text) <= width:
        return text
    return text[: width - 3] + "..."


@_reg("substr")
def _substr(ctx: Context, args: list[Any]) -> Any:
    _arity("substr", args, 3)
    start, end, text = _int(args[0]), _int(args[1]), _str(args[2])
    if start < 0:
        return text[:end]
    if end < 0 or end > len(text):
        return text[start:]
    return text[start:end]


@_reg("quote")
def _quote(ctx: Context, args: list[Any]) -> Any:
    ctx.check_size(sum(size_estimate(a, ctx.max_output) for a in args) * 2)
    return " ".join(go_quote(strval(a)) for a in args if a is not None)


@_reg("squote")
def _squote(ctx: Context, args: list[Any]) -> Any:
    ctx.check_size(sum(size_estimate(a, ctx.max_output) for a in args))
    return " ".join(f"'{strval(a)}'" for a in args if a is not None)


@_reg("cat")
def _cat(ctx: Context, args: list[Any]) -> Any:
    ctx.check_size(sum(size_estimate(a, ctx.max_output) for a in args))
    return " ".join(strval(a) for a in args if a is not None)


@_reg("toString")
def _to_string(ctx: Context, args: list[Any]) -> Any:
    _arity("toString", args, 1)
    ctx.check_size(size_estimate(args[0], ctx.max_output))
    return strval(args[0])


# ---- Sprig: JSON


def _json(ctx: Context, args: list[Any], name: str, *, pretty: bool, escape: bool) -> str:
    _arity(name, args, 1)
    ctx.check_size(size_estimate(args[0], ctx.max_output))
    try:
        out = go_json(args[0], pretty=pretty, escape_html=escape)
    except (ValueError, TypeError):
        return ""  # Sprig's toJson swallows marshal errors
    ctx.check_size(len(out))
    return out


FUNCS["toJson"] = Spec(lambda ctx, a: _json(ctx, a, "toJson", pretty=False, escape=True))
FUNCS["toPrettyJson"] = Spec(lambda ctx, a: _json(ctx, a, "toPrettyJson", pretty=True, escape=True))
FUNCS["toRawJson"] = Spec(lambda ctx, a: _json(ctx, a, "toRawJson", pretty=False, escape=False))


@_reg("fromJson")
def _from_json(ctx: Context, args: list[Any]) -> Any:
    _arity("fromJson", args, 1)
    try:
        # encoding/json decodes every number into float64.
        return json.loads(_str(args[0]), parse_int=float, parse_constant=lambda _c: None)
    except (ValueError, RecursionError):
        return None


# ---- Sprig: defaults, lists, dicts


def _empty(value: Any) -> bool:
    return not truth(value)


@_reg("default")
def _default(ctx: Context, args: list[Any]) -> Any:
    _arity("default", args, 1, at_least=True)
    if len(args) == 1 or _empty(args[1]):
        return args[0]
    return args[1]


@_reg("empty")
def _fempty(ctx: Context, args: list[Any]) -> Any:
    _arity("empty", args, 1)
    return _empty(args[0])


@_reg("coalesce")
def _coalesce(ctx: Context, args: list[Any]) -> Any:
    for value in args:
        if not _empty(value):
            return value
    return None


@_reg("ternary")
def _ternary(ctx: Context, args: list[Any]) -> Any:
    _arity("ternary", args, 3)
    return args[0] if _bool(args[2]) else args[1]


@_reg("list")
def _flist(ctx: Context, args: list[Any]) -> Any:
    ctx.check_size(sum(size_estimate(a, ctx.max_output) for a in args))
    return list(args)


@_reg("dict")
def _dict(ctx: Context, args: list[Any]) -> Any:
    ctx.check_size(sum(size_estimate(a, ctx.max_output) for a in args))
    out: dict[str, Any] = {}
    for i in range(0, len(args), 2):
        out[strval(args[i])] = args[i + 1] if i + 1 < len(args) else ""
    return out


def _map(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if value is None:
        raise EvalError(MSG_INVALID.format(want="map[string]interface {}"))
    raise EvalError(MSG_TYPE.format(want="map[string]interface {}", got=type_name(value)))


@_reg("get")
def _get(ctx: Context, args: list[Any]) -> Any:
    _arity("get", args, 2)
    mapping, key = _map(args[0]), _str(args[1])
    return mapping[key] if key in mapping else ""


@_reg("hasKey")
def _has_key(ctx: Context, args: list[Any]) -> Any:
    _arity("hasKey", args, 2)
    return _str(args[1]) in _map(args[0])


@_reg("keys")
def _keys(ctx: Context, args: list[Any]) -> Any:
    # Sprig's order is Go's random map order; we sort so output is stable.
    out: list[str] = []
    for mapping in args:
        out.extend(str(k) for k in _map(mapping))
    return sorted(out)


@_reg("sortAlpha")
def _sort_alpha(ctx: Context, args: list[Any]) -> Any:
    _arity("sortAlpha", args, 1)
    return sorted(_strslice(args[0]))


@_reg("has")
def _has(ctx: Context, args: list[Any]) -> Any:
    _arity("has", args, 2)
    if args[1] is None:
        return False
    return any(_basic(x) == _basic(args[0]) and x == args[0] for x in _list(args[1], "has"))


@_reg("first")
def _first(ctx: Context, args: list[Any]) -> Any:
    _arity("first", args, 1)
    seq = _list(args[0], "first")
    return seq[0] if seq else None


@_reg("last")
def _last(ctx: Context, args: list[Any]) -> Any:
    _arity("last", args, 1)
    seq = _list(args[0], "last")
    return seq[-1] if seq else None


@_reg("uniq")
def _uniq(ctx: Context, args: list[Any]) -> Any:
    _arity("uniq", args, 1)
    out: list[Any] = []
    for item in _list(args[0], "uniq"):
        if not any(_basic(item) == _basic(o) and item == o for o in out):
            out.append(item)
    return out


# ---- Sprig: numbers (int64 arithmetic through cast.ToInt64, as Sprig)


def _wrap64(value: int) -> int:
    return (value + (1 << 63)) % (1 << 64) - (1 << 63)


@_reg("add")
def _add(ctx: Context, args: list[Any]) -> Any:
    return _wrap64(sum(to_int64(a) for a in args))


@_reg("add1")
def _add1(ctx: Context, args: list[Any]) -> Any:
    _arity("add1", args, 1)
    return _wrap64(to_int64(args[0]) + 1)


@_reg("sub")
def _sub(ctx: Context, args: list[Any]) -> Any:
    _arity("sub", args, 2)
    return _wrap64(to_int64(args[0]) - to_int64(args[1]))


@_reg("mul")
def _mul(ctx: Context, args: list[Any]) -> Any:
    _arity("mul", args, 1, at_least=True)
    out = to_int64(args[0])
    for a in args[1:]:
        out = _wrap64(out * to_int64(a))
    return out


def _go_div(a: int, b: int) -> tuple[int, int]:
    if b == 0:
        raise EvalError(MSG_DIV_ZERO)
    q = abs(a) // abs(b)
    q = q if (a >= 0) == (b >= 0) else -q
    return _wrap64(q), a - b * q


@_reg("div")
def _div(ctx: Context, args: list[Any]) -> Any:
    _arity("div", args, 2)
    return _go_div(to_int64(args[0]), to_int64(args[1]))[0]


@_reg("mod")
def _mod(ctx: Context, args: list[Any]) -> Any:
    _arity("mod", args, 2)
    return _go_div(to_int64(args[0]), to_int64(args[1]))[1]


@_reg("max")
def _max(ctx: Context, args: list[Any]) -> Any:
    _arity("max", args, 1, at_least=True)
    return max(to_int64(a) for a in args)


@_reg("min")
def _min(ctx: Context, args: list[Any]) -> Any:
    _arity("min", args, 1, at_least=True)
    return min(to_int64(a) for a in args)


@_reg("int")
def _fint(ctx: Context, args: list[Any]) -> Any:
    _arity("int", args, 1)
    return to_int64(args[0])


FUNCS["int64"] = FUNCS["int"]


@_reg("atoi")
def _atoi(ctx: Context, args: list[Any]) -> Any:
    _arity("atoi", args, 1)
    return to_int64(_str(args[0]))


@_reg("float64")
def _float64(ctx: Context, args: list[Any]) -> Any:
    _arity("float64", args, 1)
    value = args[0]
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return 0.0
    return 0.0


# ---- Sprig: dates (UTC stands in for Go's local zone)

_LAYOUT = [
    ("January", "%B"), ("Monday", "%A"), ("2006", "%Y"), ("Z07:00", "%:z"), ("-07:00", "%:z"),
    ("-0700", "%z"), ("Jan", "%b"), ("Mon", "%a"), ("MST", "%Z"), ("01", "%m"), ("02", "%d"),
    ("_2", "%e"), ("15", "%H"), ("03", "%I"), ("04", "%M"), ("05", "%S"), ("06", "%y"),
    ("PM", "%p"), ("1", "%-m"), ("2", "%-d"), ("3", "%-I"), ("4", "%-M"), ("5", "%-S"),
]
_FRACTION = re.compile(r"[.,](0+|9+)")


def _now() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC)


def go_strftime(value: dt.datetime, layout: str) -> str:
    """time.Format with Go's reference-time layout, for the common elements."""
    out: list[str] = []
    i = 0
    while i < len(layout):
        frac = _FRACTION.match(layout, i) if layout[i] in ".," and i > 0 and layout[i - 1].isdigit() else None
        if frac is not None:
            digits = len(frac.group(1))
            text = f"{value.microsecond:06d}000"[:digits]
            if frac.group(1)[0] == "9":
                text = text.rstrip("0")
                out.append(("." + text) if text else "")
            else:
                out.append(layout[i] + text)
            i = frac.end()
            continue
        for token, directive in _LAYOUT:
            if layout.startswith(token, i):
                out.append(_directive(value, directive, token))
                i += len(token)
                break
        else:
            out.append(layout[i])
            i += 1
    return "".join(out)


def _directive(value: dt.datetime, directive: str, token: str) -> str:
    if directive == "%:z":
        off = value.utcoffset() or dt.timedelta(0)
        if token.startswith("Z") and off == dt.timedelta(0):
            return "Z"
        total = int(off.total_seconds()) // 60
        sign = "+" if total >= 0 else "-"
        return f"{sign}{abs(total) // 60:02d}:{abs(total) % 60:02d}"
    if directive == "%z":
        return value.strftime("%z") or "+0000"
    if directive == "%Z":
        return value.tzname() or "UTC"
    if directive == "%e":
        return f"{value.day:>2d}"
    if directive.startswith("%-"):
        number = {"m": value.month, "d": value.day, "I": (value.hour % 12) or 12,
                  "M": value.minute, "S": value.second}[directive[2]]
        return str(number)
    return value.strftime(directive)


def _as_time(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    return _now()  # Sprig's date formats the current time for any other argument


@_reg("now")
def _fnow(ctx: Context, args: list[Any]) -> Any:
    _arity("now", args, 0)
    return _now()


@_reg("date")
def _date(ctx: Context, args: list[Any]) -> Any:
    _arity("date", args, 2)
    return go_strftime(_as_time(args[1]), _str(args[0]))


@_reg("dateInZone")
def _date_in_zone(ctx: Context, args: list[Any]) -> Any:
    _arity("dateInZone", args, 3)
    zone_name = _str(args[2])
    when = _as_time(args[1])
    try:
        import zoneinfo

        zone: dt.tzinfo = zoneinfo.ZoneInfo(zone_name)
    except (ImportError, ValueError, KeyError, OSError):
        zone = dt.UTC  # Sprig falls back to UTC for an unknown zone
    return go_strftime(when.astimezone(zone), _str(args[0]))


def go_parse_time(layout: str, text: str) -> dt.datetime | None:
    """time.Parse for layouts built from the tokens go_strftime knows."""
    pattern: list[str] = []
    i = 0
    while i < len(layout):
        frac = _FRACTION.match(layout, i) if layout[i] in ".," and i > 0 and layout[i - 1].isdigit() else None
        if frac is not None:
            pattern.append(r"(?:[.,](?P<frac>\d+))?")
            i = frac.end()
            continue
        for token in _PARSE_RE:
            if layout.startswith(token, i):
                pattern.append(_PARSE_RE[token])
                i += len(token)
                break
        else:
            pattern.append(re.escape(layout[i]))
            i += 1
    try:
        match = re.fullmatch("".join(pattern), text)
    except re.error:
        return None
    if match is None:
        return None
    g = match.groupdict()
    try:
        month = int(g["mon"]) if g.get("mon") else _MONTHS.index(g["monname"][:3].title()) + 1 if g.get("monname") else 1
        hour = int(g.get("hour") or g.get("hour12") or 0)
        if g.get("ampm") and g.get("hour12"):
            hour = hour % 12 + (12 if g["ampm"].upper() == "PM" else 0)
        year = int(g["year"]) if g.get("year") else (2000 + int(g["yy"]) if g.get("yy") and int(g["yy"]) < 69 else 1900 + int(g["yy"]) if g.get("yy") else 0)
        micro = int((g.get("frac") or "0")[:6].ljust(6, "0"))
        tz: dt.tzinfo = dt.UTC
        off = g.get("off")
        if off and off != "Z":
            sign = -1 if off[0] == "-" else 1
            digits = off[1:].replace(":", "")
            tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0)))
        return dt.datetime(max(year, 1), month, int(g.get("day") or 1), hour, int(g.get("min") or 0),
                           int(g.get("sec") or 0), micro, tzinfo=tz)
    except (ValueError, IndexError):
        return None


_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_PARSE_RE = {
    "January": r"(?P<monname>[A-Za-z]+)", "Monday": r"[A-Za-z]+", "2006": r"(?P<year>\d{4})",
    "Z07:00": r"(?P<off>Z|[+-]\d\d:\d\d)", "-07:00": r"(?P<off>[+-]\d\d:\d\d)",
    "-0700": r"(?P<off>[+-]\d{4})", "Jan": r"(?P<monname>[A-Za-z]{3})", "Mon": r"[A-Za-z]{3}",
    "MST": r"[A-Z]{3,4}", "01": r"(?P<mon>\d\d)", "02": r"(?P<day>\d\d)", "_2": r" ?(?P<day>\d\d?)",
    "15": r"(?P<hour>\d\d)", "03": r"(?P<hour12>\d\d)", "04": r"(?P<min>\d\d)", "05": r"(?P<sec>\d\d)",
    "06": r"(?P<yy>\d\d)", "PM": r"(?P<ampm>AM|PM|am|pm)", "1": r"(?P<mon>\d\d?)", "2": r"(?P<day>\d\d?)",
    "3": r"(?P<hour12>\d\d?)", "4": r"(?P<min>\d\d?)", "5": r"(?P<sec>\d\d?)",
}


@_reg("toDate")
def _to_date(ctx: Context, args: list[Any]) -> Any:
    _arity("toDate", args, 2)
    parsed = go_parse_time(_str(args[0]), _str(args[1]))
    # Sprig returns Go's zero time when the text does not parse.
    return parsed or dt.datetime(1, 1, 1, tzinfo=dt.UTC)


# ---- Sprig: regular expressions (RE2 syntax subset; patterns that can backtrack badly are refused)

_NESTED = re.compile(r"\((?:[^()\\]|\\.)*[*+}](?:[^()\\]|\\.)*\)[*+{]|\((?:[^()\\]|\\.)*\|(?:[^()\\]|\\.)*\)[*+{]")


def _compile_regex(pattern: str) -> re.Pattern[str]:
    if len(pattern) > REGEX_MAX_PATTERN:
        raise EvalError(MSG_BAD_REGEX.format(why=f"longer than {REGEX_MAX_PATTERN} characters"))
    if re.search(r"\\[1-9]|\(\?[=!<]|\(\?P=", pattern):
        raise EvalError(MSG_BAD_REGEX.format(why="backreferences and lookaround are not RE2 syntax"))
    if _NESTED.search(pattern):
        raise EvalError(MSG_BAD_REGEX.format(why="a repeated group that repeats or alternates inside"))
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise EvalError(f"error parsing regexp: {exc}") from None


def _regex_input(text: str) -> str:
    if len(text) > REGEX_MAX_INPUT:
        raise EvalError(MSG_BAD_REGEX.format(why=f"input longer than {REGEX_MAX_INPUT} characters"))
    return text


@_reg("regexMatch")
def _regex_match(ctx: Context, args: list[Any]) -> Any:
    _arity("regexMatch", args, 2)
    return _compile_regex(_str(args[0])).search(_regex_input(_str(args[1]))) is not None


@_reg("regexFind")
def _regex_find(ctx: Context, args: list[Any]) -> Any:
    _arity("regexFind", args, 2)
    found = _compile_regex(_str(args[0])).search(_regex_input(_str(args[1])))
    return found.group(0) if found else ""


def _go_template_repl(repl: str) -> str:
    # Go's Expand: $1, ${1}, ${name}; $$ is a literal $.
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(2)
        return f"\\g<{name}>"

    escaped = repl.replace("\\", "\\\\")
    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", sub, escaped)


@_reg("regexReplaceAll")
def _regex_replace_all(ctx: Context, args: list[Any]) -> Any:
    _arity("regexReplaceAll", args, 3)
    pattern = _compile_regex(_str(args[0]))
    text, repl = _regex_input(_str(args[1])), _str(args[2])
    count = len(pattern.findall(text))
    ctx.check_size(len(text) + count * len(repl) * 2)
    try:
        return pattern.sub(_go_template_repl(repl), text)
    except (re.error, IndexError):
        # Go expands an unknown group to the empty string.
        return pattern.sub("", text)


@_reg("regexReplaceAllLiteral")
def _regex_replace_all_literal(ctx: Context, args: list[Any]) -> Any:
    _arity("regexReplaceAllLiteral", args, 3)
    pattern = _compile_regex(_str(args[0]))
    text, repl = _regex_input(_str(args[1])), _str(args[2])
    ctx.check_size(len(text) + len(pattern.findall(text)) * len(repl))
    return pattern.sub(lambda _m: repl, text)
