"""The concrete Istio writes for one reconcile's TrafficIntent, and the plan when there are none to be had.

Called by ``reconcile._finish`` once routing.py has decided the weights and
hashes. Runs rollouts/traffic's IstioTrafficRouter over the VirtualServices and
DestinationRule the reconcile observed (a PlannedIstioStore, which records the
replaces instead of sending them), so the Plan carries the exact documents and
rollouts/kube/apply.py decides nothing. Pure.

A router error (a route or destination the spec names is gone, a subset
missing) is not raised: ``traffic_error_plan`` keeps the status as it was with
the error as its message, one TrafficRoutingError Event per distinct message,
and a retry in a few seconds. Steps, weights and runs stay where they were, as
they did when the error was raised from the write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rollouts.api.constants import EventType
from rollouts.engine.context import Event, MeshKind, MeshWrite, Plan, RolloutContext, TrafficIntent
from rollouts.traffic.base import TrafficRoutingError, TrafficTarget, apply_target
from rollouts.traffic.istio_router import IstioTrafficRouter, PlannedIstioStore

REASON_TRAFFIC_ERROR = "TrafficRoutingError"
MSG_TRAFFIC_ERROR = f"{REASON_TRAFFIC_ERROR}: {{error}}"
TRAFFIC_ERROR_REQUEUE_SECONDS = 5.0
"""As often as the handler retried a reconcile that raised the error."""


def _canary(rollout: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((rollout.get("spec") or {}).get("strategy") or {}).get("canary") or {}


def mesh_writes(ctx: RolloutContext, intent: TrafficIntent | None) -> tuple[tuple[MeshWrite, ...], str | None]:
    """(the Istio replaces that make ``intent`` true, DestinationRule first; the error, or None)."""
    canary = _canary(ctx.rollout)
    if intent is None or "istio" not in (canary.get("trafficRouting") or {}):
        return (), None
    meta = ctx.rollout.get("metadata") or {}
    store = PlannedIstioStore(virtual_services=ctx.virtual_services, destination_rule=ctx.destination_rule)
    canary_service = str(canary.get("canaryService") or "")
    stable_service = str(canary.get("stableService") or "")
    router = IstioTrafficRouter(
        store=store,
        rollout_name=str(meta.get("name") or ""),
        rollout_namespace=str(meta.get("namespace") or ""),
        canary_spec=canary,
        canary_service=canary_service,
        stable_service=stable_service,
    )
    target = TrafficTarget(
        canary_weight=int(intent.canary_weight),
        canary_hash=str(intent.canary_hash),
        stable_hash=str(intent.stable_hash),
        canary_service=canary_service,
        stable_service=stable_service,
    )
    try:
        apply_target(router, target)
    except (TrafficRoutingError, ValueError) as error:
        return (), str(error)
    # update_hash runs before set_weight, so the DestinationRule is recorded first.
    return tuple(MeshWrite(kind=MeshKind(kind), document=doc) for (kind, _key), doc in store.replaced.items()), None


def traffic_error_plan(ctx: RolloutContext, planned: Plan, error: str) -> Plan:
    """``planned`` without what must wait for the mesh: status kept (message = the error), no
    traffic, runs, revision or abort-annotation writes; ReplicaSets and Services still written."""
    status: dict[str, Any] = dict(ctx.rollout.get("status") or {})
    message = MSG_TRAFFIC_ERROR.format(error=error)
    events: tuple[Event, ...] = ()
    if status.get("message") != message:
        events = (Event(type=EventType.WARNING, reason=REASON_TRAFFIC_ERROR, message=error),)
    status["message"] = message
    return dataclasses.replace(
        planned,
        status=status,
        mesh_writes=(),
        traffic_error=error,
        analysis_runs_to_create=(),
        analysis_runs_to_terminate=(),
        events=events,
        rollout_annotations={},
        remove_abort_annotation=False,
        requeue_after=TRAFFIC_ERROR_REQUEUE_SECONDS,
    )
