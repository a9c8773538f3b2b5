"""The base API types every Tidegate controller shares: domain-free, no I/O.

``KubeModel`` (camelCase on the wire, unknown fields kept so a user's YAML
survives a round trip), ``ObjectMeta``, Kubernetes ``IntOrString`` and
``metav1.Time``, Go durations, ``SpecError`` and ``parse``, which turns a
pydantic validation error into a ``SpecError`` naming the object and the field.
Imported by every controller's ``api`` package (``rollouts.api``,
``analysis.api``, ``gitops.api``) and by their engines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    ValidationError,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

GROUP = "argoproj.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

MSG_INT_OR_STRING = "Input should be a valid integer"
MSG_BAD_DURATION = 'invalid duration "{text}": use a number with a unit, e.g. 30s, 5m, 1h30m'


class SpecError(ValueError):
    """A spec a person must fix; the message names the object and the field."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- field types -------------------------------------------------------------------------


def _int_or_string(value: object) -> int | str:
    # bool is an int in Python but never a valid count or limit in Kubernetes' IntOrString.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError("int_or_string", MSG_INT_OR_STRING)
    return value


IntOrString = Annotated[int | str, BeforeValidator(_int_or_string)]
"""Kubernetes IntOrString: kept exactly as written (``5`` stays 5, ``"5"`` stays "5")."""


def _aware(value: object) -> object:
    # Kubernetes times are UTC; a naive datetime from our own code means UTC too.
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; sub-seconds only when present, trailing zeros trimmed.

    Trimming matches Go's RFC3339Nano, so ``...00.5Z`` read from the API server is
    written back byte-for-byte.
    """
    value = value.astimezone(UTC)
    text = value.replace(tzinfo=None, microsecond=0).isoformat(timespec="seconds")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


KubeTime = Annotated[
    datetime,
    BeforeValidator(_aware),
    PlainSerializer(format_time, return_type=str, when_used="json"),
]
"""A metav1.Time: timezone-aware datetime, written back as ``2024-05-01T10:00:00Z``."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string (``30s``, ``5m``, ``1h30m``, ``500ms``; ``0`` alone is allowed).

    Raises ValueError with a message a person can act on.
    """
    stripped = text.strip()
    if stripped == "0":
        return timedelta(0)
    position, seconds = 0, 0.0
    while position < len(stripped):
        match = _DURATION_PART.match(stripped, position)
        if match is None:
            raise ValueError(MSG_BAD_DURATION.format(text=text))
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not stripped:
        raise ValueError(MSG_BAD_DURATION.format(text=text))
    return timedelta(seconds=seconds)


# --- base --------------------------------------------------------------------------------


class KubeModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields kept for the round trip."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
    )

    def to_json(self) -> dict[str, Any]:
        """The document as Kubernetes stores it: camelCase, only the fields that were set."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


class ObjectMeta(KubeModel):
    """The parts of metav1.ObjectMeta we read; everything else round-trips untouched."""

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    generation: int | None = None


# --- parsing -----------------------------------------------------------------------------

M = TypeVar("M", bound=KubeModel)


def object_label(kind: str, doc: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` (or ``Kind name`` when cluster-scoped) for messages."""
    metadata = doc.get("metadata")
    meta = metadata if isinstance(metadata, Mapping) else {}
    name = meta.get("name") or "<unnamed>"
    namespace = meta.get("namespace")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's ``('spec', 'metrics', 0, 'count')`` as ``spec.metrics[0].count``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse(kind_model: type[M], doc: Mapping[str, Any]) -> M:
    """Validate ``doc`` as ``kind_model``; on bad input raise SpecError naming object and field.

    Example message:
    ``AnalysisTemplate ml-serving/x: spec.metrics[0].failureLimit: Input should be a valid integer``
    """
    try:
        return kind_model.model_validate(doc)
    except ValidationError as err:
        kind_field = kind_model.model_fields.get("kind")
        default_kind = kind_field.default if kind_field is not None else kind_model.__name__
        label = object_label(str(doc.get("kind") or default_kind), doc)
        details = "; ".join(f"{field_path(e['loc'])}: {e['msg']}" for e in err.errors())
        raise SpecError(f"{label}: {details}") from err
