"""The comparison of one target with its live object: does it differ, and at which field paths.

Pure (no I/O). Called by gitops/controller.py (``_observe`` compares each target's
server-side apply dry run with the live object; ``_run`` carries the rollout-owned
fields into a manifest before applying it) and by cli/app.py (``app diff`` and
``app explain`` run the same comparison, so the CLI and the controller agree).

What it implements, as Argo CD does:

* ``spec.ignoreDifferences`` entries (group, kind, name, namespace) and the
  argocd-cm keys ``resource.customizations.ignoreDifferences.<group>_<kind>``
  (or ``.all``): ``jsonPointers`` (RFC 6901), ``jqPathExpressions`` (the subset
  Argo CD users write, parsed here: ``.a.b``, ``.a[]``, ``.a[0]``, ``."a.b"``,
  ``.a[] | select(.name == "x")``; never evaluated as code) and
  ``managedFieldsManagers`` (a differing field owned in the live object's
  managedFields by one of those managers is not drift);
* ``argocd.argoproj.io/compare-options: IgnoreExtraneous`` (``ignore_extraneous``):
  such a resource may show OutOfSync itself but never makes the app OutOfSync;
* the sync option ``RespectIgnoreDifferences=true`` (``carry_ignored``): a sync
  keeps the live values of the ignored pointers and jq paths.

And what Argo CD leaves to its users (argo-cd #25054, argo-rollouts #3854): the
fields Tidegate's rollout controller writes never count as drift, and a sync
never resets them. Which objects and paths those are is read from the Rollouts
among the targets (``rollout_fields``): a VirtualService or DestinationRule is
rollout-managed when a Rollout's ``spec.strategy.canary.trafficRouting.istio``
names it, and then the ``weight`` of every destination of the routes that
Rollout selects, and the ``rollouts-pod-template-hash`` label of its canary and
stable subsets, belong to the rollout. Deciding from the Rollout's spec rather
than from managedFields is deliberate: ownership in managedFields only moves
once the rollout has changed a value (the first weight it writes would still
be "tidegate's"), the rollout controller writes with the client's default
manager name (nothing marks it as a rollout), and a person's ``kubectl edit``
of a weight would be hidden as if the rollout wrote it, which is exactly the
complaint of argo-rollouts #3854 about ``managedFieldsManagers``. Rollout
status is never compared (``status`` is dropped from both sides); ReplicaSets
and AnalysisRuns are not targets, so they are neither drift nor pruned.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import yaml

Segment = str | int
FieldPath = tuple[Segment, ...]

COMPARE_OPTIONS = "argocd.argoproj.io/compare-options"
IGNORE_EXTRANEOUS = "IgnoreExtraneous"
CM_PREFIX = "resource.customizations.ignoreDifferences."
CM_ALL = "all"
HASH_LABEL = "rollouts-pod-template-hash"
ISTIO_GROUP = "networking.istio.io"
ROLLOUT_GROUP = "argoproj.io"

MSG_JQ_SYNTAX = "jqPathExpression {expr!r}: {problem} at position {pos}"
MSG_POINTER_SYNTAX = "jsonPointer {pointer!r} must start with '/'"
MSG_CM_VALUE = "argocd-cm {key}: not a YAML mapping"

# What the API server changes on every write: never drift.
VOLATILE_METADATA = frozenset({"managedFields", "resourceVersion", "generation"})


class DiffConfigError(ValueError):
    """An ignoreDifferences entry that cannot be understood (the message names it)."""


# --- rules -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IgnoreRule:
    """One ignoreDifferences entry; an empty group/kind/name/namespace matches any."""

    group: str = ""  # "" is the core group, as in Argo CD
    kind: str = ""
    name: str = ""
    namespace: str = ""
    json_pointers: tuple[str, ...] = ()
    jq_paths: tuple[str, ...] = ()
    managers: tuple[str, ...] = ()
    any_group: bool = False  # argocd-cm ".all": every group and kind

    def matches(self, *, group: str, kind: str, name: str, namespace: str) -> bool:
        # As Argo CD: an omitted group is the core group; group and kind may be globs ("*").
        if not self.any_group and not (fnmatchcase(group, self.group)
                                       and (not self.kind or fnmatchcase(kind, self.kind))):
            return False
        return (not self.name or self.name == name) and (not self.namespace or self.namespace == namespace)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or () if v is not None) if isinstance(value, list) else ()


def _rule(entry: Mapping[str, Any], **scope: Any) -> IgnoreRule:
    rule = IgnoreRule(
        json_pointers=_strings(entry.get("jsonPointers")),
        jq_paths=_strings(entry.get("jqPathExpressions")),
        managers=_strings(entry.get("managedFieldsManagers")),
        **scope)
    for pointer in rule.json_pointers:
        parse_pointer(pointer)
    for expr in rule.jq_paths:
        parse_jq(expr)
    return rule


def rules_from_app(entries: Sequence[Mapping[str, Any]] | None) -> list[IgnoreRule]:
    """``spec.ignoreDifferences`` of an Application (DiffConfigError names a bad entry)."""
    return [_rule(e, group=str(e.get("group") or ""), kind=str(e.get("kind") or ""),
                  name=str(e.get("name") or ""), namespace=str(e.get("namespace") or ""))
            for e in entries or () if isinstance(e, Mapping)]


def rules_from_settings(data: Mapping[str, Any] | None) -> list[IgnoreRule]:
    """The argocd-cm ``resource.customizations.ignoreDifferences.<group>_<kind>`` / ``.all`` keys.

    A core kind is written ``Service`` or ``_Service``; a value that is not a YAML
    mapping is skipped (one bad key must not stop every comparison)."""
    rules: list[IgnoreRule] = []
    for key, text in sorted((data or {}).items()):
        if not key.startswith(CM_PREFIX):
            continue
        try:
            entry = yaml.safe_load(str(text))
        except yaml.YAMLError:
            continue
        if not isinstance(entry, Mapping):
            continue
        group_kind = key[len(CM_PREFIX):]
        try:
            if group_kind == CM_ALL:
                rules.append(_rule(entry, any_group=True))
            else:
                group, _, kind = group_kind.rpartition("_")
                rules.append(_rule(entry, group=group, kind=kind))
        except DiffConfigError:
            continue
    return rules


def ignore_extraneous(obj: Mapping[str, Any] | None) -> bool:
    """Whether ``compare-options`` says IgnoreExtraneous (the app's sync ignores this resource)."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    options = str(annotations.get(COMPARE_OPTIONS) or "")
    return IGNORE_EXTRANEOUS in {o.strip() for o in options.split(",")}


# --- paths -------------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_path(path: FieldPath) -> str:
    """``spec.template.spec.containers[0].image``; odd keys as ``metadata.labels["a/b"]``."""
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif _PLAIN_KEY.fullmatch(seg):
            out += f".{seg}" if out else seg
        else:
            out += f"[{json.dumps(seg)}]"
    return out


def parse_pointer(pointer: str) -> list[str]:
    """RFC 6901 tokens (``~1`` is ``/``, ``~0`` is ``~``)."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise DiffConfigError(MSG_POINTER_SYNTAX.format(pointer=pointer))
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def pointer_paths(obj: Any, pointer: str) -> list[FieldPath]:
    """The concrete path a pointer names in ``obj`` (none when it is absent)."""
    path: list[Segment] = []
    node = obj
    for token in parse_pointer(pointer):
        if isinstance(node, Mapping) and token in node:
            path.append(token)
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            path.append(int(token))
            node = node[int(token)]
        else:
            return []
    return [tuple(path)]


# --- the jq subset -----------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<op>==|!=|\||\.|\[|\]|\(|\))
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(expr: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise DiffConfigError(MSG_JQ_SYNTAX.format(expr=expr, problem="unexpected character", pos=pos))
        kind = m.lastgroup or ""
        out.append(_Tok(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


@dataclass(frozen=True)
class _Key:
    name: str


@dataclass(frozen=True)
class _Index:
    index: int


@dataclass(frozen=True)
class _Each:
    pass


@dataclass(frozen=True)
class _Compare:
    path: tuple[Any, ...]  # steps relative to the element (keys and indexes only)
    equal: bool
    value: Any


@dataclass(frozen=True)
class _Select:
    clauses: tuple[tuple[_Compare, ...], ...]  # or of ands


Step = _Key | _Index | _Each | _Select


class _Parser:
    """A recursive-descent parser for the subset; a stage list, never anything that runs."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.toks = _tokens(expr)
        self.i = 0

    def fail(self, problem: str) -> DiffConfigError:
        pos = self.toks[self.i].pos if self.i < len(self.toks) else len(self.expr)
        return DiffConfigError(MSG_JQ_SYNTAX.format(expr=self.expr, problem=problem, pos=pos))

    def peek(self, text: str | None = None, kind: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        tok = self.toks[self.i]
        return (text is None or tok.text == text) and (kind is None or tok.kind == kind)

    def take(self) -> _Tok:
        if self.i >= len(self.toks):
            raise self.fail("unexpected end")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        if not self.peek(text):
            raise self.fail(f"expected {text!r}")
        self.i += 1

    def parse(self) -> tuple[Step, ...]:
        steps: list[Step] = []
        while True:
            steps.extend(self.stage())
            if not self.peek("|"):
                break
            self.i += 1
        if self.i != len(self.toks):
            raise self.fail("unexpected token")
        return tuple(steps)

    def stage(self) -> list[Step]:
        if self.peek("select", kind="word"):
            self.i += 1
            self.expect("(")
            steps: list[Step] = [self.condition()]
            self.expect(")")
            steps.extend(self.path(required=False))
            return steps
        return self.path(required=True)

    def path(self, *, required: bool) -> list[Step]:
        steps: list[Step] = []
        if required and not (self.peek(".") or self.peek("[")):
            raise self.fail("expected a path starting with '.'")
        while self.peek(".") or self.peek("["):
            if self.take().text == ".":
                if self.peek(kind="word"):
                    steps.append(_Key(self.take().text))
                elif self.peek(kind="str"):
                    steps.append(_Key(str(json.loads(self.take().text))))
                elif self.peek("["):
                    continue
                elif steps or self.peek("|") or self.i == len(self.toks) or self.peek(")"):
                    continue  # "." alone: the input itself
                else:
                    raise self.fail("expected a key after '.'")
            else:
                steps.append(self.bracket())
        return steps

    def bracket(self) -> Step:
        if self.peek("]"):
            self.i += 1
            return _Each()
        tok = self.take()
        self.expect("]")
        if tok.kind == "num" and "." not in tok.text:
            return _Index(int(tok.text))
        if tok.kind == "str":
            return _Key(str(json.loads(tok.text)))
        raise DiffConfigError(MSG_JQ_SYNTAX.format(expr=self.expr, problem="bad subscript", pos=tok.pos))

    def condition(self) -> _Select:
        clauses: list[tuple[_Compare, ...]] = [self.conjunction()]
        while self.peek("or", kind="word"):
            self.i += 1
            clauses.append(self.conjunction())
        return _Select(tuple(clauses))

    def conjunction(self) -> tuple[_Compare, ...]:
        parts = [self.comparison()]
        while self.peek("and", kind="word"):
            self.i += 1
            parts.append(self.comparison())
        return tuple(parts)

    def comparison(self) -> _Compare:
        steps = self.path(required=True)
        if any(isinstance(s, (_Each, _Select)) for s in steps):
            raise self.fail("select compares a plain path")
        op = self.take()
        if op.text not in ("==", "!="):
            raise DiffConfigError(MSG_JQ_SYNTAX.format(expr=self.expr, problem="expected == or !=", pos=op.pos))
        tok = self.take()
        value: Any
        if tok.kind == "str":
            value = json.loads(tok.text)
        elif tok.kind == "num":
            value = json.loads(tok.text)
        elif tok.kind == "word" and tok.text in ("true", "false", "null"):
            value = {"true": True, "false": False, "null": None}[tok.text]
        else:
            raise DiffConfigError(MSG_JQ_SYNTAX.format(expr=self.expr, problem="expected a literal", pos=tok.pos))
        return _Compare(path=tuple(steps), equal=op.text == "==", value=value)


def parse_jq(expr: str) -> tuple[Step, ...]:
    """The steps of a jq path expression of the supported subset (DiffConfigError otherwise)."""
    return _Parser(expr).parse()


def _lookup(node: Any, steps: Sequence[Any]) -> tuple[bool, Any]:
    for step in steps:
        if isinstance(step, _Key) and isinstance(node, Mapping) and step.name in node:
            node = node[step.name]
        elif isinstance(step, _Index) and isinstance(node, list) and -len(node) <= step.index < len(node):
            node = node[step.index]
        else:
            return False, None
    return True, node


def _equal(a: Any, b: Any) -> bool:
    """jq's equality: numbers by value, everything else by type and value (true is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _holds(node: Any, select: _Select) -> bool:
    def one(c: _Compare) -> bool:
        found, value = _lookup(node, c.path)
        same = _equal(value if found else None, c.value)
        return same if c.equal else not same

    return any(all(one(c) for c in clause) for clause in select.clauses)


def jq_paths(obj: Any, expr: str) -> list[FieldPath]:
    """The concrete paths ``expr`` selects in ``obj`` (what ``del(expr)`` would delete)."""
    current: list[tuple[FieldPath, Any]] = [((), obj)]
    for step in parse_jq(expr):
        following: list[tuple[FieldPath, Any]] = []
        for path, node in current:
            if isinstance(step, _Key):
                if isinstance(node, Mapping) and step.name in node:
                    following.append(((*path, step.name), node[step.name]))
            elif isinstance(step, _Index):
                if isinstance(node, list) and -len(node) <= step.index < len(node):
                    index = step.index % len(node)
                    following.append(((*path, index), node[index]))
            elif isinstance(step, _Each):
                if isinstance(node, list):
                    following.extend(((*path, i), v) for i, v in enumerate(node))
                elif isinstance(node, Mapping):
                    following.extend(((*path, k), v) for k, v in node.items())
            elif _holds(node, step):
                following.append((path, node))
        current = following
    return [path for path, _ in current if path]


# --- deleting and comparing ----------------------------------------------------------------------

def delete_paths(obj: Any, paths: Sequence[FieldPath]) -> None:
    """Delete each path from ``obj`` in place; list items from the highest index down."""
    for path in sorted(set(paths), key=lambda p: [(0, s) if isinstance(s, int) else (1, s) for s in p],
                       reverse=True):
        found, parent = _lookup(obj, [_Key(s) if isinstance(s, str) else _Index(s) for s in path[:-1]])
        last = path[-1]
        if not found:
            continue
        if isinstance(parent, dict) and isinstance(last, str):
            parent.pop(last, None)
        elif isinstance(parent, list) and isinstance(last, int) and last < len(parent):
            del parent[last]


def normalized(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without status and what the server changes on every write."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k != "status"}
    out["metadata"] = {k: copy.deepcopy(v) for k, v in (obj.get("metadata") or {}).items()
                       if k not in VOLATILE_METADATA}
    return out


def diff_paths(a: Any, b: Any, prefix: FieldPath = ()) -> Iterator[FieldPath]:
    """The leaf paths where ``a`` and ``b`` differ (a whole subtree present on one side only)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                yield (*prefix, key)
            else:
                yield from diff_paths(a[key], b[key], (*prefix, key))
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            if i >= len(a) or i >= len(b):
                yield (*prefix, i)
            else:
                yield from diff_paths(a[i], b[i], (*prefix, i))
    elif not _equal(a, b):
        yield prefix


# --- field ownership (managedFields, fieldsV1) ----------------------------------------------------

def _element_key(key: str, element: Any) -> bool:
    """Whether a fieldsV1 list-item key (``k:{...}`` or ``v:...``) names ``element``."""
    try:
        value = json.loads(key[2:])
    except ValueError:
        return False
    if key.startswith("k:"):
        return isinstance(value, Mapping) and isinstance(element, Mapping) and all(
            element.get(k) == v for k, v in value.items())
    return bool(key.startswith("v:") and value == element)


def _owns(fields: Mapping[str, Any], node: Any, path: FieldPath) -> bool:
    if not path:
        return True
    seg, rest = path[0], path[1:]
    if isinstance(seg, str):
        sub = fields.get(f"f:{seg}")
        child = node.get(seg) if isinstance(node, Mapping) else None
    else:
        element = node[seg] if isinstance(node, list) and seg < len(node) else None
        sub = next((v for k, v in fields.items() if k[:2] in ("k:", "v:") and _element_key(k, element)),
                   fields.get(f"i:{seg}"))
        child = element
    if sub is None:
        return False
    if not isinstance(sub, Mapping) or not sub or not rest:
        return True  # a leaf, or an atomic value (an atomic list or map is owned whole)
    return _owns(sub, child, rest)


def field_managers(live: Mapping[str, Any] | None, path: FieldPath) -> list[str]:
    """The managers owning ``path`` in ``live``'s managedFields (an atomic parent owns its children)."""
    owners: list[str] = []
    for entry in ((live or {}).get("metadata") or {}).get("managedFields") or []:
        fields = entry.get("fieldsV1") if isinstance(entry, Mapping) else None
        manager = str(entry.get("manager") or "") if isinstance(entry, Mapping) else ""
        if isinstance(fields, Mapping) and _owns(fields, live, path) and manager not in owners:
            owners.append(manager)
    return owners


def field_manager(live: Mapping[str, Any] | None, path: FieldPath) -> str | None:
    """The manager owning ``path`` in live (the most recent writer when several share it)."""
    owners = field_managers(live, path)
    return owners[-1] if owners else None


# --- the rollout's fields ------------------------------------------------------------------------

@dataclass(frozen=True)
class RouteRefs:
    """The routes of one VirtualService a Rollout shifts weights on."""

    http: tuple[str, ...] = ()  # route names; empty: the only http route
    tls: tuple[Mapping[str, Any], ...] = ()
    tcp: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class RolloutFields:
    """The VirtualServices and DestinationRules Rollouts manage, keyed (namespace, name)."""

    virtual_services: Mapping[tuple[str, str], tuple[RouteRefs, ...]] = field(default_factory=dict)
    destination_rules: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)  # subsets
    services: frozenset[tuple[str, str]] = frozenset()  # canaryService/stableService: their selector hash

    def paths(self, live: Mapping[str, Any] | None) -> list[FieldPath]:
        """The rollout-owned paths present in ``live`` (the weights, the subset hash labels, the
        hash label in the selector of its canary and stable Services)."""
        if live is not None and live.get("kind") == "Service" and live.get("apiVersion") == "v1":
            key = (str((live.get("metadata") or {}).get("namespace") or ""),
                   str((live.get("metadata") or {}).get("name") or ""))
            if key in self.services and HASH_LABEL in ((live.get("spec") or {}).get("selector") or {}):
                return [("spec", "selector", HASH_LABEL)]
            return []
        if live is None or not str(live.get("apiVersion") or "").startswith(ISTIO_GROUP + "/"):
            return []
        key = (str((live.get("metadata") or {}).get("namespace") or ""),
               str((live.get("metadata") or {}).get("name") or ""))
        spec = live.get("spec") or {}
        out: list[FieldPath] = []
        if live.get("kind") == "VirtualService":
            for refs in self.virtual_services.get(key, ()):
                for kind, index in _selected_routes(spec, refs):
                    for j, dest in enumerate(spec[kind][index].get("route") or []):
                        if isinstance(dest, Mapping) and "weight" in dest:
                            out.append(("spec", kind, index, "route", j, "weight"))
        elif live.get("kind") == "DestinationRule":
            names = self.destination_rules.get(key, ())
            for i, subset in enumerate(spec.get("subsets") or []):
                if isinstance(subset, Mapping) and subset.get("name") in names and HASH_LABEL in (
                        subset.get("labels") or {}):
                    out.append(("spec", "subsets", i, "labels", HASH_LABEL))
        return out


def _selected_routes(spec: Mapping[str, Any], refs: RouteRefs) -> list[tuple[str, int]]:
    """(list, index) of the routes ``refs`` select in a VirtualService spec, as the rollout selects."""
    out: list[tuple[str, int]] = []
    http = [r for r in spec.get("http") or [] if isinstance(r, Mapping)]
    if refs.http:
        out += [("http", i) for i, r in enumerate(http) if r.get("name") in refs.http]
    elif len(http) == 1:
        out.append(("http", 0))
    for kind, wanted in (("tls", refs.tls), ("tcp", refs.tcp)):
        routes = [r for r in spec.get(kind) or [] if isinstance(r, Mapping)]
        for ref in wanted:
            port, hosts = ref.get("port"), set(ref.get("sniHosts") or ())
            for i, route in enumerate(routes):
                matches = route.get("match") or []
                ports = {m.get("port") for m in matches}
                sni = {h for m in matches for h in m.get("sniHosts") or ()}
                if ((port is None and not hosts and len(routes) == 1)
                        or ((port is None or ports == {port}) and (not hosts or sni == hosts)
                            and (port is not None or hosts))) and (kind, i) not in out:
                    out.append((kind, i))
    return out


def rollout_fields(targets: Sequence[Mapping[str, Any]]) -> RolloutFields:
    """What the Rollouts among ``targets`` manage (``canary.trafficRouting.istio``)."""
    services: dict[tuple[str, str], list[RouteRefs]] = {}
    rules: dict[tuple[str, str], list[str]] = {}
    svcs: set[tuple[str, str]] = set()
    for doc in targets:
        if doc.get("kind") != "Rollout" or not str(doc.get("apiVersion") or "").startswith(ROLLOUT_GROUP + "/"):
            continue
        namespace = str((doc.get("metadata") or {}).get("namespace") or "")
        canary = ((doc.get("spec") or {}).get("strategy") or {}).get("canary") or {}
        istio = (canary.get("trafficRouting") or {}).get("istio") or {}
        svcs.update((namespace, str(canary[k])) for k in ("canaryService", "stableService") if canary.get(k))
        configs = [istio["virtualService"]] if istio.get("virtualService") else list(
            istio.get("virtualServices") or [])
        for config in configs:
            if not isinstance(config, Mapping):
                continue
            # "vs", "vs.ns" or "vs.ns.svc.cluster.local", as the rollout controller reads it
            parts = str(config.get("name") or "").split(".")
            key = (parts[1] if len(parts) > 1 and parts[1] else namespace, parts[0])
            services.setdefault(key, []).append(RouteRefs(
                http=_strings(config.get("routes")),
                tls=tuple(r for r in config.get("tlsRoutes") or [] if isinstance(r, Mapping)),
                tcp=tuple(r for r in config.get("tcpRoutes") or [] if isinstance(r, Mapping))))
        rule = istio.get("destinationRule")
        if isinstance(rule, Mapping) and rule.get("name"):
            rules.setdefault((namespace, str(rule["name"])), []).extend(
                str(rule.get(k)) for k in ("canarySubsetName", "stableSubsetName") if rule.get(k))
    return RolloutFields(virtual_services={k: tuple(v) for k, v in services.items()},
                         destination_rules={k: tuple(v) for k, v in rules.items()}, services=frozenset(svcs))


def carry_rollout_fields(manifest: Mapping[str, Any], live: Mapping[str, Any] | None,
                         owned: RolloutFields) -> dict[str, Any]:
    """``manifest`` with the live values of the rollout-owned fields, so that a forced server-side
    apply (and its dry run) keeps the canary's weights and hash labels instead of resetting them.

    A weight is carried to the manifest's destination with the same host and subset in the route
    of the same name (or place, for an unnamed one); a hash label to the subset of the same name."""
    out = copy.deepcopy(dict(manifest))
    if live is None or not owned.paths(live):
        return out
    spec_live = live.get("spec") or {}
    spec_out = out.get("spec")
    if not isinstance(spec_out, dict):
        return out
    key = (str((live.get("metadata") or {}).get("namespace") or ""),
           str((live.get("metadata") or {}).get("name") or ""))
    if live.get("kind") == "Service":
        # The rollout controller pins its canary/stable Services to a ReplicaSet by this label.
        selector = spec_out.setdefault("selector", {})
        if isinstance(selector, dict):
            selector[HASH_LABEL] = (spec_live.get("selector") or {})[HASH_LABEL]
    if live.get("kind") == "VirtualService":
        for refs in owned.virtual_services.get(key, ()):
            for kind, index in _selected_routes(spec_out, refs):
                target_route = spec_out[kind][index]
                live_route = _counterpart(spec_live.get(kind) or [], target_route, index)
                if live_route is None:
                    continue
                for dest in target_route.get("route") or []:
                    match = next((d for d in live_route.get("route") or []
                                  if isinstance(d, Mapping) and isinstance(dest, dict)
                                  and d.get("destination") == dest.get("destination")), None)
                    if match is not None and "weight" in match:
                        dest["weight"] = match["weight"]
    elif live.get("kind") == "DestinationRule":
        names = owned.destination_rules.get(key, ())
        live_subsets = {s.get("name"): s for s in spec_live.get("subsets") or [] if isinstance(s, Mapping)}
        for subset in spec_out.get("subsets") or []:
            if not isinstance(subset, dict) or subset.get("name") not in names:
                continue
            value = (live_subsets.get(subset.get("name")) or {}).get("labels", {}).get(HASH_LABEL)
            if value:
                subset.setdefault("labels", {})[HASH_LABEL] = value
    return out


def _counterpart(routes: Sequence[Any], route: Mapping[str, Any], index: int) -> Mapping[str, Any] | None:
    name = route.get("name")
    if name:
        return next((r for r in routes if isinstance(r, Mapping) and r.get("name") == name), None)
    return routes[index] if index < len(routes) and isinstance(routes[index], Mapping) else None


# --- RespectIgnoreDifferences ---------------------------------------------------------------------

RESPECT_IGNORE_DIFFERENCES = "RespectIgnoreDifferences=true"


def carry_ignored(manifest: Mapping[str, Any], live: Mapping[str, Any] | None,
                  rules: Sequence[IgnoreRule]) -> dict[str, Any]:
    """``manifest`` with the live values at the matching rules' pointers and jq paths (Argo CD's
    ``RespectIgnoreDifferences=true``: a sync leaves ignored fields as they are in the cluster).

    A value is carried where its parent exists in the manifest (or is a map the manifest lacks);
    a path into a list item the manifest does not have is left alone. managedFieldsManagers are
    not carried (Argo CD does not either)."""
    out = copy.deepcopy(dict(manifest))
    if live is None:
        return out
    matching = [r for r in rules if r.matches(**_scope(live))]
    paths = [p for r in matching for ptr in r.json_pointers for p in pointer_paths(live, ptr)]
    paths += [p for r in matching for expr in r.jq_paths for p in jq_paths(live, expr)]
    for path in paths:
        _, value = _lookup(live, [_Key(s) if isinstance(s, str) else _Index(s) for s in path])
        node: Any = out
        for i, seg in enumerate(path[:-1]):
            if isinstance(seg, str) and isinstance(node, dict):
                if seg not in node and all(isinstance(s, str) for s in path[i + 1:]):
                    node[seg] = {}  # only maps below: creating them cannot fail half-way
                node = node.get(seg)
            elif isinstance(seg, int) and isinstance(node, list) and seg < len(node):
                node = node[seg]
            else:
                node = None
        last = path[-1]
        if isinstance(node, dict) and isinstance(last, str):
            node[last] = copy.deepcopy(value)
        elif isinstance(node, list) and isinstance(last, int) and last < len(node):
            node[last] = copy.deepcopy(value)
    return out


# --- the comparison ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """Whether a target differs from live, and where (paths in the live object's terms)."""

    differs: bool
    paths: tuple[FieldPath, ...] = ()
    # both sides as compared (normalized, ignored paths removed): what a diff shows a person
    target: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    live: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def formatted(self) -> list[str]:
        return [format_path(p) for p in self.paths]


def _scope(obj: Mapping[str, Any]) -> dict[str, str]:
    api_version = str(obj.get("apiVersion") or "")
    meta = obj.get("metadata") or {}
    return {"group": api_version.rpartition("/")[0], "kind": str(obj.get("kind") or ""),
            "name": str(meta.get("name") or ""), "namespace": str(meta.get("namespace") or "")}


def compare(target: Mapping[str, Any], live: Mapping[str, Any], *, rules: Sequence[IgnoreRule] = (),
            owned: RolloutFields | None = None) -> Comparison:
    """Compare ``target`` (the server-side apply dry run) with ``live``.

    Both are normalized (no status, no volatile metadata); the matching rules'
    pointers and jq paths, and the rollout-owned paths, are deleted from both;
    what still differs is drift unless a matching rule's managers own it in live."""
    scope = _scope(live)
    matching = [r for r in rules if r.matches(**scope)]
    left, right = normalized(target), normalized(live)
    for side in (left, right):
        doomed: list[FieldPath] = []
        for rule in matching:
            for pointer in rule.json_pointers:
                doomed += pointer_paths(side, pointer)
            for expr in rule.jq_paths:
                doomed += jq_paths(side, expr)
        if owned is not None:
            doomed += owned.paths(side)
        delete_paths(side, doomed)
    managers = {m for r in matching for m in r.managers}
    paths = [p for p in diff_paths(right, left)
             if not (managers and managers & set(field_managers(live, p)))]
    return Comparison(differs=bool(paths), paths=tuple(paths), target=left, live=right)
