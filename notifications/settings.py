"""Process-wide settings of the notifications controller, filled once by the CLI before kopf starts.

The composition root (cli/controller.py) fills them from its flags;
notifications/handlers.py reads them at start-up and in its filters. Like
gitops/config.py: plain data, no I/O.

Where the ConfigMaps are read (what this controller chose; see docs in
notifications/handlers.py):

* Applications: ``argocd-notifications-cm`` and ``argocd-notifications-secret``
  in Argo CD's namespace, the first of ``app_namespaces`` (``argocd`` unless
  ``--app-namespace`` says otherwise), for every application namespace, as
  Argo CD reads them.
* Rollouts and AnalysisRuns: ``argo-rollouts-notification-configmap`` and
  ``argo-rollouts-notification-secret`` in the object's own namespace when that
  namespace has the ConfigMap (self-service: a tenant's config is used with its
  own Secret only, never merged with the controller's, so no tenant can reference
  the controller's secrets); otherwise the pair in ``rollouts_namespace`` (Argo
  Rollouts reads them from its controller's namespace).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_APP_NAMESPACE = "argocd"  # Argo CD's namespace
# Argo Rollouts' controller namespace, where it reads its notification ConfigMap;
# POD_NAMESPACE when the controller runs in a pod (the downward API sets it).
DEFAULT_ROLLOUTS_NAMESPACE = "argo-rollouts"
POD_NAMESPACE_ENV = "POD_NAMESPACE"

ARGOCD_CM = "argocd-notifications-cm"
ARGOCD_SECRET = "argocd-notifications-secret"  # noqa: S105 - a Secret's name, not a secret
ROLLOUTS_CM = "argo-rollouts-notification-configmap"
ROLLOUTS_SECRET = "argo-rollouts-notification-secret"  # noqa: S105 - a Secret's name


def default_rollouts_namespace() -> str:
    return os.environ.get(POD_NAMESPACE_ENV) or DEFAULT_ROLLOUTS_NAMESPACE


@dataclass
class NotificationSettings:
    app_namespaces: list[str] = field(default_factory=lambda: [DEFAULT_APP_NAMESPACE])
    rollouts_namespace: str = field(default_factory=default_rollouts_namespace)
    workers: int = 8  # objects evaluated at once (a worker waiting on a send is given back)
    send_threads: int = 16  # the pool every send runs in, shared by all namespaces
    sends_per_namespace: int = 4  # at most this many of those threads for one namespace
    send_deadline_seconds: float = 30.0  # one send, retries inside the service included
    retry_base_seconds: float = 5.0  # a failed delivery is tried again after this, doubling
    retry_max_seconds: float = 300.0
    config_ttl_seconds: float = 30.0  # a ConfigMap outside the watched namespaces is read again after this
    instance_id: str = ""


SETTINGS = NotificationSettings()
