"""Placeholder: the `lint` subcommands land here (issue 11); registers nothing yet."""

from __future__ import annotations

from typing import Any


def add_subcommands(sub: Any) -> None:
    """Register this module's subcommands on the top-level subparsers sub."""
