"""One logging setup for every controller: structlog, text for a terminal, JSON for production.

``configure`` is called once by the composition root (cli/controller.py) before
kopf starts; every module logs through ``get_logger(name)`` with the object it
is about as fields::

    log = get_logger("tidegate.rollouts")
    log.warning("write rejected, retrying", namespace=ns, name=name, delay=5.0)

Everything goes through the standard library's logging, so one handler on the
root logger renders it all, with one ``structlog.stdlib.ProcessorFormatter``:
our structlog events, and the ``logging.getLogger`` lines of kopf, urllib3 or the
kubernetes client ("foreign" records) come out in the same format. kopf's
per-object lines carry the object's namespace and name as fields too.

* ``text``: ``2026-01-01T10:00:00.000000Z WARNING tidegate.rollouts: [ns/name]
  write rejected, retrying delay=5.0`` (kopf's own text log writes objects as
  ``[ns/name]`` as well);
* ``json``: one object per line, ``{"event": ..., "namespace": ..., "name": ...,
  "level": ..., "logger": ..., "timestamp": ...}``.

Every line about an object names it: a reconcile entry point (rollouts/handlers.py,
analysis/handlers.py, gitops/handlers.py, notifications) calls ``bind_object`` with
the object's ``kind``, ``namespace``, ``name``, ``revision`` (the pod-template hash
of a Rollout or AnalysisRun, the Git revision of an Application) and, for a
Rollout, ``step``; structlog's contextvars add them to every line logged in that
task (and in a thread the task hands its context to), ours and foreign alike.
A field given at the call site wins over the bound one.

The redacting filter of common/redaction.py sits on the handler, so a secret
of a run in progress never reaches the output in either format, wherever the
line comes from. The HTTP client libraries never log request lines, even with
``--verbose`` (``quiet_request_loggers``): a URL can carry a secret.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import IO, Any

import structlog
from structlog.stdlib import BoundLogger, ProcessorFormatter
from structlog.typing import EventDict, Processor, WrappedLogger

from common.redaction import install_log_filter

TEXT, JSON = "text", "json"
LOG_FORMATS = (TEXT, JSON)
# Third-party loggers that print whole request lines (URL with its query, headers)
# at DEBUG: a web metric's URL can carry a secret, so even --verbose keeps them at
# WARNING (issue 7, defect 5).
REQUEST_LOGGERS = ("urllib3", "urllib3.connectionpool", "requests", "kubernetes.client.rest")
# kopf logs every handler success at INFO; our own loggers say what matters.
KOPF_OBJECT_LOGGER = "kopf.objects"
# Fields the text format places itself; every other field follows as key=value.
_PLACED = ("timestamp", "level", "logger", "event", "namespace", "name", "exception")
OBJECT_FIELDS = ("kind", "namespace", "name", "revision", "step")


class _Event(dict[str, Any]):
    """A structlog event on its way through the standard library's logging.

    ProcessorFormatter reads it as the dict it is; any other handler (pytest's
    caplog, one a library added) calls ``str`` on it and gets a readable line.
    """

    def __str__(self) -> str:
        return _line(dict(self), head=False)


def _wrap_for_formatter(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> tuple[tuple[_Event], dict[str, dict[str, Any]]]:
    """Like ``ProcessorFormatter.wrap_for_formatter``, with an event that reads as text."""
    return (_Event(event_dict),), {"extra": {"_logger": logger, "_name": method_name}}


def _kopf_object(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """kopf's per-object lines (``kopf.objects``) name their object in ``k8s_ref``: as fields."""
    record = event_dict.get("_record")
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, dict):
        for field in ("kind", "namespace", "name"):
            if ref.get(field) and field not in event_dict:
                event_dict[field] = ref[field]
    return event_dict


def _redacted_traceback(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """A foreign record whose traceback the redacting filter rewrote keeps it as text only."""
    record = event_dict.get("_record")
    text = getattr(record, "exc_text", None)
    if text and "exc_info" not in event_dict and "exception" not in event_dict:
        event_dict["exception"] = text
    return event_dict


_STAMP: list[Processor] = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
# Our own events, before they are handed to the standard library.
_PROCESSORS: list[Processor] = [
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    *_STAMP,
    structlog.stdlib.PositionalArgumentsFormatter(),
    structlog.processors.StackInfoRenderer(),
    # The traceback becomes text here, so the redacting filter sees it.
    structlog.processors.format_exc_info,
    _wrap_for_formatter,
]
# Foreign records (logging.getLogger lines), once the handler takes them.
_FOREIGN: list[Processor] = [structlog.contextvars.merge_contextvars, *_STAMP, _kopf_object,
                             _redacted_traceback]


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if text and not any(c in text for c in ' ="\n') else repr(text)


def _line(event: MutableMapping[str, Any], *, head: bool = True) -> str:
    namespace, name = event.get("namespace"), event.get("name")
    ref = f"[{namespace}/{name}] " if namespace and name else f"[{name}] " if name else ""
    rest = {k: v for k, v in event.items() if k not in _PLACED and not k.startswith("_")}
    if namespace and not name:
        rest = {"namespace": namespace, **rest}
    text = f"{ref}{event.get('event', '')}"
    if rest:
        text += " " + " ".join(f"{key}={_value(value)}" for key, value in rest.items())
    if head:
        level = str(event.get("level", "")).upper()
        text = f"{event.get('timestamp', '')} {level} {event.get('logger', '')}: {text}"
    if event.get("exception"):
        text += "\n" + str(event["exception"])
    return text


def render_text(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
    """``<time> <LEVEL> <logger>: [namespace/name] <event> key=value ...`` and the traceback."""
    return _line(event_dict)


def formatter(log_format: str = TEXT) -> ProcessorFormatter:
    """The one formatter: JSON lines or text, for our events and foreign records alike."""
    renderer: Processor = (structlog.processors.JSONRenderer() if log_format == JSON
                           else render_text)
    return ProcessorFormatter(
        foreign_pre_chain=_FOREIGN,
        processors=[ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )


def quiet_request_loggers() -> None:
    """Keep the HTTP client libraries from logging request lines, whatever the root level."""
    for name in REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler ``configure`` installs (and replaces when called again)."""


def configure(*, log_format: str = TEXT, verbose: bool = False,
              stream: IO[str] | None = None) -> logging.Handler:
    """Route every log line of the process through one handler on ``stream`` (stderr).

    Returns the handler. Calling it again replaces the handler it installed.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: choose one of {LOG_FORMATS}")
    structlog.configure(
        processors=_PROCESSORS,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=BoundLogger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(log_format))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger(KOPF_OBJECT_LOGGER).setLevel(logging.NOTSET if verbose else logging.WARNING)
    quiet_request_loggers()
    # Any line (a library's exception, a traceback) may quote a run's secret.
    install_log_filter(root)
    return handler


def bind_object(*, kind: str, namespace: str, name: str, revision: str = "",
                step: int | None = None) -> None:
    """Name the object this task (a reconcile) is about on every line it logs from now on.

    Replaces whatever the task bound before (a worker takes one key after another);
    ``revision`` and ``step`` are left out when unknown.
    """
    structlog.contextvars.clear_contextvars()
    fields: dict[str, Any] = {"kind": kind, "namespace": namespace, "name": name}
    if revision:
        fields["revision"] = revision
    if step is not None:
        fields["step"] = step
    structlog.contextvars.bind_contextvars(**fields)


def unbind_object() -> None:
    """Forget the object ``bind_object`` named (the task goes back to general work)."""
    structlog.contextvars.unbind_contextvars(*OBJECT_FIELDS)


def get_logger(name: str) -> BoundLogger:
    """A structlog logger that writes through ``logging.getLogger(name)``.

    It does not depend on ``configure`` having run: before it (unit tests), its
    lines reach whatever handlers the standard library has, as readable text.
    """
    return BoundLogger(logging.getLogger(name), processors=_PROCESSORS, context={})
