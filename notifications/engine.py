"""The notifications engine: one object + config + clock -> what to send and the new record.

``plan`` does for one Application, Rollout or AnalysisRun what notifications-engine's
controller does per reconcile (pkg/controller/controller.go processResourceWithAPI), without
sending anything:

1. the object's subscriptions (notifications/subscriptions.py) by trigger;
2. each condition of each subscribed trigger is judged by ``common.expr.evaluate_when`` over
   ``app`` / ``rollout`` / ``analysisRun`` (Argo's names), ``context`` and, for an
   Application, ``appProject``; a missing field is false;
3. edge-triggered, as Argo: a true condition whose key ``[oncePer:]trigger:[i].hash:service:
   recipient`` is not yet in the record is sent and recorded; a false one removes its key so
   it can fire again, unless it has ``oncePer``, whose keys stay: once per distinct value.
   Rollout triggers get the same treatment (argo-rollouts #5037: there ``oncePer`` is
   ignored). ``false_conditions`` and ``rearm`` let the controller apply a state it
   never planned (seen only by the watch) before planning the latest one;
4. each delivery's templates are rendered with ``{app|rollout|analysisRun, appProject,
   context, serviceType, recipient, repo}`` and merged in order into one Notification, as
   Argo's FormatNotification does (a later template's fields win; an empty message does not
   replace an earlier one);
5. the record is pruned of keys that can never matter again and bounded in size
   (notifications/state.py), and returned as the annotation's new value.

A template that does not render, a trigger that is not configured or a condition that
cannot be judged is an entry in ``Plan.errors`` naming it; it never raises, and an unsent
notification is not recorded, so it is tried again on the next reconcile. The controller
sends ``deliveries`` and writes ``annotation``; a delivery whose send fails must be taken out
of the annotation (``notifications.state.forget``) so it is retried, as Argo does.

Called by the notifications controller and the CLI (``trigger run``, ``template notify``).
Pure: no Kubernetes calls, the clock is an argument.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from common.expr import evaluate_when
from common.logging import get_logger
from notifications.config import NotificationConfig, Trigger
from notifications.gotemplate import TemplateError, TemplateFunc
from notifications.services import Notification
from notifications.state import (
    NOTIFIED_ANNOTATION,
    bound_state,
    compile_once_per,
    condition_key,
    dump_state,
    hash_when,
    parse_state,
    state_key,
)
from notifications.subscriptions import Subscription, subscriptions_for

KIND_VARIABLES = {"Application": "app", "Rollout": "rollout", "AnalysisRun": "analysisRun"}
"""The name each kind's object has in conditions and templates, as Argo names it."""

MSG_UNKNOWN_KIND = "kind {kind!r} has no notifications (expected one of {kinds})"
MSG_NO_TRIGGER = "{obj}: subscribed to trigger {trigger!r}, which is not configured"
MSG_CONDITION = "{obj}: trigger {trigger!r} condition [{index}]: {problem}"
MSG_NO_TEMPLATE = "no configured template among {template}"
MSG_RENDER = "template {template!r} field {field}: {error}"
MSG_DELIVERY = "{obj}: trigger {trigger!r} to {service}:{recipient}: {problem}"
MSG_DROPPED = "once-only record: dropped keys that can no longer matter"

log = get_logger("tidegate.notifications.engine")

_KEY = re.compile(
    r"^(?:(?P<once>.*?):)?(?P<trigger>[^:]+):\[(?P<index>\d+)\]\.(?P<hash>[A-Za-z0-9_-]{27}):"
    r"(?P<service>[^:]*):(?P<recipient>.*)$",
    re.DOTALL,
)


@dataclass(frozen=True)
class Delivery:
    trigger: str
    condition: int
    service: str
    recipient: str
    templates: tuple[str, ...]
    notification: Notification
    key: str
    """The once-only key this delivery records (for ``state.forget`` if its send fails)."""


@dataclass(frozen=True)
class Plan:
    deliveries: list[Delivery] = field(default_factory=list)
    annotation: str | None = None
    """The new value of ``notified.notifications.argoproj.io``; None: leave it as it is.
    ``{}`` when the record became empty (Argo removes the annotation then; both read the same)."""
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConditionResult:
    """One condition's verdict, for ``plan`` and ``tidegate notifications trigger run``."""

    trigger: str
    index: int
    description: str
    when: str
    templates: tuple[str, ...]
    triggered: bool
    once_per: str = ""
    error: str | None = None


def variable_for(kind: str) -> str:
    """``Application`` -> ``app``; the variable names themselves are accepted too."""
    if kind in KIND_VARIABLES.values():
        return kind
    try:
        return KIND_VARIABLES[kind]
    except KeyError:
        raise ValueError(MSG_UNKNOWN_KIND.format(kind=kind, kinds=", ".join(KIND_VARIABLES))) from None


def condition_env(
    obj: Mapping[str, Any],
    *,
    kind: str,
    project: Mapping[str, Any] | None,
    context: Mapping[str, Any],
) -> dict[str, Any]:
    env: dict[str, Any] = {variable_for(kind): obj, "context": context}
    if project is not None:
        env["appProject"] = project
    return env


def evaluate_trigger(
    trigger: Trigger,
    env: Mapping[str, Any],
    *,
    now: datetime,
) -> list[ConditionResult]:
    """Judge every condition of a trigger; never raises."""
    results: list[ConditionResult] = []
    clock: Callable[[], datetime] = lambda: now  # noqa: E731 - the injected clock
    for index, condition in enumerate(trigger.conditions):
        triggered, once_per, error = False, "", condition.error
        if error is None:
            verdict = evaluate_when(condition.when or "false", env, now=clock)
            triggered, error = verdict.value, verdict.error
            if triggered and condition.once_per:
                once_per = compile_once_per(condition.once_per).value(env)
        results.append(ConditionResult(
            trigger=trigger.name, index=index, description=condition.description, when=condition.when,
            templates=condition.send, triggered=triggered, once_per=once_per, error=error))
    return results


def template_data(
    obj: Mapping[str, Any],
    *,
    kind: str,
    project: Mapping[str, Any] | None,
    context: Mapping[str, Any],
    service: str,
    recipient: str,
) -> dict[str, Any]:
    """What a template sees: Argo's variables (``.secrets`` is left out: secrets never reach
    a message by accident)."""
    data: dict[str, Any] = {
        variable_for(kind): obj,
        "context": {**context, "notificationType": service},
        "serviceType": service,
        "recipient": recipient,
        "repo": repo_functions(),
    }
    if variable_for(kind) == "app":
        data["appProject"] = project
    return data


def render_notification(
    templates: Sequence[str],
    *,
    config: NotificationConfig,
    data: Mapping[str, Any],
) -> tuple[Notification | None, list[str]]:
    """Render and merge templates in order, as Argo's FormatNotification; errors name the
    template and the field, and no Notification is returned when any part failed. A name
    that is not a configured template is skipped (config loading reports it) unless none is."""
    message, title = "", ""
    parts: dict[str, Any] = {}
    errors: list[str] = []
    for name in templates:
        template = config.templates.get(name)
        if template is None:
            # Config loading already reported it; the condition's other templates still go
            # out (the seed's on-sync-failed sends [slack-ml-team, pagerduty], the second
            # being a service's name; Argo drops the whole notification).
            continue
        for part in template.parts:
            if part.template is None:
                value: Any = part.constant
            else:
                try:
                    value = part.template.render(data)
                except TemplateError as exc:
                    errors.append(MSG_RENDER.format(template=name, field=".".join(part.path), error=exc))
                    continue
            if part.path == ("message",):
                if value:
                    message = str(value)
            elif part.path == ("title",):
                if value:
                    title = str(value)
            else:
                _set_path(parts, part.path, value)
    if not any(name in config.templates for name in templates):
        errors.append(MSG_NO_TEMPLATE.format(template=", ".join(templates)))
    if errors:
        return None, errors
    return Notification(message=message, title=title, parts=parts), []


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = target
    for step in path[:-1]:
        child = node.get(step)
        if not isinstance(child, dict):
            child = {}
            node[step] = child
        node = child
    node[path[-1]] = value


def plan(
    obj: Mapping[str, Any],
    *,
    kind: str,
    config: NotificationConfig,
    project: Mapping[str, Any] | None,
    context_vars: Mapping[str, Any],
    now: datetime,
) -> Plan:
    """What to send for this object now, and the once-only record to write back.

    ``context_vars`` are defaults for ``.context`` (e.g. the controller's URL); the
    ConfigMap's ``context`` wins over them."""
    try:
        variable_for(kind)
    except ValueError as exc:
        return Plan(errors=[str(exc)])
    who = _describe(obj, kind)
    errors: list[str] = []
    metadata = obj.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    raw_state = annotations.get(NOTIFIED_ANNOTATION) if isinstance(annotations, Mapping) else None
    if raw_state is not None and not isinstance(raw_state, str):
        raw_state = None
    state, state_problems = parse_state(raw_state)
    errors += [f"{who}: {problem}" for problem in state_problems]
    original = dict(state)

    subscriptions, subscription_errors = subscriptions_for(obj, config=config, project=project)
    errors += subscription_errors
    by_trigger: dict[str, list[Subscription]] = {}
    for subscription in subscriptions:
        by_trigger.setdefault(subscription.trigger, []).append(subscription)

    context = {**context_vars, **config.context}
    env = condition_env(obj, kind=kind, project=project, context=context)
    deliveries: list[Delivery] = []
    false_conditions: set[tuple[str, int]] = set()
    stamp = int(now.timestamp())

    for trigger_name, destinations in by_trigger.items():
        trigger = config.triggers.get(trigger_name)
        if trigger is None:
            errors.append(MSG_NO_TRIGGER.format(obj=who, trigger=trigger_name))
            continue
        for result in evaluate_trigger(trigger, env, now=now):
            if result.error is not None:
                errors.append(MSG_CONDITION.format(obj=who, trigger=trigger_name, index=result.index,
                                                   problem=result.error))
            if not result.triggered:
                false_conditions.add((trigger_name, result.index))
                continue
            for destination in destinations:
                key = state_key(trigger_name, result.index, result.when, destination.service,
                                destination.recipient, result.once_per)
                if key in state:
                    continue
                data = template_data(obj, kind=kind, project=project, context=context,
                                     service=destination.service, recipient=destination.recipient)
                notification, render_errors = render_notification(result.templates, config=config, data=data)
                if notification is None:
                    errors += [MSG_DELIVERY.format(obj=who, trigger=trigger_name, service=destination.service,
                                                   recipient=destination.recipient, problem=problem)
                               for problem in render_errors]
                    continue
                state[key] = stamp
                deliveries.append(Delivery(
                    trigger=trigger_name, condition=result.index, service=destination.service,
                    recipient=destination.recipient, templates=result.templates,
                    notification=notification, key=key))

    dropped = _prune(state, config=config, subscriptions=set(subscriptions), false_conditions=false_conditions)
    if dropped:
        log.debug(MSG_DROPPED, object=who, dropped=len(dropped))
    bound_state(state, obj=who)
    annotation: str | None = None
    if state != original or state_problems:
        annotation = dump_state(state)
    return Plan(deliveries=deliveries, annotation=annotation, errors=errors)


def false_conditions(
    obj: Mapping[str, Any],
    *,
    kind: str,
    config: NotificationConfig,
    project: Mapping[str, Any] | None,
    context_vars: Mapping[str, Any],
    now: datetime,
) -> frozenset[str]:
    """The subscribed conditions without ``oncePer`` that are false in ``obj``, each as
    ``trigger:[i].hash`` (the part of its record keys before ``:service:recipient``).

    The controller asks this of every state the watch delivers: a state it never plans
    (gone within one reconcile) still re-arms these conditions (``rearm``), so a quick
    true -> false -> true is sent again, as a plan of each state in turn would. Never raises.
    """
    try:
        variable_for(kind)
    except ValueError:
        return frozenset()
    subscriptions, _ = subscriptions_for(obj, config=config, project=project)
    env = condition_env(obj, kind=kind, project=project, context={**context_vars, **config.context})
    found: set[str] = set()
    for trigger_name in dict.fromkeys(s.trigger for s in subscriptions):
        trigger = config.triggers.get(trigger_name)
        if trigger is None:
            continue
        for result in evaluate_trigger(trigger, env, now=now):
            condition = trigger.conditions[result.index]
            # A key with oncePer stays when its condition goes false (once per value), and a
            # condition that does not compile keeps its keys (as _keep does).
            if result.triggered or condition.once_per or condition.error is not None:
                continue
            found.add(f"{trigger_name}:{condition_key(result.index, condition.when)}")
    return frozenset(found)


def rearm(state: Mapping[str, int], conditions: frozenset[str] | set[str]) -> dict[str, int]:
    """The record without the keys (without ``oncePer``) of ``conditions`` (``false_conditions``)."""
    kept: dict[str, int] = {}
    for key, stamp in state.items():
        match = _KEY.match(key)
        if (match is not None and not match["once"]
                and f"{match['trigger']}:[{match['index']}].{match['hash']}" in conditions):
            continue
        kept[key] = stamp
    return kept


def _prune(
    state: dict[str, int],
    *,
    config: NotificationConfig,
    subscriptions: set[Subscription],
    false_conditions: set[tuple[str, int]],
) -> list[str]:
    """Drop keys that can never matter again; returns them."""
    dropped: list[str] = []
    for key in list(state):
        if not _keep(key, config=config, subscriptions=subscriptions, false_conditions=false_conditions):
            del state[key]
            dropped.append(key)
    return dropped


def _keep(
    key: str,
    *,
    config: NotificationConfig,
    subscriptions: set[Subscription],
    false_conditions: set[tuple[str, int]],
) -> bool:
    match = _KEY.match(key)
    if match is None:
        return False  # not a key Argo or we would write
    trigger_name, index = match["trigger"], int(match["index"])
    if Subscription(trigger=trigger_name, service=match["service"], recipient=match["recipient"]) not in subscriptions:
        return False
    trigger = config.triggers.get(trigger_name)
    if trigger is None:
        # Subscribed but not (or not parseably) configured: keep the record for when it is.
        return True
    if index >= len(trigger.conditions):
        return False
    condition = trigger.conditions[index]
    if hash_when(condition.when) != match["hash"]:
        return False  # the condition was rewritten: its old key can never be hit again
    if condition.error is not None:
        return True
    # Argo's edge: a false condition without oncePer forgets, so it fires on the next rise.
    once = match["once"]
    return not ((trigger_name, index) in false_conditions and not once)


def _describe(obj: Mapping[str, Any], kind: str) -> str:
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    name = metadata.get("name", "?")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


# --- the `repo` helpers templates call (Argo CD's util/notification/expression/repo) ------

_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")
_GIT_SUFFIX = re.compile(r"\.git$")


def repo_url_to_https(url: str) -> str:
    """``git@github.com:org/repo.git`` -> ``https://github.com/org/repo.git`` (user dropped)."""
    host, path = _host_and_path(str(url))
    if not host:
        return str(url)
    return f"https://{host}/{path.lstrip('/')}"


def full_name_by_repo_url(url: str) -> str:
    """``https://github.com/org/repo.git`` -> ``org/repo``."""
    _, path = _host_and_path(str(url))
    parts = [part for part in _GIT_SUFFIX.sub("", path).split("/") if part]
    return "/".join(parts[:2]) if len(parts) >= 2 else "/".join(parts)


def _host_and_path(url: str) -> tuple[str, str]:
    if "://" in url:
        split = urlsplit(url)
        return split.hostname or "", split.path
    match = _SCP_LIKE.match(url)
    if match:
        return match["host"], match["path"]
    return "", url


def repo_functions() -> dict[str, TemplateFunc]:
    """``.repo`` in templates: the helpers that need no repo-server."""
    return {
        "RepoURLToHTTPS": TemplateFunc(repo_url_to_https, name="RepoURLToHTTPS"),
        "FullNameByRepoURL": TemplateFunc(full_name_by_repo_url, name="FullNameByRepoURL"),
    }
