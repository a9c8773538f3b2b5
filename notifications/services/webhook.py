"""The generic webhook service: one HTTP request per notification, shaped by the template.

Built by ``notifications.services.config`` from ``service.webhook.<name>``; its
``send`` is called by the notifications controller (the recipient is not used, as
in Argo: subscribe with an empty value).

Options (Argo's): ``url``, ``headers`` (a list of ``{name, value}``),
``basicAuth`` (``{username, password}``), ``insecureSkipVerify``, ``retryMax``
(default 3), ``retryWaitMin`` (1s), ``retryWaitMax`` (5s).

Template part ``webhook.<name>``: ``method`` (default GET), ``path`` (appended to
``url``, as Argo does), ``body``. A template without a part for this webhook sends
nothing to it (Argo's behaviour: one template can serve several services).
Any 2xx is success; 429, 5xx and network errors are retried.
"""

from __future__ import annotations

from collections.abc import Mapping

import requests

from common.logging import get_logger
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

TYPE = "webhook"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

MSG_BAD_HEADERS = "{key}: headers must be a list of {{name, value}} with a non-empty name"
MSG_BAD_AUTH = "{key}: basicAuth needs a username and a password (strings)"
MSG_BAD_METHOD = 'webhook.{part}.method "{method}" is not one of ' + ", ".join(METHODS)
MSG_FAILED = 'webhook service "{name}" via {target}: {reason}'
LOG_NO_PART = "template has no webhook part for this service; nothing sent"

log = get_logger("tidegate.notifications.services")


class WebhookService:
    """One ``service.webhook.<name>`` entry."""

    type = TYPE

    def __init__(self, *, name: str, part_name: str, url: str, headers: Mapping[str, str],
                 basic_auth: tuple[str, str] | None, verify: bool, policy: RetryPolicy,
                 scrub: Scrubber) -> None:
        self.name = name
        self.part_name = part_name
        self._url = url
        self._headers = dict(headers)
        # As bytes: requests encodes a str as latin-1; RFC 7617 (and Argo) send UTF-8.
        self._auth = (basic_auth[0].encode(), basic_auth[1].encode()) if basic_auth else None
        self._verify = verify
        self._policy = policy
        self._scrub = scrub
        self._session = requests.Session()

    def send(self, notification: Notification, recipient: str, *,
             deadline_seconds: float = DEFAULT_DEADLINE_SECONDS) -> None:
        section = part(notification, TYPE, self.part_name)
        if not section:
            log.debug(LOG_NO_PART, service=self.name)
            return
        method = (text_field(section, "method").strip() or "GET").upper()
        if method not in METHODS:
            raise self._failure(MSG_BAD_METHOD.format(part=self.part_name, method=method))
        url = self._url + text_field(section, "path")
        body = text_field(section, "body").encode("utf-8")

        def once(deadline: Deadline) -> None:
            reply = request(self._session, method=method, url=url, deadline=deadline,
                            target=safe_target(url), headers=self._headers,
                            data=body or None, auth=self._auth, verify=self._verify)
            check_status(reply, scrub=self._scrub)

        deliver(once, deadline_seconds=deadline_seconds, policy=self._policy, service=self.name,
                failure=self._failure)

    def _failure(self, reason: str) -> DeliveryError:
        return self._scrub.error(MSG_FAILED.format(name=self.name, target=safe_target(self._url),
                                                   reason=reason))


def build(*, key: str, name: str, part_name: str, options: Options,
          scrub: Scrubber) -> WebhookService:
    """The service for ``service.webhook.<name>``; raises ConfigError."""
    url = options.url("url", required=True)
    headers: dict[str, str] = {}
    for item in options.items("headers"):
        if (not isinstance(item, Mapping) or not isinstance(item.get("name"), str)
                or not item["name"] or not isinstance(item.get("value", ""), str | int | float)):
            raise options.error(MSG_BAD_HEADERS, field="headers")
        headers[item["name"]] = str(item.get("value", ""))
    auth = options.mapping("basicAuth")
    basic_auth: tuple[str, str] | None = None
    if auth:
        username, password = auth.get("username"), auth.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise options.error(MSG_BAD_AUTH, field="basicAuth")
        basic_auth = (username, password)
    return WebhookService(name=name, part_name=part_name, url=url, headers=headers,
                          basic_auth=basic_auth,
                          verify=not options.boolean("insecureSkipVerify"),
                          policy=options.retry_policy(), scrub=scrub)
