"""Operator actions on a Rollout, written as the same patches Argo's kubectl plugin writes.

Called by the CLI (cli/actions.py) and the dashboard's action buttons. Each
action reads the Rollout once, computes its patch with a pure builder (the
``*_patch``/``*_patches`` functions, unit-tested without a cluster) and sends it;
the controller then reacts to the changed object like any other change. Every
request carries a deadline; an error the user can act on is an ``ActionError``
naming the object and the field.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollouts.api.constants import ANNOTATION_ABORT, ANNOTATION_REVISION, LABEL_POD_TEMPLATE_HASH
from rollouts.engine.hashing import pod_template_hash

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "rollouts"
REQUEST_TIMEOUT_SECONDS = 15.0
MAX_REPLICA_SETS = 500
"""A size cap on the ReplicaSets ``undo`` reads (revisionHistoryLimit keeps far fewer)."""
JSON_PATCH = "application/json-patch+json"
ALL_CONTAINERS = "*"
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

MSG_NOT_FOUND = "rollout '{name}' not found in namespace '{namespace}'"
MSG_API_ERROR = "rollout '{name}': the API server refused the {what} ({code}): {message}"
MSG_NO_CONTAINER = (
    "rollout '{name}': no container '{container}' in spec.template.spec "
    "(containers: {known})"
)
MSG_BAD_IMAGE_ARG = "set image: expected CONTAINER=IMAGE, got '{arg}'"
MSG_NO_REVISION = (
    "rollout '{name}': no ReplicaSet with annotation " + ANNOTATION_REVISION + "={revision} "
    "(revisions: {known})"
)
MSG_NO_PREVIOUS = "rollout '{name}': no previous revision to undo to (revisions: {known})"
MSG_BAD_DURATION = "restart --in: '{value}' is not a duration (e.g. 30s, 5m, 1h30m)"
MSG_NEGATIVE_DURATION = "restart --in: '{value}' must not be negative"

MSG_PROMOTED = "rollout '{name}' promoted: {changes}"
MSG_FULLY_PROMOTED = "rollout '{name}' fully promoted: {changes}"
MSG_NOTHING_TO_PROMOTE = "rollout '{name}' is not paused and has no step left to skip"
MSG_ABORTED = "rollout '{name}' aborted: status.abort=true"
MSG_ABORTED_REASON = "rollout '{name}' aborted: annotation " + ANNOTATION_ABORT + "={reason!r}"
MSG_RETRIED = "rollout '{name}' retried: status.abort=false"
MSG_PAUSED = "rollout '{name}' paused: spec.paused=true"
MSG_RESUMED = "rollout '{name}' resumed: spec.paused=false"
MSG_RESTARTED = "rollout '{name}' restarts at {at}: spec.restartAt={at}"
MSG_IMAGE_UPDATED = "rollout '{name}' image updated: {changes}"
MSG_IMAGE_UNCHANGED = "rollout '{name}' image unchanged: {changes}"
MSG_UNDONE = "rollout '{name}' rolled back to revision {revision}: spec.template replaced"
MSG_UNDO_SKIPPED = "rollout '{name}': skipped rollback (current template already matches revision {revision})"

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}

Patch = dict[str, Any]


class ActionError(Exception):
    """An action that cannot be done; the message names the object and the field."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _api(api_client: Any) -> Any:
    return client.CustomObjectsApi(api_client)


def _call(name: str, namespace: str, what: str, call: Any) -> Any:
    """Run one request; a 404 or any other refusal becomes an ActionError saying which."""
    try:
        return call()
    except ApiException as exc:
        if exc.status == 404:
            raise ActionError(MSG_NOT_FOUND.format(name=name, namespace=namespace)) from None
        raise ActionError(MSG_API_ERROR.format(name=name, what=what, code=exc.status,
                                               message=_reason(exc))) from None


def _reason(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    return str(body.get("message") or exc.reason or "")[:500] if isinstance(body, dict) else str(exc.reason)


def get_rollout(api_client: Any, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = _call(name, namespace, "read", lambda: _api(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT_SECONDS))
    return body


def _patch_status(api_client: Any, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    _call(name, namespace, "status patch", lambda: _api(api_client).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)},
        _request_timeout=REQUEST_TIMEOUT_SECONDS))


def _patch(api_client: Any, namespace: str, name: str, body: Any, *, json_patch: bool = False) -> None:
    extra: dict[str, Any] = {"_content_type": JSON_PATCH} if json_patch else {}
    _call(name, namespace, "patch", lambda: _api(api_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, body, _request_timeout=REQUEST_TIMEOUT_SECONDS, **extra))


def _patch_spec(api_client: Any, namespace: str, name: str, spec: Mapping[str, Any]) -> None:
    _patch(api_client, namespace, name, {"spec": dict(spec)})


# --- promote ------------------------------------------------------------------------------------


def promote_patches(rollout: Mapping[str, Any], *, full: bool) -> tuple[Patch | None, Patch | None]:
    """The (status, spec) patches `promote` sends for this rollout; None where nothing is sent."""
    spec, status = rollout.get("spec", {}) or {}, rollout.get("status", {}) or {}
    spec_patch: Patch | None = {"paused": False} if spec.get("paused") else None
    if full:
        if status.get("currentPodHash") and status.get("currentPodHash") != status.get("stableRS"):
            return {"promoteFull": True, "pauseConditions": None}, spec_patch
        return ({"pauseConditions": None} if status.get("pauseConditions") else None), spec_patch
    step_run = ((status.get("canary") or {}).get("currentStepAnalysisRunStatus") or {})
    index = status.get("currentStepIndex")
    if step_run.get("status") == "Inconclusive" and index is not None:
        return {"pauseConditions": None, "controllerPause": False, "currentStepIndex": index + 1}, spec_patch
    if status.get("pauseConditions") or spec.get("paused"):
        return ({"pauseConditions": None} if status.get("pauseConditions") else None), spec_patch
    steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []
    if index is not None and index < len(steps):
        return {"pauseConditions": None, "currentStepIndex": index + 1}, spec_patch
    return None, spec_patch


def describe_patch(prefix: str, patch: Mapping[str, Any] | None) -> list[str]:
    """``status.pauseConditions cleared``, ``spec.paused=false``: one phrase per changed field."""
    phrases = []
    for key, value in (patch or {}).items():
        if value is None:
            phrases.append(f"{prefix}.{key} cleared")
        elif isinstance(value, bool):
            phrases.append(f"{prefix}.{key}={str(value).lower()}")
        else:
            phrases.append(f"{prefix}.{key}={value}")
    return phrases


def promote(api_client: Any, namespace: str, name: str, *, full: bool = False) -> str:
    rollout = get_rollout(api_client, namespace, name)
    status_patch, spec_patch = promote_patches(rollout, full=full)
    if spec_patch:
        _patch_spec(api_client, namespace, name, spec_patch)
    if status_patch:
        _patch_status(api_client, namespace, name, status_patch)
    if not (status_patch or spec_patch):
        return MSG_NOTHING_TO_PROMOTE.format(name=name)
    changes = ", ".join(describe_patch("spec", spec_patch) + describe_patch("status", status_patch))
    return (MSG_FULLY_PROMOTED if full else MSG_PROMOTED).format(name=name, changes=changes)


# --- abort, retry, pause, resume ----------------------------------------------------------------


def abort_patch(reason: str | None) -> tuple[Patch | None, Patch | None]:
    """(status patch, metadata patch) for ``abort [--reason]``.

    Without a reason: Argo's ``{"status": {"abort": true}}``. With one: only the
    ``tidegate.dev/abort`` annotation; the controller aborts and records the reason
    in the RolloutAborted message (an abort flag sent too would make it ignore the
    annotation's reason, the rollout being already aborted when it reads it).
    """
    if reason is not None and reason.strip():
        return None, {"annotations": {ANNOTATION_ABORT: reason.strip()}}
    return {"abort": True}, None


def abort(api_client: Any, namespace: str, name: str, *, reason: str | None = None) -> str:
    status_patch, metadata_patch = abort_patch(reason)
    if metadata_patch is not None:
        _patch(api_client, namespace, name, {"metadata": metadata_patch})
        return MSG_ABORTED_REASON.format(name=name, reason=(reason or "").strip())
    if status_patch is not None:
        _patch_status(api_client, namespace, name, status_patch)
    return MSG_ABORTED.format(name=name)


def retry(api_client: Any, namespace: str, name: str) -> str:
    _patch_status(api_client, namespace, name, {"abort": False})
    return MSG_RETRIED.format(name=name)


def pause(api_client: Any, namespace: str, name: str) -> str:
    _patch_spec(api_client, namespace, name, {"paused": True})
    return MSG_PAUSED.format(name=name)


def resume(api_client: Any, namespace: str, name: str) -> str:
    _patch_spec(api_client, namespace, name, {"paused": False})
    return MSG_RESUMED.format(name=name)


# --- restart ------------------------------------------------------------------------------------


def parse_duration(value: str) -> timedelta:
    """A Go-style duration (``10s``, ``5m``, ``1h30m``, ``500ms``; a bare number is seconds)."""
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return timedelta(seconds=float(text))
    if text.startswith("-"):
        raise ActionError(MSG_NEGATIVE_DURATION.format(value=value))
    parts = _DURATION.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise ActionError(MSG_BAD_DURATION.format(value=value))
    return timedelta(seconds=sum(float(number) * _UNITS[unit] for number, unit in parts))


def format_restart_time(at: datetime) -> str:
    """RFC 3339 in whole seconds, rounded up. A pod's creationTimestamp is truncated to the
    second and the restart replaces pods created *before* restartAt, so Argo's truncation of
    "now" spares a pod created earlier in the same second; rounding up counts it."""
    whole = at.astimezone(UTC)
    if whole.microsecond:
        whole = whole.replace(microsecond=0) + timedelta(seconds=1)
    return whole.strftime("%Y-%m-%dT%H:%M:%SZ")


def restart_patch(now: datetime, delay: timedelta) -> Patch:
    """``{"spec": {"restartAt": <RFC 3339>}}``, as Argo's ``restart [--in]``."""
    return {"spec": {"restartAt": format_restart_time(now + delay)}}


def restart(api_client: Any, namespace: str, name: str, *, delay: timedelta = timedelta(0)) -> str:
    patch = restart_patch(datetime.now(UTC), delay)
    _patch(api_client, namespace, name, patch)
    return MSG_RESTARTED.format(name=name, at=patch["spec"]["restartAt"])


# --- set image ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageChange:
    container: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.container}: {self.old} -> {self.new}"


def parse_image_arg(arg: str) -> tuple[str, str]:
    container, sep, image = arg.partition("=")
    if not sep or not container.strip() or not image.strip():
        raise ActionError(MSG_BAD_IMAGE_ARG.format(arg=arg))
    return container.strip(), image.strip()


def set_image_patch(rollout: Mapping[str, Any], container: str, image: str) -> tuple[list[Patch], list[ImageChange]]:
    """A JSON patch replacing the image of ``container`` (``*``: every container), and the changes.

    Each replace is guarded by a ``test`` of the container's name at that index, so
    a concurrent reordering of the list fails the patch instead of changing the
    wrong container. Covers initContainers, containers and ephemeralContainers.
    """
    name = str((rollout.get("metadata") or {}).get("name", ""))
    pod_spec = (((rollout.get("spec") or {}).get("template") or {}).get("spec") or {})
    ops: list[Patch] = []
    changes: list[ImageChange] = []
    known: list[str] = []
    for field in CONTAINER_LISTS:
        for index, entry in enumerate(pod_spec.get(field) or []):
            if not isinstance(entry, Mapping):
                continue
            known.append(str(entry.get("name")))
            if container not in (ALL_CONTAINERS, entry.get("name")):
                continue
            path = f"/spec/template/spec/{field}/{index}"
            ops.append({"op": "test", "path": f"{path}/name", "value": entry.get("name")})
            ops.append({"op": "replace" if "image" in entry else "add", "path": f"{path}/image", "value": image})
            changes.append(ImageChange(container=str(entry.get("name")), old=str(entry.get("image", "")), new=image))
    if not changes:
        raise ActionError(MSG_NO_CONTAINER.format(name=name, container=container, known=", ".join(known) or "none"))
    return ops, changes


def set_image(api_client: Any, namespace: str, name: str, container: str, image: str) -> str:
    rollout = get_rollout(api_client, namespace, name)
    ops, changes = set_image_patch(rollout, container, image)
    text = ", ".join(str(c) for c in changes)
    if all(c.old == c.new for c in changes):
        return MSG_IMAGE_UNCHANGED.format(name=name, changes=text)
    _patch(api_client, namespace, name, ops, json_patch=True)
    return MSG_IMAGE_UPDATED.format(name=name, changes=text)


# --- undo ---------------------------------------------------------------------------------------


def _revision(rs: Mapping[str, Any]) -> int | None:
    raw = ((rs.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_REVISION)
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def undo_patch(
    rollout: Mapping[str, Any], replica_sets: Sequence[Mapping[str, Any]], to_revision: int | None
) -> tuple[list[Patch] | None, int]:
    """The JSON patch putting revision N's pod template into spec.template, and N.

    ``to_revision`` None (or 0) means the previous revision: the highest one below
    the newest. The ``rollouts-pod-template-hash`` label is dropped from the copied
    template, as Argo's plugin does. None instead of a patch when the template
    already matches (Argo's "skipped rollback").
    """
    name = str((rollout.get("metadata") or {}).get("name", ""))
    by_revision = {rev: rs for rs in replica_sets if (rev := _revision(rs)) is not None}
    known = ", ".join(str(r) for r in sorted(by_revision)) or "none"
    if not to_revision:
        ordered = sorted(by_revision)
        if len(ordered) < 2:
            raise ActionError(MSG_NO_PREVIOUS.format(name=name, known=known))
        to_revision = ordered[-2]
    target = by_revision.get(to_revision)
    if target is None:
        raise ActionError(MSG_NO_REVISION.format(name=name, revision=to_revision, known=known))
    template = copy.deepcopy(dict((target.get("spec") or {}).get("template") or {}))
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    target_hash = labels.pop(LABEL_POD_TEMPLATE_HASH, None)
    template.setdefault("metadata", {})
    template["metadata"] = {**template["metadata"], "labels": labels}
    # The API server defaulted the ReplicaSet's copy (imagePullPolicy, dnsPolicy, ...).
    # Without those defaults it is the template the revision was created from when it
    # hashes to the RS's own label: then the controller re-uses that ReplicaSet and
    # bumps its revision, as Argo does; otherwise the defaulted copy is a new revision.
    collisions = (rollout.get("status") or {}).get("collisionCount")
    undefaulted = strip_server_defaults(template)
    if target_hash and pod_template_hash(undefaulted, collisions if isinstance(collisions, int) else None) == target_hash:
        template = undefaulted
    current = (rollout.get("spec") or {}).get("template") or {}
    if _same_template(current, template):
        return None, to_revision
    return [{"op": "replace", "path": "/spec/template", "value": template}], to_revision


_POD_DEFAULTS = {"restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
                 "securityContext": {}, "terminationGracePeriodSeconds": 30}
_CONTAINER_DEFAULTS = {"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                       "resources": {}}
_PULL_POLICIES = ("IfNotPresent", "Always")


def strip_server_defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a ReplicaSet's pod template without the values the API server defaults."""
    doc = copy.deepcopy(dict(template))
    meta = {k: v for k, v in (doc.get("metadata") or {}).items() if not (k == "creationTimestamp" and v is None)}
    doc["metadata"] = meta
    spec = dict(doc.get("spec") or {})
    for key, default in _POD_DEFAULTS.items():
        if key in spec and spec[key] == default:
            del spec[key]
    for field in CONTAINER_LISTS:
        if not isinstance(spec.get(field), list):
            continue
        containers = []
        for entry in spec[field]:
            entry = dict(entry) if isinstance(entry, Mapping) else entry
            if isinstance(entry, dict):
                for key, default in _CONTAINER_DEFAULTS.items():
                    if key in entry and entry[key] == default:
                        del entry[key]
                if entry.get("imagePullPolicy") in _PULL_POLICIES:
                    del entry["imagePullPolicy"]
                if isinstance(entry.get("ports"), list):
                    entry["ports"] = [{k: v for k, v in port.items() if not (k == "protocol" and v == "TCP")}
                                      if isinstance(port, Mapping) else port for port in entry["ports"]]
            containers.append(entry)
        spec[field] = containers
    doc["spec"] = spec
    return doc


def _same_template(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    def clean(t: Mapping[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(dict(t))
        meta = dict(doc.get("metadata") or {})
        meta.pop("creationTimestamp", None)
        doc["metadata"] = {k: v for k, v in meta.items() if v}
        return doc

    return clean(a) == clean(b)


def owned_replica_sets(api_client: Any, namespace: str, rollout: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ReplicaSets whose controller ownerReference is this Rollout (at most MAX_REPLICA_SETS)."""
    meta = rollout.get("metadata") or {}
    name, uid = str(meta.get("name", "")), meta.get("uid")
    match = ((rollout.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
    apps = client.AppsV1Api(api_client)
    listed = _call(name, namespace, "ReplicaSet list", lambda: apps.list_namespaced_replica_set(
        namespace, label_selector=selector or None, limit=MAX_REPLICA_SETS,
        _request_timeout=REQUEST_TIMEOUT_SECONDS, _preload_content=False))
    items = json.loads(listed.data).get("items") or []
    return [
        rs for rs in items
        if any(ref.get("uid") == uid and ref.get("controller") is True
               for ref in (rs.get("metadata") or {}).get("ownerReferences") or [])
    ]


def undo(api_client: Any, namespace: str, name: str, *, to_revision: int | None = None) -> str:
    rollout = get_rollout(api_client, namespace, name)
    replica_sets = owned_replica_sets(api_client, namespace, rollout)
    ops, revision = undo_patch(rollout, replica_sets, to_revision)
    if ops is None:
        return MSG_UNDO_SKIPPED.format(name=name, revision=revision)
    _patch(api_client, namespace, name, ops, json_patch=True)
    return MSG_UNDONE.format(name=name, revision=revision)
