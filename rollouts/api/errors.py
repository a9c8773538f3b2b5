"""The error a person must fix in a Rollout spec.

Re-exports ``common.api.SpecError`` so every controller raises and catches one type;
the message names the object and the field path.
"""

from __future__ import annotations

from common.api import SpecError

__all__ = ["SpecError"]
