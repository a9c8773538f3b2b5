"""Checks of the CustomResourceDefinitions in crds/, without a cluster.

Who runs this: `make check` / pytest. It guards three things before the e2e
harness applies the CRDs to a real kube-apiserver:

1. each CRD file declares the names, scope, subresources and printer columns that
   kubectl, the HPA and Argo-compatible clients expect;
2. each schema is *structural* (the API server refuses CRDs that are not) and
   uses only the keywords we rely on, so a typo such as `require:` is caught;
3. the seed examples validate and each malformed fixture fails at the field its
   header names. For that this module carries a small validator for the subset
   of OpenAPI v3 the CRDs use (type, required, properties, additionalProperties,
   items, enum, min/maxProperties, minimum/maximum, maxItems, int-or-string,
   preserve-unknown-fields). Like the API server, it prunes unknown fields before
   counting properties.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO / "crds"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SEED_DIR = FIXTURES / "seed"
MALFORMED_DIR = FIXTURES / "malformed"
# The originals the seed copies were taken from; present on the team's machines.
ORIGINAL_SEED_DIR = Path("/work/shared/seed")
SEED_FILES = ("rollout-and-analysis.yaml", "application-and-project.yaml")

INT_OR_STRING = "x-kubernetes-int-or-string"
PRESERVE_UNKNOWN = "x-kubernetes-preserve-unknown-fields"

# Error codes of the local validator, named after the API server's field error types.
REQUIRED = "Required value"
INVALID_TYPE = "Invalid type"
TOO_MANY = "Too many properties"
TOO_FEW = "Too few properties"
NOT_IN_ENUM = "Unsupported value"
BELOW_MINIMUM = "should be greater than or equal to"
ABOVE_MAXIMUM = "should be less than or equal to"
TOO_MANY_ITEMS = "Too many"

# Keywords a schema node may use. Anything else is a typo or a feature the
# local validator would silently ignore.
ALLOWED_KEYWORDS = frozenset(
    {
        "type",
        "format",
        "description",
        "properties",
        "required",
        "items",
        "additionalProperties",
        "enum",
        "maxProperties",
        "minProperties",
        "minimum",
        "maximum",
        "maxItems",
        INT_OR_STRING,
        PRESERVE_UNKNOWN,
        "x-kubernetes-map-type",
    }
)
JSON_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
PRINTER_COLUMN_TYPES = frozenset({"integer", "number", "string", "boolean", "date"})


@dataclass(frozen=True)
class Expected:
    """What one CRD file must declare."""

    file: str
    group: str
    kind: str
    plural: str
    short_names: tuple[str, ...]
    scope: str
    versions: tuple[str, ...]


EXPECTED = [
    Expected(
        "rollout.yaml", "argoproj.io", "Rollout", "rollouts", ("ro",), "Namespaced", ("v1alpha1",)
    ),
    Expected(
        "analysistemplate.yaml",
        "argoproj.io",
        "AnalysisTemplate",
        "analysistemplates",
        ("at",),
        "Namespaced",
        ("v1alpha1",),
    ),
    Expected(
        "clusteranalysistemplate.yaml",
        "argoproj.io",
        "ClusterAnalysisTemplate",
        "clusteranalysistemplates",
        ("cat",),
        "Cluster",
        ("v1alpha1",),
    ),
    Expected(
        "analysisrun.yaml",
        "argoproj.io",
        "AnalysisRun",
        "analysisruns",
        ("ar",),
        "Namespaced",
        ("v1alpha1",),
    ),
    Expected(
        "application.yaml",
        "argoproj.io",
        "Application",
        "applications",
        ("app", "apps"),
        "Namespaced",
        ("v1alpha1",),
    ),
    Expected(
        "appproject.yaml",
        "argoproj.io",
        "AppProject",
        "appprojects",
        ("appproj", "appprojs"),
        "Namespaced",
        ("v1alpha1",),
    ),
    Expected(
        "istio/virtualservice.yaml",
        "networking.istio.io",
        "VirtualService",
        "virtualservices",
        ("vs",),
        "Namespaced",
        ("v1alpha3", "v1beta1", "v1"),
    ),
    Expected(
        "istio/destinationrule.yaml",
        "networking.istio.io",
        "DestinationRule",
        "destinationrules",
        ("dr",),
        "Namespaced",
        ("v1alpha3", "v1beta1", "v1"),
    ),
]

ROLLOUT_COLUMNS = [
    ("Desired", "integer", ".spec.replicas"),
    ("Current", "integer", ".status.replicas"),
    ("Up-to-date", "integer", ".status.updatedReplicas"),
    ("Available", "integer", ".status.availableReplicas"),
    ("Phase", "string", ".status.phase"),
    ("Step", "integer", ".status.currentStepIndex"),
    ("Weight", "integer", ".status.canary.weights.canary.weight"),
    ("Age", "date", ".metadata.creationTimestamp"),
]


# --------------------------------------------------------------------------- loading


def load_crd(relative: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((CRDS / relative).read_text()) if d is not None]
    assert len(docs) == 1, f"{relative}: expected exactly one document, found {len(docs)}"
    crd = docs[0]
    assert isinstance(crd, dict)
    return crd


def all_crd_files() -> list[str]:
    return sorted(str(p.relative_to(CRDS)) for p in CRDS.rglob("*.yaml"))


@functools.cache
def crds_by_kind() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, for every served version (read-only)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for relative in all_crd_files():
        crd = load_crd(relative)
        spec = crd["spec"]
        for version in spec["versions"]:
            api_version = f"{spec['group']}/{version['name']}"
            out[(api_version, spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return out


def schema_of(relative: str, version: int = 0) -> dict[str, Any]:
    schema = load_crd(relative)["spec"]["versions"][version]["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


# ----------------------------------------------------------------- local validator


@dataclass(frozen=True)
class Violation:
    path: str
    code: str

    def __str__(self) -> str:
        return f"{self.path}: {self.code}"


def _type_ok(expected: str, value: Any) -> bool:
    # bool is an int in Python; JSON keeps them apart, and so must we.
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    raise AssertionError(f"unknown schema type {expected!r}")


def validate(schema: Mapping[str, Any], value: Any, path: str = "") -> list[Violation]:
    """Validate `value` against a structural schema the way the API server would.

    Returns violations with API-server style paths (`spec.steps[0].setWeight`).
    Unknown fields are pruned (ignored) unless the node preserves them.
    """
    if schema.get(INT_OR_STRING):
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        return [] if ok else [Violation(path, INVALID_TYPE)]
    expected_type = schema.get("type")
    if expected_type is not None and not _type_ok(expected_type, value):
        return [Violation(path, INVALID_TYPE)]
    if "enum" in schema and value not in schema["enum"]:
        return [Violation(path, NOT_IN_ENUM)]
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return [Violation(path, BELOW_MINIMUM)]
        if "maximum" in schema and value > schema["maximum"]:
            return [Violation(path, ABOVE_MAXIMUM)]
    if isinstance(value, dict):
        return _validate_object(schema, value, path)
    violations: list[Violation] = []
    if isinstance(value, list) and "maxItems" in schema and len(value) > schema["maxItems"]:
        violations.append(Violation(path, TOO_MANY_ITEMS))
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            violations += validate(schema["items"], item, f"{path}[{index}]")
    return violations


def _validate_object(
    schema: Mapping[str, Any], value: dict[str, Any], path: str
) -> list[Violation]:
    prefix = f"{path}." if path else ""
    properties: Mapping[str, Any] = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get(PRESERVE_UNKNOWN))
    violations: list[Violation] = []
    # Pruning happens before validation, so min/maxProperties see only kept keys.
    kept = [key for key in value if key in properties or additional is not None or preserve]
    if "maxProperties" in schema and len(kept) > schema["maxProperties"]:
        violations.append(Violation(path, TOO_MANY))
    if "minProperties" in schema and len(kept) < schema["minProperties"]:
        violations.append(Violation(path, TOO_FEW))
    for key in schema.get("required", []):
        if key not in value:
            violations.append(Violation(f"{prefix}{key}", REQUIRED))
    for key, item in value.items():
        if key in properties:
            violations += validate(properties[key], item, f"{prefix}{key}")
        elif isinstance(additional, dict):
            violations += validate(additional, item, f"{prefix}{key}")
    return violations


def validate_document(doc: Mapping[str, Any]) -> list[Violation]:
    schemas = crds_by_kind()
    key = (doc.get("apiVersion"), doc.get("kind"))
    assert key in schemas, f"no CRD serves {key}"
    return validate(schemas[key], doc)


# ------------------------------------------------------------- structural checks


def iter_nodes(
    schema: Mapping[str, Any], path: str = ""
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, schema
    for key, child in schema.get("properties", {}).items():
        yield from iter_nodes(child, f"{path}.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from iter_nodes(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from iter_nodes(schema["items"], f"{path}[]")


def structural_problems(schema: Mapping[str, Any]) -> list[str]:
    """The subset of Kubernetes' structural-schema rules our CRDs could break."""
    problems: list[str] = []
    for path, node in iter_nodes(schema):
        where = path or "<root>"
        unknown = set(node) - ALLOWED_KEYWORDS
        if unknown:
            problems.append(f"{where}: unexpected keywords {sorted(unknown)}")
        if node.get(INT_OR_STRING):
            if "type" in node:
                problems.append(f"{where}: int-or-string must not declare a type")
        elif node.get("type") not in JSON_TYPES and not node.get(PRESERVE_UNKNOWN):
            problems.append(f"{where}: missing or unknown type {node.get('type')!r}")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: properties and additionalProperties are exclusive")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{where}: array without items")
        for key in node.get("required", []):
            if key not in node.get("properties", {}):
                problems.append(f"{where}: required {key!r} is not a declared property")
    metadata = schema.get("properties", {}).get("metadata")
    if metadata is not None and metadata != {"type": "object"}:
        problems.append("metadata: a CRD may not constrain metadata beyond type object")
    return problems


# ------------------------------------------------------------------ fixtures


@dataclass(frozen=True)
class MalformedFixture:
    name: str
    document: dict[str, Any]
    field: str
    apiserver_error: str


HEADER_FIELD = re.compile(r"^#\s*field:\s*(\S+)\s*$", re.MULTILINE)
HEADER_ERROR = re.compile(r"^#\s*expect-apiserver-error:\s*(.+?)\s*$", re.MULTILINE)


def load_malformed() -> list[MalformedFixture]:
    out = []
    for path in sorted(MALFORMED_DIR.glob("*.yaml")):
        text = path.read_text()
        field = HEADER_FIELD.search(text)
        error = HEADER_ERROR.search(text)
        assert field and error, f"{path.name}: header must name the field and the API-server error"
        out.append(
            MalformedFixture(
                name=path.stem,
                document=yaml.safe_load(text),
                field=field.group(1),
                apiserver_error=error.group(1),
            )
        )
    return out


def seed_documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name in SEED_FILES:
        for doc in yaml.safe_load_all((SEED_DIR / name).read_text()):
            if doc is not None:
                out.append((f"{name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


def minimal_rollout(steps: list[Any]) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "r"},
        "spec": {
            "selector": {"matchLabels": {"app": "r"}},
            "template": {"metadata": {"labels": {"app": "r"}}, "spec": {"containers": []}},
            "strategy": {"canary": {"steps": steps}},
        },
    }


# ======================================================================= tests


def test_every_crd_file_is_expected() -> None:
    assert all_crd_files() == sorted(e.file for e in EXPECTED)


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda e: e.kind)
def test_crd_identity(expected: Expected) -> None:
    crd = load_crd(expected.file)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{expected.plural}.{expected.group}"
    spec = crd["spec"]
    assert spec["group"] == expected.group
    assert spec["scope"] == expected.scope
    names = spec["names"]
    assert names["kind"] == expected.kind
    assert names["plural"] == expected.plural
    assert names["singular"] == expected.kind.lower()
    assert names["listKind"] == f"{expected.kind}List"
    assert tuple(names["shortNames"]) == expected.short_names
    assert tuple(v["name"] for v in spec["versions"]) == expected.versions
    assert all(v["served"] for v in spec["versions"])
    assert [v["name"] for v in spec["versions"] if v["storage"]] == [expected.versions[0]]


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda e: e.kind)
def test_schema_is_structural(expected: Expected) -> None:
    for index, _ in enumerate(load_crd(expected.file)["spec"]["versions"]):
        assert structural_problems(schema_of(expected.file, index)) == []


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda e: e.kind)
def test_status_is_never_pruned(expected: Expected) -> None:
    # The controllers write fields the schema may not list yet (kopf's own
    # bookkeeping included); pruning them would make reconciles loop.
    for index, _ in enumerate(load_crd(expected.file)["spec"]["versions"]):
        properties = schema_of(expected.file, index)["properties"]
        if "status" in properties:
            assert properties["status"].get(PRESERVE_UNKNOWN) is True
            assert properties["status"]["type"] == "object"


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda e: e.kind)
def test_printer_columns_are_well_formed(expected: Expected) -> None:
    for version in load_crd(expected.file)["spec"]["versions"]:
        for column in version.get("additionalPrinterColumns", []):
            assert column["type"] in PRINTER_COLUMN_TYPES, column
            assert column["jsonPath"].startswith("."), column


def test_rollout_has_status_and_scale_subresources() -> None:
    version = load_crd("rollout.yaml")["spec"]["versions"][0]
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.HPAReplicas",
            "labelSelectorPath": ".status.selector",
        },
    }


def test_rollout_printer_columns() -> None:
    columns = load_crd("rollout.yaml")["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["type"], c["jsonPath"]) for c in columns] == ROLLOUT_COLUMNS


def test_rollout_status_types_match_argo() -> None:
    status = schema_of("rollout.yaml")["properties"]["status"]["properties"]
    assert status["observedGeneration"]["type"] == "string"
    assert status["HPAReplicas"]["type"] == "integer"
    assert status["selector"]["type"] == "string"
    assert status["currentStepIndex"]["type"] == "integer"


@pytest.mark.parametrize(
    "relative",
    [
        "analysisrun.yaml",
        "analysistemplate.yaml",
        "clusteranalysistemplate.yaml",
        "application.yaml",
        "appproject.yaml",
    ],
)
def test_argo_kinds_without_status_subresource(relative: str) -> None:
    # Argo writes these with a merge patch on the main object; a status
    # subresource would silently drop those writes.
    assert "subresources" not in load_crd(relative)["spec"]["versions"][0]


def test_analysisrun_printer_columns() -> None:
    columns = load_crd("analysisrun.yaml")["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"]) for c in columns] == [
        ("Status", ".status.phase"),
        ("Age", ".metadata.creationTimestamp"),
    ]


def test_application_printer_columns() -> None:
    columns = load_crd("application.yaml")["spec"]["versions"][0]["additionalPrinterColumns"]
    shown = [(c["name"], c["jsonPath"]) for c in columns if c.get("priority", 0) == 0]
    assert shown == [
        ("Sync Status", ".status.sync.status"),
        ("Health Status", ".status.health.status"),
        ("Age", ".metadata.creationTimestamp"),
    ]


def test_application_keeps_operation() -> None:
    operation = schema_of("application.yaml")["properties"]["operation"]
    assert operation == {**operation, "type": "object", PRESERVE_UNKNOWN: True}


def test_cluster_template_has_the_same_spec_as_the_namespaced_one() -> None:
    assert (
        schema_of("analysistemplate.yaml")["properties"]["spec"]
        == schema_of("clusteranalysistemplate.yaml")["properties"]["spec"]
    )


def test_analysisrun_spec_is_the_template_spec_plus_run_controls() -> None:
    template = dict(schema_of("analysistemplate.yaml")["properties"]["spec"]["properties"])
    run = dict(schema_of("analysisrun.yaml")["properties"]["spec"]["properties"])
    del template["templates"]  # a run holds already-flattened metrics
    assert {k: v for k, v in run.items() if k not in ("terminate", "ttlStrategy")} == template


def test_application_source_and_sources_share_one_schema() -> None:
    spec = schema_of("application.yaml")["properties"]["spec"]["properties"]
    assert spec["source"] == spec["sources"]["items"]


@pytest.mark.parametrize("relative", ["istio/virtualservice.yaml", "istio/destinationrule.yaml"])
def test_istio_stand_ins_keep_everything_and_say_they_are_test_only(relative: str) -> None:
    assert "TEST-ONLY" in (CRDS / relative).read_text().splitlines()[0]
    for index, _ in enumerate(load_crd(relative)["spec"]["versions"]):
        properties = schema_of(relative, index)["properties"]
        for part in ("spec", "status"):
            assert properties[part] == {"type": "object", PRESERVE_UNKNOWN: True}


# ----------------------------------------------------------- documents vs schemas


@pytest.mark.parametrize(("name", "doc"), seed_documents(), ids=[n for n, _ in seed_documents()])
def test_seed_documents_validate(name: str, doc: dict[str, Any]) -> None:
    assert validate_document(doc) == []


# sha256 of the seed files as the users gave them (../shared/seed/), pinned so the
# check runs on any machine, with or without the shared directory.
SEED_SHA256 = {'rollout-and-analysis.yaml': '65fa09e2f5efaacbc3d56a87a4607f18b26b1aa1a5d8e59741a791515496b1ec', 'application-and-project.yaml': '24ff9d9b8116d4554172f3996eab6af6ddb94121db44edf0698fe8142f5d6057'}


@pytest.mark.parametrize("name", SEED_FILES)
def test_seed_copies_are_unchanged(name: str) -> None:
    assert hashlib.sha256((SEED_DIR / name).read_bytes()).hexdigest() == SEED_SHA256[name]
    original = ORIGINAL_SEED_DIR / name
    if original.exists():  # on a machine with the shared seed, compare with it as well
        assert (SEED_DIR / name).read_bytes() == original.read_bytes()


@pytest.mark.parametrize("fixture", load_malformed(), ids=lambda f: f.name)
def test_malformed_fixture_fails_exactly_at_the_named_field(fixture: MalformedFixture) -> None:
    violations = validate_document(fixture.document)
    assert [v.path for v in violations] == [fixture.field], violations


@pytest.mark.parametrize("fixture", load_malformed(), ids=lambda f: f.name)
def test_malformed_fixture_header_is_consistent(fixture: MalformedFixture) -> None:
    # The expected API-server text must mention the field (or the rule) so the
    # lead's real-apiserver run checks the same thing the local validator does.
    leaf = re.sub(r"\[\d+\]$", "", fixture.field.rsplit(".", 1)[-1])
    assert leaf in fixture.apiserver_error or "at most 1" in fixture.apiserver_error


def test_malformed_fixtures_cover_the_agreed_cases() -> None:
    assert {f.name for f in load_malformed()} == {
        "rollout-setweight-string",
        "rollout-step-two-kinds",
        "rollout-missing-selector",
        "analysistemplate-metric-without-name",
        # issue 7 defect 7: the schema itself rejects out-of-range weights and counts.
        "rollout-setweight-above-100",
        "rollout-setweight-negative",
        "rollout-replicas-negative",
        "rollout-canaryscale-weight-above-100",
        "rollout-canaryscale-replicas-negative",
        "rollout-too-many-steps",
    }


STEP_KINDS: dict[str, Any] = {
    "setWeight": 20,
    "pause": {"duration": "5m"},
    "analysis": {"templates": [{"templateName": "t"}]},
    "setCanaryScale": {"replicas": 2},
    "experiment": {"templates": [{"name": "e", "specRef": "canary"}]},
    "setHeaderRoute": {"name": "h"},
    "setMirrorRoute": {"name": "m"},
    "plugin": {"name": "p", "config": {"anything": [1, 2]}},
}


@pytest.mark.parametrize("kind", sorted(STEP_KINDS))
def test_a_step_with_one_kind_is_accepted(kind: str) -> None:
    assert validate_document(minimal_rollout([{kind: STEP_KINDS[kind]}])) == []


@pytest.mark.parametrize(
    "pair", list(itertools.combinations(sorted(STEP_KINDS), 2)), ids=lambda p: "+".join(p)
)
def test_a_step_with_two_kinds_is_rejected(pair: tuple[str, str]) -> None:
    step = {kind: STEP_KINDS[kind] for kind in pair}
    assert validate_document(minimal_rollout([{"setWeight": 5}, step])) == [
        Violation("spec.strategy.canary.steps[1]", TOO_MANY)
    ]


def test_an_empty_step_is_rejected() -> None:
    assert validate_document(minimal_rollout([{}])) == [
        Violation("spec.strategy.canary.steps[0]", TOO_FEW)
    ]


def test_an_unknown_step_key_is_pruned_not_counted() -> None:
    # The API server prunes `note` before it counts properties, so this applies.
    assert validate_document(minimal_rollout([{"setWeight": 5, "note": "x"}])) == []


@pytest.mark.parametrize(
    ("duration", "ok"),
    [(30, True), ("30", True), ("1h", True), (True, False), (1.5, False), ({"s": 1}, False)],
    ids=["int", "numeric-string", "go-duration", "bool", "float", "object"],
)
def test_pause_duration_is_int_or_string(duration: Any, ok: bool) -> None:
    violations = validate_document(minimal_rollout([{"pause": {"duration": duration}}]))
    assert (violations == []) is ok, violations


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("maxSurge", "25%", True),
        ("maxSurge", 1, True),
        ("maxUnavailable", 0, True),
        ("maxUnavailable", False, False),
    ],
)
def test_surge_and_unavailable_are_int_or_string(field: str, value: Any, ok: bool) -> None:
    doc = minimal_rollout([])
    doc["spec"]["strategy"]["canary"][field] = value
    assert (validate_document(doc) == []) is ok


def test_template_pod_spec_is_preserved_but_labels_are_typed() -> None:
    doc = minimal_rollout([])
    doc["spec"]["template"]["spec"] = {"containers": [{"name": "c", "future": {"x": 1}}]}
    assert validate_document(doc) == []
    doc["spec"]["template"]["metadata"]["labels"]["app"] = 7
    assert validate_document(doc) == [Violation("spec.template.metadata.labels.app", INVALID_TYPE)]


def test_istio_destination_rule_requires_both_subsets() -> None:
    doc = minimal_rollout([])
    doc["spec"]["strategy"]["canary"]["trafficRouting"] = {
        "istio": {"destinationRule": {"name": "dr", "canarySubsetName": "canary"}}
    }
    assert validate_document(doc) == [
        Violation(
            "spec.strategy.canary.trafficRouting.istio.destinationRule.stableSubsetName", REQUIRED
        )
    ]


def test_analysis_template_templated_count_is_accepted() -> None:
    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "t"},
        "spec": {
            "metrics": [
                {
                    "name": "m",
                    "count": "{{args.count}}",
                    "failureLimit": "{{args.limit}}",
                    "provider": {"job": {"spec": {"template": {"spec": {"containers": []}}}}},
                }
            ]
        },
    }
    assert validate_document(doc) == []


def test_rollout_status_observed_generation_must_be_a_string() -> None:
    doc = minimal_rollout([])
    doc["status"] = {"observedGeneration": 5, "somethingNew": {"kept": True}}
    assert validate_document(doc) == [Violation("status.observedGeneration", INVALID_TYPE)]


# issue 7 defect 7: bounds the API server enforces itself, inclusive at both ends.
ROLLOUT_BOUNDS = [
    pytest.param(("spec", "replicas"), 0, [], id="replicas-0"),
    pytest.param(("spec", "replicas"), -1, [Violation("spec.replicas", BELOW_MINIMUM)], id="replicas-negative"),
    pytest.param(("step", "setWeight"), 0, [], id="setWeight-0"),
    pytest.param(("step", "setWeight"), 100, [], id="setWeight-100"),
    pytest.param(("step", "setWeight"), 101,
                 [Violation("spec.strategy.canary.steps[0].setWeight", ABOVE_MAXIMUM)], id="setWeight-101"),
    pytest.param(("step", "setWeight"), -1,
                 [Violation("spec.strategy.canary.steps[0].setWeight", BELOW_MINIMUM)], id="setWeight-negative"),
    pytest.param(("scale", "weight"), 100, [], id="canaryScale-weight-100"),
    pytest.param(("scale", "weight"), 101,
                 [Violation("spec.strategy.canary.steps[0].setCanaryScale.weight", ABOVE_MAXIMUM)],
                 id="canaryScale-weight-101"),
    pytest.param(("scale", "weight"), -1,
                 [Violation("spec.strategy.canary.steps[0].setCanaryScale.weight", BELOW_MINIMUM)],
                 id="canaryScale-weight-negative"),
    pytest.param(("scale", "replicas"), 0, [], id="canaryScale-replicas-0"),
    pytest.param(("scale", "replicas"), -1,
                 [Violation("spec.strategy.canary.steps[0].setCanaryScale.replicas", BELOW_MINIMUM)],
                 id="canaryScale-replicas-negative"),
]


@pytest.mark.parametrize(("where", "value", "expected"), ROLLOUT_BOUNDS)
def test_rollout_weights_and_counts_are_bounded(where: tuple[str, str], value: int, expected: list[Violation]) -> None:
    doc = minimal_rollout([{"setWeight": 10}])
    kind, name = where
    if kind == "spec":
        doc["spec"][name] = value
    elif kind == "step":
        doc["spec"]["strategy"]["canary"]["steps"] = [{name: value}]
    else:
        doc["spec"]["strategy"]["canary"]["steps"] = [{"setCanaryScale": {name: value}}]
    assert validate_document(doc) == expected


@pytest.mark.parametrize(("count", "ok"), [(100, True), (101, False)])
def test_rollout_steps_are_at_most_100(count: int, ok: bool) -> None:
    violations = validate_document(minimal_rollout([{"setWeight": 1}] * count))
    assert violations == ([] if ok else [Violation("spec.strategy.canary.steps", TOO_MANY_ITEMS)])


def test_rollout_step_limit_matches_the_controller() -> None:
    from rollouts.engine.validation import MAX_STEPS

    steps = schema_of("rollout.yaml")["properties"]["spec"]["properties"]["strategy"]["properties"]["canary"]["properties"]["steps"]
    assert steps["maxItems"] == MAX_STEPS
