"""common/logging.py: one format for our lines and everyone else's, JSON or text, no secrets.

Each test installs the real handler (``configure``) on a string stream and reads
back what it wrote.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from common.logging import (
    KOPF_OBJECT_LOGGER,
    REQUEST_LOGGERS,
    configure,
    get_logger,
)
from common.redaction import ACTIVE_SECRETS
from tests.logging_support import captured_logging

SECRET = "s3cr3t-t0ken/with+chars"
OWNER = ("ml-serving", "run-with-secret")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    with captured_logging(OWNER) as captured:
        yield captured


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_parses_and_carries_the_objects_namespace_and_name(stream: io.StringIO) -> None:
    configure(log_format="json", stream=stream)
    get_logger("tidegate.rollouts").warning("rollout write rejected, retrying",
                                            namespace="ml-serving", name="web", delay=5.0)
    [line] = _json_lines(stream)
    assert line["event"] == "rollout write rejected, retrying"
    assert (line["namespace"], line["name"], line["delay"]) == ("ml-serving", "web", 5.0)
    assert (line["level"], line["logger"]) == ("warning", "tidegate.rollouts")
    assert line["timestamp"].endswith("Z")


def test_foreign_lines_come_out_in_the_same_json_format(stream: io.StringIO) -> None:
    configure(log_format="json", stream=stream)
    logging.getLogger("some.library").warning("retrying %s in %ds", "GET", 3)
    logging.getLogger(KOPF_OBJECT_LOGGER).warning(
        "Handler failed", extra={"k8s_ref": {"namespace": "ml-serving", "name": "web"}})
    library, kopf = _json_lines(stream)
    assert library["event"] == "retrying GET in 3s"
    assert (library["level"], library["logger"]) == ("warning", "some.library")
    assert "timestamp" in library
    assert (kopf["namespace"], kopf["name"], kopf["event"]) == ("ml-serving", "web", "Handler failed")


def test_an_exception_is_one_json_line_with_its_traceback(stream: io.StringIO) -> None:
    configure(log_format="json", stream=stream)
    try:
        raise ValueError("boom")
    except ValueError as exc:
        get_logger("tidegate.analysis").error("reconcile failed", namespace="ns", name="r",
                                              exc_info=exc)
    [line] = _json_lines(stream)
    assert "Traceback" in line["exception"] and "ValueError: boom" in line["exception"]


def test_text_names_the_object_like_kopf_and_keeps_the_level_in_capitals(stream: io.StringIO) -> None:
    configure(log_format="text", stream=stream, verbose=True)
    get_logger("tidegate.rollouts").debug("rollout started", namespace="ml-serving", name="web",
                                          workers=3, note="two words")
    [line] = stream.getvalue().splitlines()
    assert line.endswith(" DEBUG tidegate.rollouts: [ml-serving/web] rollout started "
                         "workers=3 note='two words'")


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_registered_secret_appears_in_no_line(stream: io.StringIO, log_format: str) -> None:
    configure(log_format=log_format, stream=stream)
    ACTIVE_SECRETS.register(OWNER, [SECRET])
    log = get_logger("tidegate.analysis")
    log.warning("GET %s failed", f"/api?token={SECRET}", namespace=OWNER[0], name=OWNER[1])
    log.warning("provider failed", namespace=OWNER[0], name=OWNER[1], error=f"token={SECRET}")
    logging.getLogger("urllib3.connectionpool").warning("GET /api?token=%s", SECRET)
    try:
        raise ConnectionError(f"Max retries exceeded with url: /api?token={SECRET}")
    except ConnectionError:
        log.exception("reconcile failed", namespace=OWNER[0], name=OWNER[1])
        logging.getLogger("kubernetes").exception("library failed")
    text = stream.getvalue()
    assert SECRET not in text and "s3cr3t" not in text
    assert text.count("*****") >= 5
    if log_format == "json":
        assert len(_json_lines(stream)) == 5


def test_request_loggers_stay_quiet_and_kopf_objects_speak_only_when_verbose(
        stream: io.StringIO) -> None:
    configure(stream=stream, verbose=True)
    assert all(logging.getLogger(name).level == logging.WARNING for name in REQUEST_LOGGERS)
    assert logging.getLogger(KOPF_OBJECT_LOGGER).getEffectiveLevel() == logging.DEBUG
    configure(stream=stream)
    assert logging.getLogger(KOPF_OBJECT_LOGGER).getEffectiveLevel() == logging.WARNING
    assert logging.getLogger().level == logging.INFO


def test_configuring_again_replaces_the_handler(stream: io.StringIO) -> None:
    first = configure(stream=stream)
    second = configure(log_format="json", stream=stream)
    root = logging.getLogger()
    assert second in root.handlers and first not in root.handlers


def test_before_configure_a_line_still_reads_as_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        get_logger("tidegate.unconfigured").info("deleted", namespace="ns", name="r", after=3)
    [record] = caplog.records
    assert record.getMessage() == "[ns/r] deleted after=3"


def test_an_unknown_format_is_refused(stream: io.StringIO) -> None:
    with pytest.raises(ValueError, match="choose one of"):
        configure(log_format="yaml", stream=stream)
