"""The job metric provider: a measurement is a Kubernetes Job; its outcome is the verdict.

Called through ``analysis.providers.registry`` by the AnalysisRun controller for
metrics with ``provider.job``. It follows Argo Rollouts' ``metricproviders/job``:

* ``run`` creates a ``batch/v1`` Job from ``provider.job.metadata`` and
  ``provider.job.spec`` in the run's namespace, owned by the AnalysisRun, and
  returns an in-flight Observation (phase Running, ``resume_at`` = now + 10 s,
  metadata ``job-name`` / ``job-namespace``).
* ``resume`` reads the Job: condition Complete -> Successful, Failed (including
  DeadlineExceeded and BackoffLimitExceeded) -> Failed, a pod that cannot pull
  its image -> Inconclusive, anything else -> in flight again.
* ``terminate`` deletes the Job and marks the measurement Inconclusive
  ("Metric Terminated").
* ``garbage_collect`` keeps the newest ``limit`` Jobs of a run's metric.

The measurement metadata comes back from the run's status, which anyone allowed
to update the run can rewrite (AnalysisRun has no status subresource). So it is
only a hint: ``resume`` and ``terminate`` act on a Job only when it is in the
run's own namespace, its name is one ``job_name`` gives for this run and metric,
and the Job read carries the run's uid label, the metric annotation and an
ownerReference to the run's uid (``_owned_by``). Anything else is refused with
an Error measurement naming the run, the metric and the Job (``MSG_REFUSED``),
before any call to the API server for a location, after the read for ownership.
``run`` adopts, and ``garbage_collect`` deletes, only Jobs selected by the run-uid
label that also pass ``_owned_by``.

Job names are Argo's ``{run-uid}.{metric}.{n}``, made a valid DNS-1123 name of
at most 63 characters (the Job controller copies the name into a pod label).
The controller does not tell a provider how many measurements a metric has
taken, so ``n`` comes from the Jobs that already exist (one more than the
highest index seen). Restarts are idempotent: if a Job of this run and metric
is still active when ``run`` is called, the controller lost track of it (it
crashed between creating it and writing status), and ``run`` adopts it instead
of starting a second one; an AlreadyExists on create is adopted the same way.

The kubernetes client (``BatchV1Api``, optionally ``CoreV1Api``) is passed in,
so unit tests give a fake; it is untyped, hence ``Any`` at that boundary. Its
calls block, so the controller runs providers in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from analysis.api.phases import AnalysisPhase
from analysis.providers.base import MSG_TERMINATED, MeasurementContext
from analysis.run import Observation
from common.logging import get_logger

PROVIDER_KIND = "Job"

# Argo's keys, so tools written for Argo find our Jobs.
RUN_UID_LABEL = "analysisrun.argoproj.io/uid"
RUN_NAME_LABEL = "analysisrun.argoproj.io/name"
METRIC_NAME_LABEL = "analysisrun.argoproj.io/metric-name"
RUN_NAME_ANNOTATION = "analysisrun.argoproj.io/run-name"
METRIC_NAME_ANNOTATION = "analysisrun.argoproj.io/metric-name"
# Tidegate's own: the measurement number n in the Job's name.
INDEX_ANNOTATION = "tidegate.dev/measurement-index"

JOB_NAME_KEY = "job-name"
JOB_NAMESPACE_KEY = "job-namespace"

RESUME_INTERVAL = timedelta(seconds=10)
MAX_NAME_LENGTH = 63
# Waiting reasons after which a pod will not start without someone fixing the spec.
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})

MSG_NO_CONFIG = (
    'metric "{metric}": provider.job.spec is missing; it needs a Job spec with a pod template'
)
MSG_NO_UID = 'metric "{metric}": the AnalysisRun has no uid yet, so its Job cannot be owned by it'
MSG_CREATE_FAILED = "could not create Job {namespace}/{name}: {error}"
MSG_LIST_FAILED = "could not list the Jobs of AnalysisRun {namespace}/{run}: {error}"
MSG_FOREIGN_JOB = (
    "Job {namespace}/{name} already exists and belongs to something else; "
    "delete it or rename metric {metric}"
)
MSG_READ_FAILED = "could not read Job {namespace}/{name}: {error}"
MSG_JOB_GONE = "Job {namespace}/{name} no longer exists; it was deleted before it finished"
MSG_NO_JOB_NAME = "the measurement has no job-name in its metadata, so there is no Job to resume"
MSG_JOB_COMPLETE = "Job {namespace}/{name} completed"
MSG_JOB_FAILED = "Job {namespace}/{name} failed: {reason}{detail}"
MSG_IMAGE_PULL = "Job {namespace}/{name}: container {container} cannot start ({reason}){detail}"
MSG_DELETE_FAILED = "could not delete Job {namespace}/{name}: {error}"
MSG_UNEXPECTED = "job measurement failed unexpectedly: {error}"
# The measurement metadata (from the run's status, which users can edit) names a
# Job this run did not create: say which, and why, and touch nothing.
MSG_REFUSED = (
    'AnalysisRun {namespace}/{run}, metric "{metric}": refusing to act on Job '
    "{job_namespace}/{job_name} named in the measurement metadata: {reason}"
)
REASON_OTHER_NAMESPACE = "a run's Jobs are always in the run's own namespace"
REASON_NOT_DERIVED = "it is not a name this run gives the Jobs of this metric"
REASON_NOT_OWNED = (
    "it is not owned by this AnalysisRun (its run-uid label, metric annotation "
    "and ownerReference must all name this run)"
)

_log = get_logger(__name__)


class JobProvider:
    """Runs ``provider.job`` metrics against the given ``BatchV1Api``."""

    kind = PROVIDER_KIND

    def __init__(
        self,
        batch_api: Any,
        *,
        core_api: Any = None,
        resume_interval: timedelta = RESUME_INTERVAL,
    ) -> None:
        self._batch = batch_api
        # Optional: without it, image-pull failures are not detected early and
        # the Job runs until its own deadline.
        self._core = core_api
        self._resume_interval = resume_interval

    # -- protocol -------------------------------------------------------------

    def run(self, ctx: MeasurementContext) -> Observation:
        try:
            return self._run(ctx)
        except Exception as exc:  # never raise into the reconcile
            return Observation.error(ctx.redact(MSG_UNEXPECTED.format(error=_api_error(exc))))

    def resume(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation:
        name = metadata.get(JOB_NAME_KEY, "")
        if not name:
            return Observation.error(MSG_NO_JOB_NAME, **dict(metadata))
        refused = _refuse_location(ctx, metadata)
        if refused is not None:
            return refused
        namespace = ctx.namespace
        try:
            job = _as_dict(self._batch.read_namespaced_job(name=name, namespace=namespace))
        except ApiException as exc:
            message = (
                MSG_JOB_GONE.format(namespace=namespace, name=name)
                if exc.status == 404
                else MSG_READ_FAILED.format(namespace=namespace, name=name, error=_api_error(exc))
            )
            return Observation.error(ctx.redact(message), **dict(metadata))
        except Exception as exc:
            return Observation.error(
                ctx.redact(MSG_UNEXPECTED.format(error=_api_error(exc))), **dict(metadata)
            )
        if not _owned_by(job, ctx):
            return _refusal(ctx, namespace=namespace, name=name, reason=REASON_NOT_OWNED)
        try:
            return self._assess(ctx=ctx, job=job, name=name, namespace=namespace)
        except Exception as exc:
            return Observation.error(
                ctx.redact(MSG_UNEXPECTED.format(error=_api_error(exc))), **dict(metadata)
            )

    def terminate(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation:
        name = metadata.get(JOB_NAME_KEY, "")
        terminated = Observation(
            phase=AnalysisPhase.INCONCLUSIVE, message=MSG_TERMINATED, metadata=dict(metadata)
        )
        if not name:
            return terminated
        refused = _refuse_location(ctx, metadata)
        if refused is not None:
            return refused
        namespace = ctx.namespace
        try:
            # Read before deleting: only a Job this run owns is deleted.
            job = _as_dict(self._batch.read_namespaced_job(name=name, namespace=namespace))
        except ApiException as exc:
            if exc.status == 404:  # already gone is what we wanted
                return terminated
            message = MSG_READ_FAILED.format(namespace=namespace, name=name, error=_api_error(exc))
            return Observation.error(ctx.redact(message), **dict(metadata))
        except Exception as exc:
            message = MSG_DELETE_FAILED.format(
                namespace=namespace, name=name, error=_api_error(exc)
            )
            return Observation.error(ctx.redact(message), **dict(metadata))
        if not _owned_by(job, ctx):
            return _refusal(ctx, namespace=namespace, name=name, reason=REASON_NOT_OWNED)
        try:
            self._delete(name=name, namespace=namespace)
        except Exception as exc:
            message = MSG_DELETE_FAILED.format(namespace=namespace, name=name, error=_api_error(exc))
            return Observation.error(ctx.redact(message), **dict(metadata))
        return terminated

    def garbage_collect(self, ctx: MeasurementContext, limit: int) -> None:
        """Delete this metric's Jobs beyond the newest ``limit``; failures are only logged."""
        metric = str(ctx.metric.get("name", ""))
        try:
            jobs = self._jobs_of(ctx=ctx, metric=metric)
            jobs.sort(key=_age_key, reverse=True)
            for job in jobs[max(limit, 0) :]:
                self._delete(name=_meta(job, "name"), namespace=ctx.namespace)
        except Exception as exc:
            _log.warning(
                "job garbage collection failed",
                namespace=ctx.namespace,
                name=ctx.run_name,
                metric=metric,
                error=ctx.redact(_api_error(exc)),
            )

    # -- run ------------------------------------------------------------------

    def _run(self, ctx: MeasurementContext) -> Observation:
        metric = str(ctx.metric.get("name", ""))
        provider = ctx.metric.get("provider")
        config = provider.get("job") if isinstance(provider, Mapping) else None
        spec = config.get("spec") if isinstance(config, Mapping) else None
        if not isinstance(config, Mapping) or not isinstance(spec, Mapping) or not spec:
            return Observation.error(MSG_NO_CONFIG.format(metric=metric))
        if not ctx.run_uid:
            return Observation.error(MSG_NO_UID.format(metric=metric))

        try:
            existing = self._jobs_of(ctx=ctx, metric=metric)
        except Exception as exc:
            message = MSG_LIST_FAILED.format(
                namespace=ctx.namespace, run=ctx.run_name, error=_api_error(exc)
            )
            return Observation.error(ctx.redact(message))

        for job in existing:
            if _is_active(job):
                return self._in_flight(ctx=ctx, name=_meta(job, "name"))

        index = 1 + max((_index_of(job) for job in existing), default=0)
        name = job_name(run_uid=ctx.run_uid, metric=metric, index=index)
        body = build_job(ctx=ctx, config=config, name=name, index=index)
        try:
            self._batch.create_namespaced_job(namespace=ctx.namespace, body=body)
        except ApiException as exc:
            if exc.status != 409:
                message = MSG_CREATE_FAILED.format(
                    namespace=ctx.namespace, name=name, error=_api_error(exc)
                )
                return Observation.error(ctx.redact(message))
            return self._adopt(ctx=ctx, name=name, metric=metric)
        return self._in_flight(ctx=ctx, name=name)

    def _adopt(self, *, ctx: MeasurementContext, name: str, metric: str) -> Observation:
        """The Job we meant to create exists: take it over if it is ours."""
        try:
            job = _as_dict(self._batch.read_namespaced_job(name=name, namespace=ctx.namespace))
        except Exception as exc:
            message = MSG_READ_FAILED.format(
                namespace=ctx.namespace, name=name, error=_api_error(exc)
            )
            return Observation.error(ctx.redact(message))
        if not _owned_by(job, ctx):
            return Observation.error(
                ctx.redact(
                    MSG_FOREIGN_JOB.format(namespace=ctx.namespace, name=name, metric=metric)
                )
            )
        return self._assess(ctx=ctx, job=job, name=name, namespace=ctx.namespace)

    def _jobs_of(self, *, ctx: MeasurementContext, metric: str) -> list[dict[str, Any]]:
        listed = _as_dict(
            self._batch.list_namespaced_job(
                namespace=ctx.namespace, label_selector=f"{RUN_UID_LABEL}={ctx.run_uid}"
            )
        )
        jobs = [_as_dict(item) for item in listed.get("items") or ()]
        # A label anyone creating Jobs here can set is not enough: the Job must
        # also have this run's ownerReference and this metric's annotation.
        return [job for job in jobs if _owned_by(job, ctx, metric=metric)]

    # -- assess ---------------------------------------------------------------

    def _assess(
        self, *, ctx: MeasurementContext, job: Mapping[str, Any], name: str, namespace: str
    ) -> Observation:
        metadata = {JOB_NAME_KEY: name, JOB_NAMESPACE_KEY: namespace}
        for condition in _conditions(job):
            if str(condition.get("status")) != "True":
                continue
            if condition.get("type") == "Complete":
                return Observation(
                    phase=AnalysisPhase.SUCCESSFUL,
                    message=MSG_JOB_COMPLETE.format(namespace=namespace, name=name),
                    metadata=metadata,
                )
            if condition.get("type") == "Failed":
                detail = f": {condition['message']}" if condition.get("message") else ""
                message = MSG_JOB_FAILED.format(
                    namespace=namespace,
                    name=name,
                    reason=condition.get("reason") or "Failed",
                    detail=detail,
                )
                return Observation(
                    phase=AnalysisPhase.FAILED, message=ctx.redact(message), metadata=metadata
                )
        stuck = self._image_pull_failure(name=name, namespace=namespace)
        if stuck is not None:
            container, reason, detail = stuck
            # The Job would otherwise retry the pull until its own deadline.
            try:
                self._delete(name=name, namespace=namespace)
            except Exception as exc:
                _log.warning(
                    "could not delete a Job stuck pulling its image",
                    namespace=namespace,
                    name=ctx.run_name,
                    job=name,
                    error=_api_error(exc),
                )
            message = MSG_IMAGE_PULL.format(
                namespace=namespace,
                name=name,
                container=container,
                reason=reason,
                detail=f": {detail}" if detail else "",
            )
            return Observation(
                phase=AnalysisPhase.INCONCLUSIVE, message=ctx.redact(message), metadata=metadata
            )
        return self._in_flight(ctx=ctx, name=name, namespace=namespace)

    def _image_pull_failure(self, *, name: str, namespace: str) -> tuple[str, str, str] | None:
        if self._core is None:
            return None
        try:
            pods = _as_dict(
                self._core.list_namespaced_pod(
                    namespace=namespace, label_selector=f"job-name={name}"
                )
            )
        except Exception as exc:
            # Not being able to look is not a verdict: keep waiting on the Job.
            _log.warning("could not list a Job's pods", namespace=namespace, job=name,
                         error=_api_error(exc))
            return None
        for pod in pods.get("items") or ():
            status = _field(_as_dict(pod), "status") or {}
            statuses = [
                *(_field(status, "init_container_statuses") or ()),
                *(_field(status, "container_statuses") or ()),
            ]
            for container in statuses:
                state = _field(container, "state") or {}
                waiting = _field(state, "waiting") or {}
                reason = str(waiting.get("reason") or "")
                if reason in IMAGE_PULL_REASONS:
                    return (
                        str(container.get("name") or "?"),
                        reason,
                        str(waiting.get("message") or ""),
                    )
        return None

    def _in_flight(
        self, *, ctx: MeasurementContext, name: str, namespace: str | None = None
    ) -> Observation:
        return Observation(
            phase=AnalysisPhase.RUNNING,
            metadata={JOB_NAME_KEY: name, JOB_NAMESPACE_KEY: namespace or ctx.namespace},
            resume_at=ctx.now + self._resume_interval,
        )

    def _delete(self, *, name: str, namespace: str) -> None:
        try:
            self._batch.delete_namespaced_job(
                name=name, namespace=namespace, propagation_policy="Background"
            )
        except ApiException as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise


class GenericJobsApi:
    """The BatchV1Api calls the job provider makes, through the generic endpoint.

    The typed client re-validates a Job body with its own models and rejects
    valid JSON the API server accepts, e.g. the integer quantity in
    ``nvidia.com/gpu: 1`` that GPU teams write. Bodies go out and come back as
    plain dicts; only the delete (no user body) uses the typed call.
    """

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)
        self._batch = client.BatchV1Api(api_client)

    def create_namespaced_job(self, *, namespace: str, body: Mapping[str, Any]) -> Any:
        return self._custom.create_namespaced_custom_object("batch", "v1", namespace, "jobs", dict(body))

    def read_namespaced_job(self, *, name: str, namespace: str) -> Any:
        return self._custom.get_namespaced_custom_object("batch", "v1", namespace, "jobs", name)

    def list_namespaced_job(self, *, namespace: str, label_selector: str) -> Any:
        return self._custom.list_namespaced_custom_object(
            "batch", "v1", namespace, "jobs", label_selector=label_selector
        )

    def delete_namespaced_job(self, *, name: str, namespace: str, propagation_policy: str) -> Any:
        return self._batch.delete_namespaced_job(
            name=name, namespace=namespace, propagation_policy=propagation_policy
        )


# -- building the Job ----------------------------------------------------------


def job_name(*, run_uid: str, metric: str, index: int) -> str:
    """Argo's ``{run-uid}.{metric}.{n}``, as a DNS-1123 name of at most 63 characters.

    When the metric name had to change (invalid characters) or be shortened, a
    short hash of the original is appended, so two metrics never share names.
    """
    uid = _dns_label(run_uid) or "run"
    part = _dns_label(metric) or "metric"
    name = f"{uid}.{part}.{index}"
    if part == metric and len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha256(metric.encode("utf-8")).hexdigest()[:8]
    room = MAX_NAME_LENGTH - len(uid) - len(str(index)) - len(digest) - 3
    part = part[: max(room, 0)].rstrip("-")
    name = f"{uid}.{part}-{digest}.{index}" if part else f"{uid}.{digest}.{index}"
    return name[:MAX_NAME_LENGTH]


def build_job(
    *, ctx: MeasurementContext, config: Mapping[str, Any], name: str, index: int
) -> dict[str, Any]:
    """The Job body: the user's metadata and spec, plus our labels and owner."""
    metric = str(ctx.metric.get("name", ""))
    user_meta = config.get("metadata")
    user_meta = user_meta if isinstance(user_meta, Mapping) else {}
    labels = {str(k): str(v) for k, v in (user_meta.get("labels") or {}).items()}
    annotations = {str(k): str(v) for k, v in (user_meta.get("annotations") or {}).items()}
    labels.update(
        {
            RUN_UID_LABEL: _label_value(ctx.run_uid),
            RUN_NAME_LABEL: _label_value(ctx.run_name),
            METRIC_NAME_LABEL: _label_value(metric),
        }
    )
    annotations.update(
        {
            RUN_NAME_ANNOTATION: ctx.run_name,
            METRIC_NAME_ANNOTATION: metric,
            INDEX_ANNOTATION: str(index),
        }
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": ctx.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "AnalysisRun",
                    "name": ctx.run_name,
                    "uid": ctx.run_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        # A deep copy through JSON: the body must not alias the run's spec.
        "spec": json.loads(json.dumps(config["spec"])),
    }


_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9._-]+")


def _dns_label(text: str) -> str:
    return _NOT_DNS.sub("-", text.lower()).strip("-")


def _label_value(text: str) -> str:
    value = _NOT_LABEL.sub("-", text)[:MAX_NAME_LENGTH]
    return value.strip("-._")


# -- is it ours? ---------------------------------------------------------------


def is_job_name_of(*, name: str, run_uid: str, metric: str) -> bool:
    """Is ``name`` what ``job_name`` gives for this run, metric and some index n >= 1?"""
    _, dot, index = name.rpartition(".")
    if not dot or not _INDEX.fullmatch(index):
        return False
    return job_name(run_uid=run_uid, metric=metric, index=int(index)) == name


def _owned_by(job: Mapping[str, Any], ctx: MeasurementContext, *, metric: str | None = None) -> bool:
    """The Job carries the run's uid label, the metric annotation and an ownerReference to the run.

    The annotation holds the exact metric name (the label may have been
    shortened or sanitised to be a valid label value).
    """
    metric = str(ctx.metric.get("name", "")) if metric is None else metric
    if not ctx.run_uid or _labels(job).get(RUN_UID_LABEL) != ctx.run_uid:
        return False
    if _annotations(job).get(METRIC_NAME_ANNOTATION) != metric:
        return False
    refs = _meta(job, "owner_references") or ()
    return any(
        isinstance(ref, Mapping)
        and ref.get("kind") == "AnalysisRun"
        and ref.get("uid") == ctx.run_uid
        for ref in refs
    )


def _refusal(ctx: MeasurementContext, *, namespace: str, name: str, reason: str) -> Observation:
    """An Error that names run, metric and Job, and drops the metadata that pointed there."""
    message = MSG_REFUSED.format(
        namespace=ctx.namespace,
        run=ctx.run_name,
        metric=str(ctx.metric.get("name", "")),
        job_namespace=namespace,
        job_name=name,
        reason=reason,
    )
    _log.warning("refused a Job named in measurement metadata", namespace=ctx.namespace,
                 name=ctx.run_name, message=ctx.redact(message))
    return Observation.error(ctx.redact(message))


def _refuse_location(ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation | None:
    """A refusal when the metadata points outside the run's namespace or its Job names."""
    name = metadata.get(JOB_NAME_KEY, "")
    namespace = metadata.get(JOB_NAMESPACE_KEY) or ctx.namespace
    if namespace != ctx.namespace:
        return _refusal(ctx, namespace=namespace, name=name, reason=REASON_OTHER_NAMESPACE)
    metric = str(ctx.metric.get("name", ""))
    if not ctx.run_uid or not is_job_name_of(name=name, run_uid=ctx.run_uid, metric=metric):
        return _refusal(ctx, namespace=namespace, name=name, reason=REASON_NOT_DERIVED)
    return None


_INDEX = re.compile(r"[1-9][0-9]{0,9}")


# -- reading objects -----------------------------------------------------------
# The kubernetes client returns models (``to_dict()`` gives snake_case keys); a
# raw API answer or a test fake may be a camelCase dict. Both are accepted.


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        result = to_dict()
        return result if isinstance(result, dict) else {}
    return dict(obj) if isinstance(obj, Mapping) else {}


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _field(obj: Any, snake: str) -> Any:
    if not isinstance(obj, Mapping):
        return None
    value = obj.get(snake)
    return value if value is not None else obj.get(_camel(snake))


def _meta(job: Mapping[str, Any], key: str) -> Any:
    return _field(_field(job, "metadata"), key)


def _labels(job: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(job, "labels") or {}


def _annotations(job: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(job, "annotations") or {}


def _conditions(job: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    return [c for c in _field(_field(job, "status"), "conditions") or () if isinstance(c, Mapping)]


def _is_active(job: Mapping[str, Any]) -> bool:
    """Not finished and not being deleted: a measurement still in flight."""
    if _meta(job, "deletion_timestamp"):
        return False
    return not any(
        c.get("type") in ("Complete", "Failed") and str(c.get("status")) == "True"
        for c in _conditions(job)
    )


def _index_of(job: Mapping[str, Any]) -> int:
    try:
        return int(_annotations(job).get(INDEX_ANNOTATION, "0"))
    except ValueError:
        return 0


def _age_key(job: Mapping[str, Any]) -> tuple[int, str]:
    created = _meta(job, "creation_timestamp")
    stamp = created.isoformat() if isinstance(created, datetime) else str(created or "")
    return (_index_of(job), stamp)


def _api_error(exc: BaseException) -> str:
    """An ApiException's own message (from its JSON body), else the exception text."""
    if isinstance(exc, ApiException):
        try:
            body = json.loads(exc.body or "")
        except (TypeError, ValueError):
            body = None
        if isinstance(body, Mapping) and body.get("message"):
            return f"{exc.status} {exc.reason}: {body['message']}"
        return f"{exc.status} {exc.reason}".strip()
    return str(exc) or type(exc).__name__
