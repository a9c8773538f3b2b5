"""The Slack service: ``chat.postMessage`` with a bot token, or an incoming webhook.

Built by ``notifications.services.config`` from ``service.slack[.<name>]``; its
``send`` is called by the notifications controller with the channel as recipient.

Options (Argo's): ``token`` (the bot's OAuth token, usually ``$slack-token``),
``apiURL`` (default ``https://slack.com/api/``), ``username``, ``icon`` (an
``:emoji:`` or an image URL), ``disableUnfurl``, ``insecureSkipVerify``;
``signingSecret`` and ``channels`` are accepted and unused (Argo uses them for
Slack's inbound requests and its own bot). Ours, not Argo's: ``webhookURL`` (an
incoming-webhook URL, used when there is no token; Argo sends those through its
generic webhook service) and the retry fields ``retryMax``, ``retryWaitMin`` and
``retryWaitMax`` of Argo's webhook service.

Template part ``slack``: ``attachments`` and ``blocks`` (rendered text holding a
JSON list), ``username`` and ``icon`` (override the service's). Not supported:
``groupingKey``/``notifyBroadcast`` (threads need the first message's timestamp
kept across sends).

Slack answers HTTP 200 with ``{"ok": false, "error": ...}`` for most failures:
that is a failure here, retried only for Slack's transient errors. A 429 waits
the Retry-After it names when that fits in the deadline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests

from notifications.services.base import (
    DEFAULT_DEADLINE_SECONDS,
    MAX_QUOTED_REPLY_CHARS,
    DeliveryError,
    Notification,
    Scrubber,
    part,
    safe_target,
    text_field,
)
from notifications.services.options import Options
from notifications.services.transport import (
    Deadline,
    PermanentError,
    Reply,
    RetryableError,
    RetryPolicy,
    check_status,
    deliver,
    quote,
    request,
    retry_after_seconds,
)

TYPE = "slack"
DEFAULT_API_URL = "https://slack.com/api/"
POST_MESSAGE = "chat.postMessage"
# Slack's errors that say "try again" rather than "this will never work".
TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error",
                              "service_unavailable", "request_timeout"})

MSG_NO_TOKEN = "{key}: token is required (or webhookURL, for an incoming webhook)"
MSG_NO_CHANNEL = "no channel: subscribe with the channel as recipient"
MSG_BAD_JSON = "slack.{field} is not valid JSON: {error}"
MSG_NOT_LIST = "slack.{field} must be a JSON list"
MSG_FAILED = 'slack service "{name}" to "{recipient}" via {target}: {reason}'
MSG_NOT_OK = "Slack answered ok:false: {error}"
MSG_NOT_JSON = "HTTP 200 with a reply that is not Slack's JSON: {reply}"
MSG_RATE_LIMITED = "rate limited (HTTP 429)"
MSG_TOO_LARGE = "the reply is larger than the cap; not a Slack answer"


class SlackService:
    """One ``service.slack[.<name>]`` entry."""

    type = TYPE

    def __init__(self, *, name: str, token: str, api_url: str, webhook_url: str,
                 username: str, icon: str, disable_unfurl: bool, verify: bool,
                 policy: RetryPolicy, scrub: Scrubber) -> None:
        self.name = name
        self._token = token
        self._endpoint = webhook_url or api_url.rstrip("/") + "/" + POST_MESSAGE
        self._incoming = not token
        self._username = username
        self._icon = icon
        self._disable_unfurl = disable_unfurl
        self._verify = verify
        self._policy = policy
        self._scrub = scrub
        self._session = requests.Session()

    def payload(self, notification: Notification, recipient: str) -> dict[str, Any]:
        """The JSON body Slack expects; raises DeliveryError for a bad attachments/blocks part."""
        section = part(notification, TYPE)
        body: dict[str, Any] = {}
        if not self._incoming:
            if not recipient:
                raise self._failure(recipient, MSG_NO_CHANNEL)
            body["channel"] = recipient
        body["text"] = notification.message
        for field in ("attachments", "blocks"):
            value = self._json_list(section, field=field, recipient=recipient)
            if value:
                body[field] = value
        username = text_field(section, "username") or self._username
        if username:
            body["username"] = username
        icon = text_field(section, "icon") or self._icon
        if icon:
            body["icon_url" if "://" in icon else "icon_emoji"] = icon
        if self._disable_unfurl:
            body["unfurl_links"] = False
            body["unfurl_media"] = False
        return body

    def send(self, notification: Notification, recipient: str, *,
             deadline_seconds: float = DEFAULT_DEADLINE_SECONDS) -> None:
        body = self.payload(notification, recipient)
        deliver(lambda deadline: self._post(body, deadline=deadline),
                deadline_seconds=deadline_seconds, policy=self._policy, service=self.name,
                failure=lambda reason: self._failure(recipient, reason))

    def _post(self, body: dict[str, Any], *, deadline: Deadline) -> None:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        reply = request(self._session, method="POST", url=self._endpoint, deadline=deadline,
                        target=safe_target(self._endpoint), headers=headers,
                        data=json.dumps(body).encode("utf-8"), verify=self._verify)
        self._check(reply)

    def _check(self, reply: Reply) -> None:
        if reply.status == 429:
            wait = retry_after_seconds(reply.headers.get("Retry-After"))
            raise RetryableError(MSG_RATE_LIMITED, retry_after=wait)
        # Only 200 is Slack's answer: any other 2xx is a proxy's, not a delivery.
        check_status(reply, scrub=self._scrub, ok=range(200, 201))
        if self._incoming:
            return  # an incoming webhook answers 200 "ok"; its failures are 4xx
        if reply.truncated:
            raise PermanentError(MSG_TOO_LARGE)
        try:
            answer = json.loads(reply.body)
        except ValueError:
            answer = None
        if not isinstance(answer, Mapping) or "ok" not in answer:
            raise PermanentError(MSG_NOT_JSON.format(reply=quote(reply, self._scrub)))
        if answer["ok"] is True:
            return
        error = str(answer.get("error") or "unknown")[:MAX_QUOTED_REPLY_CHARS]
        if error in TRANSIENT_ERRORS:
            wait = retry_after_seconds(reply.headers.get("Retry-After"))
            raise RetryableError(MSG_NOT_OK.format(error=error), retry_after=wait)
        raise PermanentError(MSG_NOT_OK.format(error=error))

    def _json_list(self, section: Mapping[str, Any], *, field: str, recipient: str) -> list[Any]:
        value = section.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            return []
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise self._failure(recipient, MSG_BAD_JSON.format(field=field, error=exc)) from None
        if not isinstance(value, list):
            raise self._failure(recipient, MSG_NOT_LIST.format(field=field))
        return value

    def _failure(self, recipient: str, reason: str) -> DeliveryError:
        return self._scrub.error(MSG_FAILED.format(name=self.name, recipient=recipient,
                                                   target=safe_target(self._endpoint),
                                                   reason=reason))


def build(*, key: str, name: str, options: Options, scrub: Scrubber) -> SlackService:
    """The service for ``service.slack[.<name>]``; raises ConfigError."""
    token = options.text("token")
    webhook_url = options.url("webhookURL")
    if not token and not webhook_url:
        raise options.error(MSG_NO_TOKEN, field="token")
    options.text("signingSecret")  # type-checked, unused: Slack's inbound requests
    options.items("channels")
    return SlackService(
        name=name, token=token, webhook_url="" if token else webhook_url,
        api_url=options.url("apiURL", default=DEFAULT_API_URL),
        username=options.text("username"), icon=options.text("icon"),
        disable_unfurl=options.boolean("disableUnfurl"),
        verify=not options.boolean("insecureSkipVerify"),
        policy=options.retry_policy(), scrub=scrub)
