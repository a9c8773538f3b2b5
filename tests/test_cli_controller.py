"""Unit tests of the controller command line: environment defaults, help text, version, probes."""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request

import pytest

from cli.controller import _lease_namespace, _lease_scope, add_env_defaults, parse_bool
from cli.main import build_parser, main, version_text
from common.health import start_health_server


def controller_parser() -> argparse.ArgumentParser:
    for action in build_parser()._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            parser: argparse.ArgumentParser = action.choices["controller"]
            return parser
    raise AssertionError("no controller subcommand")


def small_parser(environ: dict[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=16, help="concurrent reconciles")
    parser.add_argument("--namespace", action="append", help="watch this namespace")
    parser.add_argument("--metrics-local", action="store_true")
    parser.add_argument("--leader-elect", type=parse_bool, nargs="?", const=True, default=True)
    add_env_defaults(parser, environ=environ)
    return parser


@pytest.mark.parametrize(("environ", "argv", "expected"), [
    ({}, [], {"workers": 16, "namespace": None, "metrics_local": False, "leader_elect": True}),
    ({"TIDEGATE_WORKERS": "4"}, [], {"workers": 4}),
    ({"TIDEGATE_WORKERS": "4"}, ["--workers", "7"], {"workers": 7}),
    ({"TIDEGATE_NAMESPACE": "a b"}, [], {"namespace": ["a", "b"]}),
    ({"TIDEGATE_METRICS_LOCAL": "true"}, [], {"metrics_local": True}),
    ({"TIDEGATE_LEADER_ELECT": "false"}, [], {"leader_elect": False}),
    ({"TIDEGATE_LEADER_ELECT": "false"}, ["--leader-elect"], {"leader_elect": True}),
    ({}, ["--leader-elect=false"], {"leader_elect": False}),
], ids=["defaults", "env-int", "flag-beats-env", "env-list", "env-switch", "env-bool-off",
        "bare-flag-beats-env", "flag-equals-false"])
def test_environment_supplies_defaults(environ: dict[str, str], argv: list[str],
                                       expected: dict[str, object]) -> None:
    args = vars(small_parser(environ).parse_args(argv))
    assert {key: args[key] for key in expected} == expected


def test_bad_environment_value_is_reported_like_a_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        small_parser({"TIDEGATE_WORKERS": "many"}).parse_args([])
    assert "--workers" in capsys.readouterr().err


def test_help_gets_default_and_variable() -> None:
    help_text = small_parser({"TIDEGATE_WORKERS": "4"}).format_help()
    assert "concurrent reconciles (default: 4; env TIDEGATE_WORKERS)" in " ".join(help_text.split())


def test_every_controller_flag_documents_default_and_variable() -> None:
    parser = controller_parser()
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]  # noqa: SLF001
    assert len(options) > 20
    for action in options:
        assert action.help and f"env TIDEGATE_{action.dest.upper()})" in action.help, action.dest
        assert "(default: " in action.help, action.dest


@pytest.mark.parametrize(("word", "expected"), [("true", True), ("On", True), ("0", False), ("no", False)])
def test_parse_bool(word: str, expected: bool) -> None:
    assert parse_bool(word) is expected


def test_parse_bool_rejects_other_words() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_bool("maybe")


def test_version_names_package_python_and_kopf(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tidegate 0.") and "python: 3." in out and "kopf: 1." in out and "commit: " in out
    assert version_text().splitlines()[0] in out
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0


@pytest.mark.parametrize(("ready", "path", "code"), [
    (True, "/healthz", 200), (False, "/healthz", 200), (True, "/readyz", 200),
    (False, "/readyz", 503), (True, "/other", 404),
], ids=["alive-leader", "alive-standby", "ready-leader", "standby-not-ready", "unknown-path"])
def test_probes(ready: bool, path: str, code: int) -> None:
    server = start_health_server(0, lambda: ready, host="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback test server
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == code
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("argv", "pod_namespace", "expected"), [
    (["--leader-election-namespace", "ops"], "pods", "ops"),
    ([], "pods", "pods"),
    (["--namespace", "team-a", "--namespace", "team-b"], "", "team-a"),
    ([], "", "tidegate"),
], ids=["flag", "pod-namespace", "first-watched", "fallback"])
def test_lease_namespace(argv: list[str], pod_namespace: str, expected: str,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", pod_namespace)
    args = build_parser().parse_args(["controller", *argv])
    assert _lease_namespace(args) == expected


@pytest.mark.parametrize(("argv", "expected"), [
    ([], []),
    (["-n", "a", "--app-namespace", "argocd"], ["namespace=a", "app_namespace=argocd"]),
], ids=["cluster-wide", "namespaced"])
def test_lease_scope(argv: list[str], expected: list[str]) -> None:
    assert _lease_scope(build_parser().parse_args(["controller", *argv])) == expected


def test_lease_scope_reads_a_shard_flag_if_one_exists() -> None:
    assert _lease_scope(argparse.Namespace(shard="1/3")) == ["shard=1/3"]


def test_release_is_bounded_even_if_the_api_server_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from cli import controller

    class HangingElector:
        component = "rollouts"

        def __init__(self) -> None:
            self.hang = threading.Event()

        def release(self) -> bool:
            self.hang.wait(30)  # never set: an API server that does not answer
            return False

    monkeypatch.setattr(controller, "RELEASE_BUDGET_SECONDS", 0.3)
    begun = time.monotonic()
    controller._release_all([HangingElector() for _ in range(4)])  # type: ignore[misc]
    assert time.monotonic() - begun < 0.6  # one budget for all four, not 4 x 0.3 s
