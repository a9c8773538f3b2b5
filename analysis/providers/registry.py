"""Which provider measures a metric: lookup by the key under ``metric.provider``.

analysis/handlers.py builds one lookup at start-up (``build_registry``) and
hands it to the AnalysisRun controller (analysis/controller.py), which calls
it for every due measurement:

    observation = lookup(metric).run(ctx)

A metric names exactly one provider (``provider: {prometheus: {...}}``).
Providers Tidegate does not implement (datadog, newRelic, ...), a missing
provider or several at once are not exceptions: they get a provider whose every
measurement is an Error that says so, so the run fails visibly, as in Argo.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from analysis.api.phases import AnalysisPhase
from analysis.providers.base import MSG_TERMINATED, MeasurementContext, MetricProvider
from analysis.providers.job import GenericJobsApi, JobProvider
from analysis.providers.prometheus import PrometheusProvider
from analysis.providers.web import WebProvider
from analysis.run import Observation

PROMETHEUS = "prometheus"
WEB = "web"
JOB = "job"
SUPPORTED = (PROMETHEUS, WEB, JOB)

MSG_UNSUPPORTED = 'metric "{metric}" uses provider "{provider}", which Tidegate does not support'
MSG_NO_PROVIDER = 'metric "{metric}" has no provider; set one of provider.' + ", provider.".join(
    SUPPORTED
)
MSG_SEVERAL_PROVIDERS = (
    'metric "{metric}" sets several providers ({providers}); a metric uses exactly one'
)

ProviderLookup = Callable[[Mapping[str, Any]], MetricProvider]


class UnsupportedProvider:
    """Stands in for a provider Tidegate cannot run: every measurement is an Error."""

    kind = "Unsupported"

    def __init__(self, message: str) -> None:
        self.message = message

    def run(self, ctx: MeasurementContext) -> Observation:
        return Observation.error(ctx.redact(self.message))

    def resume(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation:
        return Observation.error(ctx.redact(self.message), **dict(metadata))

    def terminate(self, ctx: MeasurementContext, metadata: Mapping[str, str]) -> Observation:
        return Observation(
            phase=AnalysisPhase.INCONCLUSIVE, message=MSG_TERMINATED, metadata=dict(metadata)
        )

    def garbage_collect(self, ctx: MeasurementContext, limit: int) -> None:
        """Nothing was ever created."""


def provider_key(metric: Mapping[str, Any]) -> str | MetricProvider:
    """The metric's provider key, or an UnsupportedProvider explaining why there is none."""
    name = str(metric.get("name", ""))
    provider = metric.get("provider")
    keys = (
        sorted(str(k) for k, v in provider.items() if v is not None)
        if isinstance(provider, Mapping)
        else []
    )
    if not keys:
        return UnsupportedProvider(MSG_NO_PROVIDER.format(metric=name))
    if len(keys) > 1:
        return UnsupportedProvider(
            MSG_SEVERAL_PROVIDERS.format(metric=name, providers=", ".join(keys))
        )
    return keys[0]


def build_registry(*, batch_api: Any = None, core_api: Any = None) -> ProviderLookup:
    """A lookup from metric to provider; providers are built once and shared.

    ``batch_api`` (a kubernetes ``BatchV1Api``) is only needed for job metrics;
    when it is None, one is built from the process's kubernetes configuration
    the first time a job metric appears. ``core_api`` (``CoreV1Api``) lets the
    job provider notice pods that cannot pull their image.
    """
    prometheus = PrometheusProvider()
    web = WebProvider()
    job: list[JobProvider] = []
    lock = threading.Lock()

    def job_provider() -> JobProvider:
        with lock:
            if not job:
                api = batch_api
                if api is None:
                    from kubernetes import client  # only when a job metric needs it

                    api = GenericJobsApi(client.ApiClient())
                job.append(JobProvider(api, core_api=core_api))
            return job[0]

    def lookup(metric: Mapping[str, Any]) -> MetricProvider:
        key = provider_key(metric)
        if not isinstance(key, str):
            return key
        if key == PROMETHEUS:
            return prometheus
        if key == WEB:
            return web
        if key == JOB:
            return job_provider()
        return UnsupportedProvider(
            MSG_UNSUPPORTED.format(metric=str(metric.get("name", "")), provider=key)
        )

    return lookup
