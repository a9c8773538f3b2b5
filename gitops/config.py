"""Process-wide settings of the sync module, filled once by the CLI before kopf starts.

The composition root (cli/controller.py) fills them from its flags;
gitops/handlers.py reads them at start-up and in its namespace filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_APP_NAMESPACE = "argocd"  # Argo CD's application namespace


@dataclass
class GitopsConfig:
    app_namespaces: list[str] = field(default_factory=lambda: [DEFAULT_APP_NAMESPACE])
    workers: int = 8
    reconcile_seconds: float = 120.0  # argocd-cm timeout.reconciliation (Argo CD's default)
    wave_delay_seconds: float = 2.0  # ARGOCD_SYNC_WAVE_DELAY
    sync_timeout_seconds: float = 600.0  # Argo CD's --sync-timeout, finite here (0: none)
    cache_dir: Path | None = None  # the repo cache; None: a fresh temporary directory (one process owns one)
    instance_id: str = ""


CONFIG = GitopsConfig()
