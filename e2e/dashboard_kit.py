"""Building blocks for the dashboard's browser tests (e2e/test_dashboard_browser.py).

``Dashboard`` runs the real ``tidegate dashboard`` process (``python -m cli.main
dashboard``) from this worktree on a free loopback port and talks to its HTTP API
with urllib; ``chromium_page`` opens Debian's headless Chromium through
Playwright's sync API; ``screenshot`` saves the README's pictures when asked to.

Screenshots: set ``TIDEGATE_DASHBOARD_SCREENSHOTS`` to a directory (``docs/img`` for
the committed ones) and the browser tests write ``dashboard-rollouts.png``,
``dashboard-rollout.png`` and ``dashboard-application.png`` there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from e2e.conftest import REPO, require, wait_until

CHROMIUM = Path(os.environ.get("TIDEGATE_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS_ENV = "TIDEGATE_DASHBOARD_SCREENSHOTS"
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1280, 800  # the size the design is checked at
HTTP_TIMEOUT = 10.0
MAX_BODY = 4 * 1024 * 1024  # a dashboard answer bigger than this is a bug, not data


def free_port() -> int:
    """A loopback port nobody listens on now (the dashboard binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Dashboard:
    """A real ``tidegate dashboard`` for one namespace (Rollouts and Applications); log in a file."""

    def __init__(self, env: dict[str, str], namespace: str, log_path: Path, *,
                 read_only: bool = False, extra_args: Sequence[str] = ()) -> None:
        self.env = env
        self.namespace = namespace
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["--port", str(self.port), "-n", namespace, "--app-namespace", namespace, *extra_args]
        if read_only:
            args.append("--read-only")
        log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "dashboard", *args],
            env={**env, "PYTHONUNBUFFERED": "1"}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_until(self._answers, timeout=60, interval=0.3,
                   message=f"the dashboard to answer on {self.url}")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the dashboard exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            return self.get("/api/config")[0] == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(self, method: str, path: str, *, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON body) of one request; 4xx/5xx are returned, not raised."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:  # noqa: S310 - our loopback server
                return int(resp.status), json.loads(resp.read(MAX_BODY) or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read(MAX_BODY)
            try:
                return int(err.code), json.loads(raw)
            except ValueError:
                return int(err.code), raw.decode(errors="replace")

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def config(self) -> dict[str, Any]:
        status, body = self.get("/api/config")
        assert status == 200, body
        return dict(body)

    def post(self, path: str, body: Any, *, token: str) -> tuple[int, Any]:
        """A POST as the page sends it: JSON, the CSRF header, the server's own Origin."""
        return self.request("POST", path, body=body, headers={
            "Content-Type": "application/json", "X-Tidegate-CSRF": token, "Origin": self.url})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextmanager
def running_dashboard(env: dict[str, str], namespace: str, log_path: Path, *,
                      read_only: bool = False) -> Iterator[Dashboard]:
    board = Dashboard(env, namespace, log_path, read_only=read_only)
    try:
        yield board
    finally:
        board.stop()


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A Playwright page in Debian's headless Chromium at 1280x800 (CI=true: missing is a failure)."""
    require(CHROMIUM.exists(), f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "Playwright is not installed (pip install playwright; no browser download needed)")
        raise
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
    # An uncaught exception in the page's own code is a bug even when the assertions passed.
    assert not errors, f"JavaScript errors in the page: {errors}"


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path | None:
    """Save ``dashboard-<name>.png`` into $TIDEGATE_DASHBOARD_SCREENSHOTS (if set); its path.

    ``full_page`` takes the whole scrolled page; otherwise the 1280-wide viewport, cut just
    below the content when the page is shorter than the window (no empty band in the docs).
    """
    folder = os.environ.get(SCREENSHOTS_ENV)
    if not folder:
        return None
    target = Path(folder)
    if not target.is_absolute():
        target = REPO / target
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"dashboard-{name}.png"
    # The picture shows the page, not the toast of the action the test just took.
    page.evaluate("document.getElementById('toast').hidden = true")
    if full_page:
        page.screenshot(path=str(path), full_page=True)
    else:
        bottom = float(page.evaluate("document.getElementById('main').getBoundingClientRect().bottom"))
        height = min(VIEWPORT_HEIGHT, max(200, int(bottom) + 8))
        page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": VIEWPORT_WIDTH, "height": height})
    return path
