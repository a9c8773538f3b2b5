"""gitops/project.py: AppProject enforcement as Argo CD v3 decides it, table by table."""

from __future__ import annotations

from typing import Any

import pytest

from gitops.project import (
    OPEN_PROJECT,
    Destination,
    GroupKind,
    Project,
    glob_match,
    normalize_git_url,
    project_from,
    resource_violation,
    spec_violations,
)

SERVER = "https://kubernetes.default.svc"


@pytest.mark.parametrize(("pattern", "value", "separator", "expected"), [
    ("*", "https://github.com/org/repo", "/", True),
    ("https://github.com/org/*", "https://github.com/org/repo", "/", True),
    ("https://github.com/org/*", "https://github.com/org/team/repo", "/", False),
    ("https://github.com/org/**", "https://github.com/org/team/repo", "/", True),
    ("https://github.com/org/re?o", "https://github.com/org/repo", "/", True),
    ("https://github.com/{org,other}/repo", "https://github.com/other/repo", "/", True),
    ("team-*", "team-a", "", True),
    ("team-*", "other", "", False),
    ("prod-[ab]", "prod-b", "", True),
    ("prod-[!ab]", "prod-b", "", False),
])
def test_glob(pattern: str, value: str, separator: str, expected: bool) -> None:
    assert glob_match(pattern, value, separator=separator) is expected


def test_negation() -> None:
    assert glob_match("!kube-system", "default", allow_negation=True)
    assert not glob_match("!kube-system", "kube-system", allow_negation=True)


@pytest.mark.parametrize(("url", "normalized"), [
    ("https://GitHub.com/Org/Repo.git", "https://github.com/org/repo"),
    ("https://github.com/org/repo/", "https://github.com/org/repo"),
    ("git@github.com:org/repo.git", "ssh://git@github.com/org/repo"),
    ("file:///tmp/x/repo.git", "file:///tmp/x/repo"),
])
def test_normalize(url: str, normalized: str) -> None:
    assert normalize_git_url(url) == normalized


@pytest.mark.parametrize(("repos", "url", "allowed"), [
    (("*",), "https://github.com/any/repo", True),
    (("https://github.com/org/*",), "https://github.com/org/repo.git", True),
    (("https://github.com/org/*",), "https://github.com/evil/repo", False),
    (("*", "!https://github.com/org/secret"), "https://github.com/org/secret", False),
    (("*", "!https://github.com/org/secret"), "https://github.com/org/open", True),
    # as Argo CD's code: a deny pattern that does not match counts as a match
    (("!https://github.com/org/secret",), "https://github.com/org/open", True),
    ((), "https://github.com/org/open", False),
    (("file:///tmp/**",), "file:///tmp/a/b/repo.git", True),
])
def test_source_repos(repos: tuple[str, ...], url: str, allowed: bool) -> None:
    assert Project("p", source_repos=repos).source_permitted(url) is allowed


D = Destination


@pytest.mark.parametrize(("destinations", "dest", "allowed"), [
    ((D(server="*", namespace="*"),), D(server=SERVER, namespace="a"), True),
    ((D(server=SERVER, namespace="team-*"),), D(server=SERVER, namespace="team-a"), True),
    ((D(server=SERVER, namespace="team-*"),), D(server=SERVER, namespace="other"), False),
    ((D(server="https://other", namespace="*"),), D(server=SERVER, namespace="a"), False),
    ((D(name="in-cluster", namespace="*"),), D(server=SERVER, name="in-cluster", namespace="a"), True),
    ((D(server="*", namespace="!kube-system"), D(server="*", namespace="*")),
     D(server=SERVER, namespace="kube-system"), False),
    ((D(server="*", namespace="!kube-system"), D(server="*", namespace="*")),
     D(server=SERVER, namespace="apps"), True),
    ((D(server="!https://prod", namespace="*"), D(server="*", namespace="*")),
     D(server="https://prod", namespace="a"), False),
    ((), D(server=SERVER, namespace="a"), False),
])
def test_destinations(destinations: tuple[Destination, ...], dest: Destination, allowed: bool) -> None:
    assert Project("p", destinations=destinations).destination_permitted(dest) is allowed


G = GroupKind


@pytest.mark.parametrize(("project", "group", "kind", "namespaced", "allowed"), [
    (Project("p"), "apps", "Deployment", True, True),  # namespace whitelist unset: all
    (Project("p", namespace_whitelist=()), "apps", "Deployment", True, False),  # set but empty: none
    (Project("p", namespace_whitelist=(G("apps", "*"),)), "apps", "Deployment", True, True),
    (Project("p", namespace_whitelist=(G("apps", "*"),)), "", "ConfigMap", True, False),
    (Project("p", namespace_blacklist=(G("", "Secret"),)), "", "Secret", True, False),
    (Project("p", namespace_blacklist=(G("", "Secret"),)), "", "ConfigMap", True, True),
    (Project("p"), "", "Namespace", False, False),  # cluster whitelist empty: none
    (Project("p", cluster_whitelist=(G("", "Namespace"),)), "", "Namespace", False, True),
    (Project("p", cluster_whitelist=(G("*", "*"),), cluster_blacklist=(G("rbac.authorization.k8s.io", "*"),)),
     "rbac.authorization.k8s.io", "ClusterRole", False, False),
    (OPEN_PROJECT, "apiextensions.k8s.io", "CustomResourceDefinition", False, True),
])
def test_resource_lists(project: Project, group: str, kind: str, namespaced: bool, allowed: bool) -> None:
    assert project.group_kind_permitted(group, kind, namespaced=namespaced) is allowed


def doc(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": "team", "namespace": "argocd"}, "spec": spec}


def test_messages_are_argo_cds() -> None:
    project = project_from(doc(sourceRepos=["https://github.com/org/*"],
                               destinations=[{"server": SERVER, "namespace": "team-*"}],
                               namespaceResourceBlacklist=[{"group": "", "kind": "Secret"}]), "team")
    assert project is not None
    assert spec_violations(project, ["https://github.com/evil/x"], D(server=SERVER, namespace="prod")) == [
        "application repo https://github.com/evil/x is not permitted in project 'team'",
        "application destination server 'https://kubernetes.default.svc' and namespace 'prod' do not match "
        "any of the allowed destinations in project 'team'"]
    assert resource_violation(project, group="", kind="Secret", namespace="team-a", namespaced=True,
                              server=SERVER) == "resource :Secret is not permitted in project team"
    assert resource_violation(project, group="rbac.authorization.k8s.io", kind="ClusterRole", namespace="",
                              namespaced=False, server=SERVER) == (
        "resource rbac.authorization.k8s.io:ClusterRole is not permitted in project team")
    assert resource_violation(project, group="", kind="ConfigMap", namespace="kube-system", namespaced=True,
                              server=SERVER) == "namespace kube-system is not permitted in project 'team'"
    assert resource_violation(project, group="", kind="ConfigMap", namespace="team-a", namespaced=True,
                              server=SERVER) == ""


def test_missing_projects() -> None:
    assert project_from(None, "default") is OPEN_PROJECT
    assert project_from(None, "team") is None
