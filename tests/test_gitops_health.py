"""gitops/health.py: Argo CD's built-in health checks, the Rollout check and the fallback."""

from __future__ import annotations

import json
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


# --- issue 9: DaemonSet, Ingress, HPA, InferenceService, Application, AnalysisRun -----------

HPA_V1_CONDITIONS = "autoscaling.alpha.kubernetes.io/conditions"


def hpa_v1(conditions: Any) -> dict[str, Any]:
    text = conditions if isinstance(conditions, str) else json.dumps(conditions)
    return make("autoscaling/v1", "HorizontalPodAutoscaler", annotations={HPA_V1_CONDITIONS: text})


def isvc(**status: Any) -> dict[str, Any]:
    return make("serving.kserve.io/v1beta1", "InferenceService", status=status)


def daemonset(*, strategy: str = "RollingUpdate", generation: int = 1, **status: Any) -> dict[str, Any]:
    return make("apps/v1", "DaemonSet", spec={"updateStrategy": {"type": strategy}},
                generation=generation, status={"observedGeneration": 1, **status})


@pytest.mark.parametrize(("obj", "expected", "message"), [
    pytest.param(daemonset(desiredNumberScheduled=2, updatedNumberScheduled=2, numberAvailable=2), H, "",
                 id="daemonset healthy"),
    pytest.param(daemonset(desiredNumberScheduled=2, updatedNumberScheduled=1, numberAvailable=2), P,
                 'Waiting for daemon set "x" rollout to finish: 1 out of 2 new pods have been updated...',
                 id="daemonset updating"),
    pytest.param(daemonset(desiredNumberScheduled=2, updatedNumberScheduled=2, numberAvailable=1), P,
                 'Waiting for daemon set "x" rollout to finish: 1 of 2 updated pods are available...',
                 id="daemonset unavailable"),
    pytest.param(daemonset(strategy="OnDelete", desiredNumberScheduled=2, updatedNumberScheduled=0), H,
                 "daemon set 0 out of 2 new pods have been updated", id="daemonset on delete"),
    pytest.param(daemonset(generation=2), P,
                 "Waiting for rollout to finish: observed daemon set generation less than desired generation",
                 id="daemonset generation not observed"),
    pytest.param(make("networking.k8s.io/v1", "Ingress"), P, "", id="ingress without address"),
    pytest.param(make("networking.k8s.io/v1", "Ingress",
                      status={"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}), H, "", id="ingress address"),
    pytest.param(make("extensions/v1beta1", "Ingress",
                      status={"loadBalancer": {"ingress": [{"hostname": "lb"}]}}), H, "", id="ingress extensions"),
    pytest.param(make("autoscaling/v2", "HorizontalPodAutoscaler"), P, "Waiting to Autoscale",
                 id="hpa v2 no conditions"),
    pytest.param(make("autoscaling/v2", "HorizontalPodAutoscaler", status={"conditions": [
        cond("AbleToScale", "True", "ReadyForNewScale"),
        cond("ScalingActive", "False", "FailedGetResourceMetric", "no metrics")]}), D, "no metrics",
        id="hpa v2 metrics failing"),
    pytest.param(make("autoscaling/v2", "HorizontalPodAutoscaler", status={"conditions": [
        cond("AbleToScale", "True", "SucceededRescale", "scaled"),
        cond("ScalingActive", "False", "InvalidSelector", "bad")]}), H, "scaled",
        id="hpa v2 first deciding condition wins"),
    pytest.param(make("autoscaling/v2", "HorizontalPodAutoscaler", status={"conditions": [
        cond("ScalingLimited", "True", "TooManyReplicas", "capped")]}), H, "capped", id="hpa v2 limited"),
    pytest.param(make("autoscaling/v2", "HorizontalPodAutoscaler", status={"conditions": [
        cond("AbleToScale", "False", "FailedUpdateScale", "forbidden")]}), D, "forbidden",
        id="hpa v2 cannot scale"),
    pytest.param(hpa_v1([cond("ScalingLimited", "False", "DesiredWithinRange", "in range")]), H, "in range",
                 id="hpa v1 annotation healthy"),
    pytest.param(hpa_v1([cond("AbleToScale", "False", "FailedGetScale", "no target")]), D, "no target",
                 id="hpa v1 annotation degraded"),
    pytest.param(hpa_v1("not json"), P, "Waiting to Autoscale", id="hpa v1 malformed annotation"),
    pytest.param(make("autoscaling/v1", "HorizontalPodAutoscaler"), P, "Waiting to Autoscale",
                 id="hpa v1 no annotation"),
    pytest.param(make("serving.kserve.io/v1beta1", "InferenceService", status=None), P,
                 "Waiting for InferenceService to report status...", id="isvc no status"),
    pytest.param(isvc(conditions=[cond("IngressReady", "True"), cond("PredictorReady", "True"),
                                  cond("Ready", "True")], modelStatus={"transitionStatus": "UpToDate"}),
                 H, "InferenceService is healthy.", id="isvc ready"),
    pytest.param(isvc(conditions=[cond("PredictorReady", "True"),
                                  cond("Ready", "False", "RevisionMissing", "not yet")]),
                 P, "2: Ready | False | RevisionMissing | not yet", id="isvc ready false is progressing"),
    pytest.param(isvc(conditions=[cond("Ready", "Unknown")]), P, "1: Ready | Unknown",
                 id="isvc ready unknown"),
    pytest.param(isvc(conditions=[cond("Ready", "True")], modelStatus={"transitionStatus": "InProgress"}),
                 P, "0: transitionStatus | InProgress", id="isvc model loading"),
    pytest.param(isvc(conditions=[cond("Ready", "False", "ModelLoadFailed")],
                      modelStatus={"transitionStatus": "BlockedByFailedLoad"}),
                 D, "0: transitionStatus | BlockedByFailedLoad | 1: Ready | False | ModelLoadFailed",
                 id="isvc model failed"),
    pytest.param(make("serving.kserve.io/v1beta1", "InferenceService", generation=2,
                      status={"observedGeneration": 1, "conditions": [cond("Ready", "True")]}),
                 P, "Waiting for InferenceService to report status...", id="isvc old generation"),
    pytest.param(make("argoproj.io/v1alpha1", "Application",
                      status={"health": {"status": "Degraded", "message": "child broke"}}), D, "child broke",
                 id="app of apps degraded"),
    pytest.param(make("argoproj.io/v1alpha1", "Application", status={"health": {"status": "Healthy"}}), H, "",
                 id="app of apps healthy"),
    pytest.param(make("argoproj.io/v1alpha1", "Application"), P, "", id="app of apps no health yet"),
    pytest.param(make("argoproj.io/v1alpha1", "Application", status={"health": {"status": "Weird"}}), P, "",
                 id="app of apps unknown code"),
    pytest.param(make("argoproj.io/v1alpha1", "AnalysisRun"), P,
                 "Waiting for analysis run to finish: status has not been reconciled.", id="analysisrun new"),
    pytest.param(make("argoproj.io/v1alpha1", "AnalysisRun", status={"phase": "Running"}), P,
                 "Analysis run is running", id="analysisrun running"),
    pytest.param(make("argoproj.io/v1alpha1", "AnalysisRun", status={"phase": "Successful"}), H,
                 "Analysis run completed successfully", id="analysisrun successful"),
    pytest.param(make("argoproj.io/v1alpha1", "AnalysisRun", status={"phase": "Failed", "message": "p99 high"}),
                 D, "p99 high", id="analysisrun failed with message"),
    pytest.param(make("argoproj.io/v1alpha1", "AnalysisRun", status={"phase": "Error"}), D,
                 "Analysis run had an error", id="analysisrun error"),
    pytest.param(make("argoproj.io/v1alpha1", "AnalysisRun", status={"phase": "Inconclusive"}), U,
                 "Analysis run was inconclusive", id="analysisrun inconclusive"),
])
def test_more_builtin_checks(obj: dict[str, Any], expected: HealthStatus, message: str) -> None:
    result = health(obj)
    assert result is not None
    assert (result.status, result.message) == (expected, message)
