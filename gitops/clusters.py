"""Destination clusters: Argo CD's cluster Secrets, resolved per Application, one API client each.

Called by gitops/handlers.py (it feeds the Secrets in, from a watch of the
control namespace) and by gitops/controller.py (``Clusters.target``: once per
reconcile, the cluster the Application's destination names and the port that
talks to it).

A cluster Secret is Argo CD's: labelled ``argocd.argoproj.io/secret-type:
cluster`` in the control namespace, with data ``name``, ``server``, ``config``
(JSON: ``bearerToken`` or ``username``/``password``, ``tlsClientConfig``
{``insecure``, ``caData``, ``certData``, ``keyData``, ``serverName``}) and
optionally ``namespaces`` (comma-separated: the cluster is then managed in
namespaced mode) and ``clusterResources``. Only the control namespace is read,
as Argo CD does: a tenant who may write Secrets in an application namespace must
not be able to point the controller's credentials elsewhere.

The destination ``https://kubernetes.default.svc`` (``name: in-cluster``) is the
controller's own cluster, unless a Secret names that server (then its name and,
if it has credentials, its credentials are used, as Argo CD does).

Credentials never leave this module: the dataclasses keep them out of ``repr``,
the log lines name only the Secret, and every message a status may carry is
one of the named ones below. CA, client certificate and key are written to
files only because the kubernetes client reads them from files; they live in a
private directory (0700, files 0600) removed when the client is dropped (the
Secret changed or went away).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from common.logging import get_logger
from gitops.kube import REQUEST_TIMEOUT_SECONDS, GitopsKube, GitopsPort, KubeError
from gitops.plan import ResourceKey
from gitops.watch import CachedPort, DriftWatcher

log = get_logger("tidegate.gitops.clusters")

SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"
SECRET_TYPE_CLUSTER = "cluster"
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
IN_CLUSTER_NAME = "in-cluster"
CONFIG_MAX_BYTES = 256 * 1024  # a cluster config is a few KiB; a Secret is at most 1 MiB
FIRST_LIST_WAIT_SECONDS = 15.0  # a reconcile waits this long for the first listing of the Secrets

# Argo CD v3's messages (util/argo GetDestinationCluster and the db's NotFound).
MSG_BOTH = "application destination can't have both name and server defined: {name} {server}"
MSG_NO_SERVER = ('error getting cluster by server "{server}": rpc error: code = NotFound '
                 'desc = cluster "{server}" not found')
MSG_NO_NAME = "there are no clusters with this name: {name}"
MSG_SAME_NAME = "there are {count} clusters with the same name: [{servers}]"
MSG_MISSING = "Destination server missing from app spec"
# Argo CD's namespaced-mode refusals (gitops-engine's cluster cache).
MSG_NOT_MANAGED = 'namespace "{namespace}" for {kind} "{name}" is not managed'
MSG_CLUSTER_LEVEL = 'cluster level {kind} "{name}" can not be managed when in namespaced mode'
# Our own: what a broken Secret says (never a value of it).
MSG_BAD_SECRET = "cluster secret {secret}: {reason}"
MSG_NO_SERVER_KEY = "data.server is missing"
MSG_BAD_CONFIG = "data.config is not a JSON object"
MSG_BAD_FIELD = "data.config.{field} is not valid base64"
MSG_TOO_BIG = "data.config is larger than {limit} bytes"
MSG_UNSUPPORTED_AUTH = "data.config.{field} is not supported (use bearerToken or username/password)"
MSG_UNUSABLE = "cluster {server} (secret {secret}) is not usable: {reason}"


class DestinationError(Exception):
    """The destination names no known cluster (the message is Argo CD's)."""


@dataclass(frozen=True)
class TLSClientConfig:
    insecure: bool = False
    server_name: str = ""
    ca_data: bytes = field(default=b"", repr=False)
    cert_data: bytes = field(default=b"", repr=False)
    key_data: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class ClusterConfig:
    username: str = ""
    password: str = field(default="", repr=False)
    bearer_token: str = field(default="", repr=False)
    tls: TLSClientConfig = TLSClientConfig()

    @property
    def has_credentials(self) -> bool:
        return bool(self.bearer_token or self.username or self.tls.cert_data)


@dataclass(frozen=True)
class Cluster:
    """One destination cluster; equal when nothing (credentials included) changed."""

    server: str
    name: str
    config: ClusterConfig = ClusterConfig()
    namespaces: tuple[str, ...] = ()  # namespaced mode: only these namespaces are managed
    cluster_resources: bool = False  # namespaced mode: cluster-scoped kinds allowed too
    secret: str = ""  # "namespace/name" of the Secret; "" for the built-in in-cluster

    @property
    def is_home(self) -> bool:
        """Reached with the controller's own client (Argo CD's in-cluster without credentials)."""
        return _same_server(self.server, IN_CLUSTER_SERVER) and not self.config.has_credentials


HOME = Cluster(server=IN_CLUSTER_SERVER, name=IN_CLUSTER_NAME)


def _same_server(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _decode(data: Mapping[str, Any], key: str) -> str:
    raw = data.get(key)
    if raw is None:
        return ""
    try:
        return base64.b64decode(str(raw), validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def _pem(config: Mapping[str, Any], key: str) -> bytes:
    """caData/certData/keyData: base64 in the JSON (Go's []byte)."""
    value = config.get(key)
    if not value:
        return b""
    try:
        return base64.b64decode(str(value), validate=True)
    except binascii.Error as exc:
        raise ValueError(MSG_BAD_FIELD.format(field=f"tlsClientConfig.{key}")) from exc


def parse_config(text: str) -> ClusterConfig:
    """The ``config`` JSON of a cluster Secret; ValueError names the field, never its value."""
    if len(text.encode()) > CONFIG_MAX_BYTES:
        raise ValueError(MSG_TOO_BIG.format(limit=CONFIG_MAX_BYTES))
    try:
        doc = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise ValueError(MSG_BAD_CONFIG) from exc
    if not isinstance(doc, dict):
        raise ValueError(MSG_BAD_CONFIG)
    for unsupported in ("execProviderConfig", "awsAuthConfig"):
        if doc.get(unsupported):
            raise ValueError(MSG_UNSUPPORTED_AUTH.format(field=unsupported))
    tls = doc.get("tlsClientConfig") or {}
    if not isinstance(tls, dict):
        raise ValueError(MSG_BAD_CONFIG)
    return ClusterConfig(
        username=str(doc.get("username") or ""), password=str(doc.get("password") or ""),
        bearer_token=str(doc.get("bearerToken") or ""),
        tls=TLSClientConfig(insecure=bool(tls.get("insecure")), server_name=str(tls.get("serverName") or ""),
                            ca_data=_pem(tls, "caData"), cert_data=_pem(tls, "certData"),
                            key_data=_pem(tls, "keyData")))


def parse_secret(secret: Mapping[str, Any]) -> Cluster:
    """A cluster Secret as a ``Cluster``; ValueError says what is wrong (naming the Secret only)."""
    meta = secret.get("metadata") or {}
    ident = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    data = secret.get("data") or {}
    try:
        server = _decode(data, "server")
        if not server:
            raise ValueError(MSG_NO_SERVER_KEY)
        config = parse_config(_decode(data, "config"))
    except ValueError as exc:
        raise ValueError(MSG_BAD_SECRET.format(secret=ident, reason=exc)) from None
    name = _decode(data, "name") or (IN_CLUSTER_NAME if _same_server(server, IN_CLUSTER_SERVER) else "")
    namespaces = tuple(sorted({n.strip() for n in _decode(data, "namespaces").split(",") if n.strip()}))
    return Cluster(server=server, name=name, config=config, namespaces=namespaces,
                   cluster_resources=_decode(data, "clusterResources").lower() == "true", secret=ident)


def known_clusters(secrets: Iterable[Cluster]) -> list[Cluster]:
    """The Secrets' clusters, plus the built-in in-cluster unless a Secret names its server."""
    out = list(secrets)
    if not any(_same_server(c.server, IN_CLUSTER_SERVER) for c in out):
        out.append(HOME)
    return out


def resolve(clusters: Sequence[Cluster], *, server: str | None, name: str | None) -> Cluster:
    """The cluster a destination names (Argo CD v3's GetDestinationCluster, its messages)."""
    if server and name:
        raise DestinationError(MSG_BOTH.format(name=name, server=server))
    if server:
        for cluster in clusters:
            if _same_server(cluster.server, server):
                return cluster
        raise DestinationError(MSG_NO_SERVER.format(server=server))
    if name:
        named = [c for c in clusters if c.name == name]
        if not named:
            raise DestinationError(MSG_NO_NAME.format(name=name))
        if len(named) > 1:
            raise DestinationError(MSG_SAME_NAME.format(count=len(named),
                                                        servers=" ".join(c.server for c in named)))
        return named[0]
    raise DestinationError(MSG_MISSING)


# --- the clients ---------------------------------------------------------------------------


class Watcher(Protocol):
    """gitops.watch.DriftWatcher, as far as the registry uses it."""

    def ensure(self, api_version: str, kind: str) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class ClusterTarget:
    """What one reconcile talks to: the resolved cluster's identity, its port and its drift watch."""

    server: str
    name: str
    kube: GitopsPort
    watch: Callable[[str, str], None]


class ScopedPort:
    """A port in Argo CD's namespaced mode: objects outside the Secret's namespaces are refused."""

    def __init__(self, inner: GitopsPort, cluster: Cluster) -> None:
        self.inner = inner
        self.namespaces = frozenset(cluster.namespaces)
        self.cluster_resources = cluster.cluster_resources

    def _check(self, api_version: str, key: ResourceKey) -> None:
        if not key.namespace:
            if not self.cluster_resources and self.inner.namespaced(api_version, key.kind) is False:
                raise KubeError(MSG_CLUSTER_LEVEL.format(kind=key.kind, name=key.name))
            return
        if key.namespace not in self.namespaces:
            raise KubeError(MSG_NOT_MANAGED.format(namespace=key.namespace, kind=key.kind, name=key.name))

    def namespaced(self, api_version: str, kind: str) -> bool:
        return self.inner.namespaced(api_version, kind)

    def get(self, api_version: str, key: ResourceKey) -> dict[str, Any] | None:
        self._check(api_version, key)
        return self.inner.get(api_version, key)

    def apply(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        meta = manifest.get("metadata") or {}
        api_version = str(manifest.get("apiVersion") or "")
        group = api_version.rpartition("/")[0]
        self._check(api_version, ResourceKey(group=group, kind=str(manifest.get("kind") or ""),
                                             namespace=str(meta.get("namespace") or ""),
                                             name=str(meta.get("name") or "")))
        return self.inner.apply(manifest, dry_run=dry_run)

    def delete(self, api_version: str, key: ResourceKey, *, propagation: str = "Foreground") -> None:
        self._check(api_version, key)
        self.inner.delete(api_version, key, propagation=propagation)

    def patch_application(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        raise KubeError("Applications are written on the controller's own cluster")  # never called


class _Files:
    """CA / client certificate / key as files (the kubernetes client reads only files)."""

    def __init__(self) -> None:
        self.dir = ""

    def write(self, name: str, data: bytes) -> str:
        if not self.dir:
            self.dir = tempfile.mkdtemp(prefix="tidegate-cluster-")  # 0700
        path = os.path.join(self.dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return path

    def remove(self) -> None:
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""


@dataclass
class Connection:
    """An API client for one cluster and what hangs off it; closed when the Secret changes."""

    api: Any
    files: _Files = field(default_factory=_Files)

    def close(self) -> None:
        try:
            self.api.close()
        except Exception:  # noqa: BLE001 - a pool that fails to close is dropped anyway
            pass
        self.files.remove()


def connect(cluster: Cluster, *, pool_size: int = 8) -> Connection:
    """A kubernetes ApiClient for ``cluster`` from its Secret's config (never logged)."""
    conf = client.Configuration()
    conf.host = cluster.server.rstrip("/")
    files = _Files()
    tls = cluster.config.tls
    conf.verify_ssl = not tls.insecure
    if tls.ca_data:
        conf.ssl_ca_cert = files.write("ca.crt", tls.ca_data)
    if tls.cert_data:
        conf.cert_file = files.write("client.crt", tls.cert_data)
    if tls.key_data:
        conf.key_file = files.write("client.key", tls.key_data)
    if tls.server_name:
        conf.tls_server_name = tls.server_name
    if cluster.config.bearer_token:
        conf.api_key = {"authorization": cluster.config.bearer_token}
        conf.api_key_prefix = {"authorization": "Bearer"}
    elif cluster.config.username:
        conf.username, conf.password = cluster.config.username, cluster.config.password
        conf.api_key = {"authorization": conf.get_basic_auth_token()}
    conf.connection_pool_maxsize = pool_size
    return Connection(api=client.ApiClient(configuration=conf), files=files)


@dataclass
class _Live:
    cluster: Cluster
    connection: Connection
    target: ClusterTarget
    watcher: Watcher | None


class Clusters:
    """The registry: the Secrets seen, and one client (and drift watcher) per cluster in use.

    ``update`` is called with every Secret event; ``target`` (from worker
    threads) resolves a destination and builds the cluster's client on first
    use, again when its Secret changed. A reconcile that comes before the first
    listing of the Secrets waits for it (else an Application naming a cluster
    would flap to "no clusters with this name" at every start).
    """

    def __init__(self, *, home: GitopsPort, home_watch: Callable[[str, str], None] = lambda v, k: None,
                 connector: Callable[[Cluster], Connection] = connect,
                 port: Callable[[Any], GitopsPort] = GitopsKube,
                 watcher: Callable[[Cluster, Any], Watcher] | None = None,
                 listed: bool = True) -> None:
        self.home = home
        self.home_watch = home_watch
        self.connector = connector
        self.port = port
        self.watcher = watcher
        self._lock = threading.Lock()
        self._secrets: dict[str, Cluster] = {}  # "namespace/name" -> its cluster (broken ones left out)
        self._live: dict[str, _Live] = {}  # "namespace/name" -> the client in use
        self._listed = threading.Event()
        if listed:
            self._listed.set()

    # --- the Secrets -----------------------------------------------------------------------

    def update(self, secret_id: str, secret: Mapping[str, Any] | None) -> None:
        """A cluster Secret was added or changed (``secret``) or deleted (None)."""
        cluster: Cluster | None = None
        if secret is not None:
            try:
                cluster = parse_secret(secret)
            except ValueError as exc:
                log.info("gitops: cluster secret ignored", secret=secret_id, reason=str(exc))
        with self._lock:
            if cluster is None:
                self._secrets.pop(secret_id, None)
            else:
                self._secrets[secret_id] = cluster
            live = self._live.get(secret_id)
            if live is not None and live.cluster != cluster:
                del self._live[secret_id]
            else:
                live = None
        if live is not None:
            self._close(live)

    def replace_all(self, secrets: Mapping[str, Mapping[str, Any]]) -> None:
        """A fresh listing: Secrets not in it are gone; then the registry counts as listed."""
        with self._lock:
            gone = [key for key in self._secrets if key not in secrets]
        for key in gone:
            self.update(key, None)
        for key, secret in secrets.items():
            self.update(key, secret)
        self._listed.set()

    def mark_listed(self) -> None:
        """The listing failed: stop holding reconciles back (they resolve with what is known)."""
        self._listed.set()

    def clusters(self) -> list[Cluster]:
        with self._lock:
            return known_clusters(sorted(self._secrets.values(), key=lambda c: c.secret))

    # --- the targets -----------------------------------------------------------------------

    def target(self, *, server: str | None, name: str | None) -> ClusterTarget:
        """The cluster a destination names, with its port (DestinationError: Argo CD's message)."""
        self._listed.wait(FIRST_LIST_WAIT_SECONDS)
        cluster = resolve(self.clusters(), server=server, name=name)
        if cluster.is_home:
            return ClusterTarget(server=cluster.server, name=cluster.name, kube=self.home,
                                 watch=self.home_watch)
        with self._lock:
            live = self._live.get(cluster.secret)
            if live is not None and live.cluster == cluster:
                return live.target
        built = self._build(cluster)
        with self._lock:
            current = self._live.get(cluster.secret)
            if self._secrets.get(cluster.secret) == cluster and (current is None or current.cluster != cluster):
                self._live[cluster.secret] = built
                stale, keep = current, built
            else:  # another thread won, or the Secret changed meanwhile: use theirs, drop ours
                stale, keep = built, current or built
        if stale is not None and stale is not keep:
            self._close(stale)
        return keep.target

    def _build(self, cluster: Cluster) -> _Live:
        try:
            connection = self.connector(cluster)
        except Exception as exc:  # noqa: BLE001 - a bad PEM or URL: the reconcile reports it
            raise DestinationError(MSG_UNUSABLE.format(server=cluster.server, secret=cluster.secret,
                                                       reason=type(exc).__name__)) from None
        port: GitopsPort = self.port(connection.api)
        watcher = self.watcher(cluster, connection.api) if self.watcher is not None else None
        if isinstance(watcher, DriftWatcher):
            port = CachedPort(port, watcher)  # live state from the watch (gitops/watch.py)
        if cluster.namespaces:
            port = ScopedPort(port, cluster)
        watch: Callable[[str, str], None] = watcher.ensure if watcher is not None else (lambda v, k: None)
        log.info("gitops: cluster client created", server=cluster.server, cluster=cluster.name,
                 secret=cluster.secret)
        return _Live(cluster=cluster, connection=connection, watcher=watcher,
                     target=ClusterTarget(server=cluster.server, name=cluster.name, kube=port, watch=watch))

    @staticmethod
    def _close(live: _Live) -> None:
        if live.watcher is not None:
            live.watcher.stop()
        live.connection.close()

    def close(self) -> None:
        with self._lock:
            lives, self._live = list(self._live.values()), {}
        for live in lives:
            self._close(live)


def home_only(home: GitopsPort, watch: Callable[[str, str], None] = lambda v, k: None,
              ) -> Callable[[Any], ClusterTarget]:
    """A ``kube_for`` that knows only the controller's own cluster (no Secrets)."""
    registry = Clusters(home=home, home_watch=watch)
    return lambda dest: registry.target(server=dest.server, name=dest.name)


# --- the Secrets' watch --------------------------------------------------------------------

WATCH_TIMEOUT_SECONDS = 240
RETRY_SECONDS = 2.0


class SecretWatch:
    """Lists and watches the cluster Secrets of the control namespace (a daemon thread)."""

    def __init__(self, api: Any, namespace: str, registry: Clusters,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.registry = registry
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="gitops-cluster-secrets")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        selector = f"{SECRET_TYPE_LABEL}={SECRET_TYPE_CLUSTER}"
        while not self._stop.is_set():
            try:
                listing = self.core.list_namespaced_secret(self.namespace, label_selector=selector,
                                                           _request_timeout=REQUEST_TIMEOUT_SECONDS)
                self.registry.replace_all({
                    f"{self.namespace}/{item.metadata.name}": self.core.api_client.sanitize_for_serialization(item)
                    for item in listing.items})
                self.on_change()
                version = listing.metadata.resource_version
                stream = watch.Watch()
                for event in stream.stream(self.core.list_namespaced_secret, self.namespace,
                                           label_selector=selector, resource_version=version,
                                           timeout_seconds=WATCH_TIMEOUT_SECONDS,
                                           _request_timeout=WATCH_TIMEOUT_SECONDS + 30):
                    if self._stop.is_set():
                        return
                    raw = event.get("raw_object") or {}
                    if event.get("type") == "ERROR":
                        break  # expired: list again
                    key = f"{self.namespace}/{(raw.get('metadata') or {}).get('name', '')}"
                    self.registry.update(key, None if event.get("type") == "DELETED" else raw)
                    self.on_change()
            except ApiException as exc:
                log.info("gitops: cluster secrets watch failed, retrying", namespace=self.namespace,
                         status=exc.status)
                self.registry.mark_listed()
                self._stop.wait(RETRY_SECONDS)
            except Exception as exc:  # noqa: BLE001 - the watch thread must not die silently
                log.info("gitops: cluster secrets watch failed, retrying", namespace=self.namespace,
                         error=type(exc).__name__)
                self.registry.mark_listed()
                self._stop.wait(RETRY_SECONDS)
