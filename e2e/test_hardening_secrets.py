"""End-to-end, issue 7 defect 5: no form of a secret in any sink, even with ``--verbose``.

Before the fix, a secret with special characters used in a web metric's URL
query showed up percent-encoded in the run's status (three places) and its
Event when the endpoint was down, and urllib3's debug log printed the request
URL with it.

Given a Secret whose value has every character encoders treat differently, a
real ``tidegate controller --verbose`` serving /metrics, and web metrics that put
the secret in the URL query and in a header, When one endpoint is down
(connection refused), one is a local stand-in answering 500 with the request
line echoed, and one is the stand-in answering 200 with the request line as the
measured value, Then a scan of the controller log, every AnalysisRun (``kubectl
get -o json``), the namespace's Events and /metrics finds no form of the secret:
raw, URL-encoded (every encoder), JSON-escaped, base64 (standard and URL-safe,
padded or not). The scan is shown to find a planted form first, so it can fail.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import requests
from kubernetes import client

from e2e.analysis_kit import Analysis, analysis_run
from e2e.conftest import wait_until
from e2e.kit import Controller

pytestmark = pytest.mark.e2e

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
SECRET = 'p@ss w/rd+&=?%"é'
ENDED = ("Successful", "Failed", "Error", "Inconclusive")


# --- the scan ---------------------------------------------------------------------------------

def _requests_query(value: str) -> str:
    prepared = requests.Request("GET", f"http://h/p?token={value}").prepare()
    assert prepared.url is not None
    return prepared.url.split("token=", 1)[1]


def _b64(data: bytes, *, urlsafe: bool, padded: bool) -> str:
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()
    return encoded if padded else encoded.rstrip("=")


def secret_forms(secret: str) -> dict[str, str]:
    """Every form of ``secret`` the scan looks for, made by the encoders themselves."""
    data = secret.encode()
    forms = {
        "raw": secret,
        "url-quote-safe-none": quote(secret, safe=""),
        "url-quote-default": quote(secret),
        "url-quote-plus": quote_plus(secret),
        "url-lowercase-hex": re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(),
                                    quote(secret, safe="")),
        "url-as-requests-sends-it": _requests_query(secret),
        "json-escaped": json.dumps(secret)[1:-1],
        "json-escaped-unicode": json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    for urlsafe in (False, True):
        for padded in (True, False):
            forms[f"base64{'-urlsafe' if urlsafe else ''}{'' if padded else '-unpadded'}"] = (
                _b64(data, urlsafe=urlsafe, padded=padded))
    return forms


def scan(text: str, secret: str = SECRET) -> list[str]:
    """Names of the forms of ``secret`` found in ``text``."""
    return [name for name, form in secret_forms(secret).items() if form in text]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def scan_json(text: str, secret: str = SECRET) -> list[str]:
    """``scan`` of a JSON document (``kubectl get -o json``): its text and every string in it.

    kubectl escapes ``"`` and ``\\`` and, like every Go encoder, ``&<>`` as ``\\u0026``, so a
    form can hide in the text; decoded, it cannot. A status value holding JSON (a web
    answer) is decoded once more.
    """
    decoded = list(_strings(json.loads(text)))
    nested = []
    for value in decoded:
        try:
            nested.extend(_strings(json.loads(value)))
        except ValueError:
            continue
    return sorted(set(scan(text, secret)) | set(scan("\n".join(decoded + nested), secret)))


# --- a stand-in endpoint ----------------------------------------------------------------------

class _EchoRequestLine(BaseHTTPRequestHandler):
    """A stand-in metric endpoint that echoes the request line: 500 on /fail, 200 on /ok."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        status = 200 if self.path.startswith("/ok") else 500
        body = json.dumps({"seen": self.requestline,
                           "auth": self.headers.get("X-Token", "")}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def stand_in() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoRequestLine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class VerboseController(Controller):
    """``tidegate controller --verbose`` with /metrics on a local port."""

    def __init__(self, env: dict[str, str], namespace: str, log_path: Path) -> None:
        super().__init__(env, namespace, log_path, extra_args=["--verbose"],
                         ready="analysis controller started", metrics_port=_free_port())


@pytest.fixture
def verbose_controller(cluster_env: dict[str, str], namespace: str,
                       tmp_path: Path) -> Iterator[VerboseController]:
    ctl = VerboseController(cluster_env, namespace, tmp_path / "controller.log")
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()


@pytest.fixture
def analysis(api_client: client.ApiClient, namespace: str) -> Analysis:
    return Analysis(api_client, namespace)


def web_metric(name: str, url: str, **fields: Any) -> dict[str, Any]:
    """A web metric with the secret in its URL query and in a header."""
    return {"name": name, "consecutiveErrorLimit": 0, **fields,
            "provider": {"web": {"url": url + "?token={{args.token}}&q=1", "timeoutSeconds": 3,
                                 "headers": [{"key": "X-Token", "value": "{{args.token}}"}]}}}


SECRET_ARGS = [{"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]


def _as_go_json(document: Any) -> str:
    """JSON as kubectl prints it: Go escapes ``&``, ``<`` and ``>``."""
    text = json.dumps(document, ensure_ascii=False, indent=4)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def test_the_scan_finds_a_planted_form() -> None:
    # The assertions below can fail: every form, planted in a log-like line or in a
    # run's status value as kubectl prints it, is found.
    for name, form in secret_forms(SECRET).items():
        assert name in scan(f'DEBUG urllib3: "GET /api?token={form} HTTP/1.1" 500'), name
        status = {"status": {"metricResults": [{"measurements": [
            {"value": json.dumps({"seen": f"GET /ok?token={form}"})}]}]}}
        assert name in scan_json(_as_go_json({"items": [status]})), name
    assert scan("GET /api?token=***** HTTP/1.1") == []
    assert scan_json(_as_go_json({"value": '{"seen": "token=*****"}'})) == []


def test_no_form_of_the_secret_in_log_status_events_or_metrics(
    analysis: Analysis, verbose_controller: VerboseController, stand_in: str, kubectl: Kubectl,
    namespace: str,
) -> None:
    # Given the secret, and three runs that put it in a URL query and a header
    analysis.secret("creds", {"token": SECRET})
    down = f"http://127.0.0.1:{_free_port()}/api"
    runs = {
        "endpoint-down": web_metric("down", down, successCondition="true"),
        "endpoint-500": web_metric("fails", f"{stand_in}/fail", successCondition="true"),
        "endpoint-echoes": web_metric("echoes", f"{stand_in}/ok", successCondition="false"),
    }
    started = time.monotonic()

    # When they run to the end
    for name, metric in runs.items():
        analysis.create(analysis_run(name, [metric], args=SECRET_ARGS))
    phases = {}
    for name in runs:
        status = wait_until(
            lambda name=name: ((analysis.maybe_run(name) or {}).get("status") or {}).get(
                "phase") in ENDED and analysis.run(name)["status"],
            timeout=60, message=f"AnalysisRun {name} to end")
        phases[name] = status["phase"]
    print(f"\nruns ended after {time.monotonic() - started:.1f}s: {phases}")
    assert phases == {"endpoint-down": "Error", "endpoint-500": "Error",
                      "endpoint-echoes": "Failed"}
    # (the provider really used the secret: the stand-in saw it, and its echo was measured)
    echoed = analysis.run("endpoint-echoes")["status"]["metricResults"][0]["measurements"][0]
    assert "*****" in echoed["value"], echoed

    # Then no sink holds any form of it
    time.sleep(2)  # let the last log lines and metrics land
    runs_json = kubectl("get", "analysisruns", "-n", namespace, "-o", "json")
    events_json = kubectl("get", "events", "-n", namespace, "-o", "json")
    assert runs_json.returncode == 0 and events_json.returncode == 0
    sinks = {
        "controller log": verbose_controller.log(),
        "AnalysisRuns": runs_json.stdout,
        "Events": events_json.stdout,
        "/metrics": verbose_controller.metrics(),
    }
    # (each sink really holds the runs, so an empty scan means something; kopf's
    # text log names handlers, not objects)
    assert "DEBUG" in sinks["controller log"], "--verbose did not take effect"
    assert "Handler 'analysis-run-changed' is invoked" in sinks["controller log"]
    assert all("endpoint-down" in sinks[name] for name in ("AnalysisRuns", "Events", "/metrics"))
    assert "AnalysisRunError" in sinks["Events"]
    found = {name: scan_json(text) if name in ("AnalysisRuns", "Events") else scan(text)
             for name, text in sinks.items()}
    print("sink sizes:", {name: len(text) for name, text in sinks.items()})
    assert found == {name: [] for name in sinks}
