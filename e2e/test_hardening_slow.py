"""End-to-end, issue 7 defect 2: slow and huge metric endpoints cannot starve other tenants' analysis.

Given a real ``tidegate controller --components analysis`` watching two
namespaces, and two local stand-in HTTP servers started by this test (stand-ins
for a hostile or broken metric endpoint, not real services): one that drips one
byte every 2 s (in the body, or in the status line) and one that answers a
20 MB JSON body at once.
When a tenant namespace creates more web-metric AnalysisRuns against them
(``timeoutSeconds: 3``) than the controller has workers in all, and
another namespace creates AnalysisRuns with a healthy query against the
harness's real Prometheus,
Then the healthy runs are measured within a couple of seconds of their creation,
every bad run ends with an Error measurement that took its timeout (plus the
one-second granularity of status timestamps), the stand-ins see every
connection closed, the controller's resident memory comes back near its level
before, and later healthy runs in both namespaces still measure at once (no
worker or slot stayed stuck).

The figures are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
from kubernetes import client

from e2e.analysis_kit import Analysis, analysis_run, metric_result, prometheus_metric
from e2e.conftest import TEST_LABEL, wait_until
from e2e.kit import Controller

pytestmark = pytest.mark.e2e

DRIP_INTERVAL_SECONDS = 2.0
DRIP_MAX_BYTES = 60  # a stand-in thread whose client never hangs up still ends, after 2 min
HUGE_BODY_BYTES = 20 * 1024 * 1024
TIMEOUT_SECONDS = 3
# From the stand-in accepting the connection to the measurement's finishedAt
# (whole seconds, rounded down, so the slack only covers scheduling).
STAMP_SLACK_SECONDS = 1.5
# Bad runs per kind, in creation order: the status-line drips alone outnumber the
# 30 analysis workers (before the fix they held every worker for ~100 s), and a
# dozen capped 20 MB bodies show up in the controller's memory if it keeps them.
BAD_RUNS = {"drip-status": 32, "drip-body": 8, "huge": 12}
NAMESPACE_LIMIT = 16  # analysis.config.DEFAULT_NAMESPACE_LIMIT, what the controller runs with
HEALTHY_RUNS = 3
# Create to first measurement seen by our polling (0.1 s), for a query that
# answers in milliseconds; with a worker free this is well under a second.
HEALTHY_MAX_SECONDS = 2.5
# Before the chunks were trimmed back to the OS, 12 capped 10 MB bodies left ~+30-50 MiB for good.
RSS_SLACK_BYTES = 24 * 1024 * 1024
HEALTHY_QUERY = "vector(1)"
ENDED = ("Successful", "Failed", "Error", "Inconclusive")
STARTED_LINE = "analysis controller started"


# --- the stand-ins ---------------------------------------------------------------------------

@dataclass
class StandIns:
    """Local stand-in metric endpoints; counts the connections still open."""

    url: str = ""
    accepted: dict[str, float] = field(default_factory=dict)  # path -> wall-clock time
    open_connections: int = 0
    most_open: int = 0
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def stand_ins() -> Iterator[StandIns]:
    seen = StandIns()
    huge_body = b"[" + b"0," * (HUGE_BODY_BYTES // 2 - 1) + b"0]"  # valid JSON, 20 MB

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            with seen.lock:
                seen.accepted.setdefault(self.path, time.time())
                seen.open_connections += 1
                seen.served += 1
                seen.most_open = max(seen.most_open, seen.open_connections)
            try:
                self._answer()
            except OSError:
                pass  # the controller hung up: what its deadline or body cap should do
            finally:
                with seen.lock:
                    seen.open_connections -= 1

        def _answer(self) -> None:
            if self.path.startswith("/drip-status"):
                self._drip(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n1")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if self.path.startswith("/huge"):
                self.send_header("Content-Length", str(len(huge_body)))
                self.end_headers()
                self.wfile.write(huge_body)
                return
            self.end_headers()
            self._drip(b" " * DRIP_MAX_BYTES)

        def _drip(self, data: bytes) -> None:
            for byte in data[:DRIP_MAX_BYTES]:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(DRIP_INTERVAL_SECONDS)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield seen
    server.shutdown()
    server.server_close()


# --- the controller and the second namespace -----------------------------------------------

class AnalysisController(Controller):
    """``tidegate controller --components analysis`` watching several namespaces."""

    def __init__(self, env: dict[str, str], namespaces: list[str], log_path: Path) -> None:
        # The kit passes --namespace for the first; the others follow as extra arguments.
        others = [arg for ns in namespaces[1:] for arg in ("--namespace", ns)]
        super().__init__(env, namespaces[0], log_path,
                         extra_args=["--components", "analysis", *others], ready=STARTED_LINE)
        self.namespaces = namespaces

    def rss(self) -> int:
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)


@pytest.fixture
def other_namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={TEST_LABEL: "true"})))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture
def analysis_controller(cluster_env: dict[str, str], namespace: str, other_namespace: str,
                        tmp_path: Path) -> Iterator[AnalysisController]:
    ctl = AnalysisController(cluster_env, [namespace, other_namespace], tmp_path / "controller.log")
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()


class RssSampler(threading.Thread):
    """The controller's resident memory every 0.2 s, for the peak."""

    def __init__(self, ctl: AnalysisController) -> None:
        super().__init__(daemon=True)
        self.ctl, self.peak, self.stopped = ctl, 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            try:
                self.peak = max(self.peak, self.ctl.rss())
            except psutil.Error:
                return  # the controller is gone (the test failed and stopped it)


# --- manifests and waiting ---------------------------------------------------------------------

def web_run(name: str, url: str) -> dict[str, Any]:
    metric = {"name": "web", "count": 1, "consecutiveErrorLimit": 0,
              "successCondition": "result == 1",
              "provider": {"web": {"url": url, "timeoutSeconds": TIMEOUT_SECONDS}}}
    return analysis_run(name, [metric])


def healthy_run(name: str, prometheus_url: str) -> dict[str, Any]:
    metric = prometheus_metric("healthy", address=prometheus_url, query=HEALTHY_QUERY, count=1,
                               success="result[0] == 1")
    return analysis_run(name, [metric])


def first_measurement(analysis: Analysis, name: str) -> dict[str, Any] | None:
    status = (analysis.maybe_run(name) or {}).get("status") or {}
    for result in status.get("metricResults") or []:
        for measurement in result.get("measurements") or []:
            if measurement.get("finishedAt"):
                return dict(measurement)
    return None


def measure_lag(analysis: Analysis, created: dict[str, float]) -> dict[str, float]:
    """Seconds from each run's create call returning to our first sight of a finished measurement."""
    lags: dict[str, float] = {}

    def all_seen() -> bool:
        for name, at in created.items():
            if name not in lags and first_measurement(analysis, name) is not None:
                lags[name] = time.monotonic() - at
        return len(lags) == len(created)

    wait_until(all_seen, timeout=60, interval=0.1, message=f"measurements of {list(created)}")
    return lags


def create_healthy(analysis: Analysis, prefix: str, prometheus_url: str,
                   count: int) -> dict[str, float]:
    created: dict[str, float] = {}
    for i in range(count):
        name = f"{prefix}-{i}"
        analysis.create(healthy_run(name, prometheus_url))
        created[name] = time.monotonic()
    return created


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# --- the test ----------------------------------------------------------------------------------

def test_slow_and_huge_endpoints_do_not_starve_another_namespace(
    api_client: client.ApiClient, namespace: str, other_namespace: str, prometheus_url: str,
    stand_ins: StandIns, analysis_controller: AnalysisController,
) -> None:
    tenant = Analysis(api_client, namespace)  # the tenant with the bad endpoints
    healthy = Analysis(api_client, other_namespace)

    # Given: the controller has measured once (code loaded, clients built).
    lag = measure_lag(healthy, create_healthy(healthy, "warm-up", prometheus_url, 1))
    print(f"\nwarm-up run measured {lag['warm-up-0']:.2f}s after creation")
    time.sleep(1.0)
    rss_before = analysis_controller.rss()
    sampler = RssSampler(analysis_controller)
    sampler.start()
    try:
        _bad_runs_next_to_healthy_ones(
            tenant=tenant, healthy=healthy, prometheus_url=prometheus_url, stand_ins=stand_ins)
        time.sleep(3.0)
    finally:
        sampler.stopped.set()
    # Then, last: memory comes back near its level before.
    rss_after = analysis_controller.rss()
    mib = 1024 * 1024
    print(f"controller RSS: before {rss_before / mib:.0f} MiB, peak {sampler.peak / mib:.0f} MiB, "
          f"after {rss_after / mib:.0f} MiB")
    assert rss_after - rss_before < RSS_SLACK_BYTES, (rss_before, sampler.peak, rss_after)
    assert "reconcile failed" not in analysis_controller.log()


def _bad_runs_next_to_healthy_ones(*, tenant: Analysis, healthy: Analysis, prometheus_url: str,
                                   stand_ins: StandIns) -> None:
    """The When and most of the Then; the caller measures memory around it."""

    # When: the tenant creates 52 runs against the stand-ins...
    bad: dict[str, float] = {}
    started = time.monotonic()
    for kind, count in BAD_RUNS.items():
        for i in range(count):
            name = f"{kind}-{i}"
            tenant.create(web_run(name, f"{stand_ins.url}/{kind}/{i}"))
            bad[name] = time.monotonic()
    time.sleep(1.0)  # the first of them are in flight, holding their workers
    # ...and another namespace creates healthy runs.
    created = create_healthy(healthy, "healthy", prometheus_url, HEALTHY_RUNS)
    lags = measure_lag(healthy, created)
    in_flight = stand_ins.open_connections
    print(f"healthy runs measured after {sorted(round(v, 2) for v in lags.values())}s "
          f"with {in_flight} stand-in connections open")

    # Then the healthy ones did not wait for the tenant's slow endpoints.
    assert max(lags.values()) < HEALTHY_MAX_SECONDS, lags
    assert in_flight > 0, "the bad runs had already ended: the timing proves nothing"

    # And every bad run ends Error, each measurement within its timeout.
    rounds = math.ceil(len(bad) / NAMESPACE_LIMIT)
    wait_until(lambda: all(_phase(tenant, name) in ENDED for name in bad),
               timeout=rounds * (TIMEOUT_SECONDS + 2) + 30, interval=0.5,
               message="every bad run to end")
    all_ended = time.monotonic() - started
    # A measurement's startedAt is when its reconcile began; it may then wait for
    # one of the namespace's slots. Its own time starts when the request leaves.
    durations: dict[str, float] = {}
    slot_waits: dict[str, float] = {}
    for name in bad:
        status = tenant.run(name)["status"]
        assert status["phase"] == "Error", (name, status)
        measurement = metric_result(status, "web")["measurements"][0]
        assert measurement["phase"] == "Error", (name, measurement)
        expected = "larger than" if name.startswith("huge") else f"within {TIMEOUT_SECONDS}s"
        assert expected in measurement["message"], (name, measurement["message"])
        kind, _, index = name.rpartition("-")
        accepted = stand_ins.accepted[f"/{kind}/{index}"]
        durations[name] = epoch(measurement["finishedAt"]) - accepted
        slot_waits[name] = accepted - epoch(measurement["startedAt"])
    for kind in BAD_RUNS:
        worst = max(v for k, v in durations.items() if k.startswith(kind))
        print(f"{kind}: request sent -> Error measurement stored, at most {worst:.1f}s "
              f"(timeout {TIMEOUT_SECONDS}s)")
    print(f"longest wait for a namespace slot: {max(slot_waits.values()):.1f}s")
    print(f"all {len(bad)} bad runs ended {all_ended:.1f}s after the first was created "
          f"({rounds} rounds of {NAMESPACE_LIMIT} at most {TIMEOUT_SECONDS}s each); "
          f"stand-ins saw at most {stand_ins.most_open} connections open at once")
    assert max(durations.values()) <= TIMEOUT_SECONDS + STAMP_SLACK_SECONDS, durations

    # The controller hung up on every stand-in connection (socket closed, thread free).
    # A stand-in learns it at its next write or the one after (the first may still
    # reach the kernel), so within two drip intervals.
    wait_until(lambda: stand_ins.open_connections == 0, timeout=3 * DRIP_INTERVAL_SECONDS + 1,
               interval=0.1, message="the stand-ins' connections to close")

    # No worker or slot stayed stuck: later healthy runs, in both namespaces, measure at once.
    later = measure_lag(healthy, create_healthy(healthy, "later", prometheus_url, 1))
    later_tenant = measure_lag(tenant, create_healthy(tenant, "later", prometheus_url, 1))
    print(f"later healthy runs measured after {later['later-0']:.2f}s (other namespace), "
          f"{later_tenant['later-0']:.2f}s (the tenant's own)")
    assert later["later-0"] < HEALTHY_MAX_SECONDS
    assert later_tenant["later-0"] < HEALTHY_MAX_SECONDS


def _phase(analysis: Analysis, name: str) -> str:
    return str(((analysis.maybe_run(name) or {}).get("status") or {}).get("phase") or "")
