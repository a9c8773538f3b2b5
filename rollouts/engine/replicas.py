"""Replica arithmetic of the canary strategy (semantics reference §1.9), pure.

Called by the reconcile planner to decide how many pods the canary and stable
ReplicaSets should have for a weight. Two regimes:

* basic canary (no traffic routing): the weight is a replica ratio, reached
  within maxSurge / maxUnavailable fenceposts (Argo's
  ``CalculateReplicaCountsForBasicCanary``);
* traffic-routed canary: the canary gets ``ceil(replicas * w / 100)`` pods, the
  stable keeps 100 % unless ``dynamicStableScale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rollouts.api.constants import DEFAULT_MAX_SURGE, DEFAULT_MAX_UNAVAILABLE

PERCENT_SUFFIX = "%"


@dataclass(frozen=True)
class RSCounts:
    """What the planner knows of one ReplicaSet: desired (spec) and available pods."""

    spec: int
    available: int


def resolve_int_or_percent(value: int | str | None, total: int, default: str, round_up: bool) -> int:
    """An IntOrString (``2`` or ``"25%"``) as a count of ``total``."""
    raw = default if value is None else value
    if isinstance(raw, int):
        return raw
    text = raw.strip()
    if text.endswith(PERCENT_SUFFIX):
        scaled = total * int(text[:-1]) / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(text)


def resolve_fenceposts(
    max_surge: int | str | None, max_unavailable: int | str | None, replicas: int
) -> tuple[int, int]:
    """(surge, unavailable): surge rounds up, unavailable down; both 0 means unavailable 1."""
    surge = resolve_int_or_percent(max_surge, replicas, DEFAULT_MAX_SURGE, round_up=True)
    unavailable = resolve_int_or_percent(max_unavailable, replicas, DEFAULT_MAX_UNAVAILABLE, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _is_half(replicas: int, weight: int) -> bool:
    # A fraction of exactly .5: floor and ceil are equally close, Argo keeps only ceil.
    return (replicas * weight) % 100 == 50


def _delta(weight: int, canary: int, total: int) -> float:
    return abs(canary * 100 / total - weight)


def approximate_counts(replicas: int, weight: int, surge: int) -> tuple[int, int]:
    """Target (canary, stable) for a basic canary at ``weight``: closest actual weight wins.

    Candidates are ceil/floor of the canary share of ``replicas`` and of
    ``replicas + 1`` (when surge allows). For 0 < weight < 100 neither side may be
    0 unless only one pod is possible. Ties keep the earlier (larger-canary) option.
    """
    if replicas == 0:
        return 0, 0
    zero_allowed = weight in (0, 100) or (replicas == 1 and surge == 0)
    totals = [replicas, replicas + 1] if surge > 0 else [replicas]
    options: list[tuple[int, int]] = []
    for total in totals:
        ceil_count = math.ceil(total * weight / 100)
        floor_count = math.floor(total * weight / 100)
        ceil_allowed = ceil_count < total or zero_allowed
        if ceil_allowed:
            options.append((ceil_count, total))
        # At an exact half only ceil is kept, unless ceil would empty the stable side
        # (1 replica + 1 surge at 75%: 1/1, not 1/0).
        if (not _is_half(total, weight) or not ceil_allowed) and (floor_count != 0 or zero_allowed):
            options.append((floor_count, total))
    if not options:
        return replicas, 0
    best = min(options, key=lambda option: _delta(weight, option[0], option[1]))
    return best[0], best[1] - best[0]


def _scale_down_floor(rs: RSCounts, ignore_availability: bool) -> int:
    # Pods that count as "up" for the availability budget (Argo: GetReplicasForScaleDown).
    if ignore_availability:
        return rs.spec
    return min(rs.spec, rs.available)


def _scale_down_to(current: int, desired: int, budget: int) -> int:
    """Shrink ``current`` toward ``desired`` by at most ``budget`` pods."""
    if current <= desired:
        return current
    return max(desired, current - budget)


def basic_canary_counts(
    *,
    replicas: int,
    weight: int,
    surge: int,
    unavailable: int,
    canary: RSCounts,
    stable: RSCounts,
    others_spec: int,
) -> tuple[int, int]:
    """Next (canary, stable) spec replicas for a basic canary heading to ``weight``.

    Scale up within ``replicas + surge`` (stable first, then canary); scale down
    the shrinking side only while at least ``replicas - unavailable`` pods stay
    available, and only once "other" ReplicaSets are drained.
    """
    desired_canary, desired_stable = approximate_counts(replicas, weight, surge)
    new_canary, new_stable = canary.spec, stable.spec
    budget = replicas + surge - (canary.spec + stable.spec + others_spec)
    if budget > 0 and new_stable < desired_stable:
        grow = min(budget, desired_stable - new_stable)
        new_stable, budget = new_stable + grow, budget - grow
    if budget > 0 and new_canary < desired_canary:
        new_canary += min(budget, desired_canary - new_canary)
    if others_spec > 0:
        return new_canary, new_stable
    min_available = replicas - unavailable
    increasing = desired_canary >= canary.spec
    up = _scale_down_floor(canary, not increasing) + _scale_down_floor(stable, increasing)
    if up <= min_available:
        return new_canary, new_stable
    if increasing:
        new_stable = _scale_down_to(new_stable, desired_stable, up - min_available)
        return new_canary, new_stable
    new_canary = _scale_down_to(new_canary, desired_canary, up - min_available)
    # What the canary keeps available after shrinking may let the stable shrink too.
    still_up = min(canary.available, new_canary) + min(stable.available, new_stable)
    if still_up > min_available:
        new_stable = _scale_down_to(new_stable, desired_stable, still_up - min_available)
    return new_canary, new_stable


def ceil_share(replicas: int, weight: int) -> int:
    """``ceil(replicas * weight / 100)`` in integers (no float rounding surprises)."""
    return -(-replicas * weight // 100)


def traffic_canary_count(
    *,
    replicas: int,
    weight: int,
    scale_replicas: int | None = None,
    scale_weight: int | None = None,
    min_pods: int | None = None,
) -> int:
    """Canary pods with traffic routing: weight share, or a setCanaryScale override.

    ``minPodsPerReplicaSet`` raises a non-zero canary count (never above replicas... unless
    the user asked for more with ``setCanaryScale.replicas``).
    """
    if scale_replicas is not None:
        count = scale_replicas
    elif scale_weight is not None:
        count = ceil_share(replicas, scale_weight)
    else:
        count = ceil_share(replicas, weight)
    if min_pods and count > 0:
        count = max(count, min_pods)
    return count


def traffic_stable_count(
    *, replicas: int, weight: int, dynamic: bool, actual_stable_weight: int | None = None
) -> int:
    """Stable pods with traffic routing: all of them, unless ``dynamicStableScale``.

    With dynamicStableScale the stable keeps enough pods for both the weight it
    is heading to and the weight the router still sends it (the last applied one).
    """
    if not dynamic:
        return replicas
    needed = ceil_share(replicas, 100 - weight)
    if actual_stable_weight is not None:
        needed = max(needed, ceil_share(replicas, actual_stable_weight))
    return needed
