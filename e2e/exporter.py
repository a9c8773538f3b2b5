"""A small Prometheus exporter that plays an inference service, for tests.

Used by the e2e tests (and by tests/test_providers.py) as the thing a real
Prometheus scrapes, so analysis templates are exercised against real PromQL.
For each service it exposes, in the Prometheus text format on ``/metrics``:

* ``inference_requests_total{service, status="success"|"error"}``: counters that
  grow at ``rate`` requests/s, ``error_rate`` of them errors;
* ``inference_latency_seconds`` (histogram, ``service`` label): filled so that
  ``histogram_quantile(0.99, rate(inference_latency_seconds_bucket[1m]))`` is
  the configured ``latency_p99`` (exactly, given Prometheus's linear
  interpolation inside a bucket);
* ``inference_latency_p99_seconds{service}``: the same p99 as a plain gauge.

Counters advance with the clock at every scrape or control call, not by a
background thread, so nothing runs between scrapes. A test changes a service
with ``POST /control`` and a JSON body such as
``{"service": "canary", "error_rate": 0.05, "latency_p99": 0.2, "rate": 20}``
(unknown services are created); ``GET /control`` returns every service's
settings. ``/healthz`` answers ``ok``.

Run it standalone: ``python e2e/exporter.py --port 9101 --service stable
--service canary``, or in a test: ``server = start_exporter(0)`` then
``server.url`` and ``server.stop()``.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_RATE = 20.0
DEFAULT_ERROR_RATE = 0.0
DEFAULT_LATENCY_P99 = 0.1

# Upper bounds of the latency histogram's finite buckets, in seconds.
BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUANTILE = 0.99

REQUESTS_METRIC = "inference_requests_total"
LATENCY_METRIC = "inference_latency_seconds"
P99_METRIC = "inference_latency_p99_seconds"
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


def latency_fractions(p99: float) -> list[float]:
    """Share of requests per histogram bucket (the finite buckets, then +Inf).

    Chosen so that Prometheus's ``histogram_quantile(0.99, ...)`` returns
    ``p99``: it finds the bucket (lo, hi] holding the 0.99 rank and
    interpolates linearly, giving lo + (hi - lo) * (0.99 - below) / inside.
    With t = (p99 - lo) / (hi - lo), either put everything at or below hi
    (inside = 0.01 / (1 - t), the rest in the bucket below), or, when t is
    above 0.99, nothing below (inside = 0.99 / t, the rest in the next bucket).
    A p99 under 0.99 of the first bound, or over the last, is clamped.
    """
    p99 = min(max(p99, QUANTILE * BUCKETS[0]), BUCKETS[-1])
    fractions = [0.0] * (len(BUCKETS) + 1)
    i = next(n for n, bound in enumerate(BUCKETS) if bound >= p99)
    lo = BUCKETS[i - 1] if i else 0.0
    hi = BUCKETS[i]
    t = (p99 - lo) / (hi - lo)
    if i and t <= QUANTILE:
        inside = (1 - QUANTILE) / (1 - t)
        fractions[i - 1] = 1 - inside
        fractions[i] = inside
    else:
        inside = QUANTILE / t
        fractions[i] = inside
        fractions[i + 1] = 1 - inside
    return fractions


@dataclass
class Service:
    """One simulated service: its settings and what it has served so far."""

    rate: float = DEFAULT_RATE
    error_rate: float = DEFAULT_ERROR_RATE
    latency_p99: float = DEFAULT_LATENCY_P99
    success: float = 0.0
    error: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(BUCKETS) + 1))
    latency_sum: float = 0.0

    def serve(self, seconds: float) -> None:
        """Account for ``seconds`` of traffic at the current settings."""
        requests = self.rate * seconds
        self.error += requests * self.error_rate
        self.success += requests * (1 - self.error_rate)
        for n, share in enumerate(latency_fractions(self.latency_p99)):
            self.buckets[n] += requests * share
            self.latency_sum += requests * share * _bucket_midpoint(n)

    def settings(self) -> dict[str, float]:
        return {
            "rate": self.rate,
            "error_rate": self.error_rate,
            "latency_p99": self.latency_p99,
        }


def _bucket_midpoint(n: int) -> float:
    lo = BUCKETS[n - 1] if n else 0.0
    hi = BUCKETS[n] if n < len(BUCKETS) else 2 * BUCKETS[-1]
    return (lo + hi) / 2


class ControlError(ValueError):
    """A /control request the exporter refuses; the message goes back as 400."""


class Exporter:
    """The simulated services and their metrics; thread-safe."""

    def __init__(
        self,
        *,
        services: Iterable[str] = (),
        rate: float = DEFAULT_RATE,
        error_rate: float = DEFAULT_ERROR_RATE,
        latency_p99: float = DEFAULT_LATENCY_P99,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._defaults = {"rate": rate, "error_rate": error_rate, "latency_p99": latency_p99}
        _check_settings(self._defaults)
        self._clock = clock
        self._lock = threading.Lock()
        self._services: dict[str, Service] = {}
        self._last = clock()
        for name in services:
            self._services[name] = Service(
                rate=rate, error_rate=error_rate, latency_p99=latency_p99
            )

    def _advance(self) -> None:
        now = self._clock()
        elapsed = max(now - self._last, 0.0)
        self._last = now
        for service in self._services.values():
            service.serve(elapsed)

    def configure(self, name: str, settings: dict[str, Any]) -> dict[str, float]:
        """Change a service's settings (creating it); returns its new settings."""
        if not name:
            raise ControlError('"service" is required')
        unknown = set(settings) - set(self._defaults)
        if unknown:
            raise ControlError(f"unknown settings: {', '.join(sorted(unknown))}")
        try:
            values = {key: float(value) for key, value in settings.items()}
        except (TypeError, ValueError):
            raise ControlError("settings must be numbers") from None
        _check_settings(values)
        with self._lock:
            # Traffic so far was served at the old settings.
            self._advance()
            service = self._services.get(name)
            if service is None:
                service = self._services[name] = Service(
                    rate=self._defaults["rate"],
                    error_rate=self._defaults["error_rate"],
                    latency_p99=self._defaults["latency_p99"],
                )
            for key, value in values.items():
                setattr(service, key, value)
            return service.settings()

    def settings(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {name: svc.settings() for name, svc in sorted(self._services.items())}

    def render(self) -> str:
        """The /metrics page, in the Prometheus text exposition format."""
        with self._lock:
            self._advance()
            services = sorted(self._services.items())
            lines = [
                f"# HELP {REQUESTS_METRIC} Requests served, by outcome.",
                f"# TYPE {REQUESTS_METRIC} counter",
            ]
            for name, svc in services:
                label = _escape(name)
                lines.append(
                    f'{REQUESTS_METRIC}{{service="{label}",status="success"}} {_num(svc.success)}'
                )
                lines.append(
                    f'{REQUESTS_METRIC}{{service="{label}",status="error"}} {_num(svc.error)}'
                )
            lines += [
                f"# HELP {LATENCY_METRIC} Request latency.",
                f"# TYPE {LATENCY_METRIC} histogram",
            ]
            for name, svc in services:
                label = _escape(name)
                cumulative = 0.0
                for n, count in enumerate(svc.buckets):
                    cumulative += count
                    bound = _num(BUCKETS[n]) if n < len(BUCKETS) else "+Inf"
                    lines.append(
                        f'{LATENCY_METRIC}_bucket{{service="{label}",le="{bound}"}} {_num(cumulative)}'
                    )
                lines.append(f'{LATENCY_METRIC}_sum{{service="{label}"}} {_num(svc.latency_sum)}')
                lines.append(f'{LATENCY_METRIC}_count{{service="{label}"}} {_num(cumulative)}')
            lines += [
                f"# HELP {P99_METRIC} Configured p99 latency.",
                f"# TYPE {P99_METRIC} gauge",
            ]
            for name, svc in services:
                lines.append(f'{P99_METRIC}{{service="{_escape(name)}"}} {_num(svc.latency_p99)}')
        return "\n".join(lines) + "\n"


def _check_settings(values: dict[str, float]) -> None:
    if any(math.isnan(v) or math.isinf(v) for v in values.values()):
        raise ControlError("settings must be finite numbers")
    if not 0.0 <= values.get("error_rate", 0.0) <= 1.0:
        raise ControlError("error_rate must be between 0 and 1")
    if values.get("rate", 0.0) < 0:
        raise ControlError("rate must not be negative")
    if values.get("latency_p99", 1.0) <= 0:
        raise ControlError("latency_p99 must be positive")


def _num(value: float) -> str:
    return repr(float(value))


def _escape(label: str) -> str:
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Handler(BaseHTTPRequestHandler):
    server: ExporterServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._send(200, self.server.exporter.render(), TEXT_FORMAT)
        elif path == "/healthz":
            self._send(200, "ok\n", "text/plain")
        elif path == "/control":
            wanted = parse_qs(urlsplit(self.path).query).get("service")
            settings = self.server.exporter.settings()
            if wanted:
                settings = {k: v for k, v in settings.items() if k in wanted}
            self._send_json(200, settings)
        else:
            self._send(404, "not found\n", "text/plain")

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/control":
            self._send(404, "not found\n", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(payload, dict):
                raise ControlError("the body must be a JSON object")
            name = str(payload.pop("service", "") or "")
            settings = self.server.exporter.configure(name, payload)
        except (ValueError, ControlError) as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self._send_json(200, {name: settings})

    def _send_json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body, sort_keys=True) + "\n", "application/json")

    def _send(self, status: int, text: str, content_type: str) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        # Scrapes every few seconds would flood test output.
        pass


class ExporterServer(ThreadingHTTPServer):
    """The HTTP server, holding its Exporter; ``stop()`` shuts it down."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], exporter: Exporter) -> None:
        super().__init__(address, _Handler)
        self.exporter = exporter
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ExporterServer:
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="test-exporter",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def start_exporter(
    port: int,
    *,
    host: str = "127.0.0.1",
    exporter: Exporter | None = None,
    services: Iterable[str] = (),
) -> ExporterServer:
    """Start the exporter in a daemon thread; port 0 picks a free port (see ``.url``)."""
    server = ExporterServer((host, port), exporter or Exporter(services=services))
    return server.start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--service", action="append", default=[], help="repeat per service")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="requests/s per service")
    parser.add_argument("--error-rate", type=float, default=DEFAULT_ERROR_RATE)
    parser.add_argument("--latency-p99", type=float, default=DEFAULT_LATENCY_P99)
    args = parser.parse_args(argv)
    exporter = Exporter(
        services=args.service,
        rate=args.rate,
        error_rate=args.error_rate,
        latency_p99=args.latency_p99,
    )
    server = ExporterServer((args.host, args.port), exporter)
    print(f"exporter listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
