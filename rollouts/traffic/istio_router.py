"""IstioTrafficRouter: the TrafficRouter protocol over VirtualServices and a DestinationRule.

Built once per reconcile by the rollout controller's apply layer
(rollouts/kube/apply.py) with an ``IstioObjectStore``: the small read/replace interface the kube layer
implements over the API server (tests use an in-memory dict). All decisions
come from the pure functions in istio.py; this class only reads, asks them
for the new object, and replaces it when they return one, so an unchanged
weight costs no API write. Replace, not patch, as Argo does: the caller's
store sends the object's resourceVersion, so a concurrent edit makes the
write conflict and the next reconcile recomputes from fresh state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from rollouts.traffic import istio
from rollouts.traffic.base import TrafficRoutingError

KIND = "Istio"

MSG_VS_GONE = "VirtualService '{key}' referenced by rollout '{rollout}' does not exist"
MSG_DR_GONE = "DestinationRule '{key}' referenced by rollout '{rollout}' does not exist"
MSG_ROUTES = "VirtualService '{key}' (rollout '{rollout}'): {error}"


class IstioObjectStore(Protocol):
    """Reads and full replaces of Istio objects; implemented by rollouts/kube/."""

    def get_virtual_service(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def replace_virtual_service(self, obj: Mapping[str, Any]) -> None: ...

    def get_destination_rule(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def replace_destination_rule(self, obj: Mapping[str, Any]) -> None: ...


class IstioTrafficRouter:
    """Argo's Istio reconciler: every referenced VS in order, the DR shared."""

    kind = KIND

    def __init__(
        self,
        store: IstioObjectStore,
        rollout_name: str,
        rollout_namespace: str,
        canary_spec: Mapping[str, Any],
        canary_service: str,
        stable_service: str,
    ) -> None:
        self._store = store
        self._rollout = rollout_name
        self._vs_refs = istio.virtual_service_refs(canary_spec, rollout_namespace=rollout_namespace)
        self._dr_ref = istio.destination_rule_ref(canary_spec, rollout_namespace=rollout_namespace)
        self._canary_service = canary_service
        self._stable_service = stable_service

    @property
    def _subsets(self) -> tuple[str | None, str | None, tuple[str, ...]]:
        if self._dr_ref is None:
            return None, None, ()
        ref = self._dr_ref
        return ref.canary_subset, ref.stable_subset, ref.additional_subsets

    def _virtual_services(self) -> list[tuple[istio.VirtualServiceRef, Mapping[str, Any]]]:
        found = []
        for ref in self._vs_refs:
            vs = self._store.get_virtual_service(namespace=ref.namespace, name=ref.name)
            if vs is None:
                raise TrafficRoutingError(MSG_VS_GONE.format(key=ref.key, rollout=self._rollout))
            found.append((ref, vs))
        return found

    def update_hash(self, canary_hash: str, stable_hash: str) -> None:
        ref = self._dr_ref
        if ref is None:
            # Host-level: the Service selectors carry the hashes (kube/ manages them).
            return
        dr = self._store.get_destination_rule(namespace=ref.namespace, name=ref.name)
        if dr is None:
            raise TrafficRoutingError(MSG_DR_GONE.format(key=ref.key, rollout=self._rollout))
        new = istio.desired_destination_rule(
            dr=dr,
            canary_subset=ref.canary_subset,
            stable_subset=ref.stable_subset,
            canary_hash=canary_hash,
            stable_hash=stable_hash,
            additional_subsets=ref.additional_subsets,
            rollout_name=self._rollout,
        )
        if new is not None:
            self._store.replace_destination_rule(obj=new)

    def set_weight(self, desired_weight: int) -> None:
        canary_subset, stable_subset, additional = self._subsets
        for ref, vs in self._virtual_services():
            try:
                new = istio.desired_virtual_service(
                    vs=vs,
                    vs_config=ref.config,
                    canary_weight=desired_weight,
                    canary_service=self._canary_service,
                    stable_service=self._stable_service,
                    canary_subset=canary_subset,
                    stable_subset=stable_subset,
                    additional_subsets=additional,
                )
            except istio.RouteSelectionError as error:
                raise TrafficRoutingError(
                    MSG_ROUTES.format(key=ref.key, rollout=self._rollout, error=error)
                ) from error
            if new is not None:
                self._store.replace_virtual_service(obj=new)

    def verify(self, desired_weight: int) -> bool | None:
        # Istio gives no read-back of what Envoy applied; Argo returns nil too,
        # so status.canary.weights.verified stays unset.
        return None
