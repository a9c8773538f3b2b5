"""HTTP sends for the services: one total deadline, retries with backoff, capped replies.

Called by the Slack, PagerDuty and webhook services (slack.py, pagerduty.py,
webhook.py); the email service uses ``deliver`` (``retrying`` inside one
``Deadline``) with smtplib.

A send is a few tries inside one ``Deadline``: each request's connect and read
timeouts are the time left, the socket's timeout is cut down again before every
chunk of the reply is read, and no retry starts if its backoff would end past the
deadline. A reply body is read up to ``MAX_RESPONSE_BYTES`` and no further.

What is not bounded here: a server that drips its status line or headers one byte
at a time can hold one try for up to the time left per byte received (requests only
has per-``recv`` timeouts). analysis/providers/deadline.py has a watchdog that
closes such sockets; it lives in analysis/, which notifications may not import.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from common.logging import get_logger
from notifications.services.base import (
    MAX_QUOTED_REPLY_CHARS,
    MAX_RESPONSE_BYTES,
    DeliveryError,
    Scrubber,
)

READ_CHUNK_BYTES = 64 * 1024
# A try that would have less than this left is not worth starting.
MIN_TRY_SECONDS = 0.05
# Argo's webhook service: retryMax 3, retryWaitMin 1s, retryWaitMax 5s.
DEFAULT_RETRIES = 3
DEFAULT_WAIT_MIN_SECONDS = 1.0
DEFAULT_WAIT_MAX_SECONDS = 5.0

MSG_DEADLINE = "no answer within the deadline of {seconds:g}s"
MSG_NETWORK = "{kind} talking to {target}"
MSG_INVALID = "the request to {target} cannot be sent ({kind})"
MSG_HTTP = "HTTP {status}: {reply}"
# Any 2xx: what the PagerDuty and webhook services accept as delivered.
SUCCESS_STATUSES = range(200, 300)
LOG_RETRY = "delivery try failed, retrying"

log = get_logger("tidegate.notifications.services")

T = TypeVar("T")
# Checked first: requests' exceptions are all OSErrors, these are not network failures.
_INVALID_REQUEST = (
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.URLRequired,
    UnicodeError,
)


class Deadline:
    """One send's time budget (monotonic clock)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + max(seconds, 0.0)

    def remaining(self) -> float:
        """Seconds left, never below a millisecond (a zero socket timeout means non-blocking)."""
        return max(self.at - time.monotonic(), 0.001)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at


class RetryableError(Exception):
    """A try failed in a way a later try may not (5xx, 429, network); ``retry_after``
    is the server's own wait (Retry-After), which replaces our backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """A try failed in a way no retry fixes (4xx, Slack's invalid_auth, a bad payload)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry (Argo's retryMax/retryWaitMin/retryWaitMax)."""

    retries: int = DEFAULT_RETRIES
    wait_min: float = DEFAULT_WAIT_MIN_SECONDS
    wait_max: float = DEFAULT_WAIT_MAX_SECONDS


@dataclass(frozen=True)
class Reply:
    """What came back: status, headers and the body (at most the cap; ``truncated`` if more)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare for these APIs and read as absent)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def retrying(fn: Callable[[], T], *, deadline: Deadline, policy: RetryPolicy,
             service: str = "") -> T:
    """``fn()`` retried on RetryableError with exponential backoff, all within ``deadline``.

    Raises the last error: RetryableError when the tries or the time ran out,
    PermanentError (or anything else) at once.
    """

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return error.retry_after
        backoff = policy.wait_min * (2 ** max(state.attempt_number - 1, 0))
        return float(min(backoff, policy.wait_max))

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number > policy.retries:
            return True
        # No try that would start after the deadline, or with next to nothing left.
        return state.upcoming_sleep + MIN_TRY_SECONDS >= deadline.at - time.monotonic()

    def before_sleep(state: RetryCallState) -> None:
        # The error's text is built without secrets (replies quoted are redacted).
        error = state.outcome.exception() if state.outcome is not None else None
        log.info(LOG_RETRY, service=service, attempt=state.attempt_number, error=str(error),
                 wait=round(state.upcoming_sleep, 3))

    for attempt in Retrying(retry=retry_if_exception_type(RetryableError), wait=wait,
                            stop=stop, before_sleep=before_sleep, reraise=True):
        with attempt:
            return fn()
    raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


def deliver(fn: Callable[[Deadline], None], *, deadline_seconds: float, policy: RetryPolicy,
            service: str, failure: Callable[[str], DeliveryError]) -> None:
    """One send: ``fn(deadline)`` retried by ``policy`` within a fresh ``Deadline``.

    A try's last RetryableError or PermanentError becomes ``failure(reason)``, the
    service's DeliveryError naming its target (never the error's traceback).
    """
    deadline = Deadline(deadline_seconds)
    try:
        retrying(lambda: fn(deadline), deadline=deadline, policy=policy, service=service)
    except (RetryableError, PermanentError) as exc:
        raise failure(str(exc)) from None


def quote(reply: Reply, scrub: Scrubber) -> str:
    """The reply's body as a DeliveryError may quote it: redacted and cut short."""
    return scrub(reply.text(), limit=MAX_QUOTED_REPLY_CHARS)


def check_status(reply: Reply, *, scrub: Scrubber, ok: range = SUCCESS_STATUSES) -> None:
    """Nothing for a status in ``ok``; else the error for the retry loop.

    429 (with the server's Retry-After) and 5xx are worth another try; any other
    status is not. The reason quotes the redacted reply.
    """
    if reply.status in ok:
        return
    reason = MSG_HTTP.format(status=reply.status, reply=quote(reply, scrub))
    if reply.status == 429:
        raise RetryableError(reason,
                             retry_after=retry_after_seconds(reply.headers.get("Retry-After")))
    if reply.status >= 500:
        raise RetryableError(reason)
    raise PermanentError(reason)


def request(session: requests.Session, *, method: str, url: str, deadline: Deadline,
            target: str, **kwargs: Any) -> Reply:
    """One HTTP try inside ``deadline``; network failures become RetryableError.

    ``target`` (``safe_target(url)``) is what an error names: never the URL itself.
    """
    if deadline.expired:
        raise RetryableError(MSG_DEADLINE.format(seconds=deadline.seconds))
    remaining = deadline.remaining()
    try:
        with session.request(method=method, url=url, stream=True,
                             timeout=(remaining, remaining), **kwargs) as response:
            body, truncated = _read_capped(response, deadline=deadline)
            return Reply(status=response.status_code, headers=dict(response.headers),
                         body=body, truncated=truncated)
    except _INVALID_REQUEST as exc:
        # A request requests refuses to build (a newline in a header, a bad URL):
        # no retry fixes it. Its text quotes the offending value, so only the class.
        raise PermanentError(MSG_INVALID.format(kind=type(exc).__name__, target=target)) from None
    except (requests.Timeout, TimeoutError):
        raise RetryableError(MSG_DEADLINE.format(seconds=deadline.seconds)) from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, OSError) as exc:
        if deadline.expired:
            raise RetryableError(MSG_DEADLINE.format(seconds=deadline.seconds)) from None
        # The class name only: the exception's text repeats the URL, token and all.
        raise RetryableError(MSG_NETWORK.format(kind=type(exc).__name__, target=target)) from None


def _read_capped(response: requests.Response, *, deadline: Deadline) -> tuple[bytes, bool]:
    """The body up to MAX_RESPONSE_BYTES; past it, stop reading and say so."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if deadline.expired:
            raise TimeoutError(MSG_DEADLINE.format(seconds=deadline.seconds))
        _set_socket_timeout(response, deadline.remaining())
        chunk = response.raw.read1(min(READ_CHUNK_BYTES, MAX_RESPONSE_BYTES + 1 - size),
                                  decode_content=True)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            # Closing (not draining) drops the connection instead of reading the rest.
            response.raw.close()
            return b"".join(chunks)[:MAX_RESPONSE_BYTES], True


def _set_socket_timeout(response: requests.Response, seconds: float) -> None:
    # The next recv alone never waits past the deadline.
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)
