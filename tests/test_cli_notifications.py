"""``tidegate notifications trigger run`` and ``template notify --dry-run`` against a fake cluster.

The fake holds the objects and ConfigMaps the commands read; the output is checked exactly
where it is a contract (the condition table, the rendered message) and the exit codes.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import notifications as cli
from cli.main import build_parser

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SEED = Path("/work/shared/seed/notifications-cm.yaml")


class FakeApi:
    def __init__(self, objects: dict[tuple[str, str, str], dict[str, Any]],
                 config_maps: dict[tuple[str, str], dict[str, str]]) -> None:
        self.objects = objects
        self.config_maps = config_maps
        self.reads: list[tuple[str, ...]] = []

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.reads.append((kind, namespace, name))
        try:
            return self.objects[(kind, namespace, name)]
        except KeyError:
            raise cli.CliError(cli.MSG_NOT_FOUND.format(kind=kind, name=name, namespace=namespace)) from None

    def get_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        self.reads.append(("ConfigMap", namespace, name))
        return self.config_maps.get((namespace, name))


def application(phase: str = "Succeeded") -> dict[str, Any]:
    return {
        "kind": "Application",
        "metadata": {"name": "llm-serving", "namespace": "argocd",
                     "annotations": {"notifications.argoproj.io/subscribe.on-deployed.slack": "ml-team"}},
        "spec": {"project": "ml", "source": {"repoURL": "https://github.com/acme/models.git"}},
        "status": {"sync": {"status": "Synced", "revision": "abc123"}, "health": {"status": "Healthy"},
                   "operationState": {"phase": phase, "syncResult": {"revision": "abc123", "resources": [
                       {"kind": "Deployment", "name": "llm", "status": "Synced"}]}}},
    }


def rollout() -> dict[str, Any]:
    return {"kind": "Rollout", "metadata": {"name": "inference", "namespace": "ml-serving"},
            "spec": {"strategy": {"canary": {"steps": [{"setWeight": 20}]}}},
            "status": {"abort": True, "currentPodHash": "h2", "stableRS": "h1",
                       "message": "RolloutAborted: metric latency failed"}}


def seed_data() -> dict[str, str]:
    data: dict[str, str] = yaml.safe_load(SEED.read_text())["data"]
    return data


def run(argv: list[str], api: FakeApi) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(args, api=api, out=out, err=err, now=NOW)
    return code, out.getvalue(), err.getvalue()


def fake(**objects: dict[str, Any]) -> FakeApi:
    return FakeApi(
        objects={("Application", "argocd", "llm-serving"): objects.get("app", application()),
                 ("Rollout", "ml-serving", "inference"): rollout()},
        config_maps={("argocd", "argocd-notifications-cm"): seed_data()},
    )


TRIGGER_RUN_CASES = [
    ("seed-on-deployed-true", ["--app", "llm-serving"], "on-deployed", application(),
     "CONDITION                           RESULT  ONCEPER  WHEN\n"
     "[0] Model deployment completed      true    -        app.status.operationState.phase in ['Succeeded']\n"),
    ("seed-on-sync-failed-false", ["--app", "llm-serving"], "on-sync-failed", application(),
     "CONDITION                   RESULT  ONCEPER  WHEN\n"
     "[0] Model sync failed       false   -        app.status.operationState.phase in ['Error', 'Failed']\n"),
]


@pytest.mark.parametrize(("target", "trigger", "obj", "expected"), [c[1:] for c in TRIGGER_RUN_CASES],
                         ids=[c[0] for c in TRIGGER_RUN_CASES])
def test_trigger_run_prints_each_condition(target: list[str], trigger: str, obj: dict[str, Any],
                                           expected: str) -> None:
    api = fake(app=obj)
    code, out, err = run(["notifications", "trigger", "run", trigger, *target], api)
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [line.split() for line in expected.splitlines()]
    assert ("ConfigMap", "argocd", "argocd-notifications-cm") in api.reads


def test_trigger_run_on_a_rollout_uses_the_catalog_and_shows_once_per() -> None:
    code, out, err = run(["notifications", "trigger", "run", "on-rollout-aborted", "--rollout", "inference",
                          "-n", "ml-serving"], fake())
    assert code == 0
    assert out.splitlines()[1].split()[-1] == "true"
    assert " true " in out and " h2 " in out
    assert "argo-rollouts/argo-rollouts-notification-configmap not found" in err


def test_trigger_run_unknown_trigger_exits_1() -> None:
    code, out, err = run(["notifications", "trigger", "run", "on-nothing", "--app", "llm-serving"], fake())
    assert code == 1
    assert "'on-nothing' is not configured" in err


def test_trigger_run_missing_object_exits_1() -> None:
    code, _, err = run(["notifications", "trigger", "run", "on-deployed", "--app", "nope"], fake())
    assert code == 1
    assert "Application 'nope' not found in namespace 'argocd'" in err


def test_template_notify_dry_run_renders_the_seed_message_per_subscription() -> None:
    code, out, err = run(["notifications", "template", "notify", "slack-ml-team", "llm-serving", "--dry-run"], fake())
    assert code == 0, err
    header, *body = out.splitlines(keepends=True)
    assert header == "# template slack-ml-team for Application argocd/llm-serving to slack:ml-team\n"
    assert yaml.safe_load("".join(body)) == {"message": (
        ":white_check_mark:\n\nApplication llm-serving sync Succeeded\nRevision: abc123\n\n"
        "- Deployment/llm: Synced\n\n")}


def test_template_notify_for_chosen_recipients_and_a_rollout() -> None:
    code, out, err = run(["notifications", "template", "notify", "rollout-aborted", "rollout/inference",
                          "-n", "ml-serving", "--dry-run", "--recipient", "slack:oncall",
                          "--recipient", "pagerdutyv2:key"], fake())
    assert code == 0, err
    documents = out.split("# template ")[1:]
    assert [d.splitlines()[0] for d in documents] == [
        "rollout-aborted for Rollout ml-serving/inference to slack:oncall",
        "rollout-aborted for Rollout ml-serving/inference to pagerdutyv2:key"]
    rendered = yaml.safe_load(documents[1].split("\n", 1)[1])
    assert rendered["message"] == "Rollout inference was aborted: RolloutAborted: metric latency failed"
    assert rendered["pagerdutyv2"]["severity"] == "error"


def test_template_notify_needs_dry_run() -> None:
    code, _, err = run(["notifications", "template", "notify", "slack-ml-team", "llm-serving"], fake())
    assert code == 1
    assert "--dry-run" in err


def test_config_file_for_offline_use(tmp_path: Path) -> None:
    api = fake()
    api.config_maps.clear()
    code, out, err = run(["notifications", "template", "notify", "slack-ml-team", "app/llm-serving", "--dry-run",
                          "--config-file", str(SEED)], api)
    assert code == 0, err
    assert "Application llm-serving sync Succeeded" in out
    assert not any(read[0] == "ConfigMap" for read in api.reads)
    bare = tmp_path / "data.yaml"
    bare.write_text(yaml.safe_dump({"template.t": "message: hello {{.app.metadata.name}}"}))
    code, out, _ = run(["notifications", "template", "notify", "t", "llm-serving", "--dry-run",
                        "--config-file", str(bare), "--recipient", "webhook"], api)
    assert code == 0
    assert out.endswith("message: hello llm-serving\n")


def test_a_render_error_is_printed_and_exits_1() -> None:
    api = fake()
    api.config_maps[("argocd", "argocd-notifications-cm")] = {
        "template.t": "message: '{{index .app.spec.nothing 3}}'"}
    code, out, _ = run(["notifications", "template", "notify", "t", "llm-serving", "--dry-run"], api)
    assert code == 1
    assert "error: template 't' field message:" in out


def test_bad_object_kind() -> None:
    code, _, err = run(["notifications", "template", "notify", "t", "deploy/x", "--dry-run"], fake())
    assert code == 1 and "unknown kind 'deploy'" in err


def test_a_long_one_line_message_prints_on_one_line() -> None:
    api = fake()
    reason = "RolloutAborted: Rollout aborted update to revision 2: metric latency failed at p99 > 250ms"
    api.objects[("Rollout", "ml-serving", "inference")]["status"]["message"] = reason
    code, out, err = run(["notifications", "template", "notify", "rollout-aborted", "rollout/inference",
                          "-n", "ml-serving", "--dry-run", "--recipient", "slack:oncall"], api)
    assert code == 0, err
    # YAML's default width (80) would fold the line, so the message would not read as sent.
    assert f"message: 'Rollout inference was aborted: {reason}'\n" in out.splitlines(keepends=True)


INVALID_CASES = [
    ("template-does-not-compile", {"template.t": "message: '{{.app.metadata.name'"},
     ["template", "notify", "t", "llm-serving", "--dry-run"],
     "template 't' in argocd-notifications-cm is invalid (see the warning above): nothing to render"),
    ("catalog-template-overridden-by-a-broken-one", {"template.app-deployed": "message: '{{if}}'"},
     ["template", "notify", "app-deployed", "llm-serving", "--dry-run"],
     "template 'app-deployed' in argocd-notifications-cm is invalid (see the warning above): nothing to render"),
    ("catalog-trigger-overridden-by-bad-yaml", {"trigger.on-deployed": "- when: [unclosed"},
     ["trigger", "run", "on-deployed", "--app", "llm-serving"],
     "trigger 'on-deployed' in argocd-notifications-cm is invalid (see the warning above): nothing to evaluate"),
    ("absent-template-stays-not-configured", {},
     ["template", "notify", "nothing", "llm-serving", "--dry-run"],
     "template 'nothing' is not configured (nor in the catalog)"),
]


@pytest.mark.parametrize(("data", "argv", "expected"), [c[1:] for c in INVALID_CASES],
                         ids=[c[0] for c in INVALID_CASES])
def test_a_configured_entry_that_does_not_parse_is_named_invalid_not_absent(
        data: dict[str, str], argv: list[str], expected: str) -> None:
    api = fake()
    api.config_maps[("argocd", "argocd-notifications-cm")] = data
    code, out, err = run(["notifications", *argv], api)
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == f"tidegate notifications: {expected}"
    assert all(line.startswith("warning: argocd-notifications-cm: ") for line in err.splitlines()[:-1])
