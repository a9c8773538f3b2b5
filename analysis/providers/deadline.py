"""One total deadline per HTTP measurement, and response bodies capped while they are read.

Used by the web and Prometheus providers (analysis/providers/web.py,
analysis/providers/prometheus.py), each in the measurement thread:

    with total_deadline(seconds=spec.timeout) as deadline:
        with deadline_request(session, deadline=deadline, method="GET", url=url) as response:
            body = read_body(response, deadline=deadline, limit=MAX_BODY_BYTES)

Why this exists: requests and urllib3 only know per-operation timeouts (each
connect, each ``recv``), so an endpoint that sends one byte every few seconds,
in the status line, the headers or the body, holds a measurement, its worker
thread and its socket for as long as it likes. Here every socket the calling
thread opens or reuses through a ``DeadlineAdapter`` is registered with the
thread's current ``Deadline``; one watchdog thread for the whole process shuts
those sockets down when the deadline passes, which wakes the blocked read at
once. The measurement then raises ``DeadlineExceeded`` (a requests Timeout), the
connection is closed, not pooled, and the thread is free.

What the deadline cannot interrupt: DNS resolution (``getaddrinfo`` blocks in C).
The controller's own safety net (analysis/controller.py) covers that, and every
deadline here is at most ``LONGEST_DEADLINE_SECONDS``, below that safety net, so
a measurement the controller gave up on never keeps its thread much longer.
"""

from __future__ import annotations

import ctypes
import heapq
import http.client
import itertools
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager
from urllib3.poolmanager import pool_classes_by_scheme as _URLLIB3_POOL_CLASSES

# Kept below the controller's MEASUREMENT_DEADLINE_SECONDS (300 s) with room to
# spare, so a provider always gives up, and frees its thread, before the
# controller stops waiting for it. A metric asking for more gets this much.
LONGEST_DEADLINE_SECONDS = 270.0
# A recv returns at most this much; the deadline and the cap are checked between reads.
READ_CHUNK_BYTES = 64 * 1024
# After dropping this many bytes of chunks, hand glibc's free pages back to the OS.
TRIM_AFTER_BYTES = 1024 * 1024

MSG_DEADLINE = "the total deadline of {seconds:g}s passed"
MSG_BODY_TOO_LARGE = "the response body is larger than {limit} bytes"

# What a socket shut down under a request can turn into on the way up.
_IO_ERRORS = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


class DeadlineExceeded(requests.exceptions.Timeout):
    """The measurement's total deadline passed (connect, send, headers or body)."""


class BodyTooLarge(Exception):
    """The response body grew past the cap; reading stopped there and the connection closed."""

    def __init__(self, limit: int) -> None:
        super().__init__(MSG_BODY_TOO_LARGE.format(limit=limit))
        self.limit = limit


def bounded_timeout(seconds: float) -> float:
    """A metric's timeout as the providers apply it: never past LONGEST_DEADLINE_SECONDS."""
    return min(seconds, LONGEST_DEADLINE_SECONDS)


class Deadline:
    """One measurement's time budget and the sockets it is spending it on."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._fired = False
        self._finished = False

    def remaining(self) -> float:
        """Seconds left, never below a millisecond (a zero socket timeout means non-blocking)."""
        return max(self.at - time.monotonic(), 0.001)

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() >= self.at

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            if self._finished:
                return
            if self._fired:
                _shut(sock)
                return
            self._sockets.append(sock)

    def fire(self) -> None:
        """Called by the watchdog: wake every read or write blocked on our sockets."""
        with self._lock:
            if self._finished:
                return
            self._fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def finish(self) -> None:
        """The measurement is over: its sockets (maybe back in a pool) are not ours to shut."""
        with self._lock:
            self._finished = True
            self._sockets = []


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket: ssl's own shutdown
    # would tear down TLS state under the thread still reading from it.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected: nothing left to wake


class _Watchdog:
    """One daemon thread that fires deadlines when they pass (a heap, earliest first)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="measure-deadlines", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                at, _, deadline = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._cond.wait(timeout=wait)
                    continue
                heapq.heappop(self._heap)
            # Outside the lock: shutting sockets down must not delay new registrations.
            deadline.fire()


_WATCHDOG = _Watchdog()
_CURRENT = threading.local()


@contextmanager
def total_deadline(*, seconds: float) -> Iterator[Deadline]:
    """The calling thread's HTTP through a DeadlineAdapter ends within ``seconds`` from now."""
    deadline = Deadline(seconds)
    outer: Deadline | None = getattr(_CURRENT, "deadline", None)
    _CURRENT.deadline = deadline
    _WATCHDOG.watch(deadline)
    try:
        yield deadline
    finally:
        deadline.finish()
        _CURRENT.deadline = outer


def _attach_to_current(sock: Any) -> None:
    deadline: Deadline | None = getattr(_CURRENT, "deadline", None)
    if deadline is not None and isinstance(sock, socket.socket):
        deadline.attach(sock)


class _DeadlineConnectionMixin:
    """Registers the connection's socket with the thread's deadline when it is made or reused.

    ``_new_conn`` is urllib3's one place where a new socket appears (before the
    TLS handshake, so a dripping handshake is covered too); ``request`` is where
    a pooled keep-alive connection is used again. The header-drip test in
    tests/test_hardening_deadlines.py fails if urllib3 ever renames either.
    """

    sock: Any

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        _attach_to_current(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:
            _attach_to_current(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_DeadlineConnectionMixin, HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnectionMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def _use_deadline_pools(manager: Any) -> None:
    # Only a manager with urllib3's stock pools (not SOCKS, which brings its own).
    if isinstance(manager, PoolManager) and manager.pool_classes_by_scheme is _URLLIB3_POOL_CLASSES:
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """A requests adapter whose connections obey the calling thread's ``total_deadline``."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _use_deadline_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _use_deadline_pools(manager)
        return manager


def deadline_session() -> requests.Session:
    """A new requests Session whose http and https connections obey ``total_deadline``."""
    session = requests.Session()
    session.mount("http://", DeadlineAdapter())
    session.mount("https://", DeadlineAdapter())
    return session


@contextmanager
def deadline_request(
    session: requests.Session, *, deadline: Deadline, method: str, url: str, **kwargs: Any
) -> Iterator[requests.Response]:
    """A streamed request inside ``deadline``; closes the response (and its socket) on exit.

    Any failure after the deadline passed is reported as DeadlineExceeded: the
    watchdog's shutdown shows up as a reset, an empty read or a truncated body,
    and none of those is what happened.
    """
    remaining = deadline.remaining()
    try:
        with session.request(
            method=method, url=url, stream=True, timeout=(remaining, remaining), **kwargs
        ) as response:
            yield response
    except _IO_ERRORS as exc:
        if deadline.expired and not isinstance(exc, DeadlineExceeded):
            raise DeadlineExceeded(MSG_DEADLINE.format(seconds=deadline.seconds)) from exc
        raise


def read_body(response: requests.Response, *, deadline: Deadline, limit: int) -> bytes:
    """The whole body, read in chunks; raises BodyTooLarge past ``limit`` bytes and
    DeadlineExceeded when the deadline passes, closing the connection either way."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if deadline.expired:
            response.raw.close()
            raise DeadlineExceeded(MSG_DEADLINE.format(seconds=deadline.seconds))
        _set_socket_timeout(response, deadline.remaining())
        # read1 returns what one recv brought, so the checks run between drips.
        chunk = response.raw.read1(min(READ_CHUNK_BYTES, limit + 1 - size), decode_content=True)
        if not chunk:
            if deadline.expired:  # the watchdog's shutdown looks like the end of the body
                response.raw.close()
                _drop(chunks, size)
                raise DeadlineExceeded(MSG_DEADLINE.format(seconds=deadline.seconds))
            body = b"".join(chunks)
            _drop(chunks, size)
            return body
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            response.raw.close()
            _drop(chunks, size)
            raise BodyTooLarge(limit)


def _drop(chunks: list[bytes], size: int) -> None:
    """Free the chunks now (an exception's traceback would keep them alive a while),
    and after a big body give the memory back: glibc keeps freed 64 KB blocks in
    its heap, and a few concurrent bodies at the cap left the controller tens of
    MB larger for good (the e2e test in e2e/test_hardening_slow.py measures it)."""
    chunks.clear()
    if size >= TRIM_AFTER_BYTES:
        _malloc_trim()


def _malloc_trim() -> None:
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only (musl has none)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


def _set_socket_timeout(response: requests.Response, seconds: float) -> None:
    # Belt and braces with the watchdog: the next recv alone never waits past the deadline.
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)
