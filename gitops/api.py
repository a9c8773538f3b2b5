"""Pydantic models of Argo CD's Application and AppProject (argoproj.io/v1alpha1).

Read by the sync module (``gitops.render`` reads a source's helm, kustomize and
directory settings) and by tests (tests/test_gitops_api.py, tests/test_crds.py)
that check our CRDs and models accept the documents Argo CD users already have. Same rule as
the Rollout models: unknown fields are kept, so ``parse_application(doc).to_json()
== doc`` for every valid document; errors name the object and the field path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, StrictBool, StrictInt

from common.api import (
    KubeModel,
    ObjectMeta,
    parse,
)

API_VERSION = "argoproj.io/v1alpha1"


class HelmParameter(KubeModel):
    name: str
    value: str | None = None
    force_string: StrictBool | None = None


class HelmFileParameter(KubeModel):
    name: str
    path: str


class HelmSource(KubeModel):
    value_files: list[str] | None = None
    ignore_missing_value_files: StrictBool | None = None
    values: str | None = None
    values_object: dict[str, Any] | None = None
    release_name: str | None = None
    parameters: list[HelmParameter] | None = None
    file_parameters: list[HelmFileParameter] | None = None
    skip_crds: StrictBool | None = None
    skip_tests: StrictBool | None = None
    namespace: str | None = None
    kube_version: str | None = None
    api_versions: list[str] | None = None
    version: str | None = None


class KustomizeReplica(KubeModel):
    name: str
    # Argo CD accepts a number or a numeric string.
    count: StrictInt | str


class KustomizeSource(KubeModel):
    name_prefix: str | None = None
    name_suffix: str | None = None
    images: list[str] | None = None
    common_labels: dict[str, str] | None = None
    common_annotations: dict[str, str] | None = None
    force_common_labels: StrictBool | None = None
    force_common_annotations: StrictBool | None = None
    label_without_selector: StrictBool | None = None
    label_include_templates: StrictBool | None = None
    namespace: str | None = None
    replicas: list[KustomizeReplica] | None = None
    components: list[str] | None = None
    patches: list[dict[str, Any]] | None = None
    version: str | None = None


class DirectorySource(KubeModel):
    recurse: StrictBool | None = None
    include: str | None = None
    exclude: str | None = None
    jsonnet: dict[str, Any] | None = None


class ApplicationSource(KubeModel):
    repo_url: str = Field(alias="repoURL")
    target_revision: str | None = None
    path: str | None = None
    chart: str | None = None
    # Multi-source: ``ref`` names this source so that another one's Helm valueFiles
    # can say ``$<ref>/path``; ``name`` is the source's display name.
    ref: str | None = None
    name: str | None = None
    helm: HelmSource | None = None
    kustomize: KustomizeSource | None = None
    directory: DirectorySource | None = None
    plugin: dict[str, Any] | None = None


class ApplicationDestination(KubeModel):
    server: str | None = None
    namespace: str | None = None
    name: str | None = None


class Automated(KubeModel):
    prune: StrictBool | None = None
    self_heal: StrictBool | None = None
    allow_empty: StrictBool | None = None


class Backoff(KubeModel):
    duration: str | None = None
    factor: StrictInt | None = None
    max_duration: str | None = None


class RetryStrategy(KubeModel):
    limit: StrictInt | None = None
    backoff: Backoff | None = None


class SyncPolicy(KubeModel):
    automated: Automated | None = None
    sync_options: list[str] | None = None
    retry: RetryStrategy | None = None


class ApplicationSpec(KubeModel):
    project: str
    source: ApplicationSource | None = None
    sources: list[ApplicationSource] | None = None
    destination: ApplicationDestination
    sync_policy: SyncPolicy | None = None
    ignore_differences: list[dict[str, Any]] | None = None
    revision_history_limit: StrictInt | None = None


class Application(KubeModel):
    api_version: str = API_VERSION
    kind: str = "Application"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ApplicationSpec
    status: dict[str, Any] | None = None


class GroupKind(KubeModel):
    group: str
    kind: str


class ProjectDestination(KubeModel):
    namespace: str | None = None
    server: str | None = None
    name: str | None = None


class AppProjectSpec(KubeModel):
    description: str | None = None
    source_repos: list[str] | None = None
    destinations: list[ProjectDestination] | None = None
    cluster_resource_whitelist: list[GroupKind] | None = None
    cluster_resource_blacklist: list[GroupKind] | None = None
    namespace_resource_whitelist: list[GroupKind] | None = None
    namespace_resource_blacklist: list[GroupKind] | None = None
    roles: list[dict[str, Any]] | None = None
    sync_windows: list[dict[str, Any]] | None = None


class AppProject(KubeModel):
    api_version: str = API_VERSION
    kind: str = "AppProject"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AppProjectSpec = Field(default_factory=AppProjectSpec)
    status: dict[str, Any] | None = None


def parse_application(doc: Mapping[str, Any]) -> Application:
    """Validate an Application; raise SpecError naming the object and the field path."""
    return parse(Application, doc)


def parse_app_project(doc: Mapping[str, Any]) -> AppProject:
    """Validate an AppProject; raise SpecError naming the object and the field path."""
    return parse(AppProject, doc)
