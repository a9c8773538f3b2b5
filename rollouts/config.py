"""Process-wide settings of the rollout controller, filled once by the CLI before kopf starts.

The composition root (cli/controller.py) fills them from its flags;
rollouts/handlers.py reads them at start-up and in its shard filter; nothing
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
