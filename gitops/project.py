"""PURE: AppProject enforcement, as Argo CD v3's ``app_project_types.go`` decides it.

Called by gitops/controller.py: the source repos and the destination before any
sync (a violation is an ``InvalidSpecError`` condition, and an operation fails
with it), each task's group/kind and namespace before the first apply of an
operation (a violation marks that task ``SyncFailed``, and the operation fails
with "one or more synchronization tasks are not valid" before anything is
created). No I/O: the AppProject comes in as a document.

* ``sourceRepos``: normalized URLs matched with globs whose separator is ``/``
  (``*`` stays in one path segment, ``**`` crosses them; the single pattern
  ``*`` matches everything). Allowed when an allow pattern matches and no
  ``!deny`` pattern rejects it.
* ``destinations``: ``server`` or ``name`` glob and ``namespace`` glob (no
  separator), each may be a ``!deny`` pattern.
* resources: namespaced kinds are allowed when ``namespaceResourceWhitelist``
  is unset (set but empty: none), cluster-scoped kinds only when listed in
  ``clusterResourceWhitelist``; the blacklists subtract. Group and kind are
  shell patterns (Go's ``filepath.Match``).
* A missing ``default`` project is Argo CD's default one: everything allowed.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

DEFAULT_PROJECT = "default"

MSG_REPO = "application repo {repo} is not permitted in project '{project}'"
MSG_DESTINATION = ("application destination server '{server}' and namespace '{namespace}' do not match "
                   "any of the allowed destinations in project '{project}'")
MSG_RESOURCE = "resource {group}:{kind} is not permitted in project {project}"
MSG_NAMESPACE = "namespace {namespace} is not permitted in project '{project}'"
MSG_MISSING = "Application referencing project {project} which does not exist"
MSG_TASKS_INVALID = "one or more synchronization tasks are not valid"


@lru_cache(maxsize=512)
def _compile(pattern: str, separator: str) -> re.Pattern[str]:
    """A gobwas/glob pattern as a regex: ``*`` (not across the separator), ``**``, ``?``, ``[..]``, ``{a,b}``."""
    any_char = f"[^{re.escape(separator)}]" if separator else "."
    out: list[str] = []
    i, depth = 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append(f"{any_char}*")
        elif char == "?":
            out.append(any_char)
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif char == "{":
            out.append("(?:")
            depth += 1
        elif char == "}" and depth:
            out.append(")")
            depth -= 1
        elif char == "," and depth:
            out.append("|")
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    try:
        return re.compile("".join(out) + r"\Z", re.DOTALL)
    except re.error:
        return re.compile(r"(?!)")  # an invalid pattern matches nothing, as a glob that does not compile


def _is_deny(pattern: str) -> bool:
    return pattern.startswith("!")


def glob_match(pattern: str, value: str, *, allow_negation: bool = False, separator: str = "") -> bool:
    """Argo CD's ``globMatch``: a ``!pattern`` matches whatever the pattern does not."""
    if allow_negation and _is_deny(pattern):
        return not glob_match(pattern[1:], value, separator=separator)
    if pattern == "*":
        return True
    return _compile(pattern, separator).match(value) is not None


def normalize_git_url(url: str) -> str:
    """Argo CD's ``NormalizeGitURL``: lower case, no ``.git``, no trailing slash, ``ssh://`` for scp form."""
    repo = url.strip().lower()
    if re.match(r"^[\w.-]+@[\w.-]+:(?!//)", repo):
        repo = "ssh://" + repo.replace(":", "/", 1)
    repo = repo.removesuffix(".git")
    return repo.rstrip("/")


@dataclass(frozen=True)
class GroupKind:
    group: str
    kind: str


@dataclass(frozen=True)
class Destination:
    server: str = ""
    name: str = ""
    namespace: str = ""


@dataclass(frozen=True)
class Project:
    """The AppProject fields enforcement reads (``None``: the list is unset)."""

    name: str
    source_repos: tuple[str, ...] = ()
    destinations: tuple[Destination, ...] = ()
    cluster_whitelist: tuple[GroupKind, ...] | None = None
    cluster_blacklist: tuple[GroupKind, ...] | None = None
    namespace_whitelist: tuple[GroupKind, ...] | None = None
    namespace_blacklist: tuple[GroupKind, ...] | None = None

    def source_permitted(self, repo_url: str) -> bool:
        url = normalize_git_url(repo_url)
        any_matched = False
        for pattern in self.source_repos:
            normalized = ("!" + normalize_git_url(pattern[1:])) if _is_deny(pattern) else normalize_git_url(pattern)
            if pattern == "*":
                normalized = "*"
            matched = glob_match(normalized, url, allow_negation=True, separator="/")
            if matched:
                any_matched = True
            elif _is_deny(normalized):
                return False
        return any_matched

    def destination_permitted(self, dest: Destination) -> bool:
        any_matched = False
        for item in self.destinations:
            name_matched = bool(dest.name) and glob_match(item.name, dest.name, allow_negation=True)
            server_matched = bool(dest.server) and glob_match(item.server, dest.server, allow_negation=True)
            namespace_matched = glob_match(item.namespace, dest.namespace, allow_negation=True)
            if (server_matched or name_matched) and namespace_matched:
                any_matched = True
            elif ((not name_matched and _is_deny(item.name))
                  or (not server_matched and _is_deny(item.server))) and namespace_matched:
                return False
            elif not namespace_matched and _is_deny(item.namespace) and server_matched:
                return False
        return any_matched

    def group_kind_permitted(self, group: str, kind: str, *, namespaced: bool) -> bool:
        if namespaced:
            white, black = self.namespace_whitelist, self.namespace_blacklist
            listed = white is None or (len(white) > 0 and _in_list(group, kind, white))
        else:
            white, black = self.cluster_whitelist, self.cluster_blacklist
            listed = bool(white) and _in_list(group, kind, white or ())
        return listed and not (black and _in_list(group, kind, black))


def _in_list(group: str, kind: str, items: Sequence[GroupKind]) -> bool:
    return any(fnmatch.fnmatchcase(kind, item.kind) and fnmatch.fnmatchcase(group, item.group)
               for item in items)


OPEN_PROJECT = Project(name=DEFAULT_PROJECT, source_repos=("*",),
                       destinations=(Destination(server="*", name="*", namespace="*"),),
                       cluster_whitelist=(GroupKind("*", "*"),))


def _group_kinds(value: Any) -> tuple[GroupKind, ...] | None:
    if value is None:
        return None
    return tuple(GroupKind(group=str(item.get("group") or ""), kind=str(item.get("kind") or ""))
                 for item in value if isinstance(item, Mapping))


def project_from(doc: Mapping[str, Any] | None, name: str) -> Project | None:
    """The Project of an AppProject document; the open default one for a missing ``default``; else None."""
    if doc is None:
        return OPEN_PROJECT if name == DEFAULT_PROJECT else None
    spec = doc.get("spec") or {}
    destinations = tuple(
        Destination(server=str(d.get("server") or ""), name=str(d.get("name") or ""),
                    namespace=str(d.get("namespace") or ""))
        for d in spec.get("destinations") or [] if isinstance(d, Mapping))
    return Project(
        name=name,
        source_repos=tuple(str(r) for r in spec.get("sourceRepos") or []),
        destinations=destinations,
        cluster_whitelist=_group_kinds(spec.get("clusterResourceWhitelist")),
        cluster_blacklist=_group_kinds(spec.get("clusterResourceBlacklist")),
        namespace_whitelist=_group_kinds(spec.get("namespaceResourceWhitelist")),
        namespace_blacklist=_group_kinds(spec.get("namespaceResourceBlacklist")),
    )


def spec_violations(project: Project, repo_urls: Sequence[str], dest: Destination) -> list[str]:
    """Argo CD's ``ValidatePermissions`` messages for the sources and the destination ([] when allowed)."""
    errors = [MSG_REPO.format(repo=url, project=project.name)
              for url in repo_urls if not project.source_permitted(url)]
    if not project.destination_permitted(dest):
        errors.append(MSG_DESTINATION.format(server=dest.server or dest.name, namespace=dest.namespace,
                                             project=project.name))
    return errors


def resource_violation(project: Project, *, group: str, kind: str, namespace: str, namespaced: bool,
                       server: str, name: str = "") -> str:
    """Argo CD's ``validateSyncPermissions`` message for one task ("" when allowed)."""
    if not project.group_kind_permitted(group, kind, namespaced=namespaced):
        return MSG_RESOURCE.format(group=group, kind=kind, project=project.name)
    if namespaced and not project.destination_permitted(
            Destination(server=server, name=name, namespace=namespace)):
        return MSG_NAMESPACE.format(namespace=namespace, project=project.name)
    return ""
