"""Go's fmt.Sprintf for the verbs templates use: %v %s %d %q %f %F %e %g %t %x %X %o %b %c %%.

Wrong arguments print as Go prints them (%!d(string=x), %!d(MISSING), %!(EXTRA ...)).
Widths and precisions above the output limit are refused, so `printf "%999999999d"`
cannot allocate. Called by funcs.py for printf.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from notifications.gotemplate.values import (
    EvalError,
    format_float,
    go_quote,
    is_list,
    sprint_value,
    type_name,
)

MSG_WIDTH = "printf width or precision {n} exceeds the output limit {limit}"
_FLAGS = "-+# 0"


def _bad(verb: str, arg: Any) -> str:
    if arg is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({type_name(arg)}={sprint_value(arg)})"


def _pad(text: str, width: int | None, flags: str, *, numeric: bool = False) -> str:
    if width is None or len(text) >= width:
        return text
    if "-" in flags:
        return text + " " * (width - len(text))
    if "0" in flags and numeric:
        sign = text[0] if text[:1] in "+-" else ""
        body = text[len(sign):]
        return sign + "0" * (width - len(text)) + body
    return " " * (width - len(text)) + text


def _int_text(value: int, verb: str, flags: str, prec: int | None) -> str:
    base = {"d": 10, "x": 16, "X": 16, "o": 8, "b": 2}[verb]
    mag = abs(value)
    if base == 10:
        digits = str(mag)
    else:
        digits = format(mag, {16: "x", 8: "o", 2: "b"}[base])
        if verb == "X":
            digits = digits.upper()
    if prec is not None:
        digits = digits.rjust(prec, "0") if not (prec == 0 and mag == 0) else ""
    if "#" in flags:
        digits = {16: "0x" if verb == "x" else "0X", 8: "0", 2: "0b", 10: ""}[base] + digits
    sign = "-" if value < 0 else ("+" if "+" in flags else (" " if " " in flags else ""))
    return sign + digits


def _one(verb: str, arg: Any, flags: str, width: int | None, prec: int | None) -> str:
    numeric = False
    if verb == "v":
        if isinstance(arg, float):
            text = format_float(arg)
            numeric = True
        elif isinstance(arg, str) and "#" in flags:
            text = go_quote(arg)
        else:
            text = sprint_value(arg)
    elif verb == "s":
        if isinstance(arg, str):
            text = arg
        elif isinstance(arg, (Mapping, list, tuple)) or isinstance(arg, dt.datetime):
            text = sprint_value(arg)
        else:
            return _bad(verb, arg)
        if prec is not None:
            text = text[:prec]
    elif verb == "q":
        if isinstance(arg, str):
            text = go_quote(arg)
        elif isinstance(arg, int) and not isinstance(arg, bool):
            text = "'" + go_quote(chr(arg))[1:-1].replace("'", "\\'").replace('\\"', '"') + "'"
        else:
            return _bad(verb, arg)
    elif verb == "t":
        if not isinstance(arg, bool):
            return _bad(verb, arg)
        text = "true" if arg else "false"
    elif verb in "dxXob":
        if isinstance(arg, int) and not isinstance(arg, bool):
            text = _int_text(arg, verb, flags, prec)
            numeric = prec is None
        elif verb in "xX" and isinstance(arg, str):
            text = arg.encode("utf-8").hex()
            if verb == "X":
                text = text.upper()
        elif is_list(arg) and verb == "d":
            text = "[" + " ".join(_one(verb, a, flags, None, prec) for a in arg) + "]"
        else:
            return _bad(verb, arg)
    elif verb == "c":
        if not isinstance(arg, int) or isinstance(arg, bool) or not 0 <= arg <= 0x10FFFF:
            return _bad(verb, arg)
        text = chr(arg)
    elif verb in "fFeEgG":
        if not isinstance(arg, float):
            return _bad(verb, arg)
        text = format_float(arg, verb="f" if verb == "F" else verb, prec=prec if prec is not None else -1 if verb in "gG" else 6)
        if "+" in flags and not text.startswith("-"):
            text = "+" + text
        numeric = True
    else:
        return f"%!{verb}({type_name(arg)}={sprint_value(arg)})"
    return _pad(text, width, flags, numeric=numeric)


def _number(fmt: str, i: int, limit: int) -> tuple[int | None, int]:
    start = i
    while i < len(fmt) and fmt[i].isdigit():
        i += 1
        if i - start > 9:
            break
    if i == start:
        return None, i
    value = int(fmt[start:i])
    if value > limit:
        raise EvalError(MSG_WIDTH.format(n=value, limit=limit))
    return value, i


def sprintf(fmt: str, args: Sequence[Any], *, limit: int) -> str:
    """fmt.Sprintf(fmt, args...) for the verbs listed in the module docstring."""
    out: list[str] = []
    argi = 0
    i = 0
    n = len(fmt)
    while i < n:
        ch = fmt[i]
        if ch != "%":
            j = fmt.find("%", i)
            j = n if j < 0 else j
            out.append(fmt[i:j])
            i = j
            continue
        i += 1
        flags = ""
        while i < n and fmt[i] in _FLAGS:
            flags += fmt[i]
            i += 1
        width, i = _number(fmt, i, limit)
        prec: int | None = None
        if i < n and fmt[i] == ".":
            prec, i = _number(fmt, i + 1, limit)
            prec = prec or 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_one(verb, args[argi], flags, width, prec))
        argi += 1
    if argi < len(args):
        extra = ", ".join(
            "<nil>" if a is None else f"{type_name(a)}={sprint_value(a)}" for a in args[argi:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)
