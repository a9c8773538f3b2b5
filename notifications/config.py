"""The notification ConfigMaps, parsed: triggers, templates, subscriptions, context, services.

Reads the ``data`` of ``argocd-notifications-cm`` or ``argo-rollouts-notification-configmap``
in Argo's format (reference §B; notifications-engine's pkg/api/config.go):

* ``trigger.<name>``: a YAML list of conditions ``{description, when, send, oncePer}``;
* ``template.<name>``: ``message``, ``title`` and per-service parts (``slack.attachments``,
  ``webhook.<name>.body``, ``pagerdutyv2.summary``...), nested YAML whose string leaves are
  Go templates, compiled here once;
* ``defaultTriggers`` and ``defaultTriggers.<service>``: the triggers a ``subscribe.<service>``
  annotation means;
* ``subscriptions``: global subscriptions ``{recipients: [service:recipient], triggers,
  selector}``;
* ``context``: a map handed to templates as ``.context``;
* ``service.<type>[.<name>]``: kept raw (secrets not substituted) for
  ``notifications.services.build_services``.

Argo refuses the whole ConfigMap at the first bad key; here a bad entry gives an error naming
the ConfigMap, the key and the field, and every good entry still works. A condition whose
``when`` does not compile stays in its trigger (so the indexes of the others, part of the
once-only keys, do not move) and is skipped by the engine. The catalog
(notifications/catalog/) is parsed by the same code and underlies every ConfigMap: a key of
the same name in the ConfigMap wins.

Called by the notifications controller on every ConfigMap change, by the CLI, and by
``notifications.catalog``. Pure: no Kubernetes calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from common.expr import ExpressionError, compile_when
from notifications.gotemplate import CompiledTemplate, TemplateError, compile_template
from notifications.state import compile_once_per

ARGOCD_CONFIGMAP = "argocd-notifications-cm"
ROLLOUTS_CONFIGMAP = "argo-rollouts-notification-configmap"
ARGOCD_SECRET = "argocd-notifications-secret"
ROLLOUTS_SECRET = "argo-rollouts-notification-secret"

TRIGGER_PREFIX = "trigger."
TEMPLATE_PREFIX = "template."
SERVICE_PREFIX = "service."
DEFAULT_TRIGGERS = "defaultTriggers"
DEFAULT_TRIGGERS_PREFIX = "defaultTriggers."
SUBSCRIPTIONS = "subscriptions"
CONTEXT = "context"
MESSAGE, TITLE = "message", "title"
CONDITION_FIELDS = frozenset({"description", "when", "send", "oncePer"})

MSG_ENTRY = "{cm}: {key}: {problem}"
MSG_FIELD = "{cm}: {key}: {field}: {problem}"
MSG_BAD_YAML = "not valid YAML ({error})"
MSG_NOT_LIST = "must be a YAML list of conditions, not {type}"
MSG_CONDITION_NOT_MAP = "must be a mapping with when/send/oncePer/description, not {type}"
MSG_UNKNOWN_FIELD = "unknown field (expected one of description, when, send, oncePer)"
MSG_NOT_TEXT = "must be a string, not {type}"
MSG_NO_SEND = "names no template to send"
MSG_SEND_NOT_LIST = "must be a list of template names"
MSG_WHEN = "does not compile: {error}"
MSG_TEMPLATE_NOT_MAP = "must be a YAML mapping (message, title, per-service parts), not {type}"
MSG_TEMPLATE = "does not compile: {error}"
MSG_NOT_STRING_LIST = "must be a YAML list of names, not {type}"
MSG_SUBSCRIPTION = "[{index}]: {problem}"
MSG_RECIPIENT = "recipient {value!r} must be 'service:recipient' or 'service'"
MSG_SELECTOR = "selector {value!r}: {problem}"
MSG_CONTEXT = "must be a YAML mapping of names to strings, not {type}"
MSG_SERVICE_KEY = "expected 'service.<type>' or 'service.<type>.<name>'"
MSG_UNKNOWN_TEMPLATE = "condition [{index}] sends template {name!r}, which is not configured"


@dataclass(frozen=True)
class Condition:
    """One entry of a trigger: when ``when`` turns true, ``send`` these templates."""

    when: str
    send: tuple[str, ...]
    once_per: str = ""
    description: str = ""
    error: str | None = None
    """Why this condition cannot run (its ``when`` does not compile); the engine skips it."""


@dataclass(frozen=True)
class Trigger:
    name: str
    conditions: tuple[Condition, ...]
    source: str
    """The ConfigMap (or ``catalog``) the trigger came from."""


@dataclass(frozen=True)
class TemplatePart:
    """One leaf of a template: its path (``("slack", "attachments")``) and its template,
    or a constant for a non-string leaf (``notifyBroadcast: false``)."""

    path: tuple[str, ...]
    template: CompiledTemplate | None
    constant: Any = None


@dataclass(frozen=True)
class NotificationTemplate:
    name: str
    parts: tuple[TemplatePart, ...]
    source: str

    def field_names(self) -> Iterator[str]:
        """The dotted names of the template's fields, in order (``slack.attachments``)."""
        for part in self.parts:
            yield ".".join(part.path)


@dataclass(frozen=True)
class ServiceConfig:
    """``service.<type>[.<name>]`` as written (``$secret`` references not substituted)."""

    key: str
    type: str
    name: str
    raw: str


@dataclass(frozen=True)
class GlobalSubscription:
    """One entry of the ConfigMap's ``subscriptions``."""

    destinations: tuple[tuple[str, str], ...]
    """(service, recipient) pairs from ``recipients: [service:recipient]``."""
    triggers: tuple[str, ...]
    selector: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    """Parsed label selector requirements (key, operator, values); empty matches all."""


@dataclass(frozen=True)
class NotificationConfig:
    triggers: Mapping[str, Trigger] = field(default_factory=dict)
    templates: Mapping[str, NotificationTemplate] = field(default_factory=dict)
    default_triggers: tuple[str, ...] = ()
    service_default_triggers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    subscriptions: tuple[GlobalSubscription, ...] = ()
    context: Mapping[str, Any] = field(default_factory=dict)
    services: Mapping[str, ServiceConfig] = field(default_factory=dict)
    """By service name (the name destinations use), for build_services."""
    errors: tuple[str, ...] = ()
    unusable_triggers: frozenset[str] = frozenset()
    """Triggers named in the ConfigMap that could not be parsed: the engine keeps their
    once-only records, so fixing the entry does not send everything again."""

    def service_data(self) -> dict[str, str]:
        """The ``service.*`` keys as written: what ``notifications.services.build_services``
        reads (it substitutes the secrets)."""
        return {service.key: service.raw for service in self.services.values()}


def parse_config(
    data: Mapping[str, str] | None,
    *,
    name: str = ARGOCD_CONFIGMAP,
    base: NotificationConfig | None = None,
) -> NotificationConfig:
    """Parse a ConfigMap's data; ``base`` (usually the catalog) supplies triggers and templates
    the ConfigMap does not define. Never raises: bad entries become ``errors``."""
    errors: list[str] = []
    triggers: dict[str, Trigger] = dict(base.triggers) if base else {}
    templates: dict[str, NotificationTemplate] = dict(base.templates) if base else {}
    unusable: set[str] = set(base.unusable_triggers) if base else set()
    services: dict[str, ServiceConfig] = {}
    service_defaults: dict[str, tuple[str, ...]] = {}
    default_triggers: tuple[str, ...] = ()
    subscriptions: tuple[GlobalSubscription, ...] = ()
    context: Mapping[str, Any] = {}

    for key in sorted((data or {}).keys()):
        value = (data or {})[key]
        if not isinstance(value, str):
            errors.append(MSG_ENTRY.format(cm=name, key=key, problem=MSG_NOT_TEXT.format(type=type(value).__name__)))
            continue
        if key.startswith(TRIGGER_PREFIX):
            trigger_name = key[len(TRIGGER_PREFIX):]
            trigger = _parse_trigger(trigger_name, value, cm=name, key=key, errors=errors)
            if trigger is None:
                unusable.add(trigger_name)
                triggers.pop(trigger_name, None)
            else:
                triggers[trigger_name] = trigger
        elif key.startswith(TEMPLATE_PREFIX):
            template_name = key[len(TEMPLATE_PREFIX):]
            template = _parse_template(template_name, value, cm=name, key=key, errors=errors)
            if template is None:
                templates.pop(template_name, None)
            else:
                templates[template_name] = template
        elif key.startswith(SERVICE_PREFIX):
            service = _parse_service_key(key, value)
            if service is None:
                errors.append(MSG_ENTRY.format(cm=name, key=key, problem=MSG_SERVICE_KEY))
            else:
                services[service.name] = service
        elif key == DEFAULT_TRIGGERS:
            default_triggers = _parse_names(value, cm=name, key=key, errors=errors)
        elif key.startswith(DEFAULT_TRIGGERS_PREFIX):
            service_defaults[key[len(DEFAULT_TRIGGERS_PREFIX):]] = _parse_names(
                value, cm=name, key=key, errors=errors)
        elif key == SUBSCRIPTIONS:
            subscriptions = _parse_subscriptions(value, cm=name, key=key, errors=errors)
        elif key == CONTEXT:
            context = _parse_context(value, cm=name, key=key, errors=errors)
        # Other keys (Argo's own settings) are not ours to judge.

    for trigger in triggers.values():
        if trigger.source != name:
            continue
        for index, condition in enumerate(trigger.conditions):
            for template_name in condition.send:
                if template_name not in templates:
                    errors.append(MSG_ENTRY.format(
                        cm=name, key=TRIGGER_PREFIX + trigger.name,
                        problem=MSG_UNKNOWN_TEMPLATE.format(index=index, name=template_name)))
    return NotificationConfig(
        triggers=triggers, templates=templates, default_triggers=default_triggers,
        service_default_triggers=service_defaults, subscriptions=subscriptions, context=context,
        services=services, errors=tuple([*(base.errors if base else ()), *errors]),
        unusable_triggers=frozenset(unusable - set(triggers)),
    )


def _load_yaml(value: str, *, cm: str, key: str, errors: list[str]) -> tuple[bool, Any]:
    try:
        return True, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        errors.append(MSG_ENTRY.format(cm=cm, key=key, problem=MSG_BAD_YAML.format(error=_one_line(exc))))
        return False, None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _parse_trigger(name: str, value: str, *, cm: str, key: str, errors: list[str]) -> Trigger | None:
    ok, loaded = _load_yaml(value, cm=cm, key=key, errors=errors)
    if not ok:
        return None
    if isinstance(loaded, Mapping):
        # Users write a single condition without the list dash (it is in Argo's own docs);
        # Argo rejects it, we take it as the one condition it obviously is.
        loaded = [loaded]
    if not isinstance(loaded, list):
        errors.append(MSG_ENTRY.format(cm=cm, key=key, problem=MSG_NOT_LIST.format(type=_type(loaded))))
        return None
    conditions = [
        _parse_condition(index, item, cm=cm, key=key, errors=errors) for index, item in enumerate(loaded)
    ]
    return Trigger(name=name, conditions=tuple(conditions), source=cm)


def _parse_condition(index: int, item: Any, *, cm: str, key: str, errors: list[str]) -> Condition:
    where = f"[{index}]"
    if not isinstance(item, Mapping):
        problem = MSG_CONDITION_NOT_MAP.format(type=_type(item))
        errors.append(MSG_FIELD.format(cm=cm, key=key, field=where, problem=problem))
        return Condition(when="false", send=(), error=problem)
    problems: list[tuple[str, str]] = []
    for unknown in sorted(set(map(str, item)) - CONDITION_FIELDS):
        problems.append((unknown, MSG_UNKNOWN_FIELD))
    texts: dict[str, str] = {}
    for field_name in ("when", "oncePer", "description"):
        raw = item.get(field_name)
        if raw is None:
            texts[field_name] = ""
        elif isinstance(raw, bool):
            # YAML reads `when: true` as a bool; Argo's catalog quotes it, users do not.
            texts[field_name] = "true" if raw else "false"
        elif isinstance(raw, str | int | float):
            texts[field_name] = str(raw)
        else:
            problems.append((field_name, MSG_NOT_TEXT.format(type=_type(raw))))
            texts[field_name] = ""
    send_raw = item.get("send")
    send: tuple[str, ...] = ()
    if isinstance(send_raw, str):
        send = (send_raw,)
    elif isinstance(send_raw, list) and all(isinstance(s, str) for s in send_raw):
        send = tuple(send_raw)
    elif send_raw is not None:
        problems.append(("send", MSG_SEND_NOT_LIST))
    error: str | None = None
    if not send:
        problems.append(("send", MSG_NO_SEND))
        error = MSG_NO_SEND
    # notifications-engine compiles an empty `when` as "false" but keys the state by the text
    # as written (""); the engine does the same, so the keys match Argo's.
    try:
        compile_when(texts["when"] or "false")
    except ExpressionError as exc:
        error = MSG_WHEN.format(error=exc)
        problems.append(("when", error))
    if texts["oncePer"]:
        try:
            compile_once_per(texts["oncePer"])
        except ValueError as exc:
            error = MSG_WHEN.format(error=exc)
            problems.append(("oncePer", error))
    for field_name, problem in problems:
        errors.append(MSG_FIELD.format(cm=cm, key=key, field=f"{where}.{field_name}", problem=problem))
    return Condition(when=texts["when"], send=send, once_per=texts["oncePer"],
                     description=texts["description"], error=error)


def _parse_template(name: str, value: str, *, cm: str, key: str, errors: list[str]) -> NotificationTemplate | None:
    ok, loaded = _load_yaml(value, cm=cm, key=key, errors=errors)
    if not ok:
        return None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, Mapping):
        errors.append(MSG_ENTRY.format(cm=cm, key=key, problem=MSG_TEMPLATE_NOT_MAP.format(type=_type(loaded))))
        return None
    parts: list[TemplatePart] = []
    failed = False
    for path, leaf in _leaves(loaded, ()):
        dotted = ".".join(path)
        if isinstance(leaf, str):
            try:
                compiled = compile_template(f"{name}.{dotted}", leaf)
            except TemplateError as exc:
                errors.append(MSG_FIELD.format(cm=cm, key=key, field=dotted,
                                               problem=MSG_TEMPLATE.format(error=exc)))
                failed = True
                continue
            parts.append(TemplatePart(path=path, template=compiled))
        else:
            parts.append(TemplatePart(path=path, template=None, constant=leaf))
    if failed:
        # A template missing one of its fields would send something its author never wrote.
        return None
    return NotificationTemplate(name=name, parts=tuple(parts), source=cm)


def _leaves(node: Mapping[Any, Any], path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    for child_key, child in node.items():
        child_path = (*path, str(child_key))
        if isinstance(child, Mapping) and child:
            yield from _leaves(child, child_path)
        else:
            yield child_path, child


def _parse_service_key(key: str, value: str) -> ServiceConfig | None:
    parts = key.split(".")
    if len(parts) == 2 and parts[1]:
        return ServiceConfig(key=key, type=parts[1], name=parts[1], raw=value)
    if len(parts) == 3 and parts[1] and parts[2]:
        return ServiceConfig(key=key, type=parts[1], name=parts[2], raw=value)
    return None


def _parse_names(value: str, *, cm: str, key: str, errors: list[str]) -> tuple[str, ...]:
    ok, loaded = _load_yaml(value, cm=cm, key=key, errors=errors)
    if not ok or loaded is None:
        return ()
    if isinstance(loaded, str):
        loaded = [loaded]
    if not isinstance(loaded, list) or not all(isinstance(item, str) for item in loaded):
        errors.append(MSG_ENTRY.format(cm=cm, key=key, problem=MSG_NOT_STRING_LIST.format(type=_type(loaded))))
        return ()
    return tuple(loaded)


def _parse_subscriptions(value: str, *, cm: str, key: str, errors: list[str]) -> tuple[GlobalSubscription, ...]:
    ok, loaded = _load_yaml(value, cm=cm, key=key, errors=errors)
    if not ok or loaded is None:
        return ()
    if not isinstance(loaded, list):
        errors.append(MSG_ENTRY.format(cm=cm, key=key, problem=MSG_NOT_STRING_LIST.format(type=_type(loaded))))
        return ()
    out: list[GlobalSubscription] = []
    for index, item in enumerate(loaded):
        problems: list[str] = []
        subscription = _parse_subscription(item, problems)
        for problem in problems:
            errors.append(MSG_ENTRY.format(cm=cm, key=key, problem=MSG_SUBSCRIPTION.format(index=index, problem=problem)))
        if subscription is not None:
            out.append(subscription)
    return tuple(out)


def _parse_subscription(item: Any, problems: list[str]) -> GlobalSubscription | None:
    if not isinstance(item, Mapping):
        problems.append(MSG_TEMPLATE_NOT_MAP.format(type=_type(item)))
        return None
    destinations: list[tuple[str, str]] = []
    for recipient in _str_list(item.get("recipients"), "recipients", problems):
        service, _, who = recipient.partition(":")
        if not service:
            problems.append(MSG_RECIPIENT.format(value=recipient))
            continue
        destinations.append((service.strip(), who.strip()))
    triggers = _str_list(item.get("triggers"), "triggers", problems)
    selector_text = item.get("selector") or ""
    if not isinstance(selector_text, str):
        problems.append(MSG_SELECTOR.format(value=selector_text, problem=MSG_NOT_TEXT.format(type=_type(selector_text))))
        return None
    try:
        selector = parse_selector(selector_text)
    except ValueError as exc:
        problems.append(MSG_SELECTOR.format(value=selector_text, problem=exc))
        return None
    return GlobalSubscription(destinations=tuple(destinations), triggers=tuple(triggers), selector=selector)


def _str_list(raw: Any, name: str, problems: list[str]) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return list(raw)
    problems.append(f"{name}: {MSG_NOT_STRING_LIST.format(type=_type(raw))}")
    return []


def _parse_context(value: str, *, cm: str, key: str, errors: list[str]) -> Mapping[str, Any]:
    ok, loaded = _load_yaml(value, cm=cm, key=key, errors=errors)
    if not ok or loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        errors.append(MSG_ENTRY.format(cm=cm, key=key, problem=MSG_CONTEXT.format(type=_type(loaded))))
        return {}
    return {str(k): v for k, v in loaded.items()}


# --- label selectors (the `selector` of a global subscription, Kubernetes' syntax) ---------

MSG_SELECTOR_TERM = "cannot parse {term!r} (expected key, !key, key=value, key!=value, key in (a,b), key notin (a,b))"
_SET_OPERATORS = (" notin ", " in ")


def parse_selector(text: str) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """``a=b,c!=d,e in (x,y),!f`` -> requirements; raises ValueError naming the bad term."""
    requirements: list[tuple[str, str, tuple[str, ...]]] = []
    for term in _split_terms(text):
        requirements.append(_parse_term(term))
    return tuple(requirements)


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current.strip())
    return [term for term in terms if term]


def _parse_term(term: str) -> tuple[str, str, tuple[str, ...]]:
    for operator in _SET_OPERATORS:
        head, found, tail = term.partition(operator)
        if found:
            tail = tail.strip()
            if not (tail.startswith("(") and tail.endswith(")")) or not head.strip():
                raise ValueError(MSG_SELECTOR_TERM.format(term=term))
            values = tuple(v.strip() for v in tail[1:-1].split(",") if v.strip())
            return head.strip(), operator.strip(), values
    for operator in ("!=", "==", "="):
        head, found, tail = term.partition(operator)
        if found:
            if not head.strip():
                raise ValueError(MSG_SELECTOR_TERM.format(term=term))
            return head.strip(), "!=" if operator == "!=" else "=", (tail.strip(),)
    if term.startswith("!") and term[1:].strip():
        return term[1:].strip(), "!exists", ()
    if all(char not in term for char in " ()!="):
        return term, "exists", ()
    raise ValueError(MSG_SELECTOR_TERM.format(term=term))


def selector_matches(selector: tuple[tuple[str, str, tuple[str, ...]], ...], labels: Mapping[str, str]) -> bool:
    for key, operator, values in selector:
        present = key in labels
        value = labels.get(key)
        if operator == "exists" and not present:
            return False
        if operator == "!exists" and present:
            return False
        if operator in ("=", "in") and value not in values:
            return False
        if operator in ("!=", "notin") and present and value in values:
            return False
    return True


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
