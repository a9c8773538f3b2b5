"""Kubernetes Events for the objects the controllers act on.

Both controllers call ``post_event`` from their I/O layer (never from pure code):
reasons follow Argo (RolloutStepCompleted, AnalysisRunFailed, ...), so tools and
notification triggers written for Argo keep working. Messages must already be
free of secrets.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

COMPONENT = "tidegate-controller"
_MAX_MESSAGE = 1024  # the API server rejects huge event messages
EVENT_TIMEOUT_SECONDS = 10.0


def post_event(
    api: Any,
    *,
    involved: Mapping[str, Any],
    event_type: str,
    reason: str,
    message: str,
    component: str = COMPONENT,
    at: datetime | None = None,
) -> None:
    """Create a core/v1 Event about ``involved`` (a full object body), stamped ``at`` (default now)."""
    meta = involved.get("metadata", {})
    now = at or datetime.now(UTC)
    namespace = meta.get("namespace") or "default"
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(
            name=f"{meta.get('name', 'object')}.{secrets.token_hex(8)}", namespace=namespace
        ),
        involved_object=client.V1ObjectReference(
            api_version=involved.get("apiVersion"),
            kind=involved.get("kind"),
            name=meta.get("name"),
            namespace=meta.get("namespace"),
            uid=meta.get("uid"),
            resource_version=meta.get("resourceVersion"),
        ),
        reason=reason,
        message=message[:_MAX_MESSAGE],
        type=event_type,
        first_timestamp=now,
        last_timestamp=now,
        count=1,
        source=client.V1EventSource(component=component),
        reporting_component=component,
        reporting_instance=component,
    )
    # Bounded like every other call: a stalled API server must not hold the reconcile.
    client.CoreV1Api(api).create_namespaced_event(namespace, event, _request_timeout=EVENT_TIMEOUT_SECONDS)
