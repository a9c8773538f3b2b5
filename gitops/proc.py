"""Run one tool (git, kustomize, helm) with a total deadline and bounded output.

Callers: ``gitops.source`` (every git call) and ``gitops.render`` (kustomize,
helm). ``subprocess.run(capture_output=True)`` would read whatever a tool prints
into memory; a repository can make ``helm template`` print gigabytes. Here
stdout is read up to a limit (past it the tool is killed: a cut manifest stream
must never be mistaken for a whole one) and stderr keeps its first and last
bytes only (a tool's error is at one end or the other). On the deadline the
tool's whole process group (it runs in its own session, so its children too)
is killed by id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

READ_CHUNK = 64 * 1024
DEFAULT_STDOUT_LIMIT = 64 * 1024 * 1024
DEFAULT_STDERR_LIMIT = 64 * 1024
# After the tool exits, how long its pipes may stay open (a lingering child) before
# its process group is killed.
_DRAIN_AFTER_EXIT_S = 2.0


class ToolTimeout(Exception):
    """The tool did not finish within its deadline (it has been killed)."""


class ToolOutputTooLarge(Exception):
    """The tool printed more than the stdout limit (it has been killed)."""


class ToolNotFound(Exception):
    """The tool's binary is not on PATH."""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: bytes
    # Decoded leniently; a long stderr keeps its head and tail around a marker.
    stderr: str


class _StdoutReader:
    """Reads stdout up to ``limit`` bytes; past it, kills the tool and says so."""

    def __init__(self, proc: subprocess.Popen[bytes], stream: IO[bytes], limit: int) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False
        self._proc, self._stream, self._limit = proc, stream, limit

    def __call__(self) -> None:
        while chunk := self._stream.read(READ_CHUNK):
            self.size += len(chunk)
            if self.size > self._limit:
                self.overflow = True
                _kill_group(self._proc)
                break
            self.chunks.append(chunk)
        self._stream.close()


class _StderrReader:
    """Keeps the first and the last ``limit // 2`` bytes of a stream."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.size = 0
        self._stream, self._half = stream, max(limit // 2, 1)

    def __call__(self) -> None:
        while chunk := self._stream.read(READ_CHUNK):
            self.size += len(chunk)
            room = self._half - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail += chunk
                del self.tail[: max(len(self.tail) - self._half, 0)]
        self._stream.close()

    def text(self) -> str:
        kept = len(self.head) + len(self.tail)
        if self.size > kept:
            middle = f"\n… [{self.size - kept} bytes of stderr left out] …\n".encode()
            data = bytes(self.head) + middle + bytes(self.tail)
        else:
            data = bytes(self.head) + bytes(self.tail)
        return data.decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    cwd: Path | None = None,
    stdout_limit: int = DEFAULT_STDOUT_LIMIT,
    stderr_limit: int = DEFAULT_STDERR_LIMIT,
) -> Result:
    """Run ``argv`` (no shell) with exactly ``env``; raise on deadline or oversize output."""
    try:
        proc = subprocess.Popen(  # noqa: S603 - argv is a list, no shell
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ToolNotFound(f"{argv[0]} not found on PATH") from exc
    assert proc.stdout is not None and proc.stderr is not None
    out = _StdoutReader(proc, proc.stdout, stdout_limit)
    err = _StderrReader(proc.stderr, stderr_limit)
    readers = [threading.Thread(target=fn, daemon=True) for fn in (out, err)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
        raise ToolTimeout(f"{argv[0]} did not finish within {timeout:g}s") from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        for reader in readers:
            reader.join(_DRAIN_AFTER_EXIT_S)
            if reader.is_alive():
                # The tool is gone, but a child it left in its group holds the pipe open.
                _kill_group(proc)
                reader.join(_DRAIN_AFTER_EXIT_S)
    if out.overflow:
        raise ToolOutputTooLarge(f"{argv[0]} printed more than {stdout_limit} bytes")
    return Result(returncode=proc.returncode, stdout=b"".join(out.chunks), stderr=err.text())
