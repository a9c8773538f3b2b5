"""The delivery services (notifications/services/) against local stand-ins.

The stand-ins (e2e/receivers.py) are plain loopback servers that answer as Slack's
and PagerDuty's APIs do, a webhook receiver and an SMTP server: each test builds
services from ConfigMap data as a user writes it, sends, and checks what arrived.
Retries are made fast with the services' own retryWaitMin/retryWaitMax options.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import requests

from e2e.receivers import PagerDutyStandIn, SlackStandIn, SmtpStandIn, WebhookReceiver
from notifications.services import (
    MAX_RESPONSE_BYTES,
    ConfigError,
    DeliveryError,
    Notification,
    Service,
    build_services,
    secret_values,
)

TOKEN = "xoxb-1234-secret-token"
# Every character class encoders treat differently (as tests/test_hardening_secrets.py).
HOSTILE = 'p@ss w/rd+&=?%"é'
FAST = "retryWaitMin: 10ms\nretryWaitMax: 50ms\n"
DEADLINE_SLACK_SECONDS = 1.0  # scheduling slack on top of a deadline, on a shared 2-core box


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=TOKEN) as stand_in:
        yield stand_in


@pytest.fixture
def pagerduty() -> Iterator[PagerDutyStandIn]:
    with PagerDutyStandIn(routing_keys=("pd-key-0123456789",)) as stand_in:
        yield stand_in


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as stand_in:
        yield stand_in


@pytest.fixture
def smtp() -> Iterator[SmtpStandIn]:
    with SmtpStandIn(username="mailer", password=HOSTILE) as stand_in:
        yield stand_in


def _one(cm: Mapping[str, str], secrets: Mapping[str, str], name: str) -> Service:
    services, errors = build_services(cm, secrets)
    assert errors == []
    return services[name]


def _slack(stand_in: SlackStandIn, extra: str = "") -> Service:
    cm = {"service.slack": f"token: $slack-token\napiURL: {stand_in.api_url}\n{FAST}{extra}"}
    return _one(cm, {"slack-token": TOKEN}, "slack")


def _forms(secret: str) -> list[str]:
    """How a secret can show up, computed independently of common.redaction."""
    data = secret.encode()
    return [secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1],
            base64.b64encode(data).decode().rstrip("=")]


def _assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in _forms(secret):
            assert form not in text, f"secret form {form!r} leaked into {text!r}"


# --- configuration ------------------------------------------------------------------------

SECRETS = {"slack-token": TOKEN, "pd": "pd-key-0123456789", "pw": HOSTILE, "odd": "a: b #c", "newline": "x\ny"}


@pytest.mark.parametrize(("cm", "key", "name", "type_"), [
    ({"service.slack": "token: $slack-token"}, "slack", "slack", "slack"),
    ({"service.slack.ws1": "token: $slack-token"}, "ws1", "slack.ws1", "slack"),
    ({"service.slack": "webhookURL: https://hooks.example/services/T/B/x"}, "slack", "slack", "slack"),
    ({"service.webhook.github": "url: https://api.example"}, "github", "webhook.github", "webhook"),
    ({"service.pagerdutyv2": "serviceKeys:\n  svc: $pd"}, "pagerdutyv2", "pagerdutyv2", "pagerdutyv2"),
    ({"service.email": "host: smtp.example\nfrom: a@example\npassword: $pw"}, "email", "email", "email"),
], ids=["slack", "slack-custom-name", "slack-incoming-webhook", "webhook", "pagerdutyv2", "email"])
def test_services_are_keyed_by_the_name_subscriptions_use(
        cm: dict[str, str], key: str, name: str, type_: str) -> None:
    services, errors = build_services({**cm, "trigger.x": "- when: 'true'"}, SECRETS)
    assert errors == []
    assert list(services) == [key]
    assert (services[key].name, services[key].type) == (name, type_)


@pytest.mark.parametrize(("value", "field", "says"), [
    ("token: $missing-key", "token", '"$missing-key"'),
    ("token: ''", "token", "token is required"),
    ("token: [a]", "token", "must be a string"),
    ("token: x\napiURL: ftp://x", "apiURL", "http(s) URL"),
    ("token: x\nretryMax: 99", "retryMax", "whole number"),
    ("token: x\nretryWaitMin: soon", "retryWaitMin", "duration"),
    ("token: x\ndisableUnfurl: maybe", "disableUnfurl", "true or false"),
], ids=["missing-secret", "no-token", "token-not-text", "bad-api-url", "retry-max",
        "retry-wait", "bad-bool"])
def test_a_bad_slack_entry_is_an_error_naming_key_and_field(value: str, field: str,
                                                             says: str) -> None:
    services, errors = build_services({"service.slack": value,
                                       "service.webhook.ok": "url: http://127.0.0.1:1"}, SECRETS)
    assert list(services) == ["ok"]  # one bad service never hides the others
    [error] = errors
    assert (error.service_key, error.field) == ("service.slack", field)
    assert str(error).startswith("service.slack: ") and says in str(error)


@pytest.mark.parametrize(("key", "value", "says"), [
    ("service.teams", "recipientUrls: {}", 'service type "teams" is not supported'),
    ("service.webhook.x", "headers: []", "url is required"),
    ("service.webhook.x", "url: http://h\nheaders: [{value: v}]", "headers must be a list"),
    ("service.webhook.x", "url: http://h\nbasicAuth: {username: u}", "basicAuth needs"),
    ("service.pagerdutyv2", "serviceKeys: {}", "serviceKeys is required"),
    ("service.pagerdutyv2", "serviceKeys: {a: [1]}", "serviceKeys must map"),
    ("service.email", "from: a@b", "host is required"),
    ("service.email", "host: h\nfrom: a@b\nport: 99999", "port must be"),
    ("service.slack", "- just\n- a list", "must be a YAML mapping"),
    ("service.slack", "token: xoxb-literal\n  bad: : indent", "not valid YAML: line 2"),
], ids=["unsupported-type", "webhook-no-url", "webhook-bad-headers", "webhook-bad-auth",
        "pd-no-keys", "pd-bad-keys", "email-no-host", "email-bad-port", "not-a-mapping",
        "bad-yaml"])
def test_bad_entries(key: str, value: str, says: str) -> None:
    services, errors = build_services({key: value}, SECRETS)
    assert services == {}
    [error] = errors
    assert error.service_key == key and str(error).startswith(key + ": ") and says in str(error)
    assert "xoxb-literal" not in str(error)


def test_two_entries_with_one_subscription_name_are_an_error() -> None:
    services, errors = build_services({"service.slack.team": "token: a",
                                       "service.webhook.team": "url: http://h"}, {})
    assert [s.name for s in services.values()] == ["slack.team"]
    assert [e.service_key for e in errors] == ["service.webhook.team"]
    assert "already used by service.slack.team" in str(errors[0])


def test_secret_references_are_replaced_after_parsing(hook: WebhookReceiver) -> None:
    # A secret holding YAML syntax stays one header value; it cannot add fields.
    service = _one({"service.webhook.h": f"url: {hook.url}\nheaders:\n- name: X-Key\n"
                                         "  value: pre-$odd-post\n"}, SECRETS, "h")
    service.send(Notification(parts={"webhook": {"h": {"method": "POST", "body": "{}"}}}), "")
    [received] = hook.wait_for(1, timeout=5)
    assert received.headers["X-Key"] == "pre-a: b #c-post"


def test_a_header_that_cannot_be_sent_is_a_delivery_error(hook: WebhookReceiver) -> None:
    service = _one({"service.webhook.h": f"url: {hook.url}\nheaders:\n- name: X-Key\n"
                                         "  value: $newline\n"}, SECRETS, "h")
    with pytest.raises(DeliveryError, match=r"cannot be sent \(InvalidHeader\)") as caught:
        service.send(Notification(parts={"webhook": {"h": {"method": "POST"}}}), "")
    assert "x\ny" not in str(caught.value) and hook.requests == []


def test_secret_values_lists_every_non_empty_value() -> None:
    assert secret_values({"a": "x", "b": "", "c": "x", "d": "y"}) == ["x", "y"]


def test_config_error_type_is_exported() -> None:
    assert issubclass(ConfigError, Exception) and issubclass(DeliveryError, Exception)


# --- Slack ----------------------------------------------------------------------------------

ATTACHMENTS = '[{"title": "inference", "color": "#18be52", "fields": [{"title": "Sync", "value": "Synced"}]}]'
BLOCKS = '[{"type": "section", "text": {"type": "mrkdwn", "text": "*deployed*"}}]'


@pytest.mark.parametrize(("extra", "parts", "expected"), [
    ("", {}, {"channel": "ml-team", "text": "hello"}),
    ("", {"slack": {"attachments": ATTACHMENTS}},
     {"channel": "ml-team", "text": "hello", "attachments": json.loads(ATTACHMENTS)}),
    ("", {"slack": {"blocks": BLOCKS, "attachments": "  "}},
     {"channel": "ml-team", "text": "hello", "blocks": json.loads(BLOCKS)}),
    ("username: argocd\nicon: ':robot_face:'\n", {},
     {"channel": "ml-team", "text": "hello", "username": "argocd", "icon_emoji": ":robot_face:"}),
    ("icon: https://example.com/i.png\n", {"slack": {"username": "from-template"}},
     {"channel": "ml-team", "text": "hello", "username": "from-template",
      "icon_url": "https://example.com/i.png"}),
    ("disableUnfurl: true\n", {},
     {"channel": "ml-team", "text": "hello", "unfurl_links": False, "unfurl_media": False}),
], ids=["text", "attachments", "blocks", "username-emoji", "template-username-icon-url",
        "no-unfurl"])
def test_slack_posts_what_chat_post_message_expects(
        slack: SlackStandIn, extra: str, parts: dict[str, Any], expected: dict[str, Any]) -> None:
    _slack(slack, extra).send(Notification(message="hello", parts=parts), "ml-team")
    [received] = slack.wait_for(1, timeout=5)
    assert (received.method, received.path) == ("POST", "/api/chat.postMessage")
    assert received.headers["Authorization"] == f"Bearer {TOKEN}"
    assert received.headers["Content-Type"] == "application/json; charset=utf-8"
    assert received.json == expected


@pytest.mark.parametrize(("parts", "says"), [
    ({"slack": {"attachments": "[{'single': 'quotes'}]"}}, "slack.attachments is not valid JSON"),
    ({"slack": {"blocks": '{"type": "section"}'}}, "slack.blocks must be a JSON list"),
], ids=["attachments-not-json", "blocks-not-a-list"])
def test_slack_bad_json_parts_are_delivery_errors_naming_the_field(
        slack: SlackStandIn, parts: dict[str, Any], says: str) -> None:
    with pytest.raises(DeliveryError, match=says):
        _slack(slack).send(Notification(message="m", parts=parts), "ml-team")
    assert slack.requests == []


def test_slack_incoming_webhook(slack: SlackStandIn) -> None:
    url = slack.url + "/services/T000/B000/" + "hook-secret-part"
    services, _ = build_services({"service.slack": f"webhookURL: $hook\n{FAST}"}, {"hook": url})
    services["slack"].send(Notification(message="hi"), "ignored")
    [received] = slack.wait_for(1, timeout=5)
    assert received.json == {"text": "hi"} and "Authorization" not in received.headers


@pytest.mark.parametrize(("script", "requests_seen"), [
    ({"fail": 2}, 3),
    ({"fail_not_ok": 2}, 3),
], ids=["http-500-twice", "ok-false-internal-error-twice"])
def test_slack_retries_transient_failures_and_delivers_once(
        slack: SlackStandIn, script: dict[str, int], requests_seen: int) -> None:
    if "fail" in script:
        slack.fail(script["fail"], status=500)
    else:
        slack.fail_not_ok(script["fail_not_ok"], error="internal_error")
    _slack(slack).send(Notification(message="once"), "ml-team")
    received = slack.wait_for(requests_seen, timeout=5)
    time.sleep(0.2)  # nothing more arrives
    assert len(slack.requests) == requests_seen
    assert all(r.json == {"channel": "ml-team", "text": "once"} for r in received)


def test_slack_ok_false_is_a_failure_and_not_retried(slack: SlackStandIn) -> None:
    service = _one({"service.slack": f"token: xoxb-wrong\napiURL: {slack.api_url}\n{FAST}"},
                   {}, "slack")
    with pytest.raises(DeliveryError, match="Slack answered ok:false: invalid_auth") as caught:
        service.send(Notification(message="m"), "ml-team")
    assert len(slack.requests) == 1
    assert str(caught.value).startswith('slack service "slack" to "ml-team" via http://127.0.0.1:')
    assert "xoxb-wrong" not in str(caught.value)


def test_slack_429_waits_for_retry_after(slack: SlackStandIn) -> None:
    slack.fail(1, status=429, headers={"Retry-After": "1"})
    started = time.monotonic()
    _slack(slack).send(Notification(message="m"), "ml-team", deadline_seconds=5)
    elapsed = time.monotonic() - started
    assert len(slack.wait_for(2, timeout=5)) == 2
    assert 1.0 <= elapsed < 1.0 + DEADLINE_SLACK_SECONDS


def test_slack_429_past_the_deadline_fails_at_once(slack: SlackStandIn) -> None:
    slack.fail(1, status=429, headers={"Retry-After": "60"})
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=r"rate limited \(HTTP 429\)"):
        _slack(slack).send(Notification(message="m"), "ml-team", deadline_seconds=3)
    assert time.monotonic() - started < 1.0
    assert len(slack.requests) == 1


@pytest.mark.parametrize("deadline", [0.5, 1.5], ids=["half-second", "second-and-a-half"])
def test_a_receiver_that_never_answers_is_bounded_by_the_deadline(
        slack: SlackStandIn, deadline: float) -> None:
    slack.hang()
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="deadline"):
        _slack(slack).send(Notification(message="m"), "ml-team", deadline_seconds=deadline)
    assert deadline <= time.monotonic() - started < deadline + DEADLINE_SLACK_SECONDS


def test_an_unreachable_server_is_retried_within_the_deadline() -> None:
    stand_in = WebhookReceiver()
    url = stand_in.url
    stand_in.close()  # nothing listens there any more
    service = _one({"service.webhook.gone": f"url: {url}\n{FAST}retryMax: 2"}, {}, "gone")
    with pytest.raises(DeliveryError, match="ConnectionError talking to http://127.0.0.1"):
        service.send(Notification(parts={"webhook": {"gone": {"method": "POST"}}}), "",
                     deadline_seconds=5)


def test_a_huge_slack_reply_is_capped_and_a_failure(slack: SlackStandIn) -> None:
    huge = b'{"ok": true, "padding": "' + b"x" * (8 * MAX_RESPONSE_BYTES) + b'"}'
    slack.fail(1, status=200, body=huge)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="larger than the cap"):
        _slack(slack).send(Notification(message="m"), "ml-team")
    assert time.monotonic() - started < 5


def test_a_huge_webhook_reply_is_capped_and_the_send_succeeds(hook: WebhookReceiver) -> None:
    hook.fail(1, status=200, body=b"y" * (8 * MAX_RESPONSE_BYTES))
    service = _one({"service.webhook.h": f"url: {hook.url}\n{FAST}"}, {}, "h")
    service.send(Notification(parts={"webhook": {"h": {"method": "POST", "body": "x"}}}), "")
    assert len(hook.requests) == 1


# --- PagerDuty ------------------------------------------------------------------------------

def _pagerduty(stand_in: PagerDutyStandIn) -> Service:
    cm = {"service.pagerdutyv2": f"serviceKeys:\n  inference: $pd\napiURL: {stand_in.url}\n{FAST}"}
    return _one(cm, {"pd": "pd-key-0123456789"}, "pagerdutyv2")


@pytest.mark.parametrize(("notification", "expected"), [
    (Notification(message="ignored", parts={"pagerdutyv2": {
        "summary": "inference sync failed", "severity": "error", "source": "argocd",
        "component": "inference", "group": "ml", "class": "sync", "url": "https://cd/app",
        "dedupKey": "inference-abc123"}}),
     {"routing_key": "pd-key-0123456789", "event_action": "trigger",
      "dedup_key": "inference-abc123",
      "payload": {"summary": "inference sync failed", "severity": "error", "source": "argocd",
                  "component": "inference", "group": "ml", "class": "sync"},
      "links": [{"href": "https://cd/app"}]}),
    (Notification(title="Sync failed", message="long text"),
     {"routing_key": "pd-key-0123456789", "event_action": "trigger",
      "payload": {"summary": "Sync failed", "severity": "critical", "source": "tidegate"}}),
    (Notification(parts={"pagerdutyv2": {"action": "resolve", "dedupKey": "inference-abc123"}}),
     {"routing_key": "pd-key-0123456789", "event_action": "resolve",
      "dedup_key": "inference-abc123"}),
    (Notification(parts={"pagerdutyv2": {"summary": "s" * 2000, "severity": "Warning"}}),
     {"routing_key": "pd-key-0123456789", "event_action": "trigger",
      "payload": {"summary": "s" * 1024, "severity": "warning", "source": "tidegate"}}),
], ids=["trigger-every-field", "trigger-defaults", "resolve", "long-summary-cut"])
def test_pagerduty_enqueues_events_api_v2(pagerduty: PagerDutyStandIn,
                                          notification: Notification,
                                          expected: dict[str, Any]) -> None:
    _pagerduty(pagerduty).send(notification, "inference")
    [received] = pagerduty.wait_for(1, timeout=5)
    assert (received.method, received.path) == ("POST", "/v2/enqueue")
    assert received.json == expected


@pytest.mark.parametrize(("recipient", "notification", "says"), [
    ("unknown", Notification(message="m"), 'no integration key for recipient "unknown"'),
    ("inference", Notification(parts={"pagerdutyv2": {"summary": "s", "severity": "sev1"}}),
     'pagerdutyv2.severity "sev1" is not one of'),
    ("inference", Notification(parts={"pagerdutyv2": {"action": "resolve"}}),
     "pagerdutyv2.dedupKey is required to resolve"),
    ("inference", Notification(), "pagerdutyv2.summary is empty"),
], ids=["unknown-recipient", "bad-severity", "resolve-without-key", "no-summary"])
def test_pagerduty_refuses_events_it_cannot_send(pagerduty: PagerDutyStandIn, recipient: str,
                                                 notification: Notification, says: str) -> None:
    with pytest.raises(DeliveryError, match=says) as caught:
        _pagerduty(pagerduty).send(notification, recipient)
    assert pagerduty.requests == []
    _assert_no_secret(str(caught.value), "pd-key-0123456789")


@pytest.mark.parametrize(("status", "requests_seen", "fails"), [
    (500, 2, False), (429, 2, False), (400, 1, True),
], ids=["500-then-202", "429-then-202", "400-not-retried"])
def test_pagerduty_retries(pagerduty: PagerDutyStandIn, status: int, requests_seen: int,
                           fails: bool) -> None:
    pagerduty.fail(1, status=status, body=b'{"status": "nope"}')
    service = _pagerduty(pagerduty)
    if fails:
        with pytest.raises(DeliveryError, match=f"HTTP {status}"):
            service.send(Notification(message="m"), "inference")
    else:
        service.send(Notification(message="m"), "inference")
    assert len(pagerduty.wait_for(requests_seen, timeout=5)) == requests_seen
    time.sleep(0.2)
    assert len(pagerduty.requests) == requests_seen


# --- webhook --------------------------------------------------------------------------------

def test_webhook_sends_method_path_body_headers_and_basic_auth(hook: WebhookReceiver) -> None:
    cm = {"service.webhook.github": (
        f"url: {hook.url}/api\nheaders:\n- name: Content-Type\n  value: application/json\n"
        "- name: X-Token\n  value: $pw\nbasicAuth:\n  username: bot\n  password: $pw\n")}
    service = _one(cm, SECRETS, "github")
    parts = {"webhook": {"github": {"method": "post", "path": "/repos/o/r/statuses/abc",
                                    "body": '{"state": "success"}'},
                         "other": {"method": "PUT", "path": "/nope"}}}
    service.send(Notification(message="m", parts=parts), "")
    [received] = hook.wait_for(1, timeout=5)
    assert (received.method, received.path) == ("POST", "/api/repos/o/r/statuses/abc")
    assert received.json == {"state": "success"}
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["X-Token"] == HOSTILE  # requests sends it as latin-1
    expected_auth = base64.b64encode(f"bot:{HOSTILE}".encode()).decode()
    assert received.headers["Authorization"] == f"Basic {expected_auth}"


def test_webhook_without_its_part_sends_nothing(hook: WebhookReceiver) -> None:
    service = _one({"service.webhook.github": f"url: {hook.url}"}, {}, "github")
    service.send(Notification(message="m", parts={"webhook": {"other": {"method": "POST"}}}), "")
    time.sleep(0.2)
    assert hook.requests == []


@pytest.mark.parametrize(("status", "requests_seen", "fails"), [
    (503, 3, False), (404, 1, True),
], ids=["503-twice-then-200", "404-not-retried"])
def test_webhook_retries_5xx_only(hook: WebhookReceiver, status: int, requests_seen: int,
                                  fails: bool) -> None:
    hook.fail(1 if fails else 2, status=status)
    service = _one({"service.webhook.h": f"url: {hook.url}\n{FAST}"}, {}, "h")
    notification = Notification(parts={"webhook": {"h": {"method": "POST", "body": "b"}}})
    if fails:
        with pytest.raises(DeliveryError, match=f"HTTP {status}"):
            service.send(notification, "")
    else:
        service.send(notification, "")
    assert len(hook.wait_for(requests_seen, timeout=5)) == requests_seen
    time.sleep(0.2)
    assert len(hook.requests) == requests_seen


def test_webhook_stops_after_retry_max(hook: WebhookReceiver) -> None:
    hook.fail(10, status=500)
    service = _one({"service.webhook.h": f"url: {hook.url}\n{FAST}retryMax: 1"}, {}, "h")
    with pytest.raises(DeliveryError, match="HTTP 500"):
        service.send(Notification(parts={"webhook": {"h": {"method": "GET"}}}), "")
    assert len(hook.requests) == 2


def test_webhook_bad_method_is_a_delivery_error(hook: WebhookReceiver) -> None:
    service = _one({"service.webhook.h": f"url: {hook.url}"}, {}, "h")
    with pytest.raises(DeliveryError, match='webhook.h.method "BREW" is not one of'):
        service.send(Notification(parts={"webhook": {"h": {"method": "brew"}}}), "")


# --- email ----------------------------------------------------------------------------------

def _email(smtp: SmtpStandIn, extra: str = "") -> Service:
    cm = {"service.email": (f"host: {smtp.host}\nport: {smtp.port}\nfrom: cd@example.com\n"
                            f"username: mailer\npassword: $pw\n{FAST}{extra}")}
    return _one(cm, SECRETS, "email")


@pytest.mark.parametrize(("extra", "content_type"), [
    ("", "text/plain"), ("html: true\n", "text/html"),
], ids=["plain", "html"])
def test_email_is_sent_over_smtp(smtp: SmtpStandIn, extra: str, content_type: str) -> None:
    notification = Notification(message="Application inference synced", title="title",
                                parts={"email": {"subject": "inference deployed"}})
    _email(smtp, extra).send(notification, "ml@example.com, oncall@example.com")
    [mail] = smtp.wait_for(1, timeout=5)
    assert mail.accepted and mail.username == "mailer"
    assert (mail.mail_from, mail.rcpt_to) == ("cd@example.com",
                                              ("ml@example.com", "oncall@example.com"))
    message = mail.message
    assert message["Subject"] == "inference deployed"
    assert message["To"] == "ml@example.com, oncall@example.com"
    assert message.get_content_type() == content_type
    assert message.get_content().strip() == "Application inference synced"


@pytest.mark.parametrize(("code", "messages_seen", "fails"), [
    (451, 2, False), (554, 1, True),
], ids=["451-then-accepted", "554-not-retried"])
def test_email_retries_temporary_refusals(smtp: SmtpStandIn, code: int, messages_seen: int,
                                          fails: bool) -> None:
    smtp.fail(1, status=code)
    service = _email(smtp)
    if fails:
        with pytest.raises(DeliveryError, match=f"SMTP {code}"):
            service.send(Notification(message="m", title="t"), "ml@example.com")
    else:
        service.send(Notification(message="m", title="t"), "ml@example.com")
    mails = smtp.wait_for(messages_seen, timeout=5)
    assert [m.accepted for m in mails] == [False] * (messages_seen - 1 + fails) + [True] * (not fails)


def test_email_wrong_password_fails_without_the_password(smtp: SmtpStandIn) -> None:
    cm = {"service.email": (f"host: {smtp.host}\nport: {smtp.port}\nfrom: cd@example.com\n"
                            f"username: mailer\npassword: wrong-{HOSTILE}\n{FAST}")}
    with pytest.raises(DeliveryError, match="SMTP 535") as caught:
        _one(cm, {}, "email").send(Notification(message="m"), "ml@example.com")
    _assert_no_secret(str(caught.value), f"wrong-{HOSTILE}")
    assert smtp.requests == []


def test_email_never_answering_server_is_bounded(smtp: SmtpStandIn) -> None:
    smtp.hang()
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="deadline"):
        _email(smtp).send(Notification(message="m"), "ml@example.com", deadline_seconds=1.0)
    assert time.monotonic() - started < 1.0 + DEADLINE_SLACK_SECONDS


# --- no secret in errors or logs ------------------------------------------------------------

def test_no_secret_reaches_errors_or_logs(slack: SlackStandIn, hook: WebhookReceiver,
                                          caplog: pytest.LogCaptureFixture) -> None:
    # Servers that echo what they were sent (token, basic auth, URL) in their errors.
    echo = f"bad request: Authorization Bearer {HOSTILE} {quote(HOSTILE)} {json.dumps(HOSTILE)}"
    slack.fail(2, status=500, body=echo.encode())
    slack.fail(1, status=400, body=echo.encode())
    hook.fail(2, status=502, body=echo.encode())
    hook.fail(1, status=403, body=echo.encode())
    url = hook.url.replace("http://", f"http://bot:{quote(HOSTILE, safe='')}@") + f"/x?token={quote(HOSTILE)}"
    cm = {"service.slack": f"token: $pw\napiURL: {slack.api_url}\n{FAST}",
          "service.webhook.h": f"url: $url\nbasicAuth:\n  username: bot\n  password: $pw\n{FAST}"}
    services, errors = build_services(cm, {"pw": HOSTILE, "url": url})
    assert errors == []
    caplog.set_level(logging.DEBUG)
    failures = []
    for name, parts in (("slack", {}), ("h", {"webhook": {"h": {"method": "POST"}}})):
        with pytest.raises(DeliveryError) as caught:
            services[name].send(Notification(message="m", parts=parts), "ml-team")
        failures.append(str(caught.value))
    assert "HTTP 400: bad request: Authorization Bearer *****" in failures[0]
    assert "HTTP 403: bad request" in failures[1] and "via http://127.0.0.1:" in failures[1]
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 4  # two per service: the log was really written
    _assert_no_secret("\n".join(failures) + caplog.text, HOSTILE, url)


# --- the stand-ins check what the real APIs check -----------------------------------------

@pytest.mark.parametrize(("headers", "body", "error"), [
    ({}, {"channel": "c", "text": "t"}, "not_authed"),
    ({"Authorization": "Bearer other"}, {"channel": "c", "text": "t"}, "invalid_auth"),
    ({"Authorization": f"Bearer {TOKEN}"}, {"text": "t"}, "channel_not_found"),
    ({"Authorization": f"Bearer {TOKEN}"}, {"channel": "c"}, "no_text"),
    ({"Authorization": f"Bearer {TOKEN}"}, {"channel": "c", "attachments": "[]"},
     "invalid_attachments"),
    ({"Authorization": f"Bearer {TOKEN}"}, {"channel": "c", "blocks": [1]}, "invalid_blocks"),
], ids=["no-token", "wrong-token", "no-channel", "no-text", "attachments-as-text",
        "blocks-not-objects"])
def test_the_slack_stand_in_refuses_what_slack_refuses(
        slack: SlackStandIn, headers: dict[str, str], body: dict[str, Any], error: str) -> None:


    reply = requests.post(slack.api_url + "chat.postMessage", json=body, headers=headers,
                          timeout=5)
    assert (reply.status_code, reply.json()) == (200, {"ok": False, "error": error})


@pytest.mark.parametrize(("event", "error"), [
    ({"event_action": "trigger", "payload": {"summary": "s", "severity": "error", "source": "x"}},
     "'routing_key' is missing or unknown"),
    ({"routing_key": "pd-key-0123456789", "event_action": "page"}, "'event_action' is invalid"),
    ({"routing_key": "pd-key-0123456789", "event_action": "trigger",
      "payload": {"summary": "s", "severity": "sev1", "source": "x"}},
     "'payload.severity' is invalid"),
    ({"routing_key": "pd-key-0123456789", "event_action": "resolve"}, "'dedup_key' is required"),
], ids=["no-routing-key", "bad-action", "bad-severity", "resolve-without-dedup-key"])
def test_the_pagerduty_stand_in_refuses_invalid_events(
        pagerduty: PagerDutyStandIn, event: dict[str, Any], error: str) -> None:


    reply = requests.post(pagerduty.url + "/v2/enqueue", json=event, timeout=5)
    assert reply.status_code == 400
    assert any(e.startswith(error) for e in reply.json()["errors"])
