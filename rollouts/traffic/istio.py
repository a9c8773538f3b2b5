"""Pure Istio logic: validate a rollout's references and compute new VS/DR objects.

Called by the Istio router (rollouts/traffic/istio_router.py) and by the
engine's referenced-resource validation (rollouts/engine/validation.py,
``validate_references``); rollouts/kube/observe.py uses the ``*_ref``
helpers to know which objects to fetch. Nothing here does I/O: each function
takes the VirtualService / DestinationRule dicts the API server returned
(networking.istio.io v1alpha3, v1beta1 or v1 all have the same shape) and
returns a NEW dict, or None when nothing would change, so the caller writes
only when a weight, label or route really moves (semantics reference §2).

Inputs are plain ``Mapping[str, Any]`` because that is what the kubernetes
client hands the caller; internally they are cast to the TypedDicts in
istio_types.py after a deep copy, and only the keys listed there are written.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from rollouts.traffic.base import MAX_TRAFFIC_WEIGHT
from rollouts.traffic.istio_types import (
    DestinationRule,
    HTTPRoute,
    L4Route,
    RouteDestination,
    Subset,
    VirtualService,
)

HASH_LABEL = "rollouts-pod-template-hash"
MANAGED_BY_ANNOTATION = "argo-rollouts.argoproj.io/managed-by-rollouts"

ISTIO_PATH = "spec.strategy.canary.trafficRouting.istio"
CANARY_SERVICE_PATH = "spec.strategy.canary.canaryService"
STABLE_SERVICE_PATH = "spec.strategy.canary.stableService"
DESTINATION_RULE_PATH = f"{ISTIO_PATH}.destinationRule"

# Messages. The route-level ones keep Argo's wording (users grep for them);
# the rest say which object is wrong and what to do.
MSG_EITHER_VS = "either VirtualService or VirtualServices must be configured"
MSG_VS_NOT_FOUND = (
    "VirtualService '{key}' not found; create it or fix the name "
    "(use 'name.namespace' for another namespace)"
)
MSG_INVALID_HTTP = "Istio VirtualService has invalid HTTP routes. Error: {error}"
MSG_INVALID_TLS = "Istio VirtualService has invalid TLS routes. Error: {error}"
MSG_INVALID_TCP = "Istio VirtualService has invalid TCP routes. Error: {error}"
MSG_NO_ROUTES = "Unable to get any of the HTTP, TCP or TLS routes for the Istio VirtualService"
MSG_NOTHING_SELECTED = (
    "the VirtualService has no HTTP routes and the rollout names no tlsRoutes or "
    "tcpRoutes; list the TLS/TCP routes to shift"
)
MSG_HTTP_ROUTE_NOT_FOUND = "HTTP Route '{name}' is not found in the defined Virtual Service."
MSG_HTTP_SINGLE_ROUTE = (
    "spec.http[] must have exactly one route when "
    "omitting spec.strategy.canary.trafficRouting.istio.virtualService.routes; "
    "found {count}: list the route names in routes"
)
MSG_TLS_ROUTE_NOT_FOUND = "No matching TLS routes found in the defined Virtual Service."
MSG_TCP_ROUTE_NOT_FOUND = "No matching TCP routes found in the defined Virtual Service."
MSG_L4_SINGLE_ROUTE = (
    "a {kind} route entry without port selects the only {kind} route, but spec.{key}[] "
    "has {count}; set port"
)
MSG_CANARY_SERVICE_NOT_IN_ROUTE = "Canary Service '{name}' not found in route"
MSG_STABLE_SERVICE_NOT_IN_ROUTE = "Stable Service '{name}' not found in route"
MSG_CANARY_SUBSET_NOT_IN_ROUTE = "Canary DestinationRule subset '{name}' not found in route"
MSG_STABLE_SUBSET_NOT_IN_ROUTE = "Stable DestinationRule subset '{name}' not found in route"
MSG_HOST_LEVEL_NEEDS_SERVICES = (
    "Istio host-level traffic routing needs both canaryService and stableService; "
    "set both, or set trafficRouting.istio.destinationRule for subset-level routing"
)
MSG_DR_NOT_FOUND = "DestinationRule '{key}' not found; create it or fix destinationRule.name"
MSG_DR_SUBSET_MISSING = (
    "{role} subset '{subset}' is not defined in DestinationRule '{key}'; "
    "add it to spec.subsets or fix {field}"
)
MSG_DR_SUBSET_NAMES_REQUIRED = "destinationRule needs canarySubsetName and stableSubsetName"


class RouteSelectionError(ValueError):
    """The VirtualService does not have the routes/destinations the rollout names.

    ``validate_references`` reports the same problems as FieldErrors before any
    write; this is raised when a caller skips validation, so a weight is never
    silently left unchanged (Argo issue #4741).
    """


@dataclass(frozen=True)
class FieldError:
    """One invalid field, rendered like a Kubernetes field.Invalid error."""

    path: str
    message: str
    value: str = ""

    def __str__(self) -> str:
        return f'{self.path}: Invalid value: "{self.value}": {self.message}'


@dataclass(frozen=True)
class VirtualServiceRef:
    """One VirtualService a rollout routes through, with its own route selection."""

    namespace: str
    name: str
    config: Mapping[str, Any]
    path: str

    @property
    def key(self) -> str:
        return vs_key(namespace=self.namespace, name=self.name)


@dataclass(frozen=True)
class DestinationRuleRef:
    namespace: str
    name: str
    canary_subset: str
    stable_subset: str
    additional_subsets: tuple[str, ...]

    @property
    def key(self) -> str:
        return vs_key(namespace=self.namespace, name=self.name)


# ---------------------------------------------------------------- references


def parse_vs_name(name: str, rollout_namespace: str) -> tuple[str, str]:
    """``"vs"``, ``"vs.ns"`` or ``"vs.ns.svc.cluster.local"`` -> (namespace, name).

    As Argo: the first dot-separated field is the name, the second (if any) the
    namespace; anything after that is a DNS suffix and ignored.
    """
    fields = name.split(".")
    namespace = fields[1] if len(fields) >= 2 and fields[1] else rollout_namespace
    return namespace, fields[0]


def vs_key(namespace: str, name: str) -> str:
    """The key ``validate_references`` expects in ``vs_by_key``."""
    return f"{namespace}/{name}"


def _istio_config(canary_spec: Mapping[str, Any]) -> Mapping[str, Any]:
    routing = canary_spec.get("trafficRouting") or {}
    return cast(Mapping[str, Any], routing.get("istio") or {})


def virtual_service_refs(
    canary_spec: Mapping[str, Any], rollout_namespace: str
) -> list[VirtualServiceRef]:
    """The VirtualServices to fetch before ``validate_references``, in spec order.

    Empty when neither or both of ``virtualService``/``virtualServices`` are set;
    validation reports that case.
    """
    istio = _istio_config(canary_spec)
    single = istio.get("virtualService")
    many: Sequence[Mapping[str, Any]] = istio.get("virtualServices") or ()
    if bool(single) == bool(many):
        return []
    if single:
        entries = [(single, f"{ISTIO_PATH}.virtualService.name")]
    else:
        entries = [(vs, f"{ISTIO_PATH}.virtualServices[{i}].name") for i, vs in enumerate(many)]
    refs = []
    for config, path in entries:
        namespace, name = parse_vs_name(
            name=str(config.get("name", "")), rollout_namespace=rollout_namespace
        )
        refs.append(VirtualServiceRef(namespace=namespace, name=name, config=config, path=path))
    return refs


def destination_rule_ref(
    canary_spec: Mapping[str, Any], rollout_namespace: str
) -> DestinationRuleRef | None:
    """The DestinationRule for subset-level routing; None means host-level.

    The DR lives in the rollout's namespace (Argo does not parse a namespace
    out of destinationRule.name).
    """
    dr = _istio_config(canary_spec).get("destinationRule")
    if not dr:
        return None
    return DestinationRuleRef(
        namespace=rollout_namespace,
        name=str(dr.get("name", "")),
        canary_subset=str(dr.get("canarySubsetName", "")),
        stable_subset=str(dr.get("stableSubsetName", "")),
        additional_subsets=tuple(str(s) for s in dr.get("additionalSubsetNames") or ()),
    )


# ------------------------------------------------------------- route choice


class _Role(enum.Enum):
    CANARY = "canary"
    STABLE = "stable"
    OTHER = "other"


@dataclass(frozen=True)
class _Matcher:
    """Tells canary from stable destinations: by subset name, else by Service host.

    Host-level compares the text before the first '.', so ``canary-svc`` matches
    ``canary-svc.ns.svc.cluster.local`` as in Argo.
    """

    canary_service: str
    stable_service: str
    canary_subset: str
    stable_subset: str

    @property
    def by_subset(self) -> bool:
        return bool(self.canary_subset and self.stable_subset)

    def role(self, destination: RouteDestination) -> _Role:
        target = destination.get("destination") or {}
        if self.by_subset:
            subset = target.get("subset", "")
            if subset == self.canary_subset:
                return _Role.CANARY
            if subset == self.stable_subset:
                return _Role.STABLE
            return _Role.OTHER
        host = str(target.get("host", "")).split(".")[0]
        if host == self.canary_service:
            return _Role.CANARY
        if host == self.stable_service:
            return _Role.STABLE
        return _Role.OTHER

    def missing(self, route: Sequence[RouteDestination]) -> list[str]:
        """Argo's messages for the canary/stable destinations absent from one route."""
        roles = {self.role(d) for d in route}
        errors = []
        if _Role.STABLE not in roles:
            errors.append(
                MSG_STABLE_SUBSET_NOT_IN_ROUTE.format(name=self.stable_subset)
                if self.by_subset
                else MSG_STABLE_SERVICE_NOT_IN_ROUTE.format(name=self.stable_service)
            )
        if _Role.CANARY not in roles:
            errors.append(
                MSG_CANARY_SUBSET_NOT_IN_ROUTE.format(name=self.canary_subset)
                if self.by_subset
                else MSG_CANARY_SERVICE_NOT_IN_ROUTE.format(name=self.canary_service)
            )
        return errors


@dataclass
class _Selection:
    """Indexes of the http/tls/tcp routes to patch, and why any could not be chosen."""

    http: list[int]
    tls: list[int]
    tcp: list[int]
    http_error: str = ""
    tls_error: str = ""
    tcp_error: str = ""

    @property
    def errors(self) -> list[str]:
        return [e for e in (self.http_error, self.tls_error, self.tcp_error) if e]


def _select_http(http: Sequence[HTTPRoute], route_names: Sequence[str]) -> tuple[list[int], str]:
    if route_names:
        indexes = []
        for wanted in route_names:
            found = [i for i, r in enumerate(http) if r.get("name") == wanted]
            if not found:
                return [], MSG_HTTP_ROUTE_NOT_FOUND.format(name=wanted)
            indexes.append(found[0])
        return indexes, ""
    if not http:
        # A TLS- or TCP-only VirtualService has no spec.http; that is fine.
        return [], ""
    # Argo patches "the" route; with several candidates it would guess, which
    # is how weights went silently unchanged in #4741. Refuse instead.
    if len(http) != 1:
        return [], MSG_HTTP_SINGLE_ROUTE.format(count=len(http))
    return [0], ""


def _l4_route_matches(route: L4Route, port: int | None, sni_hosts: Collection[str]) -> bool:
    matches = route.get("match") or []
    ports = {m.get("port") for m in matches}
    if port is not None and ports != {port}:
        return False
    if sni_hosts:
        hosts = {h for m in matches for h in m.get("sniHosts") or ()}
        return hosts == set(sni_hosts)
    return True


def _select_l4(
    routes: Sequence[L4Route], refs: Sequence[Mapping[str, Any]], kind: str, key: str
) -> tuple[list[int], str]:
    not_found = MSG_TLS_ROUTE_NOT_FOUND if kind == "TLS" else MSG_TCP_ROUTE_NOT_FOUND
    indexes: list[int] = []
    for ref in refs:
        port = ref.get("port")
        sni_hosts = tuple(ref.get("sniHosts") or ())
        if port is None and not sni_hosts:
            if len(routes) != 1:
                return [], MSG_L4_SINGLE_ROUTE.format(kind=kind, key=key, count=len(routes))
            found = [0]
        else:
            found = [
                i
                for i, r in enumerate(routes)
                if _l4_route_matches(
                    route=r, port=int(port) if port is not None else None, sni_hosts=sni_hosts
                )
            ]
        if not found:
            return [], not_found
        indexes.extend(i for i in found if i not in indexes)
    return indexes, ""


def _select(vs: VirtualService, vs_config: Mapping[str, Any]) -> _Selection:
    spec = vs.get("spec") or {}
    http_idx, http_err = _select_http(
        http=spec.get("http") or [],
        route_names=tuple(vs_config.get("routes") or ()),
    )
    tls_idx, tls_err = _select_l4(
        routes=spec.get("tls") or [], refs=vs_config.get("tlsRoutes") or (), kind="TLS", key="tls"
    )
    tcp_idx, tcp_err = _select_l4(
        routes=spec.get("tcp") or [], refs=vs_config.get("tcpRoutes") or (), kind="TCP", key="tcp"
    )
    return _Selection(
        http=http_idx,
        tls=tls_idx,
        tcp=tcp_idx,
        http_error=MSG_INVALID_HTTP.format(error=http_err) if http_err else "",
        tls_error=MSG_INVALID_TLS.format(error=tls_err) if tls_err else "",
        tcp_error=MSG_INVALID_TCP.format(error=tcp_err) if tcp_err else "",
    )


def _selected_routes(
    vs: VirtualService, selection: _Selection
) -> list[tuple[str, HTTPRoute | L4Route]]:
    spec = vs.get("spec") or {}
    http = spec.get("http") or []
    tls = spec.get("tls") or []
    tcp = spec.get("tcp") or []
    chosen: list[tuple[str, HTTPRoute | L4Route]] = [("HTTP", http[i]) for i in selection.http]
    chosen += [("TLS", tls[i]) for i in selection.tls]
    chosen += [("TCP", tcp[i]) for i in selection.tcp]
    return chosen


def _destination_errors(vs: VirtualService, selection: _Selection, matcher: _Matcher) -> list[str]:
    templates = {"HTTP": MSG_INVALID_HTTP, "TLS": MSG_INVALID_TLS, "TCP": MSG_INVALID_TCP}
    errors = []
    for kind, route in _selected_routes(vs=vs, selection=selection):
        for problem in matcher.missing(route=route.get("route") or []):
            message = templates[kind].format(error=problem)
            if message not in errors:
                errors.append(message)
    return errors


# --------------------------------------------------------------- validation


def validate_references(
    rollout_spec_canary: Mapping[str, Any],
    vs_by_key: Mapping[str, Mapping[str, Any] | None],
    destination_rule: Mapping[str, Any] | None,
    rollout_namespace: str,
) -> list[FieldError]:
    """Everything Argo checks about the Istio objects a rollout references.

    ``rollout_spec_canary`` is ``spec.strategy.canary`` (camelCase dict);
    ``vs_by_key`` maps ``vs_key(namespace, name)`` of every
    ``virtual_service_refs`` entry to the object, or None when it does not
    exist; ``destination_rule`` is the DR named in the spec (None if missing
    or not configured). An empty list means the rollout may route traffic.
    """
    istio = _istio_config(rollout_spec_canary)
    if bool(istio.get("virtualService")) == bool(istio.get("virtualServices")):
        return [FieldError(path=ISTIO_PATH, message=MSG_EITHER_VS)]

    errors: list[FieldError] = []
    dr_ref = destination_rule_ref(rollout_spec_canary, rollout_namespace=rollout_namespace)
    canary_service = str(rollout_spec_canary.get("canaryService") or "")
    stable_service = str(rollout_spec_canary.get("stableService") or "")
    if dr_ref is None:
        for path, service in (
            (CANARY_SERVICE_PATH, canary_service),
            (STABLE_SERVICE_PATH, stable_service),
        ):
            if not service:
                errors.append(FieldError(path=path, message=MSG_HOST_LEVEL_NEEDS_SERVICES))
    else:
        errors += _validate_destination_rule(ref=dr_ref, destination_rule=destination_rule)
    if errors:
        # Route checks would only repeat the same root cause per route.
        return errors

    matcher = _Matcher(
        canary_service=canary_service,
        stable_service=stable_service,
        canary_subset=dr_ref.canary_subset if dr_ref else "",
        stable_subset=dr_ref.stable_subset if dr_ref else "",
    )
    for ref in virtual_service_refs(rollout_spec_canary, rollout_namespace=rollout_namespace):
        errors += [
            FieldError(path=ref.path, value=str(ref.config.get("name", "")), message=message)
            for message in _virtual_service_problems(
                ref=ref, vs=vs_by_key.get(ref.key), matcher=matcher
            )
        ]
    return errors


def _validate_destination_rule(
    ref: DestinationRuleRef, destination_rule: Mapping[str, Any] | None
) -> list[FieldError]:
    if not ref.canary_subset or not ref.stable_subset:
        return [FieldError(path=DESTINATION_RULE_PATH, message=MSG_DR_SUBSET_NAMES_REQUIRED)]
    if destination_rule is None:
        return [
            FieldError(
                path=f"{DESTINATION_RULE_PATH}.name",
                value=ref.name,
                message=MSG_DR_NOT_FOUND.format(key=ref.key),
            )
        ]
    dr = cast(DestinationRule, destination_rule)
    defined = {s.get("name") for s in (dr.get("spec") or {}).get("subsets") or []}
    errors = []
    for role, field_name, subset in (
        ("Canary", "canarySubsetName", ref.canary_subset),
        ("Stable", "stableSubsetName", ref.stable_subset),
    ):
        if subset not in defined:
            errors.append(
                FieldError(
                    path=f"{DESTINATION_RULE_PATH}.{field_name}",
                    value=subset,
                    message=MSG_DR_SUBSET_MISSING.format(
                        role=role, subset=subset, key=ref.key, field=field_name
                    ),
                )
            )
    return errors


def _virtual_service_problems(
    ref: VirtualServiceRef,
    vs: Mapping[str, Any] | None,
    matcher: _Matcher,
) -> list[str]:
    if vs is None:
        return [MSG_VS_NOT_FOUND.format(key=ref.key)]
    typed = cast(VirtualService, vs)
    spec = typed.get("spec") or {}
    if not (spec.get("http") or spec.get("tls") or spec.get("tcp")):
        return [MSG_NO_ROUTES]
    selection = _select(vs=typed, vs_config=ref.config)
    if not (selection.errors or selection.http or selection.tls or selection.tcp):
        # e.g. a TLS-only VirtualService and no tlsRoutes in the rollout.
        return [MSG_NOTHING_SELECTED]
    return selection.errors + _destination_errors(vs=typed, selection=selection, matcher=matcher)


# ------------------------------------------------------------------ weights


def _check_weight(weight: int) -> None:
    if not 0 <= weight <= MAX_TRAFFIC_WEIGHT:
        raise ValueError(f"canary weight must be 0..{MAX_TRAFFIC_WEIGHT}, got {weight}")


def _weight_of(destination: RouteDestination, alone: bool) -> int:
    # Istio: an omitted weight means 100 for a lone destination, else 0.
    if "weight" in destination:
        return int(destination["weight"])
    return MAX_TRAFFIC_WEIGHT if alone else 0


def _reweight(
    route: list[RouteDestination],
    matcher: _Matcher,
    canary_weight: int,
    additional_subsets: Collection[str],
) -> list[RouteDestination]:
    """Argo's processRoutes for one route: canary w, stable the rest, others dropped or kept."""

    def kept(d: RouteDestination) -> bool:
        return (d.get("destination") or {}).get("subset") in additional_subsets

    others = [d for d in route if matcher.role(d) is _Role.OTHER and kept(d)]
    reserved = sum(_weight_of(d, alone=len(route) == 1) for d in others)
    stable_weight = max(0, MAX_TRAFFIC_WEIGHT - canary_weight - reserved)
    result = []
    for destination in route:
        role = matcher.role(destination)
        if role is _Role.CANARY:
            destination["weight"] = canary_weight
        elif role is _Role.STABLE:
            destination["weight"] = stable_weight
        elif not kept(destination):
            continue
        result.append(destination)
    return result


def _matcher(
    canary_service: str, stable_service: str, canary_subset: str | None, stable_subset: str | None
) -> _Matcher:
    return _Matcher(
        canary_service=canary_service or "",
        stable_service=stable_service or "",
        canary_subset=canary_subset or "",
        stable_subset=stable_subset or "",
    )


def desired_virtual_service(
    vs: Mapping[str, Any],
    vs_config: Mapping[str, Any],
    canary_weight: int,
    canary_service: str,
    stable_service: str,
    canary_subset: str | None = None,
    stable_subset: str | None = None,
    additional_subsets: Sequence[str] = (),
) -> dict[str, Any] | None:
    """A copy of ``vs`` with ``canary_weight`` set on every selected route, or None.

    ``vs_config`` is one ``virtualService``/``virtualServices[]`` entry of the
    rollout. Subset-level when both subsets are given, else host-level. Raises
    RouteSelectionError when a route or destination the config names is missing.
    """
    _check_weight(canary_weight)
    matcher = _matcher(canary_service, stable_service, canary_subset, stable_subset)
    new = cast(VirtualService, copy.deepcopy(dict(vs)))
    selection = _select(vs=new, vs_config=vs_config)
    problems = selection.errors + _destination_errors(vs=new, selection=selection, matcher=matcher)
    if problems:
        raise RouteSelectionError("; ".join(problems))
    if not (selection.http or selection.tls or selection.tcp):
        raise RouteSelectionError(MSG_NOTHING_SELECTED)
    for _kind, route in _selected_routes(vs=new, selection=selection):
        route["route"] = _reweight(
            route=route.get("route") or [],
            matcher=matcher,
            canary_weight=canary_weight,
            additional_subsets=additional_subsets,
        )
    return _changed(old=vs, new=new)


# ---------------------------------------------------------- DestinationRule


def desired_destination_rule(
    dr: Mapping[str, Any],
    canary_subset: str,
    stable_subset: str,
    canary_hash: str,
    stable_hash: str,
    additional_subsets: Sequence[str],
    rollout_name: str,
) -> dict[str, Any] | None:
    """A copy of ``dr`` with the hash labels on the canary/stable subsets, or None.

    Argo's UpdateHash, including its documented pruning: subsets other than
    canary, stable and ``additional_subsets`` are dropped (Argo's merge patch
    replaces the array). Users lost subsets to this (issue #3125);
    additionalSubsetNames is the documented way to keep one, and it is honoured
    here. Other fields on a subset (trafficPolicy, labels) are kept. An empty
    hash removes the label rather than writing "" (which would select nothing).
    """
    new = cast(DestinationRule, copy.deepcopy(dict(dr)))
    hashes = {canary_subset: canary_hash, stable_subset: stable_hash}
    spec = new.setdefault("spec", {})
    subsets: list[Subset] = []
    for subset in spec.get("subsets") or []:
        name = subset.get("name", "")
        if name in hashes:
            labels = subset.setdefault("labels", {})
            if hashes[name]:
                labels[HASH_LABEL] = hashes[name]
            else:
                labels.pop(HASH_LABEL, None)
        elif name not in additional_subsets:
            continue
        subsets.append(subset)
    spec["subsets"] = subsets
    metadata = new.setdefault("metadata", {})
    metadata.setdefault("annotations", {})[MANAGED_BY_ANNOTATION] = rollout_name
    return _changed(old=dr, new=new)


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any] | None:
    return dict(new) if dict(new) != dict(old) else None
