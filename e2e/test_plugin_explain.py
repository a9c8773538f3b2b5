"""End-to-end ``tidegate explain``: the decision log read from the real cluster, the same after a restart.

Given a real ``tidegate controller`` watching only the test's namespace and a
canary rolled out to v2, ``python -m cli.main explain`` (a subprocess with the
cluster's kubeconfig) prints the log the controllers recorded: steps with their
times from Events, the current state in one sentence. Killing the controller and
starting it again changes nothing in that log, because it is rebuilt only from
status and Events. An abort is then explained with its reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.analysis_kit import Analysis, analysis_template, unique_service
from e2e.conftest import REPO, wait_until
from e2e.exporter import start_exporter
from e2e.kit import Cluster, Controller, rollout

pytestmark = pytest.mark.e2e

STEPS = [{"setWeight": 50}, {"pause": {"duration": 1}}, {"pause": {}}]
ABORT_REASON = "e2e: latency spike"
SECRET_VALUE = "s3cr3t-explain-e2e-4b7e"


def explain(env: dict[str, str], namespace: str, name: str, *output: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "explain", name, "-n", namespace, *output],
        env=env, cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
    )


def explain_json(env: dict[str, str], namespace: str, name: str) -> dict[str, Any]:
    done = explain(env, namespace, name, "-o", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_explain_paused_canary_survives_restart_then_abort(
    cluster: Cluster, cluster_env: dict[str, str], namespace: str, tmp_path: Path
) -> None:
    ctl = Controller(cluster_env, namespace, tmp_path / "controller.log")
    ctl.start()
    try:
        # Given v2 rolled out and waiting at the indefinite pause (step 3 of 3)
        cluster.create(rollout("model", replicas=2, traffic=None, steps=STEPS))
        cluster.wait_phase("model", "Healthy")
        cluster.set_image("model", "registry.local/model:v2")
        cluster.wait_status("model", lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 2,
                            timeout=60, message="paused at the indefinite pause")

        # When explained, once the controller's Events have arrived (they are posted after the
        # status write that the wait above saw)
        def with_step_events() -> dict[str, Any] | None:
            got = explain_json(cluster_env, namespace, "model")
            return got if all(step["endedAt"] for step in got["steps"][:2]) else None

        log = wait_until(with_step_events, timeout=20, interval=0.5, message="the step Events of revision 2")

        # Then the summary, the revision and each step's state and times come from the records
        assert log["summary"] == "Paused at step 3/3 (pause) until promoted"
        assert log["revision"] == "2"
        assert [s["state"] for s in log["steps"]] == ["done", "done", "paused"]
        first, timed, current = log["steps"]
        assert first["startedAt"] and first["endedAt"] and first["startedAt"] <= first["endedAt"]
        assert timed["startedAt"] == first["endedAt"] and timed["why"] == "pause of 1s elapsed"
        assert current["startedAt"] == timed["endedAt"] and current["endedAt"] is None

        # When the controller is killed and started again, Then the log is the same
        ctl.kill9()
        ctl.start()
        assert explain_json(cluster_env, namespace, "model") == log

        # Plain text when piped: the summary line and a table with no escape codes
        text = explain(cluster_env, namespace, "model")
        assert text.returncode == 0, text.stderr
        assert "Paused at step 3/3 (pause) until promoted" in text.stdout and "\x1b[" not in text.stdout

        # When aborted with a reason (the on-call annotation), Then explain names the step and the reason
        cluster.update_rollout("model", lambda r: r["metadata"].setdefault("annotations", {}).update(
            {"tidegate.dev/abort": ABORT_REASON}))
        cluster.wait_phase("model", "Degraded")
        aborted = explain_json(cluster_env, namespace, "model")
        assert aborted["summary"].startswith("Aborted at step 3/3: "), aborted["summary"]
        assert ABORT_REASON in aborted["summary"]
        assert [s["state"] for s in aborted["steps"]] == ["done", "done", "aborted"]
    finally:
        ctl.stop()


def test_explain_unknown_rollout_exits_1(cluster_env: dict[str, str], namespace: str) -> None:
    done = explain(cluster_env, namespace, "absent")
    assert done.returncode == 1
    assert f"rollout {namespace}/absent not found" in done.stderr


def test_explain_failed_step_analysis_masks_the_secret_arg(
    cluster: Cluster, cluster_env: dict[str, str], namespace: str, api_client: client.ApiClient,
    controller: Controller,
) -> None:
    # Given a web metric on the test exporter (a stand-in for the model's metrics endpoint) at
    # 20% errors, whose URL carries a token from a Secret
    server = start_exporter(0)
    try:
        svc = unique_service("explain")
        server.exporter.configure(svc, {"error_rate": 0.2})
        analysis = Analysis(api_client, namespace)
        analysis.secret("api-token", {"token": SECRET_VALUE})
        metric = {"name": "error-rate", "successCondition": "result <= 0.01", "failureLimit": 0,
                  "provider": {"web": {"url": f"{server.url}/control?service={svc}&token={{{{args.token}}}}",
                                       "jsonPath": f"{{$['{svc}'].error_rate}}"}}}
        args = [{"name": "token", "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "token"}}}]
        analysis.create(analysis_template("error-rate", [metric], args=args))
        steps = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "error-rate"}]}}, {"pause": {}}]
        cluster.create(rollout("model", replicas=2, traffic=None, steps=steps))
        cluster.wait_phase("model", "Healthy")

        # When v2 is rolled out and its step analysis fails
        cluster.set_image("model", "registry.local/model:v2")
        cluster.wait_phase("model", "Degraded", timeout=90)
        done = explain(cluster_env, namespace, "model", "-o", "json")
        assert done.returncode == 0, done.stderr
        log = json.loads(done.stdout)
    finally:
        server.stop()

    # Then explain says which step, run, metric, value and condition, and masks the token
    assert log["summary"].startswith("Aborted at step 2/3: analysis run "), log["summary"]
    assert "metric error-rate value 0.2 did not meet successCondition result <= 0.01" in log["summary"]
    assert [s["state"] for s in log["steps"]] == ["done", "aborted", "pending"]
    failed = [m for m in log["measurements"] if m["verdict"].startswith("Failed")]
    assert failed and failed[0]["value"] == "0.2"
    assert failed[0]["condition"] == "successCondition: result <= 0.01"
    assert "token=*****" in failed[0]["query"]
    assert SECRET_VALUE not in done.stdout
