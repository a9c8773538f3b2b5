"""Traffic weight and Service selectors for one reconcile (§2 "weight sequencing").

Called by ``reconcile.plan`` after scaling decisions. Produces the TrafficIntent
(which engine/mesh.py turns into Istio documents), ``status.canary.weights`` and
the Service selectors. Pure.
"""

from __future__ import annotations

from typing import Any

from rollouts.api.constants import EventReason, PodTemplateHash, Weight
from rollouts.engine.context import TrafficIntent
from rollouts.engine.draft import Draft
from rollouts.engine.observe import View
from rollouts.engine.replicas import ceil_share
from rollouts.engine.scaling import Targets
from rollouts.engine.steps import previous_set_weight

MSG_WEIGHT_UPDATED = "Traffic weight updated from {old} to {new}"


def applied_canary_weight(view: View) -> int:
    """The canary weight last written to the router (status), 0 when none."""
    weights = (view.status.get("canary") or {}).get("weights") or {}
    value = (weights.get("canary") or {}).get("weight")
    return value if isinstance(value, int) else 0


def desired_weight(view: View, draft: Draft, target: Targets) -> int:
    """Argo's order: promoted 0, aborted 0, no canary pods 0, promoteFull current,
    canary not ready -> previous setWeight, else the step's weight (never above it)."""
    canary = view.new_rs
    if draft.stable_hash == view.new_hash or draft.abort:
        return 0
    if canary is None or canary.available == 0:
        return 0
    if draft.promote_full:
        return applied_canary_weight(view)
    weight = target.weight
    if canary.spec < target.canary or canary.available < target.canary:
        weight = min(previous_set_weight(view.steps), weight)
    stable = view.stable_rs
    if stable is not None and stable.available < ceil_share(view.spec_replicas, 100 - weight):
        # The stable cannot carry its share yet: keep what the router has, capped.
        weight = min(applied_canary_weight(view), weight)
    return weight


def plan_traffic(view: View, draft: Draft, target: Targets) -> None:
    """Fill ``draft.traffic`` and ``draft.weights`` (traffic-routed rollouts only)."""
    if not view.routed:
        return
    promoted = draft.stable_hash == view.new_hash
    stable_hash = PodTemplateHash(draft.stable_hash or view.new_hash)
    weight = desired_weight(view, draft, target)
    canary_hash = stable_hash if (promoted or draft.abort) else view.new_hash
    draft.traffic = TrafficIntent(
        canary_weight=Weight(weight),
        stable_weight=Weight(100 - weight),
        canary_hash=canary_hash,
        stable_hash=stable_hash,
    )
    draft.weights = {
        "canary": _destination(weight, view.canary.canary_service, view.new_hash if not draft.abort else stable_hash),
        "stable": _destination(100 - weight, view.canary.stable_service, stable_hash),
    }
    previous = (view.status.get("canary") or {}).get("weights")
    if previous is not None and applied_canary_weight(view) != weight:
        draft.event(
            EventReason.TRAFFIC_WEIGHT_UPDATED,
            MSG_WEIGHT_UPDATED.format(old=applied_canary_weight(view), new=weight),
        )


def _destination(weight: int, service: str | None, pod_hash: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"weight": weight}
    if service:
        entry["serviceName"] = service
    entry["podTemplateHash"] = pod_hash
    return entry


def plan_services(view: View, draft: Draft) -> None:
    """Stable Service -> stable hash; canary Service -> new hash once it has a ready pod."""
    stable_hash = draft.stable_hash or view.new_hash
    if view.canary.stable_service:
        draft.service_selectors[view.canary.stable_service] = PodTemplateHash(stable_hash)
    if not view.canary.canary_service:
        return
    canary_ready = view.new_rs is not None and view.new_rs.available > 0
    if draft.abort or draft.stable_hash == view.new_hash:
        draft.service_selectors[view.canary.canary_service] = PodTemplateHash(stable_hash)
    elif canary_ready:
        draft.service_selectors[view.canary.canary_service] = view.new_hash


def referenced_hashes(view: View) -> set[str]:
    """Hashes the traffic layer may still send requests to (keep those RSs up a while)."""
    found: set[str] = set()
    weights = (view.status.get("canary") or {}).get("weights") or {}
    for side in ("canary", "stable"):
        pod_hash = (weights.get(side) or {}).get("podTemplateHash")
        if pod_hash:
            found.add(str(pod_hash))
    for service in view.ctx.services.values():
        selector = ((service or {}).get("spec") or {}).get("selector") or {}
        if selector.get("rollouts-pod-template-hash"):
            found.add(str(selector["rollouts-pod-template-hash"]))
    return found
