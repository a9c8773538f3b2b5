"""Shared by the logging tests (test_logging.py, test_logging_context.py): a clean logging state.

``captured_logging(owner)`` yields a StringIO for ``common.logging.configure(stream=...)`` and
puts back, afterwards, the root handlers and levels, the request loggers' levels, the
redaction registry's secrets of ``owner``, structlog's context and defaults.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from common.logging import KOPF_OBJECT_LOGGER, REQUEST_LOGGERS
from common.redaction import ACTIVE_SECRETS


@contextmanager
def captured_logging(owner: tuple[str, str]) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_levels = {name: logging.getLogger(name).level for name in (*REQUEST_LOGGERS, KOPF_OBJECT_LOGGER)}
    try:
        yield io.StringIO()
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        ACTIVE_SECRETS.forget(owner)
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
