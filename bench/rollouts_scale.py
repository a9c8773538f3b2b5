"""Rollouts at scale: one controller process, N concurrent canary Rollouts, DESIGN.md §5.

Run by hand against the local cluster (``make cluster-up`` first):

    .venv/bin/python bench/rollouts_scale.py --sizes 100,500,1000   # default sizes
    .venv/bin/python bench/rollouts_scale.py --quick                # N=50, for debugging

For each N, in its own namespace ``bench-rollouts-<N>-<suffix>`` (labelled
tidegate.dev/bench=true) and with one ``tidegate controller --namespace <ns>``:

1. deploy: N Rollouts (replicas 1, Istio host-level routing: two Services and one
   VirtualService each; steps setWeight 20, pause {}, setWeight 60, pause 1 s)
   created before the controller starts; wait until every one is Healthy;
2. update: a new image on all N at once; (a) = update PATCH response -> our watch
   sees the VirtualService with canary weight 20 (includes the canary ReplicaSet,
   its pod being scheduled and made Ready by kwok); wait until all are paused;
3. promote: clear the pause on all N at once (the CLI's patch); (b) = promote PATCH
   response -> our watch sees the VirtualService with canary weight 60. No new pod
   is needed (ceil(1 * 60%) = 1), so (b) is the controller's pure reaction
   latency: watch delivery, queueing, reconcile, the VS write, watch delivery back;
4. complete: wait until all are Healthy on the new revision.

Per phase: controller CPU seconds (psutil user+system delta), peak RSS (sampled
every 0.2 s), and the delta of the controller's own write counter
``tidegate_api_writes_total`` (+ Events from ``rollout_events_total``)
by kind/verb, divided by N. Prints a table with ratios to the §5 targets, writes
bench/out/rollouts_scale.json (merged by N across runs) and docs/img/rollouts_scale.png.
Everything it creates (namespaces, kwok-bench-* nodes, the controller) is removed
on exit, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import platform
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from bench import _common as common  # noqa: E402
from common.kubeclient import new_api_client  # noqa: E402
from rollouts.kube.actions import promote_patches  # noqa: E402

GROUP, VERSION = "argoproj.io", "v1alpha1"
ISTIO, ISTIO_VERSION = "networking.istio.io", "v1beta1"
IMAGE_V1, IMAGE_V2 = "registry.local/model:v1", "registry.local/model:v2"
WRITES_METRIC = "tidegate_api_writes_total"
EVENTS_METRIC = "rollout_events_total"
RECONCILE_COUNT_METRIC = "rollout_reconcile_count"
TARGET_P99_SECONDS = 1.0
TARGET_RSS_MB = 300.0
TARGET_WRITES_PER_STEP = 3.0
CLIENT_THREADS = 16
PROMOTE_THREADS = 8
OUT_DIR = common.REPO / "bench" / "out"
JSON_PATH = OUT_DIR / "rollouts_scale.json"
PLOT_PATH = common.REPO / "docs" / "img" / "rollouts_scale.png"
STEP_PAUSED_FOREVER = 1  # index of `pause {}`
STEP_AFTER_WEIGHT_60 = 3  # index of the second `pause {}`: the setWeight 60 step is recorded
DEFAULT_STEADY_RATE = 50.0  # promotes per second in the steady phase
MB = 1024 * 1024
INSTANCE_ID_LABEL = "argo-rollouts.argoproj.io/controller-instance-id"


class BenchError(RuntimeError):
    pass


# --- manifests -----------------------------------------------------------------------------------

def rollout_manifest(name: str, instance_id: str) -> dict[str, Any]:
    labels = {"app": name}
    # The instance-id label shards these Rollouts to our controller only: the shared cluster
    # may run other, cluster-wide controllers (e.g. `make demo`) that would otherwise race ours.
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Rollout",
        "metadata": {"name": name, "labels": {common.BENCH_LABEL: "true", INSTANCE_ID_LABEL: instance_id}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "model", "image": IMAGE_V1}]}},
            "strategy": {"canary": {
                "canaryService": f"{name}-canary",
                "stableService": f"{name}-stable",
                "scaleDownDelaySeconds": 2,
                "trafficRouting": {"istio": {"virtualService": {"name": f"{name}-vsvc", "routes": ["primary"]}}},
                "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}},
                          {"setWeight": 80}, {"pause": {"duration": 1}}],
            }},
        },
    }


def service_manifest(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {common.BENCH_LABEL: "true"}},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080, "name": "http"}]},
    }


def virtual_service_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{ISTIO}/{ISTIO_VERSION}", "kind": "VirtualService",
        "metadata": {"name": f"{name}-vsvc", "labels": {common.BENCH_LABEL: "true"}},
        "spec": {
            "hosts": [f"{name}.example.com"], "gateways": ["mesh"],
            "http": [{"name": "primary", "route": [
                {"destination": {"host": f"{name}-stable"}, "weight": 100},
                {"destination": {"host": f"{name}-canary"}, "weight": 0},
            ]}],
        },
    }


# --- what the watches saw ------------------------------------------------------------------------

class Observed:
    """Rollout statuses and VirtualService canary weights as our watches delivered them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rollouts: dict[str, dict[str, Any]] = {}
        self.rollout_step_seen: dict[str, list[tuple[int, float]]] = {}
        self.weights: dict[str, list[tuple[int, float, str]]] = {}  # rollout -> (weight, arrived, rv)
        self.timeline: list[dict[str, Any]] = []  # every event, for bench/out/timeline-<N>.jsonl

    def on_rollout(self, kind: str, obj: Mapping[str, Any], arrived: float) -> None:
        name = str(obj["metadata"]["name"])
        with self.lock:
            if kind == "DELETED":
                self.rollouts.pop(name, None)
                return
            self.rollouts[name] = dict(obj)
            status = obj.get("status") or {}
            self.timeline.append({"t": arrived, "kind": "Rollout", "name": name, "event": kind,
                                  "rv": obj["metadata"].get("resourceVersion"),
                                  "step": status.get("currentStepIndex"), "phase": status.get("phase"),
                                  "paused": bool(status.get("pauseConditions")),
                                  "controllerPause": status.get("controllerPause")})
            index = (obj.get("status") or {}).get("currentStepIndex")
            if index is not None:
                seen = self.rollout_step_seen.setdefault(name, [])
                if not seen or seen[-1][0] != index:
                    seen.append((int(index), arrived))

    def on_virtual_service(self, kind: str, obj: Mapping[str, Any], arrived: float) -> None:
        vs_name = str(obj["metadata"]["name"])
        if kind == "DELETED" or not vs_name.endswith("-vsvc"):
            return
        name = vs_name[: -len("-vsvc")]
        weight = 0
        for route in (((obj.get("spec") or {}).get("http") or [{}])[0].get("route") or []):
            if (route.get("destination") or {}).get("host") == f"{name}-canary":
                weight = int(route.get("weight") or 0)
        with self.lock:
            self.timeline.append({"t": arrived, "kind": "VirtualService", "name": name, "event": kind,
                                  "rv": obj["metadata"].get("resourceVersion"), "weight": weight})
            seen = self.weights.setdefault(name, [])
            if not seen or seen[-1][0] != weight:
                seen.append((weight, arrived, str(obj["metadata"].get("resourceVersion"))))

    def first_weight_after(self, name: str, weight: int, after: float) -> float | None:
        with self.lock:
            for value, arrived, _ in self.weights.get(name, []):
                if value == weight and arrived >= after:
                    return arrived
        return None

    def status(self, name: str) -> dict[str, Any]:
        with self.lock:
            return dict((self.rollouts.get(name) or {}).get("status") or {})

    def body(self, name: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.rollouts.get(name) or {})


def is_healthy(status: Mapping[str, Any], *, not_stable: str | None = None) -> bool:
    stable = status.get("stableRS")
    return (status.get("phase") == "Healthy" and bool(stable) and stable == status.get("currentPodHash")
            and stable != not_stable)


# --- the controller under test ------------------------------------------------------------------

class Controller:
    """One ``tidegate controller`` process for the bench namespace; log under bench/out/."""

    def __init__(self, namespace: str, log_path: Path, workers: int | None, pythonpath: str | None,
                 instance_id: str) -> None:
        self.port = common.free_port()
        self.log_path = log_path
        command = [str(common.TIDEGATE), "controller", "--namespace", namespace,
                   "--metrics-port", str(self.port), "--metrics-local", "--instance-id", instance_id]
        if workers:
            command += ["--workers", str(workers)]
        self.proc, self.log = common.launch_controller(command, log_path, pythonpath)
        self.url = f"http://127.0.0.1:{self.port}/metrics"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                common.scrape(self.url, [WRITES_METRIC])
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise BenchError(f"controller metrics endpoint did not answer in {timeout:.0f}s; see {self.log_path}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"controller exited with {self.proc.returncode}; see {self.log_path}")

    def metrics(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        return common.scrape(self.url, [WRITES_METRIC, EVENTS_METRIC, RECONCILE_COUNT_METRIC])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


# --- one phase's costs -------------------------------------------------------------------------

class PhaseMeter:
    """CPU, peak RSS and the controller's API writes between ``start`` and ``stop``."""

    def __init__(self, controller: Controller, sampler: common.ProcessSampler) -> None:
        self.controller = controller
        self.sampler = sampler

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.cpu0 = self.sampler.cpu_seconds()
        self.cluster0 = common.cluster_cpu_seconds()
        self.m0 = self.controller.metrics()

    def stop(self, n: int) -> dict[str, Any]:
        t1 = time.monotonic()
        cpu1 = self.sampler.cpu_seconds()
        cluster1 = common.cluster_cpu_seconds()
        m1 = self.controller.metrics()
        writes = common.delta(self.m0[WRITES_METRIC], m1[WRITES_METRIC])
        events = common.delta(self.m0[EVENTS_METRIC], m1[EVENTS_METRIC])
        reconciles = sum(common.delta(self.m0[RECONCILE_COUNT_METRIC], m1[RECONCILE_COUNT_METRIC]).values())
        by_reason: dict[str, float] = {}
        for labels, value in events.items():
            reason = dict(labels).get("reason", "")
            by_reason[reason] = by_reason.get(reason, 0.0) + value
        by_kind: dict[str, float] = {}
        for labels, value in writes.items():
            tags = dict(labels)
            key = f"{tags.get('kind')} {tags.get('verb')} {tags.get('status_code')}"
            by_kind[key] = by_kind.get(key, 0.0) + value
        total_writes = sum(writes.values())
        total_events = sum(events.values())
        return {
            "wall_seconds": round(t1 - self.t0, 3),
            "cpu_seconds": round(cpu1 - self.cpu0, 3),
            "cpu_ms_per_rollout": round((cpu1 - self.cpu0) * 1000 / n, 2),
            "peak_rss_mb": round(self.sampler.peak_rss(self.t0, t1) / MB, 1),
            "writes": total_writes,
            "writes_per_rollout": round(total_writes / n, 3),
            "writes_by_kind_per_rollout": {k: round(v / n, 3) for k, v in sorted(by_kind.items())},
            "events": total_events,
            "events_per_rollout": round(total_events / n, 3),
            "events_by_reason_per_rollout": {k: round(v / n, 3) for k, v in sorted(by_reason.items())},
            "reconciles_per_rollout": round(reconciles / n, 3),
            # where the machine's cores went meanwhile: the control plane shares them
            "cluster_cpu_seconds": {k: round(cluster1[k] - self.cluster0.get(k, cluster1[k]), 1)
                                    for k in sorted(cluster1)},
        }


# --- the run for one N ---------------------------------------------------------------------------

def wait_until(check: Callable[[], tuple[bool, str]], *, timeout: float, what: str,
               alive: Callable[[], None]) -> float:
    """Poll ``check`` (done, progress text) until done; returns the seconds it took."""
    started = time.monotonic()
    last_print = started
    progress = ""
    while time.monotonic() - started < timeout:
        alive()
        done, progress = check()
        if done:
            return time.monotonic() - started
        if time.monotonic() - last_print > 10:
            print(f"    ... {what}: {progress}", flush=True)
            last_print = time.monotonic()
        time.sleep(0.25)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what} ({progress})")


def run_parallel(fn: Callable[[str], Any], names: list[str], threads: int) -> dict[str, Any]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        futures = {name: pool.submit(fn, name) for name in names}
        return {name: future.result() for name, future in futures.items()}


def settle(controller: Controller, *, quiet: float = 2.0, timeout: float = 30.0) -> None:
    """Wait until the controller's write counter stops moving for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    previous = sum(controller.metrics()[WRITES_METRIC].values())
    while time.monotonic() < deadline:
        time.sleep(quiet)
        current = sum(controller.metrics()[WRITES_METRIC].values())
        if current == previous:
            return
        previous = current


def ensure_capacity(core: client.CoreV1Api, pods_needed: int) -> list[str]:
    spare = common.spare_pod_capacity(core)
    if spare >= pods_needed:
        return []
    existing = [n.metadata.name for n in core.list_node(label_selector=f"{common.BENCH_LABEL}=true").items]
    extra = math.ceil((pods_needed - spare) / common.NODE_PODS)
    print(f"  adding {extra} kwok-bench node(s): {spare} pod slots free, {pods_needed} needed", flush=True)
    return common.add_bench_nodes(core, len(existing) + extra)


def run_size(api: Any, n: int, *, workers: int | None, pythonpath: str | None,
             namespaces: list[str], tag: str, steady_rate: float = DEFAULT_STEADY_RATE) -> dict[str, Any]:
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    ns = f"bench-rollouts-{n}-{secrets.token_hex(3)}"
    namespaces.append(ns)
    common.create_namespace(core, ns)
    nodes_added = ensure_capacity(core, pods_needed=2 * n + 20)
    names = [f"r{i:04d}" for i in range(n)]
    observed = Observed()
    watchers = [
        common.Watcher(api, group=GROUP, version=VERSION, namespace=ns, plural="rollouts",
                       on_event=observed.on_rollout),
        common.Watcher(api, group=ISTIO, version=ISTIO_VERSION, namespace=ns, plural="virtualservices",
                       on_event=observed.on_virtual_service),
    ]
    for watcher in watchers:
        watcher.start()
        watcher.synced.wait(30)
    print(f"  [{n}] creating {4 * n} objects in {ns}", flush=True)

    def create(name: str) -> None:
        core.create_namespaced_service(ns, service_manifest(f"{name}-stable", name))
        core.create_namespaced_service(ns, service_manifest(f"{name}-canary", name))
        custom.create_namespaced_custom_object(ISTIO, ISTIO_VERSION, ns, "virtualservices",
                                               virtual_service_manifest(name))
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "rollouts", rollout_manifest(name, instance_id=ns))

    created_in = time.monotonic()
    run_parallel(create, names, CLIENT_THREADS)
    created_in = time.monotonic() - created_in

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    controller = Controller(ns, OUT_DIR / f"controller-{n}{tag}.log", workers, pythonpath, instance_id=ns)
    result: dict[str, Any] = {"n": n, "namespace": ns, "create_seconds": round(created_in, 1),
                              "bench_nodes_added": len(nodes_added), "workers": workers or 16}
    try:
        sampler = common.ProcessSampler(controller.proc.pid)
        sampler.start()
        started = time.monotonic()
        controller.wait_ready()

        def alive() -> None:
            controller.check_alive()
            for watcher in watchers:
                if watcher.error is not None:
                    raise BenchError(f"{watcher.name} failed: {watcher.error!r}")

        meter = PhaseMeter(controller, sampler)
        timeout = 120 + 1.0 * n

        # 1. first deploy (the meter starts when metrics answer: start-up import time excluded)
        meter.start()
        meter.cpu0 = 0.0  # the process's whole CPU so far belongs to the deploy phase
        meter.t0 = started

        def all_healthy() -> tuple[bool, str]:
            done = sum(1 for name in names if is_healthy(observed.status(name)))
            return done == n, f"{done}/{n} Healthy"

        wait_until(all_healthy, timeout=timeout, what="first deploy", alive=alive)
        settle(controller)
        result["deploy"] = meter.stop(n)
        stable_v1 = {name: str(observed.status(name).get("stableRS")) for name in names}
        print(f"  [{n}] deploy: {result['deploy']['wall_seconds']} s", flush=True)

        # 2. update all N at once; (a) update response -> VS weight 20
        meter.start()
        updated_at: dict[str, float] = {}
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "model", "image": IMAGE_V2}]}}}}

        def update(name: str) -> None:
            custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "rollouts", name, patch)
            updated_at[name] = time.monotonic()

        run_parallel(update, names, CLIENT_THREADS)

        def all_paused() -> tuple[bool, str]:
            done = 0
            for name in names:
                status = observed.status(name)
                if (status.get("currentStepIndex") == STEP_PAUSED_FOREVER and status.get("pauseConditions")
                        and observed.first_weight_after(name, 20, updated_at[name]) is not None):
                    done += 1
            return done == n, f"{done}/{n} at weight 20 and paused"

        wait_until(all_paused, timeout=timeout, what="update to pause", alive=alive)
        settle(controller)
        result["update"] = meter.stop(n)
        latency_a = [observed.first_weight_after(name, 20, updated_at[name]) - updated_at[name]  # type: ignore[operator]
                     for name in names]
        result["update_to_weight20_seconds"] = common.summary(latency_a)
        print(f"  [{n}] update -> paused: {result['update']['wall_seconds']} s", flush=True)

        # 3. promote all N at once; (b) promote response -> VS weight 60
        meter.start()
        promoted_at: dict[str, float] = {}
        sent_at: dict[str, float] = {}

        def promote(name: str) -> None:
            status_patch, spec_patch = promote_patches(observed.body(name), full=False)
            if status_patch is None:
                raise BenchError(f"{name}: promote would send nothing (status {observed.status(name)})")
            sent_at[name] = time.monotonic()
            if spec_patch:
                custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "rollouts", name, {"spec": spec_patch})
            custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "rollouts", name,
                                                         {"status": status_patch})
            promoted_at[name] = time.monotonic()

        run_parallel(promote, names, PROMOTE_THREADS)
        promote_burst = max(promoted_at.values()) - min(sent_at.values())

        def all_at_60() -> tuple[bool, str]:
            done = sum(1 for name in names if observed.first_weight_after(name, 60, promoted_at[name]) is not None)
            return done == n, f"{done}/{n} at weight 60"

        def all_step_recorded() -> tuple[bool, str]:
            done = sum(1 for name in names
                       if int(observed.status(name).get("currentStepIndex") or 0) >= STEP_AFTER_WEIGHT_60
                       or is_healthy(observed.status(name), not_stable=stable_v1[name]))
            return done == n, f"{done}/{n} recorded step {STEP_AFTER_WEIGHT_60}"

        wait_until(all_at_60, timeout=timeout, what="promote to weight 60", alive=alive)
        wait_until(all_step_recorded, timeout=timeout, what="step index recorded", alive=alive)
        beyond = sum(1 for name in names
                     if int(observed.status(name).get("currentStepIndex") or 0) > STEP_AFTER_WEIGHT_60
                     or is_healthy(observed.status(name), not_stable=stable_v1[name])
                     or observed.first_weight_after(name, 0, promoted_at[name]) is not None)
        result["promote"] = meter.stop(n)
        result["promote"]["rollouts_past_the_step_at_window_end"] = beyond
        result["promote"]["promote_burst_seconds"] = round(promote_burst, 3)
        latency_b = [observed.first_weight_after(name, 60, promoted_at[name]) - promoted_at[name]  # type: ignore[operator]
                     for name in names]
        latency_b_from_sent = [observed.first_weight_after(name, 60, promoted_at[name]) - sent_at[name]  # type: ignore[operator]
                               for name in names]
        result["promote_to_weight60_seconds"] = common.summary(latency_b)
        result["promote_sent_to_weight60_seconds"] = common.summary(latency_b_from_sent)
        print(f"  [{n}] promote -> weight 60: p50 {result['promote_to_weight60_seconds']['p50']:.3f} s "
              f"p99 {result['promote_to_weight60_seconds']['p99']:.3f} s", flush=True)

        # 3b. steady: promote again, spread at `steady_rate` per second; (c) promote -> VS 80.
        # Same definition as (b), but transitions arrive the way a fleet's do, not all in one instant.
        def paused_at_60() -> tuple[bool, str]:
            done = sum(1 for name in names
                       if int(observed.status(name).get("currentStepIndex") or 0) == STEP_AFTER_WEIGHT_60
                       and observed.status(name).get("pauseConditions"))
            return done == n, f"{done}/{n} paused at step {STEP_AFTER_WEIGHT_60}"

        wait_until(paused_at_60, timeout=timeout, what="pause at weight 60", alive=alive)
        settle(controller)
        meter.start()
        steady_at: dict[str, float] = {}

        def promote_again(name: str) -> None:
            status_patch, _ = promote_patches(observed.body(name), full=False)
            custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "rollouts", name,
                                                         {"status": status_patch})
            steady_at[name] = time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(PROMOTE_THREADS) as pool:
            start = time.monotonic()
            futures = []
            for i, name in enumerate(names):
                delay = start + i / steady_rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(promote_again, name))
            for future in futures:
                future.result()

        def all_at_80() -> tuple[bool, str]:
            done = sum(1 for name in names if observed.first_weight_after(name, 80, steady_at[name]) is not None)
            return done == n, f"{done}/{n} at weight 80"

        wait_until(all_at_80, timeout=timeout, what="steady promote to weight 80", alive=alive)
        result["steady"] = meter.stop(n)
        result["steady_rate_per_second"] = steady_rate
        latency_c = [observed.first_weight_after(name, 80, steady_at[name]) - steady_at[name]  # type: ignore[operator]
                     for name in names]
        result["steady_promote_to_weight80_seconds"] = common.summary(latency_c)
        print(f"  [{n}] steady promote ({steady_rate:g}/s) -> weight 80: "
              f"p50 {result['steady_promote_to_weight80_seconds']['p50']:.3f} s "
              f"p99 {result['steady_promote_to_weight80_seconds']['p99']:.3f} s", flush=True)

        # 4. the rest of the update: pause 1 s, full promotion, scale-down of the old revision
        meter.start()

        def all_done() -> tuple[bool, str]:
            done = sum(1 for name in names if is_healthy(observed.status(name), not_stable=stable_v1[name]))
            return done == n, f"{done}/{n} Healthy on the new revision"

        wait_until(all_done, timeout=timeout, what="completion", alive=alive)
        settle(controller)
        result["complete"] = meter.stop(n)
        result["peak_rss_mb"] = round(max(rss for _, rss in sampler.samples) / MB, 1)
        result["controller_cpu_seconds_total"] = round(sampler.cpu_seconds(), 1)
        sampler.stopping.set()
    finally:
        controller.stop()
        for watcher in watchers:
            watcher.stopping.set()
        with (OUT_DIR / f"timeline-{n}{tag}.jsonl").open("w") as out:
            for entry in observed.timeline:
                out.write(json.dumps(entry) + "\n")
    return result


# --- report --------------------------------------------------------------------------------------

def ratio_line(label: str, value: float | None, target: float, unit: str) -> str:
    if value is None:
        return f"  {label:<34} n/a"
    return f"  {label:<34} {value:8.3f} {unit:<3} (target {target:g} {unit}, ratio {value / target:.2f})"


def print_report(result: Mapping[str, Any]) -> None:
    n = result["n"]
    b = result["promote_to_weight60_seconds"]
    a = result["update_to_weight20_seconds"]
    promote = result["promote"]
    print(f"\n=== N = {n} Rollouts, one controller ({result['workers']} workers) ===")
    print(ratio_line("reaction p50 (promote -> VS 60)", b["p50"], TARGET_P99_SECONDS, "s"))
    print(ratio_line("reaction p99 (promote -> VS 60)", b["p99"], TARGET_P99_SECONDS, "s"))
    c = result.get("steady_promote_to_weight80_seconds")
    if c:
        rate = result.get("steady_rate_per_second")
        print(ratio_line(f"steady p50 ({rate:g}/s -> VS 80)", c["p50"], TARGET_P99_SECONDS, "s"))
        print(ratio_line(f"steady p99 ({rate:g}/s -> VS 80)", c["p99"], TARGET_P99_SECONDS, "s"))
    print(ratio_line("peak RSS (whole run)", result["peak_rss_mb"], TARGET_RSS_MB, "MB"))
    print(ratio_line("API writes per rollout, promote", promote["writes_per_rollout"], TARGET_WRITES_PER_STEP, ""))
    print(f"  {'update -> VS 20 (incl. pod Ready)':<34} p50 {a['p50']:.3f} s  p99 {a['p99']:.3f} s")
    print(f"  {'phase':<10}{'wall s':>9}{'cpu s':>9}{'cpu ms/ro':>11}{'RSS MB':>9}{'writes/ro':>11}"
          f"{'events/ro':>11}{'reconc/ro':>11}")
    for phase in ("deploy", "update", "promote", "steady", "complete"):
        if phase not in result:
            continue
        p = result[phase]
        print(f"  {phase:<10}{p['wall_seconds']:>9.1f}{p['cpu_seconds']:>9.1f}{p['cpu_ms_per_rollout']:>11.1f}"
              f"{p['peak_rss_mb']:>9.1f}{p['writes_per_rollout']:>11.2f}{p['events_per_rollout']:>11.2f}"
              f"{p['reconciles_per_rollout']:>11.2f}")
    for phase in ("promote", "steady"):
        if phase in result:
            p = result[phase]
            print(f"  {phase}: controller {p['cpu_seconds']:.1f} CPU s in {p['wall_seconds']:.1f} s; "
                  f"control plane CPU s: {p.get('cluster_cpu_seconds')}")
    print(f"  promote writes per rollout by kind: {promote['writes_by_kind_per_rollout']}")
    print(f"  promote Events per rollout by reason: {promote['events_by_reason_per_rollout']}")
    print(f"  rollouts already past the step when the promote window closed: "
          f"{promote['rollouts_past_the_step_at_window_end']}/{n}", flush=True)


def save(results: list[dict[str, Any]], meta: dict[str, Any], json_path: Path = JSON_PATH) -> dict[str, Any]:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    if json_path.exists():
        try:
            previous = json.loads(json_path.read_text())
        except json.JSONDecodeError:
            previous = {}
    by_n = {str(r["n"]): r for r in previous.get("results", [])}
    for result in results:
        by_n[str(result["n"])] = {**result, "run": meta}
    merged = {"targets": {"p99_seconds": TARGET_P99_SECONDS, "rss_mb": TARGET_RSS_MB,
                          "writes_per_step": TARGET_WRITES_PER_STEP},
              "results": sorted(by_n.values(), key=lambda r: int(r["n"]))}
    json_path.write_text(json.dumps(merged, indent=2, sort_keys=True))
    return merged


def plot(merged: Mapping[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = merged["results"]
    if not results:
        return
    sizes = [r["n"] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(sizes, [r["promote_to_weight60_seconds"]["p50"] for r in results], "o-", label="promote -> VS 60, p50")
    left.plot(sizes, [r["promote_to_weight60_seconds"]["p99"] for r in results], "s-", label="promote -> VS 60, p99")
    left.plot(sizes, [r["update_to_weight20_seconds"]["p99"] for r in results], "^--", alpha=0.6,
              label="update -> VS 20 (incl. pod Ready), p99")
    left.axhline(TARGET_P99_SECONDS, color="red", linestyle=":", label="target p99 1 s")
    left.set_xlabel("concurrent Rollouts (N)")
    left.set_ylabel("seconds")
    left.set_title("Reaction latency")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    right.plot(sizes, [r["peak_rss_mb"] for r in results], "o-", label="controller peak RSS")
    right.axhline(TARGET_RSS_MB, color="red", linestyle=":", label="target 300 MB")
    right.set_xlabel("concurrent Rollouts (N)")
    right.set_ylabel("MB")
    right.set_title("Controller memory")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle("Tidegate rollouts at scale (one controller, local kwok cluster, 2 shared cores)")
    fig.tight_layout()
    PLOT_PATH.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT_PATH, dpi=110)


# --- main ------------------------------------------------------------------------------------------

def cleanup(api: Any, namespaces: list[str], *, wait: float) -> None:
    core = client.CoreV1Api(api)
    for ns in namespaces:
        try:
            gone = common.delete_namespace(core, ns, wait=wait)
            if not gone:
                print(f"  namespace {ns} still terminating after {wait:.0f}s", flush=True)
        except ApiException as exc:
            print(f"  could not delete namespace {ns}: {exc.reason}", flush=True)
    try:
        common.delete_bench_nodes(core)
    except ApiException as exc:
        print(f"  could not delete kwok-bench nodes: {exc.reason}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,500,1000", help="comma-separated N values")
    parser.add_argument("--quick", action="store_true", help="N=50 only (debugging)")
    parser.add_argument("--workers", type=int, default=None, help="pass --workers to the controller")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--steady-rate", type=float, default=DEFAULT_STEADY_RATE,
                        help="promotes per second in the steady phase (c)")
    parser.add_argument("--controller-pythonpath", default=None,
                        help="PYTHONPATH for the controller (A/B a proposal from a scratch copy; "
                             "results then go to rollouts_scale-<tag>.json, not the main JSON)")
    parser.add_argument("--tag", default="", help="suffix for A/B runs' output files")
    args = parser.parse_args(argv)
    sizes = [50] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]

    common.load_cluster_env()
    api = new_api_client(pool_size=CLIENT_THREADS * 2)

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    meta = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "host": platform.node(),
            "cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.REPO,
                                  capture_output=True, text=True, check=False).stdout.strip()}
    results: list[dict[str, Any]] = []
    namespaces: list[str] = []
    status = 0
    try:
        for n in sizes:
            print(f"N = {n}", flush=True)
            try:
                result = run_size(api, n, workers=args.workers, pythonpath=args.controller_pythonpath,
                                  namespaces=namespaces, tag=f"-{args.tag}" if args.tag else "",
                                  steady_rate=args.steady_rate)
            finally:
                cleanup(api, namespaces, wait=240)
                namespaces.clear()
            print_report(result)
            results.append(result)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        status = 130
    finally:
        cleanup(api, namespaces, wait=0)
        if results:
            ab_run = bool(args.tag or args.controller_pythonpath)
            json_path = OUT_DIR / f"rollouts_scale-{args.tag or 'ab'}.json" if ab_run else JSON_PATH
            meta["controller_pythonpath"] = args.controller_pythonpath
            merged = save(results, meta, json_path)
            if not (args.no_plot or ab_run):
                plot(merged)
            print(f"\nwrote {json_path.relative_to(common.REPO)}"
                  + ("" if args.no_plot or ab_run else f" and {PLOT_PATH.relative_to(common.REPO)}"))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
