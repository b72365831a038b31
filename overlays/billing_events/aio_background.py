"""The asyncio background sender: ``track()`` queues, a task sends with several requests in flight.

It lives on one event loop: call ``track()`` from that loop's thread. ``track()``
never awaits; with ``on_full="block"`` a full queue raises ``QueueFullError`` at
once, and ``await atrack(event)`` waits up to ``block_timeout`` for room instead.
Use it as ``async with``: an event loop cannot run at interpreter exit, so
``close()`` is the way queued events get out. A ``close()`` that is cancelled
dead-letters what is left before the cancellation goes on; a sender nobody
closed does the same, with a ``ResourceWarning``, when its loop cancels its
task (``asyncio.run()`` returning) or when it is garbage-collected. A forked
child starts empty and leaves the parent's events, tasks and spool alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Literal, Protocol

from . import _constants as C
from . import metrics
from ._logs import log_safely
from ._post import AsyncBatchPoster
from .deadletter import OutcomeCallback, OutcomeSink
from .delivery import AsyncDelivery
from .errors import ConfigurationError, QueueFullError, SenderClosedError
from .providers import Pending, Settled
from .providers.base import settle_unsent
from .queueing import Queue, SenderOptions
from .sender_core import SenderClient, SenderCore
from .spool import SpoolConfig, SpoolWriteError
from .stats import Stats
from .text import shorten, shown

log = logging.getLogger("billing_events.sender")


class AsyncSenderClient(SenderClient, Protocol):
    """An asyncio client, as the asyncio sender sees it."""

    @property
    def poster(self) -> AsyncBatchPoster: ...

    @property
    def max_in_flight(self) -> int: ...


class _Holdings:
    """What a sender holds, settled without awaiting: usable from a cancellation or a finalizer.

    It never refers to the sender, so a finalizer on the sender can hold it.
    """

    def __init__(self, name: str, queue: Queue, flying: set[Pending], sink: OutcomeSink) -> None:
        self.name = name
        self.queue = queue
        self.flying = flying
        self.sink = sink

    def settle(self, why: str) -> int:
        """Dead-letter everything held: queued events failed, in-flight ones unknown (a spool keeps them).

        How many were dead-lettered.
        """
        left = self.queue.leave(list(self.flying), why)
        self.flying.clear()
        if left:
            self.sink.record_settled([], left)
            log_safely(
                log.warning,
                "%s sender: %d events not sent: %s",
                self.name,
                len(left),
                why,
                extra={"provider": self.name, "events": len(left)},
            )
        return len(left)


def _never_closed(holdings: _Holdings) -> None:
    count = holdings.settle("the sender was never closed")
    holdings.queue.close()
    warnings.warn(
        f"an AsyncBackgroundSender for {holdings.name} was never closed; "
        f"{count} events it held were dead-lettered",
        ResourceWarning,
        stacklevel=2,
    )


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
        spool: str | os.PathLike[str] | SpoolConfig | None = None,
    ) -> None:
        in_flight = client.max_in_flight if max_in_flight is None else max_in_flight
        if not (isinstance(in_flight, int) and 1 <= in_flight <= 256):
            raise ConfigurationError(
                f"max_in_flight: must be an integer from 1 to 256, got {shown(in_flight)}"
            )
        options = SenderOptions(
            max_queue_events=max_queue_events,
            max_queue_bytes=max_queue_bytes,
            on_full=on_full,
            block_timeout=block_timeout,
            flush_interval=flush_interval,
            flush_at_events=flush_at_events,
            flush_at_bytes=flush_at_bytes,
            spool=None if spool is None else SpoolConfig.of(spool),
        )
        super().__init__(client, options, on_outcome, on_drop)
        self._async_client = client
        self._in_flight = in_flight
        self._finished = False
        if self._queue:
            # A spool holds events of earlier senders: send them from the start when a loop runs here.
            with contextlib.suppress(RuntimeError):
                self._ensure_runner()

    def _reset_core(self) -> None:
        super()._reset_core()
        self._runner: asyncio.Task[None] | None = None
        self._lanes: set[asyncio.Task[None]] = set()
        # Created on first use, inside the running loop; _changed is replaced each time it fires.
        self._wake: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._holdings = _Holdings(self._rules.name, self._queue, self._flying, self._sink)
        # Runs when the sender is collected (or at interpreter exit) unless a close() accounted for everything.
        self._unclosed = weakref.finalize(self, _never_closed, self._holdings)

    def _reset_after_fork(self) -> None:
        # The child's copy of the loop holds the parent's tasks, and its finalizer the parent's events:
        # neither may send, dead-letter or close them here.
        self._unclosed.detach()
        self._cancel_tasks()
        super()._reset_after_fork()
        if self._closed:
            self._unclosed.detach()  # closed in the parent: the child takes no event, so it has none to account for

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
            self._nudge()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._options.block_timeout):
                    await self._until(lambda: self._closed or self._queue.has_room(len(payload)))
            if self._closed:
                raise SenderClosedError("track() on a closed sender")
        self._enqueue(key, payload)
        return key

    def _accept(self, event: object) -> tuple[str, bytes | None]:
        if self._closed:
            raise SenderClosedError("track() on a closed sender")
        # Outside a running loop this raises before anything is queued or counted: the caller, who gets
        # no key, still holds the event and may track it again.
        self._ensure_runner()
        return self._encode(event)

    def _enqueue(self, key: str, payload: bytes) -> None:
        try:
            waiting = self._queue.offer(payload)
        except SpoolWriteError as exc:
            if self._options.on_full == "block":
                raise
            self._drop(key, payload, str(exc))
            return
        if not waiting:
            if self._options.on_full == "block":
                raise QueueFullError(f"the queue is full ({self._fullness()})")
            self._drop(key, payload)
            return
        self._accepted += 1
        if self._batch_ready(waiting):
            self._nudge()

    def _ensure_runner(self) -> None:
        """Start the sending task on the running loop; RuntimeError outside it (no loop, or another thread's
        or another loop's): the sender's queue and events belong to the loop its task runs on."""
        loop = asyncio.get_running_loop()
        if self._runner is None:
            self._runner = loop.create_task(self._run(self._holdings))
        elif self._runner.get_loop() is not loop:
            raise RuntimeError("the background sender runs on another event loop: track() from that loop")

    @property
    def stats(self) -> Stats:
        return self._snapshot()

    async def flush(self, timeout: float = C.DEFAULT_CLOSE_TIMEOUT) -> bool:
        """Send everything queued so far; True when it all settled within ``timeout``."""
        # A spool takes over the files of senders that died since it last looked (file I/O: off the loop).
        await asyncio.to_thread(self._queue.adopt, time.monotonic() + timeout)
        target = self._queue.next_seq
        if self._queue and not self._closed:
            self._ensure_runner()
        self._nudge()
        try:
            async with asyncio.timeout(timeout):
                # A stop that kept events in a spool answers at once: they never settle here.
                await self._until(lambda: self._settled_before(target) or bool(self._queue.kept))
        except TimeoutError:
            return False
        return self._settled_before(target)

    async def close(self, timeout: float = C.DEFAULT_CLOSE_TIMEOUT) -> Stats:
        """Stop accepting events, deliver what is queued within ``timeout``, dead-letter the rest.

        If this call is cancelled, what was never sent is dead-lettered ``failed`` and what
        was in flight ``unknown`` before the cancellation goes on. A ``close()`` while
        another runs waits for it (within its own ``timeout``).
        """
        if self._queue and not self._closed:
            self._ensure_runner()  # events a spool took over from an earlier sender
        self._closed = True
        self._nudge()
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            runner = self._runner
            if runner is not None and not runner.done():
                done, _ = await asyncio.wait({runner}, timeout=timeout)
                if not done:
                    await self._stop("close deadline passed")
            # Even past its deadline: the tasks cancelled end within one loop turn.
            await self._tasks_ended(max(deadline - asyncio.get_running_loop().time(), C.STOP_GRACE))
        except asyncio.CancelledError:
            try:
                await self._stop("close() was cancelled")
            finally:
                self._closed_down()
            raise
        # The sending task may have been cancelled by someone else: whatever it left is accounted for here.
        self._abandon("the sending task ended early")
        return self._closed_down()

    def _closed_down(self) -> Stats:
        """The end of every close(), also a cancelled one: the queue closed (a spool's file released), the
        sender's gauges gone, the dead-letter file's last word said. Once."""
        self._queue.close()
        stats = self.stats
        if not self._finished:
            self._finished = True
            metrics.unwatch(self)
            self._sink.closing()
            log_safely(
                log.info,
                "%s sender closed: %s",
                self._rules.name,
                stats,
                extra={"provider": self._rules.name},
            )
        return stats

    async def __aenter__(self) -> AsyncBackgroundSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncBackgroundSender({self._client!r}, in_queue={len(self._queue)})"

    # -- the sending side -------------------------------------------------

    def _events(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    def _nudge(self) -> None:
        self._events().set()

    def _notify(self) -> None:
        """Wake the callers waiting in ``_until``: the queue or the flights changed."""
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    async def _run(self, holdings: _Holdings) -> None:
        try:
            await self._send_until_closed()
        except asyncio.CancelledError:
            # A runner a forked child inherited served its parent's events, not the child's.
            if not self._closed and holdings is self._holdings:
                # Cancelled though nobody closed the sender: its loop is ending (asyncio.run() returning).
                self._closed = True
                self._cancel_tasks()
                try:
                    await self._tasks_ended(C.STOP_GRACE)  # see _stop
                finally:
                    self._unclosed()
            raise

    async def _send_until_closed(self) -> None:
        wake = self._events()
        delivery = AsyncDelivery(
            self._rules,
            self._async_client.poster,
            self._async_client.config.retry,
            self._record,
            self._count_retry,
        )
        lanes = asyncio.Semaphore(self._in_flight)
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns the result of a wait that
            # ended as the task was cancelled (the loop's end) and swallows the cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._options.flush_interval):
                    await wake.wait()
            wake.clear()
            while self._queue:
                await lanes.acquire()  # a batch leaves the queue only when a lane can send it
                if self._queue.must_read_back():
                    # SQLite work (and a wait for its lock): on a thread, never on the event loop.
                    await asyncio.to_thread(self._queue.read_back)
                batch = self._queue.take_batch()
                if not batch:
                    # A spool that could not read its events back (it logged why): no request without
                    # events; the next interval tries again.
                    lanes.release()
                    break
                self._flying.update(batch)
                lane = asyncio.get_running_loop().create_task(self._deliver(delivery, batch, lanes))
                self._lanes.add(lane)
                lane.add_done_callback(self._lanes.discard)
                self._notify()
            if self._closed and not self._queue:
                if self._lanes:
                    await asyncio.wait(set(self._lanes))
                return

    async def _deliver(self, delivery: AsyncDelivery, batch: list[Pending], lanes: asyncio.Semaphore) -> None:
        try:
            await delivery.deliver(batch)
        except asyncio.CancelledError:
            raise  # close() and the loop's end account for a cancelled lane's events
        except BaseException as exc:
            # Any other exception settles the batch (unknown once sent), as the threaded sender does. Ctrl-C
            # and sys.exit() then go on out of the loop, which is theirs to stop; the sender goes on after
            # any other.
            log_safely(
                log.exception,
                "%s delivery failed unexpectedly",
                self._rules.name,
                extra={"provider": self._rules.name, "events": len(batch)},
            )
            self._record([], settle_unsent(batch, f"internal error: {shorten(repr(exc))}"))
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        finally:
            lanes.release()
            self._notify()

    def _record(self, delivered: list[Pending], settled: list[Settled]) -> None:
        delivered, settled = self._claim(delivered, settled)
        if delivered or settled:
            try:
                self._store(delivered, settled)
            finally:
                # Even when storing was cut short: a flush() must not wait for ever on claimed events.
                self._recorded(delivered, settled)
                self._notify()

    def _cancel_tasks(self) -> None:
        current = _current_task()
        for task in (self._runner, *self._lanes):
            if task is not None and task is not current:
                # A task of a loop that was closed without cancelling it cannot be cancelled any more.
                with contextlib.suppress(RuntimeError):
                    task.cancel()

    async def _stop(self, why: str) -> None:
        """Cancel the tasks, give them ``STOP_GRACE`` to end, then dead-letter what is left (``_abandon``).

        A lane cancelled before a byte of its request left (waiting for its rate budget or for a
        connection) takes back the attempt's "maybe stored" as it ends (``delivery._cut_before_sending``,
        as in ``send()``): its events then end ``failed``, not ``unknown``. Settles even if this is cancelled.
        """
        self._cancel_tasks()
        try:
            await self._tasks_ended(C.STOP_GRACE)
        finally:
            self._abandon(why)

    def _abandon(self, why: str) -> None:
        """Stop sending; dead-letter what is still queued (failed) or in flight (unknown). Never awaits."""
        self._cancel_tasks()
        self._holdings.settle(why)
        # Accounted for: a later collection of the sender has nothing to report.
        self._unclosed.detach()
        self._notify()

    async def _tasks_ended(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the tasks a close deadline or a cancellation stopped (the caller's own
        excepted), so that none outlives close()."""
        current = _current_task()
        tasks = {
            task
            for task in (self._runner, *self._lanes)
            if task is not None and task is not current and not task.done()
        }
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


def _current_task() -> asyncio.Task[object] | None:
    """The running task; None outside a running loop (a forked child's copy of one does not count)."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None
