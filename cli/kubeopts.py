"""The kubectl-style connection flags every user-facing command shares.

``--kubeconfig``, ``--context`` and ``-n/--namespace`` (default: the context's
namespace, else ``default``), as kubectl and ``kubectl argo rollouts`` take them.
Called by the plugin commands (cli/plugin.py, cli/actions.py, cli/explain.py) and
the dashboard (cli/dashboard.py), which build their API client here.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

DEFAULT_NAMESPACE = "default"
CLIENT_POOL_SIZE = 8
MSG_NO_KUBECONFIG = "no kubeconfig ($KUBECONFIG, ~/.kube/config or --kubeconfig) and not in a pod"
MSG_CLIENT = "tidegate: cannot reach the cluster: {where}: {error}"


def add_kube_flags(parser: argparse.ArgumentParser, *, namespace: bool = True) -> None:
    """Add ``--kubeconfig``, ``--context`` and (unless ``namespace=False``) ``-n/--namespace``."""
    parser.add_argument("--kubeconfig", default=None,
                        help="path to the kubeconfig file (none: $KUBECONFIG, then ~/.kube/config)")
    parser.add_argument("--context", default=None, help="the kubeconfig context to use")
    if namespace:
        parser.add_argument("--namespace", "-n", default=None,
                            help="the namespace (none: the context's namespace, else 'default')")


def _kubeconfig_path(args: argparse.Namespace) -> str | None:
    path = getattr(args, "kubeconfig", None) or os.environ.get("KUBECONFIG") or None
    if path is None and os.path.exists(os.path.expanduser("~/.kube/config")):
        path = os.path.expanduser("~/.kube/config")
    return path.split(os.pathsep)[0] if path else None


def context_namespace(args: argparse.Namespace) -> str:
    """``-n`` if given, else the kubeconfig context's namespace, else ``default``."""
    explicit = getattr(args, "namespace", None)
    if explicit:
        return str(explicit)
    path = _kubeconfig_path(args)
    if path is None:
        return DEFAULT_NAMESPACE
    from kubernetes import config

    try:
        contexts, current = config.list_kube_config_contexts(config_file=path)
    except (config.ConfigException, OSError):
        return DEFAULT_NAMESPACE
    wanted = getattr(args, "context", None)
    chosen = next((c for c in contexts if c.get("name") == wanted), None) if wanted else current
    return str(((chosen or {}).get("context") or {}).get("namespace") or DEFAULT_NAMESPACE)


def api_client(args: argparse.Namespace, *, pool_size: int = CLIENT_POOL_SIZE) -> Any:
    """An ApiClient for the chosen kubeconfig and context (in-cluster when there is no kubeconfig)."""
    from kubernetes import client, config

    path = _kubeconfig_path(args)
    try:
        if path is None:
            config.load_incluster_config()
            api = client.ApiClient()
        else:
            api = config.new_client_from_config(config_file=path, context=getattr(args, "context", None))
    except (config.ConfigException, OSError) as exc:
        # one line, no traceback: the usual cause is a shell without $KUBECONFIG
        where = path or MSG_NO_KUBECONFIG
        raise SystemExit(MSG_CLIENT.format(where=where, error=exc)) from None
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = pool_size
    api.configuration.connection_pool_maxsize = pool_size
    return api
