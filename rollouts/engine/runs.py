"""AnalysisRuns seen from the rollout: which run is current, and new run manifests.

Called by the reconcile planner. A run is "current" for (type, pod hash,
revision[, step index]) when its labels and revision annotation say so and it
was not terminated: a retry after an abort therefore gets a fresh run, while a
restarted controller finds the run it created before (no duplicates).
Templates are flattened with ``analysis.api.templates.flatten`` (pure).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.api.models import (
    AnalysisTemplate,
    AnalysisTemplateSpec,
    Argument,
    ClusterAnalysisTemplate,
    DryRun,
    MeasurementRetention,
    TemplateRef,
)
from analysis.api.phases import AnalysisPhase
from analysis.api.templates import flatten
from common.api import (
    SpecError,
    parse,
)
from rollouts.api.constants import (
    ANNOTATION_REVISION,
    API_VERSION,
    KIND_ANALYSIS_RUN,
    LABEL_INSTANCE_ID,
    LABEL_POD_TEMPLATE_HASH,
    LABEL_ROLLOUT_TYPE,
    LABEL_STEP_INDEX,
    ROLLOUT_TYPE_BACKGROUND,
    ROLLOUT_TYPE_STEP,
)
from rollouts.api.models import AnalysisRunArgument, Rollout, RolloutAnalysis

MSG_FIELD_PATH = "args[{name}]: fieldRef {path!r} does not resolve on the Rollout"
MSG_NO_STABLE = "args[{name}]: podTemplateHashValue Stable needs a stable ReplicaSet"


@dataclass(frozen=True)
class RunKey:
    """Which run we look for: background or a step, of one hash and revision."""

    rollout_type: str
    pod_hash: str
    revision: str
    step_index: int | None = None

    def base_name(self, rollout_name: str) -> str:
        """``<ro>-<hash>-<rev>`` (background) or ``<ro>-<hash>-<rev>-<stepIndex>`` (step)."""
        base = f"{rollout_name}-{self.pod_hash}-{self.revision}"
        return base if self.step_index is None else f"{base}-{self.step_index}"


def run_name(run: Mapping[str, Any]) -> str:
    return str((run.get("metadata") or {}).get("name", ""))


def run_phase(run: Mapping[str, Any]) -> AnalysisPhase | None:
    """The run's ``status.phase``, or None when it has none yet (or an unknown one)."""
    phase = (run.get("status") or {}).get("phase")
    try:
        return AnalysisPhase(phase) if phase else None
    except ValueError:
        return None


def run_message(run: Mapping[str, Any]) -> str:
    return str((run.get("status") or {}).get("message") or "")


def is_terminated(run: Mapping[str, Any]) -> bool:
    """True once someone set ``spec.terminate`` (we did, on abort or when a step was left)."""
    return bool((run.get("spec") or {}).get("terminate"))


def matches(run: Mapping[str, Any], key: RunKey) -> bool:
    """Does ``run`` belong to ``key`` (labels + revision annotation)?"""
    metadata = run.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    if labels.get(LABEL_ROLLOUT_TYPE) != key.rollout_type:
        return False
    if labels.get(LABEL_POD_TEMPLATE_HASH) != key.pod_hash:
        return False
    if annotations.get(ANNOTATION_REVISION) != key.revision:
        return False
    if key.step_index is not None and labels.get(LABEL_STEP_INDEX) != str(key.step_index):
        return False
    return True


def find_current(runs: Sequence[Mapping[str, Any]], key: RunKey) -> Mapping[str, Any] | None:
    """The non-terminated run for ``key`` (the newest by name if several)."""
    found = [run for run in runs if matches(run, key) and not is_terminated(run)]
    return max(found, key=run_name) if found else None


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base.1``, ``base.2``... when taken (Argo's CreateWithCollisionCounter)."""
    if base not in taken:
        return base
    counter = 1
    while f"{base}.{counter}" in taken:
        counter += 1
    return f"{base}.{counter}"


@dataclass(frozen=True)
class TemplateSources:
    """The observed templates, by name (None = missing)."""

    namespaced: Mapping[str, Mapping[str, Any] | None]
    cluster: Mapping[str, Mapping[str, Any] | None]

    def lookup(self, name: str, cluster_scope: bool) -> AnalysisTemplateSpec | None:
        """``analysis.templates.TemplateLookup`` over the observed objects."""
        doc = (self.cluster if cluster_scope else self.namespaced).get(name)
        if doc is None:
            return None
        if cluster_scope:
            return parse(ClusterAnalysisTemplate, doc).spec
        return parse(AnalysisTemplate, doc).spec


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to build one run manifest."""

    rollout: Rollout
    rollout_doc: Mapping[str, Any]
    analysis: RolloutAnalysis
    key: RunKey
    name: str
    stable_hash: str | None
    instance_id: str | None


def build_run(request: RunRequest, sources: TemplateSources) -> dict[str, Any]:
    """A complete AnalysisRun manifest; raises SpecError when templates or args are bad."""
    analysis = request.analysis
    refs = [
        TemplateRef(template_name=t.template_name, cluster_scope=bool(t.cluster_scope))
        for t in analysis.templates or ()
    ]
    spec = flatten(
        refs,
        sources.lookup,
        args=_resolve_args(request, analysis.args or ()),
        dry_run=[DryRun(metric_name=r.metric_name) for r in analysis.dry_run or ()],
        measurement_retention=[
            MeasurementRetention(metric_name=r.metric_name, limit=r.limit)
            for r in analysis.measurement_retention or ()
        ],
    )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_ANALYSIS_RUN,
        "metadata": _run_metadata(request),
        "spec": spec.to_json(),
    }


def _run_metadata(request: RunRequest) -> dict[str, Any]:
    rollout, key = request.rollout, request.key
    selector = rollout.spec.selector.match_labels if rollout.spec.selector else None
    labels: dict[str, str] = dict(selector or {})
    labels[LABEL_POD_TEMPLATE_HASH] = key.pod_hash
    labels[LABEL_ROLLOUT_TYPE] = key.rollout_type
    if key.step_index is not None:
        labels[LABEL_STEP_INDEX] = str(key.step_index)
    if request.instance_id:
        labels[LABEL_INSTANCE_ID] = request.instance_id
    annotations = {ANNOTATION_REVISION: key.revision}
    extra = request.analysis.analysis_run_metadata
    if extra is not None:
        labels.update(extra.labels or {})
        annotations.update(extra.annotations or {})
    return {
        "name": request.name,
        "namespace": rollout.metadata.namespace,
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": [owner_reference(rollout)],
    }


def owner_reference(rollout: Rollout) -> dict[str, Any]:
    """A controller ownerReference to the Rollout (garbage collection follows it)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "name": rollout.metadata.name,
        "uid": rollout.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _resolve_args(request: RunRequest, args: Sequence[AnalysisRunArgument]) -> list[Argument]:
    resolved: list[Argument] = []
    for arg in args:
        if arg.value_from is None:
            resolved.append(Argument(name=arg.name, value=arg.value))
            continue
        source = arg.value_from
        if source.pod_template_hash_value == "Latest":
            value = request.key.pod_hash
        elif source.pod_template_hash_value == "Stable":
            if not request.stable_hash:
                raise SpecError(MSG_NO_STABLE.format(name=arg.name))
            value = request.stable_hash
        elif source.field_ref is not None:
            value = resolve_field_path(request.rollout_doc, source.field_ref.field_path, arg.name)
        else:
            value = arg.value or ""
        resolved.append(Argument(name=arg.name, value=value))
    return resolved


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def resolve_field_path(doc: Mapping[str, Any], path: str, arg_name: str) -> str:
    """``metadata.labels['env']`` or ``spec.template.spec.containers[0].image`` on the Rollout."""
    current: Any = doc
    for match in _PATH_PART.finditer(path):
        name, index, quoted, double_quoted = match.groups()
        try:
            if index is not None:
                current = current[int(index)]
            else:
                current = current[name or quoted or double_quoted or ""]
        except (KeyError, IndexError, TypeError) as err:
            raise SpecError(MSG_FIELD_PATH.format(name=arg_name, path=path)) from err
    if isinstance(current, dict | list):
        raise SpecError(MSG_FIELD_PATH.format(name=arg_name, path=path))
    return str(current)


def step_key(pod_hash: str, revision: str, index: int) -> RunKey:
    return RunKey(rollout_type=ROLLOUT_TYPE_STEP, pod_hash=pod_hash, revision=revision, step_index=index)


def background_key(pod_hash: str, revision: str) -> RunKey:
    return RunKey(rollout_type=ROLLOUT_TYPE_BACKGROUND, pod_hash=pod_hash, revision=revision)
