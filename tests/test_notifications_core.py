"""Notifications' pure core: config, catalog, subscriptions, once-only state, the engine's plan.

Table-driven: trigger evaluation (including missing fields), once-only semantics over
sequences of object states with the annotation carried from one plan to the next (as a
restarted controller would read it), subscriptions, config errors, the catalog rendered on
realistic objects, and the seed ConfigMap exactly as written.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from notifications.catalog import catalog_data, load_catalog, parse_with_catalog
from notifications.config import (
    ARGOCD_CONFIGMAP,
    ROLLOUTS_CONFIGMAP,
    NotificationConfig,
    parse_selector,
    selector_matches,
)
from notifications.engine import (
    Plan,
    condition_env,
    evaluate_trigger,
    full_name_by_repo_url,
    plan,
    render_notification,
    repo_url_to_https,
    template_data,
)
from notifications.state import (
    MAX_STATE_BYTES,
    NOTIFIED_ANNOTATION,
    bound_state,
    compile_once_per,
    dump_state,
    forget,
    hash_when,
    parse_state,
    state_key,
)
from notifications.subscriptions import Subscription, subscriptions_for

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
SEED = Path("/work/shared/seed/notifications-cm.yaml")
SUB = "notifications.argoproj.io/subscribe."


def app(*, phase: str | None = "Succeeded", revision: str = "abc123", health: str = "Healthy",
        annotations: Mapping[str, str] | None = None, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "llm-serving", "namespace": "argocd", "annotations": dict(annotations or {}),
                     "labels": dict(labels or {})},
        "spec": {"project": "ml", "source": {"repoURL": "https://github.com/acme/models.git", "path": "llm",
                                              "targetRevision": "main"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": "ml-serving"}},
        "status": {"sync": {"status": "Synced", "revision": revision},
                   "health": {"status": health},
                   "conditions": [{"type": "SyncError", "message": "one failed"}],
                   "operationState": {
                       "phase": phase, "message": "successfully synced", "startedAt": "2026-01-01T11:59:00Z",
                       "finishedAt": "2026-01-01T11:59:30Z",
                       "syncResult": {"revision": revision, "resources": [
                           {"kind": "Deployment", "name": "llm", "status": "Synced"},
                           {"kind": "Service", "name": "llm", "status": "Synced"}]}}},
    }
    if phase is None:
        del obj["status"]["operationState"]
    return obj


def rollout(*, pod_hash: str = "7f9c", stable: str = "7f9c", abort: bool = False, step: int = 3,
            phase: str = "Healthy", annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "inference", "namespace": "ml-serving", "annotations": dict(annotations or {})},
        "spec": {"replicas": 4, "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}},
                                                                   {"setWeight": 50}]}},
                 "template": {"spec": {"containers": [{"name": "server", "image": "acme/llm:2"}]}}},
        "status": {"currentPodHash": pod_hash, "stableRS": stable, "currentStepIndex": step, "abort": abort,
                   "phase": phase, "message": "RolloutAborted: metric latency failed" if abort else "",
                   "replicas": 4, "updatedReplicas": 4, "availableReplicas": 4,
                   "pauseConditions": [{"reason": "CanaryPauseStep"}],
                   "canary": {"currentStepAnalysisRunStatus": {"name": "inference-3", "status": "Failed"}}},
    }


def config_of(data: Mapping[str, str], *, name: str = ARGOCD_CONFIGMAP) -> NotificationConfig:
    return parse_with_catalog(data, name=name)


def step(obj: dict[str, Any], config: NotificationConfig, *, kind: str = "Application",
         now: datetime = NOW, project: Mapping[str, Any] | None = None) -> Plan:
    """One reconcile: plan, then write the annotation back as the controller does."""
    result = plan(obj, kind=kind, config=config, project=project, context_vars={}, now=now)
    if result.annotation is not None:
        obj["metadata"].setdefault("annotations", {})[NOTIFIED_ANNOTATION] = result.annotation
    return result


# --- trigger evaluation ------------------------------------------------------------------

EVALUATION_CASES = [
    ("phase-in-list", "app.status.operationState.phase in ['Succeeded']", app(), True),
    ("phase-not-in-list", "app.status.operationState.phase in ['Error', 'Failed']", app(), False),
    ("missing-operation-state", "app.status.operationState.phase in ['Succeeded']", app(phase=None), False),
    ("optional-chain-missing", "app.status.operationState?.syncResult?.revision == 'abc123'", app(phase=None), False),
    ("optional-chain-present", "app.status.operationState?.syncResult?.revision == 'abc123'", app(), True),
    ("missing-deep-field", "app.status.nothing.here == 'x'", app(), False),
    ("nil-check", "app.metadata.deletionTimestamp != nil", app(), False),
    ("health", "app.status.health.status == 'Degraded'", app(health="Degraded"), True),
    ("time-comparison", "time.Now().Sub(time.Parse(app.status.operationState.startedAt)).Minutes() >= 1",
     app(), True),
    ("empty-when-is-false", "", app(), False),
]


@pytest.mark.parametrize(("when", "obj", "expected"), [c[1:] for c in EVALUATION_CASES],
                         ids=[c[0] for c in EVALUATION_CASES])
def test_trigger_evaluation(when: str, obj: dict[str, Any], expected: bool) -> None:
    config = config_of({"trigger.t": yaml.safe_dump([{"when": when, "send": ["app-created"]}])})
    assert config.errors == ()
    env = condition_env(obj, kind="Application", project=None, context={})
    [result] = evaluate_trigger(config.triggers["t"], env, now=NOW)
    assert result.triggered is expected
    assert result.error is None


def test_a_condition_that_errors_is_false_with_its_reason() -> None:
    config = config_of({"trigger.t": "- when: app.metadata.name + 1 == 2\n  send: [app-created]"})
    env = condition_env(app(), kind="Application", project=None, context={})
    [result] = evaluate_trigger(config.triggers["t"], env, now=NOW)
    assert result.triggered is False
    assert result.error


# --- once-only semantics -------------------------------------------------------------------

def subscribed(obj: dict[str, Any], trigger: str, service: str = "slack", recipient: str = "ml-team") -> dict[str, Any]:
    obj["metadata"]["annotations"][f"{SUB}{trigger}.{service}"] = recipient
    return obj


ONCE_PER_TRIGGER = ("- when: app.status.operationState?.phase in ['Succeeded']\n"
                    "  oncePer: app.status.operationState?.syncResult?.revision\n  send: [app-sync-succeeded]")
EDGE_TRIGGER = "- when: app.status.operationState?.phase in ['Succeeded']\n  send: [app-sync-succeeded]"

# (phase, revision) per reconcile -> how many sends at that reconcile
ONCE_PER_SEQUENCES = [
    ("once-per-revision", ONCE_PER_TRIGGER,
     [("Running", "a"), ("Succeeded", "a"), ("Succeeded", "a"), ("Running", "a"), ("Succeeded", "a"),
      ("Running", "b"), ("Succeeded", "b"), ("Succeeded", "a")],
     [0, 1, 0, 0, 0, 0, 1, 0]),
    ("edge-without-once-per", EDGE_TRIGGER,
     [("Running", "a"), ("Succeeded", "a"), ("Succeeded", "a"), ("Running", "a"), ("Succeeded", "a"),
      ("Succeeded", "b")],
     [0, 1, 0, 0, 1, 0]),
]


@pytest.mark.parametrize(("trigger", "states", "sends"), [c[1:] for c in ONCE_PER_SEQUENCES],
                         ids=[c[0] for c in ONCE_PER_SEQUENCES])
def test_once_only_over_a_sequence_of_states(trigger: str, states: list[tuple[str, str]], sends: list[int]) -> None:
    config = config_of({"trigger.on-done": trigger})
    annotation: str | None = None
    seen = []
    for index, (phase, revision) in enumerate(states):
        # A fresh object each time carrying only the annotation: what a restarted controller reads.
        obj = subscribed(app(phase=phase, revision=revision), "on-done")
        if annotation is not None:
            obj["metadata"]["annotations"][NOTIFIED_ANNOTATION] = annotation
        result = plan(obj, kind="Application", config=config, project=None, context_vars={},
                      now=NOW + timedelta(minutes=index))
        assert result.errors == []
        seen.append(len(result.deliveries))
        if result.annotation is not None:
            annotation = result.annotation
    assert seen == sends


def test_the_annotation_is_argos_format() -> None:
    config = config_of({"trigger.on-done": ONCE_PER_TRIGGER})
    obj = subscribed(app(revision="abc123"), "on-done")
    result = step(obj, config)
    when = "app.status.operationState?.phase in ['Succeeded']"
    digest = base64.urlsafe_b64encode(hashlib.sha1(when.encode()).digest()).decode().rstrip("=")
    key = f"abc123:on-done:[0].{digest}:slack:ml-team"
    assert result.annotation == json.dumps({key: int(NOW.timestamp())}, separators=(",", ":"))
    [delivery] = result.deliveries
    assert (delivery.key, delivery.trigger, delivery.condition, delivery.service, delivery.recipient) == (
        key, "on-done", 0, "slack", "ml-team")


def test_rollout_triggers_honour_once_per() -> None:
    """argo-rollouts #5037: there oncePer is ignored for Rollouts; here an abort is sent once per revision."""
    config = config_of({}, name=ROLLOUTS_CONFIGMAP)
    sequence = [(False, "h1", 0), (True, "h1", 1), (True, "h1", 0), (False, "h1", 0), (True, "h1", 0),
                (True, "h2", 1)]
    obj = rollout(annotations={f"{SUB}on-rollout-aborted.slack": "oncall"})
    for abort, pod_hash, expected in sequence:
        obj["status"].update(abort=abort, currentPodHash=pod_hash, stableRS="h0",
                             message="RolloutAborted: metric latency failed" if abort else "")
        result = step(obj, config, kind="Rollout")
        assert result.errors == []
        assert len(result.deliveries) == expected
        for delivery in result.deliveries:
            assert "metric latency failed" in delivery.notification.message


def test_a_failed_render_is_an_error_and_not_recorded() -> None:
    config = config_of({"trigger.on-x": "- when: 'true'\n  send: [broken]",
                        "template.broken": "message: '{{.app.metadata.name | nosuchfunction}}'"})
    # nosuchfunction fails at compile time: the template is refused with its key and field.
    assert any("template.broken" in e and "message" in e for e in config.errors)
    obj = subscribed(app(), "on-x")
    result = step(obj, config)
    assert result.deliveries == []
    assert any("on-x" in e and "broken" in e for e in result.errors)
    assert NOTIFIED_ANNOTATION not in obj["metadata"]["annotations"]


def test_a_render_error_at_run_time_names_template_and_field() -> None:
    config = config_of({"trigger.on-x": "- when: 'true'\n  send: [t]",
                        "template.t": "message: ok\nslack:\n  attachments: '{{index .app.spec.nothing 5}}'"})
    assert config.errors == ()
    obj = subscribed(app(), "on-x")
    result = step(obj, config)
    assert result.deliveries == []
    assert any("'t'" in e and "slack.attachments" in e for e in result.errors), result.errors
    assert NOTIFIED_ANNOTATION not in obj["metadata"]["annotations"]


def test_templates_merge_in_order_into_one_notification() -> None:
    config = config_of({
        "trigger.on-x": "- when: 'true'\n  send: [first, second]",
        "template.first": "message: first {{.app.metadata.name}}\nslack:\n  attachments: A\n  username: bot",
        "template.second": "message: ''\nslack:\n  attachments: B\nwebhook:\n  hook:\n    method: POST\n    body: '{{.serviceType}}'",
    })
    result = step(subscribed(app(), "on-x"), config)
    [delivery] = result.deliveries
    assert delivery.templates == ("first", "second")
    assert delivery.notification.message == "first llm-serving"
    assert delivery.notification.parts == {"slack": {"attachments": "B", "username": "bot"},
                                           "webhook": {"hook": {"method": "POST", "body": "slack"}}}


PRUNE_CASES = [
    # (id, change between the two reconciles, whether the old key survives)
    ("unsubscribed", lambda obj, data: obj["metadata"]["annotations"].pop(f"{SUB}on-done.slack"), False),
    ("condition-rewritten", lambda obj, data: data.update({"trigger.on-done": ONCE_PER_TRIGGER.replace(
        "['Succeeded']", "['Succeeded', 'Done']")}), False),
    ("trigger-removed-but-subscribed", lambda obj, data: data.clear(), True),
    ("nothing-changed", lambda obj, data: None, True),
]


@pytest.mark.parametrize(("change", "survives"), [c[1:] for c in PRUNE_CASES], ids=[c[0] for c in PRUNE_CASES])
def test_keys_that_can_no_longer_matter_are_dropped(change: Any, survives: bool) -> None:
    data = {"trigger.on-done": ONCE_PER_TRIGGER}
    obj = subscribed(app(revision="r1"), "on-done")
    step(obj, config_of(data))
    [old_key] = json.loads(obj["metadata"]["annotations"][NOTIFIED_ANNOTATION])
    obj["status"]["operationState"]["phase"] = "Running"  # a oncePer key stays while false
    change(obj, data)
    step(obj, config_of(data))
    state, _ = parse_state(obj["metadata"]["annotations"].get(NOTIFIED_ANNOTATION))
    assert (old_key in state) is survives


def test_no_cap_at_100_entries() -> None:
    config = config_of({"trigger.on-done": ONCE_PER_TRIGGER})
    obj = subscribed(app(), "on-done")
    for revision in range(150):
        obj["status"]["operationState"]["syncResult"]["revision"] = f"rev{revision}"
        step(obj, config, now=NOW + timedelta(seconds=revision))
    state, _ = parse_state(obj["metadata"]["annotations"][NOTIFIED_ANNOTATION])
    assert len(state) == 150


def test_size_bound_evicts_oldest_first() -> None:
    state = {f"k{i:03d}": 1000 + i for i in range(100)}
    evicted = bound_state(state, max_bytes=600)
    assert evicted == [f"k{i:03d}" for i in range(len(evicted))]
    assert len(dump_state(state).encode()) <= 600
    assert state and max(state.values()) == 1099
    assert bound_state({"a": 1}, max_bytes=MAX_STATE_BYTES) == []


STATE_PARSE_CASES = [
    ("absent", None, {}, 0),
    ("empty", "", {}, 0),
    ("argo", '{"a:on-x:[0].h:slack:c":1700000000}', {"a:on-x:[0].h:slack:c": 1700000000}, 0),
    ("string-and-float-times", '{"a":"1700000000","b":1.7e9}', {"a": 1700000000, "b": 1700000000}, 0),
    ("garbage", "not json {", {}, 1),
    ("a-list", "[1,2]", {}, 1),
    ("bad-entry-dropped", '{"a":1,"b":{"x":1},"c":true}', {"a": 1}, 2),
]


@pytest.mark.parametrize(("raw", "state", "problems"), [c[1:] for c in STATE_PARSE_CASES],
                         ids=[c[0] for c in STATE_PARSE_CASES])
def test_state_parses_robustly(raw: str | None, state: dict[str, int], problems: int) -> None:
    parsed, found = parse_state(raw)
    assert parsed == state
    assert len(found) == problems


def test_garbage_annotation_is_reported_and_rewritten() -> None:
    config = config_of({"trigger.on-done": EDGE_TRIGGER})
    obj = subscribed(app(), "on-done", recipient="c")
    obj["metadata"]["annotations"][NOTIFIED_ANNOTATION] = "{oops"
    result = step(obj, config)
    assert len(result.deliveries) == 1
    assert any(NOTIFIED_ANNOTATION in e for e in result.errors)
    assert json.loads(obj["metadata"]["annotations"][NOTIFIED_ANNOTATION])


def test_dump_state_escapes_as_go_does() -> None:
    assert dump_state({"<nil>:t&x": 5, "a": 1}) == '{"\\u003cnil\\u003e:t\\u0026x":5,"a":1}'
    assert parse_state(dump_state({"<nil>:t": 5}))[0] == {"<nil>:t": 5}


def test_forget_takes_a_failed_delivery_out() -> None:
    key = state_key("on-x", 0, "true", "slack", "c")
    assert forget(dump_state({key: 1, "other": 2}), [key]) == '{"other":2}'


def test_state_key_and_hash() -> None:
    assert len(hash_when("true")) == 27
    assert state_key("on-x", 2, "true", "slack", "c", "rev") == f"rev:on-x:[2].{hash_when('true')}:slack:c"
    assert state_key("on-x", 0, "true", "webhook", "") == f"on-x:[0].{hash_when('true')}:webhook:"


ONCE_PER_VALUES = [
    ("path", "app.status.sync.revision", {"app": {"status": {"sync": {"revision": "abc"}}}}, "abc"),
    ("optional-missing", "app.status.operationState?.syncResult?.revision", {"app": {"status": {}}}, "<nil>"),
    ("index-key", "rollout.metadata.annotations[\"rollout.argoproj.io/revision\"]",
     {"rollout": {"metadata": {"annotations": {"rollout.argoproj.io/revision": "3"}}}}, "3"),
    ("list-index", "app.items[1].name", {"app": {"items": [{"name": "a"}, {"name": "b"}]}}, "b"),
    ("concat-number", "rollout.status.currentPodHash + '/' + rollout.status.currentStepIndex",
     {"rollout": {"status": {"currentPodHash": "h1", "currentStepIndex": 2}}}, "h1/2"),
    ("bool", "app.spec.flag", {"app": {"spec": {"flag": True}}}, "true"),
]


@pytest.mark.parametrize(("source", "env", "expected"), [c[1:] for c in ONCE_PER_VALUES],
                         ids=[c[0] for c in ONCE_PER_VALUES])
def test_once_per_values(source: str, env: dict[str, Any], expected: str) -> None:
    assert compile_once_per(source).value(env) == expected


@pytest.mark.parametrize("source", ["", "app.(x)", "app.status +", "'unterminated", "app[x]"],
                         ids=["empty", "parens", "dangling-plus", "unterminated", "bare-index"])
def test_bad_once_per_is_refused(source: str) -> None:
    with pytest.raises(ValueError):
        compile_once_per(source)


# --- subscriptions -------------------------------------------------------------------------

SUBSCRIPTION_CASES = [
    ("trigger-and-service", {f"{SUB}on-sync-failed.slack": "a;b"}, {}, None,
     [("on-sync-failed", "slack", "a"), ("on-sync-failed", "slack", "b")]),
    ("spaces-and-empty-parts", {f"{SUB}on-sync-failed.slack": " a ; ;b;"}, {}, None,
     [("on-sync-failed", "slack", "a"), ("on-sync-failed", "slack", "b")]),
    ("empty-value-webhook", {f"{SUB}on-sync-failed.github": ""}, {}, None,
     [("on-sync-failed", "github", "")]),
    ("service-default-triggers", {f"{SUB}slack": "c"},
     {"defaultTriggers": "[on-created]", "defaultTriggers.slack": "[on-deployed, on-deleted]"}, None,
     [("on-deployed", "slack", "c"), ("on-deleted", "slack", "c")]),
    ("default-triggers", {f"{SUB}email": "x@y"}, {"defaultTriggers": "- on-created"}, None,
     [("on-created", "email", "x@y")]),
    ("yaml-annotation", {"notifications.argoproj.io/subscriptions": yaml.safe_dump([
        {"trigger": ["on-rollout-aborted", "on-analysis-run-failed"],
         "destinations": [{"service": "slack", "recipients": ["c1"]},
                          {"service": "pagerdutyv2", "recipients": ["key"]}]}])}, {}, None,
     [("on-rollout-aborted", "slack", "c1"), ("on-rollout-aborted", "pagerdutyv2", "key"),
      ("on-analysis-run-failed", "slack", "c1"), ("on-analysis-run-failed", "pagerdutyv2", "key")]),
    ("project-annotations", {}, {}, {f"{SUB}on-sync-failed.slack": "proj"},
     [("on-sync-failed", "slack", "proj")]),
    ("deduplicated", {f"{SUB}on-sync-failed.slack": "a"}, {}, {f"{SUB}on-sync-failed.slack": "a"},
     [("on-sync-failed", "slack", "a")]),
    ("global-selector-matches", {},
     {"subscriptions": "- recipients: [slack:global, webhook]\n  triggers: [on-sync-failed]\n  selector: team=ml"},
     None, [("on-sync-failed", "slack", "global"), ("on-sync-failed", "webhook", "")]),
    ("global-selector-does-not-match", {},
     {"subscriptions": "- recipients: [slack:global]\n  triggers: [on-sync-failed]\n  selector: team=web"},
     None, []),
    ("global-default-triggers", {},
     {"defaultTriggers": "[on-deployed]", "subscriptions": "- recipients: [slack:g]"}, None,
     [("on-deployed", "slack", "g")]),
]


@pytest.mark.parametrize(("annotations", "data", "project_annotations", "expected"),
                         [c[1:] for c in SUBSCRIPTION_CASES], ids=[c[0] for c in SUBSCRIPTION_CASES])
def test_subscriptions(annotations: dict[str, str], data: dict[str, str],
                       project_annotations: dict[str, str] | None, expected: list[tuple[str, str, str]]) -> None:
    config = config_of(data)
    assert config.errors == ()
    project = None if project_annotations is None else {"kind": "AppProject", "metadata": {
        "name": "ml", "namespace": "argocd", "annotations": project_annotations}}
    found, errors = subscriptions_for(app(annotations=annotations, labels={"team": "ml"}), config=config,
                                      project=project)
    assert errors == []
    assert sorted(found) == sorted(Subscription(*e) for e in expected)


def test_a_malformed_yaml_annotation_is_an_error_and_hides_nothing() -> None:
    annotations = {"notifications.argoproj.io/subscriptions": "- trigger: [on-x\n  destinations: [",
                   f"{SUB}on-y.slack": "c"}
    found, errors = subscriptions_for(app(annotations=annotations), config=config_of({}))
    assert found == [Subscription("on-y", "slack", "c")]
    assert len(errors) == 1 and "Application argocd/llm-serving" in errors[0]


SELECTOR_CASES = [
    ("", {}, True),
    ("a=b", {"a": "b"}, True),
    ("a==b", {"a": "c"}, False),
    ("a!=b", {}, True),
    ("a in (x, y)", {"a": "y"}, True),
    ("a notin (x)", {"a": "x"}, False),
    ("a,!b", {"a": "1"}, True),
    ("a,!b", {"a": "1", "b": "2"}, False),
]


@pytest.mark.parametrize(("selector", "labels", "matches"), SELECTOR_CASES,
                         ids=[c[0] or "empty" for c in SELECTOR_CASES])
def test_label_selectors(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert selector_matches(parse_selector(selector), labels) is matches


# --- config --------------------------------------------------------------------------------

def test_bad_entries_are_named_and_the_good_ones_kept() -> None:
    data = {
        "trigger.good": "- when: app.status.health.status == 'Degraded'\n  send: [app-health-degraded]",
        "trigger.bad-yaml": "- when: [unclosed",
        "trigger.bad-when": "- when: app.status ==\n  send: [app-created]\n- when: 'true'\n  send: [app-created]",
        "trigger.no-send": "- when: 'true'",
        "trigger.unknown-field": "- when: 'true'\n  send: [app-created]\n  sendd: [x]",
        "template.good": "message: hi {{.app.metadata.name}}",
        "template.bad": "message: '{{if}}'",
        "template.scalar": "just a string",
        "defaultTriggers": "{a: b}",
        "context": "[1, 2]",
        "service.slack": "token: $slack-token",
        "service.webhook.github": "url: https://api.github.com",
        "service.": "x",
        "subscriptions": "- recipients: [slack:a]\n  selector: 'a in b'",
    }
    config = config_of(data)
    joined = "\n".join(config.errors)
    for expected in ["argocd-notifications-cm: trigger.bad-yaml:", "trigger.bad-when: [0].when:",
                     "trigger.no-send: [0].send:", "trigger.unknown-field: [0].sendd:",
                     "template.bad: message:", "template.scalar:", "defaultTriggers:", "context:",
                     "service.:", "subscriptions: [0]: selector"]:
        assert expected in joined, expected
    assert "good" in config.triggers and "good" in config.templates
    assert "bad" not in config.templates
    assert config.triggers["bad-when"].conditions[0].error is not None
    assert config.triggers["bad-when"].conditions[1].error is None
    assert "bad-yaml" in config.unusable_triggers
    assert {name: (s.type, s.raw) for name, s in config.services.items()} == {
        "slack": ("slack", "token: $slack-token"), "github": ("webhook", "url: https://api.github.com")}


def test_single_condition_without_a_list_is_accepted() -> None:
    config = config_of({"trigger.on-x": "when: app.status.sync.status == 'Unknown'\nsend: [app-created]"})
    assert config.errors == ()
    assert config.triggers["on-x"].conditions[0].send == ("app-created",)


def test_user_definitions_override_the_catalog() -> None:
    config = config_of({"trigger.on-sync-failed": "- when: 'false'\n  send: [app-sync-failed]"})
    assert config.triggers["on-sync-failed"].conditions[0].when == "false"
    assert config.triggers["on-sync-succeeded"].source == "catalog"


# --- the catalog -----------------------------------------------------------------------------

ARGOCD_TRIGGERS = ["on-created", "on-deleted", "on-deployed", "on-health-degraded", "on-sync-failed",
                   "on-sync-running", "on-sync-status-unknown", "on-sync-succeeded"]
ROLLOUTS_TRIGGERS = ["on-rollout-completed", "on-rollout-step-completed", "on-rollout-updated",
                     "on-rollout-paused", "on-rollout-aborted", "on-scaling-replica-set",
                     "on-analysis-run-running", "on-analysis-run-error", "on-analysis-run-failed"]


def test_catalog_loads_without_errors() -> None:
    catalog = load_catalog()
    assert catalog.errors == ()
    assert set(ARGOCD_TRIGGERS + ROLLOUTS_TRIGGERS) <= set(catalog.triggers)
    for trigger in catalog.triggers.values():
        for condition in trigger.conditions:
            assert condition.error is None
            assert all(name in catalog.templates for name in condition.send)
    assert all(key.startswith(("trigger.", "template.")) for key in catalog_data())


@pytest.mark.parametrize("name", sorted(load_catalog().templates))
@pytest.mark.parametrize("service", ["slack", "email"])
def test_every_catalog_template_renders(name: str, service: str) -> None:
    kind, obj = ("Application", app()) if name.startswith("app-") else ("Rollout", rollout(abort=True))
    if kind == "Rollout":
        # a real abort reason quotes the metric: it must still make valid Slack JSON
        obj["status"]["message"] = 'RolloutAborted: Metric "success-rate" assessed Failed due to failed (3) > 2\\'
    data = template_data(obj, kind=kind, project=None, context={"argocdUrl": "https://cd.example"},
                         service=service, recipient="ml-team")
    notification, errors = render_notification([name], config=load_catalog(), data=data)
    assert errors == []
    assert notification is not None
    assert ("llm-serving" if kind == "Application" else "inference") in notification.message
    assert "<no value>" not in notification.message
    attachments = notification.parts.get("slack", {}).get("attachments")
    if attachments:
        json.loads(attachments)  # Slack needs valid JSON


CATALOG_FIRES = [
    ("on-sync-succeeded", "Application", app(), True),
    ("on-sync-failed", "Application", app(phase="Failed"), True),
    ("on-sync-running", "Application", app(phase="Running"), True),
    ("on-deployed", "Application", app(), True),
    ("on-deployed", "Application", app(health="Progressing"), False),
    ("on-health-degraded", "Application", app(health="Degraded"), True),
    ("on-sync-status-unknown", "Application", app(), False),
    ("on-created", "Application", app(), True),
    ("on-deleted", "Application", app(), False),
    ("on-rollout-aborted", "Rollout", rollout(abort=True), True),
    ("on-rollout-aborted", "Rollout", rollout(), False),
    ("on-rollout-completed", "Rollout", rollout(), True),
    ("on-rollout-completed", "Rollout", rollout(pod_hash="new"), False),
    ("on-rollout-updated", "Rollout", rollout(pod_hash="new"), True),
    ("on-rollout-step-completed", "Rollout", rollout(step=1), True),
    ("on-rollout-paused", "Rollout", rollout(), True),
    ("on-analysis-run-failed", "Rollout", rollout(), True),
    ("on-analysis-run-error", "Rollout", rollout(), False),
    ("on-scaling-replica-set", "Rollout", rollout(), False),
]


@pytest.mark.parametrize(("trigger", "kind", "obj", "fires"), CATALOG_FIRES,
                         ids=[f"{c[0]}-{'fires' if c[3] else 'quiet'}-{i}" for i, c in enumerate(CATALOG_FIRES)])
def test_catalog_triggers(trigger: str, kind: str, obj: dict[str, Any], fires: bool) -> None:
    env = condition_env(obj, kind=kind, project=None, context={})
    results = evaluate_trigger(load_catalog().triggers[trigger], env, now=NOW)
    assert [r.error for r in results] == [None]
    assert results[0].triggered is fires


# --- the seed ConfigMap, as written ------------------------------------------------------------

SEED_ON_DEPLOYED = (":white_check_mark:\n\nApplication llm-serving sync Succeeded\nRevision: abc123\n\n"
                    "- Deployment/llm: Synced\n\n- Service/llm: Synced\n\n")


def seed_config() -> NotificationConfig:
    manifest = yaml.safe_load(SEED.read_text())
    return parse_with_catalog(manifest["data"], name=manifest["metadata"]["name"])


def test_seed_parses_as_written() -> None:
    config = seed_config()
    assert config.triggers["on-deployed"].conditions[0].send == ("slack-ml-team",)
    assert config.triggers["on-sync-failed"].conditions[0].send == ("slack-ml-team", "pagerduty")
    # `pagerduty` names a service, not a template: reported, and the Slack template still goes out.
    assert config.errors == ("argocd-notifications-cm: trigger.on-sync-failed: condition [0] sends "
                             "template 'pagerduty', which is not configured",)


def test_seed_on_deployed_message_rendered_exactly_once_per_sync() -> None:
    config = seed_config()
    obj = subscribed(app(), "on-deployed", recipient="ml-team")
    first = step(obj, config)
    [delivery] = first.deliveries
    assert delivery.notification.message == SEED_ON_DEPLOYED
    assert step(obj, config).deliveries == []  # same state, restart-safe through the annotation
    obj["status"]["operationState"]["phase"] = "Running"
    step(obj, config)
    obj["status"]["operationState"]["phase"] = "Succeeded"
    assert len(step(obj, config).deliveries) == 1


def test_seed_on_sync_failed_goes_to_slack_and_pagerduty() -> None:
    config = seed_config()
    obj = subscribed(subscribed(app(phase="Failed"), "on-sync-failed", recipient="ml-team"),
                     "on-sync-failed", service="pagerdutyv2", recipient="service-key")
    result = step(obj, config)
    assert result.errors == []
    assert sorted((d.service, d.recipient) for d in result.deliveries) == [
        ("pagerdutyv2", "service-key"), ("slack", "ml-team")]
    assert all(":x:\n" in d.notification.message for d in result.deliveries)


# --- repo helpers ------------------------------------------------------------------------------

REPO_CASES = [
    ("git@github.com:acme/models.git", "https://github.com/acme/models.git", "acme/models"),
    ("https://github.com/acme/models.git", "https://github.com/acme/models.git", "acme/models"),
    ("ssh://git@gitlab.example:2222/group/sub/repo", "https://gitlab.example/group/sub/repo", "group/sub"),
    ("https://user@bitbucket.org/team/repo", "https://bitbucket.org/team/repo", "team/repo"),
]


@pytest.mark.parametrize(("url", "https", "full_name"), REPO_CASES, ids=[c[0] for c in REPO_CASES])
def test_repo_helpers(url: str, https: str, full_name: str) -> None:
    assert repo_url_to_https(url) == https
    assert full_name_by_repo_url(url) == full_name


def test_templates_can_call_repo_helpers() -> None:
    config = config_of({"template.t": "message: '{{call .repo.RepoURLToHTTPS .app.spec.source.repoURL}}'"})
    data = template_data(app(), kind="Application", project=None, context={}, service="slack", recipient="")
    notification, errors = render_notification(["t"], config=config, data=data)
    assert errors == [] and notification is not None
    assert notification.message == "https://github.com/acme/models.git"


def test_unknown_kind_is_an_error_not_a_crash() -> None:
    result = plan(copy.deepcopy(app()), kind="Deployment", config=config_of({}), project=None,
                  context_vars={}, now=NOW)
    assert result.deliveries == [] and result.annotation is None and result.errors


# --- never raises ------------------------------------------------------------------------------

def test_a_once_per_value_with_colons_keeps_its_key() -> None:
    config = config_of({"trigger.on-done": ONCE_PER_TRIGGER})
    obj = subscribed(app(revision="refs/tags:v1:<x>"), "on-done")
    assert len(step(obj, config).deliveries) == 1
    obj["status"]["operationState"]["phase"] = "Running"
    step(obj, config)
    obj["status"]["operationState"]["phase"] = "Succeeded"
    assert step(obj, config).deliveries == []
    assert "\\u003cx\\u003e" in obj["metadata"]["annotations"][NOTIFIED_ANNOTATION]


@settings(max_examples=150, deadline=None)
@given(raw=st.one_of(st.text(max_size=200), st.dictionaries(st.text(max_size=40), st.one_of(
    st.integers(), st.floats(), st.text(max_size=10), st.booleans(), st.none()), max_size=8).map(json.dumps)))
def test_plan_never_raises_on_any_annotation(raw: str) -> None:
    config = config_of({"trigger.on-done": ONCE_PER_TRIGGER})
    obj = subscribed(app(), "on-done")
    obj["metadata"]["annotations"][NOTIFIED_ANNOTATION] = raw
    result = plan(obj, kind="Application", config=config, project=None, context_vars={}, now=NOW)
    assert result.annotation is None or isinstance(json.loads(result.annotation), dict)


@settings(max_examples=150, deadline=None)
@given(source=st.text(max_size=60))
def test_once_per_refuses_only_with_value_error(source: str) -> None:
    try:
        compiled = compile_once_per(source)
    except ValueError:
        return
    assert isinstance(compiled.value({"app": {"a": [1, {"b": None}]}}), str)


@settings(max_examples=100, deadline=None)
@given(annotations=st.dictionaries(
    st.one_of(st.just("notifications.argoproj.io/subscriptions"),
              st.text(max_size=20).map(lambda s: "notifications.argoproj.io/subscribe." + s)),
    st.text(max_size=80), max_size=4))
def test_subscriptions_never_raise(annotations: dict[str, str]) -> None:
    found, errors = subscriptions_for(app(annotations=annotations), config=config_of({}))
    assert all(isinstance(s, Subscription) for s in found)


@pytest.mark.parametrize("text", ["- trigger: 5\n  destinations: 7", "- destinations: {service: slack}",
                                  "- trigger: [on-x]\n  destinations: [{service: slack, recipients: 3}]",
                                  "[1, 2]", "42"],
                         ids=["numbers", "mapping-destinations", "number-recipients", "list-of-numbers", "scalar"])
def test_odd_yaml_subscriptions_are_errors_not_crashes(text: str) -> None:
    found, errors = subscriptions_for(app(annotations={"notifications.argoproj.io/subscriptions": text}),
                                      config=config_of({}))
    assert errors or found == [Subscription("on-x", "slack", "")]


@pytest.mark.parametrize("kind", ["Rollout", "rollout"])
def test_kind_or_variable_name(kind: str) -> None:
    obj = rollout(abort=True, stable="h0")
    obj["metadata"]["annotations"][f"{SUB}on-rollout-aborted.slack"] = "oncall"
    result = plan(obj, kind=kind, config=config_of({}, name=ROLLOUTS_CONFIGMAP), project=None,
                  context_vars={}, now=NOW)
    assert [d.trigger for d in result.deliveries] == ["on-rollout-aborted"]


def test_service_keys_are_handed_to_build_services_as_written() -> None:
    from notifications.services import build_services

    config = config_of({"service.slack": "token: $slack-token\napiURL: http://127.0.0.1:1/api",
                        "service.webhook.hook": "url: http://127.0.0.1:1/hook", "trigger.x": "- when: 'true'\n  send: [app-created]"})
    assert config.service_data() == {"service.slack": "token: $slack-token\napiURL: http://127.0.0.1:1/api",
                                     "service.webhook.hook": "url: http://127.0.0.1:1/hook"}
    services, errors = build_services(config.service_data(), {"slack-token": "xoxb-1"})
    assert sorted(services) == ["hook", "slack"], errors
