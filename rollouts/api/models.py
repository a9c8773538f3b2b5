"""Pydantic models of the Rollout CRD (argoproj.io/v1alpha1) and ``parse_rollout``.

Parsed once per reconcile by ``RolloutContext`` (rollouts/engine/context.py) and
then read by the engine (read-only: it decides from the parsed spec and writes a
plain status dict), including its validation. Field names follow Argo's
``types.go`` (semantics reference §1.1 and §1.11).

Compatibility rule, shared with ``analysis.api``: unknown fields are kept
(``extra="allow"``), so ``parse_rollout(doc).to_json() == doc`` for every valid
document. Integer-or-string fields (``maxSurge``, pause ``duration``) stay as
written; the engine interprets them. A pod template is kept as a plain dict: it
is a PodTemplateSpec we only hash and copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, StrictBool, StrictInt

from common.api import (
    IntOrString,
    KubeModel,
    ObjectMeta,
    SpecError,
    parse,
)
from rollouts.api.constants import API_VERSION, KIND_ROLLOUT

# --- analysis references -----------------------------------------------------------------


class FieldRefSelector(KubeModel):
    """``valueFrom.fieldRef``: a path into the Rollout, e.g. ``metadata.labels['env']``."""

    field_path: str


class ArgumentValueFrom(KubeModel):
    """Where a rollout-side analysis argument takes its value from."""

    pod_template_hash_value: Literal["Stable", "Latest"] | None = None
    field_ref: FieldRefSelector | None = None


class AnalysisRunArgument(KubeModel):
    """A rollout-side argument passed to AnalysisTemplates."""

    name: str
    value: str | None = None
    value_from: ArgumentValueFrom | None = None


class AnalysisTemplateRef(KubeModel):
    """``templates[]`` entry of an analysis step or background analysis."""

    template_name: str
    cluster_scope: StrictBool | None = None


class DryRunRule(KubeModel):
    """``dryRun[].metricName``."""

    metric_name: str


class RetentionRule(KubeModel):
    """``measurementRetention[]``."""

    metric_name: str
    limit: StrictInt


class RunMetadata(KubeModel):
    """``analysisRunMetadata``: labels and annotations copied onto created runs."""

    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class RolloutAnalysis(KubeModel):
    """An analysis step's body (``steps[].analysis``)."""

    templates: list[AnalysisTemplateRef] | None = None
    args: list[AnalysisRunArgument] | None = None
    dry_run: list[DryRunRule] | None = None
    measurement_retention: list[RetentionRule] | None = None
    analysis_run_metadata: RunMetadata | None = None


class BackgroundAnalysis(RolloutAnalysis):
    """``strategy.canary.analysis``: runs for the whole update from ``startingStep``."""

    starting_step: StrictInt | None = None


# --- steps -------------------------------------------------------------------------------


class PauseStep(KubeModel):
    """``pause: {}`` (indefinite) or ``pause: {duration: 30 | "30s" | "5m"}``."""

    duration: IntOrString | None = None


class SetCanaryScale(KubeModel):
    """``setCanaryScale``: decouple canary replicas from the traffic weight."""

    replicas: StrictInt | None = None
    weight: StrictInt | None = None
    match_traffic_weight: StrictBool | None = None


class HeaderValue(KubeModel):
    """``headerValue``: exactly one of exact / regex / prefix."""

    exact: str | None = None
    regex: str | None = None
    prefix: str | None = None


class HeaderRoutingMatch(KubeModel):
    """``setHeaderRoute.match[]``."""

    header_name: str
    header_value: HeaderValue


class SetHeaderRoute(KubeModel):
    """``setHeaderRoute`` (parsed and kept; not supported yet, see validation)."""

    name: str | None = None
    match: list[HeaderRoutingMatch] | None = None


class SetMirrorRoute(KubeModel):
    """``setMirrorRoute`` (parsed and kept; not supported yet). ``match`` stays raw."""

    name: str
    match: list[dict[str, Any]] | None = None
    percentage: StrictInt | None = None


class PluginStep(KubeModel):
    """``plugin`` step (parsed and kept; not supported)."""

    name: str
    config: dict[str, Any] | None = None


class CanaryStep(KubeModel):
    """One ``steps[]`` entry; validation requires exactly one field set."""

    set_weight: StrictInt | None = None
    pause: PauseStep | None = None
    analysis: RolloutAnalysis | None = None
    set_canary_scale: SetCanaryScale | None = None
    experiment: dict[str, Any] | None = None
    set_header_route: SetHeaderRoute | None = None
    set_mirror_route: SetMirrorRoute | None = None
    plugin: PluginStep | None = None


# --- traffic routing ---------------------------------------------------------------------


class TLSRoute(KubeModel):
    """``virtualService.tlsRoutes[]``."""

    port: StrictInt | None = None
    sni_hosts: list[str] | None = None


class TCPRoute(KubeModel):
    """``virtualService.tcpRoutes[]``."""

    port: StrictInt | None = None


class IstioVirtualService(KubeModel):
    """One VirtualService reference (``name`` may be ``name.namespace``)."""

    name: str
    routes: list[str] | None = None
    tls_routes: list[TLSRoute] | None = None
    tcp_routes: list[TCPRoute] | None = None


class IstioDestinationRule(KubeModel):
    """Subset-level routing: a DestinationRule and its two subset names."""

    name: str
    canary_subset_name: str
    stable_subset_name: str
    additional_subset_names: list[str] | None = None


class IstioTrafficRouting(KubeModel):
    """``trafficRouting.istio``: exactly one of virtualService / virtualServices."""

    virtual_service: IstioVirtualService | None = None
    virtual_services: list[IstioVirtualService] | None = None
    destination_rule: IstioDestinationRule | None = None


class ManagedRoute(KubeModel):
    """``trafficRouting.managedRoutes[]``."""

    name: str


class TrafficRouting(KubeModel):
    """``trafficRouting``; only Istio is implemented, other routers are kept as dicts."""

    istio: IstioTrafficRouting | None = None
    managed_routes: list[ManagedRoute] | None = None
    max_traffic_weight: StrictInt | None = None


# --- canary strategy ---------------------------------------------------------------------


class PingPong(KubeModel):
    """``pingPong`` (parsed and kept; not supported yet)."""

    ping_service: str
    pong_service: str


class PodMetadata(KubeModel):
    """``canaryMetadata`` / ``stableMetadata``."""

    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class ReplicaProgressThreshold(KubeModel):
    """``replicaProgressThreshold{type: Percent|Pods, value}``."""

    type: Literal["Percent", "Pods"]
    value: StrictInt


class CanaryStrategy(KubeModel):
    """``strategy.canary`` (semantics reference §1.1)."""

    canary_service: str | None = None
    stable_service: str | None = None
    steps: list[CanaryStep] | None = None
    traffic_routing: TrafficRouting | None = None
    max_surge: IntOrString | None = None
    max_unavailable: IntOrString | None = None
    analysis: BackgroundAnalysis | None = None
    anti_affinity: dict[str, Any] | None = None
    canary_metadata: PodMetadata | None = None
    stable_metadata: PodMetadata | None = None
    scale_down_delay_seconds: StrictInt | None = None
    scale_down_delay_revision_limit: StrictInt | None = None
    abort_scale_down_delay_seconds: StrictInt | None = None
    dynamic_stable_scale: StrictBool | None = None
    ping_pong: PingPong | None = None
    min_pods_per_replica_set: StrictInt | None = None
    replica_progress_threshold: ReplicaProgressThreshold | None = None


class RolloutStrategy(KubeModel):
    """``strategy``: canary is implemented; blueGreen is kept and rejected by validation."""

    canary: CanaryStrategy | None = None
    blue_green: dict[str, Any] | None = None


# --- rollout spec ------------------------------------------------------------------------


class LabelSelector(KubeModel):
    """A metav1.LabelSelector."""

    match_labels: dict[str, str] | None = None
    match_expressions: list[dict[str, Any]] | None = None


class RollbackWindow(KubeModel):
    """``rollbackWindow{revisions}``."""

    revisions: StrictInt | None = None


class RunHistoryLimits(KubeModel):
    """Rollout-level ``analysis{successfulRunHistoryLimit, unsuccessfulRunHistoryLimit}``."""

    successful_run_history_limit: StrictInt | None = None
    unsuccessful_run_history_limit: StrictInt | None = None


class WorkloadRef(KubeModel):
    """``workloadRef`` (parsed; unsupported, validation rejects it)."""

    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    scale_down: str | None = None


class RolloutSpec(KubeModel):
    """``spec`` of a Rollout."""

    replicas: StrictInt | None = None
    selector: LabelSelector | None = None
    template: dict[str, Any] | None = None
    min_ready_seconds: StrictInt | None = None
    revision_history_limit: StrictInt | None = None
    paused: StrictBool | None = None
    progress_deadline_seconds: StrictInt | None = None
    progress_deadline_abort: StrictBool | None = None
    restart_at: str | None = None
    rollback_window: RollbackWindow | None = None
    analysis: RunHistoryLimits | None = None
    workload_ref: WorkloadRef | None = None
    strategy: RolloutStrategy | None = None


# --- status ------------------------------------------------------------------------------


class PauseCondition(KubeModel):
    """``status.pauseConditions[]``."""

    reason: str
    start_time: str | None = None


class RunStatus(KubeModel):
    """``currentStepAnalysisRunStatus`` / ``currentBackgroundAnalysisRunStatus``."""

    name: str | None = None
    status: str | None = None
    message: str | None = None


class WeightDestination(KubeModel):
    """``weights.canary`` / ``weights.stable`` / ``weights.additional[]``."""

    weight: StrictInt | None = None
    service_name: str | None = None
    pod_template_hash: str | None = None


class TrafficWeights(KubeModel):
    """``status.canary.weights`` (nil without traffic routing)."""

    canary: WeightDestination | None = None
    stable: WeightDestination | None = None
    additional: list[WeightDestination] | None = None
    verified: StrictBool | None = None


class CanaryStatus(KubeModel):
    """``status.canary``."""

    current_step_analysis_run_status: RunStatus | None = None
    current_background_analysis_run_status: RunStatus | None = None
    current_experiment: str | None = None
    weights: TrafficWeights | None = None
    stable_ping_pong: str | None = None
    step_plugin_statuses: list[dict[str, Any]] | None = None


class Condition(KubeModel):
    """``status.conditions[]`` (RolloutCondition)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None
    last_update_time: str | None = None


class RolloutDuration(KubeModel):
    """``status.duration`` (Argo 1.10)."""

    rollout_started_at: str | None = None
    manual_pause_started_at: str | None = None
    total_manual_pause_duration_seconds: StrictInt | None = None
    finished_at: str | None = None
    completion_status: str | None = None


class RolloutStatus(KubeModel):
    """``status`` of a Rollout (semantics reference §1.11)."""

    abort: StrictBool | None = None
    aborted_at: str | None = None
    pause_conditions: list[PauseCondition] | None = None
    controller_pause: StrictBool | None = None
    promote_full: StrictBool | None = None
    current_pod_hash: str | None = None
    current_step_hash: str | None = None
    current_step_index: StrictInt | None = None
    stable_rs: str | None = Field(default=None, alias="stableRS")
    collision_count: StrictInt | None = None
    observed_generation: str | None = None
    restarted_at: str | None = None
    replicas: StrictInt | None = None
    updated_replicas: StrictInt | None = None
    ready_replicas: StrictInt | None = None
    available_replicas: StrictInt | None = None
    hpa_replicas: StrictInt | None = Field(default=None, alias="HPAReplicas")
    selector: str | None = None
    phase: str | None = None
    message: str | None = None
    workload_observed_generation: str | None = None
    canary: CanaryStatus | None = None
    conditions: list[Condition] | None = None
    alb: dict[str, Any] | None = None
    albs: list[dict[str, Any]] | None = None
    blue_green: dict[str, Any] | None = None
    duration: RolloutDuration | None = None


class Rollout(KubeModel):
    """A whole Rollout document."""

    api_version: str = API_VERSION
    kind: str = KIND_ROLLOUT
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RolloutSpec = Field(default_factory=RolloutSpec)
    status: RolloutStatus | None = None


def parse_rollout(doc: Mapping[str, Any]) -> Rollout:
    """Validate a Rollout document; raise SpecError naming the object and the field path.

    Example: ``Rollout ml-serving/inference-rollout: spec.strategy.canary.steps[0].setWeight:
    Input should be a valid integer``.
    """
    return parse(Rollout, doc)


__all__ = ["Rollout", "SpecError", "parse_rollout"]
