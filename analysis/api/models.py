"""Pydantic models of the analysis CRDs (argoproj.io/v1alpha1).

Models: AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun and their parts
(Metric, Argument, MetricResult, Measurement, ...). Used by the AnalysisRun
controller (templates, run state machine, providers) and, read-only, by the
rollout controller, which creates AnalysisRuns from templates.

Compatibility rule: a user's YAML must survive a round trip unchanged, so every
model keeps unknown fields (``extra="allow"``) and
``parse(M, doc).model_dump(by_alias=True, exclude_unset=True, mode="json") == doc``
for every valid document. Integer-or-string fields (``count``, ``failureLimit``,
...) stay as written; ``analysis.api.templates`` turns ``"{{args.x}}"`` into integers.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from analysis.api.phases import AnalysisPhase
from common.api import API_VERSION, IntOrString, KubeModel, KubeTime, ObjectMeta

# --- template spec -----------------------------------------------------------------------


class SecretKeyRef(KubeModel):
    name: str
    key: str


class FieldRef(KubeModel):
    field_path: str


class ValueFrom(KubeModel):
    """Where an argument's value comes from.

    Templates and runs use ``secretKeyRef``; a Rollout may also use ``fieldRef`` and
    ``podTemplateHashValue``, which the rollout controller resolves before creating the run.
    """

    secret_key_ref: SecretKeyRef | None = None
    field_ref: FieldRef | None = None
    pod_template_hash_value: str | None = None


class Argument(KubeModel):
    name: str
    value: str | None = None
    value_from: ValueFrom | None = None


class DryRun(KubeModel):
    """``metricName`` is a regular expression (searched, as Go's MatchString); ``*`` means all."""

    metric_name: str


class MeasurementRetention(KubeModel):
    metric_name: str
    limit: int


class TemplateRef(KubeModel):
    """A nested template reference inside a template's ``spec.templates``."""

    template_name: str
    cluster_scope: bool = False


class Provider(KubeModel):
    """Exactly one provider is set. Each provider's own spec is kept as a plain dict."""

    prometheus: dict[str, Any] | None = None
    web: dict[str, Any] | None = None
    job: dict[str, Any] | None = None
    kayenta: dict[str, Any] | None = None
    datadog: dict[str, Any] | None = None
    new_relic: dict[str, Any] | None = None
    wavefront: dict[str, Any] | None = None
    cloud_watch: dict[str, Any] | None = None
    graphite: dict[str, Any] | None = None
    influxdb: dict[str, Any] | None = None
    skywalking: dict[str, Any] | None = None
    plugin: dict[str, Any] | None = None

    def kinds(self) -> list[str]:
        """camelCase names of the providers that are set (known and unknown ones)."""
        return [key for key, value in self.to_json().items() if value is not None]


class Metric(KubeModel):
    name: str
    provider: Provider = Field(default_factory=Provider)
    interval: str | None = None
    initial_delay: str | None = None
    count: IntOrString | None = None
    success_condition: str | None = None
    failure_condition: str | None = None
    failure_limit: IntOrString | None = None
    inconclusive_limit: IntOrString | None = None
    consecutive_error_limit: IntOrString | None = None
    consecutive_success_limit: IntOrString | None = None


class AnalysisTemplateSpec(KubeModel):
    metrics: list[Metric] = Field(default_factory=list)
    args: list[Argument] = Field(default_factory=list)
    dry_run: list[DryRun] = Field(default_factory=list)
    measurement_retention: list[MeasurementRetention] = Field(default_factory=list)
    templates: list[TemplateRef] = Field(default_factory=list)


class AnalysisTemplate(KubeModel):
    api_version: str = API_VERSION
    kind: str = "AnalysisTemplate"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AnalysisTemplateSpec = Field(default_factory=AnalysisTemplateSpec)


class ClusterAnalysisTemplate(KubeModel):
    api_version: str = API_VERSION
    kind: str = "ClusterAnalysisTemplate"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AnalysisTemplateSpec = Field(default_factory=AnalysisTemplateSpec)


# --- run ---------------------------------------------------------------------------------


class TtlStrategy(KubeModel):
    seconds_after_completion: int | None = None
    seconds_after_failure: int | None = None
    seconds_after_success: int | None = None


class AnalysisRunSpec(KubeModel):
    metrics: list[Metric] = Field(default_factory=list)
    args: list[Argument] = Field(default_factory=list)
    terminate: bool = False
    dry_run: list[DryRun] = Field(default_factory=list)
    measurement_retention: list[MeasurementRetention] = Field(default_factory=list)
    ttl_strategy: TtlStrategy | None = None


class Measurement(KubeModel):
    phase: AnalysisPhase
    message: str | None = None
    started_at: KubeTime | None = None
    finished_at: KubeTime | None = None
    value: str | None = None
    metadata: dict[str, str] | None = None
    resume_at: KubeTime | None = None


class MetricResult(KubeModel):
    name: str
    phase: AnalysisPhase = AnalysisPhase.PENDING
    measurements: list[Measurement] = Field(default_factory=list)
    message: str | None = None
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_success: int = 0
    dry_run: bool = False
    metadata: dict[str, str] | None = None


class RunSummary(KubeModel):
    """Metric-level counts: how many metrics, and how many ended in each phase."""

    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0


class AnalysisRunStatus(KubeModel):
    phase: AnalysisPhase | None = None
    message: str | None = None
    started_at: KubeTime | None = None
    completed_at: KubeTime | None = None
    run_summary: RunSummary | None = None
    dry_run_summary: RunSummary | None = None
    metric_results: list[MetricResult] = Field(default_factory=list)

    def result(self, metric_name: str) -> MetricResult | None:
        """This metric's result, or None before its first measurement."""
        return next((r for r in self.metric_results if r.name == metric_name), None)


class AnalysisRun(KubeModel):
    api_version: str = API_VERSION
    kind: str = "AnalysisRun"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AnalysisRunSpec = Field(default_factory=AnalysisRunSpec)
    status: AnalysisRunStatus = Field(default_factory=AnalysisRunStatus)


def rule_matches(metric_name_rule: str, metric_name: str) -> bool:
    """Does a dryRun / measurementRetention ``metricName`` rule select this metric?

    Argo treats the rule as a regular expression searched anywhere in the name; ``*``
    (not a valid expression) is accepted as "every metric". An invalid expression
    matches nothing (templates.py rejects it with a message first).
    """
    if metric_name_rule == "*":
        return True
    try:
        return re.search(metric_name_rule, metric_name) is not None
    except re.error:
        return False
