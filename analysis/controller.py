"""The reconcile of one AnalysisRun: the analysis controller's only I/O layer.

Called by analysis/handlers.py (one work-queue worker per key at a time):

    seconds = await controller.reconcile(key, body)

where ``body`` is the run as the kopf index holds it. One reconcile:

1. resolves the run's args (``templates.resolve_run``), reading secretKeyRef
   Secrets on demand in a thread (cached for this reconcile only);
2. asks the state machine (``analysis.run``) which provider calls are due and
   makes them in a bounded thread pool, at most ``namespace_limit`` calls per
   namespace at once (common/fairness.py), so one tenant's slow
   endpoint never delays another's; a provider that raises or hangs becomes
   an Error measurement, never a failed reconcile;
3. records the observations, assesses metric and run phases, redacts every
   form of every secret value to ``*****`` in messages, values and metadata
   (common.redaction) and clips them (analysis.bounds);
4. merge-patches ``status`` on the main object (AnalysisRun has no status
   subresource) only when it changed, guarded by the resourceVersion it read;
   a status over the byte budget is first degraded, and one that cannot be
   stored (over budget even then, or refused by the API server as too large or
   invalid) ends the run Error with a message saying so, instead of a retry
   that would fail the same way forever;
5. posts ``AnalysisRun<Phase>`` Events on phase changes, updates the Prometheus
   metrics and returns the seconds until it is due again (None: nothing waits).

Completed runs are only kept until their ``ttlStrategy`` expires, then deleted.
All blocking calls (kubernetes client, providers) run in executors, never on the
event loop. Decisions stay in ``analysis.run``; this module only wires them.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from analysis import bounds
from analysis import metrics as prom
from analysis import run as machine
from analysis.api.models import (
    AnalysisRun,
    AnalysisRunStatus,
    Metric,
)
from analysis.api.phases import AnalysisPhase
from analysis.config import DEFAULT_NAMESPACE_LIMIT
from analysis.providers.base import MeasurementContext, MetricProvider
from analysis.providers.prometheus import RESOLVED_QUERY_KEY
from analysis.run import Observation
from analysis.templates import (
    ResolvedRun,
    resolve_run,
    run_error_message,
)
from common.api import (
    GROUP,
    VERSION,
    SpecError,
    format_time,
    parse,
)
from common.events import post_event
from common.fairness import TenantSlots
from common.kubeclient import is_status
from common.kubewrite import CountedWriter
from common.logging import get_logger
from common.redaction import (
    ACTIVE_SECRETS,
    ActiveSecrets,
    Redactor,
    redactor,
)
from common.shell import VersionTracker, resource_version

log = get_logger("tidegate.analysis")

Key = tuple[str, str]  # (namespace, name) of an AnalysisRun
PLURAL = "analysisruns"
MERGE_PATCH = "application/merge-patch+json"

ECHO_MIN_WAIT_SECONDS = 0.05
# A provider has its own total deadline (web and Prometheus: at most
# LONGEST_DEADLINE_SECONDS); this safety net only frees the reconcile from one
# that hangs anyway (DNS, a provider bug). Python cannot stop the thread: it
# keeps its namespace's slot until it ends, so it can only ever slow its own
# namespace down.
MEASUREMENT_DEADLINE_SECONDS = 300.0
EVENT_REASON = "AnalysisRun{phase}"
EVENT_NORMAL, EVENT_WARNING = "Normal", "Warning"
MSG_EVENT = "AnalysisRun {phase}"
MSG_EVENT_WITH_DETAIL = "AnalysisRun {phase}: {message}"
MSG_PROVIDER_RAISED = "{kind} provider failed: {error_type}: {error}"
MSG_PROVIDER_HUNG = "{kind} provider did not answer within {seconds:g}s"
MSG_NO_SLOT = (
    "{kind} measurement did not start within {seconds:g}s: namespace {namespace} already has "
    "{limit} provider calls running (the analysis controller's namespace limit); check its "
    "other AnalysisRuns for endpoints that answer slowly"
)
LOG_THREAD_LEFT = (
    "gave up waiting for the provider; its thread keeps one of the namespace's "
    "measurement slots until the call returns"
)
LOG_GC_FAILED = "garbage collection of a metric failed"
LOG_EVENT_FAILED = "could not post the AnalysisRun event"
LOG_TTL_EXPIRED = "deleted: ttlStrategy expired"
MSG_MALFORMED = "AnalysisRun spec cannot be read: {error}"
# The API server's answers to a write it will never accept, however often it is retried.
REJECTED_STATUS_CODES = frozenset({413, 422})
TOO_LARGE_MARKERS = ("request entity too large", "request is too large", "too large")
MAX_EVENT_MESSAGE_CHARS = 1024
LOG_STATUS_NOT_STORED = (
    "the API server refused even the shortest Error status; not retrying until the run changes"
)
_WARNING_PHASES = frozenset({AnalysisPhase.FAILED, AnalysisPhase.ERROR, AnalysisPhase.INCONCLUSIVE})

T = TypeVar("T")


# --- the API surface a reconcile needs (a fake in tests) ------------------------------------

class KubePort(Protocol):
    """The blocking API calls of a reconcile; always called from a thread."""

    def read_secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """The Secret's decoded data, or None when it does not exist."""

    def patch_run(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        """JSON-merge-patch the AnalysisRun; return the written object."""

    def delete_run(self, namespace: str, name: str) -> None:
        """Delete the AnalysisRun (a missing one is fine)."""

    def post_event(self, involved: Mapping[str, Any], *, event_type: str, reason: str,
                   message: str) -> None:
        """Create an Event about ``involved``."""


class KubeClient:
    """KubePort over the kubernetes client (one shared ApiClient)."""

    def __init__(self, api: Any) -> None:
        from kubernetes import client  # the controller's tests never need the real client

        self._api = api
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        # Counted in controller_clientset_k8s_request_total beside the rollout controller's.
        self._writes = CountedWriter()

    def read_secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        try:
            secret = self._core.read_namespaced_secret(name=name, namespace=namespace)
        except Exception as exc:
            if is_status(exc, 404):
                return None
            raise
        return {key: base64.b64decode(value).decode("utf-8", errors="replace")
                for key, value in (secret.data or {}).items()}

    def patch_run(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        written: Mapping[str, Any] = self._writes.send(
            "AnalysisRun", "patch", lambda: self._custom.patch_namespaced_custom_object(
                group=GROUP, version=VERSION, namespace=namespace, plural=PLURAL, name=name,
                body=dict(patch), _content_type=MERGE_PATCH,
            ), count_errors=True)
        return written

    def delete_run(self, namespace: str, name: str) -> None:
        try:
            self._writes.send("AnalysisRun", "delete", lambda: self._custom.delete_namespaced_custom_object(
                group=GROUP, version=VERSION, namespace=namespace, plural=PLURAL, name=name,
            ), count_errors=True)
        except Exception as exc:
            if not is_status(exc, 404):
                raise

    def post_event(self, involved: Mapping[str, Any], *, event_type: str, reason: str,
                   message: str) -> None:
        post_event(self._api, involved=involved, event_type=event_type, reason=reason,
                   message=message)


# --- small pure helpers ----------------------------------------------------------------------

def redact_status(status: dict[str, Any], secrets: Sequence[str]) -> dict[str, Any]:
    """Redact every form of a secret in every message, value and metadata value, and clip them.

    Only those fields: a short secret must not mangle names or timestamps.
    """
    return bounds.shape_status(status, redactor(secrets))


def rejection(exc: BaseException) -> tuple[int, str, str] | None:
    """(code, reason, the server's message) when ``exc`` is an answer that a retry
    cannot change: 413, 422, or any status whose text says the request is too large."""
    code = getattr(exc, "status", None)
    if not isinstance(code, int) or not 400 <= code < 600:
        return None
    reason = str(getattr(exc, "reason", "") or "")
    body = getattr(exc, "body", None)
    detail = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        parsed = json.loads(detail)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        detail = parsed["message"]
    text = f"{reason} {detail}".lower()
    if code in REJECTED_STATUS_CODES or any(marker in text for marker in TOO_LARGE_MARKERS):
        return code, reason, detail or reason
    return None


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level status fields that differ (merge-patch semantics: lists are replaced).

    A None in ``new`` deletes the field; it is only sent when the field is there now.
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if value is None and old.get(key) is None:
            continue
        if old.get(key) != value:
            patch[key] = value
    return patch


def provider_type(metric: Metric) -> str:
    """Argo's metric type label: ``Prometheus``, ``Job``, ``Web``, ... (first provider set)."""
    kinds = metric.provider.kinds()
    return kinds[0][:1].upper() + kinds[0][1:] if kinds else ""


def ttl_remaining(run: AnalysisRun, now: datetime) -> float | None:
    """Seconds until a completed run's ttlStrategy deletes it, or None when it has none."""
    ttl, status = run.spec.ttl_strategy, run.status
    if ttl is None or status.completed_at is None:
        return None
    seconds = ttl.seconds_after_completion
    if status.phase == AnalysisPhase.SUCCESSFUL and ttl.seconds_after_success is not None:
        seconds = ttl.seconds_after_success
    if status.phase in (AnalysisPhase.FAILED, AnalysisPhase.ERROR) and (
        ttl.seconds_after_failure is not None
    ):
        seconds = ttl.seconds_after_failure
    if seconds is None:
        return None
    return (status.completed_at + timedelta(seconds=seconds) - now).total_seconds()


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- measuring -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Task:
    """One due provider call with everything the thread needs."""

    metric: Metric
    kind: machine.MeasurementKind
    provider: MetricProvider
    ctx: MeasurementContext
    metadata: Mapping[str, str]  # of the in-flight measurement (resume / terminate)
    retention: int


def _call_provider(task: _Task) -> Observation:
    """Runs in a thread: the provider call, then its garbage collection. Never raises."""
    try:
        if task.kind == machine.MeasurementKind.START:
            observation = task.provider.run(task.ctx)
        elif task.kind == machine.MeasurementKind.RESUME:
            observation = task.provider.resume(task.ctx, task.metadata)
        else:
            observation = task.provider.terminate(task.ctx, task.metadata)
    except Exception as exc:  # a provider must not raise; if one does, it is an Error measurement
        message = MSG_PROVIDER_RAISED.format(
            kind=task.provider.kind, error_type=type(exc).__name__, error=exc)
        return Observation.error(task.ctx.redact(message), **dict(task.metadata))
    if observation.resume_at is None:
        try:
            task.provider.garbage_collect(task.ctx, task.retention)
        except Exception:  # cleanup is best effort; the measurement stands
            log.warning(LOG_GC_FAILED, namespace=task.ctx.namespace, name=task.ctx.run_name,
                        metric=task.metric.name, exc_info=True)
    return observation


# --- the controller --------------------------------------------------------------------------

@dataclass
class Controller:
    """Reconciles AnalysisRuns; one instance per process, shared by the workers."""

    kube: KubePort
    providers: Callable[[Mapping[str, Any]], MetricProvider]
    measure_pool: Executor
    api_pool: Executor
    clock: Callable[[], datetime] = _utcnow
    measurement_deadline: float = MEASUREMENT_DEADLINE_SECONDS
    # Provider calls in flight per namespace, in front of measure_pool.
    slots: TenantSlots = field(default_factory=lambda: TenantSlots(limit=DEFAULT_NAMESPACE_LIMIT))
    # The stale-write guard: the resourceVersion of our last status write per run
    # (analysis/handlers.py shares it with its controller shell).
    written: VersionTracker = field(default_factory=VersionTracker)
    status_budget: int = bounds.STATUS_BUDGET_BYTES
    # Secrets of the runs in progress, for the log filter (common.redaction).
    log_secrets: ActiveSecrets = field(default_factory=lambda: ACTIVE_SECRETS)
    # resourceVersion of runs whose every status write was refused: nothing to do
    # until someone changes the run.
    _unwritable: dict[Key, int] = field(default_factory=dict)

    async def _in(self, pool: Executor, fn: Callable[..., T], *args: Any) -> T:
        # run_in_executor drops contextvars: carry them, so the thread's log lines name the run
        return await asyncio.get_running_loop().run_in_executor(
            pool, contextvars.copy_context().run, fn, *args)

    def forget(self, key: Key) -> None:
        """The run is gone: drop what we remember about it and its metric series."""
        self.written.forget(key)
        self._unwritable.pop(key, None)
        self.log_secrets.forget(key)
        prom.forget_run(namespace=key[0], name=key[1])

    async def reconcile(self, key: Key, body: Mapping[str, Any] | None) -> float | None:
        """Bring one AnalysisRun forward; return seconds until it is due again, or None."""
        if body is None:
            self.forget(key)
            return None
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp") or self._is_stale(key, body):
            return None  # being deleted, or our newer write is on its way back through the watch
        if self._unwritable.get(key) == resource_version(body):
            return None  # its status cannot be stored and nothing changed since
        try:
            run = parse(AnalysisRun, body)
        except SpecError as err:
            await self._write(key, body, self._malformed_status(body, err), secrets=())
            return None
        if run.status.phase is not None and run.status.phase.completed:
            self.log_secrets.forget(key)
            self._publish(key, run, run.spec.metrics)
            return await self._expire(key, run)
        echo = self._echo_wait(key, body, run)
        if echo is not None:
            return echo
        return await self._advance(key, body, run)

    def _echo_wait(self, key: Key, body: Mapping[str, Any], run: AnalysisRun) -> float | None:
        """Seconds to wait when ``body`` is only our own last write coming back.

        Nothing changed since we wrote it (any other change would carry a newer
        resourceVersion), so unless a measurement is already due there is no need
        to resolve args and assess again: each measurement then costs one
        reconcile, not two. None means "reconcile normally".
        """
        if self.written.last(key) != resource_version(body) or run.spec.terminate:
            return None
        try:
            wait = self._wakeup(run, run.spec.metrics)
        except (ValueError, TypeError):
            return None  # templated intervals: the full path resolves them
        return wait if wait is not None and wait > ECHO_MIN_WAIT_SECONDS else None

    # -- one step of a running run ---------------------------------------------------------

    async def _advance(self, key: Key, body: Mapping[str, Any], run: AnalysisRun) -> float | None:
        started = self.clock()
        if any(arg.value_from is not None for arg in run.spec.args or []):
            resolved = await self._in(self.api_pool, self._resolve, run)  # reads Secrets
        else:
            resolved = self._resolve(run)  # pure: no thread hop
        if isinstance(resolved, str):
            status = machine.mark_error(run.status, resolved, started)
            metrics: Sequence[Metric] = run.spec.metrics
            secrets: tuple[str, ...] = ()
        else:
            metrics, secrets = resolved.metrics, resolved.secrets
            self.log_secrets.register(key, secrets)
            status = await self._measure_and_assess(run, resolved, started)
        status = await self._write(key, body, status, secrets=secrets)
        new_run = run.model_copy(update={"status": status})
        self._publish(key, new_run, metrics, secrets=secrets)
        if status.phase is not None and status.phase.completed:
            return await self._expire(key, new_run)
        return self._wakeup(new_run, metrics)

    def _resolve(self, run: AnalysisRun) -> ResolvedRun | str:
        """Runs in a thread (Secret reads). The resolved run, or the run's error message."""
        namespace = run.metadata.namespace or ""
        cache: dict[str, Mapping[str, str] | None] = {}

        def secret(name: str, key: str) -> str | None:
            if name not in cache:
                cache[name] = self.kube.read_secret(namespace, name)
            data = cache[name]
            return None if data is None else data.get(key)

        try:
            return resolve_run(run.spec, secret)
        except SpecError as err:
            return run_error_message(err)

    async def _measure_and_assess(
        self, run: AnalysisRun, resolved: ResolvedRun, started: datetime
    ) -> AnalysisRunStatus:
        due = machine.due_measurements(run, started, resolved.metrics)
        tasks = [self._task(run, resolved, item, started) for item in due]
        observations = await asyncio.gather(*(self._measure(task) for task in tasks))
        finished = self.clock()
        status = run.status
        for task, observation in zip(tasks, observations, strict=True):
            query = observation.metadata.get(RESOLVED_QUERY_KEY)
            status = machine.record(
                status, task.metric, observation, finished, started_at=started,
                retention=task.retention, secrets=resolved.secrets,
                metric_metadata={RESOLVED_QUERY_KEY: query} if query else None,
            )
        return machine.assess_run(
            run.model_copy(update={"status": status}), finished, resolved.metrics)

    def _task(self, run: AnalysisRun, resolved: ResolvedRun, due: machine.DueMeasurement,
              now: datetime) -> _Task:
        index = next(i for i, m in enumerate(resolved.metrics) if m.name == due.metric)
        document = resolved.documents[index]
        result = run.status.result(due.metric)
        last = result.measurements[-1] if result is not None and result.measurements else None
        ctx = MeasurementContext(
            namespace=run.metadata.namespace or "", run_name=run.metadata.name or "",
            run_uid=run.metadata.uid or "", metric=document, now=now, secrets=resolved.secrets,
        )
        return _Task(
            metric=resolved.metrics[index], kind=due.kind, provider=self.providers(document),
            ctx=ctx, metadata=dict((last.metadata or {}) if last is not None else {}),
            retention=machine.retention_limit(run.spec, due.metric),
        )

    async def _measure(self, task: _Task) -> Observation:
        started = False

        async def call() -> Observation:
            nonlocal started
            future = await self.slots.submit(
                task.ctx.namespace, self.measure_pool, _call_provider, task)
            started = True
            return await future

        # The safety net covers the wait for a slot too: a namespace whose slots
        # are all held by hung calls gets Errors that say so, not an endless wait.
        try:
            return await asyncio.wait_for(call(), self.measurement_deadline)
        except TimeoutError:
            pass
        if started:
            log.warning(LOG_THREAD_LEFT, namespace=task.ctx.namespace, name=task.ctx.run_name,
                        metric=task.metric.name, provider=task.provider.kind,
                        seconds=self.measurement_deadline)
            message = MSG_PROVIDER_HUNG.format(kind=task.provider.kind,
                                               seconds=self.measurement_deadline)
        else:
            message = MSG_NO_SLOT.format(kind=task.provider.kind, seconds=self.measurement_deadline,
                                         namespace=task.ctx.namespace, limit=self.slots.limit)
        return Observation.error(message, **dict(task.metadata))

    # -- writing, announcing, publishing ---------------------------------------------------

    async def _write(self, key: Key, body: Mapping[str, Any], status: AnalysisRunStatus,
                     *, secrets: Sequence[str]) -> AnalysisRunStatus:
        """Patch the changed status fields (if any), announce a phase change; return the
        status that now stands.

        That is ``status``, unless it could not be stored: over the byte budget even
        in its shortest form, or refused by the API server (413, 422, "too large").
        Then the run ends Error with a message saying why, and that is returned.
        """
        old = dict(body.get("status") or {})
        shaped = redact_status(status.to_json(), secrets)
        new = bounds.fit_status(shaped, budget=self.status_budget)
        if new is None:
            new = bounds.over_budget_status(shaped, now=format_time(self.clock()),
                                            budget=self.status_budget)
        try:
            await self._patch(key, body, old, new)
        except Exception as exc:
            refused = rejection(exc)
            if refused is None:
                raise
            new = await self._write_refused(key, body, old, new, refused, redactor(secrets))
        if new.get("phase") != old.get("phase") and new.get("phase"):
            await self._announce(body, str(new["phase"]), str(new.get("message") or ""),
                                 redactor(secrets))
        if new.get("phase") == shaped.get("phase"):
            return status  # stored as it is, or with shorter texts and fewer old measurements
        return AnalysisRunStatus.model_validate({k: v for k, v in new.items() if v is not None})

    async def _patch(self, key: Key, body: Mapping[str, Any], old: Mapping[str, Any],
                     new: Mapping[str, Any]) -> None:
        patch = status_patch(old, new)
        if not patch:
            return
        version = (body.get("metadata") or {}).get("resourceVersion")
        # The resourceVersion makes the write conditional on the run we assessed.
        document = {"metadata": {"resourceVersion": version}, "status": patch}
        written = await self._in(self.api_pool, self.kube.patch_run, key[0], key[1], document)
        self.written.record(key, written)

    async def _write_refused(self, key: Key, body: Mapping[str, Any], old: Mapping[str, Any],
                             new: Mapping[str, Any], refused: tuple[int, str, str],
                             redact: Redactor) -> dict[str, Any]:
        """The API server will never take ``new``: store the shortest Error status instead.

        If even that is refused, remember the run's version so it is not retried
        until the run changes; the Event still tells its owner.
        """
        code, reason, detail = refused
        error = bounds.rejected_status(new, code=code, reason=reason, detail=detail,
                                       now=format_time(self.clock()), redactor=redact,
                                       budget=self.status_budget)
        try:
            await self._patch(key, body, old, error)
        except Exception as exc:
            again = rejection(exc)
            if again is None:
                raise
            version = resource_version(body)
            if version is not None:
                self._unwritable[key] = version
            log.warning(LOG_STATUS_NOT_STORED, namespace=key[0], name=key[1],
                        error=redact.clip(f"{again[0]} {again[1]}", limit=bounds.SHORT_CHARS))
        return error

    async def _announce(self, body: Mapping[str, Any], phase: str, message: str,
                        redact: Redactor) -> None:
        """Post AnalysisRun<Phase>; a failed post is logged, never retried (the patch stands)."""
        text = MSG_EVENT_WITH_DETAIL if message else MSG_EVENT
        event_type = EVENT_WARNING if phase in _WARNING_PHASES else EVENT_NORMAL
        shown = redact.clip(text.format(phase=phase, message=message),
                            limit=MAX_EVENT_MESSAGE_CHARS, tail=bounds.MESSAGE_TAIL_CHARS // 2)
        try:
            await self._in(self.api_pool, _post, self.kube, body, event_type,
                           EVENT_REASON.format(phase=phase), shown)
        except Exception:
            meta = body.get("metadata") or {}
            log.warning(LOG_EVENT_FAILED, namespace=meta.get("namespace"), name=meta.get("name"),
                        phase=phase, exc_info=True)

    def _publish(self, key: Key, run: AnalysisRun, metrics: Sequence[Metric], *,
                 secrets: Sequence[str] = ()) -> None:
        dry = machine.dry_run_metrics(run.spec, [m.name for m in metrics])
        # A metric's name is substituted like the rest of it, so it can hold an arg.
        redact = redactor(secrets)
        infos = []
        for metric in metrics:
            result = run.status.result(metric.name)
            phase = result.phase if result is not None else AnalysisPhase.PENDING
            infos.append(prom.MetricInfo(metric=redact.redact(metric.name),
                                         type=provider_type(metric),
                                         dry_run=metric.name in dry, phase=str(phase)))
        phase = run.status.phase or AnalysisPhase.PENDING
        prom.observe_run(namespace=key[0], name=key[1], phase=str(phase), metrics=infos)

    # -- timing ----------------------------------------------------------------------------

    def _wakeup(self, run: AnalysisRun, metrics: Sequence[Metric]) -> float | None:
        now = self.clock()
        at = machine.next_wakeup(run, now, metrics)
        return None if at is None else max((at - now).total_seconds(), 0.0)

    async def _expire(self, key: Key, run: AnalysisRun) -> float | None:
        """Delete a completed run whose TTL has passed; else wait for it."""
        remaining = ttl_remaining(run, self.clock())
        if remaining is None or remaining > 0:
            return remaining
        await self._in(self.api_pool, self.kube.delete_run, key[0], key[1])
        log.info(LOG_TTL_EXPIRED, namespace=key[0], name=key[1])
        return None

    def _is_stale(self, key: Key, body: Mapping[str, Any]) -> bool:
        return self.written.is_stale(key, body)

    def _malformed_status(self, body: Mapping[str, Any], err: SpecError) -> AnalysisRunStatus:
        """An Error status for a run whose spec does not even parse (only phase and message)."""
        old = body.get("status") or {}
        if old.get("phase") in {str(p) for p in AnalysisPhase if p.completed}:
            return AnalysisRunStatus.model_validate({})  # already over: patch nothing
        now = format_time(self.clock())
        return AnalysisRunStatus.model_validate({
            "phase": AnalysisPhase.ERROR, "message": MSG_MALFORMED.format(error=err.message),
            "startedAt": old.get("startedAt") or now, "completedAt": now,
        })


def _post(kube: KubePort, body: Mapping[str, Any], event_type: str, reason: str,
          message: str) -> None:
    kube.post_event(body, event_type=event_type, reason=reason, message=message)
