"""IstioTrafficRouter: the TrafficRouter protocol over VirtualServices and a DestinationRule.

Built once per reconcile by the rollout engine (rollouts/engine/mesh.py) over a
``PlannedIstioStore``: the objects the reconcile observed, plus the replaces
the router asks for, recorded instead of sent. All decisions come from the
pure functions in istio.py; this class only reads, asks them for the new
object, and replaces it when they return one, so an unchanged weight plans no
write. The engine hands the recorded documents to the Plan and the kube layer
sends them as full replaces, as Argo does: each carries the resourceVersion
read, so a concurrent edit makes the write conflict and the next reconcile
recomputes from fresh state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from rollouts.traffic import istio
from rollouts.traffic.base import TrafficRoutingError

KIND = "Istio"
VIRTUAL_SERVICE, DESTINATION_RULE = "VirtualService", "DestinationRule"

MSG_VS_GONE = "VirtualService '{key}' referenced by rollout '{rollout}' does not exist"
MSG_DR_GONE = "DestinationRule '{key}' referenced by rollout '{rollout}' does not exist"
MSG_ROUTES = "VirtualService '{key}' (rollout '{rollout}'): {error}"


class IstioObjectStore(Protocol):
    """Reads and full replaces of Istio objects (PlannedIstioStore; tests use a dict)."""

    def get_virtual_service(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def replace_virtual_service(self, obj: Mapping[str, Any]) -> None: ...

    def get_destination_rule(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def replace_destination_rule(self, obj: Mapping[str, Any]) -> None: ...


class PlannedIstioStore:
    """IstioObjectStore over one reconcile's snapshot that records replaces instead of sending them.

    A later read returns the document replaced earlier, so two changes to one object
    (two ``virtualServices`` entries naming the same VirtualService) become one write.
    """

    def __init__(
        self,
        virtual_services: Mapping[str, Mapping[str, Any] | None],
        destination_rule: Mapping[str, Any] | None,
    ) -> None:
        self._virtual_services = virtual_services
        self._destination_rule = destination_rule
        self.replaced: dict[tuple[str, str], dict[str, Any]] = {}
        """(kind, ``namespace/name``) -> the new document, in the order first replaced."""

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return istio.vs_key(str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    def get_virtual_service(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        key = istio.vs_key(namespace, name)
        return self.replaced.get((VIRTUAL_SERVICE, key)) or self._virtual_services.get(key)

    def replace_virtual_service(self, obj: Mapping[str, Any]) -> None:
        self.replaced[(VIRTUAL_SERVICE, self._key(obj))] = dict(obj)

    def get_destination_rule(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        replaced = self.replaced.get((DESTINATION_RULE, istio.vs_key(namespace, name)))
        if replaced is not None:
            return replaced
        dr = self._destination_rule
        if dr is None:
            return None
        meta = dr.get("metadata") or {}
        return dr if (meta.get("namespace"), meta.get("name")) == (namespace, name) else None

    def replace_destination_rule(self, obj: Mapping[str, Any]) -> None:
        self.replaced[(DESTINATION_RULE, self._key(obj))] = dict(obj)


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
