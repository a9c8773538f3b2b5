"""Issue 7 defect 2: web timeoutSeconds and Prometheus timeout are total deadlines, bodies are capped while read.

Run by pytest; uses local stand-in HTTP servers in threads (endpoints that drip the
body or the status line, a huge body, a healthy keep-alive Prometheus answer), never
a real metric backend. The shared machinery is analysis/providers/deadline.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from analysis.api.phases import AnalysisPhase
from analysis.providers import prometheus, web
from analysis.providers.base import MeasurementContext
from analysis.providers.deadline import LONGEST_DEADLINE_SECONDS

DRIP_BYTES = 30
SENT: dict[str, int] = {"huge": 0}


class _StandIn(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            if self.path.startswith("/drip"):
                for _ in range(DRIP_BYTES):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(1)
            else:
                chunk = b" " * 65536
                for _ in range(50 * 16):  # 50 MB
                    self.wfile.write(chunk)
                    SENT["huge"] += len(chunk)
                self.wfile.write(b"1")
        except OSError:
            return


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _ctx(url: str, timeout: float) -> Any:
    metric = {"name": "m", "provider": {"web": {"url": url, "timeoutSeconds": timeout}}}
    return _Ctx(metric)


class _Ctx:
    def __init__(self, metric: dict[str, Any]) -> None:
        self.metric = metric

    def redact(self, text: str) -> str:
        return text


def test_dripping_endpoint_ends_error_within_total_timeout(server: str) -> None:
    start = time.monotonic()
    obs = web.WebProvider().run(_ctx(server + "/drip?token=s3cr%21t", 2))  # type: ignore[arg-type]
    elapsed = time.monotonic() - start
    assert elapsed < 2 + 1.5, elapsed
    assert obs.phase == AnalysisPhase.ERROR
    assert "2s" in (obs.message or "")
    assert "s3cr" not in (obs.message or "")


def test_huge_body_stops_at_the_cap(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "MAX_BODY_BYTES", 1024 * 1024)
    obs = web.WebProvider().run(_ctx(server + "/huge", 20))  # type: ignore[arg-type]
    assert obs.phase == AnalysisPhase.ERROR
    assert str(1024 * 1024) in (obs.message or "")
    time.sleep(0.5)
    # The reader stopped near the cap and hung up: the server could not push 50 MB.
    assert SENT["huge"] < 20 * 1024 * 1024, SENT["huge"]


# -- Prometheus and the status-line drip ---------------------------------------------

# Slack for a loaded CI machine; the old per-read timeouts took DRIP_BYTES seconds.
SLACK_SECONDS = 1.5
NOW = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
SCALAR = json.dumps(
    {"status": "success", "data": {"resultType": "scalar", "result": [1700000000, "0.97"]}}
).encode()


@dataclass
class PromStandIn:
    """What the stand-in Prometheus saw: client connections, and when each drip ended."""

    url: str = ""
    connections: set[int] = field(default_factory=set)
    drips_ended: list[float] = field(default_factory=list)
    huge_sent: list[int] = field(default_factory=lambda: [0])


@pytest.fixture()
def prom_stand_in() -> Iterator[PromStandIn]:
    seen = PromStandIn()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real Prometheus

        def log_message(self, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            seen.connections.add(self.client_address[1])
            query = parse_qs(urlsplit(self.path).query).get("query", [""])[0]
            try:
                if query == "status-line-drip":
                    for byte in b"HTTP/1.1 200 OK\r\n":
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(1)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if query == "ok":
                    self.send_header("Content-Length", str(len(SCALAR)))
                    self.end_headers()
                    self.wfile.write(SCALAR)
                    return
                self.send_header("Connection", "close")
                self.end_headers()
                if query == "drip":
                    for _ in range(DRIP_BYTES):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(1)
                else:  # huge: a 50 MB vector, pushed as fast as the client reads
                    self.wfile.write(b'{"status":"success","data":{"result":[')
                    sample = b'{"metric":{},"value":[1700000000,"1"]},' * 1024
                    while seen.huge_sent[0] < 50 * 1024 * 1024:
                        self.wfile.write(sample)
                        seen.huge_sent[0] += len(sample)
            except OSError:
                pass  # the client hung up: what a deadline or the cap should do
            finally:
                if query in ("drip", "status-line-drip"):
                    seen.drips_ended.append(time.monotonic())

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    seen.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield seen
    httpd.shutdown()
    httpd.server_close()


def _prom_ctx(address: str, query: str, timeout: float) -> MeasurementContext:
    metric = {"name": "m", "provider": {"prometheus": {
        "address": address, "query": query, "timeout": timeout}}}
    return MeasurementContext(namespace="ns", run_name="run", run_uid="uid", metric=metric,
                              now=NOW)


@pytest.mark.parametrize("query", ["drip", "status-line-drip"])
def test_prometheus_dripping_endpoint_ends_error_within_total_timeout(
    prom_stand_in: PromStandIn, query: str
) -> None:
    start = time.monotonic()
    obs = prometheus.PrometheusProvider().run(_prom_ctx(prom_stand_in.url, query, 2))
    elapsed = time.monotonic() - start

    assert obs.phase == AnalysisPhase.ERROR
    assert "did not answer within 2s" in obs.message
    assert elapsed < 2 + SLACK_SECONDS, elapsed
    # The socket was closed: the stand-in's next write failed and its drip stopped.
    time.sleep(1.5)
    assert prom_stand_in.drips_ended, "the stand-in is still dripping into an open socket"
    assert prom_stand_in.drips_ended[0] - start < 2 + SLACK_SECONDS + 1.2


def test_web_status_line_drip_ends_error_within_total_timeout(
    prom_stand_in: PromStandIn,
) -> None:
    start = time.monotonic()
    obs = web.WebProvider().run(  # type: ignore[arg-type]
        _ctx(prom_stand_in.url + "/api/v1/query?query=status-line-drip", 2))
    assert obs.phase == AnalysisPhase.ERROR
    assert "within 2s" in obs.message
    assert time.monotonic() - start < 2 + SLACK_SECONDS


def test_prometheus_huge_body_stops_at_the_cap(
    prom_stand_in: PromStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prometheus, "MAX_BODY_BYTES", 1024 * 1024)
    obs = prometheus.PrometheusProvider().run(_prom_ctx(prom_stand_in.url, "huge", 20))

    assert obs.phase == AnalysisPhase.ERROR
    assert obs.message.startswith(
        f"Prometheus at {prom_stand_in.url} answered more than {1024 * 1024} bytes")
    time.sleep(0.5)
    # The reader stopped near the cap and hung up: the stand-in could not push 50 MB.
    assert prom_stand_in.huge_sent[0] < 20 * 1024 * 1024, prom_stand_in.huge_sent[0]


def test_prometheus_deadline_leaves_pooled_connections_alone(prom_stand_in: PromStandIn) -> None:
    # A finished measurement's deadline passing later must not shut the keep-alive
    # socket it returned to the pool: the next measurement reuses it.
    provider = prometheus.PrometheusProvider()
    first = provider.run(_prom_ctx(prom_stand_in.url, "ok", 0.3))
    time.sleep(0.6)
    second = provider.run(_prom_ctx(prom_stand_in.url, "ok", 0.3))

    assert (first.value, second.value) == (0.97, 0.97)
    assert len(prom_stand_in.connections) == 1


@pytest.mark.parametrize(
    ("provider_key", "field_name"),
    [("prometheus", "timeout"), ("web", "timeoutSeconds")],
)
def test_a_timeout_longer_than_the_safety_net_is_cut_to_the_longest_deadline(
    provider_key: str, field_name: str
) -> None:
    config = {"address": "http://p:9090", "query": "up", "url": "http://w/", field_name: 3600}
    metric = {"name": "m", "provider": {provider_key: config}}
    if provider_key == "prometheus":
        ctx = MeasurementContext(namespace="ns", run_name="r", run_uid="u", metric=metric, now=NOW)
        timeout = prometheus.PrometheusProvider(environ={})._parse_spec(ctx).timeout
    else:
        timeout = web._parse_spec(metric).timeout
    assert timeout == LONGEST_DEADLINE_SECONDS
