"""Pod-template and step hashes (Argo's ``utils/hash`` and ``ComputeStepHash``), pure.

Called by the engine to name the desired ReplicaSet (``<rollout>-<hash>``) and to
detect a change of steps (``status.currentStepHash``).

Argo hashes Go's ``encoding/json`` output, whose key order follows Go struct
order; reproducing that byte-for-byte would need every Kubernetes type. We hash a
canonical JSON (sorted keys, no spaces) instead, so our hashes are stable across
restarts and Python versions but differ from Argo's for the same template. Tests
compare against the RS labels we write, never against Argo's literal hashes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rollouts.api.constants import PodTemplateHash

# Kubernetes' SafeEncodeString alphabet: no vowels, no 0/1/3 (avoids words and look-alikes).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193
_UINT32 = 0xFFFFFFFF


def fnv32a(data: bytes, seed: int = _FNV32_OFFSET) -> int:
    """FNV-1a, 32 bits; ``seed`` continues a previous hash (Go's hasher.Write twice)."""
    value = seed
    for byte in data:
        value = ((value ^ byte) * _FNV32_PRIME) & _UINT32
    return value


def safe_encode(text: str) -> str:
    """Map each character through the safe alphabet (index = code point mod 27)."""
    return "".join(SAFE_ALPHABET[ord(char) % len(SAFE_ALPHABET)] for char in text)


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, compact separators, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def pod_template_hash(
    template: Mapping[str, Any], collision_count: int | None = None
) -> PodTemplateHash:
    """The ``rollouts-pod-template-hash`` of a PodTemplateSpec (at most 10 characters).

    The template's own hash label, if a copy carries one, is ignored so a template
    read back from a ReplicaSet hashes like the Rollout's.
    """
    value = fnv32a(canonical_json(_without_hash_label(template)))
    if collision_count is not None:
        # Argo writes the collision count as 8 little-endian bytes after the template.
        value = fnv32a(collision_count.to_bytes(8, "little", signed=False), seed=value)
    return PodTemplateHash(safe_encode(str(value)))


def step_hash(steps: Sequence[Mapping[str, Any]] | None) -> str:
    """``status.currentStepHash``: the hash of ``spec.strategy.canary.steps`` as written."""
    return safe_encode(str(fnv32a(canonical_json(list(steps or [])))))


def _without_hash_label(template: Mapping[str, Any]) -> Mapping[str, Any]:
    labels = (template.get("metadata") or {}).get("labels") or {}
    if "rollouts-pod-template-hash" not in labels:
        return template
    metadata = dict(template["metadata"])
    metadata["labels"] = {k: v for k, v in labels.items() if k != "rollouts-pod-template-hash"}
    return {**template, "metadata": metadata}
