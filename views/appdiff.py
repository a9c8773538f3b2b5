"""What an Application's sync, rollback and diff are, shared by ``tidegate app`` and the dashboard.

Called by cli/app.py (``tidegate app diff|explain|sync|rollback``) and dashboard/
(the Application page's diffs and its Sync and Rollback buttons). ``sync_operation`` and
``rollback_operation`` are pure: they build the ``operation`` field Argo CD's CLI and API
server write. ``kube_differ`` is the one part of views/ that does I/O: it renders the source
from Git and dry-run applies it, as the controller compares (gitops/diff.py); it lives here,
below both callers, because the dashboard may not import cli/ and the controllers may not
serve a CLI.
"""

from __future__ import annotations

import difflib
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_APP_NAMESPACE = "argocd"

MSG_OPERATION_RUNNING = "another operation is already in progress for app {name!r}"
# Argo CD's own words (server/application Rollback and the CLI's findRevisionHistory).
MSG_ROLLBACK_AUTOMATED = "rollback cannot be initiated when auto-sync is enabled"
MSG_ROLLBACK_TOO_FEW = "Application '{name}' should have at least two successful deployments"
MSG_ROLLBACK_NO_ID = "Application '{name}' does not have deployment id '{id}' in history"
MSG_ROLLBACK_OLD = "cannot rollback to revision deployed with Argo CD v1.4 or older"


class AppError(Exception):
    """A command that cannot be carried out: exit 2 for diff, 1 for the others."""


@dataclass(frozen=True)
class ResourceDiff:
    """One object whose live state differs from Git (``live`` None: missing in the cluster)."""

    kind: str
    namespace: str
    name: str
    group: str
    text: str  # a unified diff, live -> desired
    fields: tuple[tuple[str, str], ...] = ()  # (field path, the manager owning it in live, "" if none)
    missing: bool = False  # not in the cluster yet


Differ = Callable[[Mapping[str, Any]], list[ResourceDiff]]


def app_source(app: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = app.get("spec") or {}
    return spec.get("source") or next(iter(spec.get("sources") or []), None) or {}



def operation_running(app: Mapping[str, Any]) -> bool:
    return ((app.get("status") or {}).get("operationState") or {}).get("phase") == "Running" or bool(
        app.get("operation"))



def sync_operation(app: Mapping[str, Any], *, revision: str | None, prune: bool,
                   options: Sequence[str], username: str) -> dict[str, Any]:
    """The ``operation`` ``argocd app sync`` writes."""
    source = app_source(app)
    sync: dict[str, Any] = {"revision": revision or str(source.get("targetRevision") or "HEAD")}
    if prune:
        sync["prune"] = True
    if options:
        sync["syncOptions"] = list(options)
    sync["syncStrategy"] = {"hook": {}}
    return {"operation": {"sync": sync, "initiatedBy": {"username": username}}}



def rollback_operation(app: Mapping[str, Any], history_id: int | None, *, prune: bool,
                       username: str) -> dict[str, Any]:
    """The ``operation`` Argo CD's API server writes for ``argocd app rollback`` (AppError if refused)."""
    name = str((app.get("metadata") or {}).get("name") or "")
    spec = app.get("spec") or {}
    if ((spec.get("syncPolicy") or {}).get("automated")) is not None:
        raise AppError(MSG_ROLLBACK_AUTOMATED)
    if operation_running(app):
        raise AppError(MSG_OPERATION_RUNNING.format(name=name))
    history = list((app.get("status") or {}).get("history") or [])
    if history_id is None:
        if len(history) < 2:
            raise AppError(MSG_ROLLBACK_TOO_FEW.format(name=name))
        entry = history[-2]
    else:
        found = [h for h in history if h.get("id") == history_id]
        if not found:
            raise AppError(MSG_ROLLBACK_NO_ID.format(name=name, id=history_id))
        entry = found[0]
    if not entry.get("source") and not entry.get("sources"):
        raise AppError(MSG_ROLLBACK_OLD)
    sync: dict[str, Any] = {}
    if entry.get("sources"):
        sync["revisions"] = list(entry.get("revisions") or [])
        sync["sources"] = list(entry["sources"])
    else:
        sync["revision"] = entry.get("revision")
        sync["source"] = dict(entry["source"])
    if prune:
        sync["prune"] = True
    options = (spec.get("syncPolicy") or {}).get("syncOptions")
    if options:
        sync["syncOptions"] = list(options)
    sync["syncStrategy"] = {"apply": {}}  # what Argo CD's rollback writes: the apply strategy
    return {"operation": {"sync": sync, "initiatedBy": {"username": username}}}


SECRET_SAME = "********"  # a Secret value, equal in the cluster and in Git
SECRET_CHANGED = "++++++++"  # a Secret value Git would change (Argo CD masks diffs the same way)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def masked_secrets(live: Mapping[str, Any] | None, desired: Mapping[str, Any] | None
                   ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Copies of a Secret's two sides with every value masked, so a diff shows which keys differ
    and never what they hold (other kinds come back unchanged).

    A key equal on both sides is ``********`` on both; one that differs is ``********`` live and
    ``++++++++`` in Git; ``kubectl apply``'s last-applied annotation (a copy of the values) too.
    """
    sides = [dict(side) if side is not None else None for side in (live, desired)]
    if not any(side is not None and side.get("kind") == "Secret" and
               str(side.get("apiVersion") or "") == "v1" for side in sides):
        return sides[0], sides[1]
    for field in ("data", "stringData"):
        values = [dict(side.get(field) or {}) if side is not None else {} for side in sides]
        for key in set(values[0]) | set(values[1]):
            same = values[0].get(key) == values[1].get(key)
            for index, side in enumerate(sides):
                if side is not None and key in values[index]:
                    values[index][key] = SECRET_SAME if same or index == 0 else SECRET_CHANGED
        for index, side in enumerate(sides):
            if side is not None and field in side:
                side[field] = values[index]
    for side in sides:
        annotations = ((side or {}).get("metadata") or {}).get("annotations") or {}
        if side is not None and LAST_APPLIED in annotations:
            side["metadata"] = {**side["metadata"], "annotations": {**annotations, LAST_APPLIED: SECRET_SAME}}
    return sides[0], sides[1]


def _dump(obj: Mapping[str, Any] | None) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines(keepends=True)


def kube_differ(api: Any, *, control_namespace: str = DEFAULT_APP_NAMESPACE) -> Differ:
    """The controller's comparison, run here: render from Git, dry-run apply, compare to live."""
    from kubernetes import client

    from gitops.api import parse_application
    from gitops.diff import (
        carry_rollout_fields,
        compare,
        field_manager,
        format_path,
        normalized,
        rollout_fields,
        rules_from_app,
        rules_from_settings,
    )
    from gitops.kube import GitopsKube
    from gitops.plan import (
        ResourceKey,
        hook_phases,
        instance_name,
        key_of,
        split_api_version,
        target_objects,
    )
    from gitops.render import render_source
    from gitops.source import RepoCache, credentials_lookup
    from gitops.webhook import ARGOCD_CM

    kube = GitopsKube(api)

    def repo_secrets(namespace: str) -> list[dict[str, Any]]:
        """Argo CD's repository and repo-creds Secrets of the app namespace (private repos)."""
        listed = client.CoreV1Api(api).list_namespaced_secret(
            namespace, label_selector="argocd.argoproj.io/secret-type in (repository,repo-creds)")
        return [api.sanitize_for_serialization(item) for item in listed.items]

    def differ(body: Mapping[str, Any]) -> list[ResourceDiff]:
        app = parse_application(body)
        source = app.spec.source or (app.spec.sources[0] if app.spec.sources else None)
        if source is None:
            raise AppError("application has no source")
        name = app.metadata.name or ""
        namespace = app.spec.destination.namespace or ""
        app_namespace = str((body.get("metadata") or {}).get("namespace") or "")
        root = Path(tempfile.mkdtemp(prefix="tidegate-app-diff-"))
        try:
            secrets = repo_secrets(str((body.get("metadata") or {}).get("namespace") or ""))
            repos = RepoCache(root, credentials=credentials_lookup(secrets))
            checkout = repos.checkout(source.repo_url, source.target_revision or "HEAD")
            manifests = render_source(source, Path(checkout.path), app_name=name, namespace=namespace)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        versions = {(split_api_version(str(d.get("apiVersion") or ""))[0], str(d.get("kind"))):
                    str(d.get("apiVersion")) for d in manifests}
        # The tracking id's app part as the controller writes it (<ns>_<name> outside its
        # control namespace, which the CLI cannot ask the controller for: --control-namespace).
        instance = instance_name(name, app_namespace, control_namespace)
        targets = target_objects(manifests, app=instance, namespace=namespace,
                                 namespaced=lambda g, k: kube.namespaced(versions.get((g, k), g), k))
        owned = rollout_fields(targets)
        settings = kube.get("v1", ResourceKey("", "ConfigMap", app_namespace, ARGOCD_CM))
        rules = [*rules_from_app(app.spec.ignore_differences),
                 *rules_from_settings((settings or {}).get("data") or {})]
        diffs: list[ResourceDiff] = []
        for doc in targets:
            if hook_phases(doc) is not None:
                continue
            key = key_of(doc)
            live = kube.get(str(doc["apiVersion"]), key)
            if live is None:
                text = "".join(difflib.unified_diff([], _dump(masked_secrets(None, normalized(doc))[1]),
                                                    fromfile="live", tofile="desired"))
                diffs.append(ResourceDiff(kind=key.kind, namespace=key.namespace, name=key.name,
                                          group=key.group, text=text, missing=True))
                continue
            desired = kube.apply(carry_rollout_fields(doc, live, owned), dry_run=True)
            result = compare(desired, live, rules=rules, owned=owned)
            if not result.differs:
                continue
            shown_live, shown_target = masked_secrets(result.live or {}, result.target or {})
            before, after = _dump(shown_live), _dump(shown_target)
            text = "".join(difflib.unified_diff(before, after, fromfile="live", tofile="desired"))
            fields = tuple((format_path(p), field_manager(live, p) or "") for p in result.paths)
            diffs.append(ResourceDiff(kind=key.kind, namespace=key.namespace, name=key.name,
                                      group=key.group, text=text, fields=fields))
        return diffs

    return differ
