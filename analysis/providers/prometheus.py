"""The Prometheus metric provider: one PromQL query per measurement.

Called through ``analysis.providers.registry`` by the AnalysisRun controller when a
metric with ``provider.prometheus`` is due. It follows Argo Rollouts'
``metricproviders/prometheus`` closely: an instant query at the measurement's
``now`` (or a range query when ``rangeQuery`` is set), with the result shaped as
Argo users' conditions expect (``result`` is a float for a scalar, a list of
floats for a vector). Two deliberate differences, both from DESIGN.md §4: an
empty result is a measurement Error that says "no data" (Argo returns ``[]`` and
lets the condition fail obscurely), and every message goes through
``ctx.redact`` so secret arguments never reach status.

``prometheus_api_client.PrometheusConnect`` builds and keeps the session for
each Prometheus (headers, basic auth, TLS). The query itself is sent here, on
that session, because the library's ``custom_query`` only knows per-socket-read
timeouts and reads the whole body into memory: ``timeout`` is one total
deadline per measurement (connect, send, headers and body, retries included)
and the body is capped while it is read (analysis/providers/deadline.py). As
with ``custom_query``, only ``data.result`` is used, so the result type is
inferred from the shape (documented in ``_shape_result``).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from analysis.providers.base import MeasurementContext, SynchronousProvider
from analysis.providers.deadline import (
    BodyTooLarge,
    Deadline,
    DeadlineAdapter,
    bounded_timeout,
    deadline_request,
    read_body,
    total_deadline,
)
from analysis.run import Observation
from common.api import parse_duration
from common.redaction import redact

PROVIDER_KIND = "Prometheus"

# Metadata key Argo uses for the query after argument substitution.
RESOLVED_QUERY_KEY = "ResolvedPrometheusQuery"

ADDRESS_ENV_VARS = ("TIDEGATE_PROMETHEUS_ADDRESS", "ARGO_ROLLOUTS_PROMETHEUS_ADDRESS")
DEFAULT_TIMEOUT_SECONDS = 30.0

# Connection errors are retried this many times in total (first try included),
# always inside the metric's timeout.
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF_SECONDS = 0.2
_CACHE_SIZE = 32
_POOL_SIZE = 64
# Tens of thousands of samples fit; an answer past this is not a metric a
# condition can judge, and must not grow the controller's memory.
MAX_BODY_BYTES = 10 * 1024 * 1024
QUERY_PATH = "/api/v1/query"
RANGE_QUERY_PATH = "/api/v1/query_range"
# urllib3 must not retry on its own (its default in PrometheusConnect retries
# 5xx three times with backoff, outside our timeout); tenacity retries
# connection errors only, inside the timeout.
_NO_RETRY = Retry(total=0, raise_on_status=False)

MSG_NO_CONFIG = 'metric "{metric}": provider.prometheus is missing or not an object'
MSG_NO_QUERY = 'metric "{metric}": provider.prometheus.query is empty; set a PromQL query'
MSG_NO_ADDRESS = (
    'metric "{metric}": provider.prometheus.address is empty and neither '
    + " nor ".join(ADDRESS_ENV_VARS)
    + " is set"
)
MSG_BAD_ADDRESS = (
    'metric "{metric}": Prometheus address "{address}" is not a URL with an http(s) '
    "scheme and a host, e.g. http://prometheus.monitoring:9090"
)
MSG_BAD_TIMEOUT = (
    'metric "{metric}": provider.prometheus.timeout must be a non-negative number of '
    'seconds, got "{value}"'
)
MSG_BAD_HEADERS = (
    'metric "{metric}": provider.prometheus.headers must be a list of {{key, value}} '
    "objects with a non-empty key"
)
MSG_BASIC_AUTH_INCOMPLETE = (
    'metric "{metric}": provider.prometheus.authentication.basicAuth needs both '
    "username and password"
)
MSG_AUTH_UNSUPPORTED = (
    'metric "{metric}": provider.prometheus.authentication.{kind} is not supported by '
    "Tidegate; use basicAuth or headers"
)
MSG_BAD_RANGE = 'metric "{metric}": provider.prometheus.rangeQuery: {detail}'
MSG_EMPTY_VECTOR = (
    "query returned an empty vector (no data): no series matched; check the query's "
    "labels and that the target is being scraped"
)
MSG_EMPTY_MATRIX = "query returned an empty matrix (no data): no series matched in the range"
MSG_TYPE_UNSUPPORTED = "Prometheus metric type not supported"
MSG_QUERY_FAILED = "Prometheus query failed (HTTP {status}{error_type}): {error}"
MSG_HTTP_FAILED = "Prometheus answered HTTP {status}: {body}"
MSG_UNREACHABLE = "could not reach Prometheus at {address}: {error}"
MSG_TIMED_OUT = (
    "Prometheus at {address} did not answer within {timeout:g}s; make the query cheaper "
    "or raise provider.prometheus.timeout"
)
MSG_BAD_RESPONSE = "Prometheus at {address} sent a response Tidegate cannot read: {error}"
MSG_TOO_LARGE = (
    "Prometheus at {address} answered more than {limit} bytes; aggregate the query "
    "(sum, avg, topk) so it returns a few series"
)
MSG_UNEXPECTED = "Prometheus measurement failed unexpectedly: {error}"


class _ConfigError(Exception):
    """A metric spec Tidegate cannot run; the message is already user-facing."""


class _QueryError(Exception):
    """Prometheus answered, but not with a usable result; message is user-facing."""


class _HttpError(Exception):
    """Prometheus answered with a status other than 200; the body says why."""

    def __init__(self, *, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class _RangeSpec:
    start: datetime
    end: datetime
    step: str


@dataclass(frozen=True)
class _Spec:
    """The provider.prometheus block, validated."""

    address: str
    query: str
    timeout: float
    headers: tuple[tuple[str, str], ...]
    basic_auth: tuple[str, str] | None
    insecure: bool
    range: _RangeSpec | None


# A connection is keyed by everything PrometheusConnect is built from.
_ConnKey = tuple[str, tuple[tuple[str, str], ...], tuple[str, str] | None, bool]


class PrometheusProvider(SynchronousProvider):
    """Runs ``provider.prometheus`` metrics. Safe to share between threads."""

    kind = PROVIDER_KIND

    def __init__(
        self,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._attempts = max(1, attempts)
        self._backoff = backoff_seconds
        # None means "read os.environ at measurement time" (tests pass a dict).
        self._environ = environ
        self._conns: OrderedDict[_ConnKey, PrometheusConnect] = OrderedDict()
        self._lock = threading.Lock()

    # -- protocol -------------------------------------------------------------

    def run(self, ctx: MeasurementContext) -> Observation:
        def redact(text: str) -> str:
            return _redact(ctx=ctx, text=text, extra=())

        try:
            spec = self._parse_spec(ctx)
        except _ConfigError as exc:
            return Observation.error(redact(str(exc)))
        except Exception as exc:  # never raise into the reconcile
            return Observation.error(redact(MSG_UNEXPECTED.format(error=exc)))

        password = (spec.basic_auth[1],) if spec.basic_auth else ()

        def redact_all(text: str) -> str:
            return _redact(ctx=ctx, text=text, extra=password)

        metadata = {RESOLVED_QUERY_KEY: redact_all(spec.query)}
        try:
            raw = self._query(spec=spec, now=ctx.now)
            value, display = _shape_result(raw, ranged=spec.range is not None)
        except _QueryError as exc:
            return Observation.error(redact_all(str(exc)), **metadata)
        except Exception as exc:
            return Observation.error(redact_all(_describe_failure(exc, spec)), **metadata)
        return Observation(value=value, display_value=display, metadata=metadata)

    # -- spec -----------------------------------------------------------------

    def _parse_spec(self, ctx: MeasurementContext) -> _Spec:
        metric = str(ctx.metric.get("name", ""))
        provider = ctx.metric.get("provider")
        config = provider.get("prometheus") if isinstance(provider, Mapping) else None
        if not isinstance(config, Mapping):
            raise _ConfigError(MSG_NO_CONFIG.format(metric=metric))

        query = str(config.get("query") or "").strip()
        if not query:
            raise _ConfigError(MSG_NO_QUERY.format(metric=metric))

        environ = os.environ if self._environ is None else self._environ
        address = str(config.get("address") or "").strip()
        for var in ADDRESS_ENV_VARS:
            if address:
                break
            address = environ.get(var, "").strip()
        if not address:
            raise _ConfigError(MSG_NO_ADDRESS.format(metric=metric))
        parts = urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _ConfigError(MSG_BAD_ADDRESS.format(metric=metric, address=_safe_url(address)))

        return _Spec(
            address=address.rstrip("/"),
            query=query,
            timeout=_parse_timeout(metric=metric, raw=config.get("timeout")),
            headers=_parse_headers(metric=metric, raw=config.get("headers")),
            basic_auth=_parse_auth(metric=metric, raw=config.get("authentication")),
            insecure=_as_bool(config.get("insecure")),
            range=_parse_range(metric=metric, raw=config.get("rangeQuery"), now=ctx.now),
        )

    # -- I/O ------------------------------------------------------------------

    def _connection(self, spec: _Spec) -> PrometheusConnect:
        key: _ConnKey = (spec.address, spec.headers, spec.basic_auth, spec.insecure)
        with self._lock:
            conn = self._conns.get(key)
            if conn is not None:
                self._conns.move_to_end(key)
                return conn
            # Our own session, so its connection pool can be sized for many
            # measurements of one Prometheus running in parallel threads
            # (requests' default keeps 10 connections and drops the rest).
            session = requests.Session()
            session.verify = not spec.insecure
            conn = PrometheusConnect(
                url=spec.address,
                headers=dict(spec.headers) or None,
                disable_ssl=spec.insecure,
                retry=_NO_RETRY,
                auth=spec.basic_auth,
                session=session,
            )
            # Mounted after PrometheusConnect mounts its default adapter for the
            # same prefix, so ours (no urllib3 retries, larger pool, connections
            # that obey the measurement's total deadline) wins.
            session.mount(
                spec.address,
                DeadlineAdapter(
                    pool_connections=1, pool_maxsize=_POOL_SIZE, max_retries=_NO_RETRY
                ),
            )
            self._conns[key] = conn
            if len(self._conns) > _CACHE_SIZE:
                self._conns.popitem(last=False)
            return conn

    def _query(self, *, spec: _Spec, now: datetime) -> Any:
        conn = self._connection(spec)
        if spec.range is not None:
            path = RANGE_QUERY_PATH
            # The same parameters custom_query_range sends (whole seconds).
            params: dict[str, Any] = {
                "query": spec.query,
                "start": round(spec.range.start.timestamp()),
                "end": round(spec.range.end.timestamp()),
                "step": spec.range.step,
            }
        else:
            path, params = QUERY_PATH, {"query": spec.query, "time": now.timestamp()}
        retrying = Retrying(
            retry=retry_if_exception(_is_connection_failure),
            stop=stop_after_attempt(self._attempts) | stop_before_delay(spec.timeout),
            wait=wait_exponential(multiplier=self._backoff, max=2.0),
            reraise=True,
        )
        # One deadline for every try: retries never stretch a measurement past
        # the metric's timeout.
        with total_deadline(seconds=spec.timeout) as deadline:
            for attempt in retrying:
                with attempt:
                    return _fetch(conn=conn, path=path, params=params, deadline=deadline)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


def _fetch(
    *, conn: PrometheusConnect, path: str, params: Mapping[str, Any], deadline: Deadline
) -> Any:
    """One try: what ``custom_query`` does, streamed inside the deadline and capped."""
    # PrometheusConnect has no public accessor for the session it was given.
    session: requests.Session = conn._session
    with deadline_request(
        session,
        deadline=deadline,
        method="GET",
        url=f"{conn.url}{path}",
        params=dict(params),
        headers=conn.headers,
        auth=conn.auth,
    ) as response:
        body = read_body(response, deadline=deadline, limit=MAX_BODY_BYTES)
        status = response.status_code
    if status != 200:
        raise _HttpError(status=status, body=body)
    return json.loads(body)["data"]["result"]


# -- result shaping ------------------------------------------------------------


def _shape_result(raw: Any, *, ranged: bool) -> tuple[float | list[float], str]:
    """Turn ``data.result`` into Argo's ``result`` value and its display string.

    The API's ``resultType`` is not passed through by ``custom_query``, so the
    shape decides: a list of objects with ``value`` is a vector, with ``values``
    a matrix; ``[<time>, "<number>"]`` is a scalar. A ``string`` result has the
    scalar's shape but a non-numeric value, and is rejected as unsupported (a
    string result that happens to look like a number is read as a scalar).
    """
    if isinstance(raw, list) and all(isinstance(item, Mapping) for item in raw):
        if not raw:
            raise _QueryError(MSG_EMPTY_MATRIX if ranged else MSG_EMPTY_VECTOR)
        if all("value" in item for item in raw):
            values = [_sample_value(item["value"]) for item in raw]
            return values, _format_list(values)
        if all("values" in item for item in raw):
            values = [_sample_value(pair) for item in raw for pair in item["values"]]
            if not values:
                raise _QueryError(MSG_EMPTY_MATRIX)
            return values, _format_list(values)
        raise _QueryError(MSG_TYPE_UNSUPPORTED)
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[1], str):
        try:
            scalar = float(raw[1])
        except ValueError:
            raise _QueryError(MSG_TYPE_UNSUPPORTED) from None
        return scalar, format_sample(scalar)
    raise _QueryError(MSG_TYPE_UNSUPPORTED)


def _sample_value(pair: Any) -> float:
    # A sample is [<unix time>, "<value>"]; Prometheus spells NaN/Inf as
    # "NaN", "+Inf", "-Inf", all of which float() accepts.
    if not isinstance(pair, Sequence) or len(pair) != 2:
        raise _QueryError(MSG_TYPE_UNSUPPORTED)
    return float(pair[1])


def format_sample(value: float) -> str:
    """Render a float the way Argo does (Go ``FormatFloat(v, 'f', -1, 64)``).

    Shortest round-trip digits, never an exponent: 1.0 -> "1", 0.97 -> "0.97",
    1e21 -> "1000000000000000000000", NaN -> "NaN", inf -> "+Inf".
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _format_list(values: Sequence[float]) -> str:
    return "[" + ",".join(format_sample(v) for v in values) + "]"


# -- failures ------------------------------------------------------------------

def _describe_failure(exc: Exception, spec: _Spec) -> str:
    address = _safe_url(spec.address)
    if isinstance(exc, _HttpError):
        return _describe_http_error(status=exc.status, body=exc.body)
    if isinstance(exc, BodyTooLarge):
        return MSG_TOO_LARGE.format(address=address, limit=exc.limit)
    if isinstance(exc, requests.exceptions.Timeout) or _is_read_timeout(exc):
        return MSG_TIMED_OUT.format(address=address, timeout=spec.timeout)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return MSG_UNREACHABLE.format(address=address, error=_root(exc))
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return MSG_BAD_RESPONSE.format(address=address, error=exc)
    return MSG_UNEXPECTED.format(error=exc)


def _describe_http_error(*, status: int, body: bytes) -> str:
    """Prometheus's own error (its API's error JSON), else the start of the body."""
    text = body.decode("utf-8", "replace")
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, Mapping) and payload.get("error"):
        error_type = f", {payload['errorType']}" if payload.get("errorType") else ""
        return MSG_QUERY_FAILED.format(status=status, error_type=error_type, error=payload["error"])
    return MSG_HTTP_FAILED.format(status=status, body=text.strip()[:200] or "(empty body)")


def _root(exc: BaseException) -> BaseException:
    """The innermost cause: requests wraps urllib3's MaxRetryError around the
    socket error, and that ("Connection refused", "Read timed out") is what a
    person needs and what decides whether to retry."""
    seen: set[int] = set()
    current: BaseException = exc
    while id(current) not in seen:
        seen.add(id(current))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        if current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
            continue
        break
    return current


def _is_read_timeout(exc: BaseException) -> bool:
    # With urllib3 retries off, requests reports a read timeout as a
    # ConnectionError wrapping MaxRetryError(ReadTimeoutError).
    return isinstance(_root(exc), ReadTimeoutError)


def _is_connection_failure(exc: BaseException) -> bool:
    """Worth another try: the request never got an answer, and not for lack of time.

    HTTP errors and query errors are answers (retrying gives the same one); a
    read timeout has already spent the budget.
    """
    return isinstance(exc, requests.exceptions.ConnectionError) and not _is_read_timeout(exc)


def _redact(*, ctx: MeasurementContext, text: str, extra: tuple[str, ...]) -> str:
    """The run's secrets and the spec's own password (``extra``), in every encoded form."""
    return redact(text, (*ctx.secrets, *extra))


def _safe_url(address: str) -> str:
    """The address without any user:password part, for messages."""
    parts = urlsplit(address)
    if parts.username is None and parts.password is None:
        return address
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


# -- field parsers -------------------------------------------------------------


def _parse_timeout(*, metric: str, raw: Any) -> float:
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT_SECONDS
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise _ConfigError(MSG_BAD_TIMEOUT.format(metric=metric, value=raw)) from None
    if seconds < 0 or math.isnan(seconds):
        raise _ConfigError(MSG_BAD_TIMEOUT.format(metric=metric, value=raw))
    # Zero is Go's "unset" for this field in practice; a zero budget would fail
    # every measurement, so it means the default. Longer than the longest
    # deadline would outlive the controller's wait for the measurement.
    return bounded_timeout(seconds or DEFAULT_TIMEOUT_SECONDS)


def _parse_headers(*, metric: str, raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _ConfigError(MSG_BAD_HEADERS.format(metric=metric))
    headers: list[tuple[str, str]] = []
    for item in raw:
        if not isinstance(item, Mapping) or not str(item.get("key") or "").strip():
            raise _ConfigError(MSG_BAD_HEADERS.format(metric=metric))
        headers.append((str(item["key"]).strip(), str(item.get("value") or "")))
    return tuple(headers)


def _parse_auth(*, metric: str, raw: Any) -> tuple[str, str] | None:
    if not isinstance(raw, Mapping) or not raw:
        return None
    for kind in ("sigv4", "oauth2"):
        if raw.get(kind):
            raise _ConfigError(MSG_AUTH_UNSUPPORTED.format(metric=metric, kind=kind))
    basic = raw.get("basicAuth")
    if not basic:
        return None
    if not isinstance(basic, Mapping):
        raise _ConfigError(MSG_BASIC_AUTH_INCOMPLETE.format(metric=metric))
    username = str(basic.get("username") or "")
    password = str(basic.get("password") or "")
    if not username or not password:
        raise _ConfigError(MSG_BASIC_AUTH_INCOMPLETE.format(metric=metric))
    return (username, password)


def _as_bool(raw: Any) -> bool:
    # Templated fields arrive as strings ("true") after argument substitution.
    if isinstance(raw, str):
        return raw.strip().lower() == "true"
    return bool(raw)


# rangeQuery.start/end are expr-lang expressions in Argo. Tidegate accepts the
# forms the docs use: now(), now() - duration("5m"), now() + duration("1h").
_TIME_EXPR = re.compile(
    r"""^\s*now\(\)\s*(?:(?P<op>[-+])\s*duration\(\s*(?P<q>["'])(?P<dur>[^"']+)(?P=q)\s*\))?\s*$"""
)
def parse_go_duration(text: str) -> timedelta:
    """Parse a Go duration such as "5m", "1h30m" or "250ms" (the one parser in analysis.api)."""
    return parse_duration(text)


def _parse_time_expr(text: str, now: datetime) -> datetime:
    match = _TIME_EXPR.match(text)
    if match is None:
        raise ValueError(f'"{text}" is not supported; use now() or now() - duration("5m")')
    if match.group("op") is None:
        return now
    delta = parse_go_duration(match.group("dur"))
    return now - delta if match.group("op") == "-" else now + delta


def _parse_range(*, metric: str, raw: Any, now: datetime) -> _RangeSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _ConfigError(MSG_BAD_RANGE.format(metric=metric, detail="must be an object"))
    try:
        start = _parse_time_expr(str(raw.get("start") or ""), now)
        end = _parse_time_expr(str(raw.get("end") or "now()"), now)
        step = str(raw.get("step") or "").strip()
        if not step:
            raise ValueError("step is required, e.g. 1m")
        parse_go_duration(step)
    except ValueError as exc:
        raise _ConfigError(MSG_BAD_RANGE.format(metric=metric, detail=exc)) from None
    if start > end:
        raise _ConfigError(MSG_BAD_RANGE.format(metric=metric, detail="start is after end"))
    return _RangeSpec(start=start, end=end, step=step)
