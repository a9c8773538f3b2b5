"""Pydantic models of the analysis CRDs (argoproj.io/v1alpha1) and their parsing.

Models: AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun and their parts
(Metric, Argument, MetricResult, Measurement, ...). Used by the AnalysisRun
controller (templates.py, run.py, handlers) and, read-only, by the rollout
controller, which creates AnalysisRuns from templates.

Compatibility rule: a user's YAML must survive a round trip unchanged, so every
model keeps unknown fields (``extra="allow"``) and
``parse(M, doc).model_dump(by_alias=True, exclude_unset=True, mode="json") == doc``
for every valid document. Integer-or-string fields (``count``, ``failureLimit``,
...) stay as written; templates.py turns ``"{{args.x}}"`` into integers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from analysis.phases import AnalysisPhase

GROUP = "argoproj.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

MSG_INT_OR_STRING = "Input should be a valid integer"
MSG_BAD_DURATION = 'invalid duration "{text}": use a number with a unit, e.g. 30s, 5m, 1h30m'


class SpecError(ValueError):
    """A spec a person must fix; the message names the object and the field."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- field types -------------------------------------------------------------------------


def _int_or_string(value: object) -> int | str:
    # bool is an int in Python but never a valid count or limit in Kubernetes' IntOrString.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError("int_or_string", MSG_INT_OR_STRING)
    return value


IntOrString = Annotated[int | str, BeforeValidator(_int_or_string)]
"""Kubernetes IntOrString: kept exactly as written (``5`` stays 5, ``"5"`` stays "5")."""


def _aware(value: object) -> object:
    # Kubernetes times are UTC; a naive datetime from our own code means UTC too.
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; sub-seconds only when present, trailing zeros trimmed.

    Trimming matches Go's RFC3339Nano, so ``...00.5Z`` read from the API server is
    written back byte-for-byte.
    """
    value = value.astimezone(UTC)
    text = value.replace(tzinfo=None, microsecond=0).isoformat(timespec="seconds")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


KubeTime = Annotated[
    datetime,
    BeforeValidator(_aware),
    PlainSerializer(format_time, return_type=str, when_used="json"),
]
"""A metav1.Time: timezone-aware datetime, written back as ``2024-05-01T10:00:00Z``."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string (``30s``, ``5m``, ``1h30m``, ``500ms``; ``0`` alone is allowed).

    Raises ValueError with a message a person can act on.
    """
    stripped = text.strip()
    if stripped == "0":
        return timedelta(0)
    position, seconds = 0, 0.0
    while position < len(stripped):
        match = _DURATION_PART.match(stripped, position)
        if match is None:
            raise ValueError(MSG_BAD_DURATION.format(text=text))
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not stripped:
        raise ValueError(MSG_BAD_DURATION.format(text=text))
    return timedelta(seconds=seconds)


# --- base --------------------------------------------------------------------------------


class KubeModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields kept for the round trip."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
    )

    def to_json(self) -> dict[str, Any]:
        """The document as Kubernetes stores it: camelCase, only the fields that were set."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


class ObjectMeta(KubeModel):
    """The parts of metav1.ObjectMeta we read; everything else round-trips untouched."""

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    generation: int | None = None


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


# --- parsing -----------------------------------------------------------------------------

M = TypeVar("M", bound=KubeModel)


def object_label(kind: str, doc: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` (or ``Kind name`` when cluster-scoped) for messages."""
    metadata = doc.get("metadata")
    meta = metadata if isinstance(metadata, Mapping) else {}
    name = meta.get("name") or "<unnamed>"
    namespace = meta.get("namespace")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's ``('spec', 'metrics', 0, 'count')`` as ``spec.metrics[0].count``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse(kind_model: type[M], doc: Mapping[str, Any]) -> M:
    """Validate ``doc`` as ``kind_model``; on bad input raise SpecError naming object and field.

    Example message:
    ``AnalysisTemplate ml-serving/x: spec.metrics[0].failureLimit: Input should be a valid integer``
    """
    try:
        return kind_model.model_validate(doc)
    except ValidationError as err:
        kind_field = kind_model.model_fields.get("kind")
        default_kind = kind_field.default if kind_field is not None else kind_model.__name__
        label = object_label(str(doc.get("kind") or default_kind), doc)
        details = "; ".join(f"{field_path(e['loc'])}: {e['msg']}" for e in err.errors())
        raise SpecError(f"{label}: {details}") from err


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
