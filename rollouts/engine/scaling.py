"""ReplicaSet decisions: the desired RS manifest, canary/stable counts, old-RS scale-down.

Called by ``reconcile.plan`` after the step decisions. Counts come from
``replicas.py`` (§1.9); this module turns them into ``ReplicaSetUpdate``s and
``ScalingReplicaSet`` events, and handles ``scale-down-deadline`` (§1.5, §1.8).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from common.api import format_time
from rollouts.api.constants import (
    ANNOTATION_DESIRED_REPLICAS,
    ANNOTATION_REVISION,
    ANNOTATION_SCALE_DOWN_DEADLINE,
    DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS,
    DEFAULT_SCALE_DOWN_DELAY_SECONDS,
    LABEL_POD_TEMPLATE_HASH,
    EventReason,
)
from rollouts.engine import replicas as math
from rollouts.engine.context import ReplicaSetUpdate
from rollouts.engine.draft import Draft
from rollouts.engine.observe import RSInfo, View
from rollouts.engine.runs import owner_reference
from rollouts.engine.steps import canary_scale_at, set_weight_at

MSG_SCALED = "Scaled {direction} ReplicaSet {name} (revision {revision}) from {old} to {new}"


@dataclass(frozen=True)
class Targets:
    """Where the canary and stable ReplicaSets are heading, and their next step."""

    weight: int
    canary: int
    stable: int
    next_canary: int
    next_stable: int


def rs_manifest(view: View, revision: str) -> dict[str, Any]:
    """The desired ReplicaSet, created with 0 replicas as Argo does."""
    rollout = view.rollout
    template = copy.deepcopy(rollout.spec.template or {})
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), LABEL_POD_TEMPLATE_HASH: view.new_hash}
    selector = rollout.spec.selector.to_json() if rollout.spec.selector else {}
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), LABEL_POD_TEMPLATE_HASH: view.new_hash}
    spec: dict[str, Any] = {"replicas": 0, "selector": selector, "template": template}
    if rollout.spec.min_ready_seconds is not None:
        spec["minReadySeconds"] = rollout.spec.min_ready_seconds
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{view.name}-{view.new_hash}",
            "namespace": view.namespace,
            "labels": dict(metadata["labels"]),
            "annotations": {
                ANNOTATION_REVISION: revision,
                ANNOTATION_DESIRED_REPLICAS: str(view.spec_replicas),
            },
            "ownerReferences": [owner_reference(rollout)],
        },
        "spec": spec,
    }


def _applied_weight(view: View, side: str) -> int | None:
    weights = (view.status.get("canary") or {}).get("weights") or {}
    value = (weights.get(side) or {}).get("weight")
    return value if isinstance(value, int) else None


def targets(view: View, draft: Draft) -> Targets:
    """Desired canary/stable counts for this reconcile (§1.9)."""
    replicas = view.spec_replicas
    canary_rs = view.new_rs
    if draft.abort:
        weight = 0
    elif draft.promote_full:
        weight = 100
    else:
        weight = set_weight_at(view.steps, draft.index if draft.index is not None else None)
    if not view.routed:
        return _basic_targets(view, weight)
    scale = None if (draft.abort or draft.promote_full) else canary_scale_at(view.steps)
    canary = math.traffic_canary_count(
        replicas=replicas,
        weight=weight,
        scale_replicas=scale.replicas if scale else None,
        scale_weight=scale.weight if scale else None,
        min_pods=view.canary.min_pods_per_replica_set,
    )
    stable = math.traffic_stable_count(
        replicas=replicas,
        weight=weight,
        dynamic=bool(view.canary.dynamic_stable_scale),
        actual_stable_weight=_applied_weight(view, "stable"),
    )
    if draft.abort and canary_rs is not None:
        # The canary keeps its pods until the stable can take all traffic (§1.5).
        canary = canary_rs.spec
    return Targets(weight=weight, canary=canary, stable=stable, next_canary=canary, next_stable=stable)


def _basic_targets(view: View, weight: int) -> Targets:
    replicas = view.spec_replicas
    surge, unavailable = math.resolve_fenceposts(
        view.canary.max_surge, view.canary.max_unavailable, replicas
    )
    canary, stable = math.approximate_counts(replicas, weight, surge)
    empty = math.RSCounts(spec=0, available=0)
    next_canary, next_stable = math.basic_canary_counts(
        replicas=replicas,
        weight=weight,
        surge=surge,
        unavailable=unavailable,
        canary=view.new_rs.counts if view.new_rs else empty,
        stable=view.stable_rs.counts if view.stable_rs else empty,
        others_spec=sum(rs.spec for rs in view.others),
    )
    return Targets(weight=weight, canary=canary, stable=stable, next_canary=next_canary, next_stable=next_stable)


def at_desired_counts(view: View, target: Targets) -> bool:
    """Argo's AtDesiredReplicaCountsForCanary: both sides there and available.

    Older ReplicaSets must be gone only for a basic canary, where their pods take
    a share of the traffic. With traffic routing they get no traffic, and a
    previous stable waiting out its scale-down-deadline must not hold back the
    next rollout's steps (Argo checks otherRSs only without trafficRouting).
    """
    canary, stable = view.new_rs, view.stable_rs
    if canary is None or canary.spec != target.canary or canary.available < target.canary:
        return False
    if stable is not None and (stable.spec != target.stable or stable.available < target.stable):
        return False
    return view.routed or all(rs.available == 0 for rs in view.others)


def update_rs(
    draft: Draft,
    view: View,
    rs: RSInfo,
    replicas: int | None = None,
    annotations: dict[str, str | None] | None = None,
) -> None:
    """Merge a change into the plan; emit ScalingReplicaSet when replicas change."""
    changes: dict[str, str | None] = dict(annotations or {})
    new_replicas: int | None = None
    if replicas is not None and replicas != rs.spec:
        new_replicas = replicas
        direction = "up" if replicas > rs.spec else "down"
        draft.event(
            EventReason.SCALING_RS,
            MSG_SCALED.format(direction=direction, name=rs.name, revision=rs.revision, old=rs.spec, new=replicas),
        )
    if new_replicas is not None and rs.desired_replicas_annotation != str(view.spec_replicas):
        changes[ANNOTATION_DESIRED_REPLICAS] = str(view.spec_replicas)
    changes = {k: v for k, v in changes.items() if rs.annotations.get(k) != v}
    if new_replicas is None and not changes:
        return
    previous = draft.rs_updates.get(rs.name, ReplicaSetUpdate())
    draft.rs_updates[rs.name] = ReplicaSetUpdate(
        replicas=new_replicas if new_replicas is not None else previous.replicas,
        annotations={**previous.annotations, **changes},
    )


def sync_desired_annotation(draft: Draft, view: View, rs: RSInfo) -> None:
    """Keep ``desired-replicas`` current on an active RS (it detects scaling events)."""
    if rs.desired_replicas_annotation != str(view.spec_replicas):
        update_rs(draft, view, rs, annotations={ANNOTATION_DESIRED_REPLICAS: str(view.spec_replicas)})


def delayed_scale_down(draft: Draft, view: View, rs: RSInfo, delay_seconds: int, now: datetime) -> None:
    """Annotate ``scale-down-deadline`` once, scale to 0 when it has passed."""
    if rs.spec == 0:
        if ANNOTATION_SCALE_DOWN_DEADLINE in rs.annotations:
            update_rs(draft, view, rs, annotations={ANNOTATION_SCALE_DOWN_DEADLINE: None})
        return
    deadline = rs.deadline
    if deadline is None:
        deadline = now + timedelta(seconds=delay_seconds)
        update_rs(draft, view, rs, annotations={ANNOTATION_SCALE_DOWN_DEADLINE: format_time(deadline)})
    if now >= deadline:
        update_rs(draft, view, rs, replicas=0, annotations={ANNOTATION_SCALE_DOWN_DEADLINE: None})
        return
    draft.waits.append((deadline - now).total_seconds())


def clear_deadline(draft: Draft, view: View, rs: RSInfo) -> None:
    """An RS that is active again (new or stable) loses its scale-down deadline."""
    if ANNOTATION_SCALE_DOWN_DEADLINE in rs.annotations:
        update_rs(draft, view, rs, annotations={ANNOTATION_SCALE_DOWN_DEADLINE: None})


def scale_abort_canary(draft: Draft, view: View, now: datetime) -> None:
    """Traffic-routed abort: the canary goes to 0 after abortScaleDownDelaySeconds (0 = never)."""
    canary, stable = view.new_rs, view.stable_rs
    if canary is None or stable is None or stable.available < view.spec_replicas:
        return
    delay = view.canary.abort_scale_down_delay_seconds
    delay = DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS if delay is None else delay
    if delay == 0:
        return
    delayed_scale_down(draft, view, canary, delay, now)


def scale_old(draft: Draft, view: View, old: list[RSInfo], referenced: set[str], now: datetime) -> None:
    """Scale down ReplicaSets that are neither desired nor stable (§1.8, §1.9)."""
    if not view.routed:
        _drain_basic(draft, view, old)
        return
    delay = view.canary.scale_down_delay_seconds
    delay = DEFAULT_SCALE_DOWN_DELAY_SECONDS if delay is None else delay
    waiting = [rs for rs in old if rs.spec > 0 and (rs.deadline is not None or rs.hash in referenced)]
    limit = view.canary.scale_down_delay_revision_limit
    keep = sorted(waiting, key=lambda rs: rs.revision, reverse=True)
    if limit is not None:
        keep = keep[:limit]
    for rs in old:
        if rs in keep and not view.canary.dynamic_stable_scale and delay > 0:
            delayed_scale_down(draft, view, rs, delay, now)
        else:
            update_rs(draft, view, rs, replicas=0, annotations={ANNOTATION_SCALE_DOWN_DEADLINE: None} if rs.deadline else None)


def _drain_basic(draft: Draft, view: View, old: list[RSInfo]) -> None:
    """Basic canary: drain old RSs only as far as maxUnavailable allows."""
    _, unavailable = math.resolve_fenceposts(view.canary.max_surge, view.canary.max_unavailable, view.spec_replicas)
    available = sum(rs.available for rs in view.all_rs)
    budget = available - (view.spec_replicas - unavailable)
    for rs in old:
        if rs.spec == 0:
            continue
        # Pods of an RS being drained that are not available cost nothing to remove.
        unavailable_here = max(rs.spec - rs.available, 0)
        cut = min(rs.spec, unavailable_here + max(budget, 0))
        budget -= max(cut - unavailable_here, 0)
        if cut > 0:
            update_rs(draft, view, rs, replicas=rs.spec - cut)
