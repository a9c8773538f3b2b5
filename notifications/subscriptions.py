"""Who is subscribed to what: (trigger, service, recipient) for one object.

Argo's subscriptions (reference §B; notifications-engine pkg/subscriptions/annotations.go and
pkg/api/config.go GetGlobalDestinations):

* ``notifications.argoproj.io/subscribe.<trigger>.<service>: r1;r2`` on the object (and, for
  an Application, on its AppProject); an empty value is the one recipient ``""`` (webhooks);
* ``notifications.argoproj.io/subscribe.<service>: r1``: the ConfigMap's
  ``defaultTriggers.<service>``, else ``defaultTriggers``;
* the YAML annotation ``notifications.argoproj.io/subscriptions``: a list of
  ``{trigger: [t1, t2], destinations: [{service, recipients: [r1]}]}``;
* the ConfigMap's global ``subscriptions``, each with a label ``selector`` matched against
  the object's labels (no ``triggers`` means ``defaultTriggers``).

The result is deduplicated and in a stable order (Go's map order is random; ours is global,
object, project, each in annotation-key order). A malformed annotation is an error naming
the object's annotation and never hides the others.

Called by notifications/engine.py and the CLI. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from notifications.config import NotificationConfig, selector_matches

ANNOTATION_DOMAIN = "notifications.argoproj.io"
SUBSCRIBE_PREFIX = ANNOTATION_DOMAIN + "/subscribe."
SUBSCRIPTIONS_ANNOTATION = ANNOTATION_DOMAIN + "/subscriptions"

MSG_ANNOTATION = "{where}: annotation {annotation}: {problem}"
MSG_NOT_YAML = "not valid YAML ({error})"
MSG_NOT_LIST = "must be a YAML list of {{trigger, destinations}}, not {type}"
MSG_ENTRY = "[{index}]: {problem}"
MSG_ENTRY_NOT_MAP = "must be a mapping with trigger and destinations"
MSG_DESTINATIONS = "destinations must be a list of {service, recipients}"
MSG_DESTINATION = "destinations[{index}] must be a mapping with service and recipients"
MSG_NO_SERVICE = "names no service"
MSG_NO_TRIGGERS = "names no trigger and the ConfigMap sets no defaultTriggers"


@dataclass(frozen=True, order=True)
class Subscription:
    trigger: str
    service: str
    recipient: str


def parse_recipients(value: str) -> list[str]:
    """``a; b;`` -> [a, b]; an empty value is the one empty recipient (Argo's webhooks)."""
    if value == "":
        return [""]
    return [part.strip() for part in value.split(";") if part.strip()]


def subscriptions_for(
    obj: Mapping[str, Any],
    *,
    config: NotificationConfig,
    project: Mapping[str, Any] | None = None,
) -> tuple[list[Subscription], list[str]]:
    """Every (trigger, service, recipient) the object is subscribed to, and the errors."""
    errors: list[str] = []
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    found: list[Subscription] = list(global_subscriptions(config, labels if isinstance(labels, Mapping) else {}))
    found += annotation_subscriptions(
        metadata.get("annotations") or {}, config=config, where=_describe(obj), errors=errors)
    if project is not None:
        project_metadata = project.get("metadata") or {}
        found += annotation_subscriptions(
            project_metadata.get("annotations") or {}, config=config, where=_describe(project), errors=errors)
    return _dedup(found), errors


def global_subscriptions(config: NotificationConfig, labels: Mapping[str, str]) -> list[Subscription]:
    out: list[Subscription] = []
    for subscription in config.subscriptions:
        if not selector_matches(subscription.selector, labels):
            continue
        for trigger in subscription.triggers or config.default_triggers:
            for service, recipient in subscription.destinations:
                out.append(Subscription(trigger=trigger, service=service, recipient=recipient))
    return out


def annotation_subscriptions(
    annotations: Mapping[str, Any],
    *,
    config: NotificationConfig,
    where: str,
    errors: list[str],
) -> list[Subscription]:
    out: list[Subscription] = []
    if not isinstance(annotations, Mapping):
        return out
    for key in sorted(annotations):
        value = annotations[key]
        if not isinstance(value, str):
            continue
        if key.startswith(SUBSCRIBE_PREFIX):
            out += _subscribe_annotation(key, value, config=config, where=where, errors=errors)
        elif key == SUBSCRIPTIONS_ANNOTATION:
            out += _yaml_annotation(value, config=config, where=where, errors=errors)
    return out


def _subscribe_annotation(
    key: str, value: str, *, config: NotificationConfig, where: str, errors: list[str]
) -> list[Subscription]:
    # Argo splits on "." and takes the first two parts: trigger names cannot hold dots.
    parts = key[len(SUBSCRIBE_PREFIX):].split(".")
    if len(parts) >= 2:
        triggers: Sequence[str] = [parts[0]]
        service = parts[1]
    else:
        service = parts[0]
        triggers = _default_triggers(config, service)
        if not triggers:
            errors.append(MSG_ANNOTATION.format(where=where, annotation=key, problem=MSG_NO_TRIGGERS))
    if not service:
        errors.append(MSG_ANNOTATION.format(where=where, annotation=key, problem=MSG_NO_SERVICE))
        return []
    return [
        Subscription(trigger=trigger, service=service, recipient=recipient)
        for recipient in parse_recipients(value)
        for trigger in triggers
    ]


def _default_triggers(config: NotificationConfig, service: str) -> Sequence[str]:
    if service in config.service_default_triggers:
        return config.service_default_triggers[service]
    return config.default_triggers


def _yaml_annotation(value: str, *, config: NotificationConfig, where: str, errors: list[str]) -> list[Subscription]:
    def problem(text: str) -> None:
        errors.append(MSG_ANNOTATION.format(where=where, annotation=SUBSCRIPTIONS_ANNOTATION, problem=text))

    try:
        loaded = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        problem(MSG_NOT_YAML.format(error=" ".join(str(exc).split())))
        return []
    if loaded is None:
        return []
    if not isinstance(loaded, list):
        problem(MSG_NOT_LIST.format(type=type(loaded).__name__))
        return []
    out: list[Subscription] = []
    for index, entry in enumerate(loaded):
        if not isinstance(entry, Mapping):
            problem(MSG_ENTRY.format(index=index, problem=MSG_ENTRY_NOT_MAP))
            continue
        raw_triggers = entry.get("trigger", entry.get("triggers"))
        named: list[str] = [raw_triggers] if isinstance(raw_triggers, str) else [
            t for t in (raw_triggers if isinstance(raw_triggers, list) else []) if isinstance(t, str)]
        raw_destinations = entry.get("destinations")
        if not isinstance(raw_destinations, list):
            problem(MSG_ENTRY.format(index=index, problem=MSG_DESTINATIONS))
            continue
        for number, destination in enumerate(raw_destinations):
            if not isinstance(destination, Mapping) or not isinstance(destination.get("service"), str):
                problem(MSG_ENTRY.format(index=index, problem=MSG_DESTINATION.format(index=number)))
                continue
            service = destination["service"]
            raw_recipients = destination.get("recipients")
            if isinstance(raw_recipients, str):
                recipients = parse_recipients(raw_recipients)
            elif isinstance(raw_recipients, list):
                recipients = [str(r) for r in raw_recipients] or [""]
            else:
                recipients = [""]
            triggers = named or list(_default_triggers(config, service))
            if not triggers:
                problem(MSG_ENTRY.format(index=index, problem=MSG_NO_TRIGGERS))
            out += [Subscription(trigger=t, service=service, recipient=r) for t in triggers for r in recipients]
    return out


def _dedup(found: list[Subscription]) -> list[Subscription]:
    seen: set[Subscription] = set()
    out: list[Subscription] = []
    for item in found:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _describe(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    kind = obj.get("kind") or "object"
    namespace = metadata.get("namespace")
    name = metadata.get("name", "?")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
