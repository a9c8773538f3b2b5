"""gitops/shard.py: which replica owns an Application; stable, balanced, parsed strictly."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from gitops.shard import ALL, Shard, parse_shard, resolve_shard, shard_from_env, stable_hash

APPS = [("argocd", f"app-{i:03d}") for i in range(300)]


def test_the_hash_is_a_fixed_function_of_namespace_and_name() -> None:
    # sha256("argocd/app-000")[:8]: a change here moves every Application to another shard
    assert stable_hash("argocd", "app-000") == int.from_bytes(
        hashlib.sha256(b"argocd/app-000").digest()[:8], "big")
    assert stable_hash("argocd", "app-000") == stable_hash("argocd", "app-000")


@pytest.mark.parametrize("count", [1, 2, 3, 5], ids=lambda n: f"N={n}")
def test_every_application_has_exactly_one_owner(count: int) -> None:
    shards = [Shard(index=i, count=count) for i in range(count)]
    for namespace, name in APPS:
        assert sum(s.owns(namespace, name) for s in shards) == 1


@pytest.mark.parametrize("count", [2, 3, 5], ids=lambda n: f"N={n}")
def test_the_split_is_balanced(count: int) -> None:
    owners = Counter(stable_hash(ns, name) % count for ns, name in APPS)
    expected = len(APPS) / count
    assert set(owners) == set(range(count))
    assert all(abs(n - expected) < expected * 0.3 for n in owners.values()), owners


@pytest.mark.parametrize(
    ("value", "shard"),
    [("0/3", Shard(0, 3)), ("2/3", Shard(2, 3)), (" 1/2 ", Shard(1, 2)), ("0/1", ALL)],
    ids=["first", "last", "spaces", "one-shard"],
)
def test_parse_shard(value: str, shard: Shard) -> None:
    assert parse_shard(value) == shard


@pytest.mark.parametrize("value", ["3/3", "-1/3", "1", "a/b", "1/0", "/3", ""],
                         ids=["index-too-big", "negative", "no-count", "letters", "zero", "no-index", "empty"])
def test_parse_shard_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="i/N"):
        parse_shard(value)


@pytest.mark.parametrize(
    ("environ", "hostname", "shard"),
    [({}, "tidegate-2", ALL), ({"TIDEGATE_SHARDS": "1"}, "x", ALL),
     ({"TIDEGATE_SHARDS": "3"}, "tidegate-gitops-2", Shard(2, 3)),
     ({"TIDEGATE_SHARDS": "3"}, "tidegate-0", Shard(0, 3))],
    ids=["no-env", "one", "ordinal-2", "ordinal-0"],
)
def test_statefulset_ordinal(environ: dict[str, str], hostname: str, shard: Shard) -> None:
    assert shard_from_env(environ, hostname) == shard


@pytest.mark.parametrize("hostname", ["tidegate-7", "tidegate", "tidegate-abc"],
                         ids=["ordinal-too-big", "no-ordinal", "not-a-number"])
def test_statefulset_ordinal_refuses(hostname: str) -> None:
    with pytest.raises(ValueError, match="TIDEGATE_SHARDS"):
        shard_from_env({"TIDEGATE_SHARDS": "3"}, hostname)


def test_the_flag_wins_over_the_ordinal() -> None:
    assert resolve_shard("1/2", {"TIDEGATE_SHARDS": "3"}, "tidegate-2") == Shard(1, 2)
    assert resolve_shard(None, {"TIDEGATE_SHARDS": "3"}, "tidegate-2") == Shard(2, 3)


def test_changing_n_moves_applications_to_their_new_owner() -> None:
    three = {key: stable_hash(*key) % 3 for key in APPS}
    two = {key: stable_hash(*key) % 2 for key in APPS}
    moved = sum(three[k] != two[k] for k in APPS)
    assert 0 < moved < len(APPS)
    assert all(Shard(two[k], 2).owns(*k) for k in APPS)
