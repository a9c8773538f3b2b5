"""A tiny pure "cluster" that applies Plans to plain dicts, for the engine's unit tests.

Used by tests/test_engine_rollout.py, tests/test_engine_history.py and
tests/test_hardening_*.py to walk a rollout step by step: ReplicaSet pods
become ready at once (unless ``instant_ready`` is off), AnalysisRuns stay
Pending until the test sets their phase, time moves only with ``advance``.
It mirrors what rollouts/kube/apply.py does with a Plan, in the same order.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rollouts.api.constants import ANNOTATION_ABORT, LABEL_POD_TEMPLATE_HASH
from rollouts.engine.context import Event, Plan, RolloutContext, TrafficIntent
from rollouts.engine.reconcile import plan as make_plan


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch, in place: None deletes, dicts merge, the rest replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        elif isinstance(value, dict):
            target[key] = {}
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


@dataclass
class World:
    """Objects by name plus a clock; ``reconcile()`` plans and applies once."""

    rollout: dict[str, Any]
    now: datetime
    replica_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    virtual_services: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    destination_rule: dict[str, Any] | None = None
    analysis_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    analysis_templates: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    cluster_analysis_templates: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    instant_ready: bool = True
    events: list[Event] = field(default_factory=list)
    traffic: list[TrafficIntent] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)

    def context(self) -> RolloutContext:
        return RolloutContext(
            rollout=copy.deepcopy(self.rollout),
            now=self.now,
            replica_sets=tuple(copy.deepcopy(list(self.replica_sets.values()))),
            services=copy.deepcopy(self.services),
            virtual_services=copy.deepcopy(self.virtual_services),
            destination_rule=copy.deepcopy(self.destination_rule),
            analysis_runs=tuple(copy.deepcopy(list(self.analysis_runs.values()))),
            analysis_templates=self.analysis_templates,
            cluster_analysis_templates=self.cluster_analysis_templates,
        )

    def reconcile(self) -> Plan:
        result = make_plan(self.context())
        self.apply(result)
        return result

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def make_ready(self) -> None:
        """Every pod of every ReplicaSet becomes ready and available."""
        for rs in self.replica_sets.values():
            count = rs["spec"]["replicas"]
            rs["status"] = {"replicas": count, "readyReplicas": count, "availableReplicas": count}

    def set_run_phase(self, name: str, phase: str, message: str = "") -> None:
        self.analysis_runs[name].setdefault("status", {}).update({"phase": phase, "message": message})

    def apply(self, result: Plan) -> None:
        """Apply a Plan in the I/O layer's order."""
        self.plans.append(result)
        for manifest in result.replica_sets_to_create:
            self.replica_sets.setdefault(manifest["metadata"]["name"], copy.deepcopy(manifest))
        for name, update in result.replica_set_updates.items():
            rs = self.replica_sets[name]
            if update.replicas is not None:
                rs["spec"]["replicas"] = update.replicas
            merge_patch(rs["metadata"].setdefault("annotations", {}), dict(update.annotations))
        if self.instant_ready:
            self.make_ready()
        for run in result.analysis_runs_to_create:
            self.analysis_runs.setdefault(run["metadata"]["name"], copy.deepcopy(run))
        for name in result.analysis_runs_to_terminate:
            self.analysis_runs[name]["spec"]["terminate"] = True
        for service, pod_hash in result.service_selectors.items():
            svc = self.services.get(service)
            if svc is not None:
                svc.setdefault("spec", {}).setdefault("selector", {})[LABEL_POD_TEMPLATE_HASH] = pod_hash
        if result.traffic is not None and (not self.traffic or self.traffic[-1] != result.traffic):
            self.traffic.append(result.traffic)
        merge_patch(self.rollout.setdefault("status", {}), result.status)
        if result.spec_patch:
            merge_patch(self.rollout, result.spec_patch)
        annotations = self.rollout["metadata"].setdefault("annotations", {})
        merge_patch(annotations, dict(result.rollout_annotations))
        if result.remove_abort_annotation:
            annotations.pop(ANNOTATION_ABORT, None)
        for name in result.replica_sets_to_delete:
            self.replica_sets.pop(name, None)
        self.events.extend(result.events)
