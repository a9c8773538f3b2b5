"""TypedDicts for the few Istio VirtualService / DestinationRule fields Tidegate touches.

Used by rollouts/traffic/istio.py. VirtualService and DestinationRule are Istio's
objects, not ours: every type here is ``total=False`` and lists only the keys we
read or write. Any other key (retries, timeout, corsPolicy, trafficPolicy,
fields from a newer Istio) rides along untouched, because the functions work on
deep copies of the dicts the API server returned and never rebuild an object
from these types. The same shapes hold for networking.istio.io v1alpha3,
v1beta1 and v1.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Destination(TypedDict, total=False):
    """``route[].destination``: where a share of the traffic goes."""

    host: str
    subset: str
    port: dict[str, Any]


class RouteDestination(TypedDict, total=False):
    """One entry of ``http[].route`` / ``tls[].route`` / ``tcp[].route``."""

    destination: Destination
    weight: int


class L4Match(TypedDict, total=False):
    """``tls[].match[]`` / ``tcp[].match[]`` (only the keys route selection reads)."""

    port: int
    sniHosts: list[str]


class HTTPRoute(TypedDict, total=False):
    """``spec.http[]``; ``match`` stays opaque except in managed header routes."""

    name: str
    match: list[dict[str, Any]]
    route: list[RouteDestination]


class L4Route(TypedDict, total=False):
    """``spec.tls[]`` and ``spec.tcp[]``."""

    match: list[L4Match]
    route: list[RouteDestination]


class VirtualServiceSpec(TypedDict, total=False):
    http: list[HTTPRoute]
    tls: list[L4Route]
    tcp: list[L4Route]


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]


class VirtualService(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: VirtualServiceSpec


class Subset(TypedDict, total=False):
    """``spec.subsets[]``; ``trafficPolicy`` and friends are left as they are."""

    name: str
    labels: dict[str, str]


class DestinationRuleSpec(TypedDict, total=False):
    host: str
    subsets: list[Subset]


class DestinationRule(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: DestinationRuleSpec
