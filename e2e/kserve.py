"""KServe where KServe is absent: its InferenceService CRD, and a stand-in for its controller.

Used by the sync module's e2e tests (e2e/test_gitops_seed.py) and the demo
(examples/demo.py): the seed's ``llm-service`` kustomization holds an
InferenceService, which the local cluster cannot store without the CRD, and whose
health (the Application's, and its sync waves') needs something that marks it
Ready. That something here is ``KServeStandIn``, named as a stand-in everywhere it
writes: it is not KServe and runs no model.

API
---

``install_inferenceservice_crd(api_client, *, timeout=60.0) -> bool``
    Creates ``inferenceservices.serving.kserve.io`` (serving.kserve.io/v1beta1,
    namespaced, status subresource, every field preserved: no schema of KServe's
    is copied) if absent and waits until it is Established. Idempotent; True when
    this call created it. The CRD is cluster-scoped and shared by every test and
    the demo under one name: nothing here deletes it, and neither should callers
    (deleting it would delete every InferenceService of a concurrent run).

``KServeStandIn(api_client, namespace, *, delay=2.0, failure_marker="bad")``
    A thread watching InferenceServices in ``namespace`` (None: all namespaces).
    For each new ``metadata.generation`` it writes at once, through the status
    subresource, what KServe shows while a predictor starts (conditions Unknown,
    ``modelStatus.transitionStatus: InProgress``, ``observedGeneration``), so
    health checks see Progressing; ``delay`` seconds later it writes either

    * Ready: creates the predictor Deployment ``<name>-predictor`` as KServe's
      raw-deployment mode does (owned by the InferenceService; a placeholder
      image, kwok runs no container), then ``conditions`` PredictorReady,
      IngressReady and Ready ``True``,
      ``url`` ``http://<name>.<namespace>.example.com`` (KServe's default domain),
      ``address.url``, ``modelStatus.transitionStatus: UpToDate``; or
    * failed, when ``spec.predictor.model.storageUri`` contains
      ``failure_marker``: PredictorReady and Ready ``False`` with reason
      ``Failed`` and a message naming the storageUri,
      ``modelStatus.transitionStatus: BlockedByFailedLoad`` and
      ``lastFailureInfo.reason: ModelLoadFailed``, so the demo can show a model
      that does not load (Degraded).

    Every condition message says it came from the stand-in. ``start()`` returns
    once the watch is listening; ``stop()`` ends both threads; it is also a
    context manager. ``marks`` lists what it wrote, in order, as
    ``Mark(namespace, name, generation, ready)`` with ready "Unknown", "True" or
    "False"; ``wait_for(name, ready, timeout=...)`` waits for one.

Example (the demo's use)::

    from e2e.kserve import KServeStandIn, install_inferenceservice_crd

    install_inferenceservice_crd(api_client)
    with KServeStandIn(api_client, "ml-serving", delay=3.0):
        ...  # sync the Application; llm-service goes Progressing, then Healthy

Nothing here mocks the API server: the CRD, the watch and the status writes are
the real cluster's.
"""

from __future__ import annotations

import heapq
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL, KIND = "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"
CRD_NAME = f"{PLURAL}.{GROUP}"
STAND_IN_LABEL = "tidegate.dev/stand-in"
DEFAULT_DOMAIN = "example.com"  # KServe's default ingress domain
PREDICTOR_IMAGE = "tidegate.dev/kserve-stand-in/predictor:placeholder"  # never pulled: kwok runs no container

UNKNOWN, TRUE, FALSE = "Unknown", "True", "False"
REASON_FAILED = "Failed"
REASON_MODEL_LOAD_FAILED = "ModelLoadFailed"
MSG_STARTING = "the KServe stand-in (e2e/kserve.py, not KServe) is starting the predictor"
MSG_READY = "marked Ready by the KServe stand-in (e2e/kserve.py, not KServe)"
MSG_FAILED = ("the KServe stand-in (e2e/kserve.py, not KServe) failed the model: storageUri "
              "{uri!r} contains {marker!r}")
MSG_CRD_TIMEOUT = "CRD {name} was not Established within {timeout:g}s"

WATCH_SECONDS = 30  # one watch request's server-side timeout; the loop opens the next
CONDITION_TYPES = ("IngressReady", "PredictorReady", "Ready")


def inferenceservice_crd() -> dict[str, Any]:
    """A minimal InferenceService CRD: KServe's names and version, every field preserved."""
    preserved = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {STAND_IN_LABEL: "kserve"},
                     "annotations": {"tidegate.dev/note": "installed by e2e/kserve.py where KServe "
                                     "is absent; shared by tests and the demo; never deleted by them"}},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL,
                      "singular": "inferenceservice", "shortNames": ["isvc"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": preserved, "status": preserved}}},
                "additionalPrinterColumns": [
                    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
                    {"name": "Ready", "type": "string",
                     "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
                ],
            }],
        },
    }


def install_inferenceservice_crd(api_client: client.ApiClient, *, timeout: float = 60.0) -> bool:
    """Create the CRD if absent (never replaced, never deleted) and wait until it is Established."""
    ext = client.ApiextensionsV1Api(api_client)
    created = False
    try:
        ext.create_custom_resource_definition(inferenceservice_crd())
        created = True
    except ApiException as exc:
        if exc.status != 409:  # 409: already there (ours from an earlier run, or KServe's)
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(CRD_NAME)
        conditions = (crd.status.conditions if crd.status else None) or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return created
        time.sleep(0.2)
    raise TimeoutError(MSG_CRD_TIMEOUT.format(name=CRD_NAME, timeout=timeout))


@dataclass(frozen=True)
class Mark:
    namespace: str
    name: str
    generation: int
    ready: str  # "Unknown" (starting), "True" or "False"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conditions(status: str, *, reason: str = "", message: str) -> list[dict[str, str]]:
    stamp = _now()
    out = []
    for kind in CONDITION_TYPES:
        # IngressReady never fails here: the model did, not the route to it.
        value = TRUE if status == FALSE and kind == "IngressReady" else status
        condition = {"type": kind, "status": value, "lastTransitionTime": stamp,
                     "message": message if value == status else MSG_READY}
        if reason and value == FALSE:
            condition["reason"] = reason
        out.append(condition)
    return out


def starting_status(generation: int) -> dict[str, Any]:
    return {"observedGeneration": generation,
            "conditions": _conditions(UNKNOWN, message=MSG_STARTING),
            "modelStatus": {"transitionStatus": "InProgress",
                            "states": {"activeModelState": "Pending", "targetModelState": "Loading"}}}


def ready_status(name: str, namespace: str, generation: int) -> dict[str, Any]:
    return {"observedGeneration": generation,
            "conditions": _conditions(TRUE, message=MSG_READY),
            "url": f"http://{name}.{namespace}.{DEFAULT_DOMAIN}",
            "address": {"url": f"http://{name}-predictor.{namespace}.svc.cluster.local"},
            "modelStatus": {"transitionStatus": "UpToDate",
                            "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"}}}


def failed_status(generation: int, *, storage_uri: str, marker: str) -> dict[str, Any]:
    message = MSG_FAILED.format(uri=storage_uri, marker=marker)
    return {"observedGeneration": generation,
            "conditions": _conditions(FALSE, reason=REASON_FAILED, message=message),
            "url": None, "address": None,
            "modelStatus": {"transitionStatus": "BlockedByFailedLoad",
                            "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
                            "lastFailureInfo": {"reason": REASON_MODEL_LOAD_FAILED,
                                                "message": message}}}


def storage_uri(obj: dict[str, Any]) -> str:
    model = ((obj.get("spec") or {}).get("predictor") or {}).get("model") or {}
    return str(model.get("storageUri") or "")


class KServeStandIn:
    """Marks InferenceServices Ready (or failed) as KServe's controller would; see the module doc."""

    def __init__(self, api_client: client.ApiClient, namespace: str | None, *, delay: float = 2.0,
                 failure_marker: str = "bad") -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.namespace = namespace
        self.delay = delay
        self.failure_marker = failure_marker
        self.marks: list[Mark] = []
        self._seen: dict[tuple[str, str], int] = {}  # generation last scheduled, per object
        self._due: list[tuple[float, str, str, int]] = []
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._watch: watch.Watch | None = None
        self._threads = [threading.Thread(target=self._watch_loop, name="kserve-stand-in-watch", daemon=True),
                         threading.Thread(target=self._mark_loop, name="kserve-stand-in-mark", daemon=True)]

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> KServeStandIn:
        for thread in self._threads:
            thread.start()
        if not self._listening.wait(timeout=30):
            raise TimeoutError("the KServe stand-in's watch did not start within 30s")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=WATCH_SECONDS + 5)

    def __enter__(self) -> KServeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, name: str, ready: str, *, timeout: float = 60.0) -> Mark:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for mark in list(self.marks):
                if mark.name == name and mark.ready == ready:
                    return mark
            time.sleep(0.1)
        raise AssertionError(f"the KServe stand-in did not mark {name} Ready={ready} within "
                             f"{timeout:g}s; marks: {self.marks}")

    # -- the watch ----------------------------------------------------------------------------

    def _list_call(self) -> tuple[Any, tuple[Any, ...]]:
        if self.namespace is None:
            return self.custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        return self.custom.list_namespaced_custom_object, (GROUP, VERSION, self.namespace, PLURAL)

    def _watch_loop(self) -> None:
        call, args = self._list_call()
        version = ""
        while not self._stop.is_set():
            self._watch = watch.Watch()
            try:
                if not version:  # list first: objects created before the watch count too
                    listed = call(*args)
                    version = listed["metadata"]["resourceVersion"]
                    for obj in listed.get("items") or []:
                        self._observe(obj)
                self._listening.set()
                for event in self._watch.stream(call, *args, resource_version=version,
                                                timeout_seconds=WATCH_SECONDS):
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._observe(obj)
                    elif event["type"] == "DELETED":
                        meta = obj["metadata"]
                        self._seen.pop((meta["namespace"], meta["name"]), None)
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:  # the resourceVersion expired: list again
                    version = ""
                    continue
                if not self._stop.is_set():
                    time.sleep(1)
            except Exception:  # noqa: BLE001 - a broken stream is reopened, never fatal to the test
                if not self._stop.is_set():
                    time.sleep(1)

    def _observe(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        generation = int(meta.get("generation") or 1)
        if self._seen.get(key) == generation or meta.get("deletionTimestamp"):
            return
        self._seen[key] = generation
        status = obj.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        if status.get("observedGeneration") == generation and ready and ready.get("status") != UNKNOWN:
            return  # already marked at this generation (by an earlier stand-in): nothing to do
        if self._write(key, generation, starting_status(generation)):
            self.marks.append(Mark(*key, generation, UNKNOWN))
        with self._wake:
            heapq.heappush(self._due, (time.monotonic() + self.delay, *key, generation))
            self._wake.notify_all()

    # -- the marks ----------------------------------------------------------------------------

    def _mark_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                while not self._stop.is_set() and (not self._due or self._due[0][0] > time.monotonic()):
                    self._wake.wait(timeout=(self._due[0][0] - time.monotonic()) if self._due else 1.0)
                if self._stop.is_set():
                    return
                _, namespace, name, generation = heapq.heappop(self._due)
            try:
                self._finish((namespace, name), generation)
            except Exception:  # noqa: BLE001 - one failed write must not stop the stand-in
                self._seen.pop((namespace, name), None)  # the next event schedules it again

    def _finish(self, key: tuple[str, str], generation: int) -> None:
        namespace, name = key
        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return  # deleted meanwhile
            raise
        if int(obj["metadata"].get("generation") or 1) != generation:
            return  # a newer spec is scheduled on its own
        uri = storage_uri(obj)
        if self.failure_marker and self.failure_marker in uri:
            status, ready = failed_status(generation, storage_uri=uri, marker=self.failure_marker), FALSE
        else:
            status, ready = ready_status(name, namespace, generation), TRUE
            self._ensure_predictor(obj)
        if self._write(key, generation, status):
            self.marks.append(Mark(namespace, name, generation, ready))

    def _ensure_predictor(self, obj: dict[str, Any]) -> None:
        """KServe's raw-deployment mode runs a model as Deployment ``<name>-predictor`` (what an
        HPA such as the seed's scales); the stand-in creates one, owned by the InferenceService,
        running a placeholder image (no model is served)."""
        meta = obj["metadata"]
        name, namespace = f"{meta['name']}-predictor", meta["namespace"]
        predictor = (obj.get("spec") or {}).get("predictor") or {}
        labels = {"serving.kserve.io/inferenceservice": meta["name"], STAND_IN_LABEL: "kserve"}
        body = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace, "labels": labels,
                             "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                                                  "name": meta["name"], "uid": meta["uid"]}]},
                "spec": {"replicas": int(predictor.get("minReplicas") or 1),
                         "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                             {"name": "kserve-container", "image": PREDICTOR_IMAGE}]}}}}
        try:
            self.apps.create_namespaced_deployment(namespace, body)
        except ApiException as exc:
            if exc.status != 409:  # already there
                raise

    def _write(self, key: tuple[str, str], generation: int, status: dict[str, Any]) -> bool:
        namespace, name = key
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": status})
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
