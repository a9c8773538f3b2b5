"""Delivering notifications: plan, send each with a deadline, record only what was sent.

Called by notifications/handlers.py (the kopf wiring) for one object at a time
(the work queue never hands one object to two workers at once); no kopf here,
so unit tests drive it with a fake ``NotificationsPort`` and fake services.

For one object change (``Notifier.notify``):

1. the object's configuration (``ConfigCache``: the ConfigMap parsed and its
   services built with the Secret's values, read again when a watch saw either
   change or after a TTL);
2. ``notifications.engine.plan`` says what to send and what the state
   annotation ``notified.notifications.argoproj.io`` becomes;
3. each delivery goes through its service in the shared send pool, at most
   ``sends_per_namespace`` of one namespace at once (common/fairness.py), with a
   deadline; while a send is in flight the worker is given back
   (``worker_released``), so a receiver that never answers holds one thread of
   its own namespace, never another tenant's work;
4. right after each successful send the annotation is written (a merge patch of
   that one annotation) with that delivery's key added: a success is never sent
   twice; a failed send's key is never written, so it is tried again, after a
   backoff (``Backoff``: doubling to a cap) and after a restart alike;
5. a failure is a Warning Event on the object naming the trigger and the
   service (redacted with every value of the Secret), the metric
   ``notification_deliveries_total{succeeded="false"}`` and a log line; never an
   exception out of here for a send. A success is a Normal Event ``NotificationSent``
   and the same metric with ``succeeded="true"`` (the delivery log).

Every state the watch delivered counts, not only the one planned: ``Notifier.observe``
(called by the handlers for each event's body) remembers, in memory and bounded, the
conditions without ``oncePer`` that are false in it, and the next plan of a body at least
that new drops their keys from the record first (``engine.rearm``), so Succeeded -> Running
-> Succeeded within one reconcile is sent again. The annotation stays the only record: a
restart forgets the re-arming and sends nothing twice.

One gap remains, as in Argo: a send that succeeded while the annotation write
after it failed is remembered in memory (``_unrecorded``) and written with the
next attempt without sending again; a crash between the two sends it again
after the restart (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from common.fairness import TenantSlots
from common.kubewrite import EventDeduper
from common.logging import get_logger
from common.redaction import ACTIVE_SECRETS, Redactor, redactor
from common.shell import VersionTracker, resource_version
from common.workqueue import worker_released
from notifications import metrics
from notifications.catalog import parse_with_catalog
from notifications.config import NotificationConfig
from notifications.engine import Delivery, Plan, false_conditions, plan, rearm
from notifications.kube import NotificationsPort
from notifications.services import Notification, Service, build_services, secret_values
from notifications.settings import NotificationSettings

log = get_logger("tidegate.notifications")

STATE_ANNOTATION = "notified.notifications.argoproj.io"
REASON_FAILED = "NotificationFailed"
REASON_TEMPLATE = "NotificationTemplateError"
REASON_SENT = "NotificationSent"
WARNING, NORMAL = "Warning", "Normal"
MSG_SENT = 'notification "{trigger}" sent to service "{service}"{recipient}'
MSG_FAILED = 'notification "{trigger}" to service "{service}"{recipient} failed: {error}'
MSG_NOT_CONFIGURED = 'service "{service}" is not configured in {namespace}/{configmap}'
MSG_NO_ANSWER = "no answer within {seconds:g}s"
MSG_PLAN_ERROR = "notifications: {error}"
MAX_ERROR_CHARS = 512
# Bounds on the in-memory re-arming (``Notifier.observe``): states per object, objects.
# Over them the oldest is dropped: a lost re-arm can only miss a send (Argo's behaviour),
# never repeat one.
MAX_REARMED_STATES = 64
MAX_REARMED_OBJECTS = 10_000
# The service bounds its own send by the deadline; this much more and we stop waiting for it.
DEADLINE_GRACE_SECONDS = 2.0

ObjectId = tuple[str, str, str]  # (kind, namespace, name)


class Observer(Protocol):
    def __call__(self, obj: Mapping[str, Any], *, kind: str, config: NotificationConfig,
                 project: Mapping[str, Any] | None, context_vars: Mapping[str, Any],
                 now: datetime) -> frozenset[str]: ...


class Planner(Protocol):
    def __call__(self, obj: Mapping[str, Any], *, kind: str, config: NotificationConfig,
                 project: Mapping[str, Any] | None, context_vars: Mapping[str, Any],
                 now: datetime) -> Plan: ...


@dataclass(frozen=True)
class Source:
    """Where a configuration lives: a ConfigMap and the Secret its ``$keys`` come from."""

    namespace: str
    configmap: str
    secret: str


@dataclass(frozen=True)
class Loaded:
    """A parsed configuration with its services built; ``redactor`` knows every Secret value."""

    source: Source
    config: NotificationConfig
    services: Mapping[str, Service]
    errors: tuple[str, ...]
    redactor: Redactor


Loader = Callable[[Mapping[str, str], Mapping[str, str], str],
                  tuple[NotificationConfig, Mapping[str, Service], list[str]]]


def load_config(cm_data: Mapping[str, str], secrets: Mapping[str, str], name: str
                ) -> tuple[NotificationConfig, Mapping[str, Service], list[str]]:
    """ConfigMap ``name`` parsed over the shipped catalog and its services built (errors of both)."""
    config = parse_with_catalog(cm_data, name=name)
    services, service_errors = build_services(cm_data, secrets)
    return config, services, [*config.errors, *(str(e) for e in service_errors)]


class ConfigCache:
    """Loaded configurations by source, read through ``port`` (blocking: call it in a thread).

    A source is read again after ``ttl`` seconds or once ``invalidate`` says its
    ConfigMap or Secret changed (the handlers' watch). A source whose ConfigMap
    does not exist is remembered as None for the same time.
    """

    def __init__(self, port: NotificationsPort, *, ttl: float, loader: Loader = load_config,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.port, self.ttl, self.loader, self.clock = port, ttl, loader, clock
        self._cache: dict[Source, tuple[float, Loaded | None]] = {}
        self._lock = threading.Lock()

    def get(self, source: Source) -> Loaded | None:
        with self._lock:
            entry = self._cache.get(source)
        if entry is not None and self.clock() - entry[0] < self.ttl:
            return entry[1]
        loaded = self._read(source)
        with self._lock:
            self._cache[source] = (self.clock(), loaded)
        return loaded

    def first(self, sources: list[Source]) -> Loaded | None:
        """The first of ``sources`` whose ConfigMap exists."""
        for source in sources:
            loaded = self.get(source)
            if loaded is not None:
                return loaded
        return None

    def invalidate(self, namespace: str, name: str) -> list[Source]:
        """Forget every source using ConfigMap or Secret ``namespace/name``; the sources forgotten."""
        with self._lock:
            gone = [s for s in self._cache if s.namespace == namespace and name in (s.configmap, s.secret)]
            for source in gone:
                del self._cache[source]
        return gone

    def _read(self, source: Source) -> Loaded | None:
        cm = self.port.read_configmap(source.namespace, source.configmap)
        if cm is None:
            ACTIVE_SECRETS.forget(source)
            return None
        secrets = self.port.read_secret(source.namespace, source.secret)
        values = secret_values(secrets)
        ACTIVE_SECRETS.register(source, values)  # log lines are redacted too
        config, services, errors = self.loader(cm, secrets, source.configmap)
        scrub = redactor(values)
        errors = [scrub.clip(e, limit=MAX_ERROR_CHARS) for e in errors]
        for error in errors:
            log.warning("notifications: configuration error", namespace=source.namespace,
                        configmap=source.configmap, error=error)
        metrics.count_config_errors(namespace=source.namespace, configmap=source.configmap,
                                    errors=len(errors))
        return Loaded(source=source, config=config, services=services, errors=tuple(errors),
                      redactor=scrub)


@dataclass
class Backoff:
    """When each failed delivery may be tried again: ``base`` seconds, doubling up to ``cap``."""

    base: float
    cap: float
    clock: Callable[[], float] = time.monotonic
    _state: dict[Hashable, tuple[int, float]] = field(default_factory=dict)

    def remaining(self, key: Hashable) -> float:
        """Seconds until ``key`` may be tried (0: now)."""
        state = self._state.get(key)
        return max(0.0, state[1] - self.clock()) if state is not None else 0.0

    def failed(self, key: Hashable) -> float:
        attempts = self._state.get(key, (0, 0.0))[0] + 1
        delay = min(self.base * 2.0 ** (attempts - 1), self.cap)
        self._state[key] = (attempts, self.clock() + delay)
        return delay

    def attempts(self, key: Hashable) -> int:
        return self._state.get(key, (0, 0.0))[0]

    def succeeded(self, key: Hashable) -> None:
        self._state.pop(key, None)

    def forget(self, obj: ObjectId) -> None:
        for key in [k for k in self._state if isinstance(k, tuple) and k[:3] == obj]:
            del self._state[key]


def read_state(text: str | None) -> dict[str, Any]:
    """The state annotation as a mapping (an unreadable one counts as empty, as in Argo)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return dict(value) if isinstance(value, dict) else {}


def write_state(state: Mapping[str, Any]) -> str:
    """Go's json.Marshal of a map: keys sorted, no spaces (the annotation Argo writes)."""
    return json.dumps(dict(state), sort_keys=True, separators=(",", ":"))


def _annotations(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return (body.get("metadata") or {}).get("annotations") or {}


def _with_state(body: Mapping[str, Any], state: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``body`` whose state annotation is ``state`` (the body is left as it is)."""
    meta = dict(body.get("metadata") or {})
    meta["annotations"] = {**_annotations(body), STATE_ANNOTATION: write_state(state)}
    return {**body, "metadata": meta}


@dataclass
class _Send:
    service: Service
    notification: Notification
    recipient: str
    deadline: float


def _send(job: _Send) -> None:
    """In a send-pool thread: the service bounds itself by the deadline and raises DeliveryError."""
    job.service.send(job.notification, job.recipient, deadline_seconds=job.deadline)


@dataclass
class Notifier:
    """Plans, sends and records the notifications of one object at a time (see the module doc)."""

    port: NotificationsPort
    configs: ConfigCache
    settings: NotificationSettings
    send_pool: Executor
    kube_pool: Executor
    slots: TenantSlots
    backoff: Backoff
    planner: Planner = plan
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    tracker: VersionTracker = field(default_factory=VersionTracker)
    events: EventDeduper = field(default_factory=EventDeduper)
    observer: Observer = false_conditions
    _unrecorded: dict[ObjectId, dict[str, Any]] = field(default_factory=dict)
    # Conditions seen false in watched states not planned yet, by resourceVersion (``observe``).
    _rearmed: dict[ObjectId, list[tuple[int, frozenset[str]]]] = field(default_factory=dict)
    _rearmed_lock: threading.Lock = field(default_factory=threading.Lock)

    async def _kube(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.kube_pool, fn)

    async def load(self, sources: list[Source]) -> Loaded | None:
        loaded: Loaded | None = await self._kube(lambda: self.configs.first(sources))
        return loaded

    def observe(self, kind: str, body: Mapping[str, Any], *, loaded: Loaded,
                project: Mapping[str, Any] | None = None,
                context_vars: Mapping[str, Any] | None = None) -> None:
        """A state the watch delivered: remember which conditions without oncePer are false in it.

        The worker plans on the newest body only, so a state that came and went between two
        plans (Succeeded -> Running -> Succeeded in 0.3 s) would never make ``on-deployed``
        look false, and the second Succeeded would not be sent. The next ``notify`` of the
        object drops these conditions' keys from the record before planning, as if it had
        planned that state. In memory only: after a restart the annotation alone decides,
        so nothing is sent again. Blocking-free and cheap (the conditions of the subscribed
        triggers); called from the watch handler's thread, hence the lock.
        """
        meta = body.get("metadata") or {}
        obj: ObjectId = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        found = self.observer(body, kind=kind, config=loaded.config, project=project,
                              context_vars=context_vars or {}, now=self.now())
        if not found:
            return
        with self._rearmed_lock:
            if obj not in self._rearmed and len(self._rearmed) >= MAX_REARMED_OBJECTS:
                self._rearmed.pop(next(iter(self._rearmed)))
            states = self._rearmed.setdefault(obj, [])
            states.append((resource_version(body) or 0, found))
            del states[:-MAX_REARMED_STATES]

    def _take_rearmed(self, obj: ObjectId, body: Mapping[str, Any]) -> list[tuple[int, frozenset[str]]]:
        """The states observed up to ``body``'s version; later ones wait for a plan of a later body.

        A state newer than the body planned must not re-arm it: the body's own true condition
        would be sent a second time.
        """
        version = resource_version(body)
        with self._rearmed_lock:
            states = self._rearmed.pop(obj, [])
            taken = [s for s in states if version is None or s[0] <= version]
            later = [s for s in states if not (version is None or s[0] <= version)]
            if later:
                self._rearmed[obj] = later
        return taken

    def _give_back_rearmed(self, obj: ObjectId, taken: list[tuple[int, frozenset[str]]]) -> None:
        if taken:
            with self._rearmed_lock:
                self._rearmed[obj] = sorted([*taken, *self._rearmed.get(obj, [])],
                                            key=lambda s: s[0])[-MAX_REARMED_STATES:]

    async def notify(self, kind: str, body: Mapping[str, Any], *, loaded: Loaded,
                     project: Mapping[str, Any] | None = None,
                     context_vars: Mapping[str, Any] | None = None) -> float | None:
        """Send what ``body`` calls for now; the seconds until a failed send is tried again (or None)."""
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        obj: ObjectId = (kind, namespace, name)
        # The states observed up to this body, as if each had been planned in turn; a later
        # one is for the next notify (its event queued the object again). Given back on failure.
        taken = self._take_rearmed(obj, body)
        try:
            return await self._notify(kind, body, obj=obj, loaded=loaded, project=project,
                                      context_vars=context_vars,
                                      rearmed=set().union(*(s[1] for s in taken)))
        except BaseException:
            self._give_back_rearmed(obj, taken)
            raise

    async def _notify(self, kind: str, body: Mapping[str, Any], *, obj: ObjectId, loaded: Loaded,
                      project: Mapping[str, Any] | None, context_vars: Mapping[str, Any] | None,
                      rearmed: set[str]) -> float | None:
        _, namespace, name = obj
        current = read_state(_annotations(body).get(STATE_ANNOTATION))
        armed = rearm(current, rearmed) if rearmed else current
        planned = _with_state(body, armed) if armed != current else body
        result = self.planner(planned, kind=kind, config=loaded.config, project=project,
                              context_vars=context_vars or {}, now=self.now())
        for error in result.errors:
            await self._warn(body, REASON_TEMPLATE, MSG_PLAN_ERROR.format(error=error), loaded)
        before = read_state(_annotations(planned).get(STATE_ANNOTATION))
        target = read_state(result.annotation) if result.annotation is not None else before
        pending = {d.key for d in result.deliveries}
        # What may be written now: the plan's state without the keys not yet delivered,
        # plus what was sent earlier but whose record did not make it.
        state = {k: v for k, v in target.items() if k not in pending}
        unrecorded = self._unrecorded.get(obj, {})
        state.update({k: v for k, v in unrecorded.items() if k in pending})
        retry: float | None = None
        for delivery in result.deliveries:
            if delivery.key in state:
                continue
            wait = self.backoff.remaining((*obj, delivery.key))
            if wait > 0:
                retry = wait if retry is None else min(retry, wait)
                continue
            if not await self._deliver(body, delivery, loaded):
                delay = self.backoff.failed((*obj, delivery.key))
                retry = delay if retry is None else min(retry, delay)
                continue
            self.backoff.succeeded((*obj, delivery.key))
            state[delivery.key] = target.get(delivery.key, int(self.now().timestamp()))
            self._unrecorded.setdefault(obj, {})[delivery.key] = state[delivery.key]
            current = await self._record(kind, namespace, name, state, current, obj)
        if state != current:
            await self._record(kind, namespace, name, state, current, obj)
        return retry

    async def _record(self, kind: str, namespace: str, name: str, state: dict[str, Any],
                      current: dict[str, Any], obj: ObjectId) -> dict[str, Any]:
        """Write the state annotation; on success it is the object's state (and nothing is unrecorded)."""
        value = write_state(state)
        written = await self._kube(lambda: self.port.annotate(
            kind, namespace, name, {STATE_ANNOTATION: value}))
        self.tracker.record((namespace, f"{kind}/{name}"), written)
        self._unrecorded.pop(obj, None)
        return dict(state)

    async def _deliver(self, body: Mapping[str, Any], delivery: Delivery, loaded: Loaded) -> bool:
        """Send one delivery; False (reported) when it failed."""
        namespace = str((body.get("metadata") or {}).get("namespace") or "")
        service = loaded.services.get(delivery.service)
        error: str | None = None
        if service is None:
            error = MSG_NOT_CONFIGURED.format(service=delivery.service, namespace=loaded.source.namespace,
                                              configmap=loaded.source.configmap)
        else:
            deadline = self.settings.send_deadline_seconds
            job = _Send(service=service, notification=delivery.notification,
                        recipient=delivery.recipient, deadline=deadline)
            try:
                async with worker_released():
                    future = await self.slots.submit(namespace, self.send_pool, _send, job)
                    await asyncio.wait_for(future, timeout=deadline + DEADLINE_GRACE_SECONDS)
            except TimeoutError:
                error = MSG_NO_ANSWER.format(seconds=deadline)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a service's failure is reported, never a crash
                error = str(exc) or type(exc).__name__
        metrics.count_delivery(trigger=delivery.trigger, service=delivery.service, succeeded=error is None)
        meta = body.get("metadata") or {}
        recipient = f' (recipient "{delivery.recipient}")' if delivery.recipient else ""
        if error is None:
            self.events.clear(body)  # a failure coming back later is reported again
            log.info("notification sent", namespace=meta.get("namespace"), name=meta.get("name"),
                     trigger=delivery.trigger, service=delivery.service, recipient=delivery.recipient)
            # The delivery log, beside the metric: one Normal Event per send (never deduplicated).
            await self._post(body, NORMAL, REASON_SENT, loaded.redactor.clip(MSG_SENT.format(
                trigger=delivery.trigger, service=delivery.service, recipient=recipient), limit=MAX_ERROR_CHARS))
            return True
        message = MSG_FAILED.format(trigger=delivery.trigger, service=delivery.service,
                                    recipient=recipient, error=error)
        await self._warn(body, REASON_FAILED, message, loaded)
        return False

    async def _warn(self, body: Mapping[str, Any], reason: str, message: str, loaded: Loaded) -> None:
        """A Warning Event (once per distinct message) and a log line, both without secrets."""
        message = loaded.redactor.clip(message, limit=MAX_ERROR_CHARS)
        meta = body.get("metadata") or {}
        log.warning(message, namespace=meta.get("namespace"), name=meta.get("name"), reason=reason)
        if self.events.should_post(body, reason, message):
            await self._post(body, WARNING, reason, message)

    async def _post(self, body: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        meta = body.get("metadata") or {}
        try:
            await self._kube(lambda: self.port.event(body, event_type=event_type, reason=reason, message=message))
        except Exception as exc:  # noqa: BLE001 - an Event that cannot be posted is logged, not fatal
            log.warning("notifications: cannot post an Event", namespace=meta.get("namespace"),
                        name=meta.get("name"), error=str(exc))

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """The object is gone: drop its backoff and anything unrecorded."""
        obj: ObjectId = (kind, namespace, name)
        self.backoff.forget(obj)
        self._unrecorded.pop(obj, None)
        with self._rearmed_lock:
            self._rearmed.pop(obj, None)
