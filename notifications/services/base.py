"""The delivery services' shared vocabulary: the rendered notification, the Service
protocol, the two error types, and the redaction every message goes through.

Imported by each service module here (slack, pagerduty, webhook, email), by
``notifications.services.config`` (which builds them from the ConfigMap), and by
the notifications controller, which renders a template into a ``Notification``
and calls ``Service.send`` for each subscribed recipient.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from common.redaction import redactor

DEFAULT_DEADLINE_SECONDS = 30.0
# A chat or incident API answers with a small JSON document; anything past this is
# a broken or hostile server, not a reply we need.
MAX_RESPONSE_BYTES = 1024 * 1024
# How much of a failing reply (already redacted) a DeliveryError quotes.
MAX_QUOTED_REPLY_CHARS = 300
MAX_MESSAGE_CHARS = 1024


class DeliveryError(Exception):
    """A send failed; the message names the service and never holds a secret.

    Safe to put in a Kubernetes Event, a status field or a log line as is.
    """


class ConfigError(Exception):
    """A ``service.*`` entry of the notifications ConfigMap cannot be used.

    The message names the ConfigMap key and the field (``service.slack: token:
    ...``); ``service_key`` and ``field`` hold them for callers that group errors.
    """

    def __init__(self, message: str, *, service_key: str, field: str = "") -> None:
        super().__init__(message)
        self.service_key = service_key
        self.field = field


@dataclass(frozen=True)
class Notification:
    """One rendered template, as handed to ``Service.send``.

    ``parts`` holds the per-service sections exactly as the template wrote them,
    already rendered: ``{"slack": {"attachments": "[...]"}, "pagerdutyv2":
    {"summary": ...}, "webhook": {"<name>": {"method": ..., "path": ...,
    "body": ...}}, "email": {"subject": ...}}``.
    """

    message: str = ""
    title: str = ""
    parts: Mapping[str, Any] = field(default_factory=dict)


class Service(Protocol):
    """A configured delivery channel (one ``service.<type>[.<name>]`` entry)."""

    name: str  # the ConfigMap key without "service.": "slack", "webhook.github", ...
    type: str  # "slack", "pagerdutyv2", "webhook", "email"

    def send(self, notification: Notification, recipient: str, *,
             deadline_seconds: float = DEFAULT_DEADLINE_SECONDS) -> None:
        """Deliver ``notification`` to ``recipient``; raises DeliveryError."""
        ...


def part(notification: Notification, *path: str) -> Mapping[str, Any]:
    """The template section at ``path`` (e.g. ``"webhook", "github"``), or an empty one."""
    current: Any = notification.parts
    for key in path:
        if not isinstance(current, Mapping):
            return {}
        current = current.get(key)
    return current if isinstance(current, Mapping) else {}


def text_field(section: Mapping[str, Any], key: str) -> str:
    """A rendered field as text ("" when absent); numbers and booleans as YAML wrote them."""
    value = section.get(key)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def safe_target(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: where a request went, without the path,
    query or user info, any of which can hold a token (Slack's incoming webhook
    URLs are secrets from the path on)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or 'http'}://{host}{port}"


class Scrubber:
    """Redacts one service's secrets (and the forms they travel in) from messages."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._redactor = redactor(s for s in secrets if s)

    def __call__(self, text: str, *, limit: int = MAX_MESSAGE_CHARS) -> str:
        return self._redactor.clip(text, limit=limit)

    def error(self, message: str) -> DeliveryError:
        return DeliveryError(self(message))
