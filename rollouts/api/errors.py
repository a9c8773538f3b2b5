"""The error a person must fix in a Rollout spec.

Re-exports ``analysis.api.SpecError`` so both controllers raise and catch one type;
the message names the object and the field path.
"""

from __future__ import annotations

from common.api import SpecError

__all__ = ["SpecError"]
