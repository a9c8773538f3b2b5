"""Metric providers (prometheus, web, job), the provider registry and the test exporter.

Prometheus and web providers talk to a real HTTP server on 127.0.0.1 that serves
canned answers (the Prometheus API's JSON), so the real client stack runs. The
job provider gets a fake BatchV1Api that records calls; the exporter is started
in a thread and scraped.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import re
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from analysis.api.phases import AnalysisPhase
from analysis.providers.base import MeasurementContext
from analysis.providers.job import (
    INDEX_ANNOTATION,
    METRIC_NAME_ANNOTATION,
    RUN_UID_LABEL,
    JobProvider,
    job_name,
)
from analysis.providers.prometheus import RESOLVED_QUERY_KEY, PrometheusProvider, format_sample
from analysis.providers.registry import UnsupportedProvider, build_registry
from analysis.providers.web import JsonPath, JsonPathError, WebProvider
from analysis.run import Observation

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # unix 1700000000
RUN_UID = "3f2a9c1e-8b7d-4e5f-a1b2-c3d4e5f60718"
SECRET = "s3cr3t-t0ken"


def ctx_for(metric: dict[str, Any], *, secrets: tuple[str, ...] = ()) -> MeasurementContext:
    return MeasurementContext(
        namespace="ml-serving",
        run_name="inference-rollout-abc-2",
        run_uid=RUN_UID,
        metric=metric,
        now=NOW,
        secrets=secrets,
    )


# -- a canned HTTP server --------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, str, str] | None  # status, content type, body; None = drop the connection
Route = Callable[[Seen], Reply]


@dataclass
class CannedServer:
    routes: dict[str, Route]
    seen: list[Seen] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, Route]], CannedServer]]:
    servers: list[ThreadingHTTPServer] = []

    def start(routes: dict[str, Route]) -> CannedServer:
        canned = CannedServer(routes=routes)

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(
                    method=self.command,
                    path=parts.path,
                    params=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length),
                )
                canned.seen.append(seen)
                route = canned.routes.get(parts.path)
                reply = route(seen) if route else (404, "text/plain", "no route")
                if reply is None:
                    self.close_connection = True
                    return
                status, content_type, text = reply
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client under test gave up first (the timeout cases): expected

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        servers.append(server)
        canned.url = f"http://127.0.0.1:{server.server_address[1]}"
        return canned

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- Prometheus ------------------------------------------------------------------


def _ok(result_type: str, result: Any) -> Reply:
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    return (200, "application/json", json.dumps(body))


PROM_ANSWERS: dict[str, Reply] = {
    "scalar": _ok("scalar", [1700000000, "0.97"]),
    "vector": _ok(
        "vector",
        [
            {"metric": {"pod": "a"}, "value": [1700000000, "0.97"]},
            {"metric": {"pod": "b"}, "value": [1700000000, "1"]},
        ],
    ),
    "nan": _ok("vector", [{"metric": {}, "value": [1700000000, "NaN"]}]),
    "empty": _ok("vector", []),
    "string": _ok("string", [1700000000, "hello"]),
    "bad": (
        400,
        "application/json",
        json.dumps(
            {
                "status": "error",
                "errorType": "bad_data",
                "error": "1:5: parse error: unexpected <EOF>",
            }
        ),
    ),
    "boom": (500, "text/plain", "internal failure"),
}


def prometheus_routes(flaky_drops: int = 0) -> dict[str, Route]:
    drops = [flaky_drops]

    def query(seen: Seen) -> Reply:
        text = seen.params["query"][0]
        if text.startswith("echo"):
            body = {"status": "error", "errorType": "bad_data", "error": f"cannot parse {text}"}
            return (422, "application/json", json.dumps(body))
        if text == "slow":
            time.sleep(1.0)
            return PROM_ANSWERS["scalar"]
        if text == "flaky":
            if drops[0] > 0:
                drops[0] -= 1
                return None
            return PROM_ANSWERS["scalar"]
        return PROM_ANSWERS[text]

    def query_range(seen: Seen) -> Reply:
        return _ok(
            "matrix",
            [
                {"metric": {"pod": "a"}, "values": [[1, "1"], [2, "2"]]},
                {"metric": {"pod": "b"}, "values": [[1, "3"]]},
            ],
        )

    return {"/api/v1/query": query, "/api/v1/query_range": query_range}


def prom_metric(address: str, query: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "success-rate",
        "provider": {"prometheus": {"address": address, "query": query, **extra}},
    }


def fast_prometheus() -> PrometheusProvider:
    return PrometheusProvider(backoff_seconds=0.01, environ={})


@pytest.mark.parametrize(
    ("query", "value", "display"),
    [
        pytest.param("scalar", 0.97, "0.97", id="scalar-is-a-float"),
        pytest.param("vector", [0.97, 1.0], "[0.97,1]", id="vector-is-a-list-in-api-order"),
    ],
)
def test_prometheus_shapes_results_as_argo_does(
    serve: Callable[..., CannedServer], query: str, value: Any, display: str
) -> None:
    server = serve(prometheus_routes())
    observation = fast_prometheus().run(ctx_for(prom_metric(server.url, query)))
    assert observation == Observation(
        value=value, display_value=display, metadata={RESOLVED_QUERY_KEY: query}
    )
    assert server.seen[0].params["time"] == ["1700000000.0"]


def test_prometheus_keeps_nan_and_renders_it(serve: Callable[..., CannedServer]) -> None:
    server = serve(prometheus_routes())
    observation = fast_prometheus().run(ctx_for(prom_metric(server.url, "nan")))
    assert observation.phase is None
    assert isinstance(observation.value, list) and math.isnan(observation.value[0])
    assert observation.display_value == "[NaN]"


@pytest.mark.parametrize(
    ("query", "message", "requests_made"),
    [
        pytest.param("empty", "query returned an empty vector (no data)", 1, id="empty-vector"),
        pytest.param("string", "Prometheus metric type not supported", 1, id="string-result"),
        pytest.param(
            "bad",
            "Prometheus query failed (HTTP 400, bad_data): 1:5: parse error: unexpected <EOF>",
            1,
            id="query-error-carries-prometheus-message",
        ),
        pytest.param(
            "boom", "Prometheus answered HTTP 500: internal failure", 1, id="http-500-not-retried"
        ),
    ],
)
def test_prometheus_failures_are_error_measurements(
    serve: Callable[..., CannedServer], query: str, message: str, requests_made: int
) -> None:
    server = serve(prometheus_routes())
    observation = fast_prometheus().run(ctx_for(prom_metric(server.url, query)))
    assert observation.phase is AnalysisPhase.ERROR
    assert message in observation.message
    assert observation.metadata == {RESOLVED_QUERY_KEY: query}
    assert len(server.seen) == requests_made


def test_prometheus_connection_refused_is_an_error_after_bounded_retries() -> None:
    started = time.monotonic()
    observation = fast_prometheus().run(ctx_for(prom_metric(closed_port_url(), "scalar")))
    assert observation.phase is AnalysisPhase.ERROR
    assert observation.message.startswith("could not reach Prometheus at http://127.0.0.1:")
    assert "refused" in observation.message.lower()
    assert time.monotonic() - started < 5


def test_prometheus_retries_a_dropped_connection(serve: Callable[..., CannedServer]) -> None:
    server = serve(prometheus_routes(flaky_drops=2))
    observation = fast_prometheus().run(ctx_for(prom_metric(server.url, "flaky")))
    assert observation.value == 0.97
    assert len(server.seen) == 3


def test_prometheus_gives_up_when_retries_run_out(serve: Callable[..., CannedServer]) -> None:
    server = serve(prometheus_routes(flaky_drops=5))
    observation = fast_prometheus().run(ctx_for(prom_metric(server.url, "flaky")))
    assert observation.phase is AnalysisPhase.ERROR
    assert len(server.seen) == 3


def test_prometheus_timeout_is_an_error_and_not_retried(
    serve: Callable[..., CannedServer],
) -> None:
    server = serve(prometheus_routes())
    observation = fast_prometheus().run(ctx_for(prom_metric(server.url, "slow", timeout=0.2)))
    assert observation.phase is AnalysisPhase.ERROR
    assert "did not answer within 0.2s" in observation.message
    assert len(server.seen) == 1


def test_prometheus_sends_headers_and_basic_auth(serve: Callable[..., CannedServer]) -> None:
    server = serve(prometheus_routes())
    metric = prom_metric(
        server.url,
        "scalar",
        headers=[{"key": "X-Scope-OrgID", "value": "team-ml"}],
        authentication={"basicAuth": {"username": "reader", "password": SECRET}},
    )
    observation = fast_prometheus().run(ctx_for(metric, secrets=(SECRET,)))
    assert observation.value == 0.97
    headers = server.seen[0].headers
    assert headers["x-scope-orgid"] == "team-ml"
    assert headers["authorization"] == "Basic " + base64.b64encode(
        f"reader:{SECRET}".encode()
    ).decode("ascii")


def test_prometheus_redacts_secrets_in_messages_and_metadata(
    serve: Callable[..., CannedServer],
) -> None:
    server = serve(prometheus_routes())
    query = f'echo{{token="{SECRET}"}}'
    observation = fast_prometheus().run(ctx_for(prom_metric(server.url, query), secrets=(SECRET,)))
    assert observation.phase is AnalysisPhase.ERROR
    assert "cannot parse echo" in observation.message
    assert SECRET not in observation.message
    assert "*****" in observation.message
    assert observation.metadata[RESOLVED_QUERY_KEY] == 'echo{token="*****"}'


def test_prometheus_range_query_flattens_the_matrix(serve: Callable[..., CannedServer]) -> None:
    server = serve(prometheus_routes())
    metric = prom_metric(
        server.url,
        "rate(x[1m])",
        rangeQuery={"start": 'now() - duration("5m")', "end": "now()", "step": "1m"},
    )
    observation = fast_prometheus().run(ctx_for(metric))
    assert observation.value == [1.0, 2.0, 3.0]
    assert observation.display_value == "[1,2,3]"
    assert server.seen[0].path == "/api/v1/query_range"
    assert server.seen[0].params["start"] == ["1699999700"]
    assert server.seen[0].params["end"] == ["1700000000"]
    assert server.seen[0].params["step"] == ["1m"]


def test_prometheus_address_falls_back_to_tidegate_then_argo_env(
    serve: Callable[..., CannedServer],
) -> None:
    server = serve(prometheus_routes())
    metric = prom_metric("", "scalar")
    argo_only = PrometheusProvider(environ={"ARGO_ROLLOUTS_PROMETHEUS_ADDRESS": server.url})
    assert argo_only.run(ctx_for(metric)).value == 0.97
    both = PrometheusProvider(
        environ={
            "TIDEGATE_PROMETHEUS_ADDRESS": server.url,
            "ARGO_ROLLOUTS_PROMETHEUS_ADDRESS": "http://argo.invalid:1",
        }
    )
    assert both.run(ctx_for(metric)).value == 0.97


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param(
            {"address": "", "query": "up"},
            "provider.prometheus.address is empty and neither TIDEGATE_PROMETHEUS_ADDRESS",
            id="no-address",
        ),
        pytest.param(
            {"address": "prometheus:9090", "query": "up"},
            'Prometheus address "prometheus:9090" is not a URL',
            id="address-without-scheme",
        ),
        pytest.param(
            {"address": "http://p:9090", "query": " "},
            "provider.prometheus.query is empty",
            id="no-query",
        ),
        pytest.param(
            {"address": "http://p:9090", "query": "up", "timeout": -1},
            'timeout must be a non-negative number of seconds, got "-1"',
            id="negative-timeout",
        ),
        pytest.param(
            {
                "address": "http://p:9090",
                "query": "up",
                "authentication": {"basicAuth": {"username": "u"}},
            },
            "basicAuth needs both username and password",
            id="basic-auth-without-password",
        ),
        pytest.param(
            {
                "address": "http://p:9090",
                "query": "up",
                "authentication": {"sigv4": {"region": "x"}},
            },
            "authentication.sigv4 is not supported",
            id="sigv4",
        ),
        pytest.param(
            {"address": "http://p:9090", "query": "up", "headers": {"a": "b"}},
            "headers must be a list",
            id="headers-not-a-list",
        ),
        pytest.param(
            {
                "address": "http://p:9090",
                "query": "up",
                "rangeQuery": {"start": "yesterday", "step": "1m"},
            },
            '"yesterday" is not supported',
            id="range-start-unsupported",
        ),
    ],
)
def test_prometheus_invalid_spec_is_an_error_naming_the_field(
    config: dict[str, Any], message: str
) -> None:
    metric = {"name": "success-rate", "provider": {"prometheus": config}}
    observation = fast_prometheus().run(ctx_for(metric))
    assert observation.phase is AnalysisPhase.ERROR
    assert observation.message.startswith('metric "success-rate": ')
    assert message in observation.message


def test_prometheus_reuses_one_connection_per_configuration(
    serve: Callable[..., CannedServer],
) -> None:
    server = serve(prometheus_routes())
    provider = fast_prometheus()
    provider.run(ctx_for(prom_metric(server.url, "scalar")))
    provider.run(ctx_for(prom_metric(server.url, "vector")))
    provider.run(ctx_for(prom_metric(server.url, "scalar", insecure=True)))
    assert len(provider._conns) == 2
    # insecure: true turns TLS verification off for that connection only.
    assert [conn._session.verify for conn in provider._conns.values()] == [True, False]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(1.0, "1", id="integral"),
        pytest.param(0.97, "0.97", id="fraction"),
        pytest.param(1e21, "1000000000000000000000", id="large-no-exponent"),
        pytest.param(1e-7, "0.0000001", id="small-no-exponent"),
        pytest.param(float("nan"), "NaN", id="nan"),
        pytest.param(float("inf"), "+Inf", id="plus-inf"),
        pytest.param(float("-inf"), "-Inf", id="minus-inf"),
        pytest.param(-0.0, "-0", id="negative-zero"),
    ],
)
def test_format_sample_matches_go_shortest_fixed_format(value: float, text: str) -> None:
    assert format_sample(value) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_sample_round_trips_without_exponent(value: float) -> None:
    text = format_sample(value)
    assert "e" not in text.lower()
    assert float(text) == value


# -- web -------------------------------------------------------------------------

WEB_DOCUMENT = {
    "data": {"ok": True, "successPercent": 0.95, "items": [1, 2, 3], "500": 7, "a.b": "x"},
    "status": "success",
}


def web_routes() -> dict[str, Route]:
    def echo(seen: Seen) -> Reply:
        body = {
            "method": seen.method,
            "body": json.loads(seen.body) if seen.body else None,
            "contentType": seen.headers.get("content-type"),
            "auth": seen.headers.get("authorization"),
        }
        return (200, "application/json", json.dumps(body))

    def slow(seen: Seen) -> Reply:
        time.sleep(1.0)
        return (200, "application/json", "1")

    return {
        "/doc": lambda seen: (200, "application/json", json.dumps(WEB_DOCUMENT)),
        "/unavailable": lambda seen: (503, "text/plain", "down"),
        "/text": lambda seen: (200, "text/plain", "hello"),
        "/echo": echo,
        "/slow": slow,
    }


def web_metric(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "webmetric", "provider": {"web": {"url": url, **extra}}}


@pytest.mark.parametrize(
    ("path", "value", "display"),
    [
        pytest.param("{$.data.ok}", True, "true", id="braced-bool"),
        pytest.param("$.data.successPercent", 0.95, "0.95", id="bare-number"),
        pytest.param("{$.data.items[0]}", 1, "1", id="index"),
        pytest.param("$.data.items[-1]", 3, "3", id="negative-index"),
        pytest.param("{.status}", "success", "success", id="no-dollar-string"),
        pytest.param("{$.data.500}", 7, "7", id="numeric-key"),
        pytest.param("$.data['a.b']", "x", "x", id="quoted-key-with-dot"),
        pytest.param("{$.data.items}", [1, 2, 3], "[1,2,3]", id="list"),
        pytest.param(
            "",
            WEB_DOCUMENT,
            json.dumps(WEB_DOCUMENT, separators=(",", ":"), sort_keys=True),
            id="whole-body",
        ),
    ],
)
def test_web_json_path_selects_the_value(
    serve: Callable[..., CannedServer], path: str, value: Any, display: str
) -> None:
    server = serve(web_routes())
    observation = WebProvider().run(ctx_for(web_metric(server.url + "/doc", jsonPath=path)))
    assert observation == Observation(value=value, display_value=display)


@pytest.mark.parametrize(
    ("route", "extra", "message"),
    [
        pytest.param(
            "/doc",
            {"jsonPath": "{$.data.missing}"},
            '$.data has no key "missing"',
            id="missing-key",
        ),
        pytest.param(
            "/doc",
            {"jsonPath": "$.data.items[3]"},
            "index [3] is out of range",
            id="index-out-of-range",
        ),
        pytest.param(
            "/doc", {"jsonPath": "$.status[0]"}, "$.status is not a list", id="index-into-string"
        ),
        pytest.param("/unavailable", {}, "received non 2xx response code: 503", id="non-2xx"),
        pytest.param("/text", {}, "could not parse the response body as JSON", id="not-json"),
        pytest.param("/slow", {"timeoutSeconds": 0.2}, "did not answer within 0.2s", id="timeout"),
        pytest.param("/doc", {"jsonPath": "$..ok"}, "recursive descent", id="recursive-descent"),
        pytest.param("/doc", {"jsonPath": "$.items[*]"}, "is not supported", id="wildcard"),
        pytest.param(
            "/doc", {"method": "DELETE"}, 'method "DELETE" is not one of', id="bad-method"
        ),
        pytest.param(
            "/doc", {"body": "x", "jsonBody": {}}, "sets both body and jsonBody", id="two-bodies"
        ),
        pytest.param("/doc", {"body": "x"}, "has a body but method GET", id="body-with-get"),
    ],
)
def test_web_failures_are_error_measurements(
    serve: Callable[..., CannedServer], route: str, extra: dict[str, Any], message: str
) -> None:
    server = serve(web_routes())
    observation = WebProvider().run(ctx_for(web_metric(server.url + route, **extra)))
    assert observation.phase is AnalysisPhase.ERROR
    assert message in observation.message


def test_web_posts_json_body_with_headers(serve: Callable[..., CannedServer]) -> None:
    server = serve(web_routes())
    metric = web_metric(
        server.url + "/echo",
        method="post",
        jsonBody={"status": "inconclusive"},
        headers=[{"key": "Authorization", "value": f"Bearer {SECRET}"}],
    )
    observation = WebProvider().run(ctx_for(metric, secrets=(SECRET,)))
    assert observation.value == {
        "method": "POST",
        "body": {"status": "inconclusive"},
        "contentType": "application/json",
        "auth": f"Bearer {SECRET}",
    }


def test_web_redacts_secrets_in_connection_errors() -> None:
    url = f"{closed_port_url()}/m?token={SECRET}"
    observation = WebProvider().run(ctx_for(web_metric(url), secrets=(SECRET,)))
    assert observation.phase is AnalysisPhase.ERROR
    assert observation.message.startswith("request to http://127.0.0.1:")
    assert SECRET not in observation.message


_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8)
_SEGMENTS = st.lists(st.one_of(_KEYS, st.integers(min_value=0, max_value=3)), max_size=6)


@given(_SEGMENTS, st.integers())
@settings(max_examples=200)
def test_json_path_resolves_the_leaf_it_was_built_from(segments: list[Any], leaf: int) -> None:
    document: Any = leaf
    for segment in reversed(segments):
        document = (
            [None] * segment + [document] if isinstance(segment, int) else {segment: document}
        )
    text = "$" + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in segments)
    assert JsonPath.parse(text).resolve(document) == leaf
    assert JsonPath.parse("{" + text + "}").resolve(document) == leaf


def test_json_path_rejects_filters() -> None:
    with pytest.raises(JsonPathError):
        JsonPath.parse("{$.items[?(@.ok==true)]}")


# -- job -------------------------------------------------------------------------


def _api_error(status: int, reason: str, message: str = "") -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"message": message}) if message else None
    return exc


class FakeBatch:
    """Records calls and keeps Jobs as raw (camelCase) API dicts."""

    def __init__(self, *, stale_list: bool = False) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.stale_list = stale_list
        self.fail_with: ApiException | Exception | None = None

    def _maybe_fail(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def create_namespaced_job(self, *, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", {"namespace": namespace, "body": body}))
        self._maybe_fail()
        key = (namespace, body["metadata"]["name"])
        if key in self.jobs:
            raise _api_error(409, "Conflict", "jobs.batch already exists")
        stored = json.loads(json.dumps(body))
        stored["metadata"]["creationTimestamp"] = f"2023-11-14T22:{len(self.jobs):02d}:00Z"
        self.jobs[key] = stored
        return stored

    def read_namespaced_job(self, *, name: str, namespace: str) -> dict[str, Any]:
        self.calls.append(("read", {"name": name, "namespace": namespace}))
        if (namespace, name) not in self.jobs:
            raise _api_error(404, "Not Found")
        return self.jobs[(namespace, name)]

    def list_namespaced_job(self, *, namespace: str, label_selector: str) -> dict[str, Any]:
        self.calls.append(("list", {"namespace": namespace, "label_selector": label_selector}))
        self._maybe_fail()
        key, _, value = label_selector.partition("=")
        items = [
            job
            for (ns, _), job in self.jobs.items()
            if ns == namespace and job["metadata"].get("labels", {}).get(key) == value
        ]
        return {"items": [] if self.stale_list else items}

    def delete_namespaced_job(self, *, name: str, namespace: str, propagation_policy: str) -> None:
        self.calls.append(
            (
                "delete",
                {"name": name, "namespace": namespace, "propagation_policy": propagation_policy},
            )
        )
        self._maybe_fail()
        if self.jobs.pop((namespace, name), None) is None:
            raise _api_error(404, "Not Found")

    def finish(self, name: str, condition: dict[str, str]) -> None:
        self.jobs[("ml-serving", name)]["status"] = {"conditions": [condition]}

    def names(self, verb: str) -> list[str]:
        return [
            args["name"] if "name" in args else args["body"]["metadata"]["name"]
            for call, args in self.calls
            if call == verb
        ]


JOB_SPEC = {
    "backoffLimit": 0,
    "template": {
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "check", "image": "busybox", "command": ["true"]}],
        }
    },
}


def job_metric(name: str = "smoke-test") -> dict[str, Any]:
    return {
        "name": name,
        "provider": {
            "job": {
                "metadata": {"labels": {"team": "ml"}, "annotations": {"note": "hi"}},
                "spec": JOB_SPEC,
            }
        },
    }


def test_job_run_creates_an_owned_labelled_job_and_waits() -> None:
    batch = FakeBatch()
    observation = JobProvider(batch).run(ctx_for(job_metric()))
    name = f"{RUN_UID}.smoke-test.1"
    assert observation == Observation(
        phase=AnalysisPhase.RUNNING,
        metadata={"job-name": name, "job-namespace": "ml-serving"},
        resume_at=NOW + timedelta(seconds=10),
    )
    body = batch.jobs[("ml-serving", name)]
    assert body["apiVersion"] == "batch/v1" and body["kind"] == "Job"
    assert body["spec"] == JOB_SPEC
    assert body["metadata"]["labels"] == {
        "team": "ml",
        "analysisrun.argoproj.io/uid": RUN_UID,
        "analysisrun.argoproj.io/name": "inference-rollout-abc-2",
        "analysisrun.argoproj.io/metric-name": "smoke-test",
    }
    assert body["metadata"]["annotations"] == {
        "note": "hi",
        "analysisrun.argoproj.io/run-name": "inference-rollout-abc-2",
        "analysisrun.argoproj.io/metric-name": "smoke-test",
        "tidegate.dev/measurement-index": "1",
    }
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AnalysisRun",
            "name": "inference-rollout-abc-2",
            "uid": RUN_UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_job_run_numbers_measurements_after_existing_jobs() -> None:
    batch = FakeBatch()
    provider = JobProvider(batch)
    first = provider.run(ctx_for(job_metric()))
    batch.finish(first.metadata["job-name"], {"type": "Complete", "status": "True"})
    second = provider.run(ctx_for(job_metric()))
    assert second.metadata["job-name"] == f"{RUN_UID}.smoke-test.2"
    assert batch.names("create") == [f"{RUN_UID}.smoke-test.1", f"{RUN_UID}.smoke-test.2"]


def test_job_run_adopts_an_active_job_after_a_restart() -> None:
    batch = FakeBatch()
    JobProvider(batch).run(ctx_for(job_metric()))
    # A new provider (a restarted controller) is asked to measure again.
    observation = JobProvider(batch).run(ctx_for(job_metric()))
    assert observation.phase is AnalysisPhase.RUNNING
    assert observation.metadata["job-name"] == f"{RUN_UID}.smoke-test.1"
    assert len(batch.names("create")) == 1


def test_job_run_adopts_on_already_exists() -> None:
    batch = FakeBatch()
    JobProvider(batch).run(ctx_for(job_metric()))
    batch.stale_list = True  # the list has not caught up with the create
    observation = JobProvider(batch).run(ctx_for(job_metric()))
    assert observation.phase is AnalysisPhase.RUNNING
    assert observation.metadata["job-name"] == f"{RUN_UID}.smoke-test.1"
    assert batch.names("read") == [f"{RUN_UID}.smoke-test.1"]


def test_job_run_refuses_a_same_named_job_of_someone_else() -> None:
    batch = FakeBatch(stale_list=True)
    name = f"{RUN_UID}.smoke-test.1"
    batch.jobs[("ml-serving", name)] = {"metadata": {"name": name, "labels": {}}}
    observation = JobProvider(batch).run(ctx_for(job_metric()))
    assert observation.phase is AnalysisPhase.ERROR
    assert "already exists and belongs to something else" in observation.message


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        pytest.param(
            _api_error(422, "Unprocessable Entity", 'Job.batch "x" is invalid: spec.template'),
            'could not create Job ml-serving/3f2a9c1e-8b7d-4e5f-a1b2-c3d4e5f60718.smoke-test.1: 422 Unprocessable Entity: Job.batch "x" is invalid',
            id="invalid-job-names-the-api-message",
        ),
        pytest.param(RuntimeError("socket closed"), "socket closed", id="unexpected-exception"),
    ],
)
def test_job_run_api_failures_are_errors(failure: Exception, message: str) -> None:
    class FailingCreate(FakeBatch):
        def create_namespaced_job(self, *, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
            raise failure

    observation = JobProvider(FailingCreate()).run(ctx_for(job_metric()))
    assert observation.phase is AnalysisPhase.ERROR
    assert message in observation.message


@pytest.mark.parametrize(
    ("metric", "run_uid", "message"),
    [
        pytest.param(
            {"name": "m", "provider": {"job": {}}},
            RUN_UID,
            "provider.job.spec is missing",
            id="no-spec",
        ),
        pytest.param(job_metric("m"), "", "has no uid yet", id="no-run-uid"),
    ],
)
def test_job_run_invalid_input_is_an_error(
    metric: dict[str, Any], run_uid: str, message: str
) -> None:
    ctx = MeasurementContext(
        namespace="ml-serving", run_name="r", run_uid=run_uid, metric=metric, now=NOW
    )
    observation = JobProvider(FakeBatch()).run(ctx)
    assert observation.phase is AnalysisPhase.ERROR
    assert message in observation.message


@pytest.mark.parametrize(
    ("conditions", "phase", "message"),
    [
        pytest.param(
            [{"type": "Complete", "status": "True"}],
            AnalysisPhase.SUCCESSFUL,
            "completed",
            id="complete",
        ),
        pytest.param(
            [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
            AnalysisPhase.FAILED,
            "failed: BackoffLimitExceeded: Job has reached the specified backoff limit",
            id="failed",
        ),
        pytest.param(
            [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "DeadlineExceeded",
                    "message": "Job was active longer than specified deadline",
                }
            ],
            AnalysisPhase.FAILED,
            "failed: DeadlineExceeded",
            id="deadline-exceeded",
        ),
        pytest.param([], AnalysisPhase.RUNNING, "", id="running"),
        pytest.param(
            [{"type": "Failed", "status": "False"}],
            AnalysisPhase.RUNNING,
            "",
            id="condition-not-true",
        ),
    ],
)
def test_job_resume_reads_the_job_outcome(
    conditions: list[dict[str, str]], phase: AnalysisPhase, message: str
) -> None:
    batch = FakeBatch()
    provider = JobProvider(batch)
    started = provider.run(ctx_for(job_metric()))
    batch.jobs[("ml-serving", started.metadata["job-name"])]["status"] = {"conditions": conditions}
    later = ctx_for(job_metric())
    observation = provider.resume(later, started.metadata)
    assert observation.phase is phase
    assert message in observation.message
    assert observation.metadata == started.metadata
    assert observation.resume_at == (
        NOW + timedelta(seconds=10) if phase is AnalysisPhase.RUNNING else None
    )


def test_job_resume_reads_kubernetes_client_models() -> None:
    class ModelBatch(FakeBatch):
        def read_namespaced_job(self, *, name: str, namespace: str) -> Any:
            return k8s.V1Job(
                metadata=k8s.V1ObjectMeta(
                    name=name,
                    namespace=namespace,
                    labels={RUN_UID_LABEL: RUN_UID},
                    annotations={"analysisrun.argoproj.io/metric-name": "smoke-test"},
                    owner_references=[
                        k8s.V1OwnerReference(
                            api_version="argoproj.io/v1alpha1",
                            kind="AnalysisRun",
                            name="inference-rollout-abc-2",
                            uid=RUN_UID,
                        )
                    ],
                ),
                status=k8s.V1JobStatus(
                    conditions=[k8s.V1JobCondition(type="Complete", status="True")]
                ),
            )

    metadata = {"job-name": f"{RUN_UID}.smoke-test.1", "job-namespace": "ml-serving"}
    observation = JobProvider(ModelBatch()).resume(ctx_for(job_metric()), metadata)
    assert observation.phase is AnalysisPhase.SUCCESSFUL


def test_job_resume_of_a_deleted_job_is_an_error() -> None:
    metadata = {"job-name": f"{RUN_UID}.smoke-test.1", "job-namespace": "ml-serving"}
    observation = JobProvider(FakeBatch()).resume(ctx_for(job_metric()), metadata)
    assert observation.phase is AnalysisPhase.ERROR
    assert f"Job ml-serving/{RUN_UID}.smoke-test.1 no longer exists" in observation.message


def test_job_resume_with_a_pod_that_cannot_pull_its_image_is_inconclusive() -> None:
    class FakeCore:
        def __init__(self) -> None:
            self.selectors: list[str] = []

        def list_namespaced_pod(self, *, namespace: str, label_selector: str) -> dict[str, Any]:
            self.selectors.append(label_selector)
            waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "nope"'}
            return {
                "items": [
                    {
                        "status": {
                            "containerStatuses": [{"name": "check", "state": {"waiting": waiting}}]
                        }
                    }
                ]
            }

    batch, core = FakeBatch(), FakeCore()
    provider = JobProvider(batch, core_api=core)
    started = provider.run(ctx_for(job_metric()))
    observation = provider.resume(ctx_for(job_metric()), started.metadata)
    name = started.metadata["job-name"]
    assert observation.phase is AnalysisPhase.INCONCLUSIVE
    assert "container check cannot start (ImagePullBackOff)" in observation.message
    assert core.selectors == [f"job-name={name}"]
    assert batch.names("delete") == [name]


def test_job_terminate_deletes_in_background_and_is_inconclusive() -> None:
    batch = FakeBatch()
    provider = JobProvider(batch)
    started = provider.run(ctx_for(job_metric()))
    observation = provider.terminate(ctx_for(job_metric()), started.metadata)
    assert observation == Observation(
        phase=AnalysisPhase.INCONCLUSIVE, message="Metric Terminated", metadata=started.metadata
    )
    assert batch.calls[-1] == (
        "delete",
        {
            "name": started.metadata["job-name"],
            "namespace": "ml-serving",
            "propagation_policy": "Background",
        },
    )
    # Terminating again (the Job is already gone) is still fine.
    assert (
        provider.terminate(ctx_for(job_metric()), started.metadata).phase
        is AnalysisPhase.INCONCLUSIVE
    )


def test_job_terminate_that_cannot_delete_is_an_error() -> None:
    batch = FakeBatch()
    started = JobProvider(batch).run(ctx_for(job_metric()))
    batch.fail_with = _api_error(500, "Internal Server Error", "etcd unavailable")
    observation = JobProvider(batch).terminate(ctx_for(job_metric()), started.metadata)
    assert observation.phase is AnalysisPhase.ERROR
    assert "etcd unavailable" in observation.message


def test_job_garbage_collect_keeps_the_newest_of_this_metric_only() -> None:
    batch = FakeBatch()
    provider = JobProvider(batch)
    names = []
    for _ in range(4):
        started = provider.run(ctx_for(job_metric()))
        names.append(started.metadata["job-name"])
        batch.finish(started.metadata["job-name"], {"type": "Complete", "status": "True"})
    other_metric = provider.run(ctx_for(job_metric("other")))
    other_run = dict(
        metadata={
            "name": "x",
            "labels": {RUN_UID_LABEL: "another-run"},
            "annotations": {METRIC_NAME_ANNOTATION: "smoke-test", INDEX_ANNOTATION: "1"},
        }
    )
    batch.jobs[("ml-serving", "x")] = other_run
    provider.garbage_collect(ctx_for(job_metric()), limit=2)
    assert batch.names("delete") == [names[1], names[0]]
    assert set(batch.jobs) == {
        ("ml-serving", names[2]),
        ("ml-serving", names[3]),
        ("ml-serving", other_metric.metadata["job-name"]),
        ("ml-serving", "x"),
    }


def test_job_garbage_collect_never_raises() -> None:
    batch = FakeBatch()
    batch.fail_with = RuntimeError("apiserver down")
    JobProvider(batch).garbage_collect(ctx_for(job_metric()), limit=1)


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        pytest.param("smoke-test", f"{RUN_UID}.smoke-test.12", id="argo-format-when-valid"),
        pytest.param("Error_Rate", None, id="sanitised"),
        pytest.param("a-very-long-metric-name-that-would-overflow", None, id="shortened"),
    ],
)
def test_job_name_is_a_valid_name_of_at_most_63_chars(metric: str, expected: str | None) -> None:
    name = job_name(run_uid=RUN_UID, metric=metric, index=12)
    assert len(name) <= 63
    assert _DNS_SUBDOMAIN.match(name), name
    assert name.startswith(RUN_UID + ".") and name.endswith(".12")
    if expected is not None:
        assert name == expected


def test_job_names_of_similar_metrics_differ() -> None:
    names = {job_name(run_uid=RUN_UID, metric=m, index=1) for m in ("a_b", "a-b", "A-B", "a.b")}
    assert len(names) == 4


# -- registry --------------------------------------------------------------------


def test_registry_picks_the_provider_by_key() -> None:
    batch = FakeBatch()
    lookup = build_registry(batch_api=batch)
    assert isinstance(lookup(prom_metric("http://p:9090", "up")), PrometheusProvider)
    assert isinstance(lookup(web_metric("http://w")), WebProvider)
    job = lookup(job_metric())
    assert isinstance(job, JobProvider)
    assert lookup(job_metric()) is job
    job.run(ctx_for(job_metric()))
    assert batch.names("create") == [f"{RUN_UID}.smoke-test.1"]


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        pytest.param(
            {"datadog": {"query": "x"}},
            'metric "latency" uses provider "datadog", which Tidegate does not support',
            id="unsupported",
        ),
        pytest.param(
            None, 'metric "latency" has no provider; set one of provider.prometheus', id="none"
        ),
        pytest.param(
            {"web": {}, "prometheus": {}},
            'metric "latency" sets several providers (prometheus, web)',
            id="several",
        ),
    ],
)
def test_registry_unusable_providers_measure_errors(provider: Any, message: str) -> None:
    metric = {"name": "latency", "provider": provider}
    chosen = build_registry()(metric)
    assert isinstance(chosen, UnsupportedProvider)
    observation = chosen.run(ctx_for(metric))
    assert observation.phase is AnalysisPhase.ERROR
    assert observation.message.startswith(message)


# -- exporter --------------------------------------------------------------------


def _load_exporter() -> ModuleType:
    name = "tidegate_e2e_exporter"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "e2e" / "exporter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


exporter_mod = _load_exporter()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _requests(samples: dict[Any, float], service: str, status: str) -> float:
    return samples[("inference_requests_total", (("service", service), ("status", status)))]


def test_exporter_counts_requests_at_the_configured_rate_and_error_rate() -> None:
    now = [100.0]
    exporter = exporter_mod.Exporter(services=["stable"], rate=20.0, clock=lambda: now[0])
    exporter.configure("canary", {"error_rate": 0.05})
    now[0] += 10
    samples = _samples(exporter.render())
    assert _requests(samples, "stable", "success") == pytest.approx(200)
    assert _requests(samples, "stable", "error") == 0
    assert _requests(samples, "canary", "success") == pytest.approx(190)
    assert _requests(samples, "canary", "error") == pytest.approx(10)


def _histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile over cumulative (upper bound, count) pairs."""
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    raise AssertionError("unreachable")


@given(st.floats(min_value=0.00099, max_value=10.0))
def test_exporter_latency_histogram_has_the_configured_p99(p99: float) -> None:
    fractions = exporter_mod.latency_fractions(p99)
    assert all(f >= 0 for f in fractions)
    assert sum(fractions) == pytest.approx(1.0)
    bounds = [*exporter_mod.BUCKETS, math.inf]
    cumulative, pairs = 0.0, []
    for bound, share in zip(bounds, fractions, strict=True):
        cumulative += share * 1000
        pairs.append((bound, cumulative))
    assert _histogram_quantile(0.99, pairs) == pytest.approx(p99, rel=1e-9)


def _http(url: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_exporter_server_honours_control_and_counters_grow() -> None:
    server = exporter_mod.start_exporter(0, services=["stable"])
    try:
        assert _http(server.url + "/healthz") == (200, "ok\n")
        status, text = _http(
            server.url + "/control", {"service": "canary", "error_rate": 0.25, "latency_p99": 0.2}
        )
        assert status == 200
        assert json.loads(text) == {
            "canary": {"rate": 20.0, "error_rate": 0.25, "latency_p99": 0.2}
        }
        assert _http(server.url + "/control", {"service": "canary", "error_rate": 2})[0] == 400
        assert _http(server.url + "/control", {"service": "canary", "colour": 1})[0] == 400
        assert json.loads(_http(server.url + "/control")[1])["stable"]["error_rate"] == 0.0

        first = _samples(_http(server.url + "/metrics")[1])
        time.sleep(0.3)
        second = _samples(_http(server.url + "/metrics")[1])

        def delta(service: str, status: str) -> float:
            return _requests(second, service, status) - _requests(first, service, status)

        assert delta("stable", "success") > 0 and delta("stable", "error") == 0
        canary_total = delta("canary", "success") + delta("canary", "error")
        assert canary_total > 0
        assert delta("canary", "error") / canary_total == pytest.approx(0.25)
        assert second[("inference_latency_p99_seconds", (("service", "canary"),))] == 0.2
        assert second[
            ("inference_latency_seconds_count", (("service", "canary"),))
        ] == pytest.approx(
            _requests(second, "canary", "success") + _requests(second, "canary", "error")
        )
    finally:
        server.stop()


def test_prometheus_spec_password_is_redacted_in_every_form() -> None:
    # The basicAuth password written in the metric itself is not a run arg: it is
    # redacted through the same helper as run secrets, so its encoded forms go too.
    from urllib.parse import quote

    from analysis.providers.prometheus import _redact

    password = "p@ss w/rd+&"
    text = f"raw {password} url {quote(password, safe='')} b64 {base64.b64encode(password.encode()).decode()}"
    out = _redact(ctx=ctx_for(prom_metric("http://127.0.0.1:1", "scalar")), text=text,
                  extra=(password,))
    assert password not in out
    assert quote(password, safe="") not in out
    assert base64.b64encode(password.encode()).decode() not in out
    assert out.count("*****") == 3
