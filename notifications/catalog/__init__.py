"""The shipped catalog of Argo CD's and Argo Rollouts' triggers and templates.

argocd.yaml and rollouts.yaml hold ConfigMap data (``trigger.<name>``, ``template.<name>``)
that a user can subscribe to by name without copying them: ``parse_with_catalog`` parses a
ConfigMap over the catalog, the ConfigMap's keys winning. Called by the notifications
controller and the CLI.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import yaml

from notifications.config import NotificationConfig, parse_config

CATALOG = "catalog"
CATALOG_FILES = ("argocd.yaml", "rollouts.yaml")
MSG_BAD_FILE = "catalog file {file} must map ConfigMap keys to strings"


def catalog_data() -> dict[str, str]:
    """Both catalog files' data, merged (their names do not overlap)."""
    data: dict[str, str] = {}
    for file_name in CATALOG_FILES:
        loaded = yaml.safe_load((Path(__file__).parent / file_name).read_text(encoding="utf-8"))
        if not isinstance(loaded, Mapping) or not all(isinstance(v, str) for v in loaded.values()):
            raise ValueError(MSG_BAD_FILE.format(file=file_name))
        data.update({str(k): v for k, v in loaded.items()})
    return data


@functools.cache
def load_catalog() -> NotificationConfig:
    """The catalog, parsed once per process."""
    return parse_config(catalog_data(), name=CATALOG)


def parse_with_catalog(data: Mapping[str, str] | None, *, name: str) -> NotificationConfig:
    """A ConfigMap's data parsed over the catalog: its triggers and templates win by name."""
    return parse_config(data, name=name, base=load_catalog())
