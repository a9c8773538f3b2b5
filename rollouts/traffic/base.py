"""The TrafficRouter protocol: Argo's TrafficRoutingReconciler, in Python.

The rollout engine (rollouts/engine/mesh.py) builds one router per
reconcile, over the documents it observed, for a rollout that has
``spec.strategy.canary.trafficRouting`` and calls it in Argo's order:
``update_hash``, then ``set_weight`` (``apply_target``).

Argo's ``set_header_route``, ``set_mirror_route`` and
``remove_managed_routes`` are not here: validation rejects
``setHeaderRoute``/``setMirrorRoute`` steps and ``trafficRouting.managedRoutes``
as not supported (rollouts/engine/validation.py), so that code could never
run. Add them back together with their validation.

Inputs are plain arguments on purpose: the engine's ``TrafficIntent``
(canary_weight, stable_weight, canary_hash, stable_hash) maps onto them
without this package importing the engine. Canary and stable Service names
are fixed for one reconcile (ping-pong already resolved by the caller), so a
router receives them when it is built.

A router raises ``TrafficRoutingError`` when it cannot do what was asked; the
engine turns it into the Rollout's status message and one ``TrafficRoutingError``
Event per distinct message (Argo records an Event per failed reconcile). It
never raises for "nothing to change".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Argo's maxTrafficWeight for Istio is fixed at 100.
MAX_TRAFFIC_WEIGHT = 100


class TrafficRoutingError(Exception):
    """A router could not apply a change; the message names the object and what to do."""


@dataclass(frozen=True)
class TrafficTarget:
    """What one reconcile wants from the mesh, in the plain terms a router needs.

    ``canary_weight`` is 0..100; the stable share is whatever is left after
    the canary and any additional destinations the user asked to keep.
    """

    canary_weight: int
    canary_hash: str
    stable_hash: str
    canary_service: str
    stable_service: str


class TrafficRouter(Protocol):
    """Argo's router interface: small, synchronous (callers run it in a thread)."""

    kind: str

    def update_hash(self, canary_hash: str, stable_hash: str) -> None:
        """Point the canary/stable selectors (Istio: DestinationRule subsets) at these hashes."""
        ...

    def set_weight(self, desired_weight: int) -> None:
        """Send ``desired_weight`` percent to the canary and the rest to stable."""
        ...

    def verify(self, desired_weight: int) -> bool | None:
        """True/False when the router can check the data plane; None when it cannot (Istio)."""
        ...


def apply_target(router: TrafficRouter, target: TrafficTarget) -> None:
    """Argo's order for a plain weight change: hashes first, then weights.

    Hashes first so the canary subset already selects the new pods when weight
    moves to it; the reverse order briefly sends traffic to the old canary pods.
    """
    router.update_hash(canary_hash=target.canary_hash, stable_hash=target.stable_hash)
    router.set_weight(desired_weight=target.canary_weight)
