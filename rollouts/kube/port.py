"""The rollout controller's API calls, behind one small port (``RolloutPort``).

apply.py performs a Plan only through this protocol, so a unit test hands it a
recording fake and asserts the exact requests. ``KubeRolloutPort`` is the real
one over the kubernetes client, built by apply.apply_plan from the shared
ApiClient (rollouts/handlers.py). Every method is one request and blocks: the
handler runs apply in a worker thread. Errors are the client's ApiException,
unchanged: apply.py decides what a 404, 409 or 422 means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from kubernetes import client

from common.events import post_event

GROUP, VERSION = "argoproj.io", "v1alpha1"
ISTIO_GROUP = "networking.istio.io"
ISTIO_DEFAULT_VERSION = "v1alpha3"
POD_EVICT_TIMEOUT_SECONDS = 10.0


class RolloutPort(Protocol):
    """The writes one reconcile of one Rollout may send."""

    def create_replica_set(self, namespace: str, manifest: Mapping[str, Any]) -> None: ...

    def patch_replica_set(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """A strategic-merge patch (replicas, annotations)."""

    def delete_replica_set(self, namespace: str, name: str) -> None:
        """Delete (a missing one raises the 404; the caller treats it as done)."""

    def patch_service(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None: ...

    def evict_pod(self, namespace: str, name: str) -> None:
        """Evict a pod for a restart through the Eviction API, as Argo's restarter does: a
        PodDisruptionBudget that the eviction would break answers 429 (the caller retries on
        the next reconcile); a missing pod raises the 404 (the caller treats it as done)."""

    def replace_virtual_service(self, document: Mapping[str, Any]) -> None:
        """A full replace carrying the resourceVersion read (a concurrent edit answers 409)."""

    def replace_destination_rule(self, document: Mapping[str, Any]) -> None: ...

    def create_analysis_run(self, namespace: str, manifest: Mapping[str, Any]) -> None: ...

    def patch_analysis_run(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None: ...

    def delete_analysis_run(self, namespace: str, name: str) -> None: ...

    def patch_rollout(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        """A merge patch of the Rollout itself (spec default, annotations); returns the written body."""

    def patch_rollout_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> Mapping[str, Any]:
        """A merge patch of the status subresource (``{"status": status}``); returns the written body."""

    def post_event(self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str,
                   at: datetime | None = None) -> None: ...


EventPoster = Callable[..., None]


class KubeRolloutPort:
    """RolloutPort over the kubernetes client.

    ReplicaSets are created through the generic endpoint, not AppsV1Api: the typed
    client re-validates the user's pod template with its own models and rejects
    valid JSON the API server accepts (e.g. an integer quantity ``nvidia.com/gpu: 1``).
    """

    def __init__(self, api: Any, *, custom: Any = None, apps: Any = None, core: Any = None,
                 events: EventPoster | None = None) -> None:
        self.api = api
        self.custom = custom if custom is not None else client.CustomObjectsApi(api)
        self.apps = apps if apps is not None else client.AppsV1Api(api)
        self.core = core if core is not None else client.CoreV1Api(api)
        self._post = events or post_event

    def create_replica_set(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        self.custom.create_namespaced_custom_object("apps", "v1", namespace, "replicasets", dict(manifest))

    def patch_replica_set(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.apps.patch_namespaced_replica_set(name, namespace, dict(patch))

    def delete_replica_set(self, namespace: str, name: str) -> None:
        self.apps.delete_namespaced_replica_set(name, namespace)

    def patch_service(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.core.patch_namespaced_service(name, namespace, dict(patch))

    def evict_pod(self, namespace: str, name: str) -> None:
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
        self.core.create_namespaced_pod_eviction(name, namespace, body,
                                                 _request_timeout=POD_EVICT_TIMEOUT_SECONDS)

    def _replace_istio(self, plural: str, document: Mapping[str, Any]) -> None:
        meta = document["metadata"]
        api_version = str(document.get("apiVersion") or f"{ISTIO_GROUP}/{ISTIO_DEFAULT_VERSION}")
        self.custom.replace_namespaced_custom_object(
            ISTIO_GROUP, api_version.split("/", 1)[-1], meta["namespace"], plural, meta["name"], dict(document))

    def replace_virtual_service(self, document: Mapping[str, Any]) -> None:
        self._replace_istio("virtualservices", document)

    def replace_destination_rule(self, document: Mapping[str, Any]) -> None:
        self._replace_istio("destinationrules", document)

    def create_analysis_run(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "analysisruns", dict(manifest))

    def patch_analysis_run(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "analysisruns", name, dict(patch))

    def delete_analysis_run(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "analysisruns", name)

    def patch_rollout(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        written: Mapping[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "rollouts", name, dict(patch))
        return written

    def patch_rollout_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> Mapping[str, Any]:
        written: Mapping[str, Any] = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "rollouts", name, {"status": dict(status)})
        return written

    def post_event(self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str,
                   at: datetime | None = None) -> None:
        self._post(self.api, involved=involved, event_type=event_type, reason=reason, message=message, at=at)
