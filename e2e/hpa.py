"""Kubernetes' HPA controller where the metrics pipeline is absent: a named stand-in.

Used by the sync module's e2e tests and the demo (examples/demo.py). The seed's
sync waves and its ``llm-service`` kustomization hold HorizontalPodAutoscalers.
On a real cluster metrics-server feeds the HPA controller, which writes the HPA's
conditions, and Argo CD's health check (gitops/health.py, as Argo CD's) reads them.
The local cluster has no metrics API: Kubernetes' own HPA controller could only
write ``ScalingActive=False FailedGetResourceMetric``, which Argo CD's check (rightly)
calls Degraded. So e2e/cluster/up.sh runs the controller-manager without its HPA
controller, and ``HpaStandIn`` writes what the real one writes when the metrics are
at their target: ``AbleToScale=True ReadyForNewScale``, ``ScalingActive=True
ValidMetricFound``, ``ScalingLimited=False DesiredWithinRange``, replicas at
``minReplicas``. It scales nothing and judges nothing of Tidegate's; every
condition message says it came from the stand-in.

API: ``HpaStandIn(api_client, namespace=None)`` (None: all namespaces);
``start()`` returns once its watch listens; ``stop()``; a context manager;
``marked`` lists the (namespace, name, generation) it wrote, in order.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, watch

MESSAGE = "set by the HPA stand-in (e2e/hpa.py): no metrics API on the local cluster"
WATCH_SECONDS = 5  # each re-list looks again at HPAs whose target was missing
APPS_KINDS = {"Deployment": "deployment", "StatefulSet": "stateful_set", "ReplicaSet": "replica_set"}


def hpa_status(hpa: dict[str, Any], now: datetime, *, target_found: bool = True) -> dict[str, Any]:
    """The status Kubernetes' HPA controller writes when the metrics are at their target
    (or, with ``target_found`` False, when it cannot read its scale target)."""
    spec = hpa.get("spec") or {}
    replicas = int(spec.get("minReplicas") or 1)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def condition(kind: str, status: str, reason: str, message: str = MESSAGE) -> dict[str, str]:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": stamp}

    if not target_found:
        target = spec.get("scaleTargetRef") or {}
        missing = f"the HPA controller was unable to get the target's current scale: {target.get('kind')} " \
                  f"{target.get('name')!r} not found ({MESSAGE})"
        return {"observedGeneration": (hpa.get("metadata") or {}).get("generation"),
                "currentReplicas": 0, "desiredReplicas": 0,
                "conditions": [condition("AbleToScale", "False", "FailedGetScale", missing)]}
    return {"observedGeneration": (hpa.get("metadata") or {}).get("generation"),
            "currentReplicas": replicas, "desiredReplicas": replicas,
            "conditions": [condition("AbleToScale", "True", "ReadyForNewScale"),
                           condition("ScalingActive", "True", "ValidMetricFound"),
                           condition("ScalingLimited", "False", "DesiredWithinRange")]}


class HpaStandIn:
    def __init__(self, api_client: client.ApiClient, namespace: str | None = None) -> None:
        self.api = client.AutoscalingV2Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.namespace = namespace
        self.marked: list[tuple[str, str, int]] = []
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name="hpa-stand-in", daemon=True)

    def __enter__(self) -> HpaStandIn:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        self._listening.wait(timeout=30)

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout=WATCH_SECONDS + 5)

    def _list(self, **kwargs: Any) -> Any:
        if self.namespace is None:
            return self.api.list_horizontal_pod_autoscaler_for_all_namespaces(**kwargs)
        return self.api.list_namespaced_horizontal_pod_autoscaler(self.namespace, **kwargs)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._watch = watch.Watch()
            try:
                self._listening.set()
                for event in self._watch.stream(self._list, timeout_seconds=WATCH_SECONDS):
                    if self._stop.is_set():
                        break
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._mark(self.api.api_client.sanitize_for_serialization(event["object"]))
            except Exception:  # noqa: BLE001 - the watch is re-opened; a stand-in must not die
                if self._stop.wait(1):
                    return

    def _mark(self, hpa: dict[str, Any]) -> None:
        meta = hpa.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return
        status = hpa.get("status") or {}
        able: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "AbleToScale"), {})
        if status.get("observedGeneration") == meta.get("generation") and able.get("status") == "True":
            return  # already written for this generation (also our own write's event)
        found = self._target_found(meta["namespace"], (hpa.get("spec") or {}).get("scaleTargetRef") or {})
        if status.get("observedGeneration") == meta.get("generation") and not found:
            return  # still missing: already said so
        try:
            self.api.patch_namespaced_horizontal_pod_autoscaler_status(
                meta["name"], meta["namespace"],
                {"status": hpa_status(hpa, datetime.now(UTC), target_found=found)})
        except client.ApiException as exc:
            if exc.status == 404:
                return  # deleted meanwhile
            raise  # the watch is re-opened and the HPA seen again
        if found:
            self.marked.append((meta["namespace"], meta["name"], int(meta.get("generation") or 0)))

    def _target_found(self, namespace: str, ref: dict[str, Any]) -> bool:
        kind = APPS_KINDS.get(str(ref.get("kind")))
        if kind is None:
            return True  # another scalable kind (a Rollout): not checked here
        try:
            getattr(self.apps, f"read_namespaced_{kind}")(ref.get("name"), namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
