"""End-to-end leader election: two real controller processes, one Rollout, the real API server's Leases.

Given two ``tidegate controller`` processes watching the same fresh namespace (so
they share one Lease per component, in that namespace), exactly one leads, as
their ``tidegate_leader`` gauges and ``/readyz`` probes show. When the leader is
killed with SIGKILL in the middle of an analysis step, the standby takes over
within 20 s and finishes the rollout with one AnalysisRun per step and a canary
weight that never goes down before completion. When the leader gets SIGTERM, it
releases its Leases and the standby leads within 3 s.

The analysis step measures ``BackendStub``, a stand-in for a metrics backend: a
loopback HTTP server answering ``{"ok": 1}`` to the ``web`` provider, so the
test needs no Prometheus.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.conftest import wait_until
from e2e.kit import Cluster, Controller, WeightRecorder, rollout, service, virtual_service

pytestmark = pytest.mark.e2e

GROUP, VERSION = "argoproj.io", "v1alpha1"
COMPONENTS = ["--components", "rollouts,analysis"]
LEADING = "rollout controller started"
STANDING_BY = "leader election: waiting for the lease"
GAUGE = re.compile(r'^tidegate_leader\{component="rollouts"\} (\S+)$', re.MULTILINE)
TAKEOVER_LIMIT_SECONDS = 20.0
HANDOVER_LIMIT_SECONDS = 3.0


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b'{"ok": 1}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class BackendStub:
    """Stand-in for a metrics backend: GET / answers {"ok": 1} on 127.0.0.1."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend() -> Iterator[BackendStub]:
    stub = BackendStub()
    yield stub
    stub.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def web_template(name: str, url: str, *, count: int, interval: str) -> dict[str, Any]:
    metric = {"name": "ok", "count": count, "interval": interval, "successCondition": "result == 1",
              "provider": {"web": {"url": url, "jsonPath": "{$.ok}"}}}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AnalysisTemplate", "metadata": {"name": name},
            "spec": {"metrics": [metric]}}


def host_level(cluster: Cluster, name: str, steps: list[dict[str, Any]],
               labels: dict[str, str] | None = None) -> None:
    """Services, VirtualService and a canary Rollout (host-level Istio) named ``name``."""
    cluster.create(service(f"{name}-canary", name))
    cluster.create(service(f"{name}-stable", name))
    cluster.create(virtual_service(f"{name}-vsvc", canary_host=f"{name}-canary", stable_host=f"{name}-stable"))
    doc = rollout(name, steps=steps)
    doc["metadata"]["labels"] = dict(labels or {})
    cluster.create(doc)


def step_runs(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "analysisruns", label_selector="rollout-type=Step")["items"]
    return list(items)


class Candidate(Controller):
    """A controller process that may lead or stand by; its gauge and probe are on distinct ports."""

    def __init__(self, env: dict[str, str], namespace: str, log_path: Path, *, ready: str,
                 extra_args: list[str] | None = None) -> None:
        self.healthz_port = free_port()
        super().__init__(env, namespace, log_path, ready=ready, metrics_port=free_port(),
                         extra_args=[*COMPONENTS, "--healthz-port", str(self.healthz_port),
                                     *(extra_args or [])])

    def leader_gauge(self) -> float | None:
        try:
            found = GAUGE.search(self.metrics())
        except OSError:
            return None
        return float(found.group(1)) if found else None

    def readyz(self) -> int:
        url = f"http://127.0.0.1:{self.healthz_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback, our own URL
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


@pytest.fixture
def candidates(cluster_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[list[Candidate]]:
    """The first process started (it leads), and a second one (it stands by)."""
    started: list[Candidate] = []
    try:
        first = Candidate(cluster_env, namespace, tmp_path / "first.log", ready=LEADING)
        started.append(first)
        first.start()
        second = Candidate(cluster_env, namespace, tmp_path / "second.log", ready=STANDING_BY)
        started.append(second)
        second.start()
        yield started
    finally:
        for ctl in started:
            ctl.stop()
        for ctl in started:
            print(f"--- {ctl.log_path.name} (last 30 lines)\n" + "\n".join(ctl.log().splitlines()[-30:]))


def non_decreasing_until_completion(weights: list[int]) -> bool:
    """Canary weights only rise; the one drop allowed is the last, to 0, when the canary is promoted."""
    rising = weights[:-1] if len(weights) > 1 and weights[-1] == 0 and max(weights) > 0 else weights
    return all(a <= b for a, b in zip(rising, rising[1:], strict=False))


def test_exactly_one_leads_and_a_standby_finishes_the_rollout_after_kill_9(
    api_client: client.ApiClient, cluster: Cluster, namespace: str, backend: BackendStub,
    candidates: list[Candidate],
) -> None:
    leader, standby = candidates
    # Given two processes: the first leads, the second stands by, as gauges and probes say
    assert wait_until(lambda: (leader.leader_gauge(), standby.leader_gauge()) == (1.0, 0.0), timeout=10,
                      message="gauges 1 and 0")
    assert (leader.readyz(), standby.readyz()) == (200, 503)
    assert LEADING not in standby.log()

    # And a healthy v1 whose rollout has an analysis step of ~12 s between two weights
    cluster.create(web_template("ok", backend.url, count=6, interval="2s"))
    steps: list[dict[str, Any]] = [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "ok"}]}},
             {"setWeight": 60}, {"pause": {"duration": "2s"}}]
    host_level(cluster, "model", steps)
    v1 = cluster.wait_phase("model", "Healthy", timeout=60)["stableRS"]

    with WeightRecorder(cluster, "model-vsvc") as recorder:
        # When v2 rolls out and the leader is killed (SIGKILL) while the analysis step runs
        cluster.set_image("model", "registry.local/model:v2")
        wait_until(lambda: step_runs(api_client, namespace), timeout=30, message="the step's AnalysisRun")
        killed_at = time.monotonic()
        leader.kill9()

        # Then the standby leads within 20 s (the Lease must expire: 15 s), and only then
        wait_until(lambda: standby.leader_gauge() == 1.0, timeout=TAKEOVER_LIMIT_SECONDS + 5,
                   interval=0.2, message="the standby to lead")
        takeover = time.monotonic() - killed_at
        print(f"takeover after kill -9: {takeover:.1f} s")
        assert takeover <= TAKEOVER_LIMIT_SECONDS

        # And it finishes the rollout: Healthy on v2, one step run, weights never going down
        status = cluster.wait_status(
            "model", lambda s: s.get("phase") == "Healthy" and s.get("stableRS") == s.get("currentPodHash") != v1
            and s.get("currentStepIndex") == len(steps), timeout=90, message="Healthy on v2")
        wait_until(lambda: cluster.vs_weights("model-vsvc") == (100, 0), timeout=10, message="VS 100/0")
        time.sleep(1)  # let the watch deliver the last version
    runs = step_runs(api_client, namespace)
    print("weights:", recorder.weights, "runs:", [r["metadata"]["name"] for r in runs])
    assert len(runs) == 1, json.dumps([r["metadata"] for r in runs], indent=1)
    assert runs[0]["status"]["phase"] == "Successful"
    assert non_decreasing_until_completion(recorder.weights), recorder.weights
    assert 60 in recorder.weights
    assert standby.readyz() == 200
    assert status["stableRS"] == status["currentPodHash"]


def test_sigterm_releases_the_lease_and_the_standby_leads_within_3_s(
    api_client: client.ApiClient, namespace: str, candidates: list[Candidate],
) -> None:
    leader, standby = candidates
    assert wait_until(lambda: (leader.leader_gauge(), standby.leader_gauge()) == (1.0, 0.0), timeout=10,
                      message="gauges 1 and 0")
    # When the leader gets SIGTERM (as the kubelet sends it)
    assert leader.proc is not None
    sent_at = time.monotonic()
    leader.proc.send_signal(signal.SIGTERM)

    # Then the standby leads within 3 s, and the old leader exited cleanly, having released
    wait_until(lambda: standby.leader_gauge() == 1.0, timeout=15, interval=0.05,
               message="the standby to lead")
    handover = time.monotonic() - sent_at
    code = leader.proc.wait(timeout=20)
    exited = time.monotonic() - sent_at
    print(f"handover after SIGTERM: {handover:.2f} s; old leader exited after {exited:.2f} s with {code}")
    assert code == 0
    assert "leader election: released the lease" in leader.log()
    assert handover <= HANDOVER_LIMIT_SECONDS
    lease = client.CoordinationV1Api(api_client).list_namespaced_lease(namespace).items
    holders = {item.metadata.name: item.spec.holder_identity for item in lease}
    assert holders and all(holders.values()), holders


def test_a_leader_whose_lease_is_taken_exits_at_once(
    api_client: client.ApiClient, cluster_env: dict[str, str], namespace: str, tmp_path: Path,
) -> None:
    # Given one leading process
    leader = Candidate(cluster_env, namespace, tmp_path / "leader.log", ready=LEADING)
    leader.start()
    try:
        assert leader.proc is not None
        leases = client.CoordinationV1Api(api_client)
        name = next(item.metadata.name for item in leases.list_namespaced_lease(namespace).items
                    if (item.metadata.labels or {}).get("app.kubernetes.io/component") == "rollouts")

        # When another identity takes its Lease (as after a partition longer than the lease)
        lease = leases.read_namespaced_lease(name, namespace)
        lease.spec.holder_identity = "intruder_00000000"
        leases.replace_namespaced_lease(name, namespace, lease)
        taken_at = time.monotonic()

        # Then it stops acting at once: exits non-zero within a retry period, saying why
        code = leader.proc.wait(timeout=10)
        print(f"exit {code} after {time.monotonic() - taken_at:.2f} s")
        assert code != 0
        assert time.monotonic() - taken_at <= 5
        assert "LOST the lease (another process holds it)" in leader.log()
        assert leader.leader_gauge() is None  # the process, and its metrics, are gone
    finally:
        leader.stop()
