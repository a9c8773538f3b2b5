"""Issue 7 defect 2: the web provider's timeoutSeconds is a total deadline, bodies are capped while read.

Run by pytest; uses a local stand-in HTTP server in a thread (a dripping endpoint and a
huge-body endpoint), never a real metric backend.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from analysis.phases import AnalysisPhase
from analysis.providers import web

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
