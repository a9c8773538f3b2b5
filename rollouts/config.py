"""Process-wide controller settings, filled once by the CLI before kopf starts.

The kopf handler modules read these at start-up and in their filters; nothing
else mutates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INSTANCE_ID_LABEL = "argo-rollouts.argoproj.io/controller-instance-id"


@dataclass
class ControllerConfig:
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces
    instance_id: str = ""
    workers: int = 16

    def in_shard(self, labels: dict[str, str] | None) -> bool:
        """Argo's sharding: with an id, only labelled objects; without, only unlabelled ones."""
        value = (labels or {}).get(INSTANCE_ID_LABEL)
        return value == self.instance_id if self.instance_id else value is None


CONFIG = ControllerConfig()
