"""Configuration objects of the mock server: fault injection and start-up settings."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import field, frozen
from attrs.validators import ge, in_, instance_of, optional

from billing_events.mock.ratelimit import RateLimitConfig
from billing_events.text import shown

# Events one store keeps unless told otherwise (MockConfig.max_events). A stored Togai event takes about
# 1.9 KB of memory with 3 attributes and 4 dimensions, 5.8 KB with 10 of each; a Lago event about 0.85 KB.
DEFAULT_MAX_EVENTS = 1_000_000

PACKAGE_DIR = Path(__file__).resolve().parent
# JSON copies of specs/*.yaml written by `make regenerate`, so an installed wheel finds them.
DEFAULT_SPECS_DIR = PACKAGE_DIR / "specs"
DEFAULT_CATALOGUE = PACKAGE_DIR / "catalogue.json"
DEFAULT_TOKEN = "test-token"
# Where each API is served: base URLs are http://<host>:<port>/togai and http://<host>:<port>/lago/api/v1.
TOGAI_PREFIX = "/togai"
LAGO_PREFIX = "/lago/api/v1"
# Lago's two event stores: Postgres refuses a repeated key at write time, ClickHouse deduplicates at read time.
LAGO_STORES = ("postgres", "clickhouse")
# uvicorn picks httptools and uvloop when they are installed; the mock names its stack, so it parses
# requests the same way wherever it runs.
SERVER_STACK: dict[str, Any] = {"http": "h11", "loop": "asyncio"}

RATE_NAMES = ("rate_429", "rate_503", "rate_drop", "rate_lost_response", "rate_gateway", "rate_html_ok")
INTEGER_NAMES = ("latency_ms", "retry_after", "seed", "gateway_status")
BOOLEAN_NAMES = ("togai_207_detail",)


class FaultConfigError(ValueError):
    """A fault configuration that names an unknown setting or breaks a rule."""


def _is_rate(_instance: object, attribute: Any, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, float) or not 0.0 <= value <= 1.0:
        raise FaultConfigError(f"{attribute.name}: must be a number between 0 and 1, got {shown(value)}")


def _to_rate(value: object) -> object:
    # Integers 0 and 1 are legitimate rates in JSON; everything else is checked by the validator.
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _is_plain_int(_instance: object, attribute: Any, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FaultConfigError(f"{attribute.name}: must be an integer, got {shown(value)}")


def _is_server_error(_instance: object, attribute: Any, value: int) -> None:
    if not 500 <= value <= 599:
        raise FaultConfigError(f"{attribute.name}: must be a 5xx status, got {shown(value)}")


def _is_bool(_instance: object, attribute: Any, value: object) -> None:
    if not isinstance(value, bool):
        raise FaultConfigError(f"{attribute.name}: must be true or false, got {shown(value)}")


@frozen
class FaultConfig:
    """Which faults the public routes inject, and how often; every request draws once from a seeded RNG."""

    latency_ms: int = field(default=0, validator=[_is_plain_int, ge(0)])
    rate_429: float = field(default=0.0, converter=_to_rate, validator=_is_rate)
    rate_503: float = field(default=0.0, converter=_to_rate, validator=_is_rate)
    rate_drop: float = field(default=0.0, converter=_to_rate, validator=_is_rate)
    rate_lost_response: float = field(default=0.0, converter=_to_rate, validator=_is_rate)
    # A gateway's own error page (Cloudflare's 520/524 and the like), before the request reaches the API.
    rate_gateway: float = field(default=0.0, converter=_to_rate, validator=_is_rate)
    # 200 with an HTML page (a captive portal or a misrouted proxy) that never reached the API.
    rate_html_ok: float = field(default=0.0, converter=_to_rate, validator=_is_rate)
    retry_after: int = field(default=1, validator=[_is_plain_int, ge(0)])
    seed: int = field(default=0, validator=_is_plain_int)
    gateway_status: int = field(default=520, validator=[_is_plain_int, _is_server_error])
    # False (the default): a Togai 207 has no `details.rejectedEvents`, as real Togai sends none; True: our own shape.
    togai_207_detail: bool = field(default=False, validator=_is_bool)

    def __attrs_post_init__(self) -> None:
        total = math.fsum(self.rates())
        # A small tolerance: 0.1 + 0.2 + 0.7 must be accepted even though it sums to 1.0000000000000002.
        if total > 1.0 + 1e-9:
            raise FaultConfigError(f"{' + '.join(RATE_NAMES)} must be at most 1, got {total}")

    def rates(self) -> tuple[float, ...]:
        """In the order of `faults.Fault`, whose draws take consecutive slices of [0, 1)."""
        return tuple(getattr(self, name) for name in RATE_NAMES)

    def to_dict(self) -> dict[str, int | float | bool]:
        return {
            "latency_ms": self.latency_ms,
            "rate_429": self.rate_429,
            "rate_503": self.rate_503,
            "rate_drop": self.rate_drop,
            "rate_lost_response": self.rate_lost_response,
            "rate_gateway": self.rate_gateway,
            "rate_html_ok": self.rate_html_ok,
            "retry_after": self.retry_after,
            "seed": self.seed,
            "gateway_status": self.gateway_status,
            "togai_207_detail": self.togai_207_detail,
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> FaultConfig:
        unknown = sorted(set(data) - set(RATE_NAMES) - set(INTEGER_NAMES) - set(BOOLEAN_NAMES))
        if unknown:
            raise FaultConfigError(f"unknown fault setting(s): {', '.join(unknown)}")
        try:
            return cls(**data)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise FaultConfigError(str(exc)) from exc

    @classmethod
    def from_json(cls, text: str) -> FaultConfig:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise FaultConfigError(f"fault configuration is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise FaultConfigError("fault configuration must be a JSON object")
        return cls.from_mapping(data)

    def updated(self, changes: Mapping[str, object]) -> FaultConfig:
        """A copy with some settings replaced; used by `PUT /_mock/faults`."""
        return self.from_mapping({**self.to_dict(), **changes})


@frozen
class MockConfig:
    """Start-up settings of one mock server instance."""

    token: str = field(default=DEFAULT_TOKEN, validator=instance_of(str))
    faults: FaultConfig = field(factory=FaultConfig, validator=instance_of(FaultConfig))
    catalogue_path: Path = field(default=DEFAULT_CATALOGUE, converter=Path)
    # False skips the JSON Schema checks of event fields (limits, envelopes and duplicates still apply).
    validate: bool = field(default=True, validator=instance_of(bool))
    specs_dir: Path = field(default=DEFAULT_SPECS_DIR, converter=Path)
    # Which of Lago's event stores the mock behaves like (see stores.py).
    lago_store: str = field(default="postgres", validator=in_(LAGO_STORES))
    # A second Lago API key that may read but not write events: writes get 403 write_action_not_allowed_for_event.
    restricted_token: str | None = field(default=None, validator=optional(instance_of(str)))
    # The providers' rate limits (see ratelimit.py); off unless asked for.
    rate_limits: RateLimitConfig = field(factory=RateLimitConfig, validator=instance_of(RateLimitConfig))
    # Events each provider's store keeps; a request that would store more is answered 503 (None: no limit).
    max_events: int | None = DEFAULT_MAX_EVENTS

    def __attrs_post_init__(self) -> None:
        if not self.token:
            raise ValueError("token: must not be empty")
        if self.max_events is not None and (
            type(self.max_events) is not int or self.max_events < 1  # bool is no count
        ):
            raise ValueError(f"max_events: must be a positive int or None, got {self.max_events!r:.40}")
        if self.restricted_token is not None and self.restricted_token in ("", self.token):
            raise ValueError("restricted_token: must be non-empty and differ from token")
