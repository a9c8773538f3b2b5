"""gitops/clusters.py and the tracking ids across application namespaces, without a cluster.

Cluster Secrets parsed as Argo CD writes them (and the broken ones refused
without echoing a credential), destinations resolved with Argo CD v3's
messages, one client per cluster rebuilt when its Secret changes, namespaced
mode, the controller syncing through the resolved cluster's port, and the
tracking id ``<namespace>_<app>`` written and mapped back by the drift watch.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gitops import clusters as clusters_module
from gitops.api import ApplicationSource
from gitops.clusters import (
    HOME,
    IN_CLUSTER_SERVER,
    Cluster,
    ClusterConfig,
    Clusters,
    Connection,
    DestinationError,
    ScopedPort,
    TLSClientConfig,
    connect,
    known_clusters,
    parse_secret,
    resolve,
)
from gitops.controller import AppController, Settings
from gitops.kube import KubeError
from gitops.plan import (
    TRACKING_ID_ANNOTATION,
    ResourceKey,
    app_of_instance,
    instance_name,
    parse_tracking_id,
    tracking_id,
)
from gitops.watch import DriftWatcher, tracked_app
from tests.test_gitops_controller import FakeKube, FakeRepos

TOKEN = "s3cr3t-token-value"
PASSWORD = "hunter2-password"
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def secret(name: str, server: str, config: Mapping[str, Any] | str | None = None, *,
           cluster_name: str | None = None, **extra: str) -> dict[str, Any]:
    data = {"server": b64(server)}
    if cluster_name is not None:
        data["name"] = b64(cluster_name)
    if config is not None:
        data["config"] = b64(config if isinstance(config, str) else json.dumps(config))
    data.update({k: b64(v) for k, v in extra.items()})
    return {"metadata": {"name": name, "namespace": "argocd",
                         "labels": {"argocd.argoproj.io/secret-type": "cluster"}}, "data": data}


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(("doc", "expected"), [
    pytest.param(secret("s", "https://a:6443", {"bearerToken": TOKEN, "tlsClientConfig": {"caData": b64(CA)}},
                        cluster_name="a"),
                 Cluster(server="https://a:6443", name="a", secret="argocd/s",
                         config=ClusterConfig(bearer_token=TOKEN, tls=TLSClientConfig(ca_data=CA))),
                 id="bearer-token-and-ca"),
    pytest.param(secret("s", "https://b", {"username": "u", "password": PASSWORD,
                                           "tlsClientConfig": {"insecure": True, "serverName": "api.b"}},
                        cluster_name="b"),
                 Cluster(server="https://b", name="b", secret="argocd/s",
                         config=ClusterConfig(username="u", password=PASSWORD,
                                              tls=TLSClientConfig(insecure=True, server_name="api.b"))),
                 id="basic-auth-insecure-sni"),
    pytest.param(secret("s", "https://c", {"tlsClientConfig": {"certData": b64(b"C"), "keyData": b64(b"K")}},
                        cluster_name="c", namespaces="team-b, team-a,", clusterResources="true"),
                 Cluster(server="https://c", name="c", secret="argocd/s", namespaces=("team-a", "team-b"),
                         cluster_resources=True,
                         config=ClusterConfig(tls=TLSClientConfig(cert_data=b"C", key_data=b"K"))),
                 id="client-cert-namespaced-mode"),
    pytest.param(secret("s", IN_CLUSTER_SERVER),
                 Cluster(server=IN_CLUSTER_SERVER, name="in-cluster", secret="argocd/s"),
                 id="in-cluster-without-a-name-keeps-its-name"),
])
def test_cluster_secrets_parse_as_argo_cd_writes_them(doc: dict[str, Any], expected: Cluster) -> None:
    assert parse_secret(doc) == expected


@pytest.mark.parametrize(("doc", "reason"), [
    pytest.param({"metadata": {"name": "s", "namespace": "argocd"}, "data": {}}, "data.server is missing",
                 id="no-server"),
    pytest.param(secret("s", "https://a", f"{{not json {TOKEN}"), "data.config is not a JSON object",
                 id="config-not-json"),
    pytest.param(secret("s", "https://a", {"bearerToken": TOKEN, "tlsClientConfig": {"caData": "%%%"}}),
                 "data.config.tlsClientConfig.caData is not valid base64", id="ca-not-base64"),
    pytest.param(secret("s", "https://a", {"execProviderConfig": {"command": "x"}, "bearerToken": TOKEN}),
                 "data.config.execProviderConfig is not supported", id="exec-provider"),
])
def test_a_broken_secret_is_refused_naming_it_never_its_values(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match="cluster secret argocd/s: ") as info:
        parse_secret(doc)
    assert reason in str(info.value)
    assert TOKEN not in str(info.value)


def test_credentials_stay_out_of_repr() -> None:
    cluster = parse_secret(secret("s", "https://a", {"bearerToken": TOKEN, "password": PASSWORD,
                                                     "tlsClientConfig": {"keyData": b64(b"KEYDATA")}}))
    text = repr(cluster)
    assert "https://a" in text
    assert TOKEN not in text and PASSWORD not in text and "KEYDATA" not in text


# --- resolving a destination ---------------------------------------------------------------

A = Cluster(server="https://a:6443", name="a", secret="argocd/a")
A2 = Cluster(server="https://a2:6443", name="a", secret="argocd/a2")
RENAMED_HOME = Cluster(server=IN_CLUSTER_SERVER, name="local", secret="argocd/home")


@pytest.mark.parametrize(("secrets", "server", "name", "expected"), [
    pytest.param([], IN_CLUSTER_SERVER, None, HOME, id="in-cluster-by-server"),
    pytest.param([], None, "in-cluster", HOME, id="in-cluster-by-name"),
    pytest.param([A], None, "a", A, id="secret-by-name"),
    pytest.param([A], "https://a:6443/", None, A, id="secret-by-server-trailing-slash"),
    pytest.param([RENAMED_HOME], None, "local", RENAMED_HOME, id="secret-overrides-in-cluster"),
    pytest.param([], None, "nowhere", "there are no clusters with this name: nowhere", id="unknown-name"),
    pytest.param([], "https://x", None,
                 'error getting cluster by server "https://x": rpc error: code = NotFound '
                 'desc = cluster "https://x" not found', id="unknown-server"),
    pytest.param([RENAMED_HOME], None, "in-cluster", "there are no clusters with this name: in-cluster",
                 id="in-cluster-name-gone-once-overridden"),
    pytest.param([A, A2], None, "a", "there are 2 clusters with the same name: [https://a:6443 https://a2:6443]",
                 id="same-name-twice"),
    pytest.param([A], "https://a:6443", "a",
                 "application destination can't have both name and server defined: a https://a:6443",
                 id="both-name-and-server"),
    pytest.param([], None, None, "Destination server missing from app spec", id="neither"),
])
def test_destinations_resolve_with_argo_cds_messages(secrets: list[Cluster], server: str | None,
                                                     name: str | None, expected: Cluster | str) -> None:
    known = known_clusters(secrets)
    if isinstance(expected, Cluster):
        assert resolve(known, server=server, name=name) == expected
    else:
        with pytest.raises(DestinationError) as info:
            resolve(known, server=server, name=name)
        assert str(info.value) == expected


# --- the registry: one client per cluster ---------------------------------------------------


class FakeApi:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeWatcher:
    def __init__(self) -> None:
        self.kinds: list[tuple[str, str]] = []
        self.stopped = False

    def ensure(self, api_version: str, kind: str) -> None:
        self.kinds.append((api_version, kind))

    def stop(self) -> None:
        self.stopped = True


class Registry:
    def __init__(self) -> None:
        self.home = FakeKube()
        self.apis: list[FakeApi] = []
        self.ports: dict[int, FakeKube] = {}
        self.watchers: list[FakeWatcher] = []
        self.home_kinds: list[tuple[str, str]] = []
        self.clusters = Clusters(home=self.home, home_watch=lambda v, k: self.home_kinds.append((v, k)),
                                 connector=self.connect, port=self.port, watcher=self.watcher)

    def connect(self, cluster: Cluster) -> Connection:
        self.apis.append(FakeApi(cluster))
        return Connection(api=self.apis[-1])

    def port(self, api: Any) -> FakeKube:
        return self.ports.setdefault(id(api), FakeKube())

    def watcher(self, cluster: Cluster, api: Any) -> FakeWatcher:
        self.watchers.append(FakeWatcher())
        return self.watchers[-1]


def test_a_cluster_gets_one_client_rebuilt_only_when_its_secret_changes() -> None:
    reg = Registry()
    reg.clusters.update("argocd/a", secret("a", "https://a", {"bearerToken": "one"}, cluster_name="a"))
    first = reg.clusters.target(server=None, name="a")
    assert reg.clusters.target(server="https://a", name=None) is first
    assert len(reg.apis) == 1 and first.kube is not reg.home

    reg.clusters.update("argocd/a", secret("a", "https://a", {"bearerToken": "one"}, cluster_name="a"))
    assert not reg.apis[0].closed  # the same content (a resync) keeps the client

    reg.clusters.update("argocd/a", secret("a", "https://a", {"bearerToken": "two"}, cluster_name="a"))
    assert reg.apis[0].closed and reg.watchers[0].stopped
    second = reg.clusters.target(server=None, name="a")
    assert second is not first and len(reg.apis) == 2
    assert reg.apis[1].cluster.config.bearer_token == "two"

    reg.clusters.update("argocd/a", None)
    assert reg.apis[1].closed
    with pytest.raises(DestinationError, match="there are no clusters with this name: a"):
        reg.clusters.target(server=None, name="a")


def test_in_cluster_is_the_controllers_own_client_unless_a_secret_gives_credentials() -> None:
    reg = Registry()
    home = reg.clusters.target(server=IN_CLUSTER_SERVER, name=None)
    assert home.kube is reg.home and reg.apis == []
    home.watch("v1", "ConfigMap")
    assert reg.home_kinds == [("v1", "ConfigMap")]

    reg.clusters.update("argocd/home", secret("home", IN_CLUSTER_SERVER, cluster_name="local"))
    renamed = reg.clusters.target(server=None, name="local")
    assert renamed.kube is reg.home and renamed.name == "local" and reg.apis == []

    reg.clusters.update("argocd/home", secret("home", IN_CLUSTER_SERVER, {"bearerToken": TOKEN},
                                              cluster_name="local"))
    assert reg.clusters.target(server=None, name="local").kube is not reg.home
    assert len(reg.apis) == 1


def test_a_broken_secret_is_logged_by_name_only_and_names_no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    monkeypatch.setattr(clusters_module.log, "info",
                        lambda event, **fields: lines.append(f"{event} {fields}"))
    reg = Registry()
    reg.clusters.update("argocd/bad", secret("bad", "https://bad", f"{{{TOKEN}", cluster_name="bad"))
    assert lines and "argocd/bad" in lines[0]
    assert all(TOKEN not in line for line in lines)
    with pytest.raises(DestinationError, match="no clusters with this name: bad"):
        reg.clusters.target(server=None, name="bad")


def test_a_listing_drops_the_secrets_it_no_longer_has() -> None:
    reg = Registry()
    reg.clusters.replace_all({"argocd/a": secret("a", "https://a", cluster_name="a"),
                              "argocd/b": secret("b", "https://b", cluster_name="b")})
    reg.clusters.target(server=None, name="a")
    reg.clusters.replace_all({"argocd/b": secret("b", "https://b", cluster_name="b")})
    assert reg.apis[0].closed
    assert [c.name for c in reg.clusters.clusters()] == ["b", "in-cluster"]


# --- namespaced mode ------------------------------------------------------------------------


def cm(name: str, namespace: str = "") -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


@pytest.mark.parametrize(("manifest", "cluster_resources", "error"), [
    pytest.param(cm("c", "team-a"), False, "", id="listed-namespace"),
    pytest.param(cm("c", "other"), False, 'namespace "other" for ConfigMap "c" is not managed',
                 id="unlisted-namespace"),
    pytest.param({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}, False,
                 'cluster level Namespace "n" can not be managed when in namespaced mode',
                 id="cluster-scoped-refused"),
    pytest.param({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}, True, "",
                 id="cluster-scoped-with-clusterResources"),
])
def test_namespaced_mode_refuses_what_the_secret_does_not_list(manifest: dict[str, Any],
                                                               cluster_resources: bool, error: str) -> None:
    inner = FakeKube()
    port = ScopedPort(inner, Cluster(server="https://a", name="a", namespaces=("team-a",),
                                     cluster_resources=cluster_resources))
    if error:
        with pytest.raises(KubeError, match=error):
            port.apply(manifest)
        assert inner.applied == []
    else:
        port.apply(manifest)
        assert inner.applied == [manifest["metadata"]["name"]]


# --- the client ----------------------------------------------------------------------------


def test_the_client_carries_the_secrets_credentials_and_its_files_are_private() -> None:
    cluster = Cluster(server="https://a:6443/", name="a", config=ClusterConfig(
        bearer_token=TOKEN, tls=TLSClientConfig(ca_data=CA, server_name="api.a")))
    connection = connect(cluster)
    conf = connection.api.configuration
    try:
        assert conf.host == "https://a:6443"
        assert conf.auth_settings()["BearerToken"]["value"] == f"Bearer {TOKEN}"
        assert conf.verify_ssl and conf.tls_server_name == "api.a"
        assert Path(conf.ssl_ca_cert).read_bytes() == CA
        assert stat.S_IMODE(os.stat(conf.ssl_ca_cert).st_mode) == 0o600
    finally:
        connection.close()
    assert not Path(conf.ssl_ca_cert).exists()


def test_basic_auth_becomes_an_authorization_header() -> None:
    connection = connect(Cluster(server="https://b", name="b",
                                 config=ClusterConfig(username="u", password=PASSWORD)))
    try:
        value = connection.api.configuration.auth_settings()["BearerToken"]["value"]
        assert value == "Basic " + b64(f"u:{PASSWORD}")
    finally:
        connection.close()


# --- tracking ids across application namespaces ----------------------------------------------


@pytest.mark.parametrize(("name", "namespace", "instance"), [
    pytest.param("app", "argocd", "app", id="control-namespace-bare-name"),
    pytest.param("app", "team-a", "team-a_app", id="other-namespace-prefixed"),
    pytest.param("app", "", "app", id="no-namespace"),
])
def test_instance_names_round_trip(name: str, namespace: str, instance: str) -> None:
    assert instance_name(name, namespace, "argocd") == instance
    assert app_of_instance(instance, "argocd") == (namespace or "argocd", name)


def test_the_drift_watch_maps_a_tracking_id_to_the_application_in_its_namespace() -> None:
    key = ResourceKey("", "ConfigMap", "dest", "c")
    seen: list[tuple[str, str]] = []
    watcher = DriftWatcher(None, seen.append, control_namespace="argocd")
    for app, namespace in (("app", "argocd"), ("app", "team-a")):
        obj = {"metadata": {"uid": namespace, "annotations": {
            TRACKING_ID_ANNOTATION: tracking_id(instance_name(app, namespace, "argocd"), key)}}}
        assert tracked_app(obj, "argocd") == (namespace, app)
        watcher._event("DELETED", obj, initial=False)
    assert seen == [("argocd", "app"), ("team-a", "app")]


# --- the controller through a resolved cluster ------------------------------------------------


class Env:
    """An Application whose destination names cluster ``remote``: its objects go to the remote port."""

    def __init__(self, destination: dict[str, str], *, namespace: str = "argocd",
                 project: dict[str, Any] | None = None) -> None:
        self.reg = Registry()
        self.reg.clusters.update("argocd/remote", secret("remote", "https://remote:6443",
                                                         {"bearerToken": TOKEN}, cluster_name="remote"))
        self.home = self.reg.home
        self.key = (namespace, "app")
        self.projects = {(namespace, "default"): {"metadata": {"name": "default"}, "spec": project}} if project else {}
        self.home.app = {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {"project": "default", "source": {"repoURL": "file:///repo", "path": "."},
                     "destination": {**destination, "namespace": "dest"},
                     "syncPolicy": {"automated": {"prune": True}}},
        }
        self.manifests = [cm("c")]
        self.repos = FakeRepos()
        self.controller = AppController(
            kube=self.home, repos=self.repos, render=self.render, source_errors=(ValueError,),
            settings=Settings(control_namespace="argocd"),
            projects=lambda ns, name: self.projects.get((ns, name)),
            kube_for=lambda dest: self.reg.clusters.target(server=dest.server, name=dest.name))

    def render(self, source: ApplicationSource, root: Path, *, app_name: str,
               namespace: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.manifests)

    def reconcile(self) -> None:
        self.controller.reconcile(self.key, copy.deepcopy(self.home.app))

    @property
    def remote(self) -> FakeKube:
        return next(iter(self.reg.ports.values()))

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.home.app.get("status") or {})


@pytest.mark.parametrize("destination", [
    pytest.param({"name": "remote"}, id="by-name"),
    pytest.param({"server": "https://remote:6443"}, id="by-server"),
])
def test_an_app_syncs_through_the_cluster_its_destination_names(destination: dict[str, str]) -> None:
    env = Env(destination)
    env.reconcile()
    env.reconcile()
    assert env.remote.applied == ["c"] and env.home.applied == []
    assert env.status["operationState"]["phase"] == "Succeeded"
    assert set(env.reg.watchers[0].kinds) == {("v1", "ConfigMap")} and env.reg.home_kinds == []


def test_an_unknown_cluster_is_an_invalid_spec_and_nothing_is_applied() -> None:
    env = Env({"name": "nowhere"})
    env.home.app["operation"] = {"sync": {}}
    env.reconcile()
    assert env.status["conditions"][0]["type"] == "InvalidSpecError"
    assert env.status["conditions"][0]["message"] == "there are no clusters with this name: nowhere"
    assert env.status["operationState"]["phase"] == "Error"
    assert env.reg.apis == [] and env.home.applied == []


def test_the_project_checks_the_resolved_server_of_a_named_destination() -> None:
    env = Env({"name": "remote"}, project={"sourceRepos": ["*"], "destinations": [
        {"server": "https://elsewhere", "namespace": "*"}]})
    env.reconcile()
    assert env.status["conditions"][0]["message"].startswith(
        "application destination server 'https://remote:6443' and namespace 'dest' do not match")
    assert env.remote.applied == []


def test_an_app_outside_the_control_namespace_writes_and_prunes_by_its_prefixed_id() -> None:
    env = Env({"name": "remote"}, namespace="team-a")
    env.manifests = [cm("c"), cm("gone")]
    env.reconcile()
    env.reconcile()
    live = env.remote.objects[ResourceKey("", "ConfigMap", "dest", "c")]
    parsed = parse_tracking_id(live["metadata"]["annotations"][TRACKING_ID_ANNOTATION])
    assert parsed is not None and parsed[0] == "team-a_app"
    env.manifests, env.repos.commit = [cm("c")], "b" * 40  # a commit removing "gone"
    env.reconcile()
    env.reconcile()
    assert env.remote.deleted == ["gone"]
