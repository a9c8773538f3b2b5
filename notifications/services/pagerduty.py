"""The PagerDuty service: Events API v2 (``POST /v2/enqueue``), trigger and resolve.

Built by ``notifications.services.config`` from ``service.pagerdutyv2[.<name>]``;
its ``send`` is called by the notifications controller with the recipient naming
one of ``serviceKeys``.

Options: ``serviceKeys`` (Argo's: recipient -> integration key, usually
``$pagerduty-key``). Ours, not Argo's: ``apiURL`` (default
``https://events.pagerduty.com``, so tests can point it at a stand-in) and the
retry fields of Argo's webhook service (``retryMax``, ``retryWaitMin``,
``retryWaitMax``).

Template part ``pagerdutyv2``: ``summary`` (default: the title, else the message;
cut to PagerDuty's 1024 characters), ``severity`` (critical, error, warning or
info; default critical), ``source`` (default ``tidegate``), ``component``,
``group``, ``class``, ``url`` (sent as a link). Ours: ``action`` (trigger,
acknowledge or resolve; default trigger) and ``dedupKey`` (required to resolve),
so a "healthy again" trigger can resolve the incident its "degraded" one opened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests

from notifications.services.base import (
    DEFAULT_DEADLINE_SECONDS,
    DeliveryError,
    Notification,
    Scrubber,
    part,
    safe_target,
    text_field,
)
from notifications.services.options import Options
from notifications.services.transport import Deadline, RetryPolicy, check_status, deliver, request

TYPE = "pagerdutyv2"
DEFAULT_API_URL = "https://events.pagerduty.com"
ENQUEUE_PATH = "/v2/enqueue"
SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")
DEFAULT_SEVERITY = "critical"
DEFAULT_SOURCE = "tidegate"
MAX_SUMMARY_CHARS = 1024

MSG_NO_KEYS = "{key}: serviceKeys is required (recipient name -> integration key)"
MSG_BAD_KEYS = "{key}: serviceKeys must map names to integration keys (strings)"
MSG_UNKNOWN_RECIPIENT = 'no integration key for recipient "{recipient}" (serviceKeys has: {names})'
MSG_BAD_SEVERITY = 'pagerdutyv2.severity "{value}" is not one of ' + ", ".join(SEVERITIES)
MSG_BAD_ACTION = 'pagerdutyv2.action "{value}" is not one of ' + ", ".join(ACTIONS)
MSG_NO_DEDUP = "pagerdutyv2.dedupKey is required to {action}"
MSG_NO_SUMMARY = "pagerdutyv2.summary is empty (and so are the title and the message)"
MSG_FAILED = 'pagerdutyv2 service "{name}" to "{recipient}" via {target}: {reason}'


class PagerDutyService:
    """One ``service.pagerdutyv2[.<name>]`` entry."""

    type = TYPE

    def __init__(self, *, name: str, service_keys: Mapping[str, str], api_url: str,
                 policy: RetryPolicy, scrub: Scrubber) -> None:
        self.name = name
        self._keys = dict(service_keys)
        self._endpoint = api_url.rstrip("/") + ENQUEUE_PATH
        self._policy = policy
        self._scrub = scrub
        self._session = requests.Session()

    def event(self, notification: Notification, recipient: str) -> dict[str, Any]:
        """The Events API v2 body; raises DeliveryError for an unusable template part."""
        key = self._keys.get(recipient)
        if not key:
            names = ", ".join(sorted(self._keys)) or "nothing"
            raise self._failure(recipient, MSG_UNKNOWN_RECIPIENT.format(recipient=recipient,
                                                                        names=names))
        section = part(notification, TYPE)
        action = (text_field(section, "action") or text_field(section, "eventAction")
                  or "trigger").strip().lower()
        if action not in ACTIONS:
            raise self._failure(recipient, MSG_BAD_ACTION.format(value=action))
        body: dict[str, Any] = {"routing_key": key, "event_action": action}
        dedup = text_field(section, "dedupKey").strip()
        if dedup:
            body["dedup_key"] = dedup
        elif action != "trigger":
            raise self._failure(recipient, MSG_NO_DEDUP.format(action=action))
        if action == "trigger":
            body["payload"] = self._payload(notification, section, recipient=recipient)
            url = text_field(section, "url").strip()
            if url:
                body["links"] = [{"href": url}]
        return body

    def _payload(self, notification: Notification, section: Mapping[str, Any], *,
                 recipient: str) -> dict[str, str]:
        summary = (text_field(section, "summary").strip() or notification.title.strip()
                   or notification.message.strip())
        if not summary:
            raise self._failure(recipient, MSG_NO_SUMMARY)
        severity = (text_field(section, "severity").strip().lower() or DEFAULT_SEVERITY)
        if severity not in SEVERITIES:
            raise self._failure(recipient, MSG_BAD_SEVERITY.format(value=severity))
        payload = {"summary": summary[:MAX_SUMMARY_CHARS], "severity": severity,
                   "source": text_field(section, "source").strip() or DEFAULT_SOURCE}
        for field in ("component", "group", "class"):
            value = text_field(section, field).strip()
            if value:
                payload[field] = value
        return payload

    def send(self, notification: Notification, recipient: str, *,
             deadline_seconds: float = DEFAULT_DEADLINE_SECONDS) -> None:
        body = self.event(notification, recipient)
        deliver(lambda deadline: self._post(body, deadline=deadline),
                deadline_seconds=deadline_seconds, policy=self._policy, service=self.name,
                failure=lambda reason: self._failure(recipient, reason))

    def _post(self, body: dict[str, Any], *, deadline: Deadline) -> None:
        reply = request(self._session, method="POST", url=self._endpoint, deadline=deadline,
                        target=safe_target(self._endpoint),
                        headers={"Content-Type": "application/json"},
                        data=json.dumps(body).encode("utf-8"))
        # Success is 202 {"status": "success", "dedup_key": ...}. PagerDuty throttles
        # per integration key with 429: backed off (it rarely names a wait).
        check_status(reply, scrub=self._scrub)

    def _failure(self, recipient: str, reason: str) -> DeliveryError:
        return self._scrub.error(MSG_FAILED.format(name=self.name, recipient=recipient,
                                                   target=safe_target(self._endpoint),
                                                   reason=reason))


def build(*, key: str, name: str, options: Options, scrub: Scrubber) -> PagerDutyService:
    """The service for ``service.pagerdutyv2[.<name>]``; raises ConfigError."""
    keys = options.mapping("serviceKeys")
    if not keys:
        raise options.error(MSG_NO_KEYS, field="serviceKeys")
    if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in keys.items()):
        raise options.error(MSG_BAD_KEYS, field="serviceKeys")
    return PagerDutyService(name=name, service_keys=keys,
                            api_url=options.url("apiURL", default=DEFAULT_API_URL),
                            policy=options.retry_policy(), scrub=scrub)
