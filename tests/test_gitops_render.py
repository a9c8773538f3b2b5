"""gitops.render with the real kustomize and helm binaries, on real files.

The binaries are the ones the cluster harness caches (e2e/cluster/up.sh builds
them): found on PATH, else in ~/.cache/tidegate/links-*/. Missing, these tests
skip with how to get them, or fail when CI=true (as e2e/conftest.py's require()).
Fixtures: tests/fixtures/gitops/llm-service (the seed's kustomization, completed)
and tests/fixtures/gitops/ml-platform-config (a chart at the seed Application's
path, environments/production, with values.yaml and values-production.yaml).
"""

from __future__ import annotations

import copy
import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.api import ApplicationSource, parse_application
from gitops.controller import AppController
from gitops.plan import ResourceKey
from gitops.render import ChartCache, RenderError, detect_tool, render_source
from gitops.source import RepoCache, SourceError
from tests.test_gitops_controller import KEY, FakeKube

FIXTURES = Path(__file__).parent / "fixtures"
LLM_SERVICE = FIXTURES / "gitops" / "llm-service"
ML_PLATFORM_CONFIG = FIXTURES / "gitops" / "ml-platform-config"
SEED_APPLICATION = FIXTURES / "seed" / "application-and-project.yaml"


def _tool_dir(name: str) -> Path | None:
    found = shutil.which(name)
    if found:
        return Path(found).parent
    for links in sorted(Path.home().glob(".cache/tidegate/links-*"), reverse=True):
        if (links / name).exists():
            return links
    return None


@pytest.fixture
def tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """kustomize and helm on PATH, or skip (fail in CI) saying how to get them."""
    for name in ("kustomize", "helm"):
        directory = _tool_dir(name)
        if directory is None:
            message = (f"{name} not found on PATH or in ~/.cache/tidegate/links-*/; "
                       "`make cluster-up` builds it")
            if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
                pytest.fail(f"CI=true: {message}", pytrace=False)
            pytest.skip(f"not in CI: {message}")
        if str(directory) not in os.environ["PATH"].split(os.pathsep):
            monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")


def source(**fields: Any) -> ApplicationSource:
    return ApplicationSource.model_validate({"repoURL": "file:///unused.git", **fields})


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def names(manifests: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["kind"], m["metadata"]["name"]) for m in manifests]


def cm(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


# --- tool detection ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "fields", "tool"),
    [
        pytest.param({"Chart.yaml": "name: x\n"}, {}, "helm", id="chart-yaml"),
        pytest.param({"kustomization.yaml": ""}, {}, "kustomize", id="kustomization-yaml"),
        pytest.param({"kustomization.yml": ""}, {}, "kustomize", id="kustomization-yml"),
        pytest.param({"Kustomization": ""}, {}, "kustomize", id="Kustomization"),
        pytest.param({"a.yaml": ""}, {}, "directory", id="plain"),
        pytest.param({"Chart.yaml": "name: x\n"}, {"directory": {"recurse": True}}, "directory",
                     id="named-tool-wins"),
        pytest.param({"a.yaml": ""}, {"helm": {"releaseName": "x"}}, "helm", id="named-helm"),
    ],
)
def test_tool_detection(tmp_path: Path, files: dict[str, str], fields: dict[str, Any],
                        tool: str) -> None:
    assert detect_tool(source(path=".", **fields), write(tmp_path, files)) == tool


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"helm": {}, "kustomize": {}}, "multiple application sources defined: helm, kustomize",
                     id="two-tools"),
        pytest.param({"plugin": {"name": "cmp"}},
                     "config management plugins are not supported: the source names plugin 'cmp'",
                     id="plugin"),
        pytest.param({"path": "../outside"}, "app path '../outside' is outside the repository",
                     id="path-outside"),
        pytest.param({"path": "nope"}, "app path 'nope' does not exist", id="path-missing"),
    ],
)
def test_sources_that_cannot_render(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    write(tmp_path / "repo", {"a.yaml": cm("a")})
    with pytest.raises(RenderError) as err:
        render_source(source(**{"path": ".", **fields}), tmp_path / "repo", app_name="app",
                      namespace="ns")
    assert err.value.message == message


# --- plain directories ---------------------------------------------------------------

TREE = {
    "a.yaml": cm("a") + "---\n---\n# only a comment\n---\n" + cm("a2"),
    "b.yml": cm("b"),
    "c.json": '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}',
    "list.yaml": "apiVersion: v1\nkind: List\nitems:\n- " + cm("l1").replace("\n", "\n  ")
                 + "\n",
    "README.md": "not a manifest",
    "empty.yaml": "",
    "env/prod/d.yaml": cm("d"),
    "env/dev/e.yaml": cm("e"),
    "env/prod/config.json": '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "f"}}',
}


@pytest.mark.parametrize(
    ("directory", "expected"),
    [
        pytest.param({}, ["a", "a2", "b", "c", "l1"], id="top-level-only"),
        pytest.param({"recurse": True}, ["a", "a2", "b", "c", "f", "d", "e", "l1"], id="recurse"),
        pytest.param({"recurse": True, "include": "env/*"}, ["f", "d", "e"], id="include"),
        pytest.param({"recurse": True, "include": "{a.yaml,env/prod/*}"}, ["a", "a2", "f", "d"],
                     id="include-alternatives"),
        pytest.param({"recurse": True, "exclude": "{env/dev/*,*.json}"},
                     ["a", "a2", "b", "d", "l1"], id="exclude-alternatives"),
        pytest.param({"recurse": True, "include": "*.yaml", "exclude": "env/*"},
                     ["a", "a2", "l1"], id="include-and-exclude"),
    ],
)
def test_directory(tmp_path: Path, directory: dict[str, Any], expected: list[str]) -> None:
    root = write(tmp_path / "repo", {f"apps/{rel}": text for rel, text in TREE.items()})

    manifests = render_source(source(path="apps", directory=directory), root, app_name="app",
                              namespace="ns")

    assert sorted(m["metadata"]["name"] for m in manifests) == sorted(expected)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param({"x.yaml": "a: [1\n"}, "x.yaml: while parsing a flow sequence",
                     id="yaml-syntax"),
        pytest.param({"x.json": "{"}, "x.json: Expecting property name", id="json-syntax"),
        pytest.param({"values.yaml": "replicas: 2\n"},
                     "values.yaml: document 1 is not a Kubernetes object: apiVersion or kind is missing",
                     id="not-an-object"),
        pytest.param({"x.yaml": cm("a") + "---\n- a list\n"},
                     "x.yaml: document 2 is not a Kubernetes object: a list, not a mapping",
                     id="not-a-mapping"),
    ],
)
def test_directory_errors_name_the_file(tmp_path: Path, files: dict[str, str],
                                        message: str) -> None:
    root = write(tmp_path, files)
    with pytest.raises(RenderError) as err:
        render_source(source(path="."), root, app_name="app", namespace="ns")
    assert err.value.message.startswith(message)


# --- kustomize -----------------------------------------------------------------------


def test_the_seed_llm_service_kustomization(tools: None) -> None:
    manifests = render_source(source(path="llm-service"), LLM_SERVICE.parent, app_name="llm",
                              namespace="ml-serving")

    assert names(manifests) == [
        ("ConfigMap", "model-config-h6h888b45m"),
        ("PodDisruptionBudget", "llm-service"),
        ("HorizontalPodAutoscaler", "llm-service"),
        ("InferenceService", "llm-service"),
    ]
    labels = {"app.kubernetes.io/managed-by": "argocd", "model.ml/version": "v2.1.0"}
    for manifest in manifests:
        assert manifest["metadata"]["namespace"] == "ml-serving"
        assert manifest["metadata"]["labels"] == labels
    config, _, _, isvc = manifests
    assert config["data"] == {"MODEL_VERSION": "v2.1.0", "MAX_BATCH_SIZE": "32",
                              "ENABLE_CACHING": "true"}
    assert isvc["metadata"]["annotations"] == {"argocd.argoproj.io/sync-wave": "2"}
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://models/llm/v2.1.0"


DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: inference
spec:
  selector:
    matchLabels: {app: inference}
  template:
    metadata:
      labels: {app: inference}
    spec:
      containers:
      - name: server
        image: inference-server:v1
"""


def test_kustomize_overrides_from_the_application(tmp_path: Path, tools: None) -> None:
    kustomization = "resources:\n- deployment.yaml\n- ../base\nimages:\n- name: inference-server\n  newTag: v2\n"
    root = write(tmp_path / "checkout", {
        "app/kustomization.yaml": kustomization,
        "app/deployment.yaml": DEPLOYMENT,
        "base/kustomization.yaml": "resources:\n- cm.yaml\n",
        "base/cm.yaml": cm("shared"),
    })
    overrides = {
        "namePrefix": "prod-", "nameSuffix": "-v3",
        "images": ["inference-server=registry.example.com/inference-server:v3"],
        "commonLabels": {"team": "ml"}, "commonAnnotations": {"owner": "ml-platform"},
        "namespace": "ml-serving", "replicas": [{"name": "inference", "count": 4}],
    }

    manifests = render_source(source(path="app", kustomize=overrides), root, app_name="app",
                              namespace="ignored")

    assert names(manifests) == [("ConfigMap", "prod-shared-v3"), ("Deployment", "prod-inference-v3")]
    deployment = manifests[1]
    assert deployment["metadata"]["namespace"] == "ml-serving"
    assert deployment["metadata"]["labels"] == {"team": "ml"}
    assert deployment["metadata"]["annotations"] == {"owner": "ml-platform"}
    assert deployment["spec"]["replicas"] == 4
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/inference-server:v3")
    # The checkout is shared: the edits went to a private copy.
    assert (root / "app/kustomization.yaml").read_text() == kustomization


def test_kustomize_error_is_the_tools_message(tmp_path: Path, tools: None) -> None:
    root = write(tmp_path, {"kustomization.yaml": "resources:\n- missing.yaml\n"})

    with pytest.raises(RenderError) as err:
        render_source(source(path="."), root, app_name="app", namespace="ns")

    assert err.value.tool == "kustomize build"
    assert err.value.message.startswith("Error: accumulating resources")
    assert "missing.yaml" in err.value.message


def test_kustomize_never_runs_an_exec_function_from_the_repository(
    tmp_path: Path, tools: None
) -> None:
    marker = tmp_path / "ran"
    root = write(tmp_path / "repo", {
        "kustomization.yaml": "resources:\n- cm.yaml\ngenerators:\n- gen.yaml\n",
        "cm.yaml": cm("a"),
        "gen.yaml": ("apiVersion: example.com/v1\nkind: Gen\nmetadata:\n  name: gen\n"
                     "  annotations:\n    config.kubernetes.io/function: |\n"
                     "      exec:\n        path: ./evil.sh\n"),
        "evil.sh": f"#!/bin/sh\ntouch {marker}\ncat\n",
    })
    (root / "evil.sh").chmod(0o755)

    with pytest.raises(RenderError) as err:
        render_source(source(path="."), root, app_name="app", namespace="ns")
    assert "external plugins disabled" in err.value.message
    assert not marker.exists()


# --- helm ----------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def seed_application_source() -> tuple[str, ApplicationSource, str]:
    docs = list(yaml.safe_load_all(SEED_APPLICATION.read_text()))
    app = parse_application(next(d for d in docs if d["kind"] == "Application"))
    assert app.spec.source is not None and app.spec.destination.namespace is not None
    assert app.metadata.name is not None
    return app.metadata.name, app.spec.source, app.spec.destination.namespace


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def test_the_seed_application_renders_its_chart_from_git(tmp_path: Path, tools: None) -> None:
    """Given the seed's repository layout in a real git repo, When the seed Application's
    source is checked out and rendered, Then both value files apply, in order."""
    work = tmp_path / "ml-platform-config"
    shutil.copytree(ML_PLATFORM_CONFIG, work)
    git(work, "init", "--quiet", "--initial-branch=main")
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "chart")
    name, seed_source, namespace = seed_application_source()
    checkout = RepoCache(tmp_path / "cache").checkout(work.as_uri(), seed_source.target_revision or "")

    manifests = render_source(seed_source, checkout.path, app_name=name, namespace=namespace)

    assert names(manifests) == [
        ("CustomResourceDefinition", "modelconfigs.ml.example.com"),
        ("ConfigMap", "ml-platform-model"),
        ("Service", "ml-platform-inference"),
        ("Deployment", "ml-platform-inference"),
    ]
    objects = by_kind(manifests)
    deployment = objects["Deployment"]
    assert deployment["metadata"]["namespace"] == "ml-serving"
    assert deployment["spec"]["replicas"] == 3  # values-production.yaml over values.yaml
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/inference-server:v2.1.0"
    assert container["env"] == [{"name": "LOG_LEVEL", "value": "info"}]  # values.yaml only
    assert objects["ConfigMap"]["data"] == {"MODEL_VERSION": "v2.1.0", "MAX_BATCH_SIZE": "16"}


CHART = ML_PLATFORM_CONFIG / "environments" / "production"


def render_chart(helm: dict[str, Any], **kwargs: Any) -> dict[str, dict[str, Any]]:
    return by_kind(render_source(source(path="environments/production", helm=helm),
                                 ML_PLATFORM_CONFIG, app_name="ml-platform",
                                 namespace="ml-serving", **kwargs))


def test_value_files_apply_in_the_order_given(tools: None) -> None:
    reversed_order = render_chart({"valueFiles": ["values-production.yaml", "values.yaml"]})
    assert reversed_order["Deployment"]["spec"]["replicas"] == 1


@pytest.mark.parametrize(
    ("helm", "replicas", "data"),
    [
        pytest.param({"values": "replicas: 4\n"}, 4, {}, id="values-over-value-files"),
        pytest.param({"values": "replicas: 4\n", "valuesObject": {"replicas": 5}}, 5, {},
                     id="valuesObject-over-values"),
        pytest.param({"valuesObject": {"replicas": 5},
                      "parameters": [{"name": "replicas", "value": "6"}]}, 6, {},
                     id="parameters-over-valuesObject"),
        pytest.param({"parameters": [{"name": "model.maxBatchSize", "value": "64",
                                      "forceString": True},
                                     {"name": "extra", "value": "a,b=c"}]},
                     3, {"MAX_BATCH_SIZE": "64", "EXTRA": "a,b=c"}, id="set-string-and-commas"),
    ],
)
def test_helm_precedence(tools: None, helm: dict[str, Any], replicas: int,
                         data: dict[str, str]) -> None:
    objects = render_chart({"valueFiles": ["values.yaml", "values-production.yaml"], **helm})

    assert objects["Deployment"]["spec"]["replicas"] == replicas
    assert data.items() <= objects["ConfigMap"]["data"].items()


def test_helm_release_name_skip_crds_and_namespace(tools: None) -> None:
    objects = render_chart({"releaseName": "canary", "skipCrds": True})

    assert "CustomResourceDefinition" not in objects
    assert objects["Deployment"]["metadata"]["name"] == "canary-inference"
    assert objects["Service"]["metadata"]["namespace"] == "ml-serving"


def test_value_files_from_another_source(tmp_path: Path, tools: None) -> None:
    """Multi-source: ``$values/...`` names a file in the source with ``ref: values``."""
    values_repo = write(tmp_path / "values-repo", {"prod/ml.yaml": "replicas: 7\n"})

    objects = render_chart({"valueFiles": ["values.yaml", "$values/prod/ml.yaml"]},
                           value_roots={"values": values_repo})

    assert objects["Deployment"]["spec"]["replicas"] == 7


@pytest.mark.parametrize(
    ("helm", "message"),
    [
        pytest.param({"valueFiles": ["values-staging.yaml"]},
                     "values-staging.yaml: no such file (set ignoreMissingValueFiles to skip it)",
                     id="missing-value-file"),
        pytest.param({"valueFiles": ["../../../../../../etc/passwd"]},
                     "valueFiles entry 'environments/production/../../../../../../etc/passwd' "
                     "is outside the repository", id="value-file-outside"),
        pytest.param({"valueFiles": ["$other/x.yaml"]},
                     "$other/x.yaml: no source with ref 'other' in this Application",
                     id="unknown-ref"),
        pytest.param({"fileParameters": [{"name": "x", "path": "/etc/passwd"}]},
                     "fileParameters path '/etc/passwd' is outside the repository",
                     id="file-parameter-outside"),
    ],
)
def test_helm_inputs_that_cannot_be_used(tools: None, helm: dict[str, Any], message: str) -> None:
    with pytest.raises(RenderError) as err:
        render_chart(helm)
    assert err.value.message == message


def test_missing_value_files_can_be_ignored(tools: None) -> None:
    objects = render_chart({"valueFiles": ["values-staging.yaml", "values-production.yaml"],
                            "ignoreMissingValueFiles": True})
    assert objects["Deployment"]["spec"]["replicas"] == 3


def test_helm_error_is_the_tools_message(tmp_path: Path, tools: None) -> None:
    root = write(tmp_path, {
        "Chart.yaml": "apiVersion: v2\nname: broken\nversion: 0.1.0\n",
        "templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.x.y }}\n",
    })

    with pytest.raises(RenderError) as err:
        render_source(source(path="."), root, app_name="app", namespace="ns")

    assert err.value.tool == "helm template"
    assert err.value.message.startswith("Error: template: broken/templates/cm.yaml:4:")
    assert "nil pointer evaluating interface {}.y" in err.value.message


# --- issue 9: kustomize patches, paths outside the checkout, chart dependencies, Helm repos ------


def test_kustomize_patches_from_the_application_go_to_a_private_copy(tmp_path: Path, tools: None) -> None:
    kustomization = "resources:\n- deployment.yaml\n"
    root = write(tmp_path / "checkout", {"app/kustomization.yaml": kustomization,
                                         "app/deployment.yaml": DEPLOYMENT})
    patches = [
        {"target": {"kind": "Deployment", "name": "inference"},
         "patch": "- op: replace\n  path: /spec/replicas\n  value: 9\n"},
        {"patch": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: inference\n"
                  "  labels:\n    patched: 'yes'\n"},
    ]

    manifests = render_source(source(path="app", kustomize={"patches": patches, "namePrefix": "p-"}),
                              root, app_name="app", namespace="ns")

    (deployment,) = manifests
    assert deployment["metadata"]["name"] == "p-inference"
    assert deployment["spec"]["replicas"] == 9
    assert deployment["metadata"]["labels"] == {"patched": "yes"}
    assert (root / "app/kustomization.yaml").read_text() == kustomization


OUTSIDE = "is outside the repository"


@pytest.mark.parametrize(
    ("files", "symlink", "message"),
    [
        pytest.param({"app/kustomization.yaml": "resources:\n- ../../other\n"}, None,
                     "app/kustomization.yaml: resources '../../other' " + OUTSIDE, id="resource-dotdot"),
        pytest.param({"app/kustomization.yaml": "resources:\n- /etc\n"}, None,
                     "app/kustomization.yaml: resources '/etc' " + OUTSIDE, id="resource-absolute"),
        pytest.param({"app/kustomization.yaml": "resources:\n- ../base\n",
                      "base/kustomization.yaml": "components:\n- ../../../x\n"}, None,
                     "base/kustomization.yaml: components '../../../x' " + OUTSIDE, id="nested-component"),
        pytest.param({"app/kustomization.yaml": "configMapGenerator:\n- name: c\n  files:\n"
                                                "  - key=../../secret.txt\n"}, None,
                     "app/kustomization.yaml: configMapGenerator.files '../../secret.txt' " + OUTSIDE,
                     id="generator-file"),
        pytest.param({"app/kustomization.yaml": "resources:\n- link\n"}, "link",
                     "app/kustomization.yaml: resources 'link' " + OUTSIDE, id="symlink-out"),
    ],
)
def test_kustomizations_that_leave_the_checkout_are_refused(
    tmp_path: Path, tools: None, files: dict[str, str], symlink: str | None, message: str
) -> None:
    outside = write(tmp_path / "other", {"kustomization.yaml": "resources:\n- cm.yaml\n", "cm.yaml": cm("x")})
    root = write(tmp_path / "repo", files)
    if symlink:
        (root / "app" / symlink).symlink_to(outside)

    with pytest.raises(RenderError) as err:
        render_source(source(path="app"), root, app_name="app", namespace="ns")

    assert err.value.message == message


def test_helm_value_file_through_a_symlink_out_of_the_checkout_is_refused(tmp_path: Path, tools: None) -> None:
    write(tmp_path / "secret", {"values.yaml": "replicas: 1\n"})
    root = write(tmp_path / "repo", {"Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n"})
    (root / "link.yaml").symlink_to(tmp_path / "secret" / "values.yaml")

    with pytest.raises(RenderError) as err:
        render_source(source(path=".", helm={"valueFiles": ["link.yaml"]}), root, app_name="a", namespace="n")

    assert err.value.message == "valueFiles entry 'link.yaml' " + OUTSIDE


LIB_CHART = {
    "lib/Chart.yaml": "apiVersion: v2\nname: lib\nversion: 0.2.0\n",
    "lib/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-lib\n"
                             "data:\n  size: {{ .Values.size | quote }}\n",
    "lib/values.yaml": "size: small\n",
}


def umbrella(repository: str) -> dict[str, str]:
    return {"app/Chart.yaml": ("apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n"
                               f"- name: lib\n  version: 0.2.0\n  repository: {repository}\n"),
            "app/values.yaml": "lib:\n  size: large\n",
            "app/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: own\n"}


def test_local_chart_dependencies_are_built_in_a_scratch_copy(tmp_path: Path, tools: None) -> None:
    root = write(tmp_path / "repo", {**LIB_CHART, **umbrella("file://../lib")})
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))

    objects = {m["metadata"]["name"]: m for m in render_source(
        source(path="app"), root, app_name="rel", namespace="ns")}

    assert objects["from-lib"]["data"] == {"size": "large"}
    assert "own" in objects
    # helm dependency build wrote Chart.lock and charts/ in the copy, not in the checkout.
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before


def test_a_chart_dependency_outside_the_checkout_is_refused(tmp_path: Path, tools: None) -> None:
    write(tmp_path / "elsewhere", LIB_CHART)
    root = write(tmp_path / "repo", umbrella("file://../../elsewhere/lib"))

    with pytest.raises(RenderError) as err:
        render_source(source(path="app"), root, app_name="rel", namespace="ns")

    assert err.value.message == ("Chart.yaml dependency 'lib': repository 'file://../../elsewhere/lib' "
                                 + OUTSIDE)


@pytest.fixture
def helm_repo(tmp_path: Path, tools: None) -> Iterator[tuple[str, Path]]:
    """A real Helm repository on loopback: ``helm package`` + ``helm repo index`` + http.server."""
    served = tmp_path / "served"
    served.mkdir()
    for version, size in (("1.0.0", "one"), ("1.1.0", "two")):
        chart = write(tmp_path / f"src-{version}" / "model", {
            "Chart.yaml": f"apiVersion: v2\nname: model\nversion: {version}\n",
            "values.yaml": f"size: {size}\nreplicas: 1\n",
            "templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
                                 "data:\n  size: {{ .Values.size | quote }}\n"
                                 "  replicas: {{ .Values.replicas | quote }}\n"})
        subprocess.run(["helm", "package", str(chart), "-d", str(served)], check=True, capture_output=True)
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    subprocess.run(["helm", "repo", "index", str(served), "--url", url], check=True, capture_output=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url, served
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


def test_a_chart_from_a_helm_repository(tmp_path: Path, helm_repo: tuple[str, Path]) -> None:
    url, served = helm_repo
    values = write(tmp_path / "values-repo", {"prod.yaml": "replicas: 5\n"})
    charts = ChartCache(tmp_path / "charts")
    chart_source = source(repoURL=url, chart="model", targetRevision="1.0.0",
                          helm={"valueFiles": ["$values/prod.yaml"], "parameters": [{"name": "size", "value": "xl"}]})

    first = render_source(chart_source, Path("/nonexistent"), app_name="m", namespace="ns",
                          value_roots={"values": values}, charts=charts)
    assert [(o["metadata"]["name"], o["data"]) for o in first] == [("m", {"size": "xl", "replicas": "5"})]

    # Cached by URL, chart and version: with the repository gone, 1.0.0 still renders.
    for tgz in served.glob("*.tgz"):
        tgz.unlink()
    again = render_source(chart_source, Path("/nonexistent"), app_name="m", namespace="ns",
                          value_roots={"values": values}, charts=charts)
    assert again == first


def test_a_version_range_takes_the_newest_chart(tmp_path: Path, helm_repo: tuple[str, Path]) -> None:
    url, _ = helm_repo
    objects = render_source(source(repoURL=url, chart="model", targetRevision="^1.0.0"), Path("."),
                            app_name="m", namespace="ns", charts=ChartCache(tmp_path / "charts"))
    assert objects[0]["data"]["size"] == "two"


@pytest.mark.parametrize(
    ("fields", "max_bytes", "message"),
    [
        pytest.param({"chart": "model", "targetRevision": "9.9.9"}, None,
                     'chart "model" version "9.9.9" not found', id="no-such-version"),
        pytest.param({"chart": "model", "targetRevision": "1.0.0"}, 10,
                     "unpacks to more than 10 bytes", id="too-large"),
        pytest.param({"chart": "../model", "targetRevision": "1.0.0"}, None,
                     "chart '../model' is not a chart name", id="bad-name"),
    ],
)
def test_helm_repository_charts_that_cannot_be_used(
    tmp_path: Path, helm_repo: tuple[str, Path], fields: dict[str, Any], max_bytes: int | None,
    message: str,
) -> None:
    url, _ = helm_repo
    charts = ChartCache(tmp_path / "charts", **({"max_bytes": max_bytes} if max_bytes else {}))
    with pytest.raises(RenderError) as err:
        render_source(source(repoURL=url, **fields), Path("."), app_name="m", namespace="ns", charts=charts)
    assert message in err.value.message


def test_a_chart_repo_url_that_is_not_http_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RenderError) as err:
        render_source(source(repoURL="oci://registry.example.com/charts", chart="model", targetRevision="1.0.0"),
                      Path("."), app_name="m", namespace="ns", charts=ChartCache(tmp_path))
    assert err.value.message == ("chart 'model': repoURL 'oci://registry.example.com/charts' is not a Helm "
                                 "repository over http(s) (OCI registries are not supported yet)")


# --- multi-source through the reconcile (real git, real helm; the API server is a fake) ----------


def commit_files(repo: Path, files: dict[str, str], message: str) -> str:
    write(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", message)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def multi_source_app(sources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "app", "namespace": "argocd"},
            "spec": {"project": "default", "sources": sources,
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": "dest"},
                     "syncPolicy": {"automated": {"prune": True}}}}


def reconcile_until_synced(controller: AppController, kube: FakeKube, clock: list[datetime]) -> dict[str, Any]:
    for _ in range(10):
        clock[0] += timedelta(seconds=5)
        controller.reconcile(KEY, copy.deepcopy(kube.app))
        status = dict(kube.app.get("status") or {})
        if (status.get("operationState") or {}).get("phase") == "Succeeded" and \
                (status.get("sync") or {}).get("status") == "Synced":
            return status
    raise AssertionError(f"not synced: {kube.app.get('status')}")


@pytest.fixture
def reconciler(tmp_path: Path) -> tuple[AppController, FakeKube, list[datetime]]:
    kube = FakeKube()
    clock = [datetime(2026, 12, 3, 10, 0, tzinfo=UTC)]
    controller = AppController(
        kube=kube, repos=RepoCache(tmp_path / "cache"),
        render=functools.partial(render_source, charts=ChartCache(tmp_path / "charts")),
        source_errors=(RenderError, SourceError), clock=lambda: clock[0],
        detect=lambda src, path: detect_tool(src, path))
    return controller, kube, clock


def test_multi_source_values_from_another_repo_through_the_reconcile(
    tmp_path: Path, tools: None, reconciler: tuple[AppController, FakeKube, list[datetime]]
) -> None:
    controller, kube, clock = reconciler
    chart_repo, values_repo = tmp_path / "charts-git", tmp_path / "values-git"
    for repo in (chart_repo, values_repo):
        repo.mkdir()
        git(repo, "init", "--quiet", "-b", "main")
    chart_sha = commit_files(chart_repo, {"app/" + k.removeprefix("lib/"): v for k, v in LIB_CHART.items()},
                             "chart")
    values_sha = commit_files(values_repo, {"prod.yaml": "size: medium\n"}, "values")
    kube.app = multi_source_app([
        {"repoURL": f"file://{chart_repo}", "targetRevision": "main", "path": "app",
         "helm": {"valueFiles": ["$values/prod.yaml"]}},
        {"repoURL": f"file://{values_repo}", "targetRevision": "main", "ref": "values"},
    ])

    status = reconcile_until_synced(controller, kube, clock)

    assert kube.objects[ResourceKey("", "ConfigMap", "dest", "from-lib")]["data"] == {"size": "medium"}
    assert status["sync"]["revisions"] == [chart_sha, values_sha]
    assert status["sync"]["revision"] == chart_sha
    assert status["sourceTypes"] == ["Helm", "Directory"]
    assert [s["repoURL"] for s in status["sync"]["comparedTo"]["sources"]] == [
        f"file://{chart_repo}", f"file://{values_repo}"]
    assert status["operationState"]["syncResult"]["revisions"] == [chart_sha, values_sha]

    # A commit to the values repo only: a new automated sync (loop protection looks at every revision).
    new_values_sha = commit_files(values_repo, {"prod.yaml": "size: huge\n"}, "values 2")
    status = reconcile_until_synced(controller, kube, clock)

    assert kube.objects[ResourceKey("", "ConfigMap", "dest", "from-lib")]["data"] == {"size": "huge"}
    assert status["operationState"]["syncResult"]["revisions"] == [chart_sha, new_values_sha]


def test_multi_source_chart_from_a_helm_repository_through_the_reconcile(
    tmp_path: Path, helm_repo: tuple[str, Path], reconciler: tuple[AppController, FakeKube, list[datetime]]
) -> None:
    controller, kube, clock = reconciler
    url, _ = helm_repo
    values_repo = tmp_path / "values-git"
    values_repo.mkdir()
    git(values_repo, "init", "--quiet", "-b", "main")
    values_sha = commit_files(values_repo, {"prod.yaml": "replicas: 3\n"}, "values")
    kube.app = multi_source_app([
        {"repoURL": url, "chart": "model", "targetRevision": "1.1.0",
         "helm": {"valueFiles": ["$values/prod.yaml"]}},
        {"repoURL": f"file://{values_repo}", "targetRevision": "main", "ref": "values"},
    ])

    status = reconcile_until_synced(controller, kube, clock)

    assert kube.objects[ResourceKey("", "ConfigMap", "dest", "app")]["data"] == {"size": "two", "replicas": "3"}
    assert status["sync"]["revisions"] == ["1.1.0", values_sha]
    assert status["sourceTypes"] == ["Helm", "Directory"]
