"""The notifications controller's only API calls: read its ConfigMaps and Secrets, record, report.

Called by notifications/delivery.py in worker threads (the kubernetes client
blocks). ``NotificationsPort`` is what delivery needs; ``NotificationsKube``
implements it over the kubernetes client, a fake does in unit tests. Every call
carries a request timeout.

The record of what was sent is the annotation ``notified.notifications.argoproj.io``
on the object itself, written with a JSON merge patch of that one annotation
(so no other field, and no other writer's change, is touched).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from common.events import post_event
from common.kubewrite import server_message

REQUEST_TIMEOUT_SECONDS = 10.0
GROUP, VERSION = "argoproj.io", "v1alpha1"
PLURALS = {"Application": "applications", "AppProject": "appprojects", "Rollout": "rollouts",
           "AnalysisRun": "analysisruns"}
NOT_FOUND = 404
MERGE_PATCH = "application/merge-patch+json"
MAX_CONFIG_VALUE_CHARS = 1_000_000  # a ConfigMap is at most 1 MiB; anything bigger is not one


class KubeError(Exception):
    """A call the API server refused; the message is the server's own."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotificationsPort(Protocol):
    def read_configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        """The ConfigMap's data (None: there is no such ConfigMap)."""
        ...

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's values decoded ({}: no such Secret)."""
        ...

    def annotate(self, kind: str, namespace: str, name: str, annotations: Mapping[str, str]) -> dict[str, Any]:
        """Merge-patch these annotations onto the object; the object as written."""
        ...

    def event(self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str) -> None:
        ...


def decode_secret(data: Mapping[str, Any] | None) -> dict[str, str]:
    """A Secret's ``data`` as text; values that are not base64 of UTF-8 are left out."""
    out: dict[str, str] = {}
    for key, value in (data or {}).items():
        try:
            out[str(key)] = base64.b64decode(str(value), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
    return out


class NotificationsKube:
    """``NotificationsPort`` over the kubernetes client."""

    def __init__(self, api: Any, *, timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.timeout = timeout

    def read_configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            cm = self.core.read_namespaced_config_map(name, namespace, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                return None
            raise KubeError(server_message(exc), status=exc.status) from exc
        return {str(k): str(v)[:MAX_CONFIG_VALUE_CHARS] for k, v in (cm.data or {}).items()}

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        try:
            secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                return {}
            raise KubeError(server_message(exc), status=exc.status) from exc
        values = decode_secret(secret.data)
        values.update({str(k): str(v) for k, v in (secret.string_data or {}).items()})
        return values

    def annotate(self, kind: str, namespace: str, name: str, annotations: Mapping[str, str]) -> dict[str, Any]:
        body = {"metadata": {"annotations": dict(annotations)}}
        try:
            out = self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[kind], name, body,
                _content_type=MERGE_PATCH, _request_timeout=self.timeout)
        except ApiException as exc:
            raise KubeError(server_message(exc), status=exc.status) from exc
        return dict(out)

    def event(self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str) -> None:
        try:
            post_event(self.api, involved=involved, event_type=event_type, reason=reason, message=message)
        except ApiException as exc:
            raise KubeError(server_message(exc), status=exc.status) from exc
