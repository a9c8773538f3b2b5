"""Local stand-ins for the servers notifications are delivered to, for tests.

Named as stand-ins: Slack's and PagerDuty's real servers are absent here, so
``SlackStandIn`` and ``PagerDutyStandIn`` answer as those APIs do (and check the
payloads they expect); ``WebhookReceiver`` records any request; ``SmtpStandIn`` is
a minimal SMTP server (no TLS). Used by tests/test_notifications_services.py and
the notifications e2e tests. All listen on 127.0.0.1 on an ephemeral port and
serve from daemon threads.

Every stand-in has:

* ``.url``: where to point the service (``SlackStandIn.url`` + ``/api/`` is Slack's
  ``apiURL``; ``PagerDutyStandIn.url`` is the PagerDuty ``apiURL``;
  ``SmtpStandIn.url`` is ``smtp://127.0.0.1:<port>``, with ``.host``/``.port``);
* ``.requests``: what arrived so far, parsed (``Received`` for HTTP, ``Mail``
  for SMTP), a copy;
* ``.wait_for(n, timeout)``: those requests once there are at least ``n``,
  else AssertionError;
* ``.close()`` (also a context manager).

Scripted misbehaviour, applied to the next requests before the stand-in's own
answer: ``fail(times, status=500, body=..., headers=...)`` answers that instead;
``hang(times=None)`` never answers (``None``: every request from now on) until
``close()``. ``SlackStandIn.fail_not_ok(times, error=...)`` answers HTTP 200
``{"ok": false, "error": ...}``; ``SmtpStandIn.fail(times, code=451)`` refuses the
message with that reply code. Every request is recorded, answered or not.

``HttpStandIn`` is the shared base (a ThreadingHTTPServer that records and
replays scripted answers); a new stand-in overrides ``answer``.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.message
import email.policy
import itertools
import json
import socketserver
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024
POLL_SECONDS = 0.02
SLACK_POST_MESSAGE = "/api/chat.postMessage"
PAGERDUTY_ENQUEUE = "/v2/enqueue"
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
PAGERDUTY_ACTIONS = ("trigger", "acknowledge", "resolve")

T = TypeVar("T")


@dataclass(frozen=True)
class Received:
    """One HTTP request as it arrived: ``json`` is the parsed body (None if not JSON)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    json: Any = None


@dataclass(frozen=True)
class Answer:
    """What a stand-in sends back (``hang``: nothing, until closed)."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    hang: bool = False


class _Recorder(Generic[T]):
    """The thread-safe part every stand-in shares: what arrived, and what to answer next."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._received: list[T] = []
        self._script: deque[Answer] = deque()
        self._hang_forever = False
        self.closed = threading.Event()

    @property
    def requests(self) -> list[T]:
        with self._lock:
            return list(self._received)

    def record(self, item: T) -> None:
        with self._lock:
            self._received.append(item)
            self._lock.notify_all()

    def wait_for(self, n: int, timeout: float) -> list[T]:
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._received) >= n, timeout=timeout):
                raise AssertionError(f"{type(self).__name__}: {len(self._received)} requests "
                                     f"arrived within {timeout}s, expected {n}")
            return list(self._received)

    def fail(self, times: int, *, status: int = 500, body: bytes = b"",
             headers: Mapping[str, str] | None = None) -> None:
        self._push(Answer(status=status, body=body, headers=dict(headers or {})), times)

    def hang(self, times: int | None = None) -> None:
        if times is None:
            self._hang_forever = True
        else:
            self._push(Answer(hang=True), times)

    def _push(self, answer: Answer, times: int) -> None:
        with self._lock:
            self._script.extend(itertools.repeat(answer, times))

    def scripted(self) -> Answer | None:
        with self._lock:
            if self._hang_forever:
                return Answer(hang=True)
            return self._script.popleft() if self._script else None


class HttpStandIn(_Recorder[Received]):
    """The base: records each request, answers with the script or ``answer()``."""

    def __init__(self) -> None:
        super().__init__()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY_BYTES)
                body = self.rfile.read(length) if length else b""
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                received = Received(method=self.command, path=self.path,
                                    headers=dict(self.headers.items()), body=body, json=parsed)
                stand_in.record(received)
                answer = stand_in.scripted() or stand_in.answer(received)
                if answer.hang:
                    stand_in.closed.wait()
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                try:
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the client stopped reading (a capped reply): that is its right

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib)
                pass  # test output stays readable

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, received: Received) -> Answer:
        """The stand-in's own answer (the base: 200 ``ok``)."""
        return Answer(status=200, body=b"ok", headers={"Content-Type": "text/plain"})

    def close(self) -> None:
        self.closed.set()  # releases every hung handler
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def json_answer(status: int, document: Any, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status=status, body=json.dumps(document).encode(),
                  headers={"Content-Type": "application/json", **(headers or {})})


class WebhookReceiver(HttpStandIn):
    """Any method, any path: recorded and answered 200 ``ok``."""


class SlackStandIn(HttpStandIn):
    """Slack's Web API ``chat.postMessage`` (and an incoming webhook under ``/services/``).

    Answers as Slack does: HTTP 200 with ``{"ok": false, "error": ...}`` for a wrong
    token (``invalid_auth``/``not_authed``), a missing channel (``channel_not_found``),
    no text, attachments or blocks (``no_text``), attachments or blocks that are not
    lists (``invalid_attachments``/``invalid_blocks``), a body that is not JSON
    (``invalid_json``); else ``{"ok": true, "channel": ..., "ts": ..., "message": ...}``.
    """

    def __init__(self, *, token: str = "xoxb-stand-in") -> None:
        self.token = token
        self._ts = itertools.count(1)
        super().__init__()

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def fail_not_ok(self, times: int, *, error: str = "internal_error") -> None:
        answer = json_answer(200, {"ok": False, "error": error})
        self._push(answer, times)

    def answer(self, received: Received) -> Answer:
        path = urlsplit(received.path).path
        if path.startswith("/services/"):
            return self._incoming(received)
        if received.method != "POST" or path != SLACK_POST_MESSAGE:
            return json_answer(404, {"ok": False, "error": "unknown_method"})
        auth = received.headers.get("Authorization", "")
        if not auth:
            return json_answer(200, {"ok": False, "error": "not_authed"})
        if auth != f"Bearer {self.token}":
            return json_answer(200, {"ok": False, "error": "invalid_auth"})
        error = _slack_payload_error(received.json, channel_required=True)
        if error:
            return json_answer(200, {"ok": False, "error": error})
        message = received.json
        ts = f"{time.time():.0f}.{next(self._ts):06d}"
        return json_answer(200, {"ok": True, "channel": message["channel"], "ts": ts,
                                 "message": {"text": message.get("text", ""), "ts": ts}})

    def _incoming(self, received: Received) -> Answer:
        error = _slack_payload_error(received.json, channel_required=False)
        if error:
            return Answer(status=400, body=error.encode(), headers={"Content-Type": "text/plain"})
        return Answer(status=200, body=b"ok", headers={"Content-Type": "text/plain"})


def _slack_payload_error(message: Any, *, channel_required: bool) -> str:
    if not isinstance(message, dict):
        return "invalid_json"
    if channel_required and not (isinstance(message.get("channel"), str) and message["channel"]):
        return "channel_not_found"
    if not (message.get("text") or message.get("attachments") or message.get("blocks")):
        return "no_text"
    for key, error in (("attachments", "invalid_attachments"), ("blocks", "invalid_blocks")):
        value = message.get(key)
        if value is not None and not (isinstance(value, list)
                                      and all(isinstance(v, dict) for v in value)):
            return error
    return ""


class PagerDutyStandIn(HttpStandIn):
    """PagerDuty's Events API v2 ``POST /v2/enqueue``.

    Checks ``routing_key`` (one of ``routing_keys`` when given), ``event_action``,
    and for a trigger ``payload.summary``, ``payload.severity`` (critical, error,
    warning, info) and ``payload.source``; for acknowledge/resolve a ``dedup_key``.
    Answers 400 ``{"status": "invalid event", "errors": [...]}`` or 202
    ``{"status": "success", "message": "Event processed", "dedup_key": ...}``.
    """

    def __init__(self, *, routing_keys: tuple[str, ...] = ()) -> None:
        self.routing_keys = routing_keys
        self._keys = itertools.count(1)
        super().__init__()

    def answer(self, received: Received) -> Answer:
        if received.method != "POST" or urlsplit(received.path).path != PAGERDUTY_ENQUEUE:
            return json_answer(404, {"status": "not found"})
        errors = _pagerduty_errors(received.json, self.routing_keys)
        if errors:
            return json_answer(400, {"status": "invalid event",
                                     "message": "Event object is invalid", "errors": errors})
        dedup = received.json.get("dedup_key") or f"stand-in-{next(self._keys)}"
        return json_answer(202, {"status": "success", "message": "Event processed",
                                 "dedup_key": dedup})


def _pagerduty_errors(event: Any, routing_keys: tuple[str, ...]) -> list[str]:
    if not isinstance(event, dict):
        return ["the body must be a JSON object"]
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or not key or (routing_keys and key not in routing_keys):
        errors.append("'routing_key' is missing or unknown")
    action = event.get("event_action")
    if action not in PAGERDUTY_ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing"]
        if not (isinstance(payload.get("summary"), str) and payload["summary"]):
            errors.append("'payload.summary' is missing")
        elif len(payload["summary"]) > 1024:
            errors.append("'payload.summary' is longer than 1024 characters")
        if payload.get("severity") not in PAGERDUTY_SEVERITIES:
            errors.append("'payload.severity' is invalid")
        if not (isinstance(payload.get("source"), str) and payload["source"]):
            errors.append("'payload.source' is missing")
    elif action in ("acknowledge", "resolve") and not event.get("dedup_key"):
        errors.append("'dedup_key' is required to acknowledge or resolve")
    return errors


# --- SMTP ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    """One message accepted (or refused by ``fail``) by the SMTP stand-in."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    username: str = ""
    accepted: bool = True

    @property
    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


class SmtpStandIn(_Recorder[Mail]):
    """A minimal SMTP server: EHLO/HELO, AUTH PLAIN and LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT.

    No STARTTLS (it does not advertise it). With ``username``/``password`` set, AUTH
    must match (535 otherwise) and MAIL before AUTH is refused (530).
    """

    def __init__(self, *, username: str = "", password: str = "") -> None:
        super().__init__()
        self.username, self.password = username, password
        stand_in = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                stand_in._session(self)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="SmtpStandIn", daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def fail(self, times: int, *, status: int = 451, body: bytes = b"",
             headers: Mapping[str, str] | None = None) -> None:
        """Refuse the next ``times`` messages at the end of DATA with ``status``."""
        super().fail(times, status=status, body=body or b"stand-in refuses", headers=headers)

    def close(self) -> None:
        self.closed.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SmtpStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session(self, conn: socketserver.StreamRequestHandler) -> None:
        def say(line: str) -> None:
            conn.wfile.write(line.encode() + b"\r\n")

        def read() -> str:
            return conn.rfile.readline(MAX_LINE_BYTES).decode("utf-8", "replace").rstrip("\r\n")

        first = self.scripted()
        if first is not None and first.hang:
            self.closed.wait()
            return
        pending = first  # a scripted refusal applies to the first message of this session
        user, sender = "", ""
        recipients: list[str] = []
        say("220 smtp-stand-in ESMTP")
        while not self.closed.is_set():
            line = read()
            if not line:
                return
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                say("250-smtp-stand-in")
                say("250-AUTH PLAIN LOGIN")
                say("250 8BITMIME")
            elif verb == "HELO":
                say("250 smtp-stand-in")
            elif verb == "AUTH":
                user = self._auth(arg, say=say, read=read)
            elif verb == "MAIL":
                if self.username and not user:
                    say("530 authentication required")
                    continue
                sender, recipients = _address(arg), []
                say("250 ok")
            elif verb == "RCPT":
                recipients.append(_address(arg))
                say("250 ok")
            elif verb == "DATA":
                say("354 end with <CRLF>.<CRLF>")
                data = self._data(conn)
                refusal = pending or self.scripted()
                pending = None
                self.record(Mail(mail_from=sender, rcpt_to=tuple(recipients), data=data,
                                 username=user, accepted=refusal is None))
                if refusal is not None:
                    say(f"{refusal.status} {refusal.body.decode()}")
                else:
                    say("250 queued")
            elif verb in ("RSET", "NOOP"):
                say("250 ok")
            elif verb == "QUIT":
                say("221 bye")
                return
            else:
                say("502 command not implemented")

    def _auth(self, arg: str, *, say: Any, read: Any) -> str:
        mechanism, _, initial = arg.partition(" ")
        try:
            if mechanism.upper() == "PLAIN":
                if not initial:
                    say("334 ")
                    initial = read()
                _, user, password = base64.b64decode(initial).decode().split("\0")
            elif mechanism.upper() == "LOGIN":
                say("334 VXNlcm5hbWU6")
                user = base64.b64decode(initial or read()).decode()
                say("334 UGFzc3dvcmQ6")
                password = base64.b64decode(read()).decode()
            else:
                say("504 mechanism not supported")
                return ""
        except (ValueError, binascii.Error):
            say("501 malformed AUTH")
            return ""
        if self.username and (user, password) != (self.username, self.password):
            say("535 authentication failed")
            return ""
        say("235 authenticated")
        return user

    def _data(self, conn: socketserver.StreamRequestHandler) -> bytes:
        lines: list[bytes] = []
        size = 0
        while True:
            line = conn.rfile.readline(MAX_LINE_BYTES)
            if not line or line in (b".\r\n", b".\n"):
                return b"".join(lines)
            if line.startswith(b".."):
                line = line[1:]  # dot-stuffing
            size += len(line)
            if size <= MAX_BODY_BYTES:
                lines.append(line)


def _address(arg: str) -> str:
    _, _, rest = arg.partition(":")
    return rest.strip().split(" ")[0].strip("<>")
