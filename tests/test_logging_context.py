"""common/logging.py ``bind_object``: every line of a reconcile names its object, as valid JSON.

Installs the real handler (``configure``) on a string stream, binds an object as a
reconcile entry point does, and reads back what our loggers, a foreign logger and a
worker thread given the task's context wrote.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from common.logging import (
    bind_object,
    configure,
    get_logger,
    unbind_object,
)
from common.redaction import ACTIVE_SECRETS
from tests.logging_support import captured_logging

SECRET = "analysis-token-9f8e7d"
OWNER = ("ml-serving", "canary-run")
ROLLOUT = {"kind": "Rollout", "namespace": "ml-serving", "name": "web", "revision": "6d4f8b", "step": 2}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    with captured_logging(OWNER) as captured:
        yield captured


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _object(line: dict[str, Any]) -> dict[str, Any]:
    return {k: line[k] for k in ("kind", "namespace", "name", "revision", "step") if k in line}


def test_every_line_of_a_bound_reconcile_names_the_object(stream: io.StringIO) -> None:
    configure(log_format="json", stream=stream)
    bind_object(**ROLLOUT)  # type: ignore[arg-type]
    get_logger("tidegate.rollouts").info("step completed")
    logging.getLogger("kubernetes.client.foreign").warning("a library line")

    def in_thread() -> None:
        get_logger("tidegate.rollouts.apply").info("replica set scaled", replicas=3)

    worker = threading.Thread(target=contextvars.copy_context().run, args=(in_thread,))
    worker.start()
    worker.join()
    lines = _json_lines(stream)
    assert [line["event"] for line in lines] == ["step completed", "a library line", "replica set scaled"]
    assert all(_object(line) == ROLLOUT for line in lines), lines


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({"kind": "Application", "namespace": "argocd", "name": "guestbook", "revision": "a" * 40},
      {"kind": "Application", "namespace": "argocd", "name": "guestbook", "revision": "a" * 40}),
     ({"kind": "AnalysisRun", "namespace": "ml", "name": "run-1"},
      {"kind": "AnalysisRun", "namespace": "ml", "name": "run-1"})],
    ids=["application-with-git-revision", "run-without-revision"],
)
def test_binding_again_replaces_the_previous_object(stream: io.StringIO, fields: dict[str, Any],
                                                    expected: dict[str, Any]) -> None:
    configure(log_format="json", stream=stream)
    bind_object(**ROLLOUT)  # type: ignore[arg-type]
    bind_object(**fields)
    get_logger("tidegate").info("next key")
    [line] = _json_lines(stream)
    assert _object(line) == expected


def test_unbound_lines_carry_no_object_and_a_call_site_field_wins(stream: io.StringIO) -> None:
    configure(log_format="json", stream=stream)
    bind_object(**ROLLOUT)  # type: ignore[arg-type]
    get_logger("tidegate").warning("about another", name="other")
    unbind_object()
    get_logger("tidegate").info("controller started")
    first, second = _json_lines(stream)
    assert first["name"] == "other" and first["kind"] == "Rollout"
    assert _object(second) == {}


def test_text_format_shows_the_bound_object(stream: io.StringIO) -> None:
    configure(log_format="text", stream=stream)
    bind_object(**ROLLOUT)  # type: ignore[arg-type]
    get_logger("tidegate.rollouts").info("step completed")
    text = stream.getvalue()
    assert "[ml-serving/web] step completed" in text
    assert "kind=Rollout" in text and "revision=6d4f8b" in text and "step=2" in text


def test_a_secret_in_a_bound_reconciles_line_is_redacted(stream: io.StringIO) -> None:
    configure(log_format="json", stream=stream)
    ACTIVE_SECRETS.register(OWNER, [SECRET])
    bind_object(kind="AnalysisRun", namespace=OWNER[0], name=OWNER[1])
    get_logger("tidegate.analysis").warning("measurement failed", error=f"401 for token {SECRET}")
    logging.getLogger("urllib3.foreign").error("GET /q?token=%s failed", SECRET)
    assert SECRET not in stream.getvalue()
    assert all(line["kind"] == "AnalysisRun" for line in _json_lines(stream))
