"""Issue 7, defect 5: HTTP client libraries never log request lines, even with --verbose."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from cli.controller import (
    REQUEST_LOGGERS,
    quiet_request_loggers,
)


@pytest.fixture
def debug_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in ("", *REQUEST_LOGGERS)}
    root.setLevel(logging.DEBUG)
    yield root
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_urllib3_request_line_with_secret_is_not_emitted_under_verbose(
    debug_root: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_request_loggers()
    secret_url = "/api?token=p%40ss%2Fw%2Brd"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("urllib3.connectionpool").debug('"GET %s HTTP/1.1" 200 2', secret_url)
        logging.getLogger("kubernetes.client.rest").debug("response body: %s", secret_url)
        logging.getLogger("tidegate.own").debug("our own debug line")
    text = caplog.text
    assert "p%40ss" not in text
    assert "our own debug line" in text
