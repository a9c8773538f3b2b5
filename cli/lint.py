"""``tidegate lint -f FILE [-f FILE...]``: check Tidegate/Argo documents offline, before they reach a cluster.

Reads multi-document YAML and checks Rollouts, AnalysisTemplates,
ClusterAnalysisTemplates, AnalysisRuns, Applications, AppProjects and the
notification ConfigMaps (argocd-notifications-cm, argo-rollouts-notification-configmap):

* schema, with the controllers' own pydantic models (rollouts/api, analysis/api, gitops/api);
* the Rollout spec rules the rollout controller enforces (rollouts/engine/validation.py:
  setWeight 0..100, pause durations, step shapes, Istio references when the
  VirtualService is in the given files);
* analysis template references: resolvable in the given files, else a warning
  (the template may live on the cluster);
* args: a template arg with no value must be supplied by the step's (or the
  background analysis's) args; every ``{{args.x}}`` must name a declared arg;
* expressions: successCondition / failureCondition compiled in the analysis dialect,
  notification ``when`` in the notifications dialect;
* notification templates parsed as Go templates (or by the Jinja2 sandbox when marked
  ``{# engine: jinja2 #}``), through notifications/config.py as the controller parses them.

Objects on the cluster (Services, VirtualServices not in the files) are not looked up.
Each message names the file, the document (1-based index, Kind/name) and the field
path. Exit 0: no errors (warnings allowed); 1: errors; 2: a file could not be read or
is not YAML. Registered by cli/main.py.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

from analysis.api.models import (
    AnalysisRun,
    AnalysisTemplate,
    Argument,
    ClusterAnalysisTemplate,
    Metric,
)
from analysis.api.templates import substitute
from analysis.templates import validate_metric
from common.api import SpecError
from common.expr import ANALYSIS, ExpressionError, compile_expression, quote_source
from gitops.api import parse_app_project, parse_application
from notifications.catalog import parse_with_catalog
from notifications.config import ARGOCD_CONFIGMAP, MSG_UNKNOWN_TEMPLATE, ROLLOUTS_CONFIGMAP
from rollouts.api.models import Rollout, parse_rollout
from rollouts.engine.validation import References, validate
from rollouts.traffic.istio import virtual_service_refs, vs_key

EXIT_CLEAN, EXIT_ERRORS, EXIT_UNREADABLE = 0, 1, 2
ERROR, WARNING = "error", "warning"
MAX_FILE_BYTES = 8 * 1024 * 1024  # a size cap: lint is for manifests, not data dumps

KIND_ROLLOUT = "Rollout"
KIND_TEMPLATE = "AnalysisTemplate"
KIND_CLUSTER_TEMPLATE = "ClusterAnalysisTemplate"
KIND_RUN = "AnalysisRun"
KIND_APPLICATION = "Application"
KIND_PROJECT = "AppProject"
KIND_CONFIGMAP = "ConfigMap"
NOTIFICATION_CONFIGMAPS = (ARGOCD_CONFIGMAP, ROLLOUTS_CONFIGMAP)
CANARY = "spec.strategy.canary"
#: Stands in for an arg's value when checking a metric offline (an integer, so a
#: templated count or limit still coerces; as in rollouts/engine/validation.py).
ARG_STAND_IN = "0"
#: validate()'s own unsupplied-arg problems: lint reports those itself for every step,
#: also when another reference is missing (which stops validate() before its arg checks).
VALIDATE_ARG_MARKER = " requires arg "
#: A trigger sending a template this ConfigMap does not define: a warning, as the template
#: may come from Argo's catalog or a ConfigMap merged in at deploy time.
UNKNOWN_TEMPLATE_SUFFIX = MSG_UNKNOWN_TEMPLATE.rsplit("}", 1)[-1]

MSG_LINE = "{file}: {where}{path}{severity}{message}"
MSG_DOCUMENT = "document {index} ({kind}/{name}): "
MSG_UNREADABLE = "{file}: cannot read: {error}"
MSG_TOO_LARGE = "{file}: larger than {limit} bytes"
MSG_BAD_YAML = "{file}: not valid YAML: {error}"
MSG_NOT_MAPPING = "the document is not a mapping (found {type})"
MSG_NO_KIND = "kind and apiVersion are required"
MSG_TEMPLATE_EXTERNAL = "{kind} '{name}' is not defined in the given files (it must exist on the cluster)"
MSG_ARG_NOT_SUPPLIED = "{kind} '{template}' requires arg '{arg}', which this analysis does not supply"
MSG_CONDITION = "{source!r}: {message}"
MSG_DATA_NOT_MAPPING = "must be a mapping of strings"
MSG_SUMMARY = "{errors} error(s), {warnings} warning(s) in {files} file(s)"


@dataclass(frozen=True)
class Finding:
    """One message: where (file, document, field) and what."""

    severity: str
    file: str
    message: str
    path: str = ""
    index: int | None = None
    kind: str = ""
    name: str = ""

    def __str__(self) -> str:
        where = "" if self.index is None else MSG_DOCUMENT.format(
            index=self.index, kind=self.kind or "?", name=self.name or "<unnamed>")
        severity = "warning: " if self.severity == WARNING else ""
        return MSG_LINE.format(file=self.file, where=where, path=f"{self.path}: " if self.path else "",
                               severity=severity, message=self.message)


@dataclass(frozen=True)
class Document:
    file: str
    index: int
    body: Any  # a mapping for every well-formed document; anything YAML yields otherwise

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "") if isinstance(self.body, Mapping) else ""

    @property
    def name(self) -> str:
        metadata = self.body.get("metadata") if isinstance(self.body, Mapping) else None
        return str(metadata.get("name") or "") if isinstance(metadata, Mapping) else ""

    def finding(self, message: str, *, path: str = "", severity: str = ERROR) -> Finding:
        return Finding(severity=severity, file=self.file, message=message, path=path,
                       index=self.index, kind=self.kind, name=self.name)


def add_subcommands(sub: Any) -> None:
    """Register ``lint`` on the top-level subparsers sub."""
    parser = sub.add_parser("lint", help="check Rollout, analysis, Application and notification YAML offline")
    parser.add_argument("-f", "--filename", dest="files", action="append", required=True,
                        help="a YAML file (multi-document allowed; repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return lint_files(args.files, stream=sys.stdout)


def lint_files(files: Sequence[str], *, stream: TextIO) -> int:
    """Lint ``files`` together (references resolve across them); print findings; the exit code."""
    documents: list[Document] = []
    unreadable: list[str] = []
    for file in files:
        loaded, problem = _load(file)
        if problem is not None:
            unreadable.append(problem)
        documents += loaded
    findings = lint_documents(documents)
    for line in unreadable:
        stream.write(line + "\n")
    for finding in findings:
        stream.write(str(finding) + "\n")
    errors = sum(1 for f in findings if f.severity == ERROR)
    warnings = len(findings) - errors
    if findings or unreadable:
        stream.write(MSG_SUMMARY.format(errors=errors + len(unreadable), warnings=warnings, files=len(files)) + "\n")
    if unreadable:
        return EXIT_UNREADABLE
    return EXIT_ERRORS if errors else EXIT_CLEAN


def _load(file: str) -> tuple[list[Document], str | None]:
    try:
        with open(file, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return [], MSG_UNREADABLE.format(file=file, error=exc.strerror or exc)
    if len(raw) > MAX_FILE_BYTES:
        return [], MSG_TOO_LARGE.format(file=file, limit=MAX_FILE_BYTES)
    try:
        bodies = list(yaml.safe_load_all(raw.decode("utf-8")))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return [], MSG_BAD_YAML.format(file=file, error=" ".join(str(exc).split()))
    # Empty documents (a trailing ---) are skipped but still counted, as kubectl numbers them.
    return [Document(file=file, index=i, body=body) for i, body in enumerate(bodies, start=1)
            if body is not None], None


def lint_documents(documents: Sequence[Document]) -> list[Finding]:
    """Every finding for ``documents``, in document order."""
    templates = {d.name: d.body for d in documents if d.kind == KIND_TEMPLATE and d.name}
    cluster_templates = {d.name: d.body for d in documents if d.kind == KIND_CLUSTER_TEMPLATE and d.name}
    findings: list[Finding] = []
    for doc in documents:
        if not isinstance(doc.body, Mapping):
            findings.append(Finding(severity=ERROR, file=doc.file, index=doc.index,
                                    message=MSG_NOT_MAPPING.format(type=type(doc.body).__name__)))
            continue
        if not doc.kind or not doc.body.get("apiVersion"):
            findings.append(doc.finding(MSG_NO_KIND))
            continue
        findings += _lint_one(doc, documents, templates, cluster_templates)
    return findings


def _lint_one(doc: Document, documents: Sequence[Document], templates: Mapping[str, Mapping[str, Any]],
              cluster_templates: Mapping[str, Mapping[str, Any]]) -> list[Finding]:
    if doc.kind == KIND_ROLLOUT:
        return _lint_rollout(doc, documents, templates, cluster_templates)
    if doc.kind in (KIND_TEMPLATE, KIND_CLUSTER_TEMPLATE, KIND_RUN):
        return _lint_analysis(doc)
    if doc.kind == KIND_APPLICATION:
        return _schema(doc, parse_application)
    if doc.kind == KIND_PROJECT:
        return _schema(doc, parse_app_project)
    if doc.kind == KIND_CONFIGMAP and doc.name in NOTIFICATION_CONFIGMAPS:
        return _lint_notifications(doc)
    return []  # other kinds are not Tidegate's to judge


# --- schema --------------------------------------------------------------------------------


def _spec_error_findings(doc: Document, err: SpecError) -> list[Finding]:
    """One finding per ``path: message`` of a SpecError (its label prefix dropped)."""
    text = err.message
    label, sep, rest = text.partition(": ")
    if sep and (label.startswith(doc.kind) or not doc.kind):
        text = rest
    findings = []
    for part in text.split("; "):
        path, sep, message = part.partition(": ")
        findings.append(doc.finding(message, path=path) if sep and " " not in path else doc.finding(part))
    return findings


def _schema(doc: Document, parser: Any) -> list[Finding]:
    try:
        parser(doc.body)
    except SpecError as err:
        return _spec_error_findings(doc, err)
    return []


# --- analysis ------------------------------------------------------------------------------


_MODELS: dict[str, Any] = {KIND_TEMPLATE: AnalysisTemplate, KIND_CLUSTER_TEMPLATE: ClusterAnalysisTemplate,
                           KIND_RUN: AnalysisRun}


def _lint_analysis(doc: Document) -> list[Finding]:
    from common.api import parse

    try:
        parsed = parse(_MODELS[doc.kind], doc.body)
    except SpecError as err:
        return _spec_error_findings(doc, err)
    findings: list[Finding] = []
    declared = {arg.name: ARG_STAND_IN for arg in parsed.spec.args}
    for index, metric in enumerate(parsed.spec.metrics):
        findings += _lint_metric(doc, metric, f"spec.metrics[{index}]", declared)
    return findings


def _lint_metric(doc: Document, metric: Metric, path: str, args: Mapping[str, str]) -> list[Finding]:
    try:
        filled = Metric.model_validate(substitute(metric.to_json(), args))
    except SpecError as err:
        return [doc.finding(err.message, path=path)]
    findings: list[Finding] = []
    for field_name, source in (("successCondition", filled.success_condition),
                               ("failureCondition", filled.failure_condition)):
        if not source:
            continue
        try:
            compile_expression(source, dialect=ANALYSIS)
        except ExpressionError as err:
            findings.append(doc.finding(
                MSG_CONDITION.format(source=quote_source(source, err.position), message=err.message),
                path=f"{path}.{field_name}"))
    # The rest of Argo's metric rules (limits, durations, one provider), conditions aside:
    # those were reported above with their own field path.
    try:
        validate_metric(filled.model_copy(update={"success_condition": None, "failure_condition": None}))
    except SpecError as err:
        findings.append(doc.finding(err.message, path=path))
    return findings


# --- rollouts ------------------------------------------------------------------------------


def _analysis_blocks(rollout: Rollout) -> Iterator[tuple[str, Any]]:
    canary = rollout.spec.strategy.canary if rollout.spec.strategy else None
    if canary is None:
        return
    for index, step in enumerate(canary.steps or ()):
        if step.analysis is not None:
            yield f"{CANARY}.steps[{index}].analysis", step.analysis
    if canary.analysis is not None:
        yield f"{CANARY}.analysis", canary.analysis


def _template_args(name: str, cluster: bool, templates: Mapping[str, Mapping[str, Any]],
                   cluster_templates: Mapping[str, Mapping[str, Any]], seen: set[tuple[str, bool]]
                   ) -> list[tuple[str, Argument]]:
    """Args of a template and the templates it includes (those in the files), with their owner."""
    if (name, cluster) in seen:
        return []
    seen.add((name, cluster))
    body = (cluster_templates if cluster else templates).get(name)
    if body is None:
        return []
    try:
        spec = (ClusterAnalysisTemplate if cluster else AnalysisTemplate).model_validate(body).spec
    except ValueError:
        return []  # its own document reports the schema error
    found = [(name, arg) for arg in spec.args]
    for ref in spec.templates:
        found += _template_args(ref.template_name, ref.cluster_scope, templates, cluster_templates, seen)
    return found


def _rollout_references(doc: Document, rollout: Rollout, templates: Mapping[str, Mapping[str, Any]],
                        cluster_templates: Mapping[str, Mapping[str, Any]]) -> list[Finding]:
    findings: list[Finding] = []
    for path, analysis in _analysis_blocks(rollout):
        supplied = {a.name for a in analysis.args or () if a.value is not None or a.value_from is not None}
        for index, ref in enumerate(analysis.templates or ()):
            cluster = bool(ref.cluster_scope)
            kind = KIND_CLUSTER_TEMPLATE if cluster else KIND_TEMPLATE
            if ref.template_name not in (cluster_templates if cluster else templates):
                findings.append(doc.finding(
                    MSG_TEMPLATE_EXTERNAL.format(kind=kind, name=ref.template_name),
                    path=f"{path}.templates[{index}].templateName", severity=WARNING))
                continue
            for owner, arg in _template_args(ref.template_name, cluster, templates, cluster_templates, set()):
                if arg.value is not None or arg.value_from is not None or arg.name in supplied:
                    continue
                supplied.add(arg.name)  # once per arg
                findings.append(doc.finding(
                    MSG_ARG_NOT_SUPPLIED.format(kind=kind, template=owner, arg=arg.name),
                    path=f"{path}.templates[{index}]"))
    return findings


def _references(rollout: Rollout, documents: Sequence[Document], templates: Mapping[str, Mapping[str, Any]],
                cluster_templates: Mapping[str, Mapping[str, Any]]) -> References:
    """What validate() looks up, from the given files; cluster-only objects stand in as present."""
    namespace = rollout.metadata.namespace or "default"
    canary = rollout.spec.strategy.canary if rollout.spec.strategy else None
    # Services are never in a lint's scope: an empty stand-in says "exists".
    names = (canary.canary_service, canary.stable_service) if canary is not None else ()
    services: dict[str, Mapping[str, Any] | None] = {name: {} for name in names if name}
    canary_doc = (rollout.to_json().get("spec") or {}).get("strategy", {}).get("canary") or {}
    given = {vs_key(str((d.body.get("metadata") or {}).get("namespace") or namespace), d.name): d.body
             for d in documents if d.kind == "VirtualService"}
    virtual_services = {vs_key(ref.namespace, ref.name): given.get(vs_key(ref.namespace, ref.name))
                        for ref in virtual_service_refs(canary_doc, rollout_namespace=namespace)}
    rules = [d.body for d in documents if d.kind == "DestinationRule"]
    return References(namespace=namespace, services=services, virtual_services=virtual_services,
                      destination_rule=rules[0] if len(rules) == 1 else None,
                      analysis_templates=templates, cluster_analysis_templates=cluster_templates)


def _lint_rollout(doc: Document, documents: Sequence[Document], templates: Mapping[str, Mapping[str, Any]],
                  cluster_templates: Mapping[str, Mapping[str, Any]]) -> list[Finding]:
    try:
        rollout = parse_rollout(doc.body)
    except SpecError as err:
        return _spec_error_findings(doc, err)
    findings: list[Finding] = []
    refs = _references(rollout, documents, templates, cluster_templates)
    for problem in validate(rollout, refs):
        # A missing referenced object is only known on the cluster (templates are warned about
        # below); unsupplied args are reported below for every step, with the same path.
        if problem.missing or VALIDATE_ARG_MARKER in problem.message:
            continue
        message = problem.message if problem.value is None else f'Invalid value: "{problem.value}": {problem.message}'
        findings.append(doc.finding(message, path=problem.path))
    findings += _rollout_references(doc, rollout, templates, cluster_templates)
    return findings


# --- notification ConfigMaps ---------------------------------------------------------------

_ENTRY_PATH = re.compile(r"^(?P<key>[^:]+): (?:(?P<field>\[\d+\][^:]*|[A-Za-z0-9_.-]+): )?(?P<problem>.*)$", re.S)


def _lint_notifications(doc: Document) -> list[Finding]:
    data = doc.body.get("data") or {}
    if not isinstance(data, Mapping):
        return [doc.finding(MSG_DATA_NOT_MAPPING, path="data")]
    config = parse_with_catalog({str(k): v for k, v in data.items()}, name=doc.name)
    findings: list[Finding] = []
    prefix = f"{doc.name}: "
    for error in config.errors:
        if not error.startswith(prefix):
            continue  # the catalog's own (never expected), not this document's
        match = _ENTRY_PATH.match(error[len(prefix):])
        if match is None:
            findings.append(doc.finding(error[len(prefix):], path="data"))
            continue
        field = match.group("field") or ""
        joiner = "" if field.startswith("[") or not field else "."
        path = f"data.{match.group('key')}{joiner}{field}"
        problem = match.group("problem")
        severity = WARNING if problem.endswith(UNKNOWN_TEMPLATE_SUFFIX) else ERROR
        findings.append(doc.finding(problem, path=path, severity=severity))
    return findings
