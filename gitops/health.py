"""PURE: the health of one live object, as Argo CD's built-in checks decide it.

Called by gitops/controller.py for every managed object (the app's
``resources[].health``, the app's ``health``, and the sync's wave gate). Codes and
their order from best to worst (the app's health is its worst resource's) are
Argo CD's: Healthy < Suspended < Progressing < Missing < Degraded < Unknown.

Built-in checks (Argo CD's, in Go or in its bundled Lua): Deployment,
StatefulSet, DaemonSet, ReplicaSet, Service, Ingress, PVC, Job, Pod, Namespace,
HorizontalPodAutoscaler (v1 conditions from its annotation, v2 from status),
Rollout, AnalysisRun (by phase), KServe InferenceService (every condition True and
the model UpToDate; a failed model transition is Degraded) and Application (app
of apps: the child's own ``status.health``).

``health(obj)`` returns None for an object with no check (ConfigMap, Secret,
RBAC, ...): it has no health and passes its wave at once, as in Argo CD.

Where Tidegate does better than Argo CD:

* a custom resource without a built-in check is judged by its status
  conditions (``Ready``, else ``Available``) and ``status.observedGeneration``,
  so a wave really waits for it (argo-cd #14442, #4577); Argo CD gives it no
  health and moves on;
* a Rollout paused at a canary step is Suspended with the step in the message,
  which the sync counts as delivered (argo-cd #25054);
* an InferenceService whose ``status.observedGeneration`` lags its generation is
  Progressing (Argo CD's Lua would judge the previous spec's conditions).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class HealthStatus(StrEnum):
    HEALTHY = "Healthy"
    SUSPENDED = "Suspended"
    PROGRESSING = "Progressing"
    MISSING = "Missing"
    DEGRADED = "Degraded"
    UNKNOWN = "Unknown"


# Best first; the app's health is the worst of its resources'.
HEALTH_ORDER = (HealthStatus.HEALTHY, HealthStatus.SUSPENDED, HealthStatus.PROGRESSING,
                HealthStatus.MISSING, HealthStatus.DEGRADED, HealthStatus.UNKNOWN)
_RANK = {status: rank for rank, status in enumerate(HEALTH_ORDER)}

MSG_PENDING_DELETION = "Pending deletion"
# A Ready/Available condition False for one of these reasons is a failure, not a wait.
FAILED_REASONS = frozenset({"failed", "error", "degraded", "invalidspec", "reconcileerror"})


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    message: str = ""

    def to_json(self) -> dict[str, str]:
        out = {"status": self.status.value}
        if self.message:
            out["message"] = self.message
        return out


HEALTHY = Health(HealthStatus.HEALTHY)


def worst(healths: Iterable[HealthStatus]) -> HealthStatus:
    """The worst of ``healths`` (Healthy when there are none)."""
    return max(healths, key=lambda status: _RANK[status], default=HealthStatus.HEALTHY)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}


def _generation_observed(obj: Mapping[str, Any]) -> bool:
    generation = _int((obj.get("metadata") or {}).get("generation"))
    observed = _int((obj.get("status") or {}).get("observedGeneration"))
    return generation <= observed


def _deployment(obj: Mapping[str, Any]) -> Health:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    name = (obj.get("metadata") or {}).get("name", "")
    if spec.get("paused"):
        return Health(HealthStatus.SUSPENDED, "Deployment is paused")
    if not _generation_observed(obj):
        return Health(HealthStatus.PROGRESSING, "Waiting for rollout to finish: observed deployment generation less than desired generation")
    progressing = _conditions(status).get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health(HealthStatus.DEGRADED, f'Deployment "{name}" exceeded its progress deadline')
    replicas = _int(spec.get("replicas"), 1)
    updated = _int(status.get("updatedReplicas"))
    if updated < replicas:
        return Health(HealthStatus.PROGRESSING, f"Waiting for rollout to finish: {updated} out of {replicas} new replicas have been updated...")
    if _int(status.get("replicas")) > updated:
        return Health(HealthStatus.PROGRESSING, f"Waiting for rollout to finish: {_int(status.get('replicas')) - updated} old replicas are pending termination...")
    available = _int(status.get("availableReplicas"))
    if available < updated:
        return Health(HealthStatus.PROGRESSING, f"Waiting for rollout to finish: {available} of {updated} updated replicas are available...")
    return HEALTHY


def _statefulset(obj: Mapping[str, Any]) -> Health:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if _int(status.get("observedGeneration")) == 0 or not _generation_observed(obj):
        return Health(HealthStatus.PROGRESSING, "Waiting for statefulset spec update to be observed...")
    replicas = _int(spec.get("replicas"), 1)
    ready = _int(status.get("readyReplicas"))
    if ready < replicas:
        return Health(HealthStatus.PROGRESSING, f"Waiting for {replicas - ready} pods to be ready...")
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete":
        return Health(HealthStatus.HEALTHY, "statefulset has OnDelete update strategy")
    partition = _int((strategy.get("rollingUpdate") or {}).get("partition"))
    if partition:
        updated = _int(status.get("updatedReplicas"))
        if updated < replicas - partition:
            return Health(HealthStatus.PROGRESSING, f"Waiting for partitioned roll out to finish: {updated} out of {replicas - partition} new pods have been updated...")
        return Health(HealthStatus.HEALTHY, f"partitioned roll out complete: {updated} new pods have been updated...")
    if status.get("updateRevision") != status.get("currentRevision"):
        return Health(HealthStatus.PROGRESSING, f"waiting for statefulset rolling update to complete {_int(status.get('updatedReplicas'))} pods at revision {status.get('updateRevision')}...")
    return Health(HealthStatus.HEALTHY, f"statefulset rolling update complete {_int(status.get('currentReplicas'))} pods at revision {status.get('currentRevision')}...")


def _replicaset(obj: Mapping[str, Any]) -> Health:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if not _generation_observed(obj):
        return Health(HealthStatus.PROGRESSING, "Waiting for rollout to finish: observed replica set generation less than desired generation")
    failure = _conditions(status).get("ReplicaFailure") or {}
    if failure.get("status") == "True":
        return Health(HealthStatus.DEGRADED, str(failure.get("message") or ""))
    replicas = _int(spec.get("replicas"), 1)
    available = _int(status.get("availableReplicas"))
    if available < replicas:
        return Health(HealthStatus.PROGRESSING, f"Waiting for rollout to finish: {available} out of {replicas} new replicas are available...")
    return HEALTHY


def _service(obj: Mapping[str, Any]) -> Health:
    if (obj.get("spec") or {}).get("type") == "LoadBalancer":
        if not ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
            return Health(HealthStatus.PROGRESSING)
    return HEALTHY


def _pvc(obj: Mapping[str, Any]) -> Health:
    phase = (obj.get("status") or {}).get("phase")
    if phase == "Bound":
        return HEALTHY
    if phase == "Pending":
        return Health(HealthStatus.PROGRESSING)
    if phase == "Lost":
        return Health(HealthStatus.DEGRADED)
    return Health(HealthStatus.UNKNOWN)


def _job(obj: Mapping[str, Any]) -> Health:
    conditions = _conditions(obj.get("status") or {})
    for kind, code in (("Failed", HealthStatus.DEGRADED), ("Complete", HealthStatus.HEALTHY),
                       ("Suspended", HealthStatus.SUSPENDED)):
        condition = conditions.get(kind)
        if condition and condition.get("status") == "True":
            return Health(code, str(condition.get("message") or ""))
    return Health(HealthStatus.PROGRESSING)


_POD_BAD_WAITING = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
                    "InvalidImageName"}


def _pod(obj: Mapping[str, Any]) -> Health:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    phase = status.get("phase")
    if phase == "Succeeded":
        return Health(HealthStatus.HEALTHY, str(status.get("message") or ""))
    if phase == "Failed":
        return Health(HealthStatus.DEGRADED, str(status.get("message") or ""))
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _POD_BAD_WAITING:
            return Health(HealthStatus.DEGRADED, str(waiting.get("message") or waiting.get("reason")))
    if phase == "Running" and (spec.get("restartPolicy") or "Always") == "Always":
        ready = _conditions(status).get("Ready") or {}
        if ready.get("status") == "True":
            return HEALTHY
    return Health(HealthStatus.PROGRESSING, str(status.get("message") or ""))


def _namespace(obj: Mapping[str, Any]) -> Health:
    phase = (obj.get("status") or {}).get("phase")
    return HEALTHY if phase in (None, "Active") else Health(HealthStatus.PROGRESSING, str(phase))


def _rollout(obj: Mapping[str, Any]) -> Health:
    """Argo CD's Rollout Lua check for Rollouts >= v1.0, with the step in the Suspended message."""
    status = obj.get("status") or {}
    generation = str((obj.get("metadata") or {}).get("generation", ""))
    observed = str(status.get("observedGeneration", ""))
    if observed and generation and observed != generation:
        return Health(HealthStatus.PROGRESSING, "Waiting for rollout spec update to be observed")
    phase = status.get("phase")
    message = str(status.get("message") or "")
    if phase == "Paused":
        step = status.get("currentStepIndex")
        text = f"Rollout is paused at step {step}" if step is not None else "Rollout is paused"
        return Health(HealthStatus.SUSPENDED, f"{text}: {message}" if message else text)
    if phase == "Degraded":
        return Health(HealthStatus.DEGRADED, message)
    if phase == "Healthy":
        return Health(HealthStatus.HEALTHY, message)
    return Health(HealthStatus.PROGRESSING, message)


def _daemonset(obj: Mapping[str, Any]) -> Health:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    name = (obj.get("metadata") or {}).get("name", "")
    if not _generation_observed(obj):
        return Health(HealthStatus.PROGRESSING, "Waiting for rollout to finish: observed daemon set generation less than desired generation")
    updated = _int(status.get("updatedNumberScheduled"))
    desired = _int(status.get("desiredNumberScheduled"))
    if (spec.get("updateStrategy") or {}).get("type") == "OnDelete":
        return Health(HealthStatus.HEALTHY, f"daemon set {updated} out of {desired} new pods have been updated")
    if updated < desired:
        return Health(HealthStatus.PROGRESSING, f'Waiting for daemon set "{name}" rollout to finish: {updated} out of {desired} new pods have been updated...')
    available = _int(status.get("numberAvailable"))
    if available < desired:
        return Health(HealthStatus.PROGRESSING, f'Waiting for daemon set "{name}" rollout to finish: {available} of {desired} updated pods are available...')
    return HEALTHY


def _ingress(obj: Mapping[str, Any]) -> Health:
    """Argo CD's: Healthy once the load balancer reports an address, Progressing until then."""
    if ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
        return HEALTHY
    return Health(HealthStatus.PROGRESSING)


# Argo CD's HPA check: the first condition that matches one of these decides; none: waiting.
HPA_DEGRADED = frozenset({("AbleToScale", "FailedGetScale"), ("AbleToScale", "FailedUpdateScale"),
                          ("ScalingActive", "FailedGetResourceMetric"),
                          ("ScalingActive", "InvalidSelector")})
HPA_HEALTHY = frozenset({("AbleToScale", "SucceededRescale"), ("ScalingLimited", "DesiredWithinRange"),
                         ("ScalingLimited", "TooFewReplicas"), ("ScalingLimited", "TooManyReplicas")})
HPA_CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
MSG_HPA_WAITING = "Waiting to Autoscale"


def _hpa(obj: Mapping[str, Any]) -> Health:
    """Argo CD's HPA check; autoscaling/v1 keeps its conditions in an annotation (JSON)."""
    conditions: Any
    if str(obj.get("apiVersion")) == "autoscaling/v1":
        text = ((obj.get("metadata") or {}).get("annotations") or {}).get(HPA_CONDITIONS_ANNOTATION)
        try:
            conditions = json.loads(text) if isinstance(text, str) else []
        except ValueError:
            conditions = []
    else:
        conditions = (obj.get("status") or {}).get("conditions") or []
    for condition in conditions if isinstance(conditions, list) else []:
        if not isinstance(condition, Mapping):
            continue
        pair = (condition.get("type"), condition.get("reason"))
        if pair in HPA_DEGRADED:
            return Health(HealthStatus.DEGRADED, str(condition.get("message") or ""))
        if pair in HPA_HEALTHY:
            return Health(HealthStatus.HEALTHY, str(condition.get("message") or ""))
    return Health(HealthStatus.PROGRESSING, MSG_HPA_WAITING)


MSG_ISVC_WAITING = "Waiting for InferenceService to report status..."
MSG_ISVC_HEALTHY = "InferenceService is healthy."


def _inference_service(obj: Mapping[str, Any]) -> Health:
    """Argo CD's KServe check: healthy when every condition is True and the model is UpToDate.

    As Argo CD's Lua: a model transition that failed is Degraded; conditions not yet
    True (False or Unknown) are Progressing, listed in the message one by one.
    """
    status = obj.get("status")
    if not isinstance(status, Mapping):
        return Health(HealthStatus.PROGRESSING, MSG_ISVC_WAITING)
    if "observedGeneration" in status and not _generation_observed(obj):
        # Better than Argo CD's Lua: conditions of the previous spec do not count.
        return Health(HealthStatus.PROGRESSING, MSG_ISVC_WAITING)
    parts: list[str] = []
    degraded = waiting = False
    transition = (status.get("modelStatus") or {}).get("transitionStatus")
    if transition is not None and transition != "UpToDate":
        degraded, waiting = transition != "InProgress", transition == "InProgress"
        parts.append(f"0: transitionStatus | {transition}")
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return Health(HealthStatus.PROGRESSING, MSG_ISVC_WAITING)
    for index, condition in enumerate(conditions, start=1):
        if not isinstance(condition, Mapping) or condition.get("status") == "True":
            continue
        waiting = True
        fields = [f"{index}: {condition.get('type')}", str(condition.get("status"))]
        fields += [str(condition[k]) for k in ("reason", "message") if condition.get(k)]
        parts.append(" | ".join(fields))
    if degraded:
        return Health(HealthStatus.DEGRADED, " | ".join(parts))
    if waiting:
        return Health(HealthStatus.PROGRESSING, " | ".join(parts))
    return Health(HealthStatus.HEALTHY, MSG_ISVC_HEALTHY)


def _application(obj: Mapping[str, Any]) -> Health:
    """App of apps: a child Application's own ``status.health`` (Argo CD's documented Lua)."""
    reported = (obj.get("status") or {}).get("health") or {}
    try:
        code = HealthStatus(str(reported.get("status")))
    except ValueError:
        return Health(HealthStatus.PROGRESSING)
    return Health(code, str(reported.get("message") or ""))


_ANALYSIS_PHASES = {
    "Pending": (HealthStatus.PROGRESSING, "Analysis run is running", False),
    "Running": (HealthStatus.PROGRESSING, "Analysis run is running", False),
    "Successful": (HealthStatus.HEALTHY, "Analysis run completed successfully", True),
    "Failed": (HealthStatus.DEGRADED, "Analysis run failed", True),
    "Error": (HealthStatus.DEGRADED, "Analysis run had an error", True),
    "Inconclusive": (HealthStatus.UNKNOWN, "Analysis run was inconclusive", True),
}
MSG_ANALYSIS_WAITING = "Waiting for analysis run to finish: status has not been reconciled."


def _analysis_run(obj: Mapping[str, Any]) -> Health:
    """Argo CD's AnalysisRun check: by phase; a finished run's own message when it has one."""
    status = obj.get("status") or {}
    found = _ANALYSIS_PHASES.get(str(status.get("phase")))
    if found is None:
        return Health(HealthStatus.PROGRESSING, MSG_ANALYSIS_WAITING)
    code, default, own_message = found
    return Health(code, str(status.get("message") or default) if own_message else default)


def _fallback(obj: Mapping[str, Any]) -> Health | None:
    """A custom resource without a check: its Ready (else Available) condition and observedGeneration."""
    status = obj.get("status") or {}
    conditions = _conditions(status)
    condition = conditions.get("Ready") or conditions.get("Available")
    if condition is None:
        if "observedGeneration" in status and not _generation_observed(obj):
            return Health(HealthStatus.PROGRESSING, "Waiting for the spec update to be observed")
        return None
    if not _generation_observed(obj) and "observedGeneration" in status:
        return Health(HealthStatus.PROGRESSING, "Waiting for the spec update to be observed")
    message = str(condition.get("message") or condition.get("reason") or "")
    if condition.get("status") == "True":
        return Health(HealthStatus.HEALTHY, message)
    reason = str(condition.get("reason") or "")
    if condition.get("status") == "False" and reason.lower() in FAILED_REASONS:
        return Health(HealthStatus.DEGRADED, message)
    return Health(HealthStatus.PROGRESSING, message)


_CHECKS = {
    ("apps", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "ReplicaSet"): _replicaset,
    ("", "Service"): _service,
    ("", "PersistentVolumeClaim"): _pvc,
    ("batch", "Job"): _job,
    ("", "Pod"): _pod,
    ("", "Namespace"): _namespace,
    ("argoproj.io", "Rollout"): _rollout,
    ("apps", "DaemonSet"): _daemonset,
    ("networking.k8s.io", "Ingress"): _ingress,
    ("extensions", "Ingress"): _ingress,
    ("autoscaling", "HorizontalPodAutoscaler"): _hpa,
    ("serving.kserve.io", "InferenceService"): _inference_service,
    ("argoproj.io", "Application"): _application,
    ("argoproj.io", "AnalysisRun"): _analysis_run,
}
# Kinds Argo CD gives no health: they pass their wave as soon as they are applied.
NO_HEALTH = frozenset({("", "ConfigMap"), ("", "Secret"), ("", "ServiceAccount"),
                       ("rbac.authorization.k8s.io", "Role"),
                       ("rbac.authorization.k8s.io", "RoleBinding"),
                       ("rbac.authorization.k8s.io", "ClusterRole"),
                       ("rbac.authorization.k8s.io", "ClusterRoleBinding")})


def health(obj: Mapping[str, Any]) -> Health | None:
    """The health of the live object ``obj``; None when the kind has no health."""
    api_version = str(obj.get("apiVersion") or "")
    group = api_version.rpartition("/")[0]
    kind = str(obj.get("kind") or "")
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return Health(HealthStatus.PROGRESSING, MSG_PENDING_DELETION)
    if (group, kind) in NO_HEALTH:
        return None
    check = _CHECKS.get((group, kind))
    if check is not None:
        return check(obj)
    return _fallback(obj)
