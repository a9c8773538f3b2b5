"""Argo Rollouts' names, as named constants: labels, annotations, phases, reasons.

Used by the engine (which decides), the I/O layer rollouts/kube (which writes,
including the operator actions ``tidegate`` sends through rollouts/kube/actions.py)
and handlers.py (which filters on labels). Every string here is Argo's exact spelling (semantics
reference §0, §1.4, §1.11), except the ``tidegate.dev/`` additions.
"""

from __future__ import annotations

import enum
from typing import NewType

GROUP = "argoproj.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND_ROLLOUT = "Rollout"
KIND_ANALYSIS_RUN = "AnalysisRun"

PodTemplateHash = NewType("PodTemplateHash", str)
"""Value of the ``rollouts-pod-template-hash`` label (at most 10 safe-encoded chars)."""

Weight = NewType("Weight", int)
"""A traffic or replica weight in percent, 0..100."""

MAX_TRAFFIC_WEIGHT = 100

# --- labels and annotations ---------------------------------------------------------------
LABEL_POD_TEMPLATE_HASH = "rollouts-pod-template-hash"
LABEL_ROLLOUT_TYPE = "rollout-type"
LABEL_STEP_INDEX = "step-index"
LABEL_INSTANCE_ID = "argo-rollouts.argoproj.io/controller-instance-id"
ANNOTATION_REVISION = "rollout.argoproj.io/revision"
ANNOTATION_DESIRED_REPLICAS = "rollout.argoproj.io/desired-replicas"
ANNOTATION_SCALE_DOWN_DEADLINE = "scale-down-deadline"
ANNOTATION_MANAGED_BY = "argo-rollouts.argoproj.io/managed-by-rollouts"
ANNOTATION_ABORT = "tidegate.dev/abort"
"""On-call abort: ``kubectl annotate rollout NAME tidegate.dev/abort="reason"``."""

ROLLOUT_TYPE_STEP = "Step"
ROLLOUT_TYPE_BACKGROUND = "Background"


class RolloutPhase(enum.StrEnum):
    """``status.phase`` (Argo's RolloutPhase)."""

    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"


class ConditionType(enum.StrEnum):
    """``status.conditions[].type``."""

    PROGRESSING = "Progressing"
    AVAILABLE = "Available"
    PAUSED = "Paused"
    HEALTHY = "Healthy"
    COMPLETED = "Completed"
    INVALID_SPEC = "InvalidSpec"
    # Tidegate's own: the API server rejected the ReplicaSet built from the pod template
    # (Argo reports this only as a Progressing reason; a type of its own lets it mark the
    # rollout Degraded until a reconcile creates the ReplicaSet).
    REPLICA_SET_CREATE_ERROR = "ReplicaSetCreateError"


class ConditionReason(enum.StrEnum):
    """``status.conditions[].reason`` values Argo writes."""

    NEW_RS_CREATED = "NewReplicaSetCreated"
    FOUND_NEW_RS = "FoundNewReplicaSet"
    RS_UPDATED = "ReplicaSetUpdated"
    NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
    PAUSED = "RolloutPaused"
    RESUMED = "RolloutResumed"
    RETRY = "RolloutRetry"
    ABORTED = "RolloutAborted"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    RS_CREATE_ERROR = "ReplicaSetCreateError"
    AVAILABLE = "AvailableReason"
    HEALTHY = "RolloutHealthy"
    COMPLETED = "RolloutCompleted"
    NOT_COMPLETED = "RolloutNotCompleted"
    INVALID_SPEC = "InvalidSpec"


class EventReason(enum.StrEnum):
    """Kubernetes Event reasons on a Rollout; they also name notification triggers."""

    ROLLOUT_UPDATED = "RolloutUpdated"
    NEW_RS_CREATED = "NewReplicaSetCreated"
    SCALING_RS = "ScalingReplicaSet"
    STEP_COMPLETED = "RolloutStepCompleted"
    PAUSED = "RolloutPaused"
    RESUMED = "RolloutResumed"
    ABORTED = "RolloutAborted"
    COMPLETED = "RolloutCompleted"
    NOT_COMPLETED = "RolloutNotCompleted"
    TRAFFIC_WEIGHT_UPDATED = "TrafficWeightUpdated"
    SKIP_STEPS = "SkipSteps"
    INVALID_SPEC = "InvalidSpec"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


class PauseReason(enum.StrEnum):
    """``status.pauseConditions[].reason``."""

    CANARY_PAUSE_STEP = "CanaryPauseStep"
    INCONCLUSIVE_ANALYSIS = "InconclusiveAnalysisRun"


class EventType(enum.StrEnum):
    """Kubernetes Event type."""

    NORMAL = "Normal"
    WARNING = "Warning"


# Argo's defaults (utils/defaults/defaults.go).
DEFAULT_REPLICAS = 1
DEFAULT_MAX_SURGE = "25%"
DEFAULT_MAX_UNAVAILABLE = "25%"
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
DEFAULT_SCALE_DOWN_DELAY_SECONDS = 30
DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS = 30
DEFAULT_REVISION_HISTORY_LIMIT = 10
INVALID_SPEC_REQUEUE_SECONDS = 20.0
