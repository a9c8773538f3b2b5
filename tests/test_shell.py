"""common/shell.py: the controller shell both handlers modules run in.

The shard filter, the newest body of a key, the stale-write guard, retry after
an error, kopf's settings, and start/stop, on a fake clock (tests/fake_clock.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from fake_clock import FakeClock, settle
from kubernetes.client.exceptions import ApiException

from common.shell import (
    FINALIZER,
    INSTANCE_ID_LABEL,
    RETRY_AFTER_CONFLICT_SECONDS,
    RETRY_AFTER_ERROR_SECONDS,
    Key,
    Shell,
    VersionTracker,
    configure_operator,
    in_shard,
    newest,
    resource_version,
)
from common.workqueue import WorkQueue

KEY: Key = ("ml-serving", "web")


def body(version: str | None) -> dict[str, Any]:
    meta = {"name": KEY[1], "namespace": KEY[0]}
    if version is not None:
        meta["resourceVersion"] = version
    return {"metadata": meta}


@pytest.mark.parametrize(
    ("instance_id", "labels", "expected"),
    [
        pytest.param("", {}, True, id="unsharded-takes-unlabelled"),
        pytest.param("", None, True, id="unsharded-takes-no-labels"),
        pytest.param("", {INSTANCE_ID_LABEL: "a"}, False, id="unsharded-skips-labelled"),
        pytest.param("a", {INSTANCE_ID_LABEL: "a"}, True, id="shard-takes-its-own"),
        pytest.param("a", {INSTANCE_ID_LABEL: "b"}, False, id="shard-skips-another-shard"),
        pytest.param("a", {"app": "web"}, False, id="shard-skips-unlabelled"),
    ],
)
def test_instance_id_shard_filter(instance_id: str, labels: dict[str, str] | None,
                                  expected: bool) -> None:
    assert in_shard(labels, instance_id=instance_id) is expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [("42", 42), ("", None), (None, None), ("not-a-number", None)],
    ids=["number", "empty", "missing", "opaque"],
)
def test_resource_version(version: str | None, expected: int | None) -> None:
    assert resource_version(body(version)) == expected


def test_the_newest_body_by_resource_version_wins_numerically() -> None:
    older, newer, opaque = body("9"), body("10"), body(None)
    assert newest([older, newer, opaque]) is newer  # "10" > "9" as numbers, not as text
    assert newest([newer, older]) is newer
    assert newest([]) is None and newest(None) is None


def test_shell_newest_reads_the_named_index_and_tolerates_a_missing_one() -> None:
    shell = Shell(kind="rollout")
    older, newer = body("9"), body("10")
    shell.indices = {"rollouts": {KEY: [newer, older]}}
    assert shell.newest("rollouts", KEY) is newer
    assert shell.newest("rollouts", ("ml-serving", "gone")) is None
    assert shell.newest("replicasets", KEY) is None


def test_stale_write_guard_skips_only_bodies_older_than_our_own_write() -> None:
    tracker = VersionTracker()
    assert not tracker.is_stale(KEY, body("5"))  # nothing written yet
    tracker.record(KEY, body("10"))
    tracker.record(KEY, body("7"))  # an older answer arriving late does not lower it
    assert tracker.last(KEY) == 10
    assert tracker.is_stale(KEY, body("9"))
    assert not tracker.is_stale(KEY, body("10"))  # our own write, back through the watch
    assert not tracker.is_stale(KEY, body("11"))  # someone changed it since
    assert not tracker.is_stale(KEY, body(None))  # cannot tell: reconcile it
    assert not tracker.is_stale(("ml-serving", "other"), body("1"))
    tracker.forget(KEY)
    assert tracker.last(KEY) is None and not tracker.is_stale(KEY, body("9"))


def test_a_write_without_a_resource_version_is_not_remembered() -> None:
    tracker = VersionTracker()
    tracker.record(KEY, {})
    assert tracker.last(KEY) is None


def test_shell_stale_check_uses_its_tracker() -> None:
    shell = Shell(kind="rollout")
    assert isinstance(shell.tracker, VersionTracker)
    shell.tracker.record(KEY, body("10"))
    assert shell.is_stale(KEY, body("9")) and not shell.is_stale(KEY, body("10"))


def test_a_conflict_is_retried_soon_without_counting_an_error(
        caplog: pytest.LogCaptureFixture) -> None:
    counted: list[Key] = []
    shell = Shell(kind="rollout", count_error=counted.append)
    assert shell.retry_delay(KEY, ApiException(status=409)) == RETRY_AFTER_CONFLICT_SECONDS == 0.2
    assert counted == []
    assert all(r.levelname == "INFO" for r in caplog.records)


@pytest.mark.parametrize(
    "error",
    [RuntimeError("boom"), ApiException(status=500), ApiException(status=404)],
    ids=["bug", "server-error", "not-found"],
)
def test_any_other_error_is_logged_once_counted_and_retried_after_the_constant(
        caplog: pytest.LogCaptureFixture, error: BaseException) -> None:
    counted: list[Key] = []
    shell = Shell(kind="analysisrun", logger="tidegate.test.shell", count_error=counted.append)
    with caplog.at_level("INFO", logger="tidegate.test.shell"):
        delay = shell.retry_delay(KEY, error)
    assert delay == RETRY_AFTER_ERROR_SECONDS == 5.0
    assert counted == [KEY]
    [record] = [r for r in caplog.records if r.name == "tidegate.test.shell"]
    assert record.levelname == "ERROR"
    message = record.getMessage()
    assert message.startswith("[ml-serving/web] analysisrun reconcile failed")
    assert type(error).__name__ in message  # the traceback is part of the one line's record


def test_operator_settings_are_set_on_whatever_object_kopf_passes() -> None:
    settings = SimpleNamespace(
        posting=SimpleNamespace(enabled=True), watching=SimpleNamespace(),
        persistence=SimpleNamespace(), networking=SimpleNamespace(), batching=SimpleNamespace())
    configure_operator(settings)
    configure_operator(settings)  # both controllers' startups: same values, no harm
    assert settings.posting.enabled is False
    assert (settings.watching.server_timeout, settings.watching.client_timeout) == (270, 300)
    assert settings.persistence.finalizer == FINALIZER == "tidegate.dev/finalizer"
    assert settings.networking.request_timeout == 30
    assert settings.batching.worker_limit == 2000


def test_started_workers_reconcile_and_retry_through_the_shell_and_stop_without_waiting() -> None:
    clock = FakeClock()
    shell = Shell(kind="rollout", queue=WorkQueue(clock=clock))
    pool = shell.pool(1, name="test-hung")
    hung = threading.Event()
    pool.submit(hung.wait)  # a call that never returns by itself
    attempts: list[float] = []

    async def handle(key: Key) -> float | None:
        attempts.append(clock.now)
        if len(attempts) == 1:
            raise ApiException(status=409)
        return None

    async def scenario() -> None:
        shell.start(handle, workers=2)
        shell.queue.add(KEY)
        await settle()
        clock.advance(RETRY_AFTER_CONFLICT_SECONDS)
        await settle()
        workers = shell.workers
        assert workers is not None
        shell.stop()  # returns at once although the pool's only thread hangs
        with contextlib.suppress(asyncio.CancelledError):
            await workers
        assert workers.cancelled()

    try:
        asyncio.run(scenario())
        assert attempts == [0.0, RETRY_AFTER_CONFLICT_SECONDS]
        with pytest.raises(RuntimeError):
            pool.submit(print)  # shut down
    finally:
        hung.set()


@pytest.mark.parametrize(
    ("module", "config"),
    [("rollouts.handlers", "rollouts.config"), ("analysis.handlers", "analysis.config")],
    ids=["rollouts", "analysis"],
)
def test_both_controllers_run_in_the_shell(monkeypatch: pytest.MonkeyPatch, module: str,
                                           config: str) -> None:
    handlers = importlib.import_module(module)
    settings = importlib.import_module(config).CONFIG
    assert isinstance(handlers.SHELL, Shell)
    assert handlers._on_error(KEY, ApiException(status=409)) == RETRY_AFTER_CONFLICT_SECONDS
    monkeypatch.setattr(settings, "instance_id", "a")
    assert handlers._in_shard({INSTANCE_ID_LABEL: "a"})
    assert not handlers._in_shard({})
    monkeypatch.setattr(settings, "instance_id", "")
    assert handlers._in_shard(None)
