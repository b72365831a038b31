"""The providers' rate limits: a token bucket per account and endpoint group, and per-second counters.

Each account (a Togai account, a Lago organization) has one bucket per endpoint group, shared by all its
API keys; the mock has one account, named by its main token, to which Lago's restricted key belongs too.
A bucket holds up to `burst_seconds` of its group's rate and refills continuously. A request that finds a
whole token takes it; one that does not is answered 429 before anything is stored. The limits are off
unless the mock is started with them (`MOCK_RATE_LIMITS`, `MockConfig.rate_limits`) or switched on
through `PUT /_mock/rate_limits`; when on, each group defaults to its published limit.

Lago answers every limited request with `X-RateLimit-Limit`, `X-RateLimit-Remaining` (whole tokens left)
and `X-RateLimit-Reset` (whole seconds until the bucket is full again), its 429s too: Lago's rate-limit
page names these three headers and no `Retry-After`, so clients must wait by `X-RateLimit-Reset`.
Togai documents no such headers: its 429 carries `Retry-After` alone.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from attrs import evolve, field, frozen
from starlette.requests import Request
from starlette.responses import Response

from billing_events.mock.auth import presented_key
from billing_events.mock.bodies import BodyRejected, read_settings
from billing_events.mock.errors import Provider, lago_error, togai_error
from billing_events.mock.jsonio import JsonResponse
from billing_events.text import shown

Endpoint = Callable[[Request], Awaitable[Response]]

# Published limits in requests per second, by endpoint group (the handler's name).
PUBLISHED_LIMITS: Mapping[str, float] = {
    "togai.ingest": 50,
    "togai.ingest_batch": 50,
    "lago.create_event": 500,
    "lago.create_batch_events": 500,
    "lago.estimate_fees": 50,
    "lago.find_event": 50,
}
# How many past seconds of counters the mock keeps.
COUNTER_SECONDS = 600


class RateLimitConfigError(ValueError):
    """A rate-limit setting that is unknown or breaks a rule."""


def _limits(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise RateLimitConfigError("limits: must be an object of group -> requests per second")
    checked: dict[str, float] = {}
    for group, rate in value.items():
        if group not in PUBLISHED_LIMITS:
            known = ", ".join(PUBLISHED_LIMITS)
            raise RateLimitConfigError(f"limits: unknown group {group!r}; the groups are {known}")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
            raise RateLimitConfigError(f"limits.{group}: must be a positive number, got {shown(rate)}")
        checked[group] = float(rate)
    return checked


def _burst(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 60:
        raise RateLimitConfigError(f"burst_seconds: must be a number in (0, 60], got {shown(value)}")
    return float(value)


def _enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise RateLimitConfigError(f"enabled: must be true or false, got {shown(value)}")
    return value


@frozen
class RateLimitConfig:
    """Whether the limits apply, the rate of each group that differs from its published limit, the burst."""

    enabled: bool = field(default=False, converter=_enabled)
    limits: dict[str, float] = field(factory=dict, converter=_limits)
    # A full bucket holds this many seconds of the group's rate.
    burst_seconds: float = field(default=1.0, converter=_burst)

    def limit_of(self, group: str) -> float:
        return self.limits.get(group, PUBLISHED_LIMITS[group])

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "limits": {group: self.limit_of(group) for group in PUBLISHED_LIMITS},
            "burst_seconds": self.burst_seconds,
        }

    def updated(self, changes: Mapping[str, object]) -> RateLimitConfig:
        unknown = sorted(set(changes) - {"enabled", "limits", "burst_seconds"})
        if unknown:
            raise RateLimitConfigError(f"unknown rate-limit setting(s): {', '.join(unknown)}")
        merged: dict[str, Any] = {
            "enabled": self.enabled,
            "limits": self.limits,
            "burst_seconds": self.burst_seconds,
        }
        if "limits" in changes:
            merged["limits"] = {**self.limits, **_limits(changes["limits"])}
        merged.update({name: changes[name] for name in ("enabled", "burst_seconds") if name in changes})
        return evolve(self, **merged)

    @classmethod
    def from_text(cls, text: str) -> RateLimitConfig:
        """`MOCK_RATE_LIMITS`: `on` (the published limits), `off`, or a JSON object of settings."""
        if text.strip().lower() in ("on", "published"):
            return cls(enabled=True)
        if text.strip().lower() == "off":
            return cls()
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RateLimitConfigError(f"rate limits are not `on`, `off` or JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RateLimitConfigError("rate limits must be a JSON object")
        return cls(enabled=True).updated(data)


@frozen
class Verdict:
    """The limiter's answer to one request, and the headers that go with it."""

    allowed: bool
    limit: float
    remaining: int
    reset: int
    retry_after: int

    def lago_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": f"{self.limit:g}",
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


# Togai's requests without a valid token: 5 per 30 minutes from one IP, a limit Togai does not raise
# (docs.togai.com, "Quotas and limits"). Their buckets go by the client's address.
UNAUTHENTICATED_BURST = 5.0
UNAUTHENTICATED_RATE = UNAUTHENTICATED_BURST / 1800
# Addresses' buckets kept at most: addresses come from the network, so their count must not grow without bound.
MAX_BUCKETS = 10_000


class RateLimiter:
    """Token buckets per (account, group) and per-second counts of accepted and throttled requests."""

    def __init__(self, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._startup = config
        self._config = config
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        # Togai's buckets of requests without a valid token, by client address (at most MAX_BUCKETS).
        self._addresses: dict[str, tuple[float, float]] = {}
        self._seconds: dict[int, dict[str, list[int]]] = {}

    @property
    def config(self) -> RateLimitConfig:
        with self._lock:
            return self._config

    def update(self, changes: Mapping[str, object]) -> RateLimitConfig:
        with self._lock:
            self._config = self._config.updated(changes)
            self._buckets.clear()  # new rates start from full buckets
            self._addresses.clear()
            return self._config

    def reset(self) -> None:
        with self._lock:
            self._config = self._startup
            self._buckets.clear()
            self._addresses.clear()
            self._seconds.clear()

    def admit(self, account: str, group: str) -> Verdict | None:
        """Take a token of the account's bucket for one request; None when the limits are off."""
        with self._lock:
            config = self._config
            if not config.enabled:
                return None
            rate = config.limit_of(group)
            verdict = self._take(self._buckets, (account, group), rate, max(1.0, rate * config.burst_seconds))
            self._count(group, verdict.allowed)
            return verdict

    def admit_unauthenticated(self, address: str, group: str) -> Verdict | None:
        """Take a token of the client address's bucket for a request without a known token (Togai: 5 per 30
        minutes per IP, not adjustable); None when the limits are off."""
        with self._lock:
            if not self._config.enabled:
                return None
            buckets = self._addresses
            if address not in buckets and len(buckets) >= MAX_BUCKETS:
                # The oldest address's bucket: memory stays bounded, and no token's bucket is touched.
                del buckets[next(iter(buckets))]
            verdict = self._take(buckets, address, UNAUTHENTICATED_RATE, UNAUTHENTICATED_BURST)
            if not verdict.allowed:
                # Only the 429s are counted: the others are answered 401, never accepted.
                self._count(group, allowed=False)
            return verdict

    def _take(
        self, buckets: dict[Any, tuple[float, float]], key: object, rate: float, capacity: float
    ) -> Verdict:
        """With the lock held: one token of ``buckets[key]``, and the verdict."""
        now = self._clock()
        tokens, then = buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - then) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        buckets[key] = (tokens, now)
        retry_after = max(1, math.ceil((1.0 - tokens) / rate))
        return Verdict(
            allowed=allowed,
            limit=rate,
            remaining=math.floor(tokens),
            # Until the bucket is full again; on a 429, until the next request may pass (Lago's only wait).
            reset=math.ceil((capacity - tokens) / rate) if allowed else retry_after,
            retry_after=retry_after,
        )

    def _count(self, group: str, allowed: bool) -> None:
        second = int(time.time())
        groups = self._seconds.setdefault(second, {})
        groups.setdefault(group, [0, 0])[0 if allowed else 1] += 1
        if len(self._seconds) > COUNTER_SECONDS:
            del self._seconds[min(self._seconds)]

    def counters(self) -> dict[str, Any]:
        """Per wall-clock second (Unix time), per group: accepted and throttled requests."""
        with self._lock:
            seconds = {
                str(second): {group: {"accepted": a, "throttled": t} for group, (a, t) in groups.items()}
                for second, groups in sorted(self._seconds.items())
            }
            return {"config": self._config.to_dict(), "seconds": seconds}


def limiter_of(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


def rate_limited(provider: Provider, group: str, endpoint: Endpoint) -> Endpoint:
    """Wrap a public endpoint: a request with a key the provider accepts takes a token of its account's bucket
    for the group, or gets 429."""

    async def limited(request: Request) -> Response:
        config = request.app.state.mock.config
        token = presented_key(request, provider)
        limiter = limiter_of(request)
        # The restricted key is a Lago key only: Togai answers it 401, like any unknown token.
        keys = (config.token, config.restricted_token) if provider is Provider.LAGO else (config.token,)
        if token is None or token not in keys:
            # The endpoint answers 401. Togai limits such requests by the client's address; Lago publishes
            # no such limit. An unknown token never gets a bucket of its own: they cannot grow without bound.
            if provider is Provider.TOGAI:
                address = request.client.host if request.client is not None else ""
                verdict = limiter.admit_unauthenticated(address, group)
                if verdict is not None and not verdict.allowed:
                    return togai_error(429, "Request throttled", {"Retry-After": str(verdict.retry_after)})
            return await endpoint(request)
        # Every key the mock accepts belongs to its one account (the Lago store's organization is the main
        # token too): Lago's limits are per organization, shared by all its keys, so they share its buckets.
        verdict = limiter.admit(config.token, group)
        if verdict is None:
            return await endpoint(request)
        if not verdict.allowed:
            if provider is Provider.LAGO:
                return lago_error(429, verdict.lago_headers())
            return togai_error(429, "Request throttled", {"Retry-After": str(verdict.retry_after)})
        response = await endpoint(request)
        if provider is Provider.LAGO:
            # Only the headers the answer lacks: a fault's 429 keeps its own (Remaining 0, Reset its wait).
            for name, value in verdict.lago_headers().items():
                response.headers.setdefault(name, value)
        return response

    limited.__name__ = getattr(endpoint, "__name__", group)
    return limited


async def rate_limits_route(request: Request) -> Response:
    """GET: the settings and the per-second counters; PUT: change some settings (buckets start full)."""
    limiter = limiter_of(request)
    if request.method == "PUT":
        try:
            changes = await read_settings(request)
        except BodyRejected as rejection:
            return togai_error(400, rejection.detail)
        if not isinstance(changes, dict):
            return togai_error(400, "the rate-limit settings must be a JSON object")
        try:
            limiter.update(changes)
        except RateLimitConfigError as exc:
            return togai_error(400, str(exc))
    return JsonResponse(limiter.counters())
