"""The sync module at scale: one Application of 500 objects from a real Git repository.

Run by hand against the local cluster (``make cluster-up`` first):

    .venv/bin/python bench/sync_scale.py                 # 500 objects, 3 repetitions, 20 commits
    .venv/bin/python bench/sync_scale.py --quick         # 100 objects, 1 repetition, 5 commits
    .venv/bin/python bench/sync_scale.py --py-spy /path/to/py-spy   # also profile the controller

Everything runs against the real cluster and the real ``tidegate controller
--components gitops`` process (its own ``--app-namespace bench-sync-<suffix>``,
started from this tree), with a bare Git repository over ``file://`` made here.
The Application's path holds N objects (default 500) in one file per "service":
per 10 objects 2 Deployments (1 replica, env, probes, resources, a mounted
ConfigMap), 3 Services and 5 ConfigMaps (a 2 KB config file, 20 env keys, a
rules file), i.e. what a small platform's config repo holds. Each figure is
measured side by side with ``kubectl apply --server-side`` of the same files in
the same run, into another fresh namespace:

1. first sync, per repetition, into fresh namespaces (created beforehand for
   both, so neither pays for the namespace): Application created -> operation
   Succeeded (every object applied), and -> app health Healthy; vs ``kubectl
   apply --server-side`` wall time, and that plus ``kubectl wait`` for every
   Deployment Available. The order (app first / kubectl first) alternates.
2. no-op refresh: ``argocd.argoproj.io/refresh: normal`` set -> the controller
   removes it (the refresh is done: Git resolved, rendered, every object compared
   by a server-side dry run) with no operation started; vs a no-op ``kubectl
   apply --server-side`` of the same, unchanged, objects.
3. one-object change: a commit that changes one ConfigMap, then the refresh
   annotation -> that ConfigMap changed in the cluster (our watch); vs ``kubectl
   apply --server-side`` of that one object.
4. commit -> applied over K commits (default 20), each changing one ConfigMap:
   push returned -> the ConfigMap changed (our watch), through a signed GitHub
   push webhook (polling off), then, with a second controller, through polling
   (``--repo-poll-interval``, default 3 s, no webhook; commits at a random phase).
5. controller RSS from /proc (psutil) every 0.2 s: after start-up (before), peak,
   and at the end of the webhook controller's run (after).

Output: the tables on stdout and bench/out/sync_scale.json; controller logs in
bench/out/sync_scale-*.log. Everything created (namespaces, the repository in a
temporary directory, the controllers) is removed on exit, also on failure.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client, watch  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from bench import _common as common  # noqa: E402
from common.kubeclient import new_api_client  # noqa: E402

GROUP, VERSION = "argoproj.io", "v1alpha1"
OUT = common.REPO / "bench" / "out"
PART_OF = "app.kubernetes.io/part-of"
PART_OF_VALUE = "bench-sync"
APP_PATH = "apps"
WEBHOOK_SECRET = "bench-sync-webhook-secret"  # noqa: S105 - a throwaway for a loopback bench
FIELD_MANAGER_KUBECTL = "bench-kubectl"
TARGET_FIRST_SYNC_RATIO = 1.2
TARGET_NOOP_SECONDS = 1.0
TARGET_WEBHOOK_P99_SECONDS = 3.0
WAIT_SECONDS = 600.0
POLL_SECONDS = 0.05
SETTLE_SECONDS = 2.5  # past the reconcile the wave delay (2 s) queues after an operation ends
CONTROLLER_READY = "gitops controller started"
WEBHOOK_READY = "gitops webhook listening"


class BenchError(RuntimeError):
    """The bench could not run (cluster, controller, git); the message says what to look at."""


# --- the repository ------------------------------------------------------------------------------

def _config_text(index: int, revision: int) -> str:
    """A model-serving config file of about 2 KB (what a ConfigMap of a real repo carries)."""
    lines = [f"# service svc-{index:03d}", f"revision: {revision}", "server:"]
    lines += [f"  option_{k:02d}: value-{index:03d}-{k:02d}-{'x' * 12}" for k in range(30)]
    lines += ["model:", f"  name: model-{index % 7}", "  maxBatchSize: 32", "  timeoutMs: 1500"]
    lines += [f"  feature_{k:02d}: {k % 2 == 0}".lower() for k in range(20)]
    return "\n".join(lines) + "\n"


def service_unit(index: int, revision: int = 0) -> list[dict[str, Any]]:
    """Ten objects: 2 Deployments, 3 Services, 5 ConfigMaps, no namespace (the destination's)."""
    docs: list[dict[str, Any]] = []
    for half in (0, 1):
        name = f"svc-{index:03d}-{'a' if half == 0 else 'b'}"
        labels = {"app": name, PART_OF: PART_OF_VALUE, "app.kubernetes.io/name": name,
                  "app.kubernetes.io/version": "1.4.2"}
        meta = {"name": name, "labels": labels, "annotations": {"team": "ml-platform",
                                                               "owner": "serving@example.com"}}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {**meta, "name": f"{name}-config"},
                     "data": {"config.yaml": _config_text(index * 2 + half, revision if half == 0 else 0)}})
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {**meta, "name": f"{name}-env"},
                     "data": {f"ENV_{k:02d}": f"value-{k}-{name}" for k in range(20)}})
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                     "spec": {"selector": {"app": name},
                              "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                                        {"name": "grpc", "port": 9000, "targetPort": 9000}]}})
        container = {
            "name": "server", "image": f"registry.local/model-server:{index % 5}.{half}",
            "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 9000, "name": "grpc"}],
            "env": [{"name": f"SETTING_{k}", "value": str(k * 10)} for k in range(10)],
            "envFrom": [{"configMapRef": {"name": f"{name}-env"}}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                          "limits": {"cpu": "500m", "memory": "512Mi"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/model"}],
        }
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                     "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                              "template": {"metadata": {"labels": labels},
                                           "spec": {"containers": [container],
                                                    "volumes": [{"name": "config", "configMap": {
                                                        "name": f"{name}-config"}}]}}}})
    first = f"svc-{index:03d}-a"
    docs.append({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": f"{first}-metrics", "labels": {"app": first, PART_OF: PART_OF_VALUE}},
                 "spec": {"selector": {"app": first}, "ports": [{"name": "metrics", "port": 9090}]}})
    docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": f"{first}-rules", "labels": {"app": first, PART_OF: PART_OF_VALUE}},
                 "data": {"rules.yaml": "\n".join(f"- alert: Rule{k}\n  expr: rate(errors_total[5m]) > {k}"
                                                  for k in range(15))}})
    return docs


class GitRepo:
    """A bare repository (the remote, over file://) and a work tree that pushes to it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        self.git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=root)
        self.git("init", "-q", "-b", "main", str(self.work), cwd=root)
        self.git("remote", "add", "origin", self.url)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def git(self, *args: str, cwd: Path | None = None) -> str:
        env = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@tidegate.dev",
               "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@tidegate.dev",
               "HOME": str(self.work.parent), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(["git", *args], cwd=cwd or self.work, env=env, capture_output=True,
                              text=True, check=True, timeout=60)
        return done.stdout.strip()

    def write_units(self, units: int) -> None:
        for index in range(units):
            self.write_unit(index, 0)

    def write_unit(self, index: int, revision: int) -> Path:
        path = self.work / APP_PATH / f"svc-{index:03d}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(service_unit(index, revision), sort_keys=False))
        return path

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD")


def changed_config_map(index: int, revision: int) -> dict[str, Any]:
    """The one ConfigMap a change commit edits (svc-<index>-a-config)."""
    return service_unit(index, revision)[0]


# --- the cluster side ------------------------------------------------------------------------------

def kubectl(*args: str, timeout: float = WAIT_SECONDS) -> float:
    """Run kubectl; its wall time in seconds (raises with its stderr on failure)."""
    started = time.monotonic()
    done = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=timeout, check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise BenchError(f"kubectl {' '.join(args[:3])} ... failed: {done.stderr.strip()[:2000]}")
    return took


def application(name: str, namespace: str, repo_url: str, dest: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"project": "default",
                     "source": {"repoURL": repo_url, "targetRevision": "main", "path": APP_PATH},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": dest},
                     "syncPolicy": {"automated": {"prune": False}}}}


class Arrivals(threading.Thread):
    """Watches one kind's labelled objects in a namespace; the arrival time of each name's first event."""

    def __init__(self, list_fn: Callable[..., Any], namespace: str) -> None:
        super().__init__(name=f"arrivals-{namespace}", daemon=True)
        self.list_fn, self.namespace = list_fn, namespace
        self.seen: dict[str, float] = {}
        self.stream = watch.Watch()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for event in self.stream.stream(self.list_fn, self.namespace,
                                            label_selector=f"{PART_OF}={PART_OF_VALUE}",
                                            timeout_seconds=int(WAIT_SECONDS)):
                name = event["object"].metadata.name
                self.seen.setdefault(name, time.monotonic())
        except BaseException as exc:  # noqa: BLE001 - reported by the bench
            self.error = exc

    def stop(self) -> None:
        self.stream.stop()


class ConfigWatch(threading.Thread):
    """Watches one ConfigMap; records when its config.yaml first carries each ``revision: N``."""

    def __init__(self, core: client.CoreV1Api, namespace: str, name: str) -> None:
        super().__init__(name=f"config-{name}", daemon=True)
        self.core, self.namespace, self.name = core, namespace, name
        self.revisions: dict[int, float] = {}
        self.changed = threading.Condition()
        self.stream = watch.Watch()

    def run(self) -> None:
        while True:
            try:
                for event in self.stream.stream(self.core.list_namespaced_config_map, self.namespace,
                                                field_selector=f"metadata.name={self.name}",
                                                timeout_seconds=300):
                    text = (event["object"].data or {}).get("config.yaml", "")
                    for line in text.splitlines():
                        if line.startswith("revision: "):
                            with self.changed:
                                self.revisions.setdefault(int(line.split(": ", 1)[1]), time.monotonic())
                                self.changed.notify_all()
                            break
            except Exception:  # noqa: BLE001 - a dropped stream is re-opened; stop() ends it
                if self.stream._stop:  # noqa: SLF001 - the kubernetes Watch has no public flag
                    return
                time.sleep(0.2)
                continue
            if self.stream._stop:  # noqa: SLF001
                return

    def wait_for(self, revision: int, timeout: float = WAIT_SECONDS) -> float:
        """The monotonic time the ConfigMap first held ``revision`` (waits for it)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while revision not in self.revisions:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"{self.name} never held revision {revision} in {timeout:.0f}s")
                self.changed.wait(left)
            return self.revisions[revision]

    def stop(self) -> None:
        self.stream.stop()


def wait_until(check: Callable[[], bool], what: str, *, alive: Callable[[], None],
               timeout: float = WAIT_SECONDS, interval: float = POLL_SECONDS) -> float:
    """Poll until ``check()``; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        alive()
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")


# --- the controller ---------------------------------------------------------------------------------

class Controller:
    """``tidegate controller --components gitops`` for the bench's app namespace, log under bench/out/."""

    def __init__(self, app_ns: str, log_path: Path, *, webhook_port: int, poll_seconds: float) -> None:
        self.log_path = log_path
        self.metrics_port = common.free_port()
        command = [sys.executable, "-m", "cli.main", "controller", "--components", "gitops",
                   "--namespace", app_ns, "--app-namespace", app_ns, "--app-resync", "600",
                   "--metrics-port", str(self.metrics_port), "--metrics-local",
                   "--repo-poll-interval", f"{poll_seconds:g}"]
        if webhook_port:
            command += ["--webhook-port", str(webhook_port)]
        os.environ["TIDEGATE_WEBHOOK_GITHUB_SECRET"] = WEBHOOK_SECRET
        self.proc, self.log = common.launch_controller(command, log_path, str(common.REPO))
        self.sampler = common.ProcessSampler(self.proc.pid)
        self.sampler.start()
        self.spy: subprocess.Popen[bytes] | None = None

    def wait_ready(self, line: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if line in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise BenchError(f"the controller did not log {line!r} in {timeout:.0f}s; see {self.log_path}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"controller exited with {self.proc.returncode}; see {self.log_path}")

    def rss_mb(self) -> float:
        return float(self.sampler.proc.memory_info().rss) / 2**20

    def peak_mb(self) -> float:
        return max((rss for _, rss in self.sampler.samples), default=0) / 2**20

    def cpu_seconds(self) -> float:
        return self.sampler.cpu_seconds()

    @contextmanager
    def profiled(self, py_spy: str | None, out: Path) -> Iterator[None]:
        """py-spy record of the controller for the duration of the block (if py-spy is given)."""
        if not py_spy:
            yield
            return
        spy = subprocess.Popen([py_spy, "record", "--pid", str(self.proc.pid), "--rate", "100",
                                "--format", "speedscope", "--output", str(out), "--threads"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        time.sleep(1.0)  # py-spy attaches
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(timeout=10)

    def stop(self) -> None:
        self.sampler.stopping.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


# --- the phases -----------------------------------------------------------------------------------

class Bench:
    """One run: the namespaces, the repository and the API clients it shares between phases."""

    def __init__(self, api: client.ApiClient, root: Path, objects: int) -> None:
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.suffix = secrets.token_hex(3)
        self.app_ns = f"bench-sync-{self.suffix}"
        self.namespaces: list[str] = []
        self.units = max(objects // 10, 1)
        self.repo = GitRepo(root)
        self.repo.write_units(self.units)
        self.head = self.repo.commit("500 objects")
        self.root = root
        self.revision = 0  # of the changed ConfigMap (svc-000-a-config)

    @property
    def objects(self) -> int:
        return self.units * 10

    def namespace(self, role: str) -> str:
        name = f"{self.app_ns}-{role}"
        common.create_namespace(self.core, name)
        self.namespaces.append(name)
        return name

    def app(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.app_ns, "applications", name))

    def settled(self, name: str, revision: str) -> Callable[[], bool]:
        def check() -> bool:
            app = self.app(name)
            op = (app.get("status") or {}).get("operationState") or {}
            return (op.get("phase") == "Succeeded" and not app.get("operation")
                    and (op.get("syncResult") or {}).get("revision") == revision)
        return check

    def arrivals(self, namespace: str) -> list[Arrivals]:
        watchers = [Arrivals(self.core.list_namespaced_config_map, namespace),
                    Arrivals(self.core.list_namespaced_service, namespace),
                    Arrivals(self.apps.list_namespaced_deployment, namespace)]
        for w in watchers:
            w.start()
        return watchers

    @staticmethod
    def last_arrival(watchers: list[Arrivals], count: int, alive: Callable[[], None]) -> float:
        wait_until(lambda: sum(len(w.seen) for w in watchers) >= count, f"{count} objects to exist",
                   alive=alive)
        for w in watchers:
            w.stop()
        return max(t for w in watchers for t in w.seen.values())

    def first_sync(self, ctl: Controller, rep: int) -> dict[str, float]:
        """One repetition of (1): the Application vs kubectl, each into its own fresh namespace."""
        app_dest, kc_dest = self.namespace(f"app{rep}"), self.namespace(f"kc{rep}")
        name = f"bench-{self.suffix}-{rep}"
        out: dict[str, float] = {}

        def by_app() -> None:
            watchers = self.arrivals(app_dest)
            time.sleep(0.5)  # the watches are open
            t0 = time.monotonic()
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.app_ns, "applications",
                application(name, self.app_ns, self.repo.url, app_dest))
            done = wait_until(self.settled(name, self.head), f"{name} to sync", alive=ctl.check_alive)
            out["app_succeeded_s"] = done - t0
            out["app_last_object_s"] = self.last_arrival(watchers, self.objects, ctl.check_alive) - t0
            healthy = wait_until(lambda: ((self.app(name).get("status") or {}).get("health") or {}).get(
                "status") == "Healthy", f"{name} to be Healthy", alive=ctl.check_alive)
            out["app_healthy_s"] = healthy - t0

        def by_kubectl() -> None:
            t0 = time.monotonic()
            out["kubectl_apply_s"] = kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER_KUBECTL}",
                                             "-n", kc_dest, "-f", str(self.repo.work / APP_PATH))
            kubectl("wait", "--for=condition=Available", "deployment", "--all", "-n", kc_dest,
                    f"--timeout={WAIT_SECONDS:.0f}s")
            out["kubectl_healthy_s"] = time.monotonic() - t0

        order = (by_app, by_kubectl) if rep % 2 == 0 else (by_kubectl, by_app)
        for step in order:
            step()
            time.sleep(SETTLE_SECONDS)
        out["ratio_applied"] = out["app_succeeded_s"] / out["kubectl_apply_s"]
        out["ratio_healthy"] = out["app_healthy_s"] / out["kubectl_healthy_s"]
        return out

    def refresh(self, name: str) -> float:
        """Set the refresh annotation; seconds until the controller has removed it."""
        t0 = time.monotonic()
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.app_ns, "applications", name,
            {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}})
        return t0

    def refreshed(self, name: str) -> Callable[[], bool]:
        return lambda: "argocd.argoproj.io/refresh" not in (self.app(name)["metadata"].get("annotations") or {})

    def noop_refresh(self, ctl: Controller, name: str, kc_dest: str, reps: int) -> dict[str, Any]:
        """(2): the refresh annotation on a synced app vs a no-op kubectl apply of the same objects."""
        app_s: list[float] = []
        kc_s: list[float] = []
        for _ in range(reps):
            before = self.app(name)
            op_started = ((before.get("status") or {}).get("operationState") or {}).get("startedAt")
            t0 = self.refresh(name)
            done = wait_until(self.refreshed(name), "the refresh annotation to be removed",
                              alive=ctl.check_alive, interval=0.02)
            app_s.append(done - t0)
            after = self.app(name)
            if ((after.get("status") or {}).get("operationState") or {}).get("startedAt") != op_started:
                raise BenchError("a no-op refresh started an operation: the app was not in sync")
            time.sleep(1.0)
            kc_s.append(kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER_KUBECTL}",
                                "-n", kc_dest, "-f", str(self.repo.work / APP_PATH)))
            time.sleep(1.0)
        return {"app_s": app_s, "kubectl_s": kc_s}

    def one_change(self, ctl: Controller, name: str, app_dest: str, kc_dest: str, reps: int,
                   ) -> dict[str, Any]:
        """(3): a commit changing one ConfigMap + the refresh annotation vs kubectl apply of it."""
        app_s: list[float] = []
        kc_s: list[float] = []
        config = ConfigWatch(self.core, app_dest, "svc-000-a-config")
        config.start()
        single = self.root / "one.yaml"
        try:
            for _ in range(reps):
                self.revision += 1
                self.repo.write_unit(0, self.revision)
                sha = self.repo.commit(f"change one object: revision {self.revision}")
                t0 = self.refresh(name)
                app_s.append(config.wait_for(self.revision) - t0)
                wait_until(self.settled(name, sha), f"{name} to sync {sha[:8]}", alive=ctl.check_alive)
                time.sleep(SETTLE_SECONDS)
                single.write_text(yaml.safe_dump(changed_config_map(0, self.revision), sort_keys=False))
                kc_s.append(kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER_KUBECTL}",
                                    "-n", kc_dest, "-f", str(single)))
            self.head = self.repo.git("rev-parse", "HEAD")
        finally:
            config.stop()
        return {"app_s": app_s, "kubectl_s": kc_s}

    def commits(self, ctl: Controller, name: str, app_dest: str, count: int, *,
                webhook_port: int, poll_seconds: float) -> list[float]:
        """(4): push returned -> the changed ConfigMap seen, through the webhook or through polling."""
        config = ConfigWatch(self.core, app_dest, "svc-000-a-config")
        config.start()
        latencies: list[float] = []
        try:
            for _ in range(count):
                if not webhook_port:
                    time.sleep(random.uniform(0, poll_seconds))  # noqa: S311 - any phase of the poll
                self.revision += 1
                self.repo.write_unit(0, self.revision)
                sha = self.repo.commit(f"commit {self.revision}")
                t0 = time.monotonic()
                if webhook_port:
                    status = post_webhook(webhook_port, push_payload(self.repo.url, sha))
                    if status != 200:
                        raise BenchError(f"the webhook answered {status}")
                latencies.append(config.wait_for(self.revision) - t0)
                wait_until(self.settled(name, sha), f"{name} to sync {sha[:8]}", alive=ctl.check_alive)
                time.sleep(SETTLE_SECONDS)
            self.head = self.repo.git("rev-parse", "HEAD")
        finally:
            config.stop()
        return latencies

    def cleanup(self) -> None:
        try:
            for app in self.custom.list_namespaced_custom_object(GROUP, VERSION, self.app_ns,
                                                                 "applications")["items"]:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.app_ns, "applications",
                                                            app["metadata"]["name"])
        except ApiException as exc:
            if exc.status != 404:
                raise
        for name in [*self.namespaces, self.app_ns]:
            common.delete_namespace(self.core, name)


def push_payload(repo_url: str, sha: str) -> bytes:
    return json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": sha,
                       "repository": {"name": "remote", "clone_url": repo_url, "html_url": repo_url,
                                      "default_branch": "main"}}).encode()


def post_webhook(port: int, body: bytes) -> int:
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"http://127.0.0.1:{port}/api/webhook", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-GitHub-Event": "push",
                 "X-Hub-Signature-256": signature})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


# --- the run ----------------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def run(args: argparse.Namespace, api: client.ApiClient, root: Path) -> dict[str, Any]:
    bench = Bench(api, root, args.objects)
    result: dict[str, Any] = {"objects": bench.objects, "app_namespace": bench.app_ns}
    controllers: list[Controller] = []
    try:
        common.create_namespace(bench.core, bench.app_ns)
        webhook_port = common.free_port()
        ctl = Controller(bench.app_ns, OUT / "sync_scale-webhook.log", webhook_port=webhook_port,
                         poll_seconds=0)
        controllers.append(ctl)
        ctl.wait_ready(CONTROLLER_READY)
        ctl.wait_ready(WEBHOOK_READY)
        time.sleep(2.0)
        result["rss_before_mb"] = round(ctl.rss_mb(), 1)
        cpu0 = ctl.cpu_seconds()

        reps = []
        with ctl.profiled(args.py_spy, OUT / "sync_scale-first-sync.speedscope.json"):
            for rep in range(args.repetitions):
                one = bench.first_sync(ctl, rep)
                reps.append(one)
                print(f"  first sync {rep}: " + ", ".join(f"{k} {v:.2f}" for k, v in one.items()), flush=True)
        result["first_sync"] = reps
        result["first_sync_cpu_s"] = round(ctl.cpu_seconds() - cpu0, 1)
        last = args.repetitions - 1
        name, app_dest, kc_dest = f"bench-{bench.suffix}-{last}", f"{bench.app_ns}-app{last}", f"{bench.app_ns}-kc{last}"
        # Only the last repetition's app stays: the earlier ones' namespaces go now (less load).
        for rep in range(last):
            bench.custom.delete_namespaced_custom_object(GROUP, VERSION, bench.app_ns, "applications",
                                                         f"bench-{bench.suffix}-{rep}")
            for role in ("app", "kc"):
                common.delete_namespace(bench.core, f"{bench.app_ns}-{role}{rep}")
        time.sleep(5.0)

        with ctl.profiled(args.py_spy, OUT / "sync_scale-noop.speedscope.json"):
            result["noop_refresh"] = bench.noop_refresh(ctl, name, kc_dest, args.refreshes)
        print(f"  no-op refresh: {result['noop_refresh']}", flush=True)
        result["one_change"] = bench.one_change(ctl, name, app_dest, kc_dest, args.refreshes)
        print(f"  one change: {result['one_change']}", flush=True)
        with ctl.profiled(args.py_spy, OUT / "sync_scale-webhook.speedscope.json"):
            result["webhook"] = bench.commits(ctl, name, app_dest, args.commits, webhook_port=webhook_port,
                                              poll_seconds=0)
        print(f"  webhook: {[round(x, 2) for x in result['webhook']]}", flush=True)
        result["rss_peak_mb"] = round(ctl.peak_mb(), 1)
        result["rss_after_mb"] = round(ctl.rss_mb(), 1)
        result["cpu_total_s"] = round(ctl.cpu_seconds(), 1)
        ctl.stop()
        controllers.remove(ctl)

        poller = Controller(bench.app_ns, OUT / "sync_scale-poll.log", webhook_port=0,
                            poll_seconds=args.poll_interval)
        controllers.append(poller)
        poller.wait_ready(CONTROLLER_READY)
        time.sleep(args.poll_interval + SETTLE_SECONDS)
        result["poll"] = bench.commits(poller, name, app_dest, args.commits, webhook_port=0,
                                       poll_seconds=args.poll_interval)
        print(f"  polling: {[round(x, 2) for x in result['poll']]}", flush=True)
        result["poll_rss_peak_mb"] = round(poller.peak_mb(), 1)
    finally:
        for ctl in controllers:
            ctl.stop()
        bench.cleanup()
    return result


def report(result: dict[str, Any], poll_interval: float) -> list[str]:
    """The Markdown rows docs/performance.md records."""
    first = result["first_sync"]

    def med(key: str) -> float:
        return median([r[key] for r in first])

    noop, change = result["noop_refresh"], result["one_change"]
    hook, poll = result["webhook"], result["poll"]
    p = common.percentile
    rows = [
        "| measure | Tidegate (median) | kubectl --server-side (median) | ratio | target |",
        "| --- | --- | --- | --- | --- |",
        f"| first sync, {result['objects']} objects, to all applied (operation Succeeded) "
        f"| {med('app_succeeded_s'):.2f} s | {med('kubectl_apply_s'):.2f} s | {med('ratio_applied'):.2f}x "
        f"| <= {TARGET_FIRST_SYNC_RATIO}x |",
        f"| first sync, to Healthy (kubectl: + wait Available) | {med('app_healthy_s'):.2f} s "
        f"| {med('kubectl_healthy_s'):.2f} s | {med('ratio_healthy'):.2f}x | |",
        f"| no-op refresh (annotation -> removed) vs no-op apply | {median(noop['app_s']):.2f} s "
        f"| {median(noop['kubectl_s']):.2f} s | {median(noop['app_s']) / median(noop['kubectl_s']):.2f}x "
        f"| < {TARGET_NOOP_SECONDS:g} s |",
        f"| one-object change (commit + refresh -> applied) vs apply of it "
        f"| {median(change['app_s']):.2f} s | {median(change['kubectl_s']):.2f} s "
        f"| {median(change['app_s']) / median(change['kubectl_s']):.2f}x | |",
        f"| commit -> applied, webhook, p50 / p99 over {len(hook)} | {p(hook, 50):.2f} / {p(hook, 99):.2f} s "
        f"| | | p99 < {TARGET_WEBHOOK_P99_SECONDS:g} s |",
        f"| commit -> applied, polling every {poll_interval:g} s, p50 / p99 over {len(poll)} "
        f"| {p(poll, 50):.2f} / {p(poll, 99):.2f} s | | | |",
        f"| controller RSS before / peak / after | {result['rss_before_mb']:.0f} / {result['rss_peak_mb']:.0f} / "
        f"{result['rss_after_mb']:.0f} MiB | | | |",
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=500, help="objects in the Application (x10)")
    parser.add_argument("--repetitions", type=int, default=3, help="first syncs (fresh namespaces each)")
    parser.add_argument("--refreshes", type=int, default=5, help="no-op refreshes and one-object changes")
    parser.add_argument("--commits", type=int, default=20, help="commits through the webhook and polling")
    parser.add_argument("--poll-interval", type=float, default=3.0, help="seconds between ls-remote polls")
    parser.add_argument("--quick", action="store_true", help="100 objects, 1 repetition, 5 commits")
    parser.add_argument("--py-spy", default=None, help="a py-spy binary: profile the controller's phases")
    args = parser.parse_args(argv)
    if args.quick:
        args.objects, args.repetitions, args.refreshes, args.commits = 100, 1, 3, 5

    common.load_cluster_env()
    api = new_api_client(pool_size=8)

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "host": platform.node(),
            "cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.REPO,
                                  capture_output=True, text=True, check=False).stdout.strip()}
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        result = run(args, api, Path(tmp))
    result["meta"] = {**meta, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
    (OUT / "sync_scale.json").write_text(json.dumps(result, indent=2))
    print(f"\n{result['objects']} objects, git {meta['git']}, {meta['when']}, "
          f"load {meta['loadavg_at_start']} -> {result['meta']['loadavg_at_end']}")
    print("\n".join(report(result, args.poll_interval)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
