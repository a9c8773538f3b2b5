"""Building blocks for the notifications e2e tests: the seed ConfigMap, Applications and their status.

Used by e2e/test_notifications.py (the controller delivering to stand-ins) and
e2e/test_notifications_cli.py (``tidegate notifications`` printing what would be
sent). Both write an Application's status themselves, as the sync controller
writes it, so the notifications code judges exactly that status.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from e2e.kit import GROUP, VERSION

SEED = Path(__file__).resolve().parent.parent.parent / "shared" / "seed" / "notifications-cm.yaml"
SEED_FALLBACK = Path("/work/shared/seed/notifications-cm.yaml")
STATE = "notified.notifications.argoproj.io"
SUBSCRIBE = "notifications.argoproj.io/subscribe."
SLACK_TOKEN = "xoxb-e2e-stand-in-token"  # noqa: S105 - a stand-in's token

# The syncResult of every finished operation app_status writes.
RESOURCES = [{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "ml", "name": "inference",
              "status": "Synced", "message": "deployment.apps/inference configured"},
             {"group": "", "version": "v1", "kind": "Service", "namespace": "ml", "name": "inference-svc",
              "status": "Synced", "message": "service/inference-svc unchanged"}]


def seed_cm() -> dict[str, Any]:
    """The seed's notifications ConfigMap (../shared/seed/notifications-cm.yaml), as written."""
    path = SEED if SEED.exists() else SEED_FALLBACK
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("data"), dict)
    return doc


def application(name: str, namespace: str, *, annotations: dict[str, str]) -> dict[str, Any]:
    """An Application (no controller syncs it) carrying the subscription ``annotations``."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"project": "default",
                 "source": {"repoURL": "https://git.example.com/ml/models.git", "path": "serving",
                            "targetRevision": "main"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace}},
    }


def app_status(phase: str, revision: str, *, unhealthy: str = "Progressing") -> dict[str, Any]:
    """The status the sync controller writes while (``Running``) and after an operation.

    Health is Healthy after a ``Succeeded`` operation, else ``unhealthy``.
    """
    op: dict[str, Any] = {"phase": phase, "message": f"sync {phase.lower()}",
                          "operation": {"sync": {"revision": revision}},
                          "startedAt": "2026-12-01T10:00:00Z"}
    if phase != "Running":
        op["finishedAt"] = "2026-12-01T10:00:05Z"
        op["syncResult"] = {"revision": revision, "resources": copy.deepcopy(RESOURCES)}
    return {"sync": {"status": "Synced" if phase == "Succeeded" else "OutOfSync", "revision": revision},
            "health": {"status": "Healthy" if phase == "Succeeded" else unhealthy},
            "operationState": op}
