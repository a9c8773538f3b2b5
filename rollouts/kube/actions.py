"""Operator actions on a Rollout, written as the same patches Argo's kubectl plugin writes.

Called by the CLI (cli/actions.py). Each function reads
the Rollout once and sends the minimal spec and/or status merge patches; the
controller then reacts to the changed object like any other change.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "rollouts"


def _api(api_client: Any) -> Any:
    return client.CustomObjectsApi(api_client)


def get_rollout(api_client: Any, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = _api(api_client).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return body


def _patch_status(api_client: Any, namespace: str, name: str, status: dict[str, Any]) -> None:
    _api(api_client).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}
    )


def _patch_spec(api_client: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    _api(api_client).patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})


def promote_patches(rollout: dict[str, Any], *, full: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The (status, spec) patches `promote` sends for this rollout; None where nothing is sent."""
    spec, status = rollout.get("spec", {}), rollout.get("status", {}) or {}
    spec_patch = {"paused": False} if spec.get("paused") else None
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


def promote(api_client: Any, namespace: str, name: str, *, full: bool = False) -> str:
    rollout = get_rollout(api_client, namespace, name)
    status_patch, spec_patch = promote_patches(rollout, full=full)
    if spec_patch:
        _patch_spec(api_client, namespace, name, spec_patch)
    if status_patch:
        _patch_status(api_client, namespace, name, status_patch)
    if not (status_patch or spec_patch):
        return f"rollout '{name}' is not paused and has no step left to skip"
    return f"rollout '{name}' {'fully ' if full else ''}promoted"


def abort(api_client: Any, namespace: str, name: str) -> str:
    _patch_status(api_client, namespace, name, {"abort": True})
    return f"rollout '{name}' aborted"


def retry(api_client: Any, namespace: str, name: str) -> str:
    _patch_status(api_client, namespace, name, {"abort": False})
    return f"rollout '{name}' retried"


def pause(api_client: Any, namespace: str, name: str) -> str:
    _patch_spec(api_client, namespace, name, {"paused": True})
    return f"rollout '{name}' paused"


def resume(api_client: Any, namespace: str, name: str) -> str:
    _patch_spec(api_client, namespace, name, {"paused": False})
    return f"rollout '{name}' resumed"
