"""Template flattening, args, substitution and metric validation (analysis/templates.py)."""

from __future__ import annotations

from typing import Any

import pytest

from analysis.api.models import (
    AnalysisRunSpec,
    AnalysisTemplateSpec,
    Argument,
    DryRun,
    Metric,
    TemplateRef,
)
from analysis.api.templates import (
    ArgumentError,
    TemplateError,
    flatten,
    substitute,
)
from analysis.templates import (
    InvalidMetricError,
    resolve_args,
    resolve_run,
    run_error_message,
    validate_metric,
)

PROM = {"prometheus": {"address": "http://prometheus:9090", "query": "up"}}


def tpl(
    *metric_names: str, args: list[dict[str, Any]] | None = None, **extra: Any
) -> AnalysisTemplateSpec:
    return AnalysisTemplateSpec.model_validate(
        {
            "metrics": [{"name": n, "provider": PROM} for n in metric_names],
            "args": args or [],
            **extra,
        }
    )


def lookup_in(
    namespaced: dict[str, AnalysisTemplateSpec],
    cluster: dict[str, AnalysisTemplateSpec] | None = None,
) -> Any:
    def lookup(name: str, cluster_scope: bool) -> AnalysisTemplateSpec | None:
        return ((cluster or {}) if cluster_scope else namespaced).get(name)

    return lookup


def ref(name: str, cluster: bool = False) -> TemplateRef:
    return TemplateRef(template_name=name, cluster_scope=cluster)


def arg(name: str, value: str | None = None) -> Argument:
    return Argument(name=name, value=value)


# --- flatten -------------------------------------------------------------------------------


def test_flatten_concatenates_metrics_and_merges_args() -> None:
    lookup = lookup_in(
        {"a": tpl("success", args=[{"name": "svc"}])},
        {"b": tpl("latency", args=[{"name": "svc"}, {"name": "q", "value": "0.99"}])},
    )
    spec = flatten([ref("a"), ref("b", cluster=True)], lookup, args=[arg("svc", "canary")])
    assert [m.name for m in spec.metrics] == ["success", "latency"]
    assert [(a.name, a.value) for a in spec.args] == [("svc", "canary"), ("q", "0.99")]
    assert spec.to_json().keys() == {"metrics", "args"}


def test_flatten_resolves_nested_templates_depth_first_once() -> None:
    lookup = lookup_in(
        {
            "top": tpl("t", templates=[{"templateName": "mid"}, {"templateName": "leaf"}]),
            "mid": tpl("m", templates=[{"templateName": "leaf"}]),
            "leaf": tpl("l"),
        }
    )
    spec = flatten([ref("top")], lookup)
    assert [m.name for m in spec.metrics] == ["t", "m", "l"]


def test_caller_args_override_and_undeclared_are_ignored() -> None:
    lookup = lookup_in({"a": tpl("x", args=[{"name": "svc", "value": "stable"}])})
    spec = flatten([ref("a")], lookup, args=[arg("svc", "canary"), arg("unused", "1")])
    assert [(a.name, a.value) for a in spec.args] == [("svc", "canary")]


def test_caller_secret_arg_replaces_value() -> None:
    lookup = lookup_in({"a": tpl("x", args=[{"name": "token", "value": "dev"}])})
    secret = Argument.model_validate(
        {"name": "token", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    )
    (merged,) = flatten([ref("a")], lookup, args=[secret]).args
    assert merged.value is None and merged.value_from == secret.value_from


def test_same_arg_value_in_two_templates_is_fine() -> None:
    same = [{"name": "svc", "value": "x"}]
    lookup = lookup_in({"a": tpl("m1", args=same), "b": tpl("m2", args=same)})
    assert [a.value for a in flatten([ref("a"), ref("b")], lookup).args] == ["x"]


@pytest.mark.parametrize(
    ("templates", "refs", "error", "message"),
    [
        pytest.param(
            {"a": tpl("m"), "b": tpl("m")},
            ["a", "b"],
            TemplateError,
            'two metrics have the same name "m"',
            id="duplicate-metric",
        ),
        pytest.param(
            {
                "a": tpl("m1", args=[{"name": "svc", "value": "x"}]),
                "b": tpl("m2", args=[{"name": "svc", "value": "y"}]),
            },
            ["a", "b"],
            TemplateError,
            'argument "svc" specified multiple times with different values: "x", "y"',
            id="conflicting-arg",
        ),
        pytest.param(
            {"a": tpl("m", args=[{"name": "svc"}])},
            ["a"],
            ArgumentError,
            "args.svc was not resolved",
            id="arg-without-value",
        ),
        pytest.param(
            {}, ["nope"], TemplateError, 'AnalysisTemplate "nope" not found', id="missing"
        ),
        pytest.param(
            {
                "a": tpl("m1", templates=[{"templateName": "b"}]),
                "b": tpl("m2", templates=[{"templateName": "a"}]),
            },
            ["a"],
            TemplateError,
            'AnalysisTemplate "a" includes itself through spec.templates: a -> b -> a',
            id="cycle",
        ),
        pytest.param(
            {
                "a": tpl("m1", dryRun=[{"metricName": "m1"}]),
                "b": tpl("m2", dryRun=[{"metricName": "m1"}]),
            },
            ["a", "b"],
            TemplateError,
            'two dryRun rules have the same metricName "m1"',
            id="duplicate-dry-run-rule",
        ),
    ],
)
def test_flatten_errors(
    templates: dict[str, AnalysisTemplateSpec],
    refs: list[str],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error) as caught:
        flatten([ref(name) for name in refs], lookup_in(templates))
    assert message in str(caught.value)


def test_missing_cluster_template_names_its_kind() -> None:
    with pytest.raises(TemplateError, match='ClusterAnalysisTemplate "c" not found'):
        flatten([ref("c", cluster=True)], lookup_in({"c": tpl("m")}))


def test_flatten_keeps_caller_dry_run_and_retention() -> None:
    spec = flatten([ref("a")], lookup_in({"a": tpl("m")}), dry_run=[DryRun(metric_name="m")])
    assert spec.to_json()["dryRun"] == [{"metricName": "m"}]


# --- args ----------------------------------------------------------------------------------

SECRET_ARG = {"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "api"}}}


def test_resolve_args_reads_secrets_and_reports_them() -> None:
    args = [arg("svc", "canary"), Argument.model_validate(SECRET_ARG)]
    resolved = resolve_args(
        args, lambda name, key: "s3cr3t" if (name, key) == ("creds", "api") else None
    )
    assert dict(resolved.values) == {"svc": "canary", "token": "s3cr3t"}
    assert resolved.secrets == ("s3cr3t",)
    assert resolved.redact("Bearer s3cr3t") == "Bearer *****"


def test_resolve_args_without_lookup_uses_placeholder() -> None:
    resolved = resolve_args([Argument.model_validate(SECRET_ARG)], None)
    assert resolved.values["token"] == "*****"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param({"name": "x"}, "args.x was not resolved", id="no-value"),
        pytest.param(
            SECRET_ARG, 'argument "token": secret "creds" has no key "api"', id="missing-secret"
        ),
        pytest.param(
            {**SECRET_ARG, "value": "v"}, 'argument "token" has both value and valueFrom', id="both"
        ),
        pytest.param(
            {"name": "h", "valueFrom": {"podTemplateHashValue": "Stable"}},
            'argument "h": valueFrom must be resolved',
            id="unresolved-rollout-source",
        ),
    ],
)
def test_resolve_args_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        resolve_args([Argument.model_validate(doc)], lambda name, key: None)
    assert message in caught.value.message


# --- substitution --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "placeholder",
    [
        pytest.param("{{args.svc}}", id="tight"),
        pytest.param("{{ args.svc }}", id="spaces"),
        pytest.param("{{\targs.svc  }}", id="tab-and-spaces"),
    ],
)
def test_substitute_whitespace_variants(placeholder: str) -> None:
    doc: dict[str, Any] = {
        "name": "m",
        "successCondition": f"result[0] >= {placeholder}",
        "provider": {"prometheus": {"query": f'rate(x{{service="{placeholder}"}}[5m])'}},
    }
    out = substitute(doc, {"svc": "0.9"})
    assert out["successCondition"] == "result[0] >= 0.9"
    assert out["provider"]["prometheus"]["query"] == 'rate(x{service="0.9"}[5m])'
    assert doc["successCondition"].endswith(placeholder)  # input untouched


def test_substitute_coerces_templated_numbers() -> None:
    doc = {
        "name": "m",
        "count": "{{args.count}}",
        "failureLimit": "{{ args.limit }}",
        "consecutiveErrorLimit": 2,
        "interval": "{{args.every}}",
        "provider": {"web": {"headers": [{"key": "k", "value": "{{args.count}}"}]}},
    }
    out = substitute(doc, {"count": "5", "limit": " 1", "every": "30s"})
    assert out["count"] == 5 and out["failureLimit"] == 1 and out["consecutiveErrorLimit"] == 2
    assert out["interval"] == "30s"
    assert out["provider"]["web"]["headers"][0]["value"] == "5"  # not a count field: stays text


def test_substitute_inserts_quotes_verbatim() -> None:
    out = substitute({"name": "m", "q": "{{args.v}}"}, {"v": 'say "hi"\n'})
    assert out["q"] == 'say "hi"\n'


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param(
            {"name": "rate", "provider": {"prometheus": {"query": "x{{args.missing}}"}}},
            'metric "rate": provider.prometheus.query: failed to resolve {{args.missing}}: no argument "missing"',
            id="missing-arg",
        ),
        pytest.param(
            {"name": "rate", "successCondition": "{{ experiment.availableAt }}"},
            'metric "rate": successCondition: failed to resolve {{experiment.availableAt}}',
            id="unknown-key",
        ),
        pytest.param(
            {"name": "rate", "count": "{{args.n}}"},
            'metric "rate": count: "five" is not an integer',
            id="count-not-integer",
        ),
        pytest.param(
            {"name": "rate", "provider": {"web": {"headers": [{"value": "{{args.nope}}"}]}}},
            'metric "rate": provider.web.headers[0].value',
            id="path-into-lists",
        ),
    ],
)
def test_substitute_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        substitute(doc, {"n": "five"})
    assert message in caught.value.message


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        pytest.param({}, None, id="minimal-ok"),
        pytest.param({"count": 5, "interval": "1m", "failureLimit": 2}, None, id="counted-ok"),
        pytest.param(
            {"count": 3, "interval": "1m", "failureLimit": -1, "consecutiveSuccessLimit": 3},
            None,
            id="streak-only-ok",
        ),
        pytest.param(
            {"count": 3, "interval": "1m", "failureLimit": 2, "consecutiveSuccessLimit": 2},
            "count (3) must be >= failureLimit (2) + consecutiveSuccessLimit (2)",
            id="count-below-limits",
        ),
        pytest.param(
            {"count": 2, "interval": "1m", "inconclusiveLimit": 3},
            "count (2) must be >= inconclusiveLimit (3)",
            id="count-below-inconclusive-limit",
        ),
        pytest.param(
            {"count": 2}, "interval must be specified when count (2) > 1", id="no-interval"
        ),
        pytest.param(
            {"failureLimit": -1},
            "failureLimit -1 (disabled) needs consecutiveSuccessLimit > 0",
            id="failure-limit-disabled-alone",
        ),
        pytest.param(
            {"failureLimit": -2}, "failureLimit (-2) must be >= -1", id="failure-limit-low"
        ),
        pytest.param(
            {"consecutiveErrorLimit": -1},
            "consecutiveErrorLimit (-1) must be >= 0",
            id="error-limit",
        ),
        pytest.param(
            {"interval": "5 minutes"}, 'interval: invalid duration "5 minutes"', id="bad-interval"
        ),
        pytest.param({"initialDelay": "10"}, 'initialDelay: invalid duration "10"', id="bad-delay"),
        pytest.param({"provider": {}}, "no provider specified", id="no-provider"),
        pytest.param(
            {"provider": {**PROM, "web": {"url": "http://x"}}},
            "multiple providers specified: prometheus, web",
            id="two-providers",
        ),
        pytest.param(
            {"successCondition": "result[0] >= "},
            "successCondition 'result[0] >= ': ",
            id="bad-success-condition",
        ),
        pytest.param(
            {"failureCondition": "result ==== 1"},
            "failureCondition 'result ==== 1': ",
            id="bad-failure-condition",
        ),
    ],
)
def test_validate_metric(fields: dict[str, Any], problem: str | None) -> None:
    m = Metric.model_validate({"name": "m", "provider": PROM, **fields})
    if problem is None:
        validate_metric(m)
        return
    with pytest.raises(InvalidMetricError) as caught:
        validate_metric(m)
    assert caught.value.message.startswith('metric "m": ')
    assert problem in caught.value.message


# --- resolve_run ---------------------------------------------------------------------------


def run_spec(**extra: Any) -> AnalysisRunSpec:
    return AnalysisRunSpec.model_validate(
        {
            "args": [{"name": "svc", "value": "canary"}, SECRET_ARG],
            "metrics": [
                {
                    "name": "success",
                    "count": 1,
                    "successCondition": "result[0] >= 0.99",
                    "provider": {
                        "prometheus": {"query": 'up{svc="{{args.svc}}",t="{{args.token}}"}'}
                    },
                }
            ],
            **extra,
        }
    )


def test_resolve_run_gives_substituted_metrics_and_secrets() -> None:
    resolved = resolve_run(run_spec(), lambda name, key: "s3cr3t")
    assert resolved.secrets == ("s3cr3t",)
    assert resolved.documents[0]["provider"]["prometheus"]["query"] == 'up{svc="canary",t="s3cr3t"}'
    assert resolved.metrics[0].count == 1


def test_resolve_run_errors_never_show_secrets() -> None:
    spec = run_spec()
    bad = spec.metrics[0].model_copy(update={"success_condition": "result == {{args.token}} +"})
    with pytest.raises(InvalidMetricError) as caught:
        resolve_run(spec.model_copy(update={"metrics": [bad]}), lambda name, key: "s3cr3t")
    assert "s3cr3t" not in str(caught.value)
    assert "*****" in caught.value.message
    assert run_error_message(caught.value).startswith('Analysis spec invalid: metric "success"')


def test_resolve_run_unresolved_arg_message() -> None:
    spec = run_spec()
    bad = spec.metrics[0].model_copy(update={"interval": "{{args.every}}"})
    with pytest.raises(ArgumentError) as caught:
        resolve_run(spec.model_copy(update={"metrics": [bad]}), None)
    assert run_error_message(caught.value) == (
        'Unable to resolve metric arguments: metric "success": interval:'
        ' failed to resolve {{args.every}}: no argument "every"'
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param({"metrics": []}, "at least one metric is required", id="no-metrics"),
        pytest.param(
            {"dryRun": [{"metricName": "nothing-like-this"}]},
            "dryRun[0]: rule didn't match any metric name(s)",
            id="dry-run-matches-nothing",
        ),
        pytest.param(
            {"measurementRetention": [{"metricName": "(", "limit": 3}]},
            'measurementRetention[0]: metricName "(" is not a valid regular expression',
            id="bad-regex",
        ),
    ],
)
def test_resolve_run_spec_rules(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidMetricError) as caught:
        resolve_run(run_spec(**extra), None)
    assert message in caught.value.message


def test_resolve_run_accepts_star_dry_run() -> None:
    resolve_run(run_spec(dryRun=[{"metricName": "*"}]), None)
