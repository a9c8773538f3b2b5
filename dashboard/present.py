"""The JSON bodies of the dashboard's GET endpoints, from cached objects (pure, no I/O).

Called by dashboard/api.py with what dashboard/live.py's cache holds. Rollouts are drawn by
views.rollout (the same model ``tidegate get rollout`` prints) and explained by
views.explain; this module adds what only the dashboard shows: weight samples, each
AnalysisRun's measurements per metric, and the Application summaries, resources and tree.
Shapes: /work/brief/dashboard-api.md (camelCase keys, RFC 3339 times).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from views import rollout as rollout_view
from views.appdiff import app_source

MAX_MEASUREMENTS = 200  # per metric: the chart shows the recent ones
Explainer = Callable[..., dict[str, Any]]


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _number(value: object) -> float | None:
    """A measurement's value as a number for the chart: a scalar, or a one-sample vector as the
    prometheus provider stores it (``"[0.13]"``); anything else (several samples, text) is None."""
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1].strip()
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# --- rollouts --------------------------------------------------------------------------------------

def rollout_model(rollout: Mapping[str, Any], parts: tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]],
                  Sequence[Mapping[str, Any]]], now: datetime) -> rollout_view.RolloutView:
    sets, pods, runs = parts
    return rollout_view.build(rollout, replicasets=sets, pods=pods, analysis_runs=runs, now=now)


def weights(rollout: Mapping[str, Any], sets: list[dict[str, Any]], now: datetime) -> tuple[int | None, int | None]:
    """(setWeight, actualWeight) as the header shows them: what the weight chart samples."""
    view = rollout_view.build(rollout, replicasets=sets, pods=[], analysis_runs=[], now=now)
    return view.set_weight, view.actual_weight


def rollouts_list(models: Sequence[rollout_view.RolloutView]) -> dict[str, Any]:
    items = [rollout_view.summary_dict(m) for m in models]
    return {"items": items, "counts": dict(Counter(str(i["status"]) for i in items))}


def analysis_runs(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each AnalysisRun with each metric's conditions and measurements (newest run first)."""
    out = []
    for run in sorted(runs, key=lambda r: str(_map(r.get("metadata")).get("creationTimestamp") or ""),
                      reverse=True):
        spec, status = _map(run.get("spec")), _map(run.get("status"))
        results = {str(r.get("name")): r for r in _list(status.get("metricResults"))}
        metrics = []
        for metric in _list(spec.get("metrics")):
            result = _map(results.get(str(metric.get("name"))))
            measurements = [{"value": str(m.get("value") or ""), "number": _number(m.get("value")),
                             "phase": m.get("phase"), "startedAt": m.get("startedAt"),
                             "finishedAt": m.get("finishedAt")}
                            for m in _list(result.get("measurements"))[-MAX_MEASUREMENTS:]]
            metrics.append({"name": metric.get("name"), "successCondition": metric.get("successCondition"),
                            "failureCondition": metric.get("failureCondition"), "measurements": measurements})
        out.append({"name": _map(run.get("metadata")).get("name"), "phase": status.get("phase"),
                    "startedAt": status.get("startedAt") or _map(run.get("metadata")).get("creationTimestamp"),
                    "metrics": metrics})
    return out


def rollout_detail(rollout: Mapping[str, Any], parts: tuple[list[dict[str, Any]], list[dict[str, Any]],
                   list[dict[str, Any]]], *, history: list[dict[str, Any]], explain: dict[str, Any],
                   now: datetime) -> dict[str, Any]:
    model = rollout_model(rollout, parts, now)
    return {"rollout": rollout_view.to_dict(model),
            "steps": rollout_view.step_dicts(rollout_view.steps(rollout)),
            "weightHistory": history,
            "analysisRuns": analysis_runs(parts[2]),
            "explain": explain}


# --- applications ----------------------------------------------------------------------------------

def app_summary(app: Mapping[str, Any]) -> dict[str, Any]:
    meta, spec, status = _map(app.get("metadata")), _map(app.get("spec")), _map(app.get("status"))
    source = app_source(app)
    operation = _map(status.get("operationState"))
    return {"namespace": meta.get("namespace"), "name": meta.get("name"), "project": spec.get("project"),
            "repo": source.get("repoURL"), "path": source.get("path"),
            "targetRevision": source.get("targetRevision"),
            "revision": _map(status.get("sync")).get("revision"),
            "sync": _map(status.get("sync")).get("status") or "Unknown",
            "health": _map(status.get("health")).get("status") or "Unknown",
            # A written but not yet started operation is shown as Running: the controller is about to run it.
            "operation": "Running" if app.get("operation") else operation.get("phase")}


def apps_list(apps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    items = [app_summary(a) for a in apps]
    return {"items": items, "counts": dict(Counter(str(i["health"]) for i in items))}


def resources(app: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"group": r.get("group") or "", "kind": r.get("kind"), "namespace": r.get("namespace") or "",
             "name": r.get("name"), "status": r.get("status"), "health": _map(r.get("health")).get("status"),
             "message": _map(r.get("health")).get("message"), "syncWave": r.get("syncWave")}
            for r in _list(_map(app.get("status")).get("resources"))]


ChildLookup = Callable[[str, str, str], list[dict[str, Any]]]
"""(kind, namespace, name) -> the live objects it owns, from the cache (empty when unknown)."""


def _live_node(obj: Mapping[str, Any], children: ChildLookup, depth: int) -> dict[str, Any]:
    meta, status = _map(obj.get("metadata")), _map(obj.get("status"))
    kind = str(obj.get("kind") or "")
    phase = status.get("phase")
    if kind == "ReplicaSet":
        ready = f"{status.get('readyReplicas') or 0}/{_map(obj.get('spec')).get('replicas') or 0} ready"
        phase = ready
    node: dict[str, Any] = {"kind": kind, "namespace": meta.get("namespace"), "name": meta.get("name"),
                            "status": phase, "health": None, "children": []}
    if depth < 3:
        node["children"] = [_live_node(c, children, depth + 1)
                            for c in children(kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))]
    return node


def tree(app: Mapping[str, Any], children: ChildLookup) -> list[dict[str, Any]]:
    """The app's resources as roots, each with the live objects it owns where the cache knows them."""
    roots = []
    for r in resources(app):
        owned = children(str(r["kind"]), str(r["namespace"]), str(r["name"]))
        roots.append({"kind": r["kind"], "namespace": r["namespace"], "name": r["name"], "status": r["status"],
                      "health": r["health"], "children": [_live_node(c, children, 1) for c in owned]})
    return roots


def operation(app: Mapping[str, Any]) -> dict[str, Any] | None:
    op = _map(_map(app.get("status")).get("operationState"))
    if not op:
        return None
    result = _map(op.get("syncResult"))
    return {"phase": op.get("phase"), "message": op.get("message"), "startedAt": op.get("startedAt"),
            "finishedAt": op.get("finishedAt"), "revision": result.get("revision"),
            "results": [{"kind": r.get("kind"), "namespace": r.get("namespace") or "", "name": r.get("name"),
                         "status": r.get("status"), "message": r.get("message"), "hookPhase": r.get("hookPhase")}
                        for r in _list(result.get("resources"))]}


def history(app: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"id": h.get("id"), "revision": h.get("revision") or h.get("revisions"),
             "deployedAt": h.get("deployedAt"), "source": h.get("source") or h.get("sources")}
            for h in reversed(_list(_map(app.get("status")).get("history")))]


def app_detail(app: Mapping[str, Any], children: ChildLookup, diffs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"application": app_summary(app), "resources": resources(app), "tree": tree(app, children),
            "operation": operation(app), "history": history(app), "diffs": diffs,
            "conditions": [{"type": c.get("type"), "message": c.get("message")}
                           for c in _list(_map(app.get("status")).get("conditions"))]}
