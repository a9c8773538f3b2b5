"""The web metric provider: one HTTP request per measurement, JSON in, value out.

Called through ``analysis.providers.registry`` by the AnalysisRun controller for
metrics with ``provider.web`` (Argo's ``metricproviders/webmetric``). Fields:
``url``, ``method`` (GET, POST or PUT; default GET), ``headers[{key,value}]``,
``body`` (a string) or ``jsonBody`` (any JSON value), ``timeoutSeconds``
(default 10), ``insecure`` and ``jsonPath``. The result is the JSON value the
path selects (the whole body without a path), handed to the conditions as is.

``jsonPath`` is resolved by the small resolver below, not by a general JSONPath
engine: it accepts the forms Argo users write (``{$.data.ok}``, ``$.a.b[0]``,
``{.items[-1]}``, ``$['key with dots']``) and rejects anything else (filters,
wildcards, recursive descent) with a message, so nothing is ever evaluated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from analysis.providers.base import MeasurementContext, SynchronousProvider
from analysis.providers.deadline import (
    BodyTooLarge,
    bounded_timeout,
    deadline_request,
    deadline_session,
    read_body,
    total_deadline,
)
from analysis.run import Observation

PROVIDER_KIND = "WebMetric"

DEFAULT_TIMEOUT_SECONDS = 10.0
ALLOWED_METHODS = ("GET", "POST", "PUT")
# A metric endpoint answers with a small JSON document; a runaway body must not
# exhaust the controller's memory.
MAX_BODY_BYTES = 10 * 1024 * 1024

MSG_NO_CONFIG = 'metric "{metric}": provider.web is missing or not an object'
MSG_BAD_URL = 'metric "{metric}": provider.web.url "{url}" is not an http(s) URL with a host'
MSG_BAD_METHOD = 'metric "{metric}": provider.web.method "{method}" is not one of GET, POST, PUT'
MSG_BAD_HEADERS = (
    'metric "{metric}": provider.web.headers must be a list of {{key, value}} objects '
    "with a non-empty key"
)
MSG_BODY_AND_JSON_BODY = (
    'metric "{metric}": provider.web sets both body and jsonBody; use one of them'
)
MSG_BODY_WITH_GET = (
    'metric "{metric}": provider.web has a body but method GET; set method: POST or PUT'
)
MSG_BAD_TIMEOUT = (
    'metric "{metric}": provider.web.timeoutSeconds must be a number of seconds, got "{value}"'
)
MSG_BAD_JSON_PATH = 'metric "{metric}": provider.web.jsonPath "{path}" is not supported: {detail}'
MSG_NON_2XX = "received non 2xx response code: {status}"
MSG_NOT_JSON = "could not parse the response body as JSON: {error}"
MSG_PATH_MISSING = 'jsonPath "{path}" found nothing in the response: {detail}'
MSG_REQUEST_FAILED = "request to {url} failed: {error}"
MSG_TIMED_OUT = "{url} did not answer within {timeout:g}s"
MSG_UNEXPECTED = "web measurement failed unexpectedly: {error}"


class _ConfigError(Exception):
    """A metric spec Tidegate cannot run; the message is already user-facing."""


class JsonPathError(ValueError):
    """A jsonPath that cannot be parsed, or that does not match a document."""


# -- jsonPath ------------------------------------------------------------------

# One step of a path: a key of an object, or an index into a list.
Segment = str | int

_KEY = re.compile(r"\.([^.\[\]]+)")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")
_QUOTED = re.compile(r"""\[\s*(?P<q>['"])(?P<key>.*?)(?P=q)\s*\]""")


@dataclass(frozen=True)
class JsonPath:
    """A parsed jsonPath: the steps from the document root to one value."""

    text: str
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        """Parse ``{$.a.b[0]}``, ``$.a.b[0]``, ``{.a}``, ``$['k']`` or ``$`` / empty."""
        body = text.strip()
        if body.startswith("{") and body.endswith("}"):
            body = body[1:-1].strip()
        if body.startswith("$"):
            body = body[1:]
        segments: list[Segment] = []
        pos = 0
        while pos < len(body):
            if body.startswith("..", pos):
                raise JsonPathError("recursive descent (..) is not supported")
            for pattern in (_KEY, _INDEX, _QUOTED):
                match = pattern.match(body, pos)
                if match is None:
                    continue
                if pattern is _INDEX:
                    segments.append(int(match.group(1)))
                elif pattern is _QUOTED:
                    segments.append(match.group("key"))
                else:
                    segments.append(match.group(1).strip())
                pos = match.end()
                break
            else:
                raise JsonPathError(
                    f"unexpected {body[pos:]!r}; use forms like $.a.b[0] or $['key']"
                )
        for segment in segments:
            if segment in ("*", "") or (isinstance(segment, str) and segment.startswith("?(")):
                raise JsonPathError("wildcards and filters are not supported")
        return cls(text=text, segments=tuple(segments))

    def resolve(self, document: Any) -> Any:
        """The value at this path; raises JsonPathError naming the step that failed."""
        current = document
        walked = "$"
        for segment in self.segments:
            if isinstance(segment, int):
                if not isinstance(current, list):
                    raise JsonPathError(f"{walked} is not a list, cannot take [{segment}]")
                if not -len(current) <= segment < len(current):
                    raise JsonPathError(
                        f"index [{segment}] is out of range: {walked} has {len(current)} items"
                    )
                current = current[segment]
                walked += f"[{segment}]"
            else:
                if not isinstance(current, Mapping):
                    raise JsonPathError(f'{walked} is not an object, cannot take key "{segment}"')
                if segment not in current:
                    raise JsonPathError(f'{walked} has no key "{segment}"')
                current = current[segment]
                walked += f".{segment}"
        return current


# -- provider ------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout: float
    insecure: bool
    path: JsonPath


class WebProvider(SynchronousProvider):
    """Runs ``provider.web`` metrics. Stateless, so safe to share between threads."""

    kind = PROVIDER_KIND

    def run(self, ctx: MeasurementContext) -> Observation:
        try:
            spec = _parse_spec(ctx.metric)
        except _ConfigError as exc:
            return Observation.error(ctx.redact(str(exc)))
        except Exception as exc:  # never raise into the reconcile
            return Observation.error(ctx.redact(MSG_UNEXPECTED.format(error=exc)))
        try:
            return _measure(spec)
        except (_MeasureError, BodyTooLarge) as exc:
            return Observation.error(ctx.redact(str(exc)))
        except (requests.exceptions.Timeout, TimeoutError):
            return Observation.error(
                ctx.redact(
                    MSG_TIMED_OUT.format(url=_url_for_message(spec.url), timeout=spec.timeout)
                )
            )
        except requests.exceptions.RequestException as exc:
            return Observation.error(
                ctx.redact(MSG_REQUEST_FAILED.format(url=_url_for_message(spec.url), error=exc))
            )
        except Exception as exc:
            return Observation.error(ctx.redact(MSG_UNEXPECTED.format(error=exc)))


class _MeasureError(Exception):
    """The endpoint answered with something unusable; the message is user-facing."""


def _measure(spec: _Spec) -> Observation:
    # timeoutSeconds is one deadline for the whole measurement (connect, send,
    # headers and the whole body), not per socket read: a dripping endpoint
    # must not hold it (analysis/providers/deadline.py).
    with total_deadline(seconds=spec.timeout) as deadline, deadline_session() as session:
        with deadline_request(
            session,
            deadline=deadline,
            method=spec.method,
            url=spec.url,
            headers=dict(spec.headers),
            data=spec.body,
            verify=not spec.insecure,
            allow_redirects=True,
        ) as response:
            if not 200 <= response.status_code < 300:
                raise _MeasureError(MSG_NON_2XX.format(status=response.status_code))
            raw = read_body(response, deadline=deadline, limit=MAX_BODY_BYTES)
    return _decode(spec, raw)


def _decode(spec: _Spec, raw: bytes) -> Observation:
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise _MeasureError(MSG_NOT_JSON.format(error=exc)) from None
    try:
        value = spec.path.resolve(document)
    except JsonPathError as exc:
        raise _MeasureError(MSG_PATH_MISSING.format(path=spec.path.text, detail=exc)) from None
    return Observation(value=value, display_value=display_json(value))


def display_json(value: Any) -> str:
    """How a web result is shown in status: strings bare, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _parse_spec(metric: Mapping[str, Any]) -> _Spec:
    name = str(metric.get("name", ""))
    provider = metric.get("provider")
    config = provider.get("web") if isinstance(provider, Mapping) else None
    if not isinstance(config, Mapping):
        raise _ConfigError(MSG_NO_CONFIG.format(metric=name))

    url = str(config.get("url") or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _ConfigError(MSG_BAD_URL.format(metric=name, url=_url_for_message(url)))

    method = str(config.get("method") or "GET").strip().upper()
    if method not in ALLOWED_METHODS:
        raise _ConfigError(MSG_BAD_METHOD.format(metric=name, method=method))

    headers = _parse_headers(name=name, raw=config.get("headers"))
    body: bytes | None = None
    has_body = config.get("body") not in (None, "")
    has_json_body = config.get("jsonBody") is not None
    if has_body and has_json_body:
        raise _ConfigError(MSG_BODY_AND_JSON_BODY.format(metric=name))
    if (has_body or has_json_body) and method == "GET":
        raise _ConfigError(MSG_BODY_WITH_GET.format(metric=name))
    if has_body:
        body = str(config["body"]).encode("utf-8")
    elif has_json_body:
        body = json.dumps(config["jsonBody"]).encode("utf-8")
        if not any(key.lower() == "content-type" for key, _ in headers):
            headers = (*headers, ("Content-Type", "application/json"))

    try:
        path = JsonPath.parse(str(config.get("jsonPath") or ""))
    except JsonPathError as exc:
        raise _ConfigError(
            MSG_BAD_JSON_PATH.format(metric=name, path=config.get("jsonPath"), detail=exc)
        ) from None

    return _Spec(
        url=url,
        method=method,
        headers=headers,
        body=body,
        timeout=_parse_timeout(name=name, raw=config.get("timeoutSeconds")),
        insecure=_as_bool(config.get("insecure")),
        path=path,
    )


def _parse_headers(*, name: str, raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _ConfigError(MSG_BAD_HEADERS.format(metric=name))
    headers: list[tuple[str, str]] = []
    for item in raw:
        if not isinstance(item, Mapping) or not str(item.get("key") or "").strip():
            raise _ConfigError(MSG_BAD_HEADERS.format(metric=name))
        headers.append((str(item["key"]).strip(), str(item.get("value") or "")))
    return tuple(headers)


def _parse_timeout(*, name: str, raw: Any) -> float:
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT_SECONDS
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise _ConfigError(MSG_BAD_TIMEOUT.format(metric=name, value=raw)) from None
    # Argo treats zero and negative values as "use the default". Longer than the
    # longest deadline would outlive the controller's wait for the measurement.
    return bounded_timeout(seconds) if seconds > 0 else DEFAULT_TIMEOUT_SECONDS


def _as_bool(raw: Any) -> bool:
    if isinstance(raw, str):
        return raw.strip().lower() == "true"
    return bool(raw)


def _url_for_message(url: str) -> str:
    """The URL without user:password or query string, which may carry tokens."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc, query="", fragment="").geturl() if host else url
