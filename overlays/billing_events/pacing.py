"""Pacing to the provider's rate budget: one piece every request of a client goes through.

The pacer sits in the client's httpx event hooks, so ``send()``, both background senders, the CLI and
the request-response calls are paced alike: ``acquire`` before each request, ``observe`` after its
answer. (Hooks rather than a transport: a client given its own transport would lose proxies from the
environment.)

- **Budget.** Each endpoint has its own budget, as at the providers. A request takes a slot of its
  endpoint's budget (GCRA, see ``budgets.py``) and waits for it, never longer than ``max_wait``: past
  that it fails as never sent (``BudgetTimeout``) and the retry policy takes over.
  Slots are first come, first served: a retry and a new batch queue alike, and each waits at most
  ``max_wait``, so neither can starve the other past a deadline. A wait cut short (a cancelled task,
  Ctrl-C) gives its slot back when nobody booked one since, so the requests behind it never wait for a
  slot nobody used; under later bookings it is lost (a short wait), never handed out twice (a burst).
- **Adaptive pace.** The pace starts at the ceiling (``max_requests_per_second``) and:
  - halves on a 429, once per round (answers to requests sent before the last cut, or within
    ``CUT_SPACING`` of it, do not cut again);
  - when the server sends ``X-RateLimit-Remaining`` and ``X-RateLimit-Limit`` (Lago), follows the
    server's bucket: over each ``BUCKET_WINDOW`` its fall plus its refill is the whole fleet's rate;
    once the bucket is below half full and that rate above the target, the pace is scaled by
    target/rate before the bucket runs out. Every process sees the same bucket and scales alike;
  - takes ``X-RateLimit-Limit`` below the ceiling as the new ceiling (never below ``MIN_ANNOUNCED_LIMIT``);
  - otherwise climbs back by ``RECOVERY_PER_SECOND`` of the ceiling per second.
- **Sharing.** ``rate_budget`` puts the budget in a SQLite file (processes of one host) or in Redis
  (a fleet). Without it, processes pace independently and AIMD makes them converge near the budget.

Why not pyrate-limiter or limits: both enforce a fixed rate chosen up front and keep a log or window
of requests; neither can change the rate per request from the server's answers (AIMD, Remaining,
Limit), nor hand out first-come slots across processes with one atomic step, so we roll a small GCRA.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from . import _constants as C
from . import metrics
from ._logs import log_safely
from ._transport import deadline_of, stop_of
from .budgets import Budget, MemoryBudget, give_back, open_budget
from .config import ENDPOINTS, ClientConfig
from .errors import ConfigurationError
from .text import shorten, shown

log = logging.getLogger("billing_events.client")

PUBLISHED_LIMITS = {"togai": C.TOGAI_RATE_LIMITS, "lago": C.LAGO_RATE_LIMITS}

# AIMD constants.
CUT_ON_429 = 0.5
RECOVERY_PER_SECOND = 0.1  # of the ceiling
# Reading the server's bucket: over each window, how fast X-RateLimit-Remaining falls gives the
# fleet's rate; the fleet aims at the limit while the bucket is at least half full, and lower as it
# empties (80% of the limit when empty), so that it fills again.
BUCKET_WINDOW = 0.3
HALF_BUCKET = 0.5  # of X-RateLimit-Limit
EMPTY_BUCKET_TARGET = 0.8
FLOOR = 0.02  # of the ceiling: the pace never falls below this
# The slowest pace a user may give, in requests per second: about one a month.
MIN_PACE = 4e-7
# An announced X-RateLimit-Limit below this (requests/s) is not taken as a ceiling: no provider limits
# so low, and a broken or hostile server's "0.001" would leave one request every 1,000 s for good.
MIN_ANNOUNCED_LIMIT = 1.0
# A round: the server's bucket needs a moment to show the effect of a cut, so cuts are this far apart.
CUT_SPACING = 0.1
# Slots a paced sender may take at once after a pause (GCRA burst), in seconds of its pace.
BURST_SECONDS = 0.1


# The budget of every endpoint not named in a pacer's ceilings (matches the "*" of _constants).
OTHER = "*"


class BudgetTimeout(httpx.PoolTimeout):
    """No slot of the rate budget within the wait bound; the request never left."""


class Lane:
    """The pace of one endpoint: its ceiling, its current pace and its AIMD state."""

    __slots__ = ("ceiling", "last_cut", "last_rise", "pace", "sample")

    def __init__(self, ceiling: float) -> None:
        self.ceiling = ceiling
        self.pace = ceiling
        self.last_cut = 0.0
        self.last_rise = time.monotonic()
        self.sample: tuple[float, float] | None = None  # (when, X-RateLimit-Remaining)

    def cut(self, factor: float, sent_at: float, now: float) -> None:
        if sent_at < self.last_cut or now - self.last_cut < CUT_SPACING:
            return  # this answer belongs to a round already cut for
        self.pace = max(self.ceiling * FLOOR, self.pace * factor)
        self.last_cut = self.last_rise = now

    def read_bucket(self, limit: float, remaining: float, now: float) -> None:
        """Steer by the server's bucket: the fleet's rate is the refill minus the bucket's change."""
        if self.sample is None:
            self.sample = (now, remaining)
            return
        then, before = self.sample
        if now - then < BUCKET_WINDOW:
            return
        self.sample = (now, remaining)
        fleet = limit - (remaining - before) / (now - then)
        level = min(1.0, remaining / limit / HALF_BUCKET)
        target = limit * (EMPTY_BUCKET_TARGET + (1.0 - EMPTY_BUCKET_TARGET) * level)
        if level < 1.0 and fleet > target:
            # Every process of the fleet sees the same bucket and scales by the same factor.
            self.pace = max(self.ceiling * FLOOR, self.pace * target / fleet)
            self.last_rise = now
        else:
            self.rise(now)

    def rise(self, now: float) -> None:
        if self.pace < self.ceiling:
            self.pace = min(
                self.ceiling, self.pace + self.ceiling * RECOVERY_PER_SECOND * (now - self.last_rise)
            )
        self.last_rise = now


class Pacer:
    """Paces the requests of one client, per endpoint, adaptively; with no ceiling it only counts 429s."""

    def __init__(
        self,
        ceilings: Mapping[str, float] | None,
        budget: Budget | None = None,
        *,
        base_path: str = "",
        main_endpoint: str = "",
        max_wait: float = 10.0,
        provider: str = "",
    ) -> None:
        # Endpoint (path under the base URL, or OTHER) -> requests per second; None: no pacing.
        self.ceilings = dict(ceilings) if ceilings is not None else None
        self.budget = budget if budget is not None else open_budget(None)
        self.base_path = base_path.rstrip("/")
        self.main_endpoint = main_endpoint
        self.max_wait = max_wait
        self.provider = provider
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._lanes: dict[str, Lane] = {}
        self.waited = 0.0
        self.throttled = 0
        self._local = MemoryBudget()
        self._budget_warned = False

    def group_of(self, path: str) -> str:
        """The endpoint a request path belongs to: each has its own budget at the provider."""
        if self.ceilings is not None and path.startswith(self.base_path):
            endpoint = path[len(self.base_path) :]
            if endpoint in self.ceilings:
                return endpoint
        return OTHER

    def _lane(self, group: str) -> Lane | None:
        # First, paced or not: observe() takes the lock even when nothing is paced.
        if self._pid != os.getpid():
            self._lock, self._pid = threading.Lock(), os.getpid()  # a lock held at fork stays held
        if self.ceilings is None:
            return None
        lane = self._lanes.get(group)
        if lane is None:
            ceiling = self.ceilings.get(group) or self.ceilings.get(OTHER) or max(self.ceilings.values())
            lane = self._lanes.setdefault(group, Lane(ceiling))
        return lane

    @property
    def pace(self) -> float | None:
        """The current pace of the event endpoint in requests per second; None when unpaced."""
        lane = self._lane(self.group_of(self.base_path + self.main_endpoint))
        return None if lane is None else lane.pace

    def _interval(self, group: str) -> float | None:
        lane = self._lane(group)
        return None if lane is None else 1.0 / lane.pace

    @staticmethod
    def _burst(interval: float) -> float:
        """Requests that may go at once after a pause: BURST_SECONDS of pace, at least one."""
        return max(1.0, BURST_SECONDS / interval)

    def _waited(self, wait: float) -> None:
        if wait > 0:
            with self._lock:
                self.waited += wait
            metrics.rate_budget_waited(self.provider, wait)

    def _max_wait(self, group: str, deadline: float | None) -> float:
        """How long a request may wait for its slot: the request timeout, within the call's deadline."""
        if deadline is None:
            return self.max_wait
        left = deadline - time.monotonic()
        if left <= 0:
            raise BudgetTimeout(f"no time left for a rate budget slot of {group}")
        return min(self.max_wait, left)

    def _budget_failed(self, exc: Exception) -> None:
        # A broken budget store must not hold events back: pace on our own until it answers again.
        if not self._budget_warned:
            self._budget_warned = True
            log_safely(
                log.warning, "rate budget %s failed (%s); pacing locally", self.budget.name, shorten(str(exc))
            )

    def acquire(
        self, group: str, deadline: float | None = None, stop: threading.Event | None = None
    ) -> float:
        """Wait for a slot of the endpoint's budget; the moment the request may leave (monotonic).

        ``stop`` set during the wait (a thread sender's close deadline) gives the slot back and raises
        ``BudgetTimeout``: the request never left, so its events end ``failed``."""
        interval = self._interval(group)
        if interval is None:
            return time.monotonic()
        max_wait = self._max_wait(group, deadline)
        burst = interval * self._burst(interval)
        store: Budget = self.budget
        try:
            booking = store.reserve(group, interval, burst, max_wait)
        except Exception as exc:
            self._budget_failed(exc)
            store = self._local
            booking = store.reserve(group, interval, burst, max_wait)
        if booking is None:
            raise BudgetTimeout(f"no rate budget for {group} within {max_wait:g}s")
        self._waited(booking.wait)
        if booking.wait > 0:
            try:
                stopped = _sleep(booking.wait, stop)
            except BaseException:  # Ctrl-C, or a signal handler's exception: the slot goes back to its store
                give_back(store, group, interval, booking)
                raise
            if stopped:
                give_back(store, group, interval, booking)
                raise BudgetTimeout(f"stopped while waiting for a rate budget slot of {group}")
        return time.monotonic()

    async def aacquire(self, group: str, deadline: float | None = None) -> float:
        interval = self._interval(group)
        if interval is None:
            return time.monotonic()
        max_wait = self._max_wait(group, deadline)
        burst = interval * self._burst(interval)
        store: Budget = self.budget
        try:
            booking = await store.areserve(group, interval, burst, max_wait)
        except Exception as exc:
            self._budget_failed(exc)
            store = self._local
            booking = await store.areserve(group, interval, burst, max_wait)
        if booking is None:
            raise BudgetTimeout(f"no rate budget for {group} within {max_wait:g}s")
        self._waited(booking.wait)
        if booking.wait > 0:
            try:
                await asyncio.sleep(booking.wait)
            except (
                BaseException
            ):  # cancelled (by the caller, or a timeout around the send): the slot goes back
                give_back(store, group, interval, booking)
                raise
        return time.monotonic()

    def observe(self, group: str, sent_at: float, status: int, headers: httpx.Headers) -> None:
        """Adapt the pace of the endpoint to one answer."""
        now = time.monotonic()
        limit = _number(headers.get("x-ratelimit-limit"))
        remaining = _number(headers.get("x-ratelimit-remaining"))
        lane = self._lane(group)
        with self._lock:
            if status == 429:
                self.throttled += 1
            if lane is None:
                return
            if limit is not None and MIN_ANNOUNCED_LIMIT <= limit < lane.ceiling:
                lane.ceiling = limit  # the server announces a lower budget than ours
                lane.pace = min(lane.pace, limit)
            if status == 429:
                lane.cut(CUT_ON_429, sent_at, now)
            elif limit is not None and remaining is not None and limit >= MIN_ANNOUNCED_LIMIT:
                # A limit below that is no provider's (ignored above): its bucket says nothing either.
                lane.read_bucket(limit, remaining, now)
            else:
                lane.rise(now)


def _sleep(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep ``seconds``, or until ``stop`` is set: whether it was."""
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


# Where a request keeps the moment it left, for the answer's observe().
SENT_AT = "billing_events.sent_at"


def _observe(pacer: Pacer, response: httpx.Response) -> None:
    request = response.request
    pacer.observe(
        pacer.group_of(request.url.path),
        request.extensions.get(SENT_AT, 0.0),
        response.status_code,
        response.headers,
    )


def event_hooks(pacer: Pacer) -> dict[str, list[Callable[..., Any]]]:
    """httpx event hooks of a sync client: every request waits for its budget, every answer adapts."""

    def before(request: httpx.Request) -> None:
        request.extensions[SENT_AT] = pacer.acquire(
            pacer.group_of(request.url.path), deadline_of(request), stop_of(request)
        )

    def after(response: httpx.Response) -> None:
        _observe(pacer, response)

    return {"request": [before], "response": [after]}


def async_event_hooks(pacer: Pacer) -> dict[str, list[Callable[..., Any]]]:
    """The asyncio twin of ``event_hooks``."""

    async def before(request: httpx.Request) -> None:
        request.extensions[SENT_AT] = await pacer.aacquire(
            pacer.group_of(request.url.path), deadline_of(request)
        )

    async def after(response: httpx.Response) -> None:
        _observe(pacer, response)

    return {"request": [before], "response": [after]}


def _pace(rate: object) -> float:
    """A pace a user gave, as a float; ConfigurationError naming the option for any other value.

    Below ``MIN_PACE`` the time between two requests (and the floor a lane's cuts reach) would overflow
    to infinity and pace nothing; an int beyond a float's range has no float at all.
    """
    pace = None
    if isinstance(rate, int | float) and not isinstance(rate, bool):
        with contextlib.suppress(OverflowError):
            pace = float(rate)
    if pace is None or not MIN_PACE <= pace < math.inf:
        raise ConfigurationError(
            f"max_requests_per_second: must be a number of requests per second from {MIN_PACE:g}"
            f" (one a month) up, or None for no pacing, got {shown(rate)}"
        )
    return pace


class PublishedPace(enum.Enum):
    """The default of ``max_requests_per_second``: the provider's published limits."""

    PUBLISHED = "published"


PUBLISHED = PublishedPace.PUBLISHED


def make_pacer(
    config: ClientConfig,
    batch_path: str,
    max_requests_per_second: float | PublishedPace | None,
    rate_budget: str | None,
) -> Pacer:
    """The pacer of a client.

    By default a client of the provider's own endpoints paces to the published limits, and a client of
    a custom ``base_url`` (a self-hosted Lago, a proxy, a mock) is not paced: a self-hosted Lago has no
    rate limiter, so any default would only slow it. A number paces every endpoint to that many requests
    per second; None turns pacing off (429s are still counted).
    """
    ceilings: dict[str, float] | None
    if max_requests_per_second is PUBLISHED:
        public = config.base_url in ENDPOINTS[config.provider].values()
        ceilings = dict(PUBLISHED_LIMITS[config.provider]) if public else None
        if ceilings is not None:
            ceilings.setdefault(batch_path, ceilings[OTHER])
    elif max_requests_per_second is None:
        ceilings = None
    else:
        rate = _pace(max_requests_per_second)
        ceilings = {batch_path: rate, OTHER: rate}
    if rate_budget is not None and ceilings is None:
        raise ConfigurationError(
            "rate_budget: a shared budget needs a pace; pass max_requests_per_second (this base_url has no default)"
        )
    return Pacer(
        ceilings,
        open_budget(rate_budget),
        base_path=httpx.URL(config.base_url).path,
        main_endpoint=batch_path,
        max_wait=config.timeout,
        provider=config.provider,
    )
