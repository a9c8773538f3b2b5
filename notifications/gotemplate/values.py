"""Go's view of template data: truth, type names, %v printing, printf, JSON and quoting.

Data is what Kubernetes objects decode to (Mapping, list/tuple, str, int, float, bool,
None) plus TemplateFunc and datetime. None stands for Go's nil interface, which is
also what a missing map key yields under text/template's default `missingkey`.
Used by render.py and funcs.py.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from notifications.gotemplate.errors import TemplateFunc

NO_VALUE = "<no value>"
NIL = "<nil>"
MSG_UNSUPPORTED = "unsupported value of type {kind}"


class EvalError(Exception):
    """A failure inside evaluation; render.py adds the template position."""


def is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def type_name(value: Any) -> str:
    """The Go type name the value would have in decoded JSON/unstructured data."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if is_list(value):
        return "[]interface {}"
    if isinstance(value, TemplateFunc):
        return "func"
    if isinstance(value, dt.datetime):
        return "time.Time"
    return type(value).__name__


def truth(value: Any) -> bool:
    """Go's template truth: false, 0, nil, and empty strings, maps and slices are false."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, (str, Mapping, list, tuple)):
        return len(value) > 0
    return True


def format_float(value: float, verb: str = "g", prec: int = -1) -> str:
    """Go's formatting of a float64: %v is strconv's shortest 'g'; other verbs as printf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if verb == "g" and prec < 0:
        digits = repr(abs(value))
        mant, _, exp_s = digits.partition("e")
        exp_adj = int(exp_s) if exp_s else 0
        whole, _, frac = mant.partition(".")
        if frac == "0":
            frac = ""
        allds = (whole + frac).lstrip("0")
        point = len(whole) + exp_adj if whole != "0" else exp_adj - (len(frac) - len(frac.lstrip("0")))
        if not allds:
            return "-0" if math.copysign(1.0, value) < 0 else "0"
        allds = allds.rstrip("0") or "0"
        exp = point - 1
        sign = "-" if value < 0 else ""
        if exp < -4 or exp >= 6:  # fmt's %v: shortest digits, exponent form from 1e+06
            mantissa = allds[0] + ("." + allds[1:] if len(allds) > 1 else "")
            return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
        if point <= 0:
            return f"{sign}0.{'0' * (-point)}{allds}"
        if point >= len(allds):
            return f"{sign}{allds}{'0' * (point - len(allds))}"
        return f"{sign}{allds[:point]}.{allds[point:]}"
    out = f"{value:.{prec if prec >= 0 else 6}{verb}}"
    if verb in "eE":
        mant, _, exp_s = out.partition(verb)
        exp_n = int(exp_s)
        out = f"{mant}{verb}{'-' if exp_n < 0 else '+'}{abs(exp_n):02d}"
    return out


def format_time(value: dt.datetime) -> str:
    """Go's time.Time String(): 2006-01-02 15:04:05.999999999 -0700 MST."""
    base = value.strftime("%Y-%m-%d %H:%M:%S")
    if value.microsecond:
        base += ("." + f"{value.microsecond:06d}").rstrip("0")
    offset = value.strftime("%z") or "+0000"
    zone = value.tzname() or "UTC"
    return f"{base} {offset} {zone}"


def sprint_value(value: Any, *, top: bool = True) -> str:
    """fmt's %v of one value."""
    if value is None:
        return NIL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: _sort_key(kv[0]))
        inner = " ".join(f"{sprint_value(k, top=False)}:{sprint_value(v, top=False)}" for k, v in items)
        return f"map[{inner}]"
    if is_list(value):
        return "[" + " ".join(sprint_value(v, top=False) for v in value) + "]"
    if isinstance(value, TemplateFunc):
        return f"<func {value.name}>"
    if isinstance(value, dt.datetime):
        return format_time(value)
    raise EvalError(MSG_UNSUPPORTED.format(kind=type(value).__name__))


def _sort_key(key: Any) -> tuple[int, Any]:
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return (0, key)
    return (1, str(key))


def print_action(value: Any) -> str:
    """What `{{pipeline}}` writes: Go prints a nil interface as <no value>."""
    if value is None:
        return NO_VALUE
    return sprint_value(value)


def sprint(args: Sequence[Any]) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    parts: list[str] = []
    for i, arg in enumerate(args):
        if i > 0 and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            parts.append(" ")
        parts.append(sprint_value(arg))
    return "".join(parts)


def sprintln(args: Sequence[Any]) -> str:
    return " ".join(sprint_value(a) for a in args) + "\n"


def strval(value: Any) -> str:
    """Sprig's strval: strings as they are, anything else as %v."""
    if isinstance(value, str):
        return value
    return sprint_value(value)


def go_quote(text: str) -> str:
    """strconv.Quote: Go's double-quoted literal, printable Unicode kept."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code >= 0x80 and not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def to_plain(value: Any) -> Any:
    """Data as JSON-ready Python values (TemplateFunc and time become JSON scalars)."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if is_list(value):
        return [to_plain(v) for v in value]
    if isinstance(value, TemplateFunc):
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        # encoding/json writes a float64 without a fraction as an integer.
        return int(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise EvalError(MSG_UNSUPPORTED.format(kind=type(value).__name__))


def go_json(value: Any, *, pretty: bool = False, escape_html: bool = True) -> str:
    """encoding/json's Marshal (sorted keys, compact) or MarshalIndent with two spaces."""
    text = json.dumps(
        to_plain(value),
        sort_keys=True,
        ensure_ascii=False,
        allow_nan=False,
        indent=2 if pretty else None,
        separators=(",", ": ") if pretty else (",", ":"),
    )
    if escape_html:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def size_estimate(value: Any, limit: int) -> int:
    """A cheap upper-ish size of a value, stopping once it passes limit."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        total += 1
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            for k, v in item.items():
                stack.append(v)
                total += len(str(k))
        elif is_list(item):
            stack.extend(item)
    return total
