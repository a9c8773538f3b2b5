"""Shared helpers for the cluster benchmarks in bench/ (not used by the controllers).

Called by bench/rollouts_scale.py (and any later cluster bench): load the local
cluster's environment, pick free ports, watch objects in a thread and stamp each
event's arrival time, sample a process's CPU and memory, scrape a Prometheus
text endpoint, add and remove extra kwok nodes, and compute percentiles.
Everything here talks to the real local cluster started by e2e/cluster/up.sh.
"""

from __future__ import annotations

import math
import os
import shlex
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
CLUSTER_ENV = REPO / ".cluster" / "env"
BENCH_LABEL = "tidegate.dev/bench"
BENCH_NODE_PREFIX = "kwok-bench-"
NODE_PODS = 500
WATCH_SERVER_TIMEOUT_SECONDS = 30
GONE = 410


# --- environment ---------------------------------------------------------------------------

def load_cluster_env(path: Path = CLUSTER_ENV) -> dict[str, str]:
    """Apply .cluster/env (KUBECONFIG, PROMETHEUS_URL, PATH) to os.environ and return it."""
    if not path.exists():
        raise SystemExit(f"no local cluster: {path} is missing; run `make cluster-up` first")
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "export ")) or "=" not in line:
            continue
        key, raw = line.split("=", 1)
        value = " ".join(shlex.split(raw)).replace("$PATH", os.environ.get("PATH", ""))
        values[key] = value
    os.environ.update(values)
    return values


TIDEGATE = REPO / ".venv" / "bin" / "tidegate"


def launch_controller(command: list[str], log_path: Path, pythonpath: str | None) -> Any:
    """Start a controller process for a bench, its output in ``log_path``.

    ``pythonpath`` runs it from a scratch copy of the tree (A/B of a proposed patch).
    Returns the Popen and the open log file (the caller closes both).
    """
    log = log_path.open("wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return proc, log


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- statistics ------------------------------------------------------------------------------

def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) by the nearest-rank method; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "min": min(values) if values else None,
    }


# --- watching ----------------------------------------------------------------------------------

class Watcher(threading.Thread):
    """LIST then WATCH one namespaced custom resource; ``on_event(type, obj, arrived)`` per event.

    ``arrived`` is time.monotonic() taken as soon as the event is decoded, so it
    includes the API server's fan-out and our client's decoding, nothing else we do.
    """

    def __init__(self, api: Any, *, group: str, version: str, namespace: str, plural: str,
                 on_event: Callable[[str, Mapping[str, Any], float], None]) -> None:
        super().__init__(name=f"watch-{plural}", daemon=True)
        self.custom = client.CustomObjectsApi(api)
        self.args = (group, version, namespace, plural)
        self.on_event = on_event
        self.stopping = threading.Event()
        self.synced = threading.Event()
        self.error: BaseException | None = None

    def _list(self) -> str:
        listed = self.custom.list_namespaced_custom_object(*self.args)
        now = time.monotonic()
        for item in listed.get("items", []):
            self.on_event("LISTED", item, now)
        self.synced.set()
        return str(listed["metadata"]["resourceVersion"])

    def run(self) -> None:
        try:
            version = self._list()
            while not self.stopping.is_set():
                stream = watch.Watch()
                try:
                    for event in stream.stream(self.custom.list_namespaced_custom_object, *self.args,
                                               resource_version=version, allow_watch_bookmarks=True,
                                               timeout_seconds=WATCH_SERVER_TIMEOUT_SECONDS):
                        arrived = time.monotonic()
                        obj = event["object"]
                        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                        if event["type"] != "BOOKMARK":
                            self.on_event(str(event["type"]), obj, arrived)
                        if self.stopping.is_set():
                            break
                except ApiException as exc:
                    if exc.status != GONE:
                        raise
                    version = self._list()
                finally:
                    stream.stop()
        except BaseException as exc:  # noqa: BLE001 - reported by the bench, not swallowed
            self.error = exc


# --- the measured process -------------------------------------------------------------------

class ProcessSampler(threading.Thread):
    """Samples a process's RSS every ``interval`` seconds; CPU seconds read on demand."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.samples.append((time.monotonic(), self.proc.memory_info().rss))
            except psutil.Error:
                return
            self.stopping.wait(self.interval)

    def cpu_seconds(self) -> float:
        times = self.proc.cpu_times()
        return float(times.user + times.system)

    def peak_rss(self, start: float, end: float) -> int:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) if inside else 0


CLUSTER_PROCESSES = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok", "prometheus")


def cluster_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of each local control-plane process (pids from .cluster/pids)."""
    found: dict[str, float] = {}
    for name in CLUSTER_PROCESSES:
        pid_file = REPO / ".cluster" / "pids" / name
        try:
            times = psutil.Process(int(pid_file.read_text().strip())).cpu_times()
        except (OSError, ValueError, psutil.Error):
            continue
        found[name] = float(times.user + times.system)
    return found


def scrape(url: str, names: Iterable[str]) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Samples of the named metrics (without _created) from a Prometheus text endpoint."""
    wanted = set(names)
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own local endpoint
        text = response.read().decode()
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {name: {} for name in wanted}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                found[sample.name][tuple(sorted(sample.labels.items()))] = float(sample.value)
    return found


def delta(before: Mapping[tuple[tuple[str, str], ...], float],
          after: Mapping[tuple[tuple[str, str], ...], float]) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value - before.get(labels, 0.0) for labels, value in after.items()
            if value - before.get(labels, 0.0)}


# --- cluster objects ---------------------------------------------------------------------------

def kwok_node(name: str) -> dict[str, Any]:
    """A fake node of the shape e2e/cluster/up.sh creates (CPU only), labelled as the bench's."""
    capacity = {"cpu": "64", "memory": "512Gi", "pods": str(NODE_PODS), "nvidia.com/gpu": "0"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "tidegate.dev/gpu": "false", BENCH_LABEL: "true"},
        },
        "status": {
            "allocatable": capacity, "capacity": capacity,
            "nodeInfo": {"kubeletVersion": "fake", "kubeProxyVersion": "fake",
                         "architecture": "amd64", "operatingSystem": "linux"},
            "phase": "Running",
        },
    }


def spare_pod_capacity(core: client.CoreV1Api) -> int:
    """Pods that still fit on Ready nodes (capacity minus pods not yet finished)."""
    capacity = 0
    for node in core.list_node().items:
        ready = any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
        if ready:
            capacity += int((node.status.allocatable or {}).get("pods", "0"))
    used = sum(1 for pod in core.list_pod_for_all_namespaces(_preload_content=False).json().get("items", [])
               if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
    return capacity - used


def add_bench_nodes(core: client.CoreV1Api, count: int, *, timeout: float = 60) -> list[str]:
    """Create ``count`` kwok nodes named kwok-bench-N and wait until kwok marks them Ready."""
    names = [f"{BENCH_NODE_PREFIX}{i}" for i in range(1, count + 1)]
    for name in names:
        try:
            core.create_node(kwok_node(name))
        except ApiException as exc:
            if exc.status != 409:
                raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = 0
        for name in names:
            node = core.read_node(name)
            if any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or [])):
                ready += 1
        if ready == len(names):
            return names
        time.sleep(0.5)
    raise RuntimeError(f"kwok did not mark {names} Ready within {timeout:.0f}s")


def delete_bench_nodes(core: client.CoreV1Api) -> None:
    for node in core.list_node(label_selector=f"{BENCH_LABEL}=true").items:
        if node.metadata.name.startswith(BENCH_NODE_PREFIX):
            try:
                core.delete_node(node.metadata.name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def create_namespace(core: client.CoreV1Api, name: str) -> None:
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": name, "labels": {BENCH_LABEL: "true"}}})


def delete_namespace(core: client.CoreV1Api, name: str, *, wait: float = 0) -> bool:
    """Delete a namespace; with ``wait``, poll until it is gone. True if gone (or not waited)."""
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return True
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        time.sleep(1)
    return wait == 0
