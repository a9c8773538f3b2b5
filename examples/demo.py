"""`make demo`: an ML model's canary, promoted and then aborted, on the local cluster.

What it does, in order (the cluster itself is started by `make demo` first):

1. starts the test exporter that plays the model's stable and canary servers and
   registers it with the harness's Prometheus;
2. starts `tidegate controller` (both components) in the background, its log in
   `.cluster/logs/tidegate-controller.log`, its pid beside the cluster's (so
   `make cluster-down` stops it);
3. applies examples/ml-canary/ (the seed Rollout with short pauses, its Services,
   VirtualService and AnalysisTemplates) in namespace `ml-serving`;
4. act 1: rolls out `inference:v3` with a healthy canary, printing every change of
   step, weight and analysis until the Rollout is Healthy;
5. act 2: rolls out `inference:v4` whose canary fails 5% of requests; the
   success-rate analysis fails and Tidegate aborts back to v3.

Istio's data plane is not here: a small stand-in (``MeshStandIn``) reads the
VirtualService weights and sets the exporter's per-service request rates in
those proportions, as Envoy would split real traffic. It stands in for the mesh
only; every decision is Tidegate's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client, config

from e2e.exporter import start_exporter

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / ".cluster"
NAMESPACE = "ml-serving"
ROLLOUT = "inference-rollout"
TOTAL_RPS = 50.0


def load_env() -> dict[str, str]:
    env = dict(os.environ)
    for line in (CLUSTER / "env").read_text().splitlines():
        if "=" in line and not line.startswith(("export", "#")):
            key, _, value = line.partition("=")
            env[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    return env


def kubectl(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"demo: kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


class MeshStandIn(threading.Thread):
    """Sets the exporter's request rates to follow the VirtualService weights (mesh stand-in)."""

    def __init__(self, custom: Any, exporter_url: str) -> None:
        super().__init__(daemon=True)
        self.custom = custom
        self.url = exporter_url
        self.stop = threading.Event()
        self.weights = (100, 0)

    def control(self, service: str, **settings: float) -> None:
        body = json.dumps({"service": service, **settings}).encode()
        request = urllib.request.Request(f"{self.url}/control", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).read()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                vs = self.custom.get_namespaced_custom_object(
                    "networking.istio.io", "v1beta1", NAMESPACE, "virtualservices", "inference-vsvc")
                route = vs["spec"]["http"][0]["route"]
                weights = (int(route[0].get("weight", 0)), int(route[1].get("weight", 0)))
                if weights != self.weights:
                    self.weights = weights
                self.control("inference-stable", rate=TOTAL_RPS * weights[0] / 100)
                # a canary with no traffic still answers health probes: keep a trickle
                self.control("inference-canary", rate=max(TOTAL_RPS * weights[1] / 100, 1.0))
            except Exception as exc:  # noqa: BLE001 - the stand-in must not stop the demo
                print(f"  (mesh stand-in: {exc})", file=sys.stderr)
            self.stop.wait(0.5)


def start_controller(env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (CLUSTER / "logs" / "tidegate-controller.log").open("ab")
    proc = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "tidegate"), "controller", "--metrics-port", "0"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
    )
    (CLUSTER / "pids" / "tidegate-controller").write_text(str(proc.pid))
    return proc


def describe(custom: Any) -> tuple[Any, ...]:
    ro = custom.get_namespaced_custom_object("argoproj.io", "v1alpha1", NAMESPACE, "rollouts", ROLLOUT)
    status = ro.get("status") or {}
    runs = custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", NAMESPACE, "analysisruns")["items"]
    current = sorted(runs, key=lambda r: r["metadata"]["creationTimestamp"])[-1:] if runs else []
    run_text = ""
    for run in current:
        results = (run.get("status") or {}).get("metricResults") or []
        values = ", ".join(
            f"{m['name']}={(m.get('measurements') or [{}])[-1].get('value', '?')}" for m in results
        )
        run_text = f"analysis {run['metadata']['name'][-12:]} {(run.get('status') or {}).get('phase', 'Pending')} {values}"
    weights = ((status.get("canary") or {}).get("weights") or {})
    steps = len(((ro["spec"].get("strategy") or {}).get("canary") or {}).get("steps") or [])
    return (steps,
        status.get("phase"), status.get("currentStepIndex"),
        (weights.get("canary") or {}).get("weight"), status.get("message") or "", run_text,
    )


def vs_weights(custom: Any) -> tuple[int, int]:
    """(stable, canary) weights of the demo's VirtualService as the API server has them now."""
    vs = custom.get_namespaced_custom_object(
        "networking.istio.io", "v1beta1", NAMESPACE, "virtualservices", "inference-vsvc")
    route = vs["spec"]["http"][0]["route"]
    return int(route[0].get("weight", 0)), int(route[1].get("weight", 0))


def watch_until_done(custom: Any, started: float, timeout: float = 240) -> tuple[Any, ...]:
    last: tuple[Any, ...] = ()
    while time.monotonic() - started < timeout:
        state = describe(custom)
        # The VirtualService is read with the Rollout, not from the stand-in's 0.5 s poll,
        # so a line shows the weights the controller wrote by then, and a change prints.
        state = (*state, vs_weights(custom))
        if state != last:
            steps, phase, step, weight, message, run_text, (stable, canary) = state
            print(f"  {time.monotonic() - started:6.1f}s  {phase or '-':<11} step {step!s:>2}/{steps}  "
                  f"canary weight {weight!s:>3}%  VS {stable}/{canary}  {message}  {run_text}")
            last = state
        if state[1] in ("Healthy", "Degraded") and time.monotonic() - started > 3:
            return state
        time.sleep(0.5)
    raise SystemExit("demo: the rollout did not finish in time; see .cluster/logs/tidegate-controller.log")


def set_image(custom: Any, image: str) -> None:
    custom.patch_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "rollouts", ROLLOUT,
        {"spec": {"template": {"spec": {"containers": [{"name": "inference", "image": image,
                                                         "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}}},
    )


def main() -> int:
    env = load_env()
    config.load_kube_config(config_file=env["KUBECONFIG"])
    custom = client.CustomObjectsApi()

    exporter = start_exporter(0, services=("inference-stable", "inference-canary"))
    target = Path(env["TIDEGATE_PROMETHEUS_TARGETS"]) / "demo.json"
    target.write_text(json.dumps([{"targets": [exporter.url.split("//")[1]], "labels": {"job": "demo"}}]))
    env["TIDEGATE_PROMETHEUS_ADDRESS"] = env["PROMETHEUS_URL"]
    print(f"exporter (plays the model servers) at {exporter.url}, scraped by {env['PROMETHEUS_URL']}")

    # Start from a clean namespace so the demo can be run again and again.
    subprocess.run(["kubectl", "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true",
                    "--timeout=60s"], env=env, capture_output=True, check=False)
    kubectl(env, "create", "namespace", NAMESPACE)
    controller = start_controller(env)
    print(f"tidegate controller started (pid {controller.pid}); log: .cluster/logs/tidegate-controller.log")
    kubectl(env, "apply", "-n", NAMESPACE, "-f", str(REPO / "examples" / "ml-canary"))
    mesh = MeshStandIn(custom, exporter.url)
    mesh.start()
    try:
        print("\nwaiting for the first revision (inference:v2) to become Healthy ...")
        watch_until_done(custom, time.monotonic())

        print("\nact 1: roll out inference:v3, a healthy model")
        set_image(custom, "inference:v3")
        state = watch_until_done(custom, time.monotonic())
        print(f"=> {state[1]}: v3 is the stable revision\n")

        print("act 2: roll out inference:v4, whose canary fails 5% of requests")
        mesh.control("inference-canary", error_rate=0.05)
        set_image(custom, "inference:v4")
        state = watch_until_done(custom, time.monotonic())
        stable, canary = vs_weights(custom)
        print(f"=> {state[1]}: {state[4]}")
        print(f"   VirtualService inference-vsvc now: stable {stable} / canary {canary}")
        print("\nExplore:  . .cluster/env; kubectl -n ml-serving get ro,rs,ar,vs; kubectl -n ml-serving get events")
        print("Stop:     make cluster-down")
        return 0 if state[1] == "Degraded" else 1
    finally:
        mesh.stop.set()
        controller.terminate()
        controller.wait(timeout=15)
        exporter.stop()
        target.unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
