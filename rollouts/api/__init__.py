"""Rollout API: pydantic models of argoproj.io/v1alpha1 Rollout and Argo's names.

Imported by every other layer of ``rollouts``: the engine (which decides from the
parsed spec), traffic, the I/O layer (rollouts/kube, including the operator
actions the CLI calls) and handlers.py. Imports only ``common``.
"""

from __future__ import annotations

from rollouts.api.constants import (
    ANNOTATION_ABORT,
    ANNOTATION_DESIRED_REPLICAS,
    ANNOTATION_MANAGED_BY,
    ANNOTATION_REVISION,
    ANNOTATION_SCALE_DOWN_DEADLINE,
    LABEL_INSTANCE_ID,
    LABEL_POD_TEMPLATE_HASH,
    ConditionReason,
    ConditionType,
    EventReason,
    EventType,
    PauseReason,
    PodTemplateHash,
    RolloutPhase,
    Weight,
)
from rollouts.api.errors import SpecError
from rollouts.api.models import Rollout, parse_rollout

__all__ = [
    "ANNOTATION_ABORT",
    "ANNOTATION_DESIRED_REPLICAS",
    "ANNOTATION_MANAGED_BY",
    "ANNOTATION_REVISION",
    "ANNOTATION_SCALE_DOWN_DEADLINE",
    "LABEL_INSTANCE_ID",
    "LABEL_POD_TEMPLATE_HASH",
    "ConditionReason",
    "ConditionType",
    "EventReason",
    "EventType",
    "PauseReason",
    "PodTemplateHash",
    "Rollout",
    "RolloutPhase",
    "SpecError",
    "Weight",
    "parse_rollout",
]
