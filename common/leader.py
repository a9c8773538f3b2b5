"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does.

Called by the composition root (cli/controller.py): one ``LeaderElector`` per
component, each with a background thread that acquires its Lease and renews it.
The main thread blocks in ``wait_until_leading`` before kopf starts, so a
standby never reconciles. A leader that cannot renew within the renew deadline
calls ``on_stopped_leading`` (the composition root exits the process at once,
as client-go's ``OnStoppedLeading`` -> ``os.Exit``); ``release`` clears the
holder on a graceful shutdown (client-go's ``ReleaseOnCancel``) so a standby
takes over within one retry period instead of one lease duration.

Expiry is judged on this process's monotonic clock, not on the renewTime the
holder wrote: a Lease is expired when its record has not changed for a lease
duration since we first saw it (client-go's observedTime), so clock skew
between nodes cannot make two processes lead at once.

Every Lease write carries the resourceVersion it read (optimistic concurrency):
of two candidates racing for an expired Lease, one gets 409 Conflict.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import Gauge

from common.logging import get_logger

__all__ = ["LEADER", "LeaseApi", "LeaseConflict", "LeaderElector", "LeaseTiming", "KubeLeaseApi",
           "holder_identity", "lease_name"]

LEADER = Gauge("tidegate_leader", "1 while this process holds the component's leader Lease, else 0",
               ["component"])

LEASE_PREFIX = "tidegate"
MAX_LEASE_NAME = 63  # Lease names are DNS subdomains (253), but labels elsewhere copy them: stay short
REQUEST_TIMEOUT_SECONDS = 5.0
MAX_LEASE_BYTES = 64 * 1024  # a Lease is a few hundred bytes; anything bigger is not one

M_ACQUIRED = "leader election: acquired the lease; this process now leads"
M_WAITING = "leader election: waiting for the lease (another process leads)"
M_LOST = "leader election: LOST the lease (not renewed within the renew deadline); stopping at once"
M_TAKEN = "leader election: LOST the lease (another process holds it); stopping at once"
M_RELEASED = "leader election: released the lease"
M_RELEASE_FAILED = "leader election: could not release the lease (it will expire)"
M_ATTEMPT_FAILED = "leader election: lease request failed; retrying"
M_WATCH_FAILED = "leader election: could not watch the lease; polling it"


class LeaseConflict(Exception):
    """The Lease changed since it was read (409), or was created by someone else first."""


class LeaseApi(Protocol):
    """The three calls the elector makes on one namespace's Leases (bodies are plain dicts)."""

    def get(self, name: str) -> dict[str, Any] | None:
        """The Lease, or None if it does not exist."""

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create; LeaseConflict if it already exists."""

    def replace(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace (body carries metadata.resourceVersion); LeaseConflict on a stale version."""

    def wait_for_change(self, name: str, resource_version: str, timeout: float) -> bool:
        """True as soon as the Lease changes after ``resource_version``; False after ``timeout``.

        A standby waits here between attempts, so a released Lease is taken at once rather than
        at the next retry period (a failure may raise or return False: the caller then sleeps
        out the rest of the period).
        """


@dataclass(frozen=True)
class LeaseTiming:
    """Argo's (and client-go's usual) durations, in seconds."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def problem(self) -> str:
        """Why these durations cannot work together ("" if they can)."""
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            return ("leader election: need lease duration > renew deadline > retry period > 0, got "
                    f"{self.lease_duration} > {self.renew_deadline} > {self.retry_period}")
        return ""


def holder_identity(hostname: str | None = None) -> str:
    """This process's identity: hostname plus a random suffix (a restarted pod is a new candidate)."""
    return f"{hostname or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _dns_part(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def lease_name(component: str, *, instance_id: str = "", scope: Sequence[str] = ()) -> str:
    """``tidegate-<component>[-<instance-id>][-<hash of scope>]``.

    ``scope`` names what the process watches when that is less than everything
    (its namespaces, its shard): processes with different scopes are not
    replicas of each other and must not share a Lease.
    """
    parts = [LEASE_PREFIX, _dns_part(component)]
    if instance_id:
        parts.append(_dns_part(instance_id))
    name = "-".join(part for part in parts if part)
    if scope:
        digest = hashlib.sha256("\n".join(sorted(scope)).encode()).hexdigest()[:10]
        name = f"{name[:MAX_LEASE_NAME - 11].rstrip('-')}-{digest}"
    return name[:MAX_LEASE_NAME].rstrip("-")


def _micro_time(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElector:
    """Acquire and keep one Lease; see the module docstring for the rules."""

    api: LeaseApi
    name: str
    namespace: str
    component: str
    identity: str
    timing: LeaseTiming = field(default_factory=LeaseTiming)
    on_stopped_leading: Callable[[str], None] = lambda reason: None
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = lambda: datetime.now(tz=UTC)

    def __post_init__(self) -> None:
        self.log = get_logger("tidegate.leader").bind(lease=f"{self.namespace}/{self.name}",
                                                      component=self.component, identity=self.identity)
        self.leading = threading.Event()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._record: tuple[str, str, str] | None = None  # holder, renewTime, resourceVersion
        self._observed_at = 0.0
        self._last_renew = 0.0
        self._lease: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None
        self._waiting_logged = False
        LEADER.labels(component=self.component).set(0)

    # -- one attempt -------------------------------------------------------------

    def _spec(self, *, acquire_time: str | None, transitions: int) -> dict[str, Any]:
        now = _micro_time(self.wall())
        return {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.timing.lease_duration),
                "acquireTime": acquire_time or now, "renewTime": now, "leaseTransitions": transitions}

    def try_acquire_or_renew(self) -> bool:
        """One attempt (client-go's tryAcquireOrRenew): True if this process holds the Lease now."""
        current = self.api.get(self.name)
        if current is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/part-of": "tidegate",
                                            "app.kubernetes.io/component": self.component}},
                    "spec": self._spec(acquire_time=None, transitions=0)}
            self._lease = self.api.create(body)
            self._observe(self._lease)
            return True
        spec = current.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        self._observe(current)
        duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
        if holder and holder != self.identity and self.clock() - self._observed_at < duration:
            return False  # held by someone else and still fresh
        ours = holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours else 1)
        body = dict(current)
        body["spec"] = self._spec(acquire_time=str(spec.get("acquireTime")) if ours else None,
                                  transitions=transitions)
        self._lease = self.api.replace(self.name, body)
        self._observe(self._lease)
        return True

    def _observe(self, lease: Mapping[str, Any]) -> None:
        """Restart the expiry clock when the Lease record changed since the last look."""
        spec = lease.get("spec") or {}
        record = (str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""),
                  str((lease.get("metadata") or {}).get("resourceVersion") or ""))
        if record != self._record:
            self._record = record
            self._observed_at = self.clock()

    def holder(self) -> str:
        """The holder identity last seen ("" if none)."""
        return self._record[0] if self._record else ""

    # -- the loop ----------------------------------------------------------------

    def step(self) -> None:
        """One retry period's work: acquire while standing by, renew while leading."""
        try:
            held = self.try_acquire_or_renew()
        except LeaseConflict:
            held = False  # someone wrote first: look again next period
        except Exception as exc:  # noqa: BLE001 - any API or network failure is one failed attempt
            self.log.warning(M_ATTEMPT_FAILED, error=type(exc).__name__, detail=str(exc)[:200])
            held = False
        now = self.clock()
        if held:
            self._last_renew = now
            if not self.leading.is_set():
                self.log.info(M_ACQUIRED)
                self.leading.set()
                LEADER.labels(component=self.component).set(1)
            return
        if not self.leading.is_set():
            if not self._waiting_logged:
                self.log.info(M_WAITING, holder=self.holder())
                self._waiting_logged = True
            return
        other = self.holder()
        if other and other != self.identity:
            self._stop_leading(M_TAKEN)
        elif now - self._last_renew >= self.timing.renew_deadline:
            self._stop_leading(M_LOST)

    def _stop_leading(self, reason: str) -> None:
        self.leading.clear()
        LEADER.labels(component=self.component).set(0)
        self.log.error(reason, holder=self.holder())
        self.stopping.set()
        self.on_stopped_leading(reason)

    def run(self) -> None:
        """Step every retry period until ``stop`` (or until leadership is lost)."""
        while not self.stopping.is_set():
            self.step()
            if self.leading.is_set() or self._record is None:
                self.stopping.wait(self.timing.retry_period)  # a leader renews every retry period
                continue
            # A standby looks again at the same pace, and at once when the Lease changes: a
            # Lease released on SIGTERM is taken in well under a retry period.
            started = self.clock()
            try:
                changed = self.api.wait_for_change(self.name, self._record[2], self.timing.retry_period)
            except Exception as exc:  # noqa: BLE001 - the watch only shortens the wait; polling remains
                self.log.debug(M_WATCH_FAILED, error=type(exc).__name__)
                changed = False
            if not changed:
                self.stopping.wait(max(0.0, self.timing.retry_period - (self.clock() - started)))

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"leader-{self.component}", daemon=True)
        self._thread.start()

    def wait_until_leading(self, stop: threading.Event, *, poll: float = 0.2) -> bool:
        """Block until this process leads (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            if self.leading.wait(poll):
                return True
        return False

    def release(self) -> bool:
        """Stop renewing and, if leading, hand the Lease back (holder cleared, duration 1 s)."""
        self.stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=REQUEST_TIMEOUT_SECONDS)
        if not self.leading.is_set() or self._lease is None:
            return False
        self.leading.clear()
        LEADER.labels(component=self.component).set(0)
        body = dict(self._lease)
        spec = dict(body.get("spec") or {})
        spec.update({"holderIdentity": None, "leaseDurationSeconds": 1,
                     "renewTime": _micro_time(self.wall())})
        body["spec"] = spec
        try:
            self.api.replace(self.name, body)
        except Exception as exc:  # noqa: BLE001 - best effort: the Lease expires anyway
            self.log.warning(M_RELEASE_FAILED, error=type(exc).__name__)
            return False
        self.log.info(M_RELEASED)
        return True


class KubeLeaseApi:
    """``LeaseApi`` on the kubernetes client, one namespace, with request timeouts and a size cap."""

    def __init__(self, api_client: Any, namespace: str, *,
                 timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        from kubernetes import client

        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.timeout = timeout

    @staticmethod
    def _body(resp: Any) -> dict[str, Any]:
        data = resp.data
        if len(data) > MAX_LEASE_BYTES:
            raise ValueError(f"Lease response of {len(data)} bytes exceeds {MAX_LEASE_BYTES}")
        result: dict[str, Any] = json.loads(data)
        return result

    def get(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._body(self.api.read_namespaced_lease(
                name=name, namespace=self.namespace, _request_timeout=self.timeout, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._body(self.api.create_namespaced_lease(
                namespace=self.namespace, body=dict(body), _request_timeout=self.timeout,
                _preload_content=False))
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict(name_of(body)) from exc
            raise

    def replace(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._body(self.api.replace_namespaced_lease(
                name=name, namespace=self.namespace, body=dict(body), _request_timeout=self.timeout,
                _preload_content=False))
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict(name) from exc
            raise


    def wait_for_change(self, name: str, resource_version: str, timeout: float) -> bool:
        from kubernetes import watch

        stream = watch.Watch()
        try:
            for _ in stream.stream(self.api.list_namespaced_lease, namespace=self.namespace,
                                   field_selector=f"metadata.name={name}",
                                   resource_version=resource_version or None,
                                   timeout_seconds=max(1, int(timeout)),
                                   _request_timeout=timeout + self.timeout):
                return True
        finally:
            stream.stop()
        return False


def name_of(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("name") or "")
