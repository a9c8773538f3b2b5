"""``tidegate notifications trigger run|template notify``: see what notifications would do.

As Argo's ``argocd admin notifications`` / ``kubectl argo rollouts notifications``:

* ``trigger run TRIGGER (--app NAME | --rollout NAME) [-n NS]`` judges each condition of the
  trigger against the live object and prints its result (and its oncePer value);
* ``template notify TEMPLATE [KIND/]NAME --dry-run`` renders the template for the object, per
  service (``--recipient service:recipient``, repeatable; by default the object's own
  subscriptions, else ``console``), and prints what would be sent. Sending is the
  controller's job: without ``--dry-run`` the command refuses.

The ConfigMap is read from the cluster (``--config-map``, in ``--config-namespace``:
argocd for Applications, argo-rollouts for Rollouts, as the two projects install it) or from
a file for offline use (``--config-file``: a ConfigMap manifest or its bare ``data``); the
catalog (notifications/catalog/) is always underneath. Every cluster read goes through
``NotificationsApi`` (a fake in unit tests).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml

from notifications.catalog import parse_with_catalog
from notifications.config import ARGOCD_CONFIGMAP, ROLLOUTS_CONFIGMAP, NotificationConfig
from notifications.engine import (
    condition_env,
    evaluate_trigger,
    render_notification,
    template_data,
)
from notifications.subscriptions import subscriptions_for

GROUP, VERSION = "argoproj.io", "v1alpha1"
PLURALS = {"Application": "applications", "Rollout": "rollouts", "AnalysisRun": "analysisruns",
           "AppProject": "appprojects"}
KIND_ALIASES = {"app": "Application", "application": "Application", "applications": "Application",
                "rollout": "Rollout", "rollouts": "Rollout", "ro": "Rollout",
                "analysisrun": "AnalysisRun", "analysisruns": "AnalysisRun", "ar": "AnalysisRun"}
DEFAULT_OBJECT_NAMESPACE = {"Application": "argocd", "Rollout": "default", "AnalysisRun": "default"}
DEFAULT_CONFIG_NAMESPACE = {"Application": "argocd", "Rollout": "argo-rollouts", "AnalysisRun": "argo-rollouts"}
DEFAULT_CONFIG_MAP = {"Application": ARGOCD_CONFIGMAP, "Rollout": ROLLOUTS_CONFIGMAP, "AnalysisRun": ROLLOUTS_CONFIGMAP}
CONSOLE = "console"
EXIT_OK, EXIT_ERROR = 0, 1
RESULT_COLUMNS = ("CONDITION", "RESULT", "ONCEPER", "WHEN")
YAML_DOCUMENT_END = "...\n"
# No folding: a long one-line message printed over two lines would not read as it is sent.
YAML_WIDTH = 1 << 20

MSG_NOT_FOUND = "{kind} {name!r} not found in namespace {namespace!r}"
MSG_READ_FAILED = "reading {kind} {name!r}: {reason}"
MSG_CONFIG_MISSING = "ConfigMap {namespace}/{name} not found: only the catalog's triggers and templates"
MSG_CONFIG_FILE = "cannot read --config-file {path}: {error}"
MSG_CONFIG_ERROR = "warning: {error}"
MSG_NO_TRIGGER = "trigger {name!r} is not configured (nor in the catalog)"
MSG_NO_TEMPLATE = "template {name!r} is not configured (nor in the catalog)"
MSG_INVALID = "{what} {name!r} in {cm} is invalid (see the warning above): nothing to {action}"
MSG_BAD_KIND = "unknown kind {kind!r} in {obj!r} (use app/NAME, rollout/NAME or analysisrun/NAME)"
MSG_BAD_RECIPIENT = "--recipient {value!r} must be service:recipient"
MSG_DRY_RUN_ONLY = "only --dry-run is supported: the notifications controller does the sending"
MSG_CONDITION_ERROR = "  [{index}] error: {error}"
MSG_RENDER_ERROR = "  error: {error}"
HEADER_NOTIFY = "# template {template} for {kind} {namespace}/{name} to {service}:{recipient}"


class CliError(Exception):
    """The command cannot go on; printed to stderr, exit 1."""


class NotificationsApi(Protocol):
    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any]: ...

    def get_config_map(self, namespace: str, name: str) -> dict[str, str] | None: ...


class KubeNotificationsApi:
    """``NotificationsApi`` over the kubernetes client."""

    def __init__(self, api: Any) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return dict(self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[kind], name, _request_timeout=30))
        except ApiException as exc:
            if exc.status == 404:
                raise CliError(MSG_NOT_FOUND.format(kind=kind, name=name, namespace=namespace)) from None
            raise CliError(MSG_READ_FAILED.format(kind=kind, name=name, reason=exc.reason)) from None

    def get_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            config_map = self.core.read_namespaced_config_map(name, namespace, _request_timeout=30)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise CliError(MSG_READ_FAILED.format(kind="ConfigMap", name=name, reason=exc.reason)) from None
        return dict(config_map.data or {})


@dataclass
class Context:
    api: Callable[[], NotificationsApi]
    out: TextIO
    err: TextIO
    now: datetime


def add_subcommands(sub: Any) -> None:
    parser = sub.add_parser("notifications", help="evaluate notification triggers and render templates "
                                                  "(argocd admin notifications)")
    groups = parser.add_subparsers(dest="notifications_group", required=True)

    trigger = groups.add_parser("trigger", help="notification triggers")
    trigger_sub = trigger.add_subparsers(dest="trigger_command", required=True)
    run_trigger = trigger_sub.add_parser("run", help="judge a trigger's conditions against a live object")
    run_trigger.add_argument("trigger")
    target = run_trigger.add_mutually_exclusive_group(required=True)
    target.add_argument("--app", help="an Argo CD Application")
    target.add_argument("--rollout", help="an Argo Rollout")
    _add_common(run_trigger)
    run_trigger.set_defaults(func=run, handler=cmd_trigger_run)

    template = groups.add_parser("template", help="notification templates")
    template_sub = template.add_subparsers(dest="template_command", required=True)
    notify = template_sub.add_parser("notify", help="render a template for an object and print it")
    notify.add_argument("template")
    notify.add_argument("object", help="[app/|rollout/|analysisrun/]NAME (default kind: app)")
    notify.add_argument("--dry-run", action="store_true", help="print what would be sent, send nothing")
    notify.add_argument("--recipient", action="append", default=[],
                        help="service:recipient to render for (repeatable; default: the object's subscriptions)")
    _add_common(notify)
    notify.set_defaults(func=run, handler=cmd_template_notify)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", "-n", default=None,
                        help="the object's namespace (default: argocd for apps, default for rollouts)")
    parser.add_argument("--config-map", default=None,
                        help="the notifications ConfigMap (default: argocd-notifications-cm for apps, "
                             "argo-rollouts-notification-configmap for rollouts)")
    parser.add_argument("--config-namespace", default=None,
                        help="the ConfigMap's namespace (default: argocd for apps, argo-rollouts for rollouts)")
    parser.add_argument("--config-file", default=None,
                        help="read the ConfigMap from this file instead of the cluster (offline)")


def run(args: argparse.Namespace, *, api: NotificationsApi | None = None, out: TextIO | None = None,
        err: TextIO | None = None, now: datetime | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    cached: list[NotificationsApi] = [api] if api is not None else []

    def kube() -> NotificationsApi:
        if not cached:
            from common.kubeclient import new_api_client

            cached.append(KubeNotificationsApi(new_api_client(pool_size=2)))
        return cached[0]

    ctx = Context(api=kube, out=out, err=err, now=now or datetime.now(tz=UTC))
    try:
        result: int = args.handler(ctx, args)
        return result
    except CliError as exc:
        err.write(f"tidegate notifications: {exc}\n")
        return EXIT_ERROR


@dataclass(frozen=True)
class LoadedConfig:
    """The parsed configuration, and the ConfigMap's own keys: an entry that is there but did
    not parse is dropped from ``config`` (even over the catalog's), and must not read as absent."""

    config: NotificationConfig
    name: str
    keys: frozenset[str]

    def invalid(self, what: str, name: str, *, action: str) -> CliError | None:
        if f"{what}.{name}" not in self.keys:
            return None
        return CliError(MSG_INVALID.format(what=what, name=name, cm=self.name, action=action))


def load_config(ctx: Context, args: argparse.Namespace, *, kind: str) -> LoadedConfig:
    name = args.config_map or DEFAULT_CONFIG_MAP[kind]
    if args.config_file:
        data = read_config_file(Path(args.config_file))
    else:
        namespace = args.config_namespace or DEFAULT_CONFIG_NAMESPACE[kind]
        found = ctx.api().get_config_map(namespace, name)
        if found is None:
            ctx.err.write(MSG_CONFIG_MISSING.format(namespace=namespace, name=name) + "\n")
        data = found or {}
    config = parse_with_catalog(data, name=name)
    for error in config.errors:
        ctx.err.write(MSG_CONFIG_ERROR.format(error=error) + "\n")
    return LoadedConfig(config=config, name=name, keys=frozenset(data))


def read_config_file(path: Path) -> dict[str, str]:
    """A ConfigMap manifest (its ``data``) or a bare mapping of keys to strings."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(MSG_CONFIG_FILE.format(path=path, error=" ".join(str(exc).split()))) from None
    if isinstance(loaded, Mapping) and loaded.get("kind") == "ConfigMap":
        loaded = loaded.get("data") or {}
    if not isinstance(loaded, Mapping):
        raise CliError(MSG_CONFIG_FILE.format(path=path, error="not a mapping"))
    return {str(k): v if isinstance(v, str) else yaml.safe_dump(v) for k, v in loaded.items()}


def _project_of(ctx: Context, obj: Mapping[str, Any], *, kind: str, namespace: str) -> dict[str, Any] | None:
    if kind != "Application":
        return None
    name = (obj.get("spec") or {}).get("project") or "default"
    try:
        return ctx.api().get_object("AppProject", namespace, name)
    except CliError:
        return None  # a missing project only means no project subscriptions


def cmd_trigger_run(ctx: Context, args: argparse.Namespace) -> int:
    kind, name = ("Application", args.app) if args.app else ("Rollout", args.rollout)
    namespace = args.namespace or DEFAULT_OBJECT_NAMESPACE[kind]
    loaded = load_config(ctx, args, kind=kind)
    config = loaded.config
    trigger = config.triggers.get(args.trigger)
    if trigger is None:
        raise (loaded.invalid("trigger", args.trigger, action="evaluate")
               or CliError(MSG_NO_TRIGGER.format(name=args.trigger)))
    obj = ctx.api().get_object(kind, namespace, name)
    project = _project_of(ctx, obj, kind=kind, namespace=namespace)
    env = condition_env(obj, kind=kind, project=project, context=config.context)
    results = evaluate_trigger(trigger, env, now=ctx.now)
    rows = [(f"[{r.index}] {r.description}".strip(), "true" if r.triggered else "false", r.once_per or "-",
             " ".join(r.when.split()) or "(empty: false)") for r in results]
    _table(ctx.out, RESULT_COLUMNS, rows)
    for result in results:
        if result.error:
            ctx.out.write(MSG_CONDITION_ERROR.format(index=result.index, error=result.error) + "\n")
    return EXIT_OK


def cmd_template_notify(ctx: Context, args: argparse.Namespace) -> int:
    if not args.dry_run:
        raise CliError(MSG_DRY_RUN_ONLY)
    kind, name = parse_object(args.object)
    namespace = args.namespace or DEFAULT_OBJECT_NAMESPACE[kind]
    loaded = load_config(ctx, args, kind=kind)
    config = loaded.config
    if args.template not in config.templates:
        raise (loaded.invalid("template", args.template, action="render")
               or CliError(MSG_NO_TEMPLATE.format(name=args.template)))
    obj = ctx.api().get_object(kind, namespace, name)
    project = _project_of(ctx, obj, kind=kind, namespace=namespace)
    destinations = [parse_recipient(value) for value in args.recipient]
    if not destinations:
        subscriptions, _ = subscriptions_for(obj, config=config, project=project)
        destinations = sorted({(s.service, s.recipient) for s in subscriptions}) or [(CONSOLE, "")]
    failed = False
    for service, recipient in destinations:
        ctx.out.write(HEADER_NOTIFY.format(template=args.template, kind=kind, namespace=namespace, name=name,
                                           service=service, recipient=recipient) + "\n")
        data = template_data(obj, kind=kind, project=project, context=config.context,
                             service=service, recipient=recipient)
        notification, errors = render_notification([args.template], config=config, data=data)
        if notification is None:
            failed = True
            for error in errors:
                ctx.out.write(MSG_RENDER_ERROR.format(error=error) + "\n")
            continue
        shown: dict[str, Any] = {}
        if notification.title:
            shown["title"] = notification.title
        shown["message"] = notification.message
        shown.update(dict(notification.parts))
        text = yaml.dump(shown, Dumper=_LiteralDumper, sort_keys=False, allow_unicode=True,
                         default_flow_style=False, width=YAML_WIDTH)
        # A message ending in blank lines ends the YAML document with "..."; it is no part of it.
        ctx.out.write(text.removesuffix(YAML_DOCUMENT_END))
    return EXIT_ERROR if failed else EXIT_OK


def parse_object(text: str) -> tuple[str, str]:
    kind_text, slash, name = text.partition("/")
    if not slash:
        return "Application", text
    kind = KIND_ALIASES.get(kind_text.lower())
    if kind is None or not name:
        raise CliError(MSG_BAD_KIND.format(kind=kind_text, obj=text))
    return kind, name


def parse_recipient(value: str) -> tuple[str, str]:
    service, _, recipient = value.partition(":")
    if not service:
        raise CliError(MSG_BAD_RECIPIENT.format(value=value))
    return service, recipient


def _table(out: TextIO, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    for row in [columns, *rows]:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as YAML block scalars, so a message prints as it will read."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_LiteralDumper.add_representer(str, _represent_str)
