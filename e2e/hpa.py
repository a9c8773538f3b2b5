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
WATCH_SECONDS = 30


def hpa_status(hpa: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The status Kubernetes' HPA controller writes when the metrics are at their target."""
    spec = hpa.get("spec") or {}
    replicas = int(spec.get("minReplicas") or 1)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def condition(kind: str, status: str, reason: str) -> dict[str, str]:
        return {"type": kind, "status": status, "reason": reason, "message": MESSAGE,
                "lastTransitionTime": stamp}

    return {"observedGeneration": (hpa.get("metadata") or {}).get("generation"),
            "currentReplicas": replicas, "desiredReplicas": replicas,
            "conditions": [condition("AbleToScale", "True", "ReadyForNewScale"),
                           condition("ScalingActive", "True", "ValidMetricFound"),
                           condition("ScalingLimited", "False", "DesiredWithinRange")]}


class HpaStandIn:
    def __init__(self, api_client: client.ApiClient, namespace: str | None = None) -> None:
        self.api = client.AutoscalingV2Api(api_client)
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
        if (hpa.get("status") or {}).get("observedGeneration") == meta.get("generation"):
            return  # already written for this generation (also our own write's event)
        try:
            self.api.patch_namespaced_horizontal_pod_autoscaler_status(
                meta["name"], meta["namespace"], {"status": hpa_status(hpa, datetime.now(UTC))})
        except client.ApiException as exc:
            if exc.status == 404:
                return  # deleted meanwhile
            raise  # the watch is re-opened and the HPA seen again
        self.marked.append((meta["namespace"], meta["name"], int(meta.get("generation") or 0)))
