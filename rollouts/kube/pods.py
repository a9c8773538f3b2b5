"""List a Rollout's pods for a due restart (spec.restartAt), with a deadline and a size cap.

Called by rollouts/handlers.py only while ``rollouts.engine.restart.due`` says a
restart is due (Argo's restarter lists pods directly too): the controller keeps
no pod index, so an idle controller never watches pods. The engine decides
which to delete (rollouts/engine/restart.py); apply.py evicts them (the Eviction API honours PodDisruptionBudgets).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client

LIST_TIMEOUT_SECONDS = 10.0
MAX_PODS = 2000
"""A size cap on one list (far above any Rollout's replicas)."""


def list_pods(api: Any, namespace: str, rollout: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """Pods matching the Rollout's ``selector.matchLabels`` (the engine keeps those of its ReplicaSets)."""
    match = ((rollout.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{key}={value}" for key, value in sorted(match.items()))
    if not selector:
        return ()
    response = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=selector, limit=MAX_PODS,
        _request_timeout=LIST_TIMEOUT_SECONDS, _preload_content=False)
    items = json.loads(response.data).get("items") or []
    return tuple(item for item in items if isinstance(item, dict))
