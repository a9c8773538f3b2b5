"""The presentation model of one Rollout: what `get rollout` and the dashboard show.

Pure (no I/O, no kubernetes client): callers read the Rollout, its ReplicaSets, pods
and AnalysisRuns and pass the raw objects (dicts as the API server returns them) to
``build``; only the objects that belong to this rollout (owner references) are used.
``to_dict`` gives the dashboard's JSON (camelCase, docs: /work/brief/dashboard-api.md);
cli/plugin.py renders the same view with Rich. Status and weights follow what Argo's
``kubectl argo rollouts get`` shows (semantics reference §5), read from the status our
controller writes (rollouts/engine/assemble.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from common.api import format_time
from rollouts.api.constants import (
    ANNOTATION_REVISION,
    ANNOTATION_SCALE_DOWN_DEADLINE,
    KIND_ROLLOUT,
    LABEL_POD_TEMPLATE_HASH,
    ConditionType,
    RolloutPhase,
)

TAG_STABLE = "stable"
TAG_CANARY = "canary"
STRATEGY_CANARY = "Canary"
STRATEGY_BLUE_GREEN = "BlueGreen"
FULL_WEIGHT = 100
KIND_REPLICA_SET = "ReplicaSet"

MSG_SPEC_NOT_OBSERVED = "waiting for rollout spec update to be observed"
MSG_NOT_OBSERVED = "waiting for rollout to be observed"
POD_TERMINATING = "Terminating"
POD_UNKNOWN = "Unknown"

StepState = Literal["done", "current", "next"]
STEP_DONE: StepState = "done"
STEP_CURRENT: StepState = "current"
STEP_NEXT: StepState = "next"


@dataclass(frozen=True)
class ImageView:
    """One container image and the ReplicaSet roles running it (stable, canary)."""

    image: str
    tags: list[str]


@dataclass(frozen=True)
class ReplicaCounts:
    """spec.replicas and the status counters (Argo's Desired/Current/Updated/Ready/Available)."""

    desired: int
    current: int
    updated: int
    ready: int
    available: int


@dataclass(frozen=True)
class PodView:
    """A pod: its status word (phase or waiting reason), readiness and creation time."""

    name: str
    status: str
    ready: bool
    ready_containers: int
    containers: int
    created_at: datetime | None


@dataclass(frozen=True)
class ReplicaSetView:
    """A ReplicaSet of the rollout with its role tags and scale-down deadline."""

    name: str
    tags: list[str]
    desired: int
    ready: int
    scale_down_at: datetime | None
    pods: list[PodView] = field(default_factory=list)


@dataclass(frozen=True)
class RunView:
    """An AnalysisRun with its measurement counts summed over its metrics."""

    name: str
    phase: str
    successful: int
    failed: int
    inconclusive: int
    error: int


@dataclass(frozen=True)
class RevisionView:
    """One revision (rollout.argoproj.io/revision): its ReplicaSets and AnalysisRuns."""

    revision: int
    replica_sets: list[ReplicaSetView]
    analysis_runs: list[RunView]


@dataclass(frozen=True)
class RolloutView:
    """The header and the tree of one Rollout (revisions newest first)."""

    namespace: str
    name: str
    status: str
    message: str
    strategy: str
    step: int | None
    steps: int
    set_weight: int | None
    actual_weight: int | None
    images: list[ImageView]
    replicas: ReplicaCounts
    revisions: list[RevisionView]


@dataclass(frozen=True)
class StepView:
    """One canary step as a line of text, and whether it is done, current or next."""

    index: int
    text: str
    state: StepState


# --- small readers of raw objects -------------------------------------------------------------


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _int(value: object, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return default
    return default


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _map(obj.get("metadata"))


def _owned_by(obj: Mapping[str, Any], kind: str, name: str, uid: str | None) -> bool:
    for ref in _list(_meta(obj).get("ownerReferences")):
        ref = _map(ref)
        if ref.get("kind") != kind or ref.get("name") != name:
            continue
        if uid and ref.get("uid") and ref.get("uid") != uid:
            continue  # a same-named owner that was deleted and recreated
        return True
    return False


def _canary(rollout: Mapping[str, Any]) -> Mapping[str, Any] | None:
    strategy = _map(_map(rollout.get("spec")).get("strategy"))
    canary = strategy.get("canary")
    return _map(canary) if canary is not None or "blueGreen" not in strategy else None


def _steps_of(rollout: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    canary = _canary(rollout)
    return [_map(s) for s in _list((canary or {}).get("steps"))]


# --- status, step, weights ------------------------------------------------------------------------


def _status_and_message(rollout: Mapping[str, Any]) -> tuple[str, str]:
    """What Argo's plugin shows: the phase the controller wrote, unless the spec is not yet seen."""
    status = _map(rollout.get("status"))
    generation = _meta(rollout).get("generation")
    observed = status.get("observedGeneration")
    phase = status.get("phase")
    conditions = [_map(c) for c in _list(status.get("conditions"))]
    invalid = next((c for c in conditions if c.get("type") == ConditionType.INVALID_SPEC), None)
    if invalid is not None and invalid.get("status") == "True":
        return str(RolloutPhase.DEGRADED), f"InvalidSpec: {invalid.get('message', '')}"
    if not phase:
        return str(RolloutPhase.PROGRESSING), MSG_NOT_OBSERVED
    if generation is not None and observed is not None and str(observed) != str(generation):
        return str(RolloutPhase.PROGRESSING), MSG_SPEC_NOT_OBSERVED
    return str(phase), str(status.get("message") or "")


def _step_index(rollout: Mapping[str, Any]) -> int | None:
    steps = _steps_of(rollout)
    if _canary(rollout) is None or not steps:
        return None
    raw = _map(rollout.get("status")).get("currentStepIndex")
    return min(_int(raw), len(steps))


def _set_weight(rollout: Mapping[str, Any]) -> int | None:
    """Argo's GetCurrentSetWeight: 0 when aborted, 100 past the last step, else the last setWeight."""
    if _canary(rollout) is None:
        return None
    if _map(rollout.get("status")).get("abort"):
        return 0
    steps = _steps_of(rollout)
    index = _step_index(rollout)
    if index is None or index >= len(steps):
        return FULL_WEIGHT
    for step in reversed(steps[: index + 1]):
        if "setWeight" in step:
            return _int(step.get("setWeight"))
    return 0


def _actual_weight(
    rollout: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]]
) -> int | None:
    """status.canary.weights.canary (routed), else canary's share of the available pods."""
    if _canary(rollout) is None:
        return None
    status = _map(rollout.get("status"))
    index, count = _step_index(rollout), len(_steps_of(rollout))
    finished = index is None or index >= count
    if finished and status.get("stableRS") and status.get("stableRS") == status.get("currentPodHash"):
        # Fully promoted: all traffic is on this revision, whatever the canary service still says.
        return FULL_WEIGHT
    weights = _map(_map(status.get("canary")).get("weights"))
    routed = _map(weights.get("canary")).get("weight")
    if isinstance(routed, int) and not isinstance(routed, bool):
        return routed
    current = status.get("currentPodHash")
    total = sum(_int(_map(rs.get("status")).get("availableReplicas")) for rs in replicasets)
    if total == 0:
        return 0
    canary = sum(
        _int(_map(rs.get("status")).get("availableReplicas"))
        for rs in replicasets
        if _map(_meta(rs).get("labels")).get(LABEL_POD_TEMPLATE_HASH) == current
    )
    return canary * FULL_WEIGHT // total


def _duration_text(value: object) -> str:
    return f"{value}s" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def step_text(step: Mapping[str, Any]) -> str:
    """One step as a line: ``setWeight: 20``, ``pause: 30s``, ``pause``, ``analysis: templates a,b``."""
    if "setWeight" in step:
        return f"setWeight: {step.get('setWeight')}"
    if "pause" in step:
        duration = _map(step.get("pause")).get("duration")
        return "pause" if duration in (None, "") else f"pause: {_duration_text(duration)}"
    if "analysis" in step:
        names = [str(_map(t).get("templateName", "")) for t in _list(_map(step.get("analysis")).get("templates"))]
        return f"analysis: templates {','.join(names)}"
    if "setCanaryScale" in step:
        scale = _map(step.get("setCanaryScale"))
        if scale.get("matchTrafficWeight"):
            return "setCanaryScale: matchTrafficWeight"
        if "replicas" in scale:
            return f"setCanaryScale: replicas {scale.get('replicas')}"
        return f"setCanaryScale: weight {scale.get('weight')}"
    for key in ("setHeaderRoute", "setMirrorRoute", "experiment", "plugin"):
        if key in step:
            name = _map(step.get(key)).get("name")
            return f"{key}: {name}" if name else key
    return ", ".join(sorted(step)) or "(empty step)"


def steps(rollout: Mapping[str, Any]) -> list[StepView]:
    """The canary steps with done/current/next, as the dashboard's step list shows them."""
    items = _steps_of(rollout)
    index = _step_index(rollout)
    current = len(items) if index is None else index
    result = []
    for position, step in enumerate(items):
        state = STEP_DONE if position < current else STEP_CURRENT if position == current else STEP_NEXT
        result.append(StepView(index=position, text=step_text(step), state=state))
    return result


# --- the tree ----------------------------------------------------------------------------------


def _pod_view(pod: Mapping[str, Any]) -> PodView:
    meta, status = _meta(pod), _map(pod.get("status"))
    statuses = [_map(s) for s in _list(status.get("containerStatuses"))]
    declared = len(_list(_map(pod.get("spec")).get("containers")))
    ready_count = sum(1 for s in statuses if s.get("ready") is True)
    word = str(status.get("phase") or POD_UNKNOWN)
    # The waiting/terminated reason says more than the phase (ContainerCreating, CrashLoopBackOff).
    for container in statuses:
        state = _map(container.get("state"))
        reason = _map(state.get("waiting")).get("reason") or _map(state.get("terminated")).get("reason")
        if reason:
            word = str(reason)
            break
    if meta.get("deletionTimestamp"):
        word = POD_TERMINATING
    conditions = [_map(c) for c in _list(status.get("conditions"))]
    ready_condition = next((c for c in conditions if c.get("type") == "Ready"), None)
    containers = max(declared, len(statuses))
    ready = (ready_condition.get("status") == "True") if ready_condition else (
        containers > 0 and ready_count == containers
    )
    return PodView(
        name=str(meta.get("name", "")),
        status=word,
        ready=ready,
        ready_containers=ready_count,
        containers=containers,
        created_at=_time(meta.get("creationTimestamp")),
    )


def _rs_tags(pod_hash: str | None, stable: str | None, current: str | None) -> list[str]:
    tags = []
    if pod_hash and pod_hash == stable:
        tags.append(TAG_STABLE)
    if pod_hash and pod_hash == current and current != stable:
        tags.append(TAG_CANARY)
    return tags


def _run_view(run: Mapping[str, Any]) -> RunView:
    status = _map(run.get("status"))
    totals = {"successful": 0, "failed": 0, "inconclusive": 0, "error": 0}
    for result in _list(status.get("metricResults")):
        for key in totals:
            totals[key] += _int(_map(result).get(key))
    return RunView(
        name=str(_meta(run).get("name", "")),
        phase=str(status.get("phase") or "Pending"),
        **totals,
    )


def _images(rs: Mapping[str, Any]) -> list[str]:
    pod_spec = _map(_map(_map(rs.get("spec")).get("template")).get("spec"))
    return [str(_map(c).get("image", "")) for c in _list(pod_spec.get("containers"))]


def _merge_images(tagged: Iterable[tuple[list[str], list[str]]]) -> list[ImageView]:
    order: list[str] = []
    tags: dict[str, list[str]] = {}
    for images, roles in tagged:
        for image in images:
            if image not in tags:
                order.append(image)
                tags[image] = []
            tags[image].extend(r for r in roles if r not in tags[image])
    return [ImageView(image=image, tags=tags[image]) for image in order]


def build(
    rollout: Mapping[str, Any],
    *,
    replicasets: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    analysis_runs: Sequence[Mapping[str, Any]],
    now: datetime,
) -> RolloutView:
    """The view of ``rollout`` from its own ReplicaSets, pods and AnalysisRuns (others are ignored).

    ``now`` is the moment the objects were read: scale-down deadlines already past are dropped
    (the ReplicaSet is about to be scaled down, there is no delay left to show).
    """
    meta = _meta(rollout)
    name, uid = str(meta.get("name", "")), meta.get("uid")
    status = _map(rollout.get("status"))
    stable, current = status.get("stableRS"), status.get("currentPodHash")
    owned_rs = [rs for rs in replicasets if _owned_by(rs, KIND_ROLLOUT, name, uid)]
    owned_runs = [r for r in analysis_runs if _owned_by(r, KIND_ROLLOUT, name, uid)]

    revisions: dict[int, tuple[list[ReplicaSetView], list[RunView]]] = {}
    hash_revision: dict[str, int] = {}
    tagged_images: list[tuple[int, list[str], list[str]]] = []
    for rs in owned_rs:
        rs_meta = _meta(rs)
        rs_name = str(rs_meta.get("name", ""))
        pod_hash = _map(rs_meta.get("labels")).get(LABEL_POD_TEMPLATE_HASH)
        number = _int(_map(rs_meta.get("annotations")).get(ANNOTATION_REVISION))
        if isinstance(pod_hash, str):
            hash_revision[pod_hash] = number
        tags = _rs_tags(pod_hash if isinstance(pod_hash, str) else None, stable, current)
        deadline = _time(_map(rs_meta.get("annotations")).get(ANNOTATION_SCALE_DOWN_DEADLINE))
        rs_uid = rs_meta.get("uid")
        rs_pods = sorted(
            (_pod_view(p) for p in pods if _owned_by(p, KIND_REPLICA_SET, rs_name, rs_uid)),
            key=lambda p: p.name,
        )
        view = ReplicaSetView(
            name=rs_name,
            tags=tags,
            desired=_int(_map(rs.get("spec")).get("replicas")),
            ready=_int(_map(rs.get("status")).get("readyReplicas")),
            scale_down_at=deadline if deadline is not None and deadline > now else None,
            pods=rs_pods,
        )
        revisions.setdefault(number, ([], []))[0].append(view)
        if tags:
            tagged_images.append((number, _images(rs), tags))

    for run in owned_runs:
        run_meta = _meta(run)
        annotated = _map(run_meta.get("annotations")).get(ANNOTATION_REVISION)
        pod_hash = _map(run_meta.get("labels")).get(LABEL_POD_TEMPLATE_HASH)
        number = _int(annotated) if annotated is not None else hash_revision.get(str(pod_hash), 0)
        revisions.setdefault(number, ([], []))[1].append(_run_view(run))

    spec = _map(rollout.get("spec"))
    status_word, message = _status_and_message(rollout)
    tagged_images.sort(key=lambda item: -item[0])
    return RolloutView(
        namespace=str(meta.get("namespace", "")),
        name=name,
        status=status_word,
        message=message,
        strategy=STRATEGY_CANARY if _canary(rollout) is not None else STRATEGY_BLUE_GREEN,
        step=_step_index(rollout),
        steps=len(_steps_of(rollout)),
        set_weight=_set_weight(rollout),
        actual_weight=_actual_weight(rollout, owned_rs),
        images=_merge_images((images, tags) for _, images, tags in tagged_images),
        replicas=ReplicaCounts(
            desired=_int(spec.get("replicas", 1), default=1),
            current=_int(status.get("replicas")),
            updated=_int(status.get("updatedReplicas")),
            ready=_int(status.get("readyReplicas")),
            available=_int(status.get("availableReplicas")),
        ),
        revisions=[
            RevisionView(
                revision=number,
                replica_sets=sorted(sets, key=lambda r: r.name),
                analysis_runs=sorted(runs, key=lambda r: r.name),
            )
            for number, (sets, runs) in sorted(revisions.items(), key=lambda item: -item[0])
        ],
    )


# --- JSON ---------------------------------------------------------------------------------------


def _time_text(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _pod_dict(pod: PodView) -> dict[str, Any]:
    return {
        "name": pod.name,
        "status": pod.status,
        "ready": pod.ready,
        "readyContainers": pod.ready_containers,
        "containers": pod.containers,
        "createdAt": _time_text(pod.created_at),
    }


def _revision_dict(revision: RevisionView) -> dict[str, Any]:
    return {
        "revision": revision.revision,
        "replicaSets": [
            {
                "name": rs.name,
                "tags": list(rs.tags),
                "desired": rs.desired,
                "ready": rs.ready,
                "scaleDownAt": _time_text(rs.scale_down_at),
                "pods": [_pod_dict(p) for p in rs.pods],
            }
            for rs in revision.replica_sets
        ],
        "analysisRuns": [
            {
                "name": run.name,
                "phase": run.phase,
                "successful": run.successful,
                "failed": run.failed,
                "inconclusive": run.inconclusive,
                "error": run.error,
            }
            for run in revision.analysis_runs
        ],
    }


def summary_dict(view: RolloutView) -> dict[str, Any]:
    """The RolloutSummary of GET /api/rollouts: ``to_dict`` without ``revisions``."""
    replicas = view.replicas
    return {
        "namespace": view.namespace,
        "name": view.name,
        "status": view.status,
        "message": view.message,
        "strategy": view.strategy,
        "step": view.step,
        "steps": view.steps,
        "setWeight": view.set_weight,
        "actualWeight": view.actual_weight,
        "images": [{"image": i.image, "tags": list(i.tags)} for i in view.images],
        "replicas": {
            "desired": replicas.desired,
            "current": replicas.current,
            "updated": replicas.updated,
            "ready": replicas.ready,
            "available": replicas.available,
        },
    }


def to_dict(view: RolloutView) -> dict[str, Any]:
    """The JSON-safe ``rollout`` object of GET /api/rollouts/<ns>/<name> (camelCase)."""
    result = summary_dict(view)
    result["revisions"] = [_revision_dict(r) for r in view.revisions]
    return result


def step_dicts(items: Sequence[StepView]) -> list[dict[str, Any]]:
    """The ``steps`` list of GET /api/rollouts/<ns>/<name>."""
    return [{"index": s.index, "text": s.text, "state": s.state} for s in items]
