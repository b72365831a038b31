"""OpenTelemetry metrics: a bridge to the OpenTelemetry API, silent unless the application installs an SDK.

Install ``billing-events[otel]`` (``opentelemetry-api`` only). Nothing is recorded
until the application sets up an SDK ``MeterProvider``: the API's global provider
is a no-op that forwards to the SDK once one is set. Without the API installed,
every hook here does nothing. ``use_meter_provider(provider)`` points the
instruments at a provider other than the global one (tests, several SDKs).

The rest of the package calls only the hooks below, each once per batch,
request or settle, never once per ``track()``:

- ``settled(provider, counts)``: events that reached an outcome;
- ``retried(provider, events)``: events sent again after a wait;
- ``RequestMeter(provider, base_url).ended(...)``: one HTTP request, its status and duration;
- ``rate_budget_waited(provider, seconds)``: time spent waiting for the provider's rate budget;
- ``watch_queue`` / ``watch_spool``: depth gauges, read only when the SDK collects.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx

from . import __version__
from ._network import Progress
from ._transport import PROGRESS
from .outcomes import OutcomeStatus

try:
    from opentelemetry import metrics as otel
except ImportError:  # the `otel` extra is not installed: every hook stays a no-op
    otel = None  # type: ignore[assignment]

METER_NAME = "billing_events"

# Attribute keys: the semantic conventions' where they exist, ours under the package's prefix.
PROVIDER = "billing_events.provider"
OUTCOME = "billing_events.outcome"
QUEUE_KIND = "billing_events.queue"
METHOD = "http.request.method"
STATUS_CODE = "http.response.status_code"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
URL_SCHEME = "url.scheme"

# The semantic conventions' advised buckets for http.client.request.duration, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# Waits for rate budget run from a few milliseconds to the retry policy's cap of a minute.
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Depth = Callable[[Any], int]
Extensions = dict[str, Any]
T = TypeVar("T")


class _Watched:
    """Depth readers of live objects; an object that is garbage-collected drops out by itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: weakref.WeakKeyDictionary[Any, tuple[str, Depth]] = weakref.WeakKeyDictionary()

    def add(self, owner: object, provider: str, depth: Depth) -> None:
        with self._lock:
            self._readers[owner] = (provider, depth)

    def reset_lock(self) -> None:
        self._lock = threading.Lock()

    def discard(self, owner: object) -> None:
        with self._lock:
            self._readers.pop(owner, None)

    def totals(self) -> dict[str, int]:
        with self._lock:
            readers = list(self._readers.items())
        totals: dict[str, int] = {}
        for owner, (provider, depth) in readers:
            totals[provider] = totals.get(provider, 0) + depth(owner)
        return totals


_queues = _Watched()
_spools = _Watched()


def _reset_locks() -> None:
    # A lock the SDK's collecting thread held at a fork would stay held in the child forever.
    _queues.reset_lock()
    _spools.reset_lock()


os.register_at_fork(after_in_child=_reset_locks)


class _Instruments:
    """The instruments of one meter; rebuilt by ``use_meter_provider``."""

    def __init__(self, meter: Any) -> None:
        self.events = meter.create_counter(
            "billing_events.events", unit="{event}", description="Events that reached an outcome."
        )
        self.retried = meter.create_counter(
            "billing_events.events.retried",
            unit="{event}",
            description="Events sent again after a wait (429, 5xx, no answer).",
        )
        self.requests = meter.create_counter(
            "billing_events.requests",
            unit="{request}",
            description="HTTP requests to the provider, by status code or transport error.",
        )
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.rate_wait = meter.create_histogram(
            "billing_events.rate_budget.wait.duration",
            unit="s",
            description="Time spent waiting for the provider's rate budget before a request.",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )
        meter.create_observable_up_down_counter(
            "billing_events.queue.depth",
            callbacks=[_observe(_queues, "memory")],
            unit="{event}",
            description="Events queued in background senders, not yet sent.",
        )
        meter.create_observable_up_down_counter(
            "billing_events.spool.depth",
            callbacks=[_observe(_spools, "spool")],
            unit="{event}",
            description="Events held in durable spools, not yet sent.",
        )


def _observe(watched: _Watched, kind: str) -> Callable[[Any], Iterator[Any]]:
    def callback(_options: Any) -> Iterator[Any]:
        for provider, depth in watched.totals().items():
            yield otel.Observation(depth, {PROVIDER: provider, QUEUE_KIND: kind})

    return callback


def _global_instruments() -> _Instruments | None:
    # The global provider is a proxy until an SDK is set; its instruments forward from then on.
    return _Instruments(otel.get_meter(METER_NAME, __version__)) if otel is not None else None


# Made once: instruments registered twice under one name would make an SDK warn and drop the second.
_GLOBAL = _global_instruments()
_instruments: _Instruments | None = _GLOBAL


def use_meter_provider(provider: Any | None = None) -> None:
    """Record through ``provider`` (an SDK ``MeterProvider``); ``None``: the global one again.

    Without the ``otel`` extra this raises ``ImportError`` naming it.
    """
    global _instruments
    if otel is None:
        raise ImportError('billing_events.metrics needs the "otel" extra: pip install "billing-events[otel]"')
    _instruments = _GLOBAL if provider is None else _Instruments(provider.get_meter(METER_NAME, __version__))


# -- the hooks ----------------------------------------------------------------


def settled(provider: str, counts: Mapping[OutcomeStatus, int]) -> None:
    """Events that reached an outcome, counted by status; call once per settle, not per event."""
    instruments = _instruments
    if instruments is None:
        return
    for status, amount in counts.items():
        if amount:
            instruments.events.add(amount, {PROVIDER: provider, OUTCOME: status.value})


def retried(provider: str, events: int) -> None:
    """Events that will be sent again after a wait."""
    if _instruments is not None and events:
        _instruments.retried.add(events, {PROVIDER: provider})


def rate_budget_waited(provider: str, seconds: float) -> None:
    """Time a sending path waited for the provider's rate budget (the pacer calls this)."""
    if _instruments is not None:
        _instruments.rate_wait.record(seconds, {PROVIDER: provider})


def watch_queue(owner: object, provider: str, depth: Depth) -> None:
    """Report ``depth(owner)`` as the queue depth of ``owner`` while it lives; read at collection only."""
    _queues.add(owner, provider, depth)


def watch_spool(owner: object, provider: str, depth: Depth) -> None:
    """Report ``depth(owner)`` as the depth of a durable spool while ``owner`` lives."""
    _spools.add(owner, provider, depth)


def unwatch(owner: object) -> None:
    """Stop reporting the depth of ``owner`` (a closed sender or spool)."""
    _queues.discard(owner)
    _spools.discard(owner)


class RequestMeter:
    """Records the requests of one client: its attributes are worked out once, not per request."""

    __slots__ = ("_base",)

    def __init__(self, provider: str, base_url: str | httpx.URL) -> None:
        url = httpx.URL(str(base_url))
        port = url.port or (443 if url.scheme == "https" else 80)
        self._base: dict[str, str | int] = {
            PROVIDER: provider,
            SERVER_ADDRESS: url.host,
            SERVER_PORT: port,
            URL_SCHEME: url.scheme,
        }

    def ended(self, method: str, reply: httpx.Response | BaseException | int, seconds: float) -> None:
        """One request ended: with a response (or its status code), or with the exception it raised."""
        instruments = _instruments
        if instruments is None:
            return
        attributes: dict[str, str | int] = {**self._base, METHOD: method}
        status = reply.status_code if isinstance(reply, httpx.Response) else reply
        if isinstance(status, int):
            attributes[STATUS_CODE] = status
            if status >= 400:
                attributes[ERROR_TYPE] = str(status)
        else:
            attributes[ERROR_TYPE] = type(status).__qualname__
        instruments.requests.add(1, attributes)
        instruments.duration.record(seconds, attributes)

    def timed(self, method: str, call: Callable[[Extensions], T]) -> T:
        """``call(extensions)``, recorded as one request (a generated operation: its response has
        ``status_code``). The request must carry ``extensions``: its transport marks there when it took the
        request, so its time leaves out the wait for the rate budget (``Progress.seconds``)."""
        progress = Progress()
        try:
            result = call({PROGRESS: progress})
        except Exception as exc:
            self.ended(method, _status_of(exc), progress.seconds())
            raise
        self.ended(method, _status_of(result), progress.seconds())
        return result

    async def atimed(self, method: str, call: Callable[[Extensions], Awaitable[T]]) -> T:
        """``await call(extensions)``, recorded as one request (see ``timed``)."""
        progress = Progress()
        try:
            result = await call({PROGRESS: progress})
        except Exception as exc:
            self.ended(method, _status_of(exc), progress.seconds())
            raise
        self.ended(method, _status_of(result), progress.seconds())
        return result


def _status_of(reply: object) -> int | BaseException:
    """The status code of a response or of an unexpected-status error; else the exception itself."""
    status = getattr(reply, "status_code", None)
    if isinstance(status, int):
        return int(status)
    if isinstance(reply, BaseException):
        return reply
    return ValueError("no status code")
