"""Process-wide controller settings, filled once by the CLI before kopf starts.

The kopf handler modules read these at start-up and in their filters; nothing
else mutates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ControllerConfig:
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces
    instance_id: str = ""
    workers: int = 16


CONFIG = ControllerConfig()
