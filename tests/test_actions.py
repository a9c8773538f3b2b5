"""The operator actions' patch builders and CLI argument handling (rollouts/kube/actions.py, cli/actions.py).

Table-driven: given a Rollout (and its ReplicaSets), each builder returns exactly
the patch Argo's kubectl plugin sends, or an ActionError naming object and field.
No cluster: the e2e twin is e2e/test_plugin_actions.py.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli import actions as cli_actions
from cli.main import build_parser
from rollouts.kube import actions

RO = "web"


def rollout(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": RO, "namespace": "ns", "uid": "u1"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": RO}},
            "template": {
                "metadata": {"labels": {"app": RO}},
                "spec": {
                    "initContainers": [{"name": "init", "image": "busybox:1"}],
                    "containers": [{"name": "app", "image": "nginx:1"}, {"name": "sidecar", "image": "envoy:1"}],
                },
            },
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}]}},
        },
        "status": status,
    }


PAUSED = [{"reason": "CanaryPauseStep", "startTime": "2024-01-01T00:00:00Z"}]


@pytest.mark.parametrize(
    ("doc", "full", "want_status", "want_spec"),
    [
        pytest.param(rollout(pauseConditions=PAUSED, currentStepIndex=1), False,
                     {"pauseConditions": None}, None, id="paused-clears-pause-conditions"),
        pytest.param(rollout(currentStepIndex=0), False,
                     {"pauseConditions": None, "currentStepIndex": 1}, None, id="not-paused-skips-step"),
        pytest.param(rollout(currentStepIndex=3), False, None, None, id="past-last-step-nothing"),
        pytest.param(rollout(currentStepIndex=2, canary={"currentStepAnalysisRunStatus": {"status": "Inconclusive"}}),
                     False, {"pauseConditions": None, "controllerPause": False, "currentStepIndex": 3}, None,
                     id="inconclusive-analysis-skips-and-unpauses"),
        pytest.param(rollout(currentPodHash="b", stableRS="a", currentStepIndex=1), True,
                     {"promoteFull": True, "pauseConditions": None}, None, id="full-while-updating"),
        pytest.param(rollout(currentPodHash="a", stableRS="a"), True, None, None, id="full-when-promoted-nothing"),
    ],
)
def test_promote_patches(doc: dict[str, Any], full: bool, want_status: Any, want_spec: Any) -> None:
    assert actions.promote_patches(doc, full=full) == (want_status, want_spec)


def test_promote_spec_paused_sends_spec_patch() -> None:
    doc = rollout(currentStepIndex=0)
    doc["spec"]["paused"] = True
    assert actions.promote_patches(doc, full=False) == (None, {"paused": False})


@pytest.mark.parametrize(
    ("reason", "want"),
    [
        pytest.param(None, ({"abort": True}, None), id="no-reason-status-abort"),
        pytest.param("  ", ({"abort": True}, None), id="blank-reason-status-abort"),
        pytest.param("p99 doubled", (None, {"annotations": {"tidegate.dev/abort": "p99 doubled"}}),
                     id="reason-annotation-only"),
    ],
)
def test_abort_patch(reason: str | None, want: Any) -> None:
    assert actions.abort_patch(reason) == want


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("0s", 0, id="zero"),
        pytest.param("10s", 10, id="seconds"),
        pytest.param("5m", 300, id="minutes"),
        pytest.param("1h30m", 5400, id="compound"),
        pytest.param("500ms", 0.5, id="millis"),
        pytest.param("45", 45, id="bare-number"),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert actions.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", [pytest.param(t, id=t or "empty") for t in ("", "5x", "m5", "-5s", "10s junk")])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(actions.ActionError, match="restart --in"):
        actions.parse_duration(text)


def test_restart_patch_is_rfc3339_utc() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)
    assert actions.restart_patch(now, timedelta(seconds=10)) == {"spec": {"restartAt": "2024-01-01T12:00:11Z"}}


def test_restart_time_rounds_up_so_a_pod_created_in_the_same_second_is_restarted() -> None:
    # A pod created at 12:00:00.1 has creationTimestamp 12:00:00: restartAt 12:00:00 would spare it
    now = datetime(2024, 1, 1, 12, 0, 0, 300_000, tzinfo=UTC)
    assert actions.restart_patch(now, timedelta(0)) == {"spec": {"restartAt": "2024-01-01T12:00:01Z"}}
    assert actions.format_restart_time(datetime(2024, 1, 1, 12, 0, 59, 1, tzinfo=UTC)) == "2024-01-01T12:01:00Z"


@pytest.mark.parametrize(
    ("container", "want_ops", "want_changes"),
    [
        pytest.param("app", [
            {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "app"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:2"},
        ], ["app: nginx:1 -> nginx:2"], id="one-container"),
        pytest.param("init", [
            {"op": "test", "path": "/spec/template/spec/initContainers/0/name", "value": "init"},
            {"op": "replace", "path": "/spec/template/spec/initContainers/0/image", "value": "nginx:2"},
        ], ["init: busybox:1 -> nginx:2"], id="init-container"),
        pytest.param("*", None, ["init: busybox:1 -> nginx:2", "app: nginx:1 -> nginx:2",
                                 "sidecar: envoy:1 -> nginx:2"], id="star-all-containers"),
    ],
)
def test_set_image_patch(container: str, want_ops: Any, want_changes: list[str]) -> None:
    ops, changes = actions.set_image_patch(rollout(), container, "nginx:2")
    assert [str(c) for c in changes] == want_changes
    if want_ops is not None:
        assert ops == want_ops
    else:
        assert [op["path"] for op in ops if op["op"] == "replace"] == [
            "/spec/template/spec/initContainers/0/image",
            "/spec/template/spec/containers/0/image",
            "/spec/template/spec/containers/1/image",
        ]


def test_set_image_missing_container_names_rollout_field_and_known() -> None:
    with pytest.raises(actions.ActionError) as err:
        actions.set_image_patch(rollout(), "nope", "nginx:2")
    assert err.value.message == (
        "rollout 'web': no container 'nope' in spec.template.spec (containers: init, app, sidecar)"
    )


@pytest.mark.parametrize(
    "arg", [pytest.param(a, id=a or "empty") for a in ("", "app", "=nginx", "app=", "app =  ")]
)
def test_parse_image_arg_rejects(arg: str) -> None:
    with pytest.raises(actions.ActionError, match="CONTAINER=IMAGE"):
        actions.parse_image_arg(arg)


def test_parse_image_arg() -> None:
    assert actions.parse_image_arg("app=registry:5000/img:v2") == ("app", "registry:5000/img:v2")


def replica_set(revision: int, image: str, pod_hash: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{RO}-{pod_hash}", "annotations": {"rollout.argoproj.io/revision": str(revision)}},
        "spec": {"template": {
            "metadata": {"labels": {"app": RO, "rollouts-pod-template-hash": pod_hash}},
            "spec": {"containers": [{"name": "app", "image": image}]},
        }},
    }


def template(image: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": RO}}, "spec": {"containers": [{"name": "app", "image": image}]}}


RS_SETS = [replica_set(1, "nginx:1", "h1"), replica_set(2, "nginx:2", "h2"), replica_set(3, "nginx:3", "h3")]


@pytest.mark.parametrize(
    ("to_revision", "want_revision", "want_image"),
    [
        pytest.param(None, 2, "nginx:2", id="default-previous"),
        pytest.param(0, 2, "nginx:2", id="zero-means-previous"),
        pytest.param(1, 1, "nginx:1", id="explicit-revision"),
    ],
)
def test_undo_patch(to_revision: int | None, want_revision: int, want_image: str) -> None:
    doc = rollout()
    doc["spec"]["template"] = template("nginx:3")
    ops, revision = actions.undo_patch(doc, RS_SETS, to_revision)
    assert revision == want_revision
    assert ops == [{"op": "replace", "path": "/spec/template", "value": template(want_image)}]


def test_undo_drops_hash_label_without_touching_the_replica_set() -> None:
    before = copy.deepcopy(RS_SETS)
    ops, _ = actions.undo_patch(rollout(), RS_SETS, 1)
    assert ops is not None and "rollouts-pod-template-hash" not in ops[0]["value"]["metadata"]["labels"]
    assert before == RS_SETS


def test_undo_to_current_template_is_skipped() -> None:
    doc = rollout()
    doc["spec"]["template"] = template("nginx:2")
    assert actions.undo_patch(doc, RS_SETS, 2) == (None, 2)


@pytest.mark.parametrize(
    ("replica_sets", "to_revision", "message"),
    [
        pytest.param(RS_SETS, 7, "rollout 'web': no ReplicaSet with annotation rollout.argoproj.io/revision=7 "
                                 "(revisions: 1, 2, 3)", id="missing-revision"),
        pytest.param(RS_SETS[:1], None, "rollout 'web': no previous revision to undo to (revisions: 1)",
                     id="no-previous"),
        pytest.param([], None, "rollout 'web': no previous revision to undo to (revisions: none)", id="no-rs"),
    ],
)
def test_undo_errors(replica_sets: list[dict[str, Any]], to_revision: int | None, message: str) -> None:
    with pytest.raises(actions.ActionError) as err:
        actions.undo_patch(rollout(), replica_sets, to_revision)
    assert err.value.message == message


@pytest.mark.parametrize(
    ("phrase", "patch", "want"),
    [
        pytest.param("status", {"pauseConditions": None, "currentStepIndex": 2},
                     ["status.pauseConditions cleared", "status.currentStepIndex=2"], id="status"),
        pytest.param("spec", {"paused": False}, ["spec.paused=false"], id="bool"),
        pytest.param("spec", None, [], id="none"),
    ],
)
def test_describe_patch(phrase: str, patch: Any, want: list[str]) -> None:
    assert actions.describe_patch(phrase, patch) == want


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        pytest.param(["retry", "web"], "web", id="retry-name"),
        pytest.param(["retry", "rollout", "web"], "web", id="retry-rollout-name"),
        pytest.param(["retry", "ro", "web"], "web", id="retry-ro-name"),
    ],
)
def test_retry_accepts_both_forms(argv: list[str], name: str) -> None:
    args = build_parser().parse_args(argv)
    assert cli_actions._retry_name(args.words) == name


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["retry", "rollout"], "retry: expected NAME or 'rollout NAME', got: rollout", id="retry-kind-only"),
        pytest.param(["retry", "a", "b"], "retry: expected NAME or 'rollout NAME', got: a b", id="retry-two-names"),
        pytest.param(["set", "image", "web", "nginx"], "set image: expected CONTAINER=IMAGE, got 'nginx'",
                     id="set-image-no-equals"),
        pytest.param(["restart", "web", "--in", "soon"], "restart --in: 'soon' is not a duration", id="restart-bad-in"),
    ],
)
def test_cli_argument_errors_exit_1_without_traceback(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(argv)
    assert args.func(args) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {message}")
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize(
    ("argv", "attr", "value"),
    [
        pytest.param(["promote", "web", "--full", "-n", "x"], "full", True, id="promote-full"),
        pytest.param(["abort", "web", "--reason", "slow"], "reason", "slow", id="abort-reason"),
        pytest.param(["undo", "web", "--to-revision", "3"], "to_revision", 3, id="undo-to-revision"),
        pytest.param(["restart", "web", "--in", "10s"], "in_", "10s", id="restart-in"),
        pytest.param(["set", "image", "web", "*=nginx:2"], "image", "*=nginx:2", id="set-image-star"),
        pytest.param(["pause", "web", "--context", "c1"], "context", "c1", id="pause-kube-flags"),
    ],
)
def test_cli_parses(argv: list[str], attr: str, value: Any) -> None:
    assert getattr(build_parser().parse_args(argv), attr) == value


def defaulted(pod_template: dict[str, Any], pod_hash: str) -> dict[str, Any]:
    """The template as the API server stores it in a ReplicaSet (defaults filled in)."""
    doc = copy.deepcopy(pod_template)
    doc["metadata"] = {**doc["metadata"], "creationTimestamp": None,
                       "labels": {**doc["metadata"]["labels"], "rollouts-pod-template-hash": pod_hash}}
    doc["spec"].update(restartPolicy="Always", dnsPolicy="ClusterFirst", schedulerName="default-scheduler",
                       securityContext={}, terminationGracePeriodSeconds=30)
    for container in doc["spec"]["containers"]:
        container.update(terminationMessagePath="/dev/termination-log", terminationMessagePolicy="File",
                         imagePullPolicy="IfNotPresent", resources={})
    return doc


def test_undo_strips_server_defaults_when_they_hash_back_to_the_revision() -> None:
    from rollouts.engine.hashing import pod_template_hash

    original = template("nginx:1")
    rs = replica_set(1, "nginx:1", pod_template_hash(original))
    rs["spec"]["template"] = defaulted(original, pod_template_hash(original))
    ops, _ = actions.undo_patch(rollout(), [rs, replica_set(2, "nginx:2", "h2")], 1)
    assert ops == [{"op": "replace", "path": "/spec/template", "value": original}]


def test_undo_keeps_defaults_that_do_not_hash_back() -> None:
    original = template("nginx:1")
    rs = replica_set(1, "nginx:1", "not-its-hash")
    rs["spec"]["template"] = defaulted(original, "not-its-hash")
    ops, _ = actions.undo_patch(rollout(), [rs, replica_set(2, "nginx:2", "h2")], 1)
    assert ops is not None and ops[0]["value"]["spec"]["dnsPolicy"] == "ClusterFirst"
