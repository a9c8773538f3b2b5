"""Analysis under load: N concurrent AnalysisRuns measured by one analysis controller process.

Run by hand against the local cluster (``make cluster-up`` first):

    .venv/bin/python bench/analysis_load.py               # N=1000 runs
    .venv/bin/python bench/analysis_load.py --quick       # N=100
    .venv/bin/python bench/analysis_load.py --runs 300 --interval 10s --count 6

In namespace ``bench-analysis`` (created, and deleted on exit), with one
``tidegate controller --components analysis --namespace bench-analysis`` process
and an in-process test exporter (e2e/exporter.py) that the harness Prometheus
scrapes: N AnalysisRuns are created at once, each with one Prometheus metric (the
seed's success-rate query on the exporter's series, ``result[0] >= 0.99``,
interval 10s, count 6: one minute of measuring). Then it prints:

* measurement lag, p50/p99/max: due time -> the measurement's ``finishedAt``, where
  due = previous ``finishedAt`` + interval (steady state; the first measurement
  of each run is reported apart, due = our create call's answer, as it includes
  the creation burst), and due -> the moment our own watch saw the status write
  that carried the measurement (what a Rollout waiting on the run sees);
* the controller's CPU seconds and peak RSS (psutil), its ``analysis_run_reconcile``
  histogram (reconcile duration) and reconcile errors;
* an evaluator micro-benchmark: evaluations per second of ``result[0] >= 0.99``
  (bench/evaluator_bench.py's functions);
* each figure's ratio against the target (p99 lag < 1 s). No assertions.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import platform
import subprocess
import sys
import threading
import time
import urllib.error
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
from kubernetes import client  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from bench import _common as common  # noqa: E402
from bench import evaluator_bench  # noqa: E402
from common.api import parse_duration  # noqa: E402
from common.kubeclient import new_api_client  # noqa: E402
from e2e.analysis_kit import (  # noqa: E402
    analysis_run,
    prometheus_metric,
    scraped_exporter,
    success_rate_query,
    wait_for_data,
)

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "analysisruns"
NAMESPACE = "bench-analysis"
SERVICE = "bench-analysis"
TARGET_P99_SECONDS = 1.0
RECONCILE_METRIC = "analysis_run_reconcile"
ERROR_METRIC = "analysis_run_reconcile_error_total"
CREATE_THREADS = 16
INSTANCE_ID_LABEL = "argo-rollouts.argoproj.io/controller-instance-id"
EVALUATIONS = 100_000
OUT = common.REPO / "bench" / "out"


class BenchError(RuntimeError):
    """The bench could not run (cluster, controller); the message says what to look at."""


# --- the controller under test ------------------------------------------------------------------

class Controller:
    """``tidegate controller --components analysis`` for the bench namespace; log under bench/out/."""

    def __init__(self, log_path: Path, workers: int | None, profile: Path | None,
                 pythonpath: str | None = None) -> None:
        self.port = common.free_port()
        self.log_path = log_path
        command = [str(common.TIDEGATE), "controller", "--components", "analysis",
                   "--namespace", NAMESPACE, "--metrics-port", str(self.port), "--metrics-local",
                   "--instance-id", NAMESPACE]
        if profile is not None:
            # cProfile of the whole process, written at exit (py-spy is not installed)
            command = [sys.executable, "-m", "cProfile", "-o", str(profile),
                       "-m", "cli.main", *command[1:]]
        if workers:
            command += ["--analysis-workers", str(workers)]
        self.proc, self.log = common.launch_controller(command, log_path, pythonpath)
        self.url = f"http://127.0.0.1:{self.port}/metrics"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"controller exited with {self.proc.returncode}; see {self.log_path}")
            try:
                common.scrape(self.url, [RECONCILE_METRIC + "_count"])
                if "analysis controller started" in self.log_path.read_text(errors="replace"):
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        raise BenchError(f"the controller did not start in {timeout:.0f}s; see {self.log_path}")

    def reconcile_histogram(self) -> dict[str, float]:
        """The reconcile histogram summed over every run: count, sum and cumulative buckets."""
        names = [RECONCILE_METRIC + s for s in ("_count", "_sum", "_bucket")] + [ERROR_METRIC]
        found = common.scrape(self.url, names)
        total: dict[str, float] = defaultdict(float)
        for name, samples in found.items():
            for labels, value in samples.items():
                le = dict(labels).get("le")
                total[f"{name}{'{le=' + le + '}' if le else ''}"] += value
        return dict(total)

    def stop(self) -> None:
        if self.proc.poll() is None:
            # SIGINT lets cProfile write its file; kopf stops on it like on SIGTERM
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


# --- what the watch sees ----------------------------------------------------------------------

class Seen:
    """Per run: wall-clock time our watch first saw k completed measurements, for each k."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first_seen: dict[str, dict[int, float]] = defaultdict(dict)
        self.offset = time.time() - time.monotonic()  # monotonic arrival -> wall clock

    def on_event(self, kind: str, obj: Mapping[str, Any], arrived: float) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        done = 0
        for result in (obj.get("status") or {}).get("metricResults") or []:
            done = sum(1 for m in result.get("measurements") or [] if m.get("finishedAt"))
        with self.lock:
            seen = self.first_seen[name]
            for k in range(1, done + 1):
                seen.setdefault(k, arrived + self.offset)


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- the load ------------------------------------------------------------------------------------

def run_manifest(index: int, *, address: str, interval: str, count: int) -> dict[str, Any]:
    metric = prometheus_metric("success-rate", address=address, query=success_rate_query("30s"),
                               interval=interval, count=count)
    run = analysis_run(f"load-{index:05d}", [metric], args=[{"name": "service-name", "value": SERVICE}])
    # Sharded to our controller only: the shared cluster may run other, cluster-wide controllers.
    run["metadata"]["labels"] = {INSTANCE_ID_LABEL: NAMESPACE}
    return run


def create_runs(custom: client.CustomObjectsApi, n: int, *, address: str, interval: str,
                count: int) -> dict[str, float]:
    """Create the runs from a few threads; return each run's create-answer wall time."""
    created: dict[str, float] = {}

    def create(index: int) -> None:
        body = run_manifest(index, address=address, interval=interval, count=count)
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
        created[body["metadata"]["name"]] = time.time()

    with concurrent.futures.ThreadPoolExecutor(CREATE_THREADS) as pool:
        list(pool.map(create, range(n)))
    return created


def wait_done(custom: client.CustomObjectsApi, n: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
        done = sum(1 for r in items if (r.get("status") or {}).get("phase") in
                   ("Successful", "Failed", "Error", "Inconclusive"))
        print(f"  {done}/{n} runs completed", flush=True)
        if done >= n:
            return items
        time.sleep(5)
    return items


def lags(items: list[dict[str, Any]], created: Mapping[str, float], seen: Seen,
         interval: float) -> dict[str, list[float]]:
    """Lag lists: steady-state (finishedAt, watch) and first measurement (finishedAt, watch)."""
    out: dict[str, list[float]] = defaultdict(list)
    for run in items:
        name = run["metadata"]["name"]
        for result in (run.get("status") or {}).get("metricResults") or []:
            done = [m for m in result.get("measurements") or [] if m.get("finishedAt")]
            finished = [ts(m["finishedAt"]) for m in done]
            for k, end in enumerate(finished):
                due = created[name] if k == 0 else finished[k - 1] + interval
                kind = "first" if k == 0 else "steady"
                out[f"{kind}_recorded"].append(end - due)
                # where the lag goes: waiting to be reconciled vs the measurement itself
                out[f"{kind}_started"].append(ts(done[k]["startedAt"]) - due)
                watched = seen.first_seen.get(name, {}).get(k + 1)
                if watched is not None:
                    out[f"{kind}_watched"].append(watched - due)
    return out


def delete_namespace(core: client.CoreV1Api) -> None:
    if not common.delete_namespace(core, NAMESPACE, wait=120):
        print(f"warning: namespace {NAMESPACE} still terminating", file=sys.stderr)


# --- report ---------------------------------------------------------------------------------

def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:8.0f} ms"


def report(result: dict[str, Any]) -> None:
    print()
    print(f"== analysis load: {result['runs']} runs, interval {result['interval']}, count {result['count']} ==")
    print(f"machine: {result['machine']}")
    print(f"runs ended: {result['phases']}")
    print(f"{'measurement lag':44} {'n':>6} {'p50':>11} {'p99':>11} {'max':>11}  p99/target")
    for key, label in (("steady_recorded", "steady: due -> finishedAt"),
                       ("steady_watched", "steady: due -> status write seen by a watch"),
                       ("steady_started", "steady: due -> measurement startedAt"),
                       ("first_recorded", "first: create answer -> finishedAt"),
                       ("first_started", "first: create answer -> startedAt"),
                       ("first_watched", "first: create answer -> seen by a watch")):
        s = result["lag"].get(key) or {}
        p99 = s.get("p99")
        ratio = "-" if p99 is None else f"{p99 / TARGET_P99_SECONDS:.2f}x"
        print(f"{label:44} {s.get('count', 0):>6} {fmt(s.get('p50'))} {fmt(p99)} {fmt(s.get('max'))}  {ratio}")
    c = result["controller"]
    print(f"controller: CPU {c['cpu_seconds']:.1f} s over {c['wall_seconds']:.0f} s "
          f"({c['cpu_seconds'] / c['wall_seconds']:.2f} cores), peak RSS {c['peak_rss_mib']:.0f} MiB")
    h = result["reconcile"]
    n = h.get(RECONCILE_METRIC + "_count", 0)
    if n:
        print(f"reconciles: {n:.0f}, mean {h[RECONCILE_METRIC + '_sum'] / n * 1000:.0f} ms, errors "
              f"{h.get(ERROR_METRIC, 0):.0f}; share <= bucket: " + ", ".join(
                  f"{le}s {h[f'{RECONCILE_METRIC}_bucket{{le={le}}}'] / n:.0%}"
                  for le in ("0.01", "0.15", "0.25", "0.5", "1.0") if f"{RECONCILE_METRIC}_bucket{{le={le}}}" in h))
    e = result["evaluator"]
    print(f"evaluator {evaluator_bench.SEED_CONDITION!r}: compiled once {e['compiled_once']:,.0f}/s, "
          f"cached text {e['cached_text']:,.0f}/s; needed at this load "
          f"{result['runs'] / parse_duration(result['interval']).total_seconds():,.0f}/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 runs")
    parser.add_argument("--interval", default="10s")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--workers", type=int, default=None, help="--analysis-workers of the controller")
    parser.add_argument("--profile", action="store_true", help="run the controller under cProfile")
    parser.add_argument("--controller-pythonpath", default=None,
                        help="PYTHONPATH for the controller (A/B of a patched copy of analysis/)")
    parser.add_argument("--tag", default="", help="suffix of the JSON output file")
    args = parser.parse_args(argv)
    n = 100 if args.quick else args.runs
    interval = parse_duration(args.interval).total_seconds()

    env = common.load_cluster_env()
    prometheus_url, targets = env["PROMETHEUS_URL"], env["TIDEGATE_PROMETHEUS_TARGETS"]
    api = new_api_client(pool_size=CREATE_THREADS + 4)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    OUT.mkdir(exist_ok=True)
    profile = OUT / "analysis_load.prof" if args.profile else None

    delete_namespace(core)
    common.create_namespace(core, NAMESPACE)
    controller: Controller | None = None
    watcher: common.Watcher | None = None
    try:
        with scraped_exporter(prometheus_url, targets, "bench-analysis") as exporter:
            exporter.exporter.configure(SERVICE, {"rate": 50, "error_rate": 0.0})
            wait_for_data(prometheus_url, success_rate_query("30s").replace("{{args.service-name}}", SERVICE))
            controller = Controller(OUT / "analysis_load-controller.log", args.workers, profile,
                                    args.controller_pythonpath)
            controller.wait_ready()
            sampler = common.ProcessSampler(controller.proc.pid)
            sampler.start()
            seen = Seen()
            watcher = common.Watcher(api, group=GROUP, version=VERSION, namespace=NAMESPACE, plural=PLURAL,
                                     on_event=seen.on_event)
            watcher.start()
            watcher.synced.wait(30)
            cpu0, t0 = sampler.cpu_seconds(), time.monotonic()
            print(f"creating {n} AnalysisRuns in {NAMESPACE} ...", flush=True)
            created = create_runs(custom, n, address=prometheus_url, interval=args.interval, count=args.count)
            print(f"  created in {time.monotonic() - t0:.1f} s", flush=True)
            items = wait_done(custom, n, timeout=interval * args.count + 180)
            time.sleep(2)  # the last status writes reach our watch
            cpu1, t1 = sampler.cpu_seconds(), time.monotonic()
            histogram = controller.reconcile_histogram()
            sampler.stopping.set()
        phases: dict[str, int] = defaultdict(int)
        for item in items:
            phases[str((item.get("status") or {}).get("phase"))] += 1
        lag_lists = lags(items, created, seen, interval)
        result = {
            "runs": n, "interval": args.interval, "count": args.count,
            "workers": args.workers, "pythonpath": args.controller_pythonpath,
            "machine": f"{platform.node()} {psutil.cpu_count()} cores (shared), "
                       f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}",
            "phases": dict(phases),
            "lag": {key: common.summary(values) for key, values in lag_lists.items()},
            "controller": {"cpu_seconds": cpu1 - cpu0, "wall_seconds": t1 - t0,
                           "peak_rss_mib": sampler.peak_rss(t0, t1) / 2**20},
            "reconcile": histogram,
            "evaluator": {
                "compiled_once": evaluator_bench.per_second(evaluator_bench.compiled_once, EVALUATIONS),
                "cached_text": evaluator_bench.per_second(evaluator_bench.cached_text, EVALUATIONS),
            },
        }
        report(result)
        (OUT / f"analysis_load-{n}{'-' + args.tag if args.tag else ''}.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    except (BenchError, ApiException) as exc:
        print(f"analysis_load: {exc}", file=sys.stderr)
        return 1
    finally:
        if watcher is not None:
            watcher.stopping.set()
        if controller is not None:
            controller.stop()
            if profile is not None and profile.exists():
                print(f"cProfile written to {profile} (python -m pstats {profile})")
        delete_namespace(core)
    return 0


if __name__ == "__main__":
    sys.exit(main())
