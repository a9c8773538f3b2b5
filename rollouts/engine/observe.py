"""Derived facts of one reconcile (the engine's view of a RolloutContext), pure.

Called once per ``plan()``: classifies the owned ReplicaSets into new / stable /
others, computes the desired pod-template hash and step hash, and reads the
previous status. Everything later decides from this view, never from raw dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rollouts.api.constants import (
    ANNOTATION_ABORT,
    ANNOTATION_DESIRED_REPLICAS,
    ANNOTATION_REVISION,
    ANNOTATION_SCALE_DOWN_DEADLINE,
    DEFAULT_REPLICAS,
    LABEL_POD_TEMPLATE_HASH,
    PodTemplateHash,
)
from rollouts.api.models import CanaryStrategy, Rollout
from rollouts.engine.context import RolloutContext
from rollouts.engine.hashing import pod_template_hash, step_hash
from rollouts.engine.replicas import RSCounts
from rollouts.engine.steps import StepView, make_step_view


@dataclass(frozen=True)
class RSInfo:
    """One owned ReplicaSet, as the engine needs it."""

    name: str
    hash: PodTemplateHash
    spec: int
    ready: int
    available: int
    pods: int
    revision: int
    annotations: Mapping[str, str]

    @property
    def counts(self) -> RSCounts:
        return RSCounts(spec=self.spec, available=self.available)

    @property
    def deadline(self) -> datetime | None:
        """The ``scale-down-deadline`` annotation, or None (also when unparseable)."""
        raw = self.annotations.get(ANNOTATION_SCALE_DOWN_DEADLINE)
        return parse_time(raw)

    @property
    def desired_replicas_annotation(self) -> str | None:
        return self.annotations.get(ANNOTATION_DESIRED_REPLICAS)


def parse_time(raw: object) -> datetime | None:
    """An RFC 3339 string as an aware datetime; None when absent or malformed."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def rs_info(doc: Mapping[str, Any]) -> RSInfo | None:
    """An RSInfo for an owned RS, or None when it has no hash label (not ours to manage)."""
    metadata = doc.get("metadata") or {}
    pod_hash = (metadata.get("labels") or {}).get(LABEL_POD_TEMPLATE_HASH)
    if not pod_hash:
        return None
    annotations = dict(metadata.get("annotations") or {})
    status = doc.get("status") or {}
    revision = annotations.get(ANNOTATION_REVISION, "0")
    return RSInfo(
        name=str(metadata.get("name", "")),
        hash=PodTemplateHash(str(pod_hash)),
        spec=_int((doc.get("spec") or {}).get("replicas")),
        ready=_int(status.get("readyReplicas")),
        available=_int(status.get("availableReplicas")),
        pods=_int(status.get("replicas")),
        revision=int(revision) if str(revision).isdigit() else 0,
        annotations=annotations,
    )


@dataclass(frozen=True)
class View:
    """Everything ``plan()`` decides from."""

    ctx: RolloutContext
    rollout: Rollout
    canary: CanaryStrategy
    status: Mapping[str, Any]
    spec_replicas: int
    routed: bool
    new_hash: PodTemplateHash
    step_hash: str
    steps: StepView
    new_rs: RSInfo | None
    stable_rs: RSInfo | None
    others: tuple[RSInfo, ...]
    abort_annotation: str | None

    @property
    def name(self) -> str:
        return self.rollout.metadata.name or ""

    @property
    def namespace(self) -> str:
        return self.rollout.metadata.namespace or ""

    @property
    def stable_hash(self) -> PodTemplateHash | None:
        """``status.stableRS`` when its ReplicaSet still exists."""
        return self.stable_rs.hash if self.stable_rs is not None else None

    @property
    def all_rs(self) -> tuple[RSInfo, ...]:
        known = [rs for rs in (self.new_rs, self.stable_rs) if rs is not None]
        unique = {rs.name: rs for rs in known}
        return (*unique.values(), *self.others)

    @property
    def max_revision(self) -> int:
        return max((rs.revision for rs in self.all_rs), default=0)

    @property
    def changed(self) -> bool:
        """Pod template or steps differ from what status last recorded."""
        return (
            self.status.get("currentPodHash") != self.new_hash
            or self.status.get("currentStepHash") != self.step_hash
        )


def build_view(ctx: RolloutContext, rollout: Rollout) -> View:
    """Classify ReplicaSets and read the previous status."""
    spec = rollout.spec
    canary = (spec.strategy.canary if spec.strategy else None) or CanaryStrategy()
    status = dict(ctx.rollout.get("status") or {})
    new_hash = pod_template_hash(spec.template or {}, status.get("collisionCount"))
    infos = [info for info in (rs_info(doc) for doc in ctx.replica_sets) if info is not None]
    by_hash = {info.hash: info for info in infos}
    new_rs = by_hash.get(new_hash)
    stable_rs = by_hash.get(PodTemplateHash(str(status.get("stableRS") or "")))
    others = tuple(
        sorted(
            (i for i in infos if i.hash not in (new_hash, status.get("stableRS"))),
            key=lambda i: i.revision,
        )
    )
    raw_steps = ((ctx.rollout.get("spec") or {}).get("strategy") or {}).get("canary") or {}
    annotations = rollout.metadata.annotations or {}
    index = status.get("currentStepIndex")
    return View(
        ctx=ctx,
        rollout=rollout,
        canary=canary,
        status=status,
        spec_replicas=spec.replicas if spec.replicas is not None else DEFAULT_REPLICAS,
        routed=canary.traffic_routing is not None,
        new_hash=new_hash,
        step_hash=step_hash(raw_steps.get("steps")),
        steps=make_step_view(canary.steps, index if isinstance(index, int) else None),
        new_rs=new_rs,
        stable_rs=stable_rs,
        others=others,
        abort_annotation=annotations.get(ANNOTATION_ABORT),
    )
