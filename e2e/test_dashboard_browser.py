"""Browser tests of the dashboard: real headless Chromium against the real server and cluster.

Each test: Given objects in a fresh namespace, a real ``tidegate controller`` for
it and a real ``tidegate dashboard`` (e2e/dashboard_kit.py), When a person uses
the page in Debian's Chromium (Playwright's sync API) or the cluster changes
underneath it, Then the page shows it without a reload (server-sent events) and
the cluster shows what the buttons did. Nothing is mocked: the API server, the
controllers, Git (a bare repository over file://) and the browser are real.

Screenshots for docs/: ``TIDEGATE_DASHBOARD_SCREENSHOTS=docs/img`` (dashboard_kit.screenshot).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.analysis_kit import analysis_template, prometheus_metric
from e2e.conftest import wait_until
from e2e.dashboard_kit import chromium_page, running_dashboard, screenshot
from e2e.kit import (
    GROUP,
    VERSION,
    Cluster,
    Controller,
    GitopsController,
    rollout,
    service,
    virtual_service,
)
from e2e.test_gitops_sync import GitRepo

try:
    from playwright.sync_api import expect
except ImportError:  # a dependency (pyproject); in CI its absence fails the run, elsewhere it skips
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        raise
    pytest.skip("Playwright is not installed (pip install playwright)", allow_module_level=True)

pytestmark = pytest.mark.e2e

LIVE_TIMEOUT_MS = 30_000
ABORT_REASON = "p99 latency above 300 ms (from the dashboard test)"
STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]


# A latency that cycles through 0.10 ... 0.19 every 10 s: with one measurement a second the
# points above the condition (0.17, 0.18, 0.19) come within any 10 s, and never enough to fail the run.
LATENCY_QUERY = "vector(0.1 + (time() % 10 - time() % 1) / 100)"
LATENCY_CONDITION = "result[0] < 0.17"


def latency_template(prometheus_url: str) -> dict[str, Any]:
    return analysis_template("latency", [prometheus_metric(
        "p99-latency", address=prometheus_url, query=LATENCY_QUERY, interval="1s", count=120,
        success=LATENCY_CONDITION, failureLimit=100)])


def confirm(page: Any, button: str) -> None:
    """Click an action button and confirm its dialog."""
    page.get_by_test_id(button).click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_test_id("confirm-ok").click()
    expect(dialog).to_be_hidden()


def canary_paused_at_20(cluster: Cluster, name: str, *, prometheus_url: str | None = None) -> dict[str, Any]:
    """A host-level Istio canary of v2 over v1, paused at its first pause (20%).

    With ``prometheus_url`` it runs a background analysis (a real Prometheus query) from step 0.
    """
    cluster.create(service(f"{name}-canary", name))
    cluster.create(service(f"{name}-stable", name))
    cluster.create(virtual_service(f"{name}-vsvc", canary_host=f"{name}-canary", stable_host=f"{name}-stable"))
    extra: dict[str, Any] = {}
    if prometheus_url:
        cluster.create(latency_template(prometheus_url))
        extra["analysis"] = {"templates": [{"templateName": "latency"}]}
    cluster.create(rollout(name, replicas=5, steps=STEPS, **extra))
    cluster.wait_phase(name, "Healthy")
    cluster.set_image(name, "registry.local/model:v2")
    return cluster.wait_status(name, lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 1,
                               timeout=60, message="Paused at step 1 (20%)")


def test_the_list_shows_the_rollout_its_page_follows_a_promote_live_and_abort_asks_a_reason(
        cluster: Cluster, controller: Controller, cluster_env: dict[str, str], namespace: str,
        tmp_path: Path, prometheus_url: str) -> None:
    # Given a canary paused at 20% with a background analysis, and a dashboard for its namespace
    canary_paused_at_20(cluster, "model", prometheus_url=prometheus_url)
    with running_dashboard(cluster_env, namespace, tmp_path / "dashboard.log") as board, chromium_page() as page:
        # When the list is opened, Then it shows the rollout, paused at 20%
        page.goto(f"{board.url}/#/rollouts")
        row = page.locator('[data-testid="rollout-row"][data-name="model"]')
        expect(row).to_be_visible()
        expect(row.get_by_test_id("rollout-status")).to_have_text("Paused")
        expect(row).to_contain_text("20%")
        expect(page.locator(".counts")).to_contain_text("Paused1")
        screenshot(page, "rollouts")

        # ... and the filter box hides it for a name it does not match, and shows it again for its image
        search = page.get_by_role("searchbox", name="Filter rollouts")
        search.fill("no-such-rollout")
        expect(row).to_have_count(0)
        search.fill("model:v2")
        expect(row).to_be_visible()

        # When its page is opened
        row.get_by_role("link", name="model").click()
        expect(page).to_have_url(f"{board.url}/#/rollouts/{namespace}/model")
        expect(page.get_by_test_id("set-weight")).to_have_text("20%")
        expect(page.get_by_test_id("step-list").locator('[data-state="current"]')).to_contain_text("pause")
        expect(page.get_by_test_id("weight-chart").locator("svg path.line-set")).to_have_count(1)
        page.evaluate("window.__sameDocument = true")  # gone if the page reloads

        # ... and the rollout is promoted from outside the page (the status patch of `promote`)
        cluster.patch_rollout("model", {"status": {"pauseConditions": None}}, status=True)

        # Then the page shows 50% and the next pause without a reload (server-sent events)
        expect(page.get_by_test_id("set-weight")).to_have_text("50%", timeout=LIVE_TIMEOUT_MS)
        expect(page.get_by_test_id("step-list").locator('[data-state="current"]')).to_contain_text(
            "pause", timeout=LIVE_TIMEOUT_MS)
        expect(page.get_by_test_id("step-list").locator('[data-state="done"]')).to_have_count(3)
        assert page.evaluate("window.__sameDocument") is True
        expect(page.get_by_test_id("rollout-status")).to_have_text("Paused", timeout=LIVE_TIMEOUT_MS)

        # ... and the analysis chart draws the measurements against the condition, failed ones crossed
        chart = page.locator('.metric-chart[data-metric="p99-latency"]')
        expect(chart).to_contain_text(LATENCY_CONDITION)
        expect(chart.locator("line.threshold")).to_have_count(1)
        expect(chart.locator("circle.pt-ok").nth(2)).to_be_attached(timeout=LIVE_TIMEOUT_MS)
        expect(chart.locator("g.pt-bad").first).to_be_attached(timeout=LIVE_TIMEOUT_MS)
        # ... and the explain log names the pause and lists the measurements with their verdicts
        expect(page.locator("p.summary")).to_contain_text("pause", ignore_case=True)
        expect(page.get_by_role("heading", name="Measurements")).to_be_visible()
        expect(page.locator("tr.row-bad").first).to_be_attached()
        page.wait_for_timeout(500)  # let the chart settle for the picture
        screenshot(page, "rollout", full_page=True)

        # When Pause is clicked and confirmed, Then spec.paused is set and the page offers Resume
        confirm(page, "btn-pause")
        expect(page.get_by_test_id("toast")).to_contain_text("paused")
        wait_until(lambda: cluster.rollout("model")["spec"].get("paused") is True, timeout=10,
                   message="spec.paused true")
        expect(page.get_by_test_id("btn-resume")).to_be_visible(timeout=LIVE_TIMEOUT_MS)

        # When Resume is clicked and confirmed, Then spec.paused is lifted and Pause is back
        confirm(page, "btn-resume")
        wait_until(lambda: not cluster.rollout("model")["spec"].get("paused"), timeout=10,
                   message="spec.paused lifted")
        expect(page.get_by_test_id("btn-pause")).to_be_visible(timeout=LIVE_TIMEOUT_MS)

        # When Abort is clicked, a reason typed and confirmed
        page.get_by_test_id("btn-abort").click()
        dialog = page.get_by_test_id("confirm-dialog")
        expect(dialog).to_be_visible()
        dialog.get_by_test_id("confirm-reason").fill(ABORT_REASON)
        dialog.get_by_test_id("confirm-ok").click()

        # Then the toast says so, the Rollout is aborted with the reason, and the page follows
        expect(page.get_by_test_id("toast")).to_contain_text("aborted")
        status = cluster.wait_phase("model", "Degraded", timeout=30)
        assert status.get("abort") is True
        assert ABORT_REASON in status["message"], status["message"]
        expect(page.get_by_test_id("rollout-status")).to_have_text("Degraded", timeout=LIVE_TIMEOUT_MS)
        expect(page.get_by_test_id("btn-retry")).to_be_enabled()

        # When Retry is clicked and confirmed, Then the update starts again from its first pause
        confirm(page, "btn-retry")
        expect(page.get_by_test_id("toast")).to_contain_text("retried")
        cluster.wait_status("model", lambda s: not s.get("abort") and s.get("phase") == "Paused"
                            and s.get("currentStepIndex") == 1, timeout=60, message="Paused at step 1 again")
        expect(page.get_by_test_id("set-weight")).to_have_text("20%", timeout=LIVE_TIMEOUT_MS)
        expect(page.get_by_test_id("rollout-status")).to_have_text("Paused")


def test_read_only_mode_shows_no_buttons_and_refuses_a_post_with_the_token(
        cluster: Cluster, controller: Controller, cluster_env: dict[str, str], namespace: str,
        tmp_path: Path) -> None:
    # Given a canary paused at 20% and a --read-only dashboard
    canary_paused_at_20(cluster, "model")
    with running_dashboard(cluster_env, namespace, tmp_path / "dashboard.log", read_only=True) as board, \
            chromium_page() as page:
        config = board.config()
        assert config["readOnly"] is True

        # When the rollout's page is opened, Then it shows the rollout and no action buttons
        page.goto(f"{board.url}/#/rollouts/{namespace}/model")
        expect(page.get_by_test_id("set-weight")).to_have_text("20%")
        expect(page.get_by_text("read-only", exact=True)).to_be_visible()
        for action in ("promote", "promote-full", "abort", "retry", "pause", "resume"):
            expect(page.get_by_test_id(f"btn-{action}")).to_have_count(0)

        # When an abort is POSTed with the page's token anyway, Then it is refused and nothing changes
        status, body = board.post(f"/api/rollouts/{namespace}/model/abort", {"reason": "should not happen"},
                                  token=config["csrfToken"])
        assert status == 403, body
        assert "read-only" in body["error"]
        after = cluster.rollout("model")
        assert not (after.get("status") or {}).get("abort")
        assert "tidegate.dev/abort" not in (after["metadata"].get("annotations") or {})


# A Secret's values as Git and the cluster hold them: the page must show neither (only masks).
SECRET_IN_GIT = "git-token-7c1f9a"
SECRET_LIVE = "edited-token-3b2e8d"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def web_objects() -> list[dict[str, Any]]:
    labels = {"app": "web"}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"},
         "data": {"MODEL": "v1"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-credentials"},
         "type": "Opaque", "data": {"token": b64(SECRET_IN_GIT)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "web", "image": "registry.local/web:v1"}]}}}},
    ]


def test_an_application_page_shows_its_resource_tree_and_the_diff_of_a_drifted_resource(
        custom: client.CustomObjectsApi, gitops_controller: GitopsController, cluster_env: dict[str, str],
        namespace: str, tmp_path: Path, kubectl: Callable[..., Any]) -> None:
    # Given an Application (automated, no selfHeal) over a local Git repository, synced
    repo = GitRepo(tmp_path)
    repo.commit({"web/objects.yaml": web_objects()}, "web v1")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "applications", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"project": "default",
                 "source": {"repoURL": repo.url, "targetRevision": "main", "path": "web"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": False}}}})

    def synced() -> bool:
        app = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "web")
        status = app.get("status") or {}
        return ((status.get("sync") or {}).get("status") == "Synced"
                and (status.get("operationState") or {}).get("phase") == "Succeeded")

    wait_until(synced, timeout=90, interval=0.5, message=f"the first sync; log:\n{gitops_controller.log()[-3000:]}")

    with running_dashboard(cluster_env, namespace, tmp_path / "dashboard.log") as board, chromium_page() as page:
        # When the Applications list is opened and the app clicked
        page.goto(f"{board.url}/#/apps")
        row = page.locator('[data-testid="app-row"][data-name="web"]')
        expect(row).to_contain_text("Synced")
        row.get_by_role("link", name="web").click()

        # Then its resource tree shows both resources, with their sync status
        tree = page.get_by_test_id("resource-tree")
        deployment = tree.locator('[data-testid="resource-node"][data-kind="Deployment"][data-name="web"]')
        expect(deployment).to_contain_text("Synced")
        expect(tree.locator('[data-testid="resource-node"][data-kind="ConfigMap"][data-name="web-config"]'))\
            .to_be_visible()
        expect(page.get_by_test_id("diff")).to_have_count(0)

        # When someone scales the Deployment and edits the Secret by hand, and the page's Refresh is used
        done = kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=3")
        assert done.returncode == 0, done.stderr
        done = kubectl("patch", "secret", "web-credentials", "-n", namespace, "--type=merge",
                       "-p", json.dumps({"data": {"token": b64(SECRET_LIVE)}}))
        assert done.returncode == 0, done.stderr
        page.get_by_test_id("btn-refresh").click()
        page.get_by_test_id("confirm-ok").click()
        expect(page.get_by_test_id("toast")).to_contain_text("refresh")

        # Then the Deployment is OutOfSync and its diff shows live 3 against Git's 1, without a reload
        expect(deployment).to_contain_text("OutOfSync", timeout=LIVE_TIMEOUT_MS)
        diff = page.locator('[data-testid="diff"][data-kind="Deployment"][data-name="web"]')
        expect(diff).to_contain_text("replicas: 3", timeout=LIVE_TIMEOUT_MS)
        expect(diff).to_contain_text("replicas: 1")
        expect(diff.locator(".dl-del")).not_to_have_count(0)
        expect(diff.locator(".dl-add")).not_to_have_count(0)
        # and the Secret's diff says its token differs, in masks only (as Argo CD shows it)
        secret_diff = page.locator('[data-testid="diff"][data-kind="Secret"][data-name="web-credentials"]')
        expect(secret_diff).to_contain_text("token: ++++++++", timeout=LIVE_TIMEOUT_MS)
        expect(secret_diff).to_contain_text("token: '********'")
        shown = page.content()
        for value in (SECRET_IN_GIT, SECRET_LIVE, b64(SECRET_IN_GIT), b64(SECRET_LIVE)):
            assert value not in shown
        page.wait_for_timeout(300)
        screenshot(page, "application")

        # When Sync is clicked and confirmed, Then Git's value is back and the diff goes away
        confirm(page, "btn-sync")
        expect(page.get_by_test_id("toast")).to_contain_text("sync")
        expect(page.get_by_test_id("diff")).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
        expect(deployment).to_contain_text("Synced", timeout=LIVE_TIMEOUT_MS)
        expect(deployment).not_to_contain_text("OutOfSync")
        replicas = kubectl("get", "deployment", "web", "-n", namespace, "-o", "jsonpath={.spec.replicas}")
        assert replicas.stdout == "1", replicas
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "applications", "web")
