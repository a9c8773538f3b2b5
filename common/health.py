"""The probe endpoints: ``/healthz`` (liveness) and ``/readyz`` (readiness), as Argo's controllers serve.

Started by the composition root (cli/controller.py) on ``--healthz-port`` in a
daemon thread, before leader election, so a standby answers its probes too.

* ``/healthz``: 200 while the process runs (the server thread answering is the proof).
* ``/readyz``: 200 when ``ready()`` is true (this process leads and its components
  started), else 503: a standby is alive but not ready, so a Service selecting
  ready pods reaches the leader only.

Requests are bounded: a 5 s socket timeout, no request body read, a fixed tiny response.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["HEALTHZ", "READYZ", "HealthServer", "start_health_server"]

HEALTHZ = "/healthz"
READYZ = "/readyz"
SOCKET_TIMEOUT_SECONDS = 5.0
OK = b"ok\n"
NOT_READY = b"not ready (standby, or components not started)\n"
NOT_FOUND = b"not found\n"


class HealthServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows the readiness check."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], ready: Callable[[], bool]) -> None:
        super().__init__(address, _Handler)
        self.ready = ready


class _Handler(BaseHTTPRequestHandler):
    timeout = SOCKET_TIMEOUT_SECONDS
    server: HealthServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == HEALTHZ:
            self._answer(200, OK)
        elif path == READYZ:
            ready = self.server.ready()
            self._answer(200 if ready else 503, OK if ready else NOT_READY)
        else:
            self._answer(404, NOT_FOUND)

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # probes every few seconds would drown the log


def start_health_server(port: int, ready: Callable[[], bool], *, host: str = "0.0.0.0") -> HealthServer:  # noqa: S104
    """Serve the probes on ``host:port`` in a daemon thread; port 0 picks a free one (tests)."""
    server = HealthServer((host, port), ready)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
