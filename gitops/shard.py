"""Sharding of Applications across N replicas of the sync module: which ones this process owns.

Filled once by the composition root (cli/controller.py, ``--shard i/N``) or from a
StatefulSet's ordinal (the hostname ends in ``-<i>``, ``TIDEGATE_SHARDS=N`` in the
environment); read by gitops/handlers.py, whose watches and work queue skip every
Application another shard owns.

An Application ``namespace/name`` belongs to shard ``stable_hash(namespace/name) % N``:
the first eight bytes of its SHA-256, so every replica, every restart and every
Python process computes the same owner (Python's ``hash()`` is salted per process).
The assignment is read at start-up only: changing N (scaling the StatefulSet,
editing the flags) rebalances when the replicas restart with the new N; each
Application then moves to ``hash % N_new``. Between the restarts of a rolling change
an Application may be owned by two replicas (old and new N) or by none, for at most
the restart; status writes are guarded by resourceVersion, so two owners cost a
retried write, never a wrong status.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

SHARDS_ENV = "TIDEGATE_SHARDS"
MSG_BAD_SHARD = "shard {value!r} is not i/N with 0 <= i < N (e.g. 0/3)"
MSG_BAD_ORDINAL = ("{env}={shards} needs a StatefulSet ordinal: the hostname {host!r} does not end "
                   "in -<i> with i < {shards}")
_ORDINAL = re.compile(r"-(\d+)$")


def stable_hash(namespace: str, name: str) -> int:
    """A hash of ``namespace/name`` equal in every process (SHA-256, first 8 bytes)."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True)
class Shard:
    """This process's shard: ``index`` of ``count`` (``count`` 1: every Application)."""

    index: int = 0
    count: int = 1

    def owns(self, namespace: str, name: str) -> bool:
        return self.count <= 1 or stable_hash(namespace, name) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


ALL = Shard()


def parse_shard(value: str) -> Shard:
    """``i/N`` as a Shard; ValueError with a readable message otherwise."""
    index, sep, count = value.strip().partition("/")
    try:
        shard = Shard(index=int(index), count=int(count))
    except ValueError:
        raise ValueError(MSG_BAD_SHARD.format(value=value)) from None
    if not sep or shard.count < 1 or not 0 <= shard.index < shard.count:
        raise ValueError(MSG_BAD_SHARD.format(value=value))
    return shard


def shard_from_env(environ: Mapping[str, str] | None = None, hostname: str | None = None) -> Shard:
    """The shard of a StatefulSet replica: hostname ``<set>-<i>`` and ``TIDEGATE_SHARDS=N``.

    Without ``TIDEGATE_SHARDS`` (or with 1): every Application.
    """
    env = os.environ if environ is None else environ
    text = env.get(SHARDS_ENV, "").strip()
    if not text or text == "1":
        return ALL
    try:
        count = int(text)
    except ValueError:
        raise ValueError(MSG_BAD_SHARD.format(value=f"?/{text}")) from None
    host = socket.gethostname() if hostname is None else hostname
    match = _ORDINAL.search(host)
    if match is None or int(match.group(1)) >= count:
        raise ValueError(MSG_BAD_ORDINAL.format(env=SHARDS_ENV, shards=count, host=host))
    return Shard(index=int(match.group(1)), count=count)


def resolve_shard(flag: str | None, environ: Mapping[str, str] | None = None,
                  hostname: str | None = None) -> Shard:
    """The flag's shard when given, else the StatefulSet ordinal's, else every Application."""
    return parse_shard(flag) if flag else shard_from_env(environ, hostname)
