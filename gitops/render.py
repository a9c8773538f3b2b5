"""An Application source's files to the manifests it stands for, as Argo CD renders them.

Who calls it: the sync module's reconcile, once per source, with the tree
``gitops.source.RepoCache.checkout`` returned (``root``) and, for multi-source
Applications, the trees of the ``ref:`` sources (``value_roots``, by ref name,
for Helm ``valueFiles: [$values/...]``). It returns plain dicts; tracking,
namespaces and diffing are the caller's.

The tool, as Argo CD picks it (its tool detection): the one the source names
(``helm``, ``kustomize``, ``directory``); otherwise ``Chart.yaml`` in the path
means Helm, a ``kustomization.yaml``/``.yml``/``Kustomization`` means kustomize,
anything else a plain directory.

* Directory: ``.yaml``/``.yml``/``.json`` files (top level, or every level with
  ``recurse``), ``include``/``exclude`` globs on the path relative to the source
  path (``{a,b}`` alternatives as Argo CD), multi-document YAML, empty documents
  skipped, ``kind: List`` expanded.
* Kustomize: ``kustomize build``. The Application's overrides (images,
  namePrefix/nameSuffix, commonLabels/commonAnnotations, namespace, replicas,
  components) are applied with ``kustomize edit``, and its ``patches`` appended
  to the kustomization, in a private copy in a scratch directory, as Argo CD
  does; the shared checkout is never written (the copy hard-links every file but
  those a tool writes). Before building, every local path a kustomization names
  (resources, components, patches, generator files, ...; followed through the
  bases it includes) must resolve inside the checkout: ``../..`` past the root,
  absolute paths and symlinks out are a RenderError naming the file and field.
* Helm: ``helm template`` with the release name (default: the Application's
  name), ``--namespace``, valueFiles in order (missing ones skipped with
  ``ignoreMissingValueFiles``; globs expanded), then ``values`` or
  ``valuesObject`` (the latter wins, as in Argo CD), then ``parameters``
  (``--set``, or ``--set-string`` with ``forceString``) and ``fileParameters``;
  CRDs included unless ``skipCrds``. A chart with ``file://`` dependencies
  (inside the repository) gets ``helm dependency build`` in a scratch copy first.
* Helm repository (``chart`` + an http(s) ``repoURL``): ``helm pull --repo`` of
  ``targetRevision`` (a version or a range) into a ``ChartCache`` kept by URL,
  chart and version, under the render deadline and a size cap, then rendered as
  above (``$ref/...`` valueFiles work as for a chart in Git).

Nothing from the repository runs: kustomize without plugins, exec functions or
its Helm inflator; Helm with an empty plugin directory and no post-renderer;
value and parameter files must lie inside the repository they come from. Each
tool has a deadline and an output cap (``gitops.proc``); its error is a
``RenderError`` whose message is the tool's stderr, bounded.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gitops import proc
from gitops.api import ApplicationSource, DirectorySource, HelmSource, KustomizeSource

DEFAULT_TIMEOUT_S = 90.0
MANIFEST_OUTPUT_LIMIT = 64 * 1024 * 1024
# A plain directory is read into memory; past this many bytes it is refused.
MAX_DIRECTORY_BYTES = 64 * 1024 * 1024
MESSAGE_LIMIT = 4000
# A chart from a Helm repository: the unpacked chart past this many bytes is refused.
MAX_CHART_BYTES = 64 * 1024 * 1024
# Where charts pulled from Helm repositories are kept, by repo URL, chart and version
# (a version is immutable in a Helm repository); TIDEGATE_CHART_CACHE moves it.
CHART_CACHE_ENV = "TIDEGATE_CHART_CACHE"
_CHART_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# An exact chart version (no range): only those are cached; a range is pulled each time.
_EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]*)?$")

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
PRIVATE_FILES = frozenset({*KUSTOMIZATION_FILES, "Chart.lock", "requirements.lock"})
HELM_CHART_FILE = "Chart.yaml"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_GLOB_CHARS = re.compile(r"[*?\[]")

# kustomize build: no plugins of any kind, no Helm inflator (it would run helm on
# a chart the repository names, with flags the repository chose).
KUSTOMIZE_BUILD_FLAGS = ("--enable-alpha-plugins=false", "--enable-exec=false",
                         "--enable-helm=false")

MSG_PATH_OUTSIDE = "{what} {path!r} is outside the repository"
MSG_PATH_MISSING = "app path {path!r} does not exist"
MSG_MULTIPLE_TOOLS = "multiple application sources defined: {tools}"
MSG_PLUGIN = "config management plugins are not supported: the source names plugin {name!r}"
MSG_CHART_REPO = ("chart {chart!r}: repoURL {url!r} is not a Helm repository over http(s) "
                  "(OCI registries are not supported yet)")
MSG_CHART_TOO_LARGE = "chart {chart!r} {version} from {url} unpacks to more than {limit} bytes"
MSG_CHART_NAME = "chart {chart!r} is not a chart name"
MSG_DEPENDENCY_OUTSIDE = "Chart.yaml dependency {name!r}: repository {repo!r} is outside the repository"
MSG_KUSTOMIZE_OUTSIDE = "{file}: {field} {path!r} is outside the repository"
MSG_KUSTOMIZE_PATCH = "kustomize.patches[{index}] must be a mapping with patch or path"
MSG_VALUE_FILE_MISSING = "{path}: no such file (set ignoreMissingValueFiles to skip it)"
MSG_UNKNOWN_REF = "{path}: no source with ref {ref!r} in this Application"
MSG_BAD_DOCUMENT = "{file}: document {index} is not a Kubernetes object: {reason}"
MSG_PARSE = "{file}: {error}"
MSG_TOO_LARGE = "the directory holds more than {limit} bytes of manifests"
MSG_TOOL_TIMEOUT = "{tool} did not finish within {timeout:g}s"
MSG_TOOL_OUTPUT = "{tool} printed more than {limit} bytes of manifests"


class RenderError(Exception):
    """A source that does not render; ``message`` is the tool's stderr (or ours), bounded."""

    def __init__(self, message: str, *, tool: str = "") -> None:
        message = _bounded(message.strip())
        super().__init__(message)
        self.message = message
        self.tool = tool


def _bounded(text: str) -> str:
    if len(text) <= MESSAGE_LIMIT:
        return text
    half = MESSAGE_LIMIT // 2
    return f"{text[:half]} … [{len(text) - 2 * half} characters left out] … {text[-half:]}"


def render_source(
    source: ApplicationSource,
    root: Path,
    *,
    app_name: str,
    namespace: str,
    value_roots: Mapping[str, Path] = {},  # noqa: B006 - read only
    kube_version: str | None = None,
    api_versions: Sequence[str] = (),
    timeout: float = DEFAULT_TIMEOUT_S,
    charts: ChartCache | None = None,
) -> list[dict[str, Any]]:
    """The manifests ``source`` renders to from the checkout at ``root``; raise RenderError.

    A Helm repository source (``chart``) ignores ``root``: its chart is pulled
    (``charts``, else the process's cache) and rendered from there.
    """
    if source.chart:
        chart_dir = (charts or default_chart_cache()).pull(
            source.repo_url, source.chart, source.target_revision or "", timeout=timeout)
        with _workspace() as work:
            return render_helm(
                chart_dir, chart_dir, source.helm or HelmSource(), work=work, app_name=app_name,
                namespace=namespace, value_roots=value_roots, kube_version=kube_version,
                api_versions=api_versions, timeout=timeout)
    app_dir = _inside(root, source.path or ".", what="app path")
    if not app_dir.is_dir():
        raise RenderError(MSG_PATH_MISSING.format(path=source.path or "."))
    tool = detect_tool(source, app_dir)
    if tool == "directory":
        return render_directory(app_dir, source.directory or DirectorySource())
    with _workspace() as work:
        if tool == "kustomize":
            return render_kustomize(root, app_dir, source.kustomize, work=work, timeout=timeout)
        return render_helm(
            root, app_dir, source.helm or HelmSource(), work=work, app_name=app_name,
            namespace=namespace, value_roots=value_roots, kube_version=kube_version,
            api_versions=api_versions, timeout=timeout)


def detect_tool(source: ApplicationSource, app_dir: Path) -> str:
    """``helm``, ``kustomize`` or ``directory``, by Argo CD's tool detection."""
    if source.plugin is not None:
        raise RenderError(MSG_PLUGIN.format(name=source.plugin.get("name", "")))
    if source.chart:
        return "helm"
    named = [tool for tool, spec in (("helm", source.helm), ("kustomize", source.kustomize),
                                     ("directory", source.directory)) if spec is not None]
    if len(named) > 1:
        raise RenderError(MSG_MULTIPLE_TOOLS.format(tools=", ".join(named)))
    if named:
        return named[0]
    if (app_dir / HELM_CHART_FILE).is_file():
        return "helm"
    if any((app_dir / name).is_file() for name in KUSTOMIZATION_FILES):
        return "kustomize"
    return "directory"


# --- plain directories -------------------------------------------------------------------


def render_directory(app_dir: Path, spec: DirectorySource) -> list[dict[str, Any]]:
    include = _expand_braces(spec.include) if spec.include else None
    exclude = _expand_braces(spec.exclude) if spec.exclude else []
    manifests: list[dict[str, Any]] = []
    total = 0
    for path in _manifest_files(app_dir, recurse=bool(spec.recurse)):
        rel = path.relative_to(app_dir).as_posix()
        if include is not None and not any(fnmatch.fnmatchcase(rel, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(rel, p) for p in exclude):
            continue
        total += path.stat().st_size
        if total > MAX_DIRECTORY_BYTES:
            raise RenderError(MSG_TOO_LARGE.format(limit=MAX_DIRECTORY_BYTES))
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".json":
            try:
                docs: list[Any] = [json.loads(text)] if text.strip() else []
            except json.JSONDecodeError as exc:
                raise RenderError(MSG_PARSE.format(file=rel, error=exc)) from None
        else:
            docs = _load_yaml(text, source=rel)
        manifests += _objects(docs, source=rel)
    return manifests


def _manifest_files(app_dir: Path, *, recurse: bool) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(app_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recurse else []
        for name in sorted(filenames):
            if name.endswith(MANIFEST_SUFFIXES) and not name.startswith("."):
                found.append(Path(dirpath) / name)
    return found


def _expand_braces(pattern: str) -> list[str]:
    """``{a,b}`` alternatives (nestable) into plain fnmatch patterns."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end():]
    return [p for alt in match.group(1).split(",") for p in _expand_braces(head + alt + tail)]


# --- kustomize ---------------------------------------------------------------------------


def render_kustomize(
    root: Path,
    app_dir: Path,
    spec: KustomizeSource | None,
    *,
    work: Path,
    timeout: float,
) -> list[dict[str, Any]]:
    env = _tool_env(work)
    check_kustomization_tree(root, app_dir)
    build_dir = app_dir
    if spec is not None and (_kustomize_edits(spec) or spec.patches):
        copy = work / "repo"
        _link_copy(root, copy)
        build_dir = copy / app_dir.relative_to(root)
        for args in _kustomize_edits(spec):
            _tool(["kustomize", "edit", *args], env=env, cwd=build_dir, timeout=timeout)
        if spec.patches:
            _add_patches(copy, build_dir, spec.patches)
    out = _tool(["kustomize", "build", *KUSTOMIZE_BUILD_FLAGS, str(build_dir)],
                env=env, cwd=work, timeout=timeout)
    return _objects(_load_yaml(out, source="kustomize build"), source="kustomize build")


def _kustomize_edits(spec: KustomizeSource) -> list[list[str]]:
    """The ``kustomize edit`` commands Argo CD runs for the Application's overrides."""
    edits: list[list[str]] = []
    if spec.name_prefix:
        edits.append(["set", "nameprefix", "--", spec.name_prefix])
    if spec.name_suffix:
        edits.append(["set", "namesuffix", "--", spec.name_suffix])
    if spec.images:
        edits.append(["set", "image", *spec.images])
    if spec.replicas:
        edits.append(["set", "replicas", *(f"{r.name}={r.count}" for r in spec.replicas)])
    if spec.common_labels:
        args = ["add", "label"]
        if spec.force_common_labels:
            args.append("--force")
        if spec.label_without_selector:
            args.append("--without-selector")
            if spec.label_include_templates:
                args.append("--include-templates")
        edits.append([*args, ",".join(f"{k}:{v}" for k, v in sorted(spec.common_labels.items()))])
    if spec.common_annotations:
        args = ["add", "annotation"] + (["--force"] if spec.force_common_annotations else [])
        edits.append([*args, ",".join(
            f"{k}:{v}" for k, v in sorted(spec.common_annotations.items()))])
    if spec.namespace:
        edits.append(["set", "namespace", "--", spec.namespace])
    if spec.components:
        edits.append(["add", "component", *spec.components])
    return edits


def _add_patches(copy_root: Path, build_dir: Path, patches: Sequence[Mapping[str, Any]]) -> None:
    """Append the Application's ``kustomize.patches`` to the private copy's kustomization.

    As Argo CD does (its patches go into the kustomization it builds, after the
    repository's own), but in the scratch copy: the checkout's file is untouched.
    """
    for index, patch in enumerate(patches):
        if not isinstance(patch, Mapping) or not (patch.get("patch") or patch.get("path")):
            raise RenderError(MSG_KUSTOMIZE_PATCH.format(index=index))
        if patch.get("path"):
            _kustomize_ref(copy_root, build_dir, str(patch["path"]), file="kustomize.patches",
                           field="path")
    target = next(build_dir / name for name in KUSTOMIZATION_FILES if (build_dir / name).is_file())
    doc = yaml.safe_load(target.read_text()) or {}
    if not isinstance(doc, dict):
        raise RenderError(MSG_PARSE.format(file=target.name, error="not a mapping"))
    doc["patches"] = [*(doc.get("patches") or []), *(dict(p) for p in patches)]
    target.unlink()  # a real copy already (see _link_copy); unlink first all the same
    target.write_text(yaml.safe_dump(doc, sort_keys=False))


# Fields of a kustomization that name local files or directories (strings, or
# mappings with ``path``); each must stay inside the repository checkout.
_KUSTOMIZE_LIST_FIELDS = ("resources", "bases", "components", "crds", "patchesStrategicMerge",
                          "transformers", "generators", "validators", "configurations")
_KUSTOMIZE_PATH_FIELDS = ("patches", "patchesJson6902", "replacements")
_GENERATOR_FIELDS = ("configMapGenerator", "secretGenerator")
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/|gitlab\.com/|bitbucket\.org/)",
                     re.IGNORECASE)


def check_kustomization_tree(root: Path, app_dir: Path) -> None:
    """Refuse a kustomization (or one it includes) naming a path outside the checkout.

    kustomize's own load restrictor keeps files under each kustomization's
    directory, but not bases and components: ``resources: [../../..]`` would build
    whatever directory lies there, another repository's checkout included.
    Remote bases (URLs) are kustomize's to fetch and are not checked here.
    """
    seen: set[Path] = set()
    pending = [app_dir.resolve()]
    while pending:
        directory = pending.pop()
        if directory in seen:
            continue
        seen.add(directory)
        found = [directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file()]
        if not found:
            continue
        file = found[0].relative_to(root.resolve()).as_posix()
        docs = _load_yaml(found[0].read_text(encoding="utf-8", errors="replace"), source=file)
        doc = docs[0] if docs and isinstance(docs[0], dict) else {}
        for field, value in _kustomization_refs(doc):
            path = _kustomize_ref(root, directory, value, file=file, field=field)
            if path is not None and path.is_dir() and field in ("resources", "bases", "components"):
                pending.append(path)


def _kustomization_refs(doc: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for field in _KUSTOMIZE_LIST_FIELDS:
        for item in doc.get(field) or []:
            if isinstance(item, str) and "\n" not in item:  # an inline patch is not a path
                yield field, item
    for field in _KUSTOMIZE_PATH_FIELDS:
        for item in doc.get(field) or []:
            if isinstance(item, Mapping) and isinstance(item.get("path"), str):
                yield field, item["path"]
    for field in _GENERATOR_FIELDS:
        for generator in doc.get(field) or []:
            if not isinstance(generator, Mapping):
                continue
            for key in ("files", "envs"):
                for entry in generator.get(key) or []:
                    if isinstance(entry, str):
                        yield f"{field}.{key}", entry.partition("=")[2] or entry
            if isinstance(generator.get("env"), str):
                yield f"{field}.env", generator["env"]
    openapi = doc.get("openapi")
    if isinstance(openapi, Mapping) and isinstance(openapi.get("path"), str):
        yield "openapi.path", openapi["path"]


def _kustomize_ref(root: Path, directory: Path, value: str, *, file: str, field: str) -> Path | None:
    """``value`` (relative to ``directory``) resolved inside ``root``; None for a remote base."""
    if _REMOTE.match(value):
        return None
    base = root.resolve()
    path = Path(value).resolve() if os.path.isabs(value) else (directory / value).resolve()
    if path != base and base not in path.parents:
        raise RenderError(MSG_KUSTOMIZE_OUTSIDE.format(file=file, field=field, path=value))
    return path


def _link_copy(src: Path, dst: Path) -> None:
    """A copy of ``src`` whose files are hard links, except those a tool may write.

    ``kustomize edit`` rewrites only the kustomization file of the directory it
    runs in; ``helm dependency build`` writes ``Chart.lock`` and ``charts/*``.
    Those are real copies (a tool truncating a hard link would write into the
    shared checkout); every other file shares the checkout's inode.
    """

    def copy(source: str, target: str) -> str:
        path = Path(source)
        if path.name in PRIVATE_FILES or path.parent.name == "charts":
            shutil.copyfile(source, target)
            os.chmod(target, 0o644)
            return target
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        return target

    shutil.copytree(src, dst, symlinks=True, copy_function=copy)


# --- helm --------------------------------------------------------------------------------


def render_helm(
    root: Path,
    app_dir: Path,
    spec: HelmSource,
    *,
    work: Path,
    app_name: str,
    namespace: str,
    value_roots: Mapping[str, Path],
    kube_version: str | None,
    api_versions: Sequence[str],
    timeout: float,
) -> list[dict[str, Any]]:
    chart_dir = _with_local_dependencies(root, app_dir, work=work, timeout=timeout)
    args = ["helm", "template", spec.release_name or app_name, "."]
    if spec.namespace or namespace:
        args += ["--namespace", spec.namespace or namespace]
    for path in _value_files(root, app_dir, spec, value_roots):
        args += ["--values", str(path)]
    inline = _inline_values(spec)
    if inline is not None:
        values_file = work / "values-inline.yaml"
        values_file.write_text(inline)
        args += ["--values", str(values_file)]
    for param in spec.parameters or ():
        flag = "--set-string" if param.force_string else "--set"
        args += [flag, f"{param.name}={_escape_set_value(param.value or '')}"]
    for file_param in spec.file_parameters or ():
        path = _inside(root, str(app_dir.relative_to(root) / file_param.path),
                       what="fileParameters path")
        args += ["--set-file", f"{file_param.name}={path}"]
    if not spec.skip_crds:
        args.append("--include-crds")
    if spec.skip_tests:
        args.append("--skip-tests")
    if kube_version or spec.kube_version:
        args += ["--kube-version", spec.kube_version or kube_version or ""]
    for api_version in [*api_versions, *(spec.api_versions or ())]:
        args += ["--api-versions", api_version]
    out = _tool(args, env=_tool_env(work), cwd=chart_dir, timeout=timeout)
    return _objects(_load_yaml(out, source="helm template"), source="helm template")


def _with_local_dependencies(root: Path, app_dir: Path, *, work: Path, timeout: float) -> Path:
    """The chart directory to render: ``app_dir``, or a scratch copy with its dependencies built.

    A chart whose Chart.yaml lists ``file://`` dependencies gets ``helm dependency
    build`` in a private copy of the repository (the cache's checkout is shared and
    never written); each ``file://`` path must stay inside the repository. Other
    dependencies must already be vendored under ``charts/`` (helm says so if not).
    """
    chart_file = app_dir / HELM_CHART_FILE
    if not chart_file.is_file():
        return app_dir
    docs = _load_yaml(chart_file.read_text(encoding="utf-8", errors="replace"),
                      source=HELM_CHART_FILE)
    chart = docs[0] if docs and isinstance(docs[0], dict) else {}
    local = [dep for dep in chart.get("dependencies") or []
             if isinstance(dep, Mapping) and str(dep.get("repository") or "").startswith("file://")]
    if not local:
        return app_dir
    for dep in local:
        rel = str(dep["repository"])[len("file://"):]
        target = Path(rel).resolve() if os.path.isabs(rel) else (app_dir / rel).resolve()
        base = root.resolve()
        if target != base and base not in target.parents:
            raise RenderError(MSG_DEPENDENCY_OUTSIDE.format(name=dep.get("name", ""), repo=dep["repository"]))
    copy = work / "chart-repo"
    _link_copy(root, copy)
    chart_dir = copy / app_dir.relative_to(root)
    _tool(["helm", "dependency", "build", "--skip-refresh", "."], env=_tool_env(work),
          cwd=chart_dir, timeout=timeout)
    return chart_dir


# --- charts from Helm repositories ---------------------------------------------------------


class ChartCache:
    """Charts pulled from Helm repositories (``helm pull --repo``), kept by URL, chart and version.

    Called by ``render_source`` for a source with ``chart``. An exact version is
    pulled once and kept (a Helm repository never changes a published version); a
    range or no version is pulled again each time. Each pull has the render
    deadline, and the unpacked chart is refused past ``max_bytes``.
    """

    def __init__(self, root: Path, *, max_bytes: int = MAX_CHART_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def pull(self, url: str, chart: str, version: str, *, timeout: float) -> Path:
        """The unpacked chart's directory; raise RenderError with helm's message."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise RenderError(MSG_CHART_REPO.format(chart=chart, url=url))
        if not _CHART_NAME.match(chart):
            raise RenderError(MSG_CHART_NAME.format(chart=chart))
        exact = bool(_EXACT_VERSION.match(version))
        if exact and (self._dir(url, chart, version) / HELM_CHART_FILE).is_file():
            return self._dir(url, chart, version)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="pull-", dir=self.root))
        try:
            args = ["helm", "pull", chart, "--repo", url, "--untar", "--untardir", str(staging / "out")]
            if version:
                args += ["--version", version]
            _tool(args, env=_tool_env(staging), cwd=staging, timeout=timeout)
            pulled = staging / "out" / chart
            if not (pulled / HELM_CHART_FILE).is_file():
                raise RenderError(MSG_PATH_MISSING.format(path=chart))
            if _tree_bytes(pulled) > self.max_bytes:
                raise RenderError(MSG_CHART_TOO_LARGE.format(
                    chart=chart, version=version or "(latest)", url=url, limit=self.max_bytes))
            # Kept under the version the chart says it is, so a range resolved twice to
            # the same version shares one copy; a kept copy is never replaced (a reader
            # may be rendering it).
            meta = yaml.safe_load((pulled / HELM_CHART_FILE).read_text()) or {}
            final = self._dir(url, chart, str(meta.get("version") or version))
            with self._lock(final.parent.name):
                if not (final / HELM_CHART_FILE).is_file():
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(pulled, final)
            return final
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _dir(self, url: str, chart: str, version: str) -> Path:
        key = hashlib.sha256(f"{url.rstrip('/')}\n{chart}\n{version}".encode()).hexdigest()[:32]
        return self.root / key / chart

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            total += (Path(dirpath) / name).lstat().st_size
    return total


_DEFAULT_CHARTS: list[ChartCache] = []


def default_chart_cache() -> ChartCache:
    """The process's chart cache: ``$TIDEGATE_CHART_CACHE``, else a private temporary directory."""
    with _DEFAULT_GUARD:
        if not _DEFAULT_CHARTS:
            configured = os.environ.get(CHART_CACHE_ENV)
            root = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="tidegate-charts-"))
            _DEFAULT_CHARTS.append(ChartCache(root))
        return _DEFAULT_CHARTS[0]


_DEFAULT_GUARD = threading.Lock()


def _value_files(
    root: Path, app_dir: Path, spec: HelmSource, value_roots: Mapping[str, Path]
) -> list[Path]:
    """valueFiles in order: relative to the chart, or ``$ref/...`` in another source."""
    files: list[Path] = []
    for entry in spec.value_files or ():
        if entry.startswith("$"):
            ref, _, rel = entry[1:].partition("/")
            if ref not in value_roots:
                raise RenderError(MSG_UNKNOWN_REF.format(path=entry, ref=ref))
            base, rel_path = value_roots[ref], rel
        else:
            base, rel_path = root, str(app_dir.relative_to(root) / entry)
        if _GLOB_CHARS.search(rel_path):
            matches = sorted(p for p in base.glob(rel_path) if p.is_file())
            files += [_inside(base, str(p.relative_to(base)), what="valueFiles entry")
                      for p in matches]
            continue
        path = _inside(base, rel_path, what="valueFiles entry")
        if not path.is_file():
            if spec.ignore_missing_value_files:
                continue
            raise RenderError(MSG_VALUE_FILE_MISSING.format(path=entry))
        files.append(path)
    return files


def _inline_values(spec: HelmSource) -> str | None:
    """``valuesObject`` if set (it wins over ``values``, as in Argo CD), else ``values``."""
    if spec.values_object is not None:
        return yaml.safe_dump(spec.values_object, sort_keys=False)
    if spec.values and spec.values.strip():
        return spec.values
    return None


def _escape_set_value(value: str) -> str:
    """Commas separate ``--set`` pairs; Argo CD escapes them unless the value is a ``{list}``."""
    if value.startswith("{") and value.endswith("}"):
        return value
    return re.sub(r"(?<!\\),", r"\\,", value)


# --- running the tools -------------------------------------------------------------------


@contextmanager
def _workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tidegate-render-") as name:
        yield Path(name)


def _tool_env(work: Path) -> dict[str, str]:
    """A tool's whole environment: private homes, an empty plugin directory, no prompts."""
    home = work / "home"
    plugins = work / "plugins"
    for directory in (home, plugins):
        directory.mkdir(exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C",
        "LC_ALL": "C",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "HELM_PLUGINS": str(plugins),
        "HELM_CACHE_HOME": str(home / "helm-cache"),
        "HELM_CONFIG_HOME": str(home / "helm-config"),
        "HELM_DATA_HOME": str(home / "helm-data"),
        "KUSTOMIZE_PLUGIN_HOME": str(plugins),
        "GIT_TERMINAL_PROMPT": "0",
    }


def _tool(argv: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float) -> str:
    tool = " ".join(argv[:2])
    try:
        result = proc.run(argv, env=env, cwd=cwd, timeout=timeout,
                          stdout_limit=MANIFEST_OUTPUT_LIMIT)
    except proc.ToolTimeout:
        raise RenderError(MSG_TOOL_TIMEOUT.format(tool=tool, timeout=timeout),
                          tool=tool) from None
    except proc.ToolOutputTooLarge:
        raise RenderError(MSG_TOOL_OUTPUT.format(tool=tool, limit=MANIFEST_OUTPUT_LIMIT),
                          tool=tool) from None
    except proc.ToolNotFound as exc:
        raise RenderError(str(exc), tool=tool) from None
    if result.returncode != 0:
        raise RenderError(result.stderr or f"{tool}: exit status {result.returncode}", tool=tool)
    return result.stdout.decode("utf-8", errors="replace")


# --- documents ---------------------------------------------------------------------------


def _inside(base: Path, rel: str, *, what: str) -> Path:
    """``base/rel`` resolved, refused if it leaves ``base`` (``..``, absolute, symlinks)."""
    root = base.resolve()
    path = (root / rel.lstrip("/")).resolve() if not os.path.isabs(rel) else Path(rel).resolve()
    if path != root and root not in path.parents:
        raise RenderError(MSG_PATH_OUTSIDE.format(what=what, path=rel))
    return path


def _load_yaml(text: str, *, source: str) -> list[Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return list(yaml.load_all(text, Loader=loader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise RenderError(MSG_PARSE.format(file=source, error=exc)) from None


def _objects(docs: Sequence[Any], *, source: str) -> list[dict[str, Any]]:
    """Kubernetes objects from parsed documents: empty ones skipped, Lists expanded."""
    objects: list[dict[str, Any]] = []
    for index, doc in enumerate(docs, start=1):
        if doc is None or doc == {}:
            continue
        if not isinstance(doc, dict):
            raise RenderError(MSG_BAD_DOCUMENT.format(
                file=source, index=index, reason=f"a {type(doc).__name__}, not a mapping"))
        kind = doc.get("kind")
        if not doc.get("apiVersion") or not isinstance(kind, str) or not kind:
            raise RenderError(MSG_BAD_DOCUMENT.format(
                file=source, index=index, reason="apiVersion or kind is missing"))
        if kind == "List" and isinstance(doc.get("items"), list):
            objects += _objects(doc["items"], source=source)
            continue
        objects.append(doc)
    return objects
