"""End-to-end: ``kubectl-tidegate get rollout --watch`` in a real terminal (and ``list rollouts
--watch`` into a pipe) while a canary advances.

Given a Rollout in a fresh namespace and a real controller watching only that namespace,
When the canary is rolled out and promoted step by step, Then the watching plugin, running
inside tmux (a real pseudo-terminal, its screen captured), has shown every step, and Ctrl-C
ends it cleanly (exit 0, no traceback); ``status --timeout`` exits 2 while paused and 0
once the rollout is Healthy. Nothing is mocked: the API server, the controller and the
plugin are the real ones.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import wait_until
from e2e.kit import Cluster, Controller, rollout

pytestmark = pytest.mark.e2e

PLUGIN = str(Path(sys.executable).parent / "kubectl-tidegate")
STEPS: list[dict[str, Any]] = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]
EXIT_MARK = "PLUGIN-EXITED:"
SCREEN_SIZE = ("160", "60")


class Tmux:
    """A private tmux server (its own socket) running one command in a detached session."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"tidegate-e2e-{uuid.uuid4().hex[:8]}"
        self.env = env
        self.screens: list[str] = []

    def _tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], env=self.env, capture_output=True,
                              text=True, check=False, timeout=30)

    def start(self, command: list[str]) -> None:
        # The shell keeps the pane open after the plugin exits, so its exit code can be read.
        line = " ".join(command) + f"; echo {EXIT_MARK}$?; sleep 600"
        width, height = SCREEN_SIZE
        result = self._tmux("new-session", "-d", "-s", "watch", "-x", width, "-y", height, line)
        assert result.returncode == 0, result.stderr

    def screen(self) -> str:
        text = self._tmux("capture-pane", "-p", "-t", "watch").stdout
        self.screens.append(text)
        return text

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "watch", *keys)

    def kill(self) -> None:
        self._tmux("kill-server")


@pytest.fixture
def tmux(cluster_env: dict[str, str]) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("CI=true: tmux is not installed (e2e/cluster/prereqs.sh installs it)")
        pytest.skip("tmux is not installed (the prerequisites install it)")
    env = {**cluster_env, "TERM": "xterm-256color"}
    session = Tmux(env)
    try:
        yield session
    finally:
        session.kill()


def shows_step(screen: str, index: int) -> bool:
    return re.search(rf"Step:\s+{index}/{len(STEPS)}\b", screen) is not None


def paused_at(cluster: Cluster, name: str, step: int) -> dict[str, Any]:
    return cluster.wait_status(name, lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == step,
                               timeout=90, message=f"Paused at step {step}")


def promote(cluster: Cluster, name: str) -> None:
    cluster.patch_rollout(name, {"status": {"pauseConditions": None}}, status=True)


def plugin_status(env: dict[str, str], namespace: str, name: str, timeout: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PLUGIN, "status", name, "-n", namespace, "--timeout", timeout], env=env,
                          capture_output=True, text=True, check=False, timeout=120)


def test_get_watch_shows_every_step_and_ctrl_c_exits_cleanly(
    cluster: Cluster, controller: Controller, tmux: Tmux, cluster_env: dict[str, str], namespace: str,
    tmp_path: Path,
) -> None:
    # Given a healthy basic canary with two manual pauses
    cluster.create(rollout("watched", traffic=None, steps=STEPS))
    cluster.wait_phase("watched", "Healthy", timeout=90)

    # And the plugin watching it in a terminal, and `list rollouts --watch` printing to a pipe
    tmux.start([PLUGIN, "get", "rollout", "watched", "-n", namespace, "--watch"])
    wait_until(lambda: "Healthy" in tmux.screen(), timeout=30, message="the plugin to draw the Healthy rollout")
    listing = tmp_path / "list-watch.txt"
    with listing.open("w") as sink:
        lister = subprocess.Popen([PLUGIN, "list", "rollouts", "-n", namespace, "--watch"], env=cluster_env,
                                  stdout=sink, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: "watched" in listing.read_text(), timeout=30, message="list --watch to print the table")

    # When v2 is rolled out and promoted at each pause
    cluster.set_image("watched", "registry.local/model:v2")
    seen = []
    for pause_index in (1, 3):
        paused_at(cluster, "watched", pause_index)
        wait_until(lambda i=pause_index: shows_step(tmux.screen(), i), timeout=20,  # type: ignore[misc]
                   message=f"the screen to show Step: {pause_index}/{len(STEPS)}")
        seen.append(pause_index)
        if pause_index == 1:
            # Then `status` gives up with exit 2 while the rollout waits at a pause
            waiting = plugin_status(cluster_env, namespace, "watched", "2s")
            assert waiting.returncode == 2, waiting.stdout + waiting.stderr
            assert "Paused - CanaryPauseStep" in waiting.stdout
        promote(cluster, "watched")

    # Then the rollout completes, `status` exits 0, and the screen has followed it
    done = plugin_status(cluster_env, namespace, "watched", "90s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "Healthy"
    wait_until(lambda: shows_step(tmux.screen(), len(STEPS)) and "Healthy" in tmux.screens[-1], timeout=20,
               message="the screen to show the finished rollout")
    every_screen = "\n".join(tmux.screens)
    shown = {i for i in range(len(STEPS) + 1) if shows_step(every_screen, i)}
    # Each pause and the end were on screen; the setWeight steps pass too fast to be sure of a capture.
    assert {*seen, len(STEPS)} <= shown, shown
    assert "SetWeight:" in every_screen and "registry.local/model:v2 (stable)" in tmux.screens[-1]

    # And `list rollouts --watch` printed the table, then the rollout's row again as it changed,
    # its pauses and its end included, and Ctrl-C (SIGINT) ends it with exit 0
    wait_until(lambda: re.search(r"^watched\s+Canary\s+Healthy\s+4/4\b", listing.read_text(), re.M),
               timeout=20, message="list --watch to print the finished rollout")
    lister.send_signal(signal.SIGINT)
    _, lister_err = lister.communicate(timeout=15)
    rows = [line.split() for line in listing.read_text().splitlines()]
    assert rows[0][:4] == ["NAME", "STRATEGY", "STATUS", "STEP"] and rows.count(rows[0]) == 1, rows
    changes = [(row[2], row[3]) for row in rows[1:]]
    assert changes[0] == ("Healthy", "4/4") and changes[-1] == ("Healthy", "4/4"), changes
    assert {("Paused", "1/4"), ("Paused", "3/4")} <= set(changes), changes
    assert all(a != b for a, b in zip(rows[1:], rows[2:], strict=False)), rows  # a row only when it changed
    assert lister.returncode == 0 and "Traceback" not in lister_err, lister_err

    # When Ctrl-C is pressed, Then the plugin exits 0 without a traceback
    tmux.send("C-c")
    final = wait_until(lambda: EXIT_MARK in tmux.screen() and tmux.screens[-1], timeout=15,
                       message="the plugin to exit after Ctrl-C")
    assert f"{EXIT_MARK}0" in final
    assert "Traceback" not in final and "KeyboardInterrupt" not in final
