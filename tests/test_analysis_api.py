"""The analysis CRD models (analysis/api/models.py): lossless round trips and readable errors."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from analysis.api.models import (
    AnalysisRun,
    AnalysisTemplate,
    ClusterAnalysisTemplate,
    Metric,
    rule_matches,
)
from analysis.api.phases import AnalysisPhase
from common.api import (
    KubeModel,
    SpecError,
    format_time,
    parse,
    parse_duration,
)

FIXTURES = Path(__file__).parent / "fixtures"
SEED = FIXTURES / "seed" / "rollout-and-analysis.yaml"

RICH_TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: inference-latency
  namespace: ml-serving
  labels: {team: ml}
  annotations: {argocd.argoproj.io/sync-wave: "2"}
spec:
  args:
  - name: service-name
  - name: count
    value: "10"
  - name: api-token
    valueFrom:
      secretKeyRef: {name: datadog, key: api-token}
  dryRun:
  - metricName: shadow-.*
  measurementRetention:
  - metricName: "*"
    limit: 20
  templates:
  - templateName: shared-errors
  - templateName: platform-slo
    clusterScope: true
  metrics:
  - name: p99-latency
    interval: 30s
    initialDelay: 2m
    count: "{{args.count}}"
    failureLimit: "{{ args.limit }}"
    inconclusiveLimit: 1
    consecutiveErrorLimit: 6
    consecutiveSuccessLimit: 3
    successCondition: len(result) == 0 || isNaN(result[0]) || result[0] <= 0.25
    failureCondition: result[0] > 1.0
    futureMetricField: {kept: true}
    provider:
      prometheus:
        address: http://prometheus:9090
        timeout: 20
        headers:
        - {key: X-Scope-OrgID, value: ml}
        rangeQuery: {start: now() - duration("5m"), end: now(), step: 1m}
        query: histogram_quantile(0.99, rate(lat_bucket{svc="{{args.service-name}}"}[5m]))
  - name: shadow-smoke
    provider:
      web:
        url: https://inference-canary/health
        jsonPath: "{$.ok}"
        headers:
        - {key: Authorization, value: "Bearer {{args.api-token}}"}
  - name: load-test
    count: 1
    provider:
      job:
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: load
                image: load-tester:1
                args: [--target, inference-canary]
  futureSpecField: 1
"""

CLUSTER_TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata:
  name: platform-slo
spec:
  metrics:
  - name: error-budget
    interval: 5m
    failureLimit: -1
    consecutiveSuccessLimit: 2
    count: 4
    provider:
      someFutureProvider: {endpoint: x}
"""

RUN = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata:
  name: inference-rollout-6b56c8cdb4-3-2
  namespace: ml-serving
  labels: {rollout-type: Step, rollouts-pod-template-hash: 6b56c8cdb4}
  annotations: {rollout.argoproj.io/revision: "3"}
  ownerReferences:
  - {apiVersion: argoproj.io/v1alpha1, kind: Rollout, name: inference-rollout, uid: abc, controller: true}
spec:
  args:
  - {name: service-name, value: inference-canary}
  terminate: false
  ttlStrategy: {secondsAfterCompletion: 600, secondsAfterFailure: 3600}
  dryRun:
  - metricName: shadow
  measurementRetention:
  - {metricName: success-rate, limit: 3}
  metrics:
  - name: success-rate
    interval: 1m
    count: 5
    successCondition: result[0] >= 0.99
    failureLimit: 2
    provider:
      prometheus: {address: "http://prometheus:9090", query: up}
status:
  phase: Running
  message: ""
  startedAt: "2024-05-01T10:00:00Z"
  runSummary: {count: 1, successful: 0, failed: 0, inconclusive: 0, error: 0}
  dryRunSummary: {count: 0}
  metricResults:
  - name: success-rate
    phase: Running
    count: 2
    successful: 1
    failed: 1
    error: 1
    consecutiveError: 0
    consecutiveSuccess: 0
    metadata: {ResolvedPrometheusQuery: up}
    measurements:
    - phase: Successful
      startedAt: "2024-05-01T10:00:00Z"
      finishedAt: "2024-05-01T10:00:00.25Z"
      value: "[0.995]"
    - phase: Error
      message: 'could not evaluate successCondition "result[0] >= 0.99": no data'
      startedAt: "2024-05-01T10:01:00Z"
      finishedAt: "2024-05-01T10:01:01Z"
      value: "[]"
    - phase: Failed
      startedAt: "2024-05-01T10:02:00Z"
      finishedAt: "2024-05-01T10:02:01Z"
      value: "[0.5]"
      metadata: {warnings: "some warning"}
    - phase: Running
      startedAt: "2024-05-01T10:03:00Z"
      resumeAt: "2024-05-01T10:03:30Z"
  futureStatusField: {x: 1}
"""


def _seed_template() -> dict[str, Any]:
    """The AnalysisTemplate of the seed file (tests/fixtures/seed/, the one copy)."""
    for doc in yaml.safe_load_all(SEED.read_text()):
        if doc and doc.get("kind") == "AnalysisTemplate":
            return dict(doc)
    raise AssertionError(f"{SEED} has no AnalysisTemplate")


@pytest.mark.parametrize(
    ("model", "doc"),
    [
        pytest.param(AnalysisTemplate, _seed_template(), id="seed-template"),
        pytest.param(AnalysisTemplate, yaml.safe_load(RICH_TEMPLATE), id="rich-template"),
        pytest.param(ClusterAnalysisTemplate, yaml.safe_load(CLUSTER_TEMPLATE), id="cluster"),
        pytest.param(AnalysisRun, yaml.safe_load(RUN), id="run-with-status"),
    ],
)
def test_round_trip_is_lossless(model: type[KubeModel], doc: dict[str, Any]) -> None:
    original = copy.deepcopy(doc)
    parsed = parse(model, doc)
    assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == original
    assert parsed.to_json() == original
    assert doc == original  # parsing does not touch the input


def test_typed_access_after_parse() -> None:
    template = parse(AnalysisTemplate, yaml.safe_load(RICH_TEMPLATE))
    metric = template.spec.metrics[0]
    assert (metric.count, metric.failure_limit, metric.inconclusive_limit) == (
        "{{args.count}}",
        "{{ args.limit }}",
        1,
    )
    assert metric.provider.kinds() == ["prometheus"]
    assert template.spec.templates[1].cluster_scope is True
    assert template.spec.args[2].value_from is not None
    assert template.spec.args[2].value_from.secret_key_ref is not None
    run = parse(AnalysisRun, yaml.safe_load(RUN))
    result = run.status.result("success-rate")
    assert result is not None and result.measurements[-1].phase is AnalysisPhase.RUNNING
    assert result.measurements[0].finished_at == datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)
    assert run.status.result("nope") is None


def test_unknown_provider_is_kept_and_reported() -> None:
    cluster = parse(ClusterAnalysisTemplate, yaml.safe_load(CLUSTER_TEMPLATE))
    assert cluster.spec.metrics[0].provider.kinds() == ["someFutureProvider"]


def test_models_build_from_python_names() -> None:
    metric = Metric(name="m", failure_limit=2, consecutive_success_limit=1)
    assert metric.to_json() == {"name": "m", "failureLimit": 2, "consecutiveSuccessLimit": 1}


def _template(**metric: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "x", "namespace": "ml-serving"},
        "spec": {"metrics": [{"name": "m", "provider": {"job": {}}, **metric}]},
    }


@pytest.mark.parametrize(
    ("model", "doc", "message"),
    [
        pytest.param(
            AnalysisTemplate,
            _template(failureLimit=1.5),
            "AnalysisTemplate ml-serving/x: spec.metrics[0].failureLimit: Input should be a valid integer",
            id="fractional-failure-limit",
        ),
        pytest.param(
            AnalysisTemplate,
            _template(count=True),
            "AnalysisTemplate ml-serving/x: spec.metrics[0].count: Input should be a valid integer",
            id="bool-count",
        ),
        pytest.param(
            AnalysisTemplate,
            {
                "kind": "AnalysisTemplate",
                "metadata": {"name": "x", "namespace": "n"},
                "spec": {"metrics": [{}]},
            },
            "AnalysisTemplate n/x: spec.metrics[0].name: Field required",
            id="metric-without-name",
        ),
        pytest.param(
            AnalysisTemplate,
            {"metadata": {"name": "x", "namespace": "n"}, "spec": {"metrics": "oops"}},
            "AnalysisTemplate n/x: spec.metrics: Input should be a valid list",
            id="metrics-not-a-list",
        ),
        pytest.param(
            ClusterAnalysisTemplate,
            {"metadata": {"name": "slo"}, "spec": {"args": [{"name": "a", "value": 3}]}},
            "ClusterAnalysisTemplate slo: spec.args[0].value: Input should be a valid string",
            id="cluster-scoped-arg-value-not-string",
        ),
        pytest.param(
            AnalysisRun,
            {
                "metadata": {"name": "r", "namespace": "n"},
                "status": {"metricResults": [{"name": "m", "measurements": [{"phase": "Bogus"}]}]},
            },
            "AnalysisRun n/r: status.metricResults[0].measurements[0].phase: Input should be 'Pending'",
            id="unknown-phase",
        ),
        pytest.param(
            AnalysisRun,
            {"metadata": {"name": "r", "namespace": "n"}, "status": {"startedAt": "yesterday"}},
            "AnalysisRun n/r: status.startedAt: Input should be a valid datetime",
            id="bad-timestamp",
        ),
        pytest.param(
            AnalysisTemplate,
            {"spec": {"measurementRetention": [{"metricName": "m", "limit": "ten"}]}},
            "AnalysisTemplate <unnamed>: spec.measurementRetention[0].limit: Input should be a valid integer",
            id="unnamed-object",
        ),
    ],
)
def test_parse_errors_name_object_and_field(
    model: type[KubeModel], doc: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse(model, doc)
    assert caught.value.message.startswith(message)
    assert str(caught.value) == caught.value.message


def test_parse_error_lists_every_problem() -> None:
    doc = _template(failureLimit=1.5, count=[1])
    with pytest.raises(SpecError) as caught:
        parse(AnalysisTemplate, doc)
    assert "spec.metrics[0].count: " in caught.value.message
    assert "; spec.metrics[0].failureLimit: " in caught.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("30s", timedelta(seconds=30), id="seconds"),
        pytest.param("5m", timedelta(minutes=5), id="minutes"),
        pytest.param("1h30m", timedelta(hours=1, minutes=30), id="compound"),
        pytest.param("500ms", timedelta(milliseconds=500), id="millis"),
        pytest.param("1.5h", timedelta(minutes=90), id="fraction"),
        pytest.param("0", timedelta(0), id="bare-zero"),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "5 minutes", "1d", "m5", "-5s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(datetime(2024, 5, 1, 10, 0, tzinfo=UTC), "2024-05-01T10:00:00Z", id="seconds"),
        pytest.param(
            datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC), "2024-05-01T10:00:00.25Z", id="sub"
        ),
        pytest.param(
            datetime(2024, 5, 1, 12, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2))),
            "2024-05-01T12:00:00Z",
            id="converted-to-utc",
        ),
    ],
)
def test_format_time(value: datetime, expected: str) -> None:
    assert format_time(value) == expected


@pytest.mark.parametrize(
    ("rule", "name", "expected"),
    [
        pytest.param("*", "anything", True, id="star"),
        pytest.param("shadow-.*", "shadow-smoke", True, id="regex"),
        pytest.param("rate", "success-rate", True, id="unanchored-search"),
        pytest.param("^rate$", "success-rate", False, id="anchored"),
        pytest.param("(", "x", False, id="invalid-regex"),
    ],
)
def test_rule_matches(rule: str, name: str, expected: bool) -> None:
    assert rule_matches(rule, name) is expected


def test_malformed_fixture_names_the_field() -> None:
    doc = yaml.safe_load(
        (FIXTURES / "malformed" / "analysistemplate-metric-without-name.yaml").read_text()
    )
    with pytest.raises(SpecError) as caught:
        parse(AnalysisTemplate, doc)
    assert caught.value.message == (
        "AnalysisTemplate malformed-unnamed-metric: spec.metrics[0].name: Field required"
    )
