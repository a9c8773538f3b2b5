"""Istio traffic routing: pure VS/DR functions, reference validation, the router.

Fixtures in tests/fixtures/istio/ are real VirtualService/DestinationRule YAML
modelled on Istio's docs. Expected objects are built as "the fixture with only
these fields changed" so any other key that moves fails the comparison.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from rollouts.traffic import istio
from rollouts.traffic.base import (
    TrafficRoutingError,
    TrafficTarget,
    apply_target,
)
from rollouts.traffic.istio_router import IstioTrafficRouter
from rollouts.traffic.istio_types import VirtualService

FIXTURES = Path(__file__).parent / "fixtures" / "istio"
NS = "shop"


def load(name: str) -> dict[str, Any]:
    with (FIXTURES / name).open() as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded


def host_canary(**istio_cfg: Any) -> dict[str, Any]:
    """spec.strategy.canary for host-level routing; ``istio_cfg`` replaces the istio block."""
    cfg = istio_cfg or {"virtualService": {"name": "shop-vsvc", "routes": ["primary"]}}
    return {
        "canaryService": "canary-svc",
        "stableService": "stable-svc",
        "trafficRouting": {"istio": cfg},
    }


def subset_canary(additional: list[str] | None = None, **overrides: Any) -> dict[str, Any]:
    dr: dict[str, Any] = {
        "name": "shop-destrule",
        "canarySubsetName": "canary",
        "stableSubsetName": "stable",
    }
    if additional is not None:
        dr["additionalSubsetNames"] = additional
    dr.update(overrides)
    return {
        "trafficRouting": {
            "istio": {
                "virtualService": {"name": "shop-subset-vsvc", "routes": ["primary"]},
                "destinationRule": dr,
            }
        }
    }


def weights(route: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    return [
        (d["destination"].get("subset") or d["destination"]["host"], d.get("weight")) for d in route
    ]


# ------------------------------------------------------------ parse_vs_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vs", ("shop", "vs")),
        ("vs.other", ("other", "vs")),
        ("vs.other.svc.cluster.local", ("other", "vs")),
        ("vs.other.svc", ("other", "vs")),
    ],
    ids=["bare-name", "name.namespace", "cluster-local-suffix", "svc-suffix"],
)
def test_parse_vs_name(name: str, expected: tuple[str, str]) -> None:
    assert istio.parse_vs_name(name=name, rollout_namespace=NS) == expected


# ------------------------------------------------------- host-level weights


@pytest.mark.parametrize("weight", [0, 10, 50, 100], ids=lambda w: f"w{w}")
def test_host_level_sets_only_weights(weight: int) -> None:
    vs = load("vs-host-split.yaml")
    original = copy.deepcopy(vs)

    new = istio.desired_virtual_service(
        vs=vs,
        vs_config={"name": "shop-vsvc", "routes": ["primary"]},
        canary_weight=weight,
        canary_service="canary-svc",
        stable_service="stable-svc",
    )

    expected = copy.deepcopy(original)
    expected["spec"]["http"][0]["route"][0]["weight"] = 100 - weight
    expected["spec"]["http"][0]["route"][1]["weight"] = weight
    if weight == 0:
        assert new is None  # the fixture is already at 100/0
    else:
        assert new == expected
        assert all(type(d["weight"]) is int for d in new["spec"]["http"][0]["route"])
    assert vs == original


def test_host_level_deletes_unknown_destinations() -> None:
    vs = load("vs-host-split.yaml")
    vs["spec"]["http"][0]["route"].append({"destination": {"host": "old-svc"}, "weight": 0})

    new = istio.desired_virtual_service(
        vs=vs,
        vs_config={"routes": ["primary"]},
        canary_weight=20,
        canary_service="canary-svc",
        stable_service="stable-svc",
    )

    assert new is not None
    assert weights(new["spec"]["http"][0]["route"]) == [
        ("stable-svc", 80),
        ("canary-svc.shop.svc.cluster.local", 20),
    ]


def test_no_change_returns_none() -> None:
    vs = load("vs-host-split.yaml")
    args: dict[str, Any] = {
        "vs_config": {"routes": ["primary"]},
        "canary_weight": 30,
        "canary_service": "canary-svc",
        "stable_service": "stable-svc",
    }
    first = istio.desired_virtual_service(vs=vs, **args)
    assert first is not None
    assert istio.desired_virtual_service(vs=first, **args) is None


@pytest.mark.parametrize("weight", [-1, 101], ids=["negative", "above-100"])
def test_weight_out_of_range_is_rejected(weight: int) -> None:
    with pytest.raises(ValueError, match="0..100"):
        istio.desired_virtual_service(
            vs=load("vs-host-split.yaml"),
            vs_config={"routes": ["primary"]},
            canary_weight=weight,
            canary_service="canary-svc",
            stable_service="stable-svc",
        )


def test_routes_omitted_patches_the_only_route_even_if_named() -> None:
    # Argo #4741: the named single route was silently skipped.
    vs = load("vs-host-split.yaml")
    del vs["spec"]["http"][1]

    new = istio.desired_virtual_service(
        vs=vs,
        vs_config={"name": "shop-vsvc"},
        canary_weight=40,
        canary_service="canary-svc",
        stable_service="stable-svc",
    )

    assert new is not None
    assert weights(new["spec"]["http"][0]["route"]) == [
        ("stable-svc", 60),
        ("canary-svc.shop.svc.cluster.local", 40),
    ]


def test_routes_omitted_with_two_candidates_raises() -> None:
    with pytest.raises(istio.RouteSelectionError, match="exactly one route"):
        istio.desired_virtual_service(
            vs=load("vs-two-unnamed.yaml"),
            vs_config={"name": "ambiguous-vsvc"},
            canary_weight=10,
            canary_service="canary-svc",
            stable_service="stable-svc",
        )


def test_missing_destination_raises_instead_of_skipping() -> None:
    with pytest.raises(istio.RouteSelectionError, match="Canary Service 'preview-svc'"):
        istio.desired_virtual_service(
            vs=load("vs-host-split.yaml"),
            vs_config={"routes": ["primary"]},
            canary_weight=10,
            canary_service="preview-svc",
            stable_service="stable-svc",
        )


# ----------------------------------------------------- subset-level weights


@pytest.mark.parametrize(
    ("weight", "additional", "expected"),
    [
        (0, [], [("stable", 100), ("canary", 0)]),
        (10, [], [("stable", 90), ("canary", 10)]),
        (50, [], [("stable", 50), ("canary", 50)]),
        (100, [], [("stable", 0), ("canary", 100)]),
        (0, ["experiment"], [("stable", 90), ("canary", 0), ("experiment", 10)]),
        (10, ["experiment"], [("stable", 80), ("canary", 10), ("experiment", 10)]),
        (50, ["experiment"], [("stable", 40), ("canary", 50), ("experiment", 10)]),
        (95, ["experiment"], [("stable", 0), ("canary", 95), ("experiment", 10)]),
        (
            20,
            ["experiment", "legacy"],
            [("stable", 70), ("canary", 20), ("experiment", 10), ("legacy", 0)],
        ),
    ],
    ids=[
        "w0",
        "w10",
        "w50",
        "w100",
        "w0-keep-experiment",
        "w10-keep-experiment",
        "w50-keep-experiment",
        "w95-stable-floored-at-0",
        "w20-keep-two",
    ],
)
def test_subset_level_weights(
    weight: int, additional: list[str], expected: list[tuple[str, int]]
) -> None:
    vs = load("vs-subset-split.yaml")
    original = copy.deepcopy(vs)

    new = istio.desired_virtual_service(
        vs=vs,
        vs_config={"routes": ["primary"]},
        canary_weight=weight,
        canary_service="",
        stable_service="",
        canary_subset="canary",
        stable_subset="stable",
        additional_subsets=additional,
    )

    assert new is not None
    assert weights(new["spec"]["http"][0]["route"]) == expected
    assert new["spec"]["http"][0]["corsPolicy"] == original["spec"]["http"][0]["corsPolicy"]
    assert {k: v for k, v in new.items() if k != "spec"} == {
        k: v for k, v in original.items() if k != "spec"
    }
    assert vs == original


# ---------------------------------------------------------------- TLS / TCP


@pytest.mark.parametrize(
    ("vs_config", "tls_weights", "tcp_weights"),
    [
        (
            {"tlsRoutes": [{"port": 443, "sniHosts": ["a.example.com"]}]},
            [[("stable-svc", 75), ("canary-svc", 25)], [("other-svc", None)]],
            [[("stable-svc", 100), ("canary-svc", 0)], [("postgres", None)]],
        ),
        (
            {"tcpRoutes": [{"port": 3306}]},
            [[("stable-svc", 100), ("canary-svc", 0)], [("other-svc", None)]],
            [[("stable-svc", 75), ("canary-svc", 25)], [("postgres", None)]],
        ),
        (
            {
                "tlsRoutes": [{"port": 443, "sniHosts": ["a.example.com"]}],
                "tcpRoutes": [{"port": 3306}],
            },
            [[("stable-svc", 75), ("canary-svc", 25)], [("other-svc", None)]],
            [[("stable-svc", 75), ("canary-svc", 25)], [("postgres", None)]],
        ),
    ],
    ids=["tls-by-port-and-sni", "tcp-by-port", "both"],
)
def test_tls_and_tcp_routes(
    vs_config: dict[str, Any],
    tls_weights: list[list[tuple[str, int | None]]],
    tcp_weights: list[list[tuple[str, int | None]]],
) -> None:
    vs = load("vs-tls-tcp.yaml")

    new = istio.desired_virtual_service(
        vs=vs,
        vs_config={"name": "db-vsvc", **vs_config},
        canary_weight=25,
        canary_service="canary-svc",
        stable_service="stable-svc",
    )

    assert new is not None
    assert [weights(r["route"]) for r in new["spec"]["tls"]] == tls_weights
    assert [weights(r["route"]) for r in new["spec"]["tcp"]] == tcp_weights
    assert [r["match"] for r in new["spec"]["tls"]] == [r["match"] for r in vs["spec"]["tls"]]


# ---------------------------------------------------------- current_weights


def current_weights(
    vs: Mapping[str, Any],
    vs_config: Mapping[str, Any],
    canary_service: str,
    stable_service: str,
    canary_subset: str | None = None,
    stable_subset: str | None = None,
) -> tuple[int, int] | None:
    """(canary_weight, stable_weight) of the first selected route; None if unreadable.

    A test reader of what desired_virtual_service wrote, with the route choice
    and destination roles the product code uses. HTTP routes come first, then
    TLS, then TCP, as they are written.
    """
    matcher = istio._matcher(canary_service, stable_service, canary_subset, stable_subset)
    typed = cast(VirtualService, vs)
    selection = istio._select(vs=typed, vs_config=vs_config)
    if selection.errors:
        return None
    for _kind, route in istio._selected_routes(vs=typed, selection=selection):
        destinations = route.get("route") or []
        alone = len(destinations) == 1
        found = {matcher.role(d): istio._weight_of(d, alone=alone) for d in destinations}
        if istio._Role.CANARY in found and istio._Role.STABLE in found:
            return found[istio._Role.CANARY], found[istio._Role.STABLE]
    return None


@pytest.mark.parametrize(
    ("fixture", "vs_config", "subsets", "expected"),
    [
        ("vs-host-split.yaml", {"routes": ["primary"]}, (None, None), (0, 100)),
        ("vs-subset-split.yaml", {"routes": ["primary"]}, ("canary", "stable"), (0, 90)),
        ("vs-tls-tcp.yaml", {"tcpRoutes": [{"port": 3306}]}, (None, None), (0, 100)),
        ("vs-host-split.yaml", {"routes": ["nope"]}, (None, None), None),
        ("vs-no-routes.yaml", {}, (None, None), None),
    ],
    ids=["host", "subset", "tcp", "unknown-route", "no-routes"],
)
def test_current_weights(
    fixture: str,
    vs_config: dict[str, Any],
    subsets: tuple[str | None, str | None],
    expected: tuple[int, int] | None,
) -> None:
    got = current_weights(
        vs=load(fixture),
        vs_config=vs_config,
        canary_service="canary-svc",
        stable_service="stable-svc",
        canary_subset=subsets[0],
        stable_subset=subsets[1],
    )
    assert got == expected


def test_current_weights_reads_back_what_was_written() -> None:
    new = istio.desired_virtual_service(
        vs=load("vs-host-split.yaml"),
        vs_config={"routes": ["primary"]},
        canary_weight=35,
        canary_service="canary-svc",
        stable_service="stable-svc",
    )
    assert new is not None
    assert current_weights(
        vs=new,
        vs_config={"routes": ["primary"]},
        canary_service="canary-svc",
        stable_service="stable-svc",
    ) == (35, 65)


# ---------------------------------------------------------- DestinationRule


def test_destination_rule_labels_annotation_and_pruning() -> None:
    dr = load("dr-subsets.yaml")
    original = copy.deepcopy(dr)

    new = istio.desired_destination_rule(
        dr=dr,
        canary_subset="canary",
        stable_subset="stable",
        canary_hash="6b56c8cdb4",
        stable_hash="674d8cf959",
        additional_subsets=["experiment"],
        rollout_name="shop",
    )

    expected = copy.deepcopy(original)
    subsets = expected["spec"]["subsets"]
    subsets[0]["labels"]["rollouts-pod-template-hash"] = "674d8cf959"
    subsets[1]["labels"]["rollouts-pod-template-hash"] = "6b56c8cdb4"
    expected["spec"]["subsets"] = subsets[:3]  # legacy is dropped, experiment kept
    expected["metadata"]["annotations"] = {"argo-rollouts.argoproj.io/managed-by-rollouts": "shop"}
    assert new == expected
    assert dr == original


def test_destination_rule_without_additional_drops_all_other_subsets() -> None:
    new = istio.desired_destination_rule(
        dr=load("dr-subsets.yaml"),
        canary_subset="canary",
        stable_subset="stable",
        canary_hash="c",
        stable_hash="s",
        additional_subsets=[],
        rollout_name="shop",
    )
    assert new is not None
    assert [s["name"] for s in new["spec"]["subsets"]] == ["stable", "canary"]


def test_destination_rule_unchanged_returns_none() -> None:
    args: dict[str, Any] = {
        "canary_subset": "canary",
        "stable_subset": "stable",
        "canary_hash": "c",
        "stable_hash": "s",
        "additional_subsets": ["experiment", "legacy"],
        "rollout_name": "shop",
    }
    first = istio.desired_destination_rule(dr=load("dr-subsets.yaml"), **args)
    assert first is not None
    assert istio.desired_destination_rule(dr=first, **args) is None


def test_destination_rule_empty_hash_removes_label() -> None:
    dr = load("dr-subsets.yaml")
    dr["spec"]["subsets"][1]["labels"]["rollouts-pod-template-hash"] = "old"
    new = istio.desired_destination_rule(
        dr=dr,
        canary_subset="canary",
        stable_subset="stable",
        canary_hash="",
        stable_hash="s",
        additional_subsets=[],
        rollout_name="shop",
    )
    assert new is not None
    assert new["spec"]["subsets"][1]["labels"] == {"app": "shop"}


# --------------------------------------------------------------- validation

ISTIO = "spec.strategy.canary.trafficRouting.istio"


def _validate(
    canary: Mapping[str, Any],
    vs: Mapping[str, dict[str, Any] | None] | None = None,
    dr: dict[str, Any] | None = None,
) -> list[tuple[str, str]]:
    vs_by_key = (
        vs
        if vs is not None
        else {
            "shop/shop-vsvc": load("vs-host-split.yaml"),
            "shop/shop-subset-vsvc": load("vs-subset-split.yaml"),
        }
    )
    errors = istio.validate_references(
        rollout_spec_canary=canary,
        vs_by_key=vs_by_key,
        destination_rule=dr,
        rollout_namespace=NS,
    )
    return [(e.path, e.message) for e in errors]


VS_NAME = f"{ISTIO}.virtualService.name"
HTTP = "Istio VirtualService has invalid HTTP routes. Error: "
TLS = "Istio VirtualService has invalid TLS routes. Error: "
TCP = "Istio VirtualService has invalid TCP routes. Error: "


@pytest.mark.parametrize(
    ("canary", "vs", "dr", "expected"),
    [
        (host_canary(), None, None, []),
        (subset_canary(), None, load("dr-subsets.yaml"), []),
        (
            host_canary(virtualService={"name": "db-vsvc", "tlsRoutes": [{"port": 443}]}),
            {"shop/db-vsvc": load("vs-tls-tcp.yaml")},
            None,
            # Port 443 alone matches both TLS routes; the second has neither Service.
            [
                (VS_NAME, TLS + "Stable Service 'stable-svc' not found in route"),
                (VS_NAME, TLS + "Canary Service 'canary-svc' not found in route"),
            ],
        ),
        (
            host_canary(
                virtualService={
                    "name": "db-vsvc",
                    "tlsRoutes": [{"port": 443, "sniHosts": ["a.example.com"]}],
                    "tcpRoutes": [{"port": 3306}],
                }
            ),
            {"shop/db-vsvc": load("vs-tls-tcp.yaml")},
            None,
            [],
        ),
        (host_canary(destinationRule=None), None, None, [(ISTIO, istio.MSG_EITHER_VS)]),
        (
            host_canary(
                virtualService={"name": "shop-vsvc"},
                virtualServices=[{"name": "shop-vsvc"}],
            ),
            None,
            None,
            [(ISTIO, istio.MSG_EITHER_VS)],
        ),
        (
            host_canary(virtualService={"name": "gone", "routes": ["primary"]}),
            None,
            None,
            [(VS_NAME, istio.MSG_VS_NOT_FOUND.format(key="shop/gone"))],
        ),
        (
            host_canary(
                virtualServices=[
                    {"name": "shop-vsvc", "routes": ["primary"]},
                    {"name": "gone.prod.svc.cluster.local"},
                ]
            ),
            None,
            None,
            [(f"{ISTIO}.virtualServices[1].name", istio.MSG_VS_NOT_FOUND.format(key="prod/gone"))],
        ),
        (
            host_canary(virtualService={"name": "shop-vsvc", "routes": ["primary", "x"]}),
            None,
            None,
            [(VS_NAME, HTTP + "HTTP Route 'x' is not found in the defined Virtual Service.")],
        ),
        (
            host_canary(virtualService={"name": "shop-vsvc"}),
            None,
            None,
            [(VS_NAME, HTTP + istio.MSG_HTTP_SINGLE_ROUTE.format(count=2))],
        ),
        (
            {**host_canary(virtualService={"name": "shop-vsvc"}), "canaryService": "nope-svc"},
            {
                "shop/shop-vsvc": {
                    **load("vs-host-split.yaml"),
                    "spec": {"http": load("vs-host-split.yaml")["spec"]["http"][:1]},
                }
            },
            None,
            [(VS_NAME, HTTP + "Canary Service 'nope-svc' not found in route")],
        ),
        (
            {**host_canary(), "stableService": "nope-svc"},
            None,
            None,
            [(VS_NAME, HTTP + "Stable Service 'nope-svc' not found in route")],
        ),
        (
            {**host_canary(), "canaryService": ""},
            None,
            None,
            [("spec.strategy.canary.canaryService", istio.MSG_HOST_LEVEL_NEEDS_SERVICES)],
        ),
        (
            {k: v for k, v in host_canary().items() if k != "stableService"},
            None,
            None,
            [("spec.strategy.canary.stableService", istio.MSG_HOST_LEVEL_NEEDS_SERVICES)],
        ),
        (
            subset_canary(),
            None,
            None,
            [
                (
                    f"{ISTIO}.destinationRule.name",
                    istio.MSG_DR_NOT_FOUND.format(key="shop/shop-destrule"),
                )
            ],
        ),
        (
            subset_canary(canarySubsetName="preview"),
            None,
            load("dr-subsets.yaml"),
            [
                (
                    f"{ISTIO}.destinationRule.canarySubsetName",
                    istio.MSG_DR_SUBSET_MISSING.format(
                        role="Canary",
                        subset="preview",
                        key="shop/shop-destrule",
                        field="canarySubsetName",
                    ),
                )
            ],
        ),
        (
            subset_canary(stableSubsetName="prod"),
            None,
            load("dr-subsets.yaml"),
            [
                (
                    f"{ISTIO}.destinationRule.stableSubsetName",
                    istio.MSG_DR_SUBSET_MISSING.format(
                        role="Stable",
                        subset="prod",
                        key="shop/shop-destrule",
                        field="stableSubsetName",
                    ),
                )
            ],
        ),
        (
            subset_canary(stableSubsetName=""),
            None,
            load("dr-subsets.yaml"),
            [(f"{ISTIO}.destinationRule", istio.MSG_DR_SUBSET_NAMES_REQUIRED)],
        ),
        (
            subset_canary(canarySubsetName="experiment"),
            {
                "shop/shop-subset-vsvc": {
                    **load("vs-subset-split.yaml"),
                    "spec": {
                        "http": [
                            {
                                "name": "primary",
                                "route": [
                                    {
                                        "destination": {"host": "shop", "subset": "stable"},
                                        "weight": 100,
                                    }
                                ],
                            }
                        ]
                    },
                }
            },
            load("dr-subsets.yaml"),
            [(VS_NAME, HTTP + "Canary DestinationRule subset 'experiment' not found in route")],
        ),
        (
            subset_canary(stableSubsetName="legacy"),
            {
                "shop/shop-subset-vsvc": {
                    **load("vs-subset-split.yaml"),
                    "spec": {
                        "http": [
                            {
                                "name": "primary",
                                "route": [
                                    {
                                        "destination": {"host": "shop", "subset": "canary"},
                                        "weight": 100,
                                    }
                                ],
                            }
                        ]
                    },
                }
            },
            load("dr-subsets.yaml"),
            [(VS_NAME, HTTP + "Stable DestinationRule subset 'legacy' not found in route")],
        ),
        (
            host_canary(
                virtualService={
                    "name": "db-vsvc",
                    "tlsRoutes": [{"port": 443, "sniHosts": ["c.example.com"]}],
                }
            ),
            {"shop/db-vsvc": load("vs-tls-tcp.yaml")},
            None,
            [(VS_NAME, TLS + istio.MSG_TLS_ROUTE_NOT_FOUND)],
        ),
        (
            host_canary(
                virtualService={
                    "name": "db-vsvc",
                    "tlsRoutes": [{"port": 8443, "sniHosts": ["a.example.com"]}],
                }
            ),
            {"shop/db-vsvc": load("vs-tls-tcp.yaml")},
            None,
            [(VS_NAME, TLS + istio.MSG_TLS_ROUTE_NOT_FOUND)],
        ),
        (
            host_canary(virtualService={"name": "db-vsvc", "tcpRoutes": [{"port": 27017}]}),
            {"shop/db-vsvc": load("vs-tls-tcp.yaml")},
            None,
            [(VS_NAME, TCP + istio.MSG_TCP_ROUTE_NOT_FOUND)],
        ),
        (
            host_canary(virtualService={"name": "db-vsvc", "tcpRoutes": [{"port": 5432}]}),
            {"shop/db-vsvc": load("vs-tls-tcp.yaml")},
            None,
            [
                (VS_NAME, TCP + "Stable Service 'stable-svc' not found in route"),
                (VS_NAME, TCP + "Canary Service 'canary-svc' not found in route"),
            ],
        ),
        (
            host_canary(virtualService={"name": "empty-vsvc"}),
            {"shop/empty-vsvc": load("vs-no-routes.yaml")},
            None,
            [(VS_NAME, istio.MSG_NO_ROUTES)],
        ),
        (
            host_canary(virtualService={"name": "db-vsvc"}),
            {"shop/db-vsvc": load("vs-tls-tcp.yaml")},
            None,
            [(VS_NAME, istio.MSG_NOTHING_SELECTED)],
        ),
    ],
    ids=[
        "valid-host-level",
        "valid-subset-level",
        "tls-port-matches-two-routes-one-without-destinations",
        "valid-tls-and-tcp",
        "neither-virtualService-nor-virtualServices",
        "both-virtualService-and-virtualServices",
        "vs-missing",
        "second-of-virtualServices-missing-other-namespace",
        "http-route-not-found",
        "routes-omitted-two-candidates",
        "canary-service-not-in-route",
        "stable-service-not-in-route",
        "host-level-without-canaryService",
        "host-level-without-stableService",
        "destination-rule-missing",
        "canary-subset-not-in-dr",
        "stable-subset-not-in-dr",
        "subset-names-required",
        "canary-subset-not-in-route",
        "stable-subset-not-in-route",
        "tls-sni-mismatch",
        "tls-port-mismatch",
        "tcp-port-not-found",
        "tcp-route-without-our-destinations",
        "no-http-tls-or-tcp-routes",
        "tls-only-vs-without-tlsRoutes",
    ],
)
def test_validate_references(
    canary: dict[str, Any],
    vs: dict[str, dict[str, Any] | None] | None,
    dr: dict[str, Any] | None,
    expected: list[tuple[str, str]],
) -> None:
    assert _validate(canary=canary, vs=vs, dr=dr) == expected


def test_field_error_renders_like_kubernetes() -> None:
    error = istio.FieldError(path=VS_NAME, value="vs", message="boom")
    assert str(error) == f'{VS_NAME}: Invalid value: "vs": boom'


# ------------------------------------------------------------------- router


class FakeStore:
    """In-memory IstioObjectStore that records every replace."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {
            (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects
        }
        self.writes: list[tuple[str, str]] = []

    def _get(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def _put(self, obj: Mapping[str, Any]) -> None:
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        self.objects[key] = dict(obj)
        self.writes.append((obj["kind"], obj["metadata"]["name"]))

    def get_virtual_service(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._get("VirtualService", namespace, name)

    def replace_virtual_service(self, obj: Mapping[str, Any]) -> None:
        self._put(obj)

    def get_destination_rule(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._get("DestinationRule", namespace, name)

    def replace_destination_rule(self, obj: Mapping[str, Any]) -> None:
        self._put(obj)


def test_router_subset_level_writes_only_on_change() -> None:
    store = FakeStore(load("vs-subset-split.yaml"), load("dr-subsets.yaml"))
    router = IstioTrafficRouter(
        store=store,
        rollout_name="shop",
        rollout_namespace=NS,
        canary_spec=subset_canary(additional=["experiment"]),
        canary_service="",
        stable_service="",
    )
    target = TrafficTarget(
        canary_weight=30,
        canary_hash="c1",
        stable_hash="s1",
        canary_service="",
        stable_service="",
    )

    apply_target(router, target)
    apply_target(router, target)

    assert store.writes == [
        ("DestinationRule", "shop-destrule"),
        ("VirtualService", "shop-subset-vsvc"),
    ]
    vs = store.objects[("VirtualService", NS, "shop-subset-vsvc")]
    assert weights(vs["spec"]["http"][0]["route"]) == [
        ("stable", 60),
        ("canary", 30),
        ("experiment", 10),
    ]
    assert router.verify(desired_weight=30) is None


def test_router_writes_every_virtual_service_in_order() -> None:
    store = FakeStore(load("vs-host-split.yaml"), load("vs-tls-tcp.yaml"))
    router = IstioTrafficRouter(
        store=store,
        rollout_name="shop",
        rollout_namespace=NS,
        canary_spec=host_canary(
            virtualServices=[
                {"name": "shop-vsvc", "routes": ["primary"]},
                {"name": "db-vsvc.shop", "tcpRoutes": [{"port": 3306}]},
            ]
        ),
        canary_service="canary-svc",
        stable_service="stable-svc",
    )

    router.set_weight(desired_weight=60)

    assert store.writes == [("VirtualService", "shop-vsvc"), ("VirtualService", "db-vsvc")]
    db = store.objects[("VirtualService", NS, "db-vsvc")]
    assert weights(db["spec"]["tcp"][0]["route"]) == [("stable-svc", 40), ("canary-svc", 60)]


def test_router_host_level_skips_dr_and_reports_missing_vs() -> None:
    store = FakeStore(load("vs-host-split.yaml"))
    router = IstioTrafficRouter(
        store=store,
        rollout_name="shop",
        rollout_namespace=NS,
        canary_spec=host_canary(
            virtualServices=[{"name": "shop-vsvc", "routes": ["primary"]}, {"name": "gone"}]
        ),
        canary_service="canary-svc",
        stable_service="stable-svc",
    )
    router.update_hash(canary_hash="c", stable_hash="s")
    assert store.writes == []
    with pytest.raises(TrafficRoutingError, match="VirtualService 'shop/gone'"):
        router.set_weight(desired_weight=10)
    assert store.writes == []  # nothing half-applied: all VSs are read first


def test_router_turns_route_errors_into_traffic_routing_error() -> None:
    store = FakeStore(load("vs-host-split.yaml"))
    router = IstioTrafficRouter(
        store=store,
        rollout_name="shop",
        rollout_namespace=NS,
        canary_spec=host_canary(virtualService={"name": "shop-vsvc", "routes": ["nope"]}),
        canary_service="canary-svc",
        stable_service="stable-svc",
    )
    with pytest.raises(TrafficRoutingError, match="HTTP Route 'nope' is not found"):
        router.set_weight(desired_weight=10)


# --------------------------------------------------------------- invariants


@given(weight=st.integers(min_value=0, max_value=100))
def test_host_level_weights_sum_to_100_and_input_is_untouched(weight: int) -> None:
    vs = load("vs-host-split.yaml")
    original = copy.deepcopy(vs)
    new = istio.desired_virtual_service(
        vs=vs,
        vs_config={"routes": ["primary"]},
        canary_weight=weight,
        canary_service="canary-svc",
        stable_service="stable-svc",
    )
    assert vs == original
    result = new if new is not None else vs
    route = result["spec"]["http"][0]["route"]
    assert sum(d["weight"] for d in route) == 100
    assert route[1]["weight"] == weight


@given(
    weight=st.integers(min_value=0, max_value=100),
    kept=st.integers(min_value=0, max_value=100),
)
def test_subset_level_weights_sum_to_100_when_the_kept_share_fits(weight: int, kept: int) -> None:
    vs = load("vs-subset-split.yaml")
    vs["spec"]["http"][0]["route"][2]["weight"] = kept
    original = copy.deepcopy(vs)
    new = istio.desired_virtual_service(
        vs=vs,
        vs_config={"routes": ["primary"]},
        canary_weight=weight,
        canary_service="",
        stable_service="",
        canary_subset="canary",
        stable_subset="stable",
        additional_subsets=["experiment"],
    )
    assert vs == original
    assert new is not None  # legacy is always dropped
    route = {d["destination"]["subset"]: d["weight"] for d in new["spec"]["http"][0]["route"]}
    assert route["canary"] == weight
    assert route["experiment"] == kept
    assert route["stable"] == max(0, 100 - weight - kept)
    if weight + kept <= 100:
        assert sum(route.values()) == 100
