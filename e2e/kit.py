"""Building blocks for rollout e2e tests: manifests, a controller process, waiters.

Used by e2e/test_rollouts_*.py, and by the sync module's e2e/test_gitops_*.py
(``GitopsController``, ``run_git``, ``ApplicationWatch``; e2e/conftest.py's
``gitops_controller`` fixture). Everything here talks to the real local cluster
(never a mock): manifests are created with the kubernetes client, the controller
is the real ``tidegate controller`` process, watched through its log file.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from e2e.conftest import REPO, wait_until

GROUP, VERSION = "argoproj.io", "v1alpha1"
APPLICATIONS = "applications"
ISTIO = "networking.istio.io"
HASH_LABEL = "rollouts-pod-template-hash"
GITOPS_READY = "gitops controller started"
# Commits made by the tests: a fixed identity, no system or user git config.
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@tidegate.dev",
                "GIT_COMMITTER_NAME": "e2e", "GIT_COMMITTER_EMAIL": "e2e@tidegate.dev",
                "PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1"}

T = TypeVar("T")


# --- manifests --------------------------------------------------------------------------------

def rollout(
    name: str,
    *,
    image: str = "registry.local/model:v1",
    replicas: int = 4,
    steps: list[dict[str, Any]] | None = None,
    traffic: str | None = "host",
    **canary_extra: Any,
) -> dict[str, Any]:
    """A canary Rollout; ``traffic`` is "host" (Services + VS), "subset" (VS + DR) or None."""
    labels = {"app": name}
    canary: dict[str, Any] = {"steps": steps if steps is not None else [{"setWeight": 10}, {"pause": {}}]}
    if traffic == "host":
        canary.update(
            canaryService=f"{name}-canary", stableService=f"{name}-stable",
            trafficRouting={"istio": {"virtualService": {"name": f"{name}-vsvc", "routes": ["primary"]}}},
        )
    elif traffic == "subset":
        canary.update(trafficRouting={"istio": {
            "virtualService": {"name": f"{name}-vsvc", "routes": ["primary"]},
            "destinationRule": {"name": f"{name}-dr", "canarySubsetName": "canary", "stableSubsetName": "stable"},
        }})
    canary.update(canary_extra)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "model", "image": image}]},
            },
            "strategy": {"canary": canary},
        },
    }


def service(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080, "name": "http"}]},
    }


def virtual_service(name: str, *, canary_host: str, stable_host: str, subsets: bool = False) -> dict[str, Any]:
    def destination(host: str, subset: str) -> dict[str, Any]:
        dest: dict[str, Any] = {"host": host}
        if subsets:
            dest["subset"] = subset
        return dest

    return {
        "apiVersion": f"{ISTIO}/v1beta1", "kind": "VirtualService", "metadata": {"name": name},
        "spec": {
            "hosts": ["model.example.com"],
            "gateways": ["mesh"],
            "http": [{
                "name": "primary",
                "retries": {"attempts": 3, "perTryTimeout": "2s"},
                "route": [
                    {"destination": destination(stable_host, "stable"), "weight": 100},
                    {"destination": destination(canary_host, "canary"), "weight": 0},
                ],
            }],
        },
    }


def destination_rule(name: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{ISTIO}/v1beta1", "kind": "DestinationRule", "metadata": {"name": name},
        "spec": {
            "host": host,
            "subsets": [
                {"name": "canary", "labels": {"app": host}},
                {"name": "stable", "labels": {"app": host},
                 "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}},
            ],
        },
    }


# --- the cluster ---------------------------------------------------------------------------------

class Cluster:
    """Thin helpers over the real API for one test namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        kind = doc["kind"]
        if kind == "Service":
            return self.core.create_namespaced_service(self.ns, doc).to_dict()  # type: ignore[no-any-return]
        group, version = doc["apiVersion"].split("/")
        plural = {"Rollout": "rollouts", "AnalysisTemplate": "analysistemplates",
                  "VirtualService": "virtualservices", "DestinationRule": "destinationrules"}[kind]
        return self.custom.create_namespaced_custom_object(group, version, self.ns, plural, doc)  # type: ignore[no-any-return]

    def rollout(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "rollouts", name)  # type: ignore[no-any-return]

    def patch_rollout(self, name: str, patch: dict[str, Any], *, status: bool = False) -> None:
        fn = (self.custom.patch_namespaced_custom_object_status if status
              else self.custom.patch_namespaced_custom_object)
        fn(GROUP, VERSION, self.ns, "rollouts", name, patch)

    def update_rollout(self, name: str, mutate: Callable[[dict[str, Any]], None]) -> None:
        """Read, mutate, replace; on a conflict with the controller's status write, read again."""
        for _ in range(10):
            body = self.rollout(name)
            mutate(body)
            try:
                self.custom.replace_namespaced_custom_object(GROUP, VERSION, self.ns, "rollouts", name, body)
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
        raise AssertionError(f"rollout {name}: 10 conflicting updates in a row")

    def set_image(self, name: str, image: str) -> None:
        # A JSON patch, not read-then-replace: the controller may write status in between (409).
        patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, "rollouts", name, patch,
                                                   _content_type="application/json-patch+json")

    def vs_weights(self, name: str) -> tuple[int, int]:
        """(stable, canary) weights of the VS's first route, as written in the cluster."""
        vs = self.custom.get_namespaced_custom_object(ISTIO, "v1beta1", self.ns, "virtualservices", name)
        route = vs["spec"]["http"][0]["route"]
        return int(route[0].get("weight", 0)), int(route[1].get("weight", 0))

    def virtual_service(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(ISTIO, "v1beta1", self.ns, "virtualservices", name)  # type: ignore[no-any-return]

    def destination_rule(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(ISTIO, "v1beta1", self.ns, "destinationrules", name)  # type: ignore[no-any-return]

    def selector_hash(self, service_name: str) -> str | None:
        svc = self.core.read_namespaced_service(service_name, self.ns)
        return (svc.spec.selector or {}).get(HASH_LABEL)

    def replica_sets(self, rollout_name: str) -> dict[str, client.V1ReplicaSet]:
        """ReplicaSets of a rollout keyed by pod-template hash."""
        items = self.apps.list_namespaced_replica_set(self.ns, label_selector=f"app={rollout_name}").items
        return {rs.metadata.labels[HASH_LABEL]: rs for rs in items if HASH_LABEL in (rs.metadata.labels or {})}

    def events(self, name: str) -> list[client.CoreV1Event]:
        items = self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items
        return sorted(items, key=lambda e: (e.first_timestamp or e.event_time, e.metadata.name))

    def wait_status(self, name: str, predicate: Callable[[dict[str, Any]], Any], *, timeout: float = 60,
                    message: str = "rollout status") -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            status = self.rollout(name).get("status") or {}
            return status if predicate(status) else None

        return wait_until(check, timeout=timeout, message=f"{name}: {message}")  # type: ignore[no-any-return]

    def wait_phase(self, name: str, phase: str, *, timeout: float = 60) -> dict[str, Any]:
        return self.wait_status(name, lambda s: s.get("phase") == phase, timeout=timeout, message=f"phase {phase}")


def canary_weight(status: dict[str, Any]) -> int | None:
    weights = ((status.get("canary") or {}).get("weights") or {})
    value = (weights.get("canary") or {}).get("weight")
    return int(value) if value is not None else None


# --- the controller process ---------------------------------------------------------------------

class Controller:
    """A real ``tidegate controller`` process watching one namespace; log in a file.

    ``extra_args`` select components and their flags (the sync module's tests add
    ``--components gitops ...``); ``ready`` is the log line that says it started;
    a ``metrics_port`` serves /metrics on 127.0.0.1 (0: no metrics).
    """

    def __init__(self, env: dict[str, str], namespace: str, log_path: Path, *,
                 extra_args: Sequence[str] = (), ready: str = "rollout controller started",
                 metrics_port: int = 0) -> None:
        self.env = env
        self.namespace = namespace
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.ready = ready
        self.metrics_port = metrics_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        metrics = ["--metrics-port", str(self.metrics_port)]
        if self.metrics_port:
            metrics.append("--metrics-local")
        if not any(arg.startswith("--healthz-port") for arg in self.extra_args):
            # many controllers run side by side here: no probe port unless the test asks for one
            # (leader election stays on, as in production: each test namespace scopes its own Lease)
            metrics += ["--healthz-port", "0"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "controller", "--namespace", self.namespace,
             *metrics, *self.extra_args],
            env={**self.env, "PYTHONUNBUFFERED": "1"}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self.ready in self.log(), timeout=60,
                   message=f"the controller to log {self.ready!r}")

    def metrics(self) -> str:
        """The controller's /metrics text (needs a ``metrics_port``)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback, our own URL
            return str(resp.read().decode())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@contextmanager
def running_controller(env: dict[str, str], namespace: str, log_path: Path) -> Iterator[Controller]:
    ctl = Controller(env, namespace, log_path)
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()


class GitopsController(Controller):
    """``tidegate controller --components gitops`` for the test's namespace, started at once.

    ``extra_args`` add flags (e.g. ``--repo-url-rewrite``) after the gitops ones.
    """

    def __init__(self, env: dict[str, str], namespace: str, log_path: Path, *,
                 metrics_port: int = 0, webhook_port: int = 0,
                 extra_args: Sequence[str] = ()) -> None:
        args = ["--components", "gitops", "--app-namespace", namespace, "--app-resync", "600"]
        if webhook_port:
            args += ["--webhook-port", str(webhook_port)]
        super().__init__(env, namespace, log_path, extra_args=[*args, *extra_args],
                         ready=GITOPS_READY, metrics_port=metrics_port)
        self.start()


def run_git(cwd: Path, *args: str, home: Path) -> str:
    """``git args`` in ``cwd`` as the tests' fixed identity; its stdout, stripped."""
    done = subprocess.run(["git", *args], cwd=cwd, env={**GIT_IDENTITY, "HOME": str(home)},
                          capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.strip()


class ApplicationWatch(Generic[T]):
    """Every distinct consecutive value ``entry(application)`` took, from a watch (not polling).

    Watches one Application by name in a thread until ``stop()``; ``seen`` holds
    the values in order. A subclass may override ``observe`` to record otherwise.
    """

    def __init__(self, custom: client.CustomObjectsApi, namespace: str, name: str, *,
                 entry: Callable[[dict[str, Any]], T] | None = None,
                 timeout_seconds: int = 300) -> None:
        self.custom, self.namespace, self.name = custom, namespace, name
        self.seen: list[T] = []
        self._entry = entry
        self._timeout_seconds = timeout_seconds
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def observe(self, app: dict[str, Any]) -> None:
        assert self._entry is not None, "an ApplicationWatch needs entry= or its own observe()"
        value = self._entry(app)
        if not self.seen or self.seen[-1] != value:
            self.seen.append(value)

    def _run(self) -> None:
        stream = self._watch.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION,
                                    self.namespace, APPLICATIONS,
                                    field_selector=f"metadata.name={self.name}",
                                    timeout_seconds=self._timeout_seconds)
        try:
            for event in stream:
                self.observe(event["object"])
        except Exception:  # noqa: S110 - the stream ends when stop() closes it
            pass

    def stop(self) -> None:
        self._watch.stop()


class WeightRecorder:
    """Every canary weight a VirtualService took, in order, from a watch (not polling).

    Polling can miss a weight that lasts one reconcile (setWeight 100 just before
    promotion writes 100/0 back); a watch delivers every version written.
    """

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.weights: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WeightRecorder:
        self._thread.start()
        wait_until(lambda: bool(self.weights), timeout=10, message=f"watch on {self.name}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        watcher = watch.Watch()
        version = ""
        while not self._stop.is_set():
            stream = watcher.stream(
                self.cluster.custom.list_namespaced_custom_object, ISTIO, "v1beta1", self.cluster.ns,
                "virtualservices", field_selector=f"metadata.name={self.name}",
                resource_version=version, timeout_seconds=5,
            )
            for event in stream:
                obj = event["object"]
                version = obj["metadata"]["resourceVersion"]
                weight = int(obj["spec"]["http"][0]["route"][1].get("weight", 0))
                if not self.weights or self.weights[-1] != weight:
                    self.weights.append(weight)
                if self._stop.is_set():
                    watcher.stop()
                    break


def sample(fn: Callable[[], Any], *, until: Callable[[Any], bool], timeout: float, interval: float = 0.1) -> list[Any]:
    """Call ``fn`` repeatedly and collect distinct consecutive values until ``until(value)``."""
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if not seen or seen[-1] != value:
            seen.append(value)
        if until(value):
            return seen
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s; values seen: {seen}")
