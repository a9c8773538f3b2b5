"""The dashboard's buttons: the patches they send to Rollouts and Applications.

Called by dashboard/api.py (POST /api/rollouts/... and /api/applications/...) in a
thread, with the caller's kubeconfig credentials. The patches are the CLI's: a promote
is rollouts/kube/actions.py's ``promote_patches`` decision; an abort with a reason sets
the ``tidegate.dev/abort`` annotation (the controller turns it into an abort carrying
the reason), without one the status abort patch; sync and rollback write the
``operation`` field views/appdiff.py builds, as ``tidegate app sync|rollback`` do. Every
call carries a request timeout (the CLI's helpers do not, so the patches are sent here).
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import Any, Protocol

# the plugin's patch builders and messages: the dashboard's buttons write what the CLI writes
from rollouts.kube.actions import (
    MSG_ABORTED,
    MSG_ABORTED_REASON,
    MSG_FULLY_PROMOTED,
    MSG_NOTHING_TO_PROMOTE,
    MSG_PAUSED,
    MSG_PROMOTED,
    MSG_RESUMED,
    MSG_RETRIED,
    abort_patch,
    describe_patch,
    promote_patches,
)
from views.appdiff import (
    MSG_OPERATION_RUNNING,
    AppError,
    operation_running,
    rollback_operation,
    sync_operation,
)

GROUP, VERSION = "argoproj.io", "v1alpha1"
ROLLOUTS, APPLICATIONS = "rollouts", "applications"
REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"
REQUEST_TIMEOUT = 15.0
MAX_REASON = 1024  # an annotation value people type; the API server caps annotations at 256 KiB

ROLLOUT_ACTIONS = ("promote", "promote-full", "abort", "retry", "pause", "resume")
APP_ACTIONS = ("sync", "refresh", "rollback")

MSG_UNKNOWN_ACTION = "unknown action {action!r}: one of {choices}"
MSG_BAD_FIELD = "field {field!r} must be {kind}"
MSG_SYNC = "sync of application '{name}' requested"
MSG_REFRESH = "refresh of application '{name}' requested"
MSG_ROLLBACK = "rollback of application '{name}' to history id {id} requested"


class ActionError(Exception):
    """An action refused before anything was sent: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Actions(Protocol):
    """What the POST endpoints call (a fake in unit tests)."""

    def rollout(self, namespace: str, name: str, action: str, body: Mapping[str, Any]) -> str: ...

    def application(self, namespace: str, name: str, action: str, body: Mapping[str, Any]) -> str: ...


def _field(body: Mapping[str, Any], name: str, kind: type, label: str) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
        raise ActionError(400, MSG_BAD_FIELD.format(field=name, kind=label))
    return value


def _username() -> str:
    try:
        return f"{getpass.getuser()} (dashboard)"
    except (KeyError, OSError):
        return "tidegate-dashboard"


class KubeActions:
    """``Actions`` over the kubernetes client (blocking: dashboard/api.py runs it in a thread)."""

    def __init__(self, api_client: Any, *, custom: Any = None) -> None:
        if custom is None:
            from kubernetes import client

            custom = client.CustomObjectsApi(api_client)
        self.custom = custom  # a CustomObjectsApi (a recording fake in unit tests)

    def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT)
        return body

    def _patch(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, dict(patch),
                                                   _request_timeout=REQUEST_TIMEOUT)

    def _patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, ROLLOUTS, name,
                                                          {"status": dict(status)},
                                                          _request_timeout=REQUEST_TIMEOUT)

    def rollout(self, namespace: str, name: str, action: str, body: Mapping[str, Any]) -> str:
        if action not in ROLLOUT_ACTIONS:
            raise ActionError(404, MSG_UNKNOWN_ACTION.format(action=action, choices=", ".join(ROLLOUT_ACTIONS)))
        if action in ("promote", "promote-full"):
            full = action == "promote-full"
            status_patch, spec_patch = promote_patches(self._get(ROLLOUTS, namespace, name), full=full)
            if spec_patch:
                self._patch(ROLLOUTS, namespace, name, {"spec": spec_patch})
            if status_patch:
                self._patch_status(namespace, name, status_patch)
            if not (status_patch or spec_patch):
                return MSG_NOTHING_TO_PROMOTE.format(name=name)
            changes = describe_patch("spec", spec_patch) + describe_patch("status", status_patch)
            return (MSG_FULLY_PROMOTED if full else MSG_PROMOTED).format(name=name, changes=", ".join(changes))
        if action == "abort":
            reason = str(_field(body, "reason", str, "a string") or "").strip()[:MAX_REASON]
            abort_status, abort_metadata = abort_patch(reason)
            if abort_metadata is not None:
                self._patch(ROLLOUTS, namespace, name, {"metadata": abort_metadata})
                return MSG_ABORTED_REASON.format(name=name, reason=reason)
            if abort_status is not None:
                self._patch_status(namespace, name, abort_status)
            return MSG_ABORTED.format(name=name)
        if action == "retry":
            self._patch_status(namespace, name, {"abort": False})
            return MSG_RETRIED.format(name=name)
        paused = action == "pause"
        self._patch(ROLLOUTS, namespace, name, {"spec": {"paused": paused}})
        return (MSG_PAUSED if paused else MSG_RESUMED).format(name=name)

    def application(self, namespace: str, name: str, action: str, body: Mapping[str, Any]) -> str:
        if action not in APP_ACTIONS:
            raise ActionError(404, MSG_UNKNOWN_ACTION.format(action=action, choices=", ".join(APP_ACTIONS)))
        if action == "refresh":
            self._patch(APPLICATIONS, namespace, name, {"metadata": {"annotations": {REFRESH_ANNOTATION: "normal"}}})
            return MSG_REFRESH.format(name=name)
        prune = bool(_field(body, "prune", bool, "true or false"))
        app = self._get(APPLICATIONS, namespace, name)
        try:
            if action == "sync":
                if operation_running(app):
                    raise AppError(MSG_OPERATION_RUNNING.format(name=name))
                patch = sync_operation(app, revision=None, prune=prune, options=[], username=_username())
                message = MSG_SYNC.format(name=name)
            else:
                history_id = _field(body, "id", int, "an integer")
                patch = rollback_operation(app, history_id, prune=prune, username=_username())
                history = ((app.get("status") or {}).get("history") or [])
                chosen = history_id if history_id is not None else (history[-2].get("id") if len(history) > 1
                                                                    else None)
                message = MSG_ROLLBACK.format(name=name, id=chosen)
        except AppError as exc:
            raise ActionError(409, str(exc)) from None
        self._patch(APPLICATIONS, namespace, name, patch)
        return message
