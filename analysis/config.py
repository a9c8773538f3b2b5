"""Process-wide settings of the AnalysisRun controller, filled once by the CLI before kopf starts.

``analysis`` may not import ``rollouts`` (import-linter contract), so it cannot
read ``rollouts.config``; the composition root (cli/controller.py) copies the
relevant flags here. analysis/handlers.py reads them at start-up and in its
shard filter.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_WORKERS = 30  # Argo's --analysis-threads default
# Provider calls mostly wait on sockets; a thread blocked there costs little, and
# the per-namespace limit below keeps a quarter of them for each of four tenants.
DEFAULT_MEASUREMENT_THREADS = 64
DEFAULT_API_THREADS = 8
# Per namespace: a quarter of the measurement threads, so three namespaces whose
# endpoints hang still leave threads for every other namespace's measurements,
# while one busy namespace still measures 1,000 runs every 10 s
# (bench/analysis_load.py on a loaded 2-core VM, steady lag p99: 4.4 s at 16 of
# 64 threads, 3.9 s unbounded, 9.0 s at 8 of 32).
DEFAULT_NAMESPACE_LIMIT = 16


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
    # Fairness between tenants: at most this many of one namespace's provider
    # calls hold a measurement thread at once; its other measurements wait
    # (without holding a work-queue worker), the other namespaces do not.
    # 0 turns the bound off.
    namespace_limit: int = DEFAULT_NAMESPACE_LIMIT


CONFIG = AnalysisConfig()
