"""Kubernetes API client construction and small helpers both controllers share.

Called once at controller start-up (rollouts/handlers.py, analysis/handlers.py).
The kubernetes client is blocking: callers run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException


def new_api_client(*, pool_size: int = 32) -> Any:
    """An ApiClient from $KUBECONFIG / ~/.kube/config, or the in-cluster service account."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig or os.path.exists(os.path.expanduser("~/.kube/config")):
        api = config.new_client_from_config(config_file=kubeconfig)
    else:
        config.load_incluster_config()
        api = client.ApiClient()
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = pool_size
    api.configuration.connection_pool_maxsize = pool_size
    return api


def is_status(exc: BaseException, *codes: int) -> bool:
    """True if ``exc`` is an API error with one of the given HTTP status codes."""
    return isinstance(exc, ApiException) and exc.status in codes
