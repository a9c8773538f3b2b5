"""Install the Helm chart into the real cluster and act with its ServiceAccount's token.

Used by e2e/test_install.py. ``helm template`` renders the chart (no CRDs: the
shared cluster has them already) for a unique release; ``kubectl apply
--server-side`` applies it; ``token_kubeconfig`` writes a kubeconfig whose only
credential is a TokenRequest token for the chart's ServiceAccount, so a process
started with it has exactly the chart's RBAC. ``Release.delete`` removes the
cluster-scoped objects (ClusterRoles and bindings) the release created.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.conftest import REPO

CHART = REPO / "charts" / "tidegate"
COMMAND_TIMEOUT_SECONDS = 120
TOKEN_DURATION = "1h"
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}


def run(env: dict[str, str], *args: str, input_text: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """A helm or kubectl command with the cluster's environment and a deadline."""
    proc = subprocess.run(list(args), env=env, input=input_text, capture_output=True, text=True,
                          check=False, timeout=COMMAND_TIMEOUT_SECONDS)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


@dataclass
class Release:
    """One rendering of the chart: a release name, its namespace and ``--set`` values."""

    env: dict[str, str]
    name: str
    namespace: str
    values: dict[str, str] = field(default_factory=dict)
    json_values: dict[str, str] = field(default_factory=dict)  # --set-json: lists of objects

    def render(self) -> str:
        sets = [arg for key, value in self.values.items() for arg in ("--set", f"{key}={value}")]
        sets += [arg for key, value in self.json_values.items() for arg in ("--set-json", f"{key}={value}")]
        return run(self.env, "helm", "template", self.name, str(CHART), "--namespace", self.namespace,
                   *sets).stdout

    def documents(self) -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all(self.render()) if doc]

    def apply(self, *, dry_run: bool) -> str:
        args = ["kubectl", "apply", "--server-side", "--field-manager", "tidegate-e2e", "-f", "-"]
        if dry_run:
            args.append("--dry-run=server")
        return run(self.env, *args, input_text=self.render()).stdout

    @property
    def service_account(self) -> str:
        return str(next(doc["metadata"]["name"] for doc in self.documents()
                        if doc["kind"] == "ServiceAccount" and "dashboard" not in doc["metadata"]["name"]))

    def delete(self) -> None:
        """Delete the release's cluster-scoped objects (namespaced ones go with the namespace)."""
        for doc in self.documents():
            if doc["kind"] in CLUSTER_SCOPED:
                run(self.env, "kubectl", "delete", doc["kind"].lower(), doc["metadata"]["name"],
                    "--ignore-not-found", "--wait=false", check=False)


def token_kubeconfig(env: dict[str, str], release: Release, path: Path) -> tuple[Path, str]:
    """A kubeconfig that authenticates only with a TokenRequest token for the release's SA."""
    token = run(env, "kubectl", "create", "token", release.service_account, "-n", release.namespace,
                "--duration", TOKEN_DURATION).stdout.strip()
    admin = yaml.safe_load(Path(env["KUBECONFIG"]).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "chart-sa",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "chart-sa", "user": {"token": token}}],
        "contexts": [{"name": "chart-sa", "context": {"cluster": "local", "user": "chart-sa",
                                                      "namespace": release.namespace}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path, token
