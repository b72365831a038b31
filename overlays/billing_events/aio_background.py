"""The asyncio background sender: ``track()`` queues, a task sends with several requests in flight.

It lives on one event loop: call ``track()`` from that loop's thread. ``track()``
never awaits; with ``on_full="block"`` a full queue raises ``QueueFullError`` at
once, and ``await atrack(event)`` waits up to ``block_timeout`` for room instead.
Use it as ``async with``: an event loop cannot run at interpreter exit, so
``close()`` is the way queued events get out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal, Protocol

import httpx

from . import _constants as C
from .deadletter import OutcomeCallback
from .delivery import AsyncDelivery
from .errors import ConfigurationError, QueueFullError, SenderClosedError
from .outcomes import OutcomeStatus
from .providers import Pending, Settled
from .queueing import SenderOptions, past_deadline
from .sender_core import SenderClient, SenderCore
from .stats import Stats

log = logging.getLogger("billing_events")


class AsyncSenderClient(SenderClient, Protocol):
    """An asyncio client, as the asyncio sender sees it."""

    @property
    def http(self) -> httpx.AsyncClient: ...

    @property
    def max_in_flight(self) -> int: ...


class AsyncBackgroundSender(SenderCore):
    def __init__(
        self,
        client: AsyncSenderClient,
        *,
        max_queue_events: int = C.DEFAULT_MAX_QUEUE_EVENTS,
        max_queue_bytes: int = C.DEFAULT_MAX_QUEUE_BYTES,
        on_full: Literal["block", "drop"] = "block",
        block_timeout: float = C.DEFAULT_BLOCK_TIMEOUT,
        flush_interval: float = C.DEFAULT_FLUSH_INTERVAL,
        flush_at_events: int | None = None,
        flush_at_bytes: int | None = None,
        max_in_flight: int | None = None,
        on_outcome: OutcomeCallback | None = None,
        on_drop: OutcomeCallback | None = None,
    ) -> None:
        in_flight = client.max_in_flight if max_in_flight is None else max_in_flight
        if not (isinstance(in_flight, int) and 1 <= in_flight <= 256):
            raise ConfigurationError(f"max_in_flight: must be an integer from 1 to 256, got {in_flight!r}")
        options = SenderOptions(
            max_queue_events=max_queue_events,
            max_queue_bytes=max_queue_bytes,
            on_full=on_full,
            block_timeout=block_timeout,
            flush_interval=flush_interval,
            flush_at_events=flush_at_events,
            flush_at_bytes=flush_at_bytes,
        )
        super().__init__(client, options, on_outcome, on_drop)
        self._async_client = client
        self._in_flight = in_flight
        self._runner: asyncio.Task[None] | None = None
        self._lanes: set[asyncio.Task[None]] = set()
        # Created on first use, inside the running loop.
        self._wake: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None

    # -- the caller's side ------------------------------------------------

    def track(self, event: object) -> str:
        """Queue one event and return its idempotency key. Never awaits."""
        key, payload = self._accept(event)
        if payload is not None:
            self._enqueue(key, payload)
        return key

    async def atrack(self, event: object) -> str:
        """Like ``track()``, but waits up to ``block_timeout`` for room in a full queue."""
        key, payload = self._accept(event)
        if payload is None:
            return key
        if not self._queue.has_room(len(payload)) and self._options.on_full == "block":
            _, changed = self._events()
            self._nudge()
            with contextlib.suppress(TimeoutError):
                async with changed:
                    await asyncio.wait_for(
                        changed.wait_for(lambda: self._closed or self._queue.has_room(len(payload))),
                        self._options.block_timeout,
                    )
            if self._closed:
                raise SenderClosedError("track() on a closed sender")
        self._enqueue(key, payload)
        return key

    def _accept(self, event: object) -> tuple[str, bytes | None]:
        if self._closed:
            raise SenderClosedError("track() on a closed sender")
        return self._encode(event)

    def _enqueue(self, key: str, payload: bytes) -> None:
        if not self._queue.has_room(len(payload)):
            if self._options.on_full == "block":
                raise QueueFullError(f"the queue is full ({self._fullness()})")
            self._drop(key, payload)
            return
        self._queue.push(payload)
        self._accepted += 1
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())
        if self._batch_ready():
            self._nudge()

    @property
    def stats(self) -> Stats:
        return self._snapshot()

    async def flush(self, timeout: float = C.DEFAULT_CLOSE_TIMEOUT) -> bool:
        """Send everything queued so far; True when it all settled within ``timeout``."""
        target = self._accepted
        _, changed = self._events()
        self._nudge()
        try:
            async with changed:
                await asyncio.wait_for(changed.wait_for(lambda: self._settled_before(target)), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = C.DEFAULT_CLOSE_TIMEOUT) -> Stats:
        """Stop accepting events, deliver what is queued within ``timeout``, dead-letter the rest."""
        if self._closed:
            return self.stats
        self._closed = True
        self._nudge()
        if self._runner is not None:
            done, _ = await asyncio.wait({self._runner}, timeout=timeout)
            if not done:
                await self._abandon()
        stats = self.stats
        log.info("%s sender closed: %s", self._rules.name, stats)
        return stats

    async def __aenter__(self) -> AsyncBackgroundSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncBackgroundSender({self._client!r}, in_queue={len(self._queue)})"

    # -- the sending side -------------------------------------------------

    def _events(self) -> tuple[asyncio.Event, asyncio.Condition]:
        if self._wake is None or self._changed is None:
            self._wake, self._changed = asyncio.Event(), asyncio.Condition()
        return self._wake, self._changed

    def _nudge(self) -> None:
        self._events()[0].set()

    async def _run(self) -> None:
        wake, _ = self._events()
        delivery = AsyncDelivery(
            self._rules,
            self._async_client.http,
            self._async_client.config.retry,
            self._record,
            self._count_retry,
        )
        lanes = asyncio.Semaphore(self._in_flight)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self._options.flush_interval)
            wake.clear()
            while self._queue:
                await lanes.acquire()  # a batch leaves the queue only when a lane can send it
                batch = self._queue.take_batch()
                self._flying.update(batch)
                await self._announce()
                lane = asyncio.get_running_loop().create_task(self._deliver(delivery, batch, lanes))
                self._lanes.add(lane)
                lane.add_done_callback(self._lanes.discard)
            if self._closed and not self._queue:
                if self._lanes:
                    await asyncio.wait(set(self._lanes))
                return

    async def _deliver(self, delivery: AsyncDelivery, batch: list[Pending], lanes: asyncio.Semaphore) -> None:
        try:
            await delivery.deliver(batch)
        except Exception as exc:
            log.exception("%s delivery failed unexpectedly", self._rules.name)
            self._record([], [Settled(p, OutcomeStatus.FAILED, f"internal error: {exc!r}") for p in batch])
        finally:
            lanes.release()
            await self._announce()

    def _record(self, delivered: list[Pending], settled: list[Settled]) -> None:
        delivered, settled = self._claim(delivered, settled)
        if delivered or settled:
            self._sink.record_settled(delivered, settled)
            self._recorded(delivered, settled)

    async def _announce(self) -> None:
        _, changed = self._events()
        async with changed:
            changed.notify_all()

    async def _abandon(self) -> None:
        """At the close deadline: stop sending, dead-letter what is still queued or in flight."""
        if self._runner is not None:
            self._runner.cancel()
        for lane in list(self._lanes):
            lane.cancel()
        queued = self._queue.drain()
        flying = list(self._flying)
        self._flying.clear()
        left = past_deadline(queued, flying)
        if left:
            log.warning("%s sender: %d events not settled by the close deadline", self._rules.name, len(left))
            self._sink.record_settled([], left)
        await self._announce()
