"""Build a RolloutContext for one Rollout from the controller's in-memory indices.

Called by rollouts/handlers.py at the start of each reconcile. Reads only the
kopf indices (no API calls): owned ReplicaSets and AnalysisRuns, and the
Services, VirtualServices, DestinationRule and AnalysisTemplates the Rollout
names. Also returns the set of referenced objects, so a change to any of them
re-queues this Rollout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rollouts.engine.context import RolloutContext
from rollouts.traffic import istio

RefKey = tuple[str, str, str]
Lookup = Callable[[str, tuple[str, str]], dict[str, Any] | None]


@dataclass(frozen=True)
class Snapshot:
    context: RolloutContext
    references: frozenset[RefKey]


def _canary(body: Mapping[str, Any]) -> Mapping[str, Any]:
    strategy = (body.get("spec") or {}).get("strategy") or {}
    canary = strategy.get("canary") if isinstance(strategy, Mapping) else None
    return canary if isinstance(canary, Mapping) else {}


def _owned(bodies: Iterable[Mapping[str, Any]], uid: str | None) -> tuple[Mapping[str, Any], ...]:
    """Children whose controller ownerReference is this very Rollout (not an older namesake).

    Every write the engine plans to a ReplicaSet or AnalysisRun (scale, annotate,
    terminate) names one of these children, whatever the Rollout's status says, so
    the check is the one Argo makes (the controller ref, ``metav1.GetControllerOf``):
    a non-controller reference, which anyone creating objects here may add, is not
    enough, and a Rollout without a uid (never the case for a stored one) owns nothing.
    """
    owned = []
    for child in bodies:
        refs = (child.get("metadata") or {}).get("ownerReferences") or []
        if uid and any(
            isinstance(ref, Mapping) and ref.get("uid") == uid and ref.get("controller") is True
            for ref in refs
        ):
            owned.append(child)
    return tuple(sorted(owned, key=lambda c: str((c.get("metadata") or {}).get("name"))))


def _template_refs(canary: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """(templateName, clusterScope) for every step analysis and the background analysis."""
    refs: list[tuple[str, bool]] = []
    blocks = [step.get("analysis") for step in canary.get("steps") or [] if isinstance(step, Mapping)]
    blocks.append(canary.get("analysis"))
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        for ref in block.get("templates") or []:
            if isinstance(ref, Mapping) and ref.get("templateName"):
                refs.append((str(ref["templateName"]), bool(ref.get("clusterScope"))))
    return refs


def _templates(
    namespace: str, canary: Mapping[str, Any], lookup: Lookup, references: set[RefKey]
) -> tuple[dict[str, Mapping[str, Any] | None], dict[str, Mapping[str, Any] | None]]:
    """Every template named by the Rollout, following nested ``templates`` references."""
    namespaced: dict[str, Mapping[str, Any] | None] = {}
    cluster: dict[str, Mapping[str, Any] | None] = {}
    pending = _template_refs(canary)
    while pending:
        name, cluster_scope = pending.pop()
        table = cluster if cluster_scope else namespaced
        if name in table:
            continue
        if cluster_scope:
            found = lookup("clusteranalysistemplates", ("", name))
            references.add(("ClusterAnalysisTemplate", "", name))
        else:
            found = lookup("analysistemplates", (namespace, name))
            references.add(("AnalysisTemplate", namespace, name))
        table[name] = found
        for nested in ((found or {}).get("spec") or {}).get("templates") or []:
            if isinstance(nested, Mapping) and nested.get("templateName"):
                pending.append((str(nested["templateName"]), bool(nested.get("clusterScope"))))
    return namespaced, cluster


def _istio(
    namespace: str, canary: Mapping[str, Any], lookup: Lookup, references: set[RefKey]
) -> tuple[dict[str, Mapping[str, Any] | None], Mapping[str, Any] | None]:
    virtual_services: dict[str, Mapping[str, Any] | None] = {}
    for ref in istio.virtual_service_refs(canary, rollout_namespace=namespace):
        virtual_services[ref.key] = lookup("virtualservices", (ref.namespace, ref.name))
        references.add(("VirtualService", ref.namespace, ref.name))
    dr_ref = istio.destination_rule_ref(canary, rollout_namespace=namespace)
    destination_rule = None
    if dr_ref is not None:
        destination_rule = lookup("destinationrules", (dr_ref.namespace, dr_ref.name))
        references.add(("DestinationRule", dr_ref.namespace, dr_ref.name))
    return virtual_services, destination_rule


def snapshot(
    *,
    namespace: str,
    body: Mapping[str, Any],
    lookup: Lookup,
    multi: Mapping[str, Any],
    now: datetime,
    instance_id: str,
    pods: tuple[dict[str, Any], ...] | None = None,
) -> Snapshot:
    """The RolloutContext for ``body`` and the objects it references."""
    name = str(body["metadata"]["name"])
    uid = body["metadata"].get("uid")
    canary = _canary(body)
    references: set[RefKey] = set()

    services: dict[str, Mapping[str, Any] | None] = {}
    for field in ("canaryService", "stableService"):
        service = canary.get(field)
        if isinstance(service, str) and service:
            services[service] = lookup("services", (namespace, service))
            references.add(("Service", namespace, service))
    try:
        virtual_services, destination_rule = _istio(namespace, canary, lookup, references)
    except (TypeError, ValueError, AttributeError, KeyError):
        virtual_services, destination_rule = {}, None  # malformed routing: the engine reports InvalidSpec
    templates, cluster_templates = _templates(namespace, canary, lookup, references)

    context = RolloutContext(
        rollout=body,
        now=now,
        replica_sets=_owned(multi["replicasets"].get((namespace, name), ()), uid),
        services=services,
        virtual_services=virtual_services,
        destination_rule=destination_rule,
        analysis_runs=_owned(multi["analysisruns"].get((namespace, name), ()), uid),
        analysis_templates=templates,
        cluster_analysis_templates=cluster_templates,
        instance_id=instance_id or None,
        pods=pods,
    )
    return Snapshot(context=context, references=frozenset(references))
