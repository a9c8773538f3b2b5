"""The pure canary engine: observed state + clock -> Plan (no I/O, no kubernetes, no kopf).

Entry point: ``plan(ctx: RolloutContext) -> Plan``, called by the rollout daemon
(rollouts/handlers.py via rollouts/kube). ``sim.World`` applies plans to plain
dicts for tests and demos.
"""

from __future__ import annotations

from rollouts.engine.context import Event, Plan, ReplicaSetUpdate, RolloutContext, TrafficIntent
from rollouts.engine.reconcile import plan

__all__ = ["Event", "Plan", "ReplicaSetUpdate", "RolloutContext", "TrafficIntent", "plan"]
