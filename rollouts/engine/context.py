"""The engine's input (RolloutContext) and output (Plan): plain frozen dataclasses.

Built by the I/O layer (rollouts/kube, rollouts/handlers.py) from what it
observed, passed to ``rollouts.engine.reconcile.plan``, and the Plan is applied
by rollouts/kube/apply.py, which decides nothing: every write is spelled out
here, down to the VirtualService and DestinationRule documents, and apply only
sends those that change something. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rollouts.api.constants import EventType, PodTemplateHash, Weight
from rollouts.api.errors import SpecError
from rollouts.api.models import Rollout, parse_rollout

Doc = dict[str, Any]


@dataclass(frozen=True)
class RolloutContext:
    """Everything one reconcile of one Rollout observed, plus the clock.

    ``rollout`` is the raw document as read (with ``status``); ``model`` is filled
    in from it on construction (None when it does not parse, then ``spec_error``
    says why and the plan is an InvalidSpec plan).
    """

    rollout: Mapping[str, Any]
    now: datetime
    replica_sets: tuple[Mapping[str, Any], ...] = ()
    """ReplicaSets owned by the rollout (controller ownerReference), any state."""
    services: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    """Service name -> object, or None when it does not exist (canary/stable services)."""
    virtual_services: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    """``"namespace/name"`` -> VirtualService, or None when missing."""
    destination_rule: Mapping[str, Any] | None = None
    analysis_runs: tuple[Mapping[str, Any], ...] = ()
    """AnalysisRuns owned by the rollout."""
    analysis_templates: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    """AnalysisTemplate name (in the rollout's namespace) -> object, or None when missing."""
    cluster_analysis_templates: Mapping[str, Mapping[str, Any] | None] = field(
        default_factory=dict
    )
    instance_id: str | None = None
    pods: tuple[Mapping[str, Any], ...] | None = None
    """Pods of the Rollout's ReplicaSets, listed only while a restart is due (engine/restart.py);
    None when not listed."""
    """``--instance-id``: copied as a label onto created ReplicaSets and AnalysisRuns."""
    model: Rollout | None = field(init=False, default=None, compare=False)
    spec_error: SpecError | None = field(init=False, default=None, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "model", parse_rollout(self.rollout))
        except SpecError as err:
            object.__setattr__(self, "spec_error", err)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to emit on the Rollout."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class TrafficIntent:
    """What the router must make true: weights and which pod hash each side selects."""

    canary_weight: Weight
    stable_weight: Weight
    canary_hash: PodTemplateHash
    stable_hash: PodTemplateHash


class MeshKind(enum.StrEnum):
    """The Istio objects a traffic-routed Rollout writes."""

    VIRTUAL_SERVICE = "VirtualService"
    DESTINATION_RULE = "DestinationRule"


@dataclass(frozen=True)
class MeshWrite:
    """A full replace of one Istio object: the new document, with the resourceVersion read.

    Computed by rollouts/engine/mesh.py from the observed object; present only when
    it differs from it. A concurrent edit makes the replace conflict (409) and the
    next reconcile computes it again from fresh state, as Argo does.
    """

    kind: MeshKind
    document: Doc

    @property
    def key(self) -> str:
        """``namespace/name``, as RolloutContext.virtual_services is keyed."""
        meta = self.document.get("metadata") or {}
        return f"{meta.get('namespace')}/{meta.get('name')}"


@dataclass(frozen=True)
class ReplicaSetUpdate:
    """A change to one existing ReplicaSet; None fields mean "leave as is".

    ``annotations`` values of None mean "remove this annotation".
    """

    replicas: int | None = None
    annotations: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """Every write one reconcile needs; apply only the ones that change something."""

    status: Doc
    """The COMPLETE new ``status`` (merge-patch it; keys set to None are deletions)."""
    replica_sets_to_create: tuple[Doc, ...] = ()
    replica_set_updates: Mapping[str, ReplicaSetUpdate] = field(default_factory=dict)
    """ReplicaSet name -> update."""
    service_selectors: Mapping[str, PodTemplateHash] = field(default_factory=dict)
    """Service name -> the ``rollouts-pod-template-hash`` its selector must carry."""
    traffic: TrafficIntent | None = None
    """What the mesh must make true (kept for status, tests and the simulator)."""
    mesh_writes: tuple[MeshWrite, ...] = ()
    """The concrete Istio replaces for ``traffic``, DestinationRule first (hashes before
    weights, so the canary subset selects the new pods before weight moves to it)."""
    traffic_error: str | None = None
    """Why ``traffic`` could not be turned into Istio documents; then the status says it
    (``message``), one Event per distinct message, and the plan writes no traffic."""
    analysis_runs_to_create: tuple[Doc, ...] = ()
    analysis_runs_to_terminate: tuple[str, ...] = ()
    """Run names to merge-patch with ``{"spec": {"terminate": true}}``."""
    replica_sets_to_delete: tuple[str, ...] = ()
    """Owned ReplicaSet names to delete (old revisions beyond ``revisionHistoryLimit``);
    sent after the status patch, a missing one counts as deleted."""
    events: tuple[Event, ...] = ()
    pods_to_evict: tuple[str, ...] = ()
    """Pods to evict for a restart (spec.restartAt); a missing one counts as evicted."""
    spec_patch: Doc | None = None
    """A merge patch for the Rollout itself, e.g. ``{"spec": {"replicas": 1}}``."""
    rollout_annotations: Mapping[str, str | None] = field(default_factory=dict)
    """Annotations to set (None = remove) on the Rollout, e.g. its revision."""
    remove_abort_annotation: bool = False
    """Remove ``tidegate.dev/abort`` AFTER the status patch succeeded."""
    requeue_after: float | None = None
    """Seconds until something is due (pause end, deadline); None when nothing is."""
