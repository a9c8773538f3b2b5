"""The once-only record: which notifications an object has had, in Argo's annotation.

Argo keeps it on the object, as JSON in the annotation ``notified.notifications.argoproj.io``:
a map from key to the unix time it was sent (notifications-engine pkg/controller/state.go).
A key is ``[oncePer:]trigger:[i].hash:service:recipient`` where ``i`` is the condition's
index in its trigger and ``hash`` the unpadded URL-safe base64 of the SHA-1 of its ``when``
text (pkg/triggers/service.go). The same format is kept here byte for byte (Go's
``json.Marshal``: sorted keys, no spaces, ``<>&`` escaped), so an object moved between Argo
and Tidegate is not notified twice.

Argo trims the map to 100 entries, silently, which re-sends old notifications on busy
objects. Here the engine drops only keys that can never matter again (a condition no longer
true without ``oncePer``; a trigger, condition or subscription that no longer exists), and a
hard size bound evicts the oldest entries first, logged, only when that is not enough.

Users can edit annotations: anything unreadable is reported and read as empty (or, per
entry, skipped), never an exception.

Also here, because it is part of the key: ``oncePer``'s value. Argo evaluates it as an expr
expression and formats the result with Go's ``%v``; the expressions used for it are field
paths (``app.status.operationState?.syncResult?.revision``), so this module evaluates paths
(``.``, ``?.``, ``["key"]``, ``[0]``) joined by ``+`` with string literals, a missing field
being Go's ``<nil>``.

Called by notifications/engine.py (plan) and by the controller (``forget`` after a failed
send). Pure: no Kubernetes calls.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from common.logging import get_logger

NOTIFIED_ANNOTATION = "notified.notifications.argoproj.io"
MAX_STATE_BYTES = 64 * 1024
"""Hard bound on the annotation (Kubernetes allows 256 KiB for all annotations together)."""
NIL = "<nil>"

MSG_NOT_JSON = "annotation {annotation} is not JSON ({error}); read as empty"
MSG_NOT_OBJECT = "annotation {annotation} must be a JSON object of key to unix time, not {type}; read as empty"
MSG_BAD_ENTRY = "annotation {annotation}: entry {key!r} has no unix time ({value!r}); dropped"
MSG_EVICTED = "once-only record over its size bound: evicted the oldest entries"
MSG_ONCE_PER = "oncePer {source!r}: {problem} at column {column}"
MSG_ONCE_PER_EMPTY = "empty expression"
MSG_ONCE_PER_TOKEN = "expected a field path or a quoted string"
MSG_ONCE_PER_INDEX = "expected a quoted key or a number inside [ ]"

log = get_logger("tidegate.notifications.state")


def hash_when(when: str) -> str:
    """notifications-engine's hash of a condition's ``when`` text."""
    digest = hashlib.sha1(when.encode("utf-8"), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def condition_key(index: int, when: str) -> str:
    return f"[{index}].{hash_when(when)}"


def state_key(trigger: str, index: int, when: str, service: str, recipient: str, once_per: str = "") -> str:
    """``[oncePer:]trigger:[i].hash:service:recipient``, as Argo builds it."""
    key = f"{trigger}:{condition_key(index, when)}:{service}:{recipient}"
    return f"{once_per}:{key}" if once_per else key


def key_suffix(trigger: str, index: int, when: str, service: str, recipient: str) -> str:
    """The part of a key after the oncePer value (the whole key without oncePer)."""
    return state_key(trigger, index, when, service, recipient)


def key_belongs_to(key: str, suffix: str) -> bool:
    return key == suffix or key.endswith(":" + suffix)


def parse_state(value: str | None) -> tuple[dict[str, int], list[str]]:
    """The annotation's map, and what was wrong with it (empty when it was well formed)."""
    if value is None or value.strip() == "":
        return {}, []
    try:
        loaded = json.loads(value)
    except ValueError as exc:
        return {}, [MSG_NOT_JSON.format(annotation=NOTIFIED_ANNOTATION, error=exc)]
    if not isinstance(loaded, dict):
        return {}, [MSG_NOT_OBJECT.format(annotation=NOTIFIED_ANNOTATION, type=type(loaded).__name__)]
    state: dict[str, int] = {}
    problems: list[str] = []
    for key, raw in loaded.items():
        stamp = _unix_time(raw)
        if stamp is None:
            problems.append(MSG_BAD_ENTRY.format(annotation=NOTIFIED_ANNOTATION, key=key, value=raw))
            continue
        state[key] = stamp
    return state, problems


def _unix_time(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and math.isfinite(raw):
        return int(raw)
    if isinstance(raw, str):
        try:
            return int(float(raw.strip()))
        except (ValueError, OverflowError):
            return None
    return None


def dump_state(state: Mapping[str, int]) -> str:
    """The annotation's value as Go's ``json.Marshal`` writes the map."""
    text = json.dumps(dict(state), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def bound_state(state: dict[str, int], *, max_bytes: int = MAX_STATE_BYTES, obj: str = "") -> list[str]:
    """Evict the oldest entries until the annotation fits ``max_bytes``; returns the evicted
    keys (logged). The map is changed in place."""
    if len(dump_state(state).encode("utf-8")) <= max_bytes:
        return []
    evicted: list[str] = []
    size = len(dump_state(state).encode("utf-8"))
    for key in sorted(state, key=lambda k: (state[k], k)):
        if size <= max_bytes:
            break
        # Each entry costs its key and value, quotes, colon and comma.
        size -= len(json.dumps(key, ensure_ascii=False).encode("utf-8")) + len(str(state[key])) + 2
        del state[key]
        evicted.append(key)
    log.warning(MSG_EVICTED, object=obj, evicted=len(evicted), kept=len(state), max_bytes=max_bytes)
    return evicted


def forget(annotation: str | None, keys: Iterable[str]) -> str:
    """The annotation without ``keys``: after a failed send, so the next reconcile retries it."""
    state, _ = parse_state(annotation)
    for key in keys:
        state.pop(key, None)
    return dump_state(state)


# --- oncePer -----------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>\d+)
      | (?P<ident>[A-Za-z_$][A-Za-z0-9_$]*)
      | (?P<op>\?\.|\.|\[|\]|\+)
    )""",
    re.VERBOSE,
)

_Step = tuple[str, Any]  # ("key", name) or ("index", n); the chain of a path


@dataclass(frozen=True)
class OncePer:
    source: str
    terms: tuple[tuple[str, Any], ...]
    """("literal", text) or ("path", (root, steps))."""

    def value(self, env: Mapping[str, Any]) -> str:
        """The value, formatted as Go's ``%v`` would; never raises."""
        return "".join(_format(_term_value(term, env)) for term in self.terms)


@functools.lru_cache(maxsize=1024)
def compile_once_per(source: str) -> OncePer:
    """Parse an oncePer expression (cached: the engine asks on every reconcile); raises
    ValueError naming the column."""
    tokens = _tokenize(source)
    if not tokens:
        raise ValueError(MSG_ONCE_PER.format(source=source, problem=MSG_ONCE_PER_EMPTY, column=1))
    terms: list[tuple[str, Any]] = []
    position = 0
    while True:
        position, term = _parse_term(source, tokens, position)
        terms.append(term)
        if position == len(tokens):
            break
        kind, text, column = tokens[position]
        if (kind, text) != ("op", "+"):
            raise ValueError(MSG_ONCE_PER.format(source=source, problem=MSG_ONCE_PER_TOKEN, column=column))
        position += 1
    return OncePer(source=source, terms=tuple(terms))


def _tokenize(source: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    index = 0
    while index < len(source):
        if source[index:].strip() == "":
            break
        match = _TOKEN.match(source, index)
        if match is None or match.lastgroup is None:
            column = index + 1 + (len(source[index:]) - len(source[index:].lstrip()))
            raise ValueError(MSG_ONCE_PER.format(source=source, problem=MSG_ONCE_PER_TOKEN, column=column))
        tokens.append((match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup) + 1))
        index = match.end()
    return tokens


def _parse_term(source: str, tokens: list[tuple[str, str, int]], position: int) -> tuple[int, tuple[str, Any]]:
    if position >= len(tokens):
        raise ValueError(MSG_ONCE_PER.format(source=source, problem=MSG_ONCE_PER_TOKEN, column=len(source) + 1))
    kind, text, column = tokens[position]
    if kind == "string":
        return position + 1, ("literal", _unquote(text))
    if kind != "ident":
        raise ValueError(MSG_ONCE_PER.format(source=source, problem=MSG_ONCE_PER_TOKEN, column=column))
    root = text
    steps: list[_Step] = []
    position += 1
    while position < len(tokens):
        kind, text, column = tokens[position]
        if kind == "op" and text in (".", "?."):
            if position + 1 >= len(tokens) or tokens[position + 1][0] != "ident":
                raise ValueError(MSG_ONCE_PER.format(source=source, problem=MSG_ONCE_PER_TOKEN, column=column))
            steps.append(("key", tokens[position + 1][1]))
            position += 2
        elif kind == "op" and text == "[":
            if position + 2 >= len(tokens) or tokens[position + 2][1] != "]":
                raise ValueError(MSG_ONCE_PER.format(source=source, problem=MSG_ONCE_PER_INDEX, column=column))
            inner_kind, inner, _ = tokens[position + 1]
            if inner_kind == "string":
                steps.append(("key", _unquote(inner)))
            elif inner_kind == "number":
                steps.append(("index", int(inner)))
            else:
                raise ValueError(MSG_ONCE_PER.format(source=source, problem=MSG_ONCE_PER_INDEX, column=column))
            position += 3
        else:
            break
    return position, ("path", (root, tuple(steps)))


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _term_value(term: tuple[str, Any], env: Mapping[str, Any]) -> Any:
    kind, payload = term
    if kind == "literal":
        return payload
    root, steps = payload
    value: Any = env.get(root)
    for step_kind, step in steps:
        if step_kind == "key" and isinstance(value, Mapping):
            value = value.get(step)
        elif step_kind == "index" and isinstance(value, list) and -len(value) <= step < len(value):
            value = value[step]
        else:
            return None
    return value


def _format(value: Any) -> str:
    if value is None:
        return NIL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value).removesuffix(".0")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
