"""Process-wide settings of the AnalysisRun controller, filled once by the CLI before kopf starts.

``analysis`` may not import ``rollouts`` (import-linter contract), so it cannot
read ``rollouts.config``; the CLI (rollouts/cli/main.py) copies the relevant
flags here. analysis/handlers.py reads them at start-up and in its filters.
"""

from __future__ import annotations

from dataclasses import dataclass

INSTANCE_ID_LABEL = "argo-rollouts.argoproj.io/controller-instance-id"
DEFAULT_WORKERS = 30  # Argo's --analysis-threads default
DEFAULT_MEASUREMENT_THREADS = 32
DEFAULT_API_THREADS = 8
# Per namespace: a quarter of the workers and threads, so three namespaces whose
# endpoints hang still leave room for every other namespace's measurements.
DEFAULT_NAMESPACE_LIMIT = 8


@dataclass
class AnalysisConfig:
    """What the AnalysisRun controller needs from the command line."""

    instance_id: str = ""
    # Concurrent AnalysisRun reconciles (work-queue workers).
    workers: int = DEFAULT_WORKERS
    # Threads shared by all reconciles for provider calls (Prometheus, web, Job API).
    measurement_threads: int = DEFAULT_MEASUREMENT_THREADS
    # Threads for our own API calls (Secrets, status patches, Events), kept apart so
    # slow providers can never starve the writes.
    api_threads: int = DEFAULT_API_THREADS
    # Fairness between tenants: at most this many of one namespace's runs are
    # reconciled at once, and at most this many of its provider calls hold a
    # measurement thread at once; the rest of that namespace waits, the other
    # namespaces do not. 0 turns the bound off.
    namespace_limit: int = DEFAULT_NAMESPACE_LIMIT

    def in_shard(self, labels: dict[str, str] | None) -> bool:
        """Argo's sharding: with an id, only labelled objects; without, only unlabelled ones."""
        value = (labels or {}).get(INSTANCE_ID_LABEL)
        return value == self.instance_id if self.instance_id else value is None


CONFIG = AnalysisConfig()
