"""Issue 7, defect 5: no form of a secret reaches a status, an Event, a log line or /metrics.

The forms are computed here with the standard library (and requests, which builds
the URLs the web provider sends), independently of common.redaction, so the
tests check the redaction against what encoders really produce. ``SECRET`` has
every character class that encoders treat differently: ``@ / + & = ? %``, a
space, a double quote and a non-ASCII letter.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import requests
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, generate_latest

from analysis.api.models import (
    AnalysisRunStatus,
    Metric,
)
from analysis.api.phases import AnalysisPhase
from analysis.controller import Controller, redact_status
from analysis.providers.base import MeasurementContext
from analysis.providers.web import WebProvider
from analysis.run import Observation, record
from analysis.templates import ResolvedArgs

SECRET = 'p@ss w/rd+&=?%"é'
NOW = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
NS = "tenant-a"


def _requests_query(value: str) -> str:
    """The query value as requests puts it on the wire (and into its error messages)."""
    prepared = requests.Request("GET", f"http://h/p?token={value}").prepare()
    assert prepared.url is not None
    return prepared.url.split("token=", 1)[1]


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _b64(data: bytes, *, urlsafe: bool = False, padded: bool = True) -> str:
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()
    return encoded if padded else encoded.rstrip("=")


# Every form of a secret the issue names, each as an encoder really produces it.
FORMS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "url-quote-safe-none": lambda s: quote(s, safe=""),
    "url-quote-default-safe": quote,
    "url-quote-plus": quote_plus,
    "url-lowercase-hex": lambda s: _lower_hex(quote(s, safe="")),
    "url-as-requests-sends-it": _requests_query,
    "json-escaped": lambda s: json.dumps(s)[1:-1],
    "json-escaped-unicode": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "base64": lambda s: _b64(s.encode()),
    "base64-unpadded": lambda s: _b64(s.encode(), padded=False),
    "base64-urlsafe": lambda s: _b64(s.encode(), urlsafe=True),
    "base64-urlsafe-unpadded": lambda s: _b64(s.encode(), urlsafe=True, padded=False),
}
# A secret inside a longer encoded string: HTTP Basic credentials. Only the part
# of the encoding fixed by the secret alone can be found; the scan looks for it.
# "tenant:" is 7 bytes, so the secret starts one byte into a base64 group.
BASIC_AUTH = _b64(f"tenant:{SECRET}".encode())


def every_form(secret: str) -> dict[str, str]:
    return {name: encode(secret) for name, encode in FORMS.items()}


def leaks(text: str, secret: str = SECRET) -> list[str]:
    """Names of the forms of ``secret`` found in ``text`` (the scan the e2e test also does)."""
    found = [name for name, form in every_form(secret).items() if form in text]
    core = BASIC_AUTH[12:-4]  # well inside: independent of the neighbours' bits
    if core in text:
        found.append("base64-inside-basic-auth")
    return found


def test_the_scan_finds_every_planted_form() -> None:
    # The check below can fail: each planted form is found, by its own name.
    for name, form in every_form(SECRET).items():
        assert name in leaks(f"error: {form}!"), name
    assert leaks(f"Authorization: Basic {BASIC_AUTH}") == ["base64-inside-basic-auth"]
    assert leaks("nothing secret here") == []


# --- each sink, each form ---------------------------------------------------------------------

FORM_PARAMS = [pytest.param(encode(SECRET), id=name) for name, encode in FORMS.items()]
FORM_PARAMS.append(pytest.param(BASIC_AUTH, id="base64-inside-basic-auth"))


@pytest.mark.parametrize("form", FORM_PARAMS)
def test_provider_messages_lose_every_form(form: str) -> None:
    ctx = MeasurementContext(namespace=NS, run_name="r", run_uid="u", metric={}, now=NOW,
                             secrets=(SECRET,))
    assert leaks(ctx.redact(f"request to http://h/p?token={form} failed: {form}")) == []


@pytest.mark.parametrize("form", FORM_PARAMS)
def test_spec_errors_lose_every_form(form: str) -> None:
    resolved = ResolvedArgs(values={"token": SECRET}, secrets=(SECRET,))
    assert leaks(resolved.redact(f'"{form}" is not an integer')) == []


@pytest.mark.parametrize("form", FORM_PARAMS)
def test_recorded_measurements_lose_every_form(form: str) -> None:
    metric = Metric.model_validate({"name": "m", "provider": {"web": {"url": "http://h"}}})
    observation = Observation(value=1, display_value=f"[{form}]", phase=AnalysisPhase.ERROR,
                              message=f"failed: {form}", metadata={"url": f"http://h?t={form}"})
    status = record(AnalysisRunStatus(), metric, observation, NOW, secrets=(SECRET,),
                    metric_metadata={"query": f"q{{t='{form}'}}"})
    assert leaks(json.dumps(status.to_json(), ensure_ascii=False)) == []


@pytest.mark.parametrize("form", FORM_PARAMS)
def test_status_documents_lose_every_form(form: str) -> None:
    status = {"message": form, "metricResults": [{
        "name": "m", "message": form, "metadata": {"q": form},
        "measurements": [{"phase": "Error", "message": form, "value": form,
                          "metadata": {"u": form}}]}]}
    assert leaks(json.dumps(redact_status(status, [SECRET]), ensure_ascii=False)) == []


def test_names_and_times_are_left_alone() -> None:
    status = {"startedAt": "2024-05-01T10:00:00Z", "metricResults": [{"name": "m"}]}
    assert redact_status(copy.deepcopy(status), ["2024"]) == status


def test_the_web_provider_leaks_no_form_when_the_endpoint_is_down() -> None:
    # Given a web metric with the secret in its query and a header, and nothing listening
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metric = {"name": "m", "provider": {"web": {
        "url": f"http://127.0.0.1:{port}/api?token={SECRET}&q=1",
        "headers": [{"key": "Authorization", "value": f"Bearer {SECRET}"}]}}}
    ctx = MeasurementContext(namespace=NS, run_name="r", run_uid="u", metric=metric, now=NOW,
                             secrets=(SECRET,))
    # When it measures
    observation = WebProvider().run(ctx)
    # Then the connection error says what failed, and nothing of the secret
    assert observation.phase is AnalysisPhase.ERROR
    assert "127.0.0.1" in observation.message
    assert leaks(observation.message + json.dumps(dict(observation.metadata))) == []


# --- through a whole reconcile: status, Events, /metrics ------------------------------------

class EchoingKube:
    """Applies status patches, keeps Events; the Secret holds ``SECRET``."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.patches: list[dict[str, Any]] = []
        self.events: list[dict[str, str]] = []

    def read_secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return {"token": SECRET}

    def patch_run(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        self.patches.append(copy.deepcopy(dict(patch)))
        self.body["status"] = {**(self.body.get("status") or {}), **patch["status"]}
        self.body["metadata"]["resourceVersion"] = str(int(
            self.body["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(self.body)

    def delete_run(self, namespace: str, name: str) -> None:
        """Not needed."""

    def post_event(self, involved: Mapping[str, Any], *, event_type: str, reason: str,
                   message: str) -> None:
        self.events.append({"type": event_type, "reason": reason, "message": message})


class EchoingProvider:
    """Echoes every form of whatever secret it was given, in every field it returns."""

    kind = "Echo"

    def __init__(self) -> None:
        self.saw: list[str] = []

    def run(self, ctx: MeasurementContext) -> Observation:
        url = str(ctx.metric["provider"]["web"]["url"])
        self.saw.append(url)
        forms = " ".join(every_form(ctx.secrets[0]).values())
        return Observation(phase=AnalysisPhase.FAILED, message=f"{url} said: {forms}",
                           display_value=forms, metadata={"url": url, "forms": forms})

    def resume(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation:
        return self.run(ctx)

    def terminate(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation:
        return self.run(ctx)

    def garbage_collect(self, ctx: MeasurementContext, limit: int) -> None:
        """Nothing to collect."""


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(2)
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


def test_a_reconcile_writes_posts_and_exposes_no_form(pool: ThreadPoolExecutor) -> None:
    # Given a run whose web metric carries a secretKeyRef arg in its URL, and a
    # provider that echoes every encoding of it back
    body: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "leaky", "namespace": NS, "uid": "uid-leaky",
                     "resourceVersion": "1"},
        "spec": {
            "args": [{"name": "token",
                      "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
            "metrics": [{"name": "web", "provider": {"web": {
                "url": "http://stand-in/api?token={{args.token}}"}}}],
        },
    }
    kube = EchoingKube(body)
    provider = EchoingProvider()
    controller = Controller(kube=kube, providers=lambda metric: provider, measure_pool=pool,
                            api_pool=pool, clock=lambda: NOW)

    # When it is reconciled
    asyncio.run(controller.reconcile((NS, "leaky"), copy.deepcopy(body)))

    # Then the provider used the real secret, and no form of it was written, posted or exposed
    assert provider.saw == [f"http://stand-in/api?token={SECRET}"]
    assert kube.body["status"]["phase"] == "Failed"
    written = json.dumps([kube.patches, kube.events], ensure_ascii=False)
    assert "*****" in written
    assert leaks(written) == []
    assert kube.events and leaks(json.dumps(kube.events)) == []
    assert leaks(generate_latest(REGISTRY).decode()) == []


# --- log lines ---------------------------------------------------------------------------------

def test_log_lines_lose_every_form_of_an_active_secret(pool: ThreadPoolExecutor) -> None:
    from common.redaction import (
        ActiveSecrets,
        RedactingFilter,
    )

    # Given a handler with the redacting filter, and a run's secrets registered
    active = ActiveSecrets()
    active.register(("ns", "run"), [SECRET])
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactingFilter(active))
    logger = logging.getLogger("tidegate.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        # When lines with the secret's forms are logged, in arguments and in a traceback
        for form in [*every_form(SECRET).values(), BASIC_AUTH]:
            logger.warning("GET %s failed", f"/api?token={form}")
        try:
            raise ConnectionError(f"Max retries exceeded with url: /api?token={quote(SECRET)}")
        except ConnectionError:
            logger.exception("reconcile failed")
        # Then none of them is in what the handler wrote
        assert len(lines) == len(FORMS) + 2
        assert leaks("\n".join(lines)) == []
        assert "ConnectionError" in lines[-1] and "*****" in lines[-1]
        # And once the run is forgotten its secret is no longer known to the filter
        active.forget(("ns", "run"))
        logger.warning("late %s", "plain")
        assert lines[-1] == "late plain"
    finally:
        logger.removeHandler(handler)


def test_the_controller_registers_a_runs_secrets_for_the_log_filter(
        pool: ThreadPoolExecutor) -> None:
    from common.redaction import ActiveSecrets

    body: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "r", "namespace": NS, "uid": "u", "resourceVersion": "1"},
        "spec": {"args": [{"name": "token", "valueFrom": {
            "secretKeyRef": {"name": "creds", "key": "token"}}}],
            "metrics": [{"name": "web", "interval": "1m", "provider": {"web": {
                "url": "http://stand-in/api?token={{args.token}}"}}}]},
    }
    kube = EchoingKube(body)
    provider = EchoingProvider()
    active = ActiveSecrets()
    controller = Controller(kube=kube, providers=lambda metric: provider, measure_pool=pool,
                            api_pool=pool, clock=lambda: NOW, log_secrets=active)
    asyncio.run(controller.reconcile((NS, "r"), copy.deepcopy(body)))
    assert active.redact(f"x {quote(SECRET)} y") == "x ***** y"
    controller.forget((NS, "r"))
    assert active.redact(SECRET) == SECRET


# --- the helper's own promises ----------------------------------------------------------------

@pytest.mark.parametrize("cut", range(4_000, 4_120, 7))
def test_clipping_never_leaves_half_a_secret(cut: int) -> None:
    from common.redaction import redactor

    form = quote(SECRET, safe="")
    text = "x" * (cut - 10) + form + "y" * 30_000
    clipped = redactor([SECRET]).clip(text, limit=4_096)
    assert len(clipped) <= 4_096
    assert "p%40" not in clipped and "%C3%A9" not in clipped
    tail = redactor([SECRET]).clip("y" * 30_000 + form + "x" * cut, limit=4_096, tail=cut - 3_000)
    assert "p%40" not in tail and "%C3%A9" not in tail


def test_a_hostile_secret_cannot_make_redaction_slow() -> None:
    from common.redaction import redactor

    # Percent signs are both raw characters and the start of every escape.
    secret = "%" * 500 + "a"
    started = time.monotonic()
    out = redactor([secret]).redact("%25" * 20_000 + "%" * 20_000 + "a" + "%" * 500 + "a")
    assert time.monotonic() - started < 5.0
    assert secret not in out and quote(secret) not in out


def test_secrets_that_are_part_of_the_placeholder_are_ignored() -> None:
    from common.redaction import redact

    # Else every pass would rewrite "*****" again and never converge.
    assert redact("a ***** b", ["*", "**", ""]) == "a ***** b"


_SECRET_TEXT = st.text(st.characters(blacklist_characters="*", blacklist_categories=("Cs",)),
                       min_size=6, max_size=24)
_AROUND = st.text(st.characters(blacklist_characters="*", blacklist_categories=("Cs",)),
                  max_size=12)


@given(secret=_SECRET_TEXT, before=_AROUND, after=_AROUND, form=st.sampled_from(sorted(FORMS)))
@settings(max_examples=300, deadline=None)
def test_no_form_survives_redaction(secret: str, before: str, after: str, form: str) -> None:
    from common.redaction import redact

    # requests reads a raw "#" in a URL as the start of the fragment and sends only
    # what comes before it: that wire form is a piece of the secret, not an encoding
    # of it (Hypothesis found "00000#" -> "00000"), so the property does not apply.
    assume(form != "url-as-requests-sends-it" or "#" not in secret)
    encoded = FORMS[form](secret)
    assert encoded not in redact(before + encoded + after, [secret])


# --- a stand-in endpoint that answers 500 and echoes the request line -----------------------

class _EchoRequestLine(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"error": f"cannot serve {self.requestline}",
                           "auth": self.headers.get("Authorization", "")}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoRequestLine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_web_provider_leaks_no_form_when_the_endpoint_answers_500(echo_server: str) -> None:
    metric = {"name": "m", "provider": {"web": {
        "url": f"{echo_server}/api?token={SECRET}",
        "headers": [{"key": "Authorization", "value": f"Bearer {SECRET}"}]}}}
    ctx = MeasurementContext(namespace=NS, run_name="r", run_uid="u", metric=metric, now=NOW,
                             secrets=(SECRET,))
    observation = WebProvider().run(ctx)
    assert observation.phase is AnalysisPhase.ERROR
    assert "500" in observation.message
    assert leaks(observation.message + json.dumps(dict(observation.metadata))) == []
