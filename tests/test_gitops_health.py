"""gitops/health.py: Argo CD's built-in health checks, the Rollout check and the fallback."""

from __future__ import annotations

from typing import Any

import pytest

from gitops.health import HealthStatus, health, worst

H, S, P, D, U = (HealthStatus.HEALTHY, HealthStatus.SUSPENDED, HealthStatus.PROGRESSING,
                 HealthStatus.DEGRADED, HealthStatus.UNKNOWN)


def make(api: str, kind: str, *, spec: dict[str, Any] | None = None,
         status: dict[str, Any] | None = None, generation: int = 1, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind,
            "metadata": {"name": "x", "generation": generation, **meta},
            "spec": spec or {}, "status": status or {}}


def deploy(replicas: int = 2, **status: Any) -> dict[str, Any]:
    return make("apps/v1", "Deployment", spec={"replicas": replicas},
                status={"observedGeneration": 1, **status})


def cond(kind: str, value: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": value, "reason": reason, "message": message}


@pytest.mark.parametrize(("obj", "expected"), [
    pytest.param(deploy(replicas=2, replicas_=0), P, id="deployment nothing updated"),
    pytest.param(deploy(updatedReplicas=2, replicas=2, availableReplicas=2), H, id="deployment healthy"),
    pytest.param(deploy(updatedReplicas=2, replicas=3, availableReplicas=2), P, id="deployment old pods"),
    pytest.param(deploy(updatedReplicas=2, replicas=2, availableReplicas=1), P, id="deployment unavailable"),
    pytest.param(deploy(conditions=[cond("Progressing", "False", "ProgressDeadlineExceeded")]), D,
                 id="deployment deadline"),
    pytest.param(make("apps/v1", "Deployment", spec={"replicas": 1}, generation=2,
                      status={"observedGeneration": 1}), P, id="deployment generation not observed"),
    pytest.param(make("apps/v1", "Deployment", spec={"paused": True}), S, id="deployment paused"),
    pytest.param(make("apps/v1", "StatefulSet", spec={"replicas": 2},
                      status={"observedGeneration": 1, "readyReplicas": 1}), P, id="sts not ready"),
    pytest.param(make("apps/v1", "StatefulSet", spec={"replicas": 2},
                      status={"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a",
                              "updateRevision": "a"}), H, id="sts healthy"),
    pytest.param(make("apps/v1", "StatefulSet", spec={"replicas": 2},
                      status={"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a",
                              "updateRevision": "b"}), P, id="sts updating"),
    pytest.param(make("apps/v1", "ReplicaSet", spec={"replicas": 2},
                      status={"observedGeneration": 1, "availableReplicas": 2}), H, id="rs healthy"),
    pytest.param(make("apps/v1", "ReplicaSet", spec={"replicas": 2},
                      status={"observedGeneration": 1, "conditions": [cond("ReplicaFailure", "True")]}),
                 D, id="rs failure"),
    pytest.param(make("v1", "Service", spec={"type": "ClusterIP"}), H, id="service"),
    pytest.param(make("v1", "Service", spec={"type": "LoadBalancer"}), P, id="lb without ingress"),
    pytest.param(make("v1", "PersistentVolumeClaim", status={"phase": "Bound"}), H, id="pvc bound"),
    pytest.param(make("v1", "PersistentVolumeClaim", status={"phase": "Pending"}), P, id="pvc pending"),
    pytest.param(make("v1", "PersistentVolumeClaim", status={"phase": "Lost"}), D, id="pvc lost"),
    pytest.param(make("batch/v1", "Job"), P, id="job running"),
    pytest.param(make("batch/v1", "Job", status={"conditions": [cond("Complete", "True")]}), H, id="job done"),
    pytest.param(make("batch/v1", "Job", status={"conditions": [cond("Failed", "True")]}), D, id="job failed"),
    pytest.param(make("v1", "Pod", status={"phase": "Running", "conditions": [cond("Ready", "True")]}),
                 H, id="pod ready"),
    pytest.param(make("v1", "Pod", status={"phase": "Pending", "containerStatuses": [
        {"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}), D, id="pod image pull"),
    pytest.param(make("v1", "Pod", spec={"restartPolicy": "Never"}, status={"phase": "Succeeded"}), H,
                 id="pod succeeded"),
    pytest.param(make("v1", "Namespace", status={"phase": "Active"}), H, id="namespace"),
    pytest.param(make("v1", "Namespace", status={"phase": "Terminating"}), P, id="namespace terminating"),
    pytest.param(make("argoproj.io/v1alpha1", "Rollout", status={"observedGeneration": "1", "phase": "Healthy"}),
                 H, id="rollout healthy"),
    pytest.param(make("argoproj.io/v1alpha1", "Rollout", status={"observedGeneration": "1", "phase": "Paused",
                                                               "currentStepIndex": 1}), S, id="rollout paused"),
    pytest.param(make("argoproj.io/v1alpha1", "Rollout", status={"observedGeneration": "1", "phase": "Degraded"}),
                 D, id="rollout degraded"),
    pytest.param(make("argoproj.io/v1alpha1", "Rollout", status={"observedGeneration": "1",
                                                               "phase": "Progressing"}), P, id="rollout progressing"),
    pytest.param(make("argoproj.io/v1alpha1", "Rollout", generation=2,
                      status={"observedGeneration": "1", "phase": "Healthy"}), P, id="rollout not observed"),
    pytest.param(make("serving.kserve.io/v1beta1", "InferenceService",
                      status={"observedGeneration": 1, "conditions": [cond("Ready", "True")]}), H,
                 id="custom ready"),
    pytest.param(make("serving.kserve.io/v1beta1", "InferenceService",
                      status={"conditions": [cond("Ready", "False", "Waiting")]}), P, id="custom waiting"),
    pytest.param(make("example.com/v1", "Widget",
                      status={"conditions": [cond("Available", "False", "Failed")]}), D, id="custom failed"),
    pytest.param(make("example.com/v1", "Widget", generation=3,
                      status={"observedGeneration": 2, "conditions": [cond("Ready", "True")]}), P,
                 id="custom generation not observed"),
    pytest.param(make("v1", "ConfigMap", deletionTimestamp="2026-01-01T00:00:00Z"), P, id="deleting"),
])
def test_health(obj: dict[str, Any], expected: HealthStatus) -> None:
    result = health(obj)
    assert result is not None and result.status is expected


@pytest.mark.parametrize("obj", [
    pytest.param(make("v1", "ConfigMap"), id="configmap"),
    pytest.param(make("v1", "Secret"), id="secret"),
    pytest.param(make("example.com/v1", "Widget"), id="custom resource without status"),
])
def test_no_health(obj: dict[str, Any]) -> None:
    assert health(obj) is None


def test_paused_rollout_names_its_step() -> None:
    result = health(make("argoproj.io/v1alpha1", "Rollout",
                         status={"phase": "Paused", "currentStepIndex": 1, "message": "CanaryPauseStep"}))
    assert result is not None and result.message == "Rollout is paused at step 1: CanaryPauseStep"


def test_worst_first_order() -> None:
    assert worst([H, S, P]) is P
    assert worst([H, D, HealthStatus.MISSING]) is D
    assert worst([D, U]) is U
    assert worst([]) is H
