"""The pure canary engine: observed state + clock -> Plan (no I/O, no kubernetes, no kopf).

Entry point: ``plan(ctx: RolloutContext) -> Plan``, called once per reconcile by
the rollout controller's work-queue worker (rollouts/handlers.py), with the
context rollouts/kube/observe.py built; rollouts/kube/apply.py sends the Plan.
tests/engine_sim.py applies plans to plain dicts for the unit tests.
"""

from __future__ import annotations

from rollouts.engine.context import Event, Plan, ReplicaSetUpdate, RolloutContext, TrafficIntent
from rollouts.engine.reconcile import plan

__all__ = ["Event", "Plan", "ReplicaSetUpdate", "RolloutContext", "TrafficIntent", "plan"]
