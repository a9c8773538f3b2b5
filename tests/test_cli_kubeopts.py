"""cli/kubeopts.py: the connection flags, the context's namespace, and a clean error without a cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli.kubeopts import DEFAULT_NAMESPACE, add_kube_flags, api_client, context_namespace

KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: dev
contexts:
- name: dev
  context: {cluster: local, user: me, namespace: team-a}
- name: prod
  context: {cluster: local, user: me}
clusters:
- name: local
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: me
  user: {token: not-a-real-token}
"""


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_kube_flags(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(("argv", "expected"), [
    pytest.param((), "team-a", id="current-context-namespace"),
    pytest.param(("--context", "prod"), DEFAULT_NAMESPACE, id="context-without-namespace"),
    pytest.param(("-n", "explicit"), "explicit", id="flag-wins"),
    pytest.param(("--context", "missing"), DEFAULT_NAMESPACE, id="unknown-context"),
])
def test_namespace_from_flag_or_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        argv: tuple[str, ...], expected: str) -> None:
    config = tmp_path / "config"
    config.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert context_namespace(parse(*argv)) == expected


def test_no_cluster_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        api_client(parse())
    assert "cannot reach the cluster" in str(exited.value.code)
    assert "no kubeconfig" in str(exited.value.code)


def test_unknown_context_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    config.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(config))
    with pytest.raises(SystemExit) as exited:
        api_client(parse("--context", "missing"))
    assert str(config) in str(exited.value.code) and "missing" in str(exited.value.code)
