"""PURE: rendered manifests + live state -> the sync plan (phases, waves, prune).

Called by gitops/controller.py on every reconcile that syncs. No I/O: whether a
kind is namespaced comes in as a function (the kube layer answers it from
discovery), live objects come in as a mapping.

Argo CD v3's order (gitops-engine ``sync_tasks.go``):

* phase (PreSync < Sync < PostSync < SyncFail), from ``argocd.argoproj.io/hook``
  for hooks (comma-separated: one task per phase; ``Skip`` is never applied);
  plain resources are in Sync;
* wave (``argocd.argoproj.io/sync-wave``, else ``helm.sh/hook-weight``, else 0);
* Helm's install order of kinds (unknown kinds, i.e. custom resources, last);
* name.

Then a Namespace moves in front of the first task in it, and a CRD in front of
the first resource of its kind, each taking that task's phase and wave.

Prune candidates are live objects whose tracking id
(``argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<ns>/<name>``, where
``<app>`` is ``<namespace>_<app>`` for an Application outside the control
namespace, as Argo CD v3 writes it) names this app and this very object, and that Git no longer has. They are pruned in reverse
wave order (distinct prune waves swapped symmetrically: the highest goes first),
or after everything else with ``PruneLast=true``; ``Prune=false`` on the live
object, or prune switched off for the operation, leaves them ``PruneSkipped``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

HOOK_ANNOTATION = "argocd.argoproj.io/hook"
HOOK_DELETE_POLICY_ANNOTATION = "argocd.argoproj.io/hook-delete-policy"
SYNC_WAVE_ANNOTATION = "argocd.argoproj.io/sync-wave"
HELM_HOOK_WEIGHT_ANNOTATION = "helm.sh/hook-weight"
SYNC_OPTIONS_ANNOTATION = "argocd.argoproj.io/sync-options"
TRACKING_ID_ANNOTATION = "argocd.argoproj.io/tracking-id"
INSTANCE_SEPARATOR = "_"  # <namespace>_<app> for an Application outside the control namespace

HOOK_SKIP = "Skip"
BEFORE_HOOK_CREATION = "BeforeHookCreation"
HOOK_SUCCEEDED = "HookSucceeded"
HOOK_FAILED = "HookFailed"

OPTION_PRUNE_FALSE = "Prune=false"
OPTION_PRUNE_LAST = "PruneLast=true"
OPTION_CREATE_NAMESPACE = "CreateNamespace=true"
OPTION_APPLY_OUT_OF_SYNC_ONLY = "ApplyOutOfSyncOnly=true"

# Helm's install order, which Argo CD uses between resources of one wave.
KIND_ORDER: tuple[str, ...] = (
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap",
    "StorageClass", "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition",
    "ClusterRole", "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList",
    "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
    "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler",
    "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
)
_KIND_RANK = {kind: rank for rank, kind in enumerate(KIND_ORDER)}

# Cluster-scoped kinds Tidegate knows without asking discovery (the default answer
# of ``namespaced`` in pure tests); the controller passes discovery's answer.
CLUSTER_SCOPED_KINDS = frozenset({
    "Namespace", "PersistentVolume", "StorageClass", "CustomResourceDefinition",
    "ClusterRole", "ClusterRoleBinding", "IngressClass", "APIService", "PriorityClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Node",
})


class SyncPhase(StrEnum):
    """Argo CD's sync phases, in the order they run."""

    PRE_SYNC = "PreSync"
    SYNC = "Sync"
    POST_SYNC = "PostSync"
    SYNC_FAIL = "SyncFail"


PHASE_ORDER = {SyncPhase.PRE_SYNC: -1, SyncPhase.SYNC: 0, SyncPhase.POST_SYNC: 1,
               SyncPhase.SYNC_FAIL: 2}


class TaskAction(StrEnum):
    APPLY = "apply"
    PRUNE = "prune"


@dataclass(frozen=True, order=True)
class ResourceKey:
    """One object: its API group ("" for core), kind, namespace ("" if cluster-scoped), name."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.group}/{self.kind}/{self.namespace}/{self.name}".lstrip("/")


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` -> ("apps", "v1"); ``v1`` -> ("", "v1")."""
    group, _, version = api_version.rpartition("/")
    return group, version


def key_of(doc: Mapping[str, Any]) -> ResourceKey:
    meta = doc.get("metadata") or {}
    group, _ = split_api_version(str(doc.get("apiVersion") or ""))
    return ResourceKey(group=group, kind=str(doc.get("kind") or ""),
                       namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""))


def instance_name(name: str, namespace: str, control_namespace: str) -> str:
    """The app part of a tracking id (Argo CD v3's InstanceName): ``<app>`` for an Application
    in the control namespace, ``<namespace>_<app>`` for one in another application namespace
    (``_`` is in neither a namespace nor an object name, so the split back is unambiguous)."""
    return name if not namespace or namespace == control_namespace else f"{namespace}{INSTANCE_SEPARATOR}{name}"


def app_of_instance(instance: str, control_namespace: str) -> tuple[str, str]:
    """The (namespace, name) of the Application an instance name (``instance_name``) stands for."""
    namespace, separator, name = instance.partition(INSTANCE_SEPARATOR)
    return (namespace, name) if separator and namespace and name else (control_namespace, instance)


def tracking_id(app: str, key: ResourceKey) -> str:
    """Argo CD v3's annotation value: ``<app>:<group>/<kind>:<namespace>/<name>``.

    ``app`` is the instance name (``instance_name``), not always the bare Application name.
    """
    return f"{app}:{key.group}/{key.kind}:{key.namespace}/{key.name}"


def parse_tracking_id(value: str) -> tuple[str, ResourceKey] | None:
    """The app (its instance name: ``app_of_instance`` maps it back) and the object a tracking id
    names; None if it is not one."""
    try:
        app, group_kind, ns_name = value.split(":", 2)
        group, kind = group_kind.split("/", 1)
        namespace, name = ns_name.split("/", 1)
    except ValueError:
        return None
    if not app or not kind or not name:
        return None
    return app, ResourceKey(group=group, kind=kind, namespace=namespace, name=name)


def annotations_of(doc: Mapping[str, Any]) -> Mapping[str, str]:
    return ((doc.get("metadata") or {}).get("annotations")) or {}


def sync_options(doc: Mapping[str, Any]) -> frozenset[str]:
    """The per-resource ``argocd.argoproj.io/sync-options`` (comma-separated)."""
    text = str(annotations_of(doc).get(SYNC_OPTIONS_ANNOTATION) or "")
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def is_tracked_by(live: Mapping[str, Any], app: str) -> bool:
    """True if ``live`` carries this app's tracking id and the id names ``live`` itself.

    A copied object keeps the annotation but names another object: Argo CD does
    not count it (no "self-reference"), nor do we.
    """
    parsed = parse_tracking_id(str(annotations_of(live).get(TRACKING_ID_ANNOTATION) or ""))
    return parsed is not None and parsed[0] == app and parsed[1] == key_of(live)


def wave_of(doc: Mapping[str, Any]) -> int:
    """The sync wave; a value that is not an integer counts as 0 (Argo CD does the same)."""
    notes = annotations_of(doc)
    text = notes.get(SYNC_WAVE_ANNOTATION, notes.get(HELM_HOOK_WEIGHT_ANNOTATION, "0"))
    try:
        return int(str(text).strip())
    except ValueError:
        return 0


def hook_phases(doc: Mapping[str, Any]) -> tuple[SyncPhase, ...] | None:
    """The phases of a hook (empty for ``Skip``); None for a plain resource."""
    text = annotations_of(doc).get(HOOK_ANNOTATION)
    if text is None:
        return None
    phases: list[SyncPhase] = []
    for part in str(text).split(","):
        try:
            phases.append(SyncPhase(part.strip()))
        except ValueError:
            continue  # Skip, PreDelete/PostDelete: not run by a sync
    return tuple(phases)


def hook_delete_policies(doc: Mapping[str, Any]) -> tuple[str, ...]:
    text = str(annotations_of(doc).get(HOOK_DELETE_POLICY_ANNOTATION) or BEFORE_HOOK_CREATION)
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _default_namespaced(group: str, kind: str) -> bool:
    return kind not in CLUSTER_SCOPED_KINDS


@dataclass(frozen=True)
class Task:
    """One thing a sync does to one object."""

    key: ResourceKey
    api_version: str
    action: TaskAction
    phase: SyncPhase
    wave: int
    manifest: Mapping[str, Any] | None = None  # what to apply (None for a prune)
    hook: bool = False
    hook_delete_policies: tuple[str, ...] = ()
    tracked: bool = True  # False: the namespace CreateNamespace makes (Argo CD does not track it)

    def sort_key(self) -> tuple[int, int, int, str]:
        return (PHASE_ORDER[self.phase], self.wave, _KIND_RANK.get(self.key.kind, len(KIND_ORDER)),
                self.key.name)


@dataclass(frozen=True)
class Step:
    """The tasks of one (phase, wave): applied together, the next step waits for their health."""

    phase: SyncPhase
    wave: int
    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class SyncPlan:
    steps: tuple[Step, ...]
    sync_fail: tuple[Task, ...] = ()  # SyncFail hooks: run only when the sync fails
    prune_skipped: tuple[Task, ...] = ()  # would be pruned, but prune is off or Prune=false
    namespace_created: str | None = None

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(task for step in self.steps for task in step.tasks)


@dataclass(frozen=True)
class PlanOptions:
    """The operation's switches (from syncPolicy.syncOptions / operation.sync)."""

    prune: bool = False
    prune_last: bool = False
    create_namespace: bool = False
    apply_out_of_sync_only: bool = False
    out_of_sync: frozenset[ResourceKey] = field(default_factory=frozenset)
    # A sync of selected resources (Argo CD's ``operation.sync.resources``, what a self-heal
    # sync does): only those are applied or pruned, and no hook runs.
    only: frozenset[ResourceKey] | None = None


def options_from(sync_options_list: Iterable[str] | None, *, prune: bool) -> PlanOptions:
    opts = {item.strip() for item in (sync_options_list or ())}
    return PlanOptions(prune=prune, prune_last=OPTION_PRUNE_LAST in opts,
                       create_namespace=OPTION_CREATE_NAMESPACE in opts,
                       apply_out_of_sync_only=OPTION_APPLY_OUT_OF_SYNC_ONLY in opts)


def target_objects(manifests: Sequence[Mapping[str, Any]], *, app: str, namespace: str,
                   namespaced: Callable[[str, str], bool] = _default_namespaced,
                   ) -> list[dict[str, Any]]:
    """The manifests as they will be applied: destination namespace filled, tracking id set.

    A namespaced resource without a namespace gets the destination's; a
    cluster-scoped one loses any namespace it was given (Argo CD does both).
    Hooks get no tracking id: they are never pruned.
    """
    out: list[dict[str, Any]] = []
    for doc in manifests:
        obj = dict(doc)
        meta = dict(obj.get("metadata") or {})
        group, _ = split_api_version(str(obj.get("apiVersion") or ""))
        if namespaced(group, str(obj.get("kind") or "")):
            meta.setdefault("namespace", namespace)
            if not meta["namespace"]:
                meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        obj["metadata"] = meta
        if hook_phases(obj) is None:
            notes = dict(meta.get("annotations") or {})
            notes[TRACKING_ID_ANNOTATION] = tracking_id(app, key_of(obj))
            meta["annotations"] = notes
        out.append(obj)
    return out


def _hook_name(doc: Mapping[str, Any], *, revision: str, phase: SyncPhase, started_at: int) -> str:
    meta = doc.get("metadata") or {}
    if meta.get("name"):
        return str(meta["name"])
    return f"{meta.get('generateName', '')}{revision[:7]}-{phase.value.lower()}-{started_at}"


def _apply_tasks(targets: Sequence[Mapping[str, Any]], *, revision: str, started_at: int,
                 options: PlanOptions) -> list[Task]:
    tasks: list[Task] = []
    for doc in targets:
        phases = hook_phases(doc)
        if phases is not None and options.only is not None:
            continue
        if phases is None:
            key = key_of(doc)
            if options.apply_out_of_sync_only and key not in options.out_of_sync:
                continue
            if options.only is not None and key not in options.only:
                continue
            tasks.append(Task(key=key, api_version=str(doc["apiVersion"]), action=TaskAction.APPLY,
                              phase=SyncPhase.SYNC, wave=wave_of(doc), manifest=doc))
            continue
        for phase in phases:
            name = _hook_name(doc, revision=revision, phase=phase, started_at=started_at)
            manifest = {**doc, "metadata": {**(doc.get("metadata") or {}), "name": name}}
            manifest["metadata"].pop("generateName", None)
            tasks.append(Task(key=key_of(manifest), api_version=str(doc["apiVersion"]),
                              action=TaskAction.APPLY, phase=phase, wave=wave_of(doc),
                              manifest=manifest, hook=True,
                              hook_delete_policies=hook_delete_policies(doc)))
    return tasks


def _move_dependencies_first(tasks: list[Task]) -> list[Task]:
    """A Namespace (a CRD) takes the phase and wave of the first task in it (of its kind)."""
    ordered = sorted(tasks, key=Task.sort_key)
    result = list(ordered)
    for index, task in enumerate(ordered):
        if task.hook:
            continue
        if task.key.kind == "Namespace" and task.key.group == "":
            users = [t for t in ordered if t.key.namespace == task.key.name and not
                     (t.key.kind == "Namespace" and t.key.group == "")]
        elif task.key.kind == "CustomResourceDefinition":
            crd_kind = str(((task.manifest or {}).get("spec") or {}).get("names", {}).get("kind", ""))
            crd_group = str(((task.manifest or {}).get("spec") or {}).get("group", ""))
            users = [t for t in ordered if t.key.kind == crd_kind and t.key.group == crd_group]
        else:
            continue
        if users and users[0].sort_key()[:2] < task.sort_key()[:2]:
            result[index] = replace(task, phase=users[0].phase, wave=users[0].wave)
    return sorted(result, key=Task.sort_key)


def _prune_tasks(live: Mapping[ResourceKey, Mapping[str, Any]], target_keys: set[ResourceKey], *,
                 app: str, options: PlanOptions, last_sync_wave: int,
                 ) -> tuple[list[Task], list[Task]]:
    normal: list[Task] = []
    last: list[Task] = []
    skipped: list[Task] = []
    for key, obj in sorted(live.items()):
        if key in target_keys or not is_tracked_by(obj, app) or hook_phases(obj) is not None:
            continue
        if options.only is not None and key not in options.only:
            continue
        task = Task(key=key, api_version=str(obj.get("apiVersion") or ""), action=TaskAction.PRUNE,
                    phase=SyncPhase.SYNC, wave=wave_of(obj))
        if not options.prune or OPTION_PRUNE_FALSE in sync_options(obj):
            skipped.append(task)
        elif options.prune_last or OPTION_PRUNE_LAST in sync_options(obj):
            last.append(replace(task, wave=last_sync_wave + 1))
        else:
            normal.append(task)
    # Reverse wave order: the distinct prune waves swapped symmetrically, highest first.
    waves = sorted({task.wave for task in normal})
    mirror = dict(zip(waves, reversed(waves), strict=True))
    return [replace(task, wave=mirror[task.wave]) for task in normal] + last, skipped


def build_plan(manifests: Sequence[Mapping[str, Any]], live: Mapping[ResourceKey, Mapping[str, Any]],
               *, app: str, namespace: str, options: PlanOptions, revision: str = "",
               started_at: int = 0, namespace_exists: bool = True) -> SyncPlan:
    """The whole sync of ``manifests`` (as from ``target_objects``) against ``live``.

    ``live`` holds the live objects Tidegate knows of (targets and previously
    managed objects), keyed by ``ResourceKey``. ``namespace_exists`` tells
    whether the destination namespace is already there (CreateNamespace).
    """
    tasks = _apply_tasks(manifests, revision=revision, started_at=started_at, options=options)
    target_keys = {key_of(doc) for doc in manifests}
    sync_waves = [t.wave for t in tasks if t.phase is SyncPhase.SYNC]
    pruned, skipped = _prune_tasks(live, target_keys, app=app, options=options,
                                   last_sync_wave=max(sync_waves, default=0))
    tasks.extend(pruned)
    created: str | None = None
    namespace_key = ResourceKey(group="", kind="Namespace", namespace="", name=namespace)
    if (options.create_namespace and namespace and not namespace_exists
            and namespace_key not in target_keys):
        created = namespace
        first_wave = min((t.wave for t in tasks if t.phase is SyncPhase.PRE_SYNC), default=0)
        tasks.append(Task(key=namespace_key, api_version="v1", action=TaskAction.APPLY,
                          phase=SyncPhase.PRE_SYNC, wave=first_wave, tracked=False,
                          manifest={"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": namespace}}))
    ordered = _move_dependencies_first(tasks)
    sync_fail = tuple(task for task in ordered if task.phase is SyncPhase.SYNC_FAIL)
    steps: list[Step] = []
    for task in ordered:
        if task.phase is SyncPhase.SYNC_FAIL:
            continue
        if steps and (steps[-1].phase, steps[-1].wave) == (task.phase, task.wave):
            steps[-1] = Step(phase=task.phase, wave=task.wave, tasks=(*steps[-1].tasks, task))
        else:
            steps.append(Step(phase=task.phase, wave=task.wave, tasks=(task,)))
    return SyncPlan(steps=tuple(steps), sync_fail=sync_fail, prune_skipped=tuple(skipped), namespace_created=created)
