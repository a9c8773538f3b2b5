"""The email service: one message over SMTP per notification.

Built by ``notifications.services.config`` from ``service.email[.<name>]``; its
``send`` is called by the notifications controller with an address (or several,
comma-separated) as recipient.

Options (Argo's): ``host``, ``port`` (default 587), ``from``, ``username``,
``password``, ``html`` (send the message as HTML), ``insecure_skip_verify``. Port
465 speaks TLS from the start; any other port upgrades with STARTTLS when the
server offers it. Ours: ``startTLS: false`` never upgrades, ``requireTLS: true``
refuses a server that does not offer STARTTLS, and the retry fields of Argo's
webhook service. Template part ``email``: ``subject`` (default: the title).

The whole conversation is retried on a lost connection or a 4xx (temporary)
reply, within the one deadline; each socket operation's timeout is the time left.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from notifications.services.base import (
    DEFAULT_DEADLINE_SECONDS,
    MAX_QUOTED_REPLY_CHARS,
    DeliveryError,
    Notification,
    Scrubber,
    part,
    text_field,
)
from notifications.services.options import Options
from notifications.services.transport import (
    Deadline,
    PermanentError,
    RetryableError,
    RetryPolicy,
    deliver,
)

TYPE = "email"
DEFAULT_PORT = 587
IMPLICIT_TLS_PORT = 465
AUTH_OK = 235

MSG_BAD_PORT = "{key}: port must be a number from 1 to 65535"
MSG_NO_RECIPIENT = "no address: subscribe with an email address as recipient"
MSG_FAILED = 'email service "{name}" to "{recipient}" via {host}:{port}: {reason}'
MSG_SMTP = "SMTP {code}: {reply}"
MSG_NO_TLS = "the server does not offer STARTTLS and requireTLS is set"
MSG_NETWORK = "{kind} talking to the SMTP server"
MSG_DEADLINE = "no answer within the deadline of {seconds:g}s"


class EmailService:
    """One ``service.email[.<name>]`` entry."""

    type = TYPE

    def __init__(self, *, name: str, host: str, port: int, sender: str, username: str,
                 password: str, html: bool, verify: bool, start_tls: bool, require_tls: bool,
                 policy: RetryPolicy, scrub: Scrubber) -> None:
        self.name = name
        self._host, self._port = host, port
        self._sender = sender
        self._username, self._password = username, password
        self._html = html
        self._verify = verify
        self._start_tls, self._require_tls = start_tls, require_tls
        self._policy = policy
        self._scrub = scrub

    def message(self, notification: Notification, recipient: str) -> EmailMessage:
        """The message as it goes out (for ``template notify --dry-run`` too)."""
        addresses = [a.strip() for a in recipient.split(",") if a.strip()]
        if not addresses:
            raise self._failure(recipient, MSG_NO_RECIPIENT)
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = ", ".join(addresses)
        mail["Subject"] = text_field(part(notification, TYPE), "subject") or notification.title
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain=self._host)
        mail.set_content(notification.message, subtype="html" if self._html else "plain")
        return mail

    def send(self, notification: Notification, recipient: str, *,
             deadline_seconds: float = DEFAULT_DEADLINE_SECONDS) -> None:
        mail = self.message(notification, recipient)
        deliver(lambda deadline: self._deliver(mail, deadline=deadline),
                deadline_seconds=deadline_seconds, policy=self._policy, service=self.name,
                failure=lambda reason: self._failure(recipient, reason))

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self._verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _deliver(self, mail: EmailMessage, *, deadline: Deadline) -> None:
        try:
            self._conversation(mail, deadline=deadline)
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(
                exc.smtp_error, bytes) else str(exc.smtp_error)
            reason = MSG_SMTP.format(code=exc.smtp_code,
                                     reply=self._scrub(reply, limit=MAX_QUOTED_REPLY_CHARS))
            if 400 <= exc.smtp_code < 500:
                raise RetryableError(reason) from None
            raise PermanentError(reason) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            reason = MSG_SMTP.format(code="/".join(map(str, codes)), reply="recipients refused")
            if all(400 <= code < 500 for code in codes):
                raise RetryableError(reason) from None
            raise PermanentError(reason) from None
        except smtplib.SMTPNotSupportedError:
            raise PermanentError(MSG_NO_TLS) from None
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            if deadline.expired or isinstance(exc, TimeoutError):
                raise RetryableError(MSG_DEADLINE.format(seconds=deadline.seconds)) from None
            # The class name only: an ssl or socket error can repeat what was sent.
            raise RetryableError(MSG_NETWORK.format(kind=type(exc).__name__)) from None

    def _conversation(self, mail: EmailMessage, *, deadline: Deadline) -> None:
        timeout = deadline.remaining()
        client: smtplib.SMTP
        if self._port == IMPLICIT_TLS_PORT:
            client = smtplib.SMTP_SSL(self._host, self._port, timeout=timeout,
                                      context=self._context())
        else:
            client = smtplib.SMTP(self._host, self._port, timeout=timeout)
        with client:
            client.ehlo()
            if self._port != IMPLICIT_TLS_PORT and self._start_tls:
                if client.has_extn("starttls"):
                    client.starttls(context=self._context())
                    client.ehlo()
                elif self._require_tls:
                    raise smtplib.SMTPNotSupportedError(MSG_NO_TLS)
            if self._username:
                _set_timeout(client, deadline)
                _login(client, self._username, self._password)
            _set_timeout(client, deadline)
            client.send_message(mail)

    def _failure(self, recipient: str, reason: str) -> DeliveryError:
        return self._scrub.error(MSG_FAILED.format(name=self.name, recipient=recipient,
                                                   host=self._host, port=self._port,
                                                   reason=reason))


def _login(client: smtplib.SMTP, username: str, password: str) -> None:
    """smtplib's login, or AUTH PLAIN in UTF-8 for credentials smtplib cannot send
    (it encodes them as ASCII and raises on anything else)."""
    if (username + password).isascii():
        client.login(username, password)
        return
    token = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
    code, reply = client.docmd("AUTH", "PLAIN " + token)
    if code != AUTH_OK:
        raise smtplib.SMTPAuthenticationError(code, reply)


def _set_timeout(client: smtplib.SMTP, deadline: Deadline) -> None:
    # The next step alone never waits past the deadline.
    if deadline.expired:
        raise TimeoutError(MSG_DEADLINE.format(seconds=deadline.seconds))
    if client.sock is not None:
        client.sock.settimeout(deadline.remaining())


def build(*, key: str, name: str, options: Options, scrub: Scrubber) -> EmailService:
    """The service for ``service.email[.<name>]``; raises ConfigError."""
    port_text = options.text("port", default=str(DEFAULT_PORT))
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise options.error(MSG_BAD_PORT, field="port")
    return EmailService(
        name=name, host=options.text("host", required=True), port=int(port_text),
        sender=options.text("from", required=True), username=options.text("username"),
        password=options.text("password"), html=options.boolean("html"),
        verify=not options.boolean("insecure_skip_verify"),
        start_tls=options.boolean("startTLS", default=True),
        require_tls=options.boolean("requireTLS"),
        policy=options.retry_policy(), scrub=scrub)
