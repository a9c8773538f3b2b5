"""Reading one ``service.<type>[.<name>]`` entry: typed fields with errors that name them.

Used by ``notifications.services.config`` (which parses the YAML and replaces the
``$key`` references) and by each service module's ``build`` function.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from notifications.services.base import ConfigError
from notifications.services.transport import RetryPolicy

MSG_REQUIRED = "{key}: {field} is required"
MSG_NOT_TEXT = "{key}: {field} must be a string"
MSG_NOT_BOOL = "{key}: {field} must be true or false"
MSG_NOT_MAPPING = "{key}: {field} must be a mapping"
MSG_NOT_LIST = "{key}: {field} must be a list"
MSG_BAD_URL = "{key}: {field} must be an http(s) URL with a host"
MSG_BAD_INT = "{key}: {field} must be a whole number from 0 to {most}"
MSG_BAD_DURATION = '{key}: {field} must be a duration such as "1s" or "500ms" (at most {most:g}s)'

MAX_RETRIES = 10
MAX_WAIT_SECONDS = 60.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


class Options:
    """The fields of one service entry (already free of ``$key`` references)."""

    def __init__(self, key: str, data: Mapping[str, Any]) -> None:
        self.key = key
        self.data = data

    def error(self, message: str, *, field: str) -> ConfigError:
        return ConfigError(message.format(key=self.key, field=field), service_key=self.key,
                           field=field)

    def text(self, field: str, *, required: bool = False, default: str = "") -> str:
        value = self.data.get(field)
        if value is None or value == "":
            if required:
                raise self.error(MSG_REQUIRED, field=field)
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(MSG_NOT_TEXT, field=field)
        return str(value)

    def boolean(self, field: str, *, default: bool = False) -> bool:
        value = self.data.get(field)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.error(MSG_NOT_BOOL, field=field)

    def mapping(self, field: str) -> Mapping[str, Any]:
        value = self.data.get(field)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(MSG_NOT_MAPPING, field=field)
        return value

    def items(self, field: str) -> list[Any]:
        value = self.data.get(field)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(MSG_NOT_LIST, field=field)
        return value

    def url(self, field: str, *, required: bool = False, default: str = "") -> str:
        value = self.text(field, required=required, default=default)
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise self.error(MSG_BAD_URL, field=field)
        return value

    def retry_policy(self) -> RetryPolicy:
        """Argo's webhook retry fields (retryMax, retryWaitMin, retryWaitMax), for every
        HTTP service here (Argo has them on webhooks only)."""
        defaults = RetryPolicy()
        retries = self.data.get("retryMax", defaults.retries)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
            raise self.error(MSG_BAD_INT.replace("{most}", str(MAX_RETRIES)), field="retryMax")
        wait_min = self._duration("retryWaitMin", defaults.wait_min)
        wait_max = self._duration("retryWaitMax", max(defaults.wait_max, wait_min))
        return RetryPolicy(retries=retries, wait_min=wait_min, wait_max=max(wait_max, wait_min))

    def _duration(self, field: str, default: float) -> float:
        value = self.data.get(field)
        if value is None:
            return default
        match = _DURATION.match(str(value)) if not isinstance(value, bool) else None
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else -1.0
        if not 0 <= seconds <= MAX_WAIT_SECONDS:
            raise ConfigError(MSG_BAD_DURATION.format(key=self.key, field=field,
                                                      most=MAX_WAIT_SECONDS),
                              service_key=self.key, field=field)
        return seconds
