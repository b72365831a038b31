"""The spool's configuration (``SpoolConfig``), checked when it is written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import attrs

from .. import _constants as C
from ..errors import ConfigurationError
from ..text import shown

Durability = Literal["sync", "group", "os"]
# SQLite's ``synchronous`` setting per durability.
SYNCHRONOUS = {"sync": "FULL", "group": "NORMAL", "os": "OFF"}


def _durability(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in SYNCHRONOUS:
        raise ConfigurationError(f"{attribute.name}: must be 'sync', 'group' or 'os', got {shown(value)}")


def _positive_int(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name}: must be a positive integer, got {shown(value)}")


def _interval(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.001 <= value <= 60:
        raise ConfigurationError(
            f"{attribute.name}: must be between 0.001 and 60 seconds, got {shown(value)}"
        )


@attrs.frozen
class SpoolConfig:
    """Where and how a background sender keeps its events on disk (``client.background(spool=...)``)."""

    directory: Path = attrs.field(converter=Path)
    max_bytes: int = attrs.field(default=C.DEFAULT_SPOOL_MAX_BYTES, validator=_positive_int)
    durability: Durability = attrs.field(default="group", validator=_durability)
    fsync_interval: float = attrs.field(default=C.DEFAULT_FSYNC_INTERVAL, validator=_interval)

    @classmethod
    def of(cls, spool: str | os.PathLike[str] | SpoolConfig) -> SpoolConfig:
        if isinstance(spool, SpoolConfig):
            return spool
        if isinstance(spool, str | os.PathLike):
            return cls(Path(spool))
        raise ConfigurationError(
            f"spool: must be a directory path or a SpoolConfig, got {type(spool).__name__}"
        )
