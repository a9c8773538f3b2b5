"""Pydantic models of Argo CD's Application and AppProject (argoproj.io/v1alpha1).

Today read only by tests (tests/test_gitops_api.py, tests/test_crds.py) that
check our CRDs and models accept the documents Argo CD users already have; the
sync module that will read it (this package, ``gitops``) is not written yet. Same rule as
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


class HelmSource(KubeModel):
    value_files: list[str] | None = None
    values: str | None = None
    values_object: dict[str, Any] | None = None
    release_name: str | None = None
    parameters: list[dict[str, Any]] | None = None


class ApplicationSource(KubeModel):
    repo_url: str = Field(alias="repoURL")
    target_revision: str | None = None
    path: str | None = None
    chart: str | None = None
    helm: HelmSource | None = None
    kustomize: dict[str, Any] | None = None
    directory: dict[str, Any] | None = None


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
