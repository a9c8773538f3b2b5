"""Replica and weight arithmetic (semantics reference §1.9), with Argo's documented examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollouts.engine.hashing import SAFE_ALPHABET, fnv32a, pod_template_hash, step_hash
from rollouts.engine.replicas import (
    RSCounts,
    approximate_counts,
    basic_canary_counts,
    resolve_fenceposts,
    traffic_canary_count,
    traffic_stable_count,
)


@pytest.mark.parametrize(
    ("replicas", "weight", "surge", "expected"),
    [
        pytest.param(1, 50, 1, (1, 1), id="1-replica-w50-surge-gives-1+1"),
        pytest.param(1, 75, 1, (1, 1), id="1-replica-w75-surge-half-keeps-a-stable-pod"),
        pytest.param(8, 25, 2, (2, 6), id="8-replicas-w25"),
        pytest.param(4, 25, 1, (1, 3), id="4-replicas-w25"),
        pytest.param(10, 0, 3, (0, 10), id="w0-all-stable"),
        pytest.param(10, 100, 3, (10, 0), id="w100-all-canary"),
        pytest.param(3, 10, 1, (1, 3), id="small-weight-never-0-canary"),
        pytest.param(1, 50, 0, (1, 0), id="one-pod-no-surge-zero-allowed"),
        pytest.param(0, 50, 1, (0, 0), id="zero-replicas"),
    ],
)
def test_basic_canary_target_split(replicas: int, weight: int, surge: int, expected: tuple[int, int]) -> None:
    assert approximate_counts(replicas, weight, surge) == expected


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "expected"),
    [
        pytest.param(None, None, 10, (3, 2), id="defaults-25%-ceil-floor"),
        pytest.param(0, 0, 10, (0, 1), id="both-zero-unavailable-1"),
        pytest.param("50%", 1, 3, (2, 1), id="percent-and-int"),
    ],
)
def test_fenceposts(surge: int | str | None, unavailable: int | str | None, replicas: int, expected: tuple[int, int]) -> None:
    assert resolve_fenceposts(surge, unavailable, replicas) == expected


def _basic(replicas: int, weight: int, canary: tuple[int, int], stable: tuple[int, int]) -> tuple[int, int]:
    surge, unavailable = resolve_fenceposts(None, None, replicas)
    return basic_canary_counts(
        replicas=replicas,
        weight=weight,
        surge=surge,
        unavailable=unavailable,
        canary=RSCounts(*canary),
        stable=RSCounts(*stable),
        others_spec=0,
    )


@pytest.mark.parametrize(
    ("replicas", "weight", "canary", "stable", "expected"),
    [
        pytest.param(8, 25, (0, 0), (8, 8), (2, 6), id="8-from-all-stable-to-w25"),
        pytest.param(4, 25, (0, 0), (4, 4), (1, 3), id="4-from-all-stable-to-w25"),
        pytest.param(8, 25, (1, 1), (1, 1), (2, 6), id="scaling-event-1-to-8-at-w25"),
        pytest.param(4, 25, (2, 2), (6, 6), (1, 3), id="scaling-event-8-to-4-at-w25"),
        pytest.param(8, 25, (0, 0), (8, 4), (2, 6), id="drained-stable-counted-by-spec"),
        pytest.param(8, 0, (2, 2), (6, 3), (2, 8), id="canary-kept-while-stable-unavailable"),
        pytest.param(8, 0, (2, 0), (6, 6), (0, 8), id="abort-drains-unready-canary"),
        pytest.param(4, 0, (1, 1), (3, 3), (0, 4), id="abort-back-to-stable"),
    ],
)
def test_basic_canary_next_counts(
    replicas: int, weight: int, canary: tuple[int, int], stable: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert _basic(replicas, weight, canary, stable) == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"replicas": 10, "weight": 10}, 1, id="ceil-10%-of-10"),
        pytest.param({"replicas": 10, "weight": 15}, 2, id="ceil-15%-of-10"),
        pytest.param({"replicas": 3, "weight": 1}, 1, id="ceil-1%-of-3"),
        pytest.param({"replicas": 10, "weight": 10, "scale_replicas": 4}, 4, id="setCanaryScale-replicas"),
        pytest.param({"replicas": 10, "weight": 10, "scale_weight": 50}, 5, id="setCanaryScale-weight"),
        pytest.param({"replicas": 10, "weight": 10, "min_pods": 2}, 2, id="minPodsPerReplicaSet"),
        pytest.param({"replicas": 10, "weight": 0, "min_pods": 2}, 0, id="minPods-not-applied-to-0"),
    ],
)
def test_traffic_routed_canary_count(kwargs: dict[str, int], expected: int) -> None:
    assert traffic_canary_count(**kwargs) == expected


@pytest.mark.parametrize(
    ("weight", "dynamic", "actual", "expected"),
    [
        pytest.param(30, False, None, 10, id="stable-keeps-100%"),
        pytest.param(30, True, None, 7, id="dynamic-shrinks"),
        pytest.param(30, True, 90, 9, id="dynamic-waits-for-router"),
        pytest.param(100, True, 0, 0, id="dynamic-all-canary"),
    ],
)
def test_traffic_routed_stable_count(weight: int, dynamic: bool, actual: int | None, expected: int) -> None:
    assert traffic_stable_count(replicas=10, weight=weight, dynamic=dynamic, actual_stable_weight=actual) == expected


@given(replicas=st.integers(1, 50), weight=st.integers(1, 99), surge=st.integers(0, 5))
def test_split_never_drops_a_side_for_partial_weight(replicas: int, weight: int, surge: int) -> None:
    canary, stable = approximate_counts(replicas, weight, surge)
    assert canary + stable in (replicas, replicas + 1)
    if replicas + (1 if surge else 0) >= 2:
        assert canary >= 1 and stable >= 1


@given(replicas=st.integers(1, 50), weights=st.lists(st.integers(0, 100), min_size=2, max_size=6))
def test_canary_replicas_never_shrink_as_weight_rises(replicas: int, weights: list[int]) -> None:
    rising = sorted(weights)
    traffic = [traffic_canary_count(replicas=replicas, weight=w) for w in rising]
    basic = [approximate_counts(replicas, w, 1)[0] for w in rising]
    assert traffic == sorted(traffic)
    assert basic == sorted(basic)


def test_fnv32a_known_vectors() -> None:
    # Published FNV-1a 32-bit test vectors.
    assert fnv32a(b"") == 0x811C9DC5
    assert fnv32a(b"a") == 0xE40C292C
    assert fnv32a(b"foobar") == 0xBF9CF968


def test_hashes_are_safe_short_and_stable() -> None:
    template = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}
    first = pod_template_hash(template)
    assert first == pod_template_hash({"spec": template["spec"], "metadata": template["metadata"]})
    assert len(first) <= 10 and set(first) <= set(SAFE_ALPHABET)
    assert pod_template_hash(template, collision_count=1) != first
    labelled = {"metadata": {"labels": {"app": "x", "rollouts-pod-template-hash": first}}, "spec": template["spec"]}
    assert pod_template_hash(labelled) == first
    assert step_hash([{"setWeight": 10}]) != step_hash([{"setWeight": 20}])
