"""Every form a secret can take, found and replaced by ``*****`` in one place. Pure.

A secretKeyRef argument is substituted into a metric as is, and then travels:
requests and urllib3 percent-encode it into URLs (each with its own set of safe
characters), ``json.dumps`` escapes it (``\\"``, ``\\u00e9``), HTTP Basic auth and
many APIs base64 it, tracebacks print bytes as ``\\xc3\\xa9``. Any of those forms
can come back in an exception message or a response body, and from there into a
run's status, an Event or a log line. So a secret is matched as:

* its exact forms: raw, ``quote`` (safe ``''`` and ``'/'``), ``quote_plus``, JSON
  escaped (ASCII or not), base64 (standard and URL-safe, with and without padding,
  and at each of the three byte offsets it can sit at inside a longer encoded
  string);
* and, character by character, any mix of the raw character, its percent-encoding
  (either hex case), ``+`` for a space, its JSON escape and its ``\\x`` bytes: that
  covers every percent-encoder whatever characters it leaves alone.

Callers: ``analysis.templates`` (spec errors), ``providers.base.MeasurementContext``
(provider messages), ``analysis.run`` (measurements), ``analysis.controller``
(status, Events, metric labels) and the log filter ``common.logging`` installs on
the one log handler.
All of them go through ``Redactor``; nothing else in ``analysis`` replaces secrets.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import threading
from collections.abc import Hashable, Iterable
from urllib.parse import quote, quote_plus

REDACTED = "*****"
# Per-character patterns for secrets longer than this would make a huge regex;
# such secrets are still matched in every exact form.
MAX_CHARWISE_SECRET_CHARS = 512
# Base64 of a secret inside a longer encoded string only shares a "core" with the
# secret's own encoding; a core this short would match unrelated text.
MIN_BASE64_CORE_CHARS = 8
_REDACTORS_CACHED = 64
MSG_CLIPPED = " … [truncated: {omitted} of {total} characters left out] … "
# Backslash escapes of JSON (and of Python's repr, for the quote): \" \\ \/ \n ...
_BACKSLASH_ESCAPES = {'"': '\\"', "'": "\\'", "\\": "\\\\", "/": "\\/", "\b": "\\b",
                      "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _b64_variants(data: bytes) -> set[str]:
    standard = base64.b64encode(data).decode("ascii")
    urlsafe = base64.urlsafe_b64encode(data).decode("ascii")
    return {standard, standard.rstrip("="), urlsafe, urlsafe.rstrip("=")}


def _b64_cores(data: bytes) -> set[str]:
    """The base64 characters fixed by ``data`` alone, at byte offsets 0, 1 and 2.

    In ``b64(prefix + data + suffix)`` the characters spanning the boundaries depend
    on the neighbours; the ones in between depend only on ``data`` and its offset.
    """
    cores: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii")
        first = -(-offset * 8 // 6)  # ceil: the first character with no prefix bits
        last = (offset + len(data)) * 8 // 6  # floor: characters with no suffix bits
        core = encoded[first:last]
        if len(core) >= MIN_BASE64_CORE_CHARS:
            cores |= {core, core.replace("+", "-").replace("/", "_")}
    return cores


def secret_forms(secret: str) -> frozenset[str]:
    """The exact encoded forms of ``secret`` this module redacts (beside the per-character ones)."""
    data = secret.encode("utf-8")
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        quote_plus(secret, safe="/"),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        *_b64_variants(data),
        *_b64_cores(data),
    }
    return frozenset(form for form in forms if form)


def _char_alternatives(char: str) -> list[str]:
    """Regex alternatives for one character of a secret, longest first."""
    data = char.encode("utf-8")
    alternatives = {re.escape(char),
                    "(?i:" + re.escape("".join(f"%{byte:02x}" for byte in data)) + ")"}
    if char == " ":
        alternatives.add(re.escape("+"))
    if char in _BACKSLASH_ESCAPES:
        alternatives.add(re.escape(_BACKSLASH_ESCAPES[char]))
    if not char.isascii() or not char.isprintable():
        escaped = json.dumps(char)[1:-1]  # \u00e9, or a surrogate pair beyond the BMP
        alternatives.add("(?i:" + re.escape(escaped) + ")")
        alternatives.add("(?i:" + re.escape("".join(f"\\x{byte:02x}" for byte in data)) + ")")
    return sorted(alternatives, key=len, reverse=True)


def _charwise(secret: str) -> tuple[str, int]:
    """A pattern matching any per-character mix of encodings, and its longest match.

    Each character is an atomic group: once one alternative matched, the engine
    never tries the others there, so a hostile secret cannot make matching
    exponential. The exact forms, tried first, cover what that commitment misses.
    """
    parts, longest = [], 0
    for char in secret:
        data = char.encode("utf-8")
        parts.append("(?>" + "|".join(_char_alternatives(char)) + ")")
        longest += max(len(data) * 4, 12 if not char.isascii() else 6)
    return "".join(parts), longest


class Redactor:
    """Replaces every form of a set of secrets with ``*****``; build it with ``redactor()``.

    Secrets that are empty or part of ``*****`` itself are ignored: redacting them
    would rewrite the placeholder on every pass and never converge.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s and s not in REDACTED}))
        exact = sorted({form for s in self.secrets for form in secret_forms(s)},
                       key=len, reverse=True)
        alternatives = [re.escape(form) for form in exact]
        self.longest = max((len(form) for form in exact), default=0)
        for secret in self.secrets:
            if len(secret) <= MAX_CHARWISE_SECRET_CHARS:
                pattern, longest = _charwise(secret)
                alternatives.append(pattern)
                self.longest = max(self.longest, longest)
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

    def redact(self, text: str) -> str:
        """``text`` with every form of every secret replaced by ``*****``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)

    def clip(self, text: str, *, limit: int, tail: int = 0) -> str:
        """``text`` redacted and at most ``limit`` characters long.

        A longer text keeps its start (and its last ``tail`` characters) around a
        note saying how many characters were left out. Only a window around what
        is kept is scanned, so clipping a 10 MB body costs what clipping ``limit``
        characters does; no secret is cut in half at either edge (the window
        reaches one whole secret form past the cut).
        """
        if len(text) <= limit:
            redacted = self.redact(text)
            if len(redacted) <= limit:
                return redacted
            # A short secret made it grow; what is left holds no secret, cut it plainly.
            note = MSG_CLIPPED.format(omitted=len(redacted) - limit, total=len(redacted))
            return redacted[: max(limit - len(note), 0)] + note
        # The note's length depends on the count it states; the total bounds it.
        room = max(limit - len(MSG_CLIPPED.format(omitted=len(text), total=len(text))), 0)
        note = MSG_CLIPPED.format(omitted=len(text) - room, total=len(text))
        tail = min(tail, room // 2)
        head = room - tail
        kept_tail = self._tail(text, tail)[-tail:] if tail else ""
        return self._head(text, head)[:head] + note + kept_tail

    def _head(self, text: str, size: int) -> str:
        """The redacted text from position 0 to ``size`` (a secret crossing it: all of it)."""
        window = text[: size + self.longest]
        out, pos = [], 0
        for match in self._pattern.finditer(window) if self._pattern is not None else ():
            if match.start() >= size:
                break
            out += [window[pos : match.start()], REDACTED]
            pos = match.end()
        out.append(window[pos:size])
        return "".join(out)

    def _tail(self, text: str, size: int) -> str:
        """The redacted last ``size`` characters (a secret crossing the start: all of it)."""
        start = len(text) - size
        window_start = max(start - self.longest, 0)
        window, cut = text[window_start:], start - window_start
        out, pos = [], cut
        for match in self._pattern.finditer(window) if self._pattern is not None else ():
            if match.end() <= cut:
                continue
            out += [window[pos : max(match.start(), pos)], REDACTED]
            pos = match.end()
        out.append(window[pos:])
        return "".join(out)


@functools.lru_cache(maxsize=_REDACTORS_CACHED)
def _cached(secrets: tuple[str, ...]) -> Redactor:
    return Redactor(secrets)


def redactor(secrets: Iterable[str]) -> Redactor:
    """The Redactor for ``secrets`` (compiled once per distinct set, a few kept)."""
    return _cached(tuple(sorted(set(secrets))))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret in ``secrets`` replaced by ``*****``."""
    return redactor(secrets).redact(text)


# --- log lines ---------------------------------------------------------------------------


class ActiveSecrets:
    """The secrets of the runs being reconciled, for redacting log lines.

    A log line can come from anywhere (a library's exception, kopf, a traceback),
    so the log filter cannot be handed the secrets of one reconcile; the controller
    registers each run's secrets here instead, and forgets them with the run. The
    pattern is rebuilt only when a log line needs it after a change, so a thousand
    runs starting cost one rebuild, not a thousand.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_owner: dict[Hashable, tuple[str, ...]] = {}
        self._redactor: Redactor | None = Redactor(())

    def register(self, owner: Hashable, secrets: Iterable[str]) -> None:
        values = tuple(sorted({s for s in secrets if s}))
        with self._lock:
            if self._by_owner.get(owner, ()) == values:
                return
            if values:
                self._by_owner[owner] = values
            else:
                self._by_owner.pop(owner, None)
            self._redactor = None

    def forget(self, owner: Hashable) -> None:
        with self._lock:
            if self._by_owner.pop(owner, None) is not None:
                self._redactor = None

    def __bool__(self) -> bool:
        return bool(self._by_owner)

    def redact(self, text: str) -> str:
        with self._lock:
            if self._redactor is None:
                self._redactor = redactor(s for values in self._by_owner.values() for s in values)
            current = self._redactor
        return current.redact(text)


ACTIVE_SECRETS = ActiveSecrets()


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites each record without any active secret.

    The record is rendered once (message, arguments and traceback) and the
    redacted text replaces it, so no formatter sees the original. A structlog
    event (common/logging.py: the record's message is the event dict, its
    traceback already text) keeps its fields, each redacted.
    """

    def __init__(self, active: ActiveSecrets = ACTIVE_SECRETS) -> None:
        super().__init__()
        self._active = active

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._active:
            return True
        if isinstance(record.msg, dict):
            # A structlog event (common/logging.py): redact each field, keep it an event.
            record.msg = record.msg.__class__(
                {key: self._redact_value(value) for key, value in record.msg.items()})
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report, not ours
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self._active.redact(message)
        exc_text = self._active.redact(record.exc_text) if record.exc_text else record.exc_text
        if redacted != message or exc_text != record.exc_text:
            record.msg, record.args = redacted, None
            record.exc_text = exc_text
            record.exc_info = None if exc_text else record.exc_info
        return True

    def _redact_value(self, value: object) -> object:
        if isinstance(value, str):
            return self._active.redact(value)
        if value is None or isinstance(value, int | float):
            return value
        text = str(value)
        redacted = self._active.redact(text)
        return value if redacted == text else redacted


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Add the redacting filter to every handler of ``logger`` (default: the root logger)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
