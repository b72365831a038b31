"""The background sender: ``track()`` queues in microseconds, worker threads send.

The queue is bounded by count and by serialized bytes. When it is full the
policy decides: ``"block"`` waits up to ``block_timeout`` and then raises
``QueueFullError`` (the caller still holds the event), ``"drop"`` dead-letters
the event as ``dropped``, counts it and calls ``on_drop``. Nothing is dropped
silently. Every accepted event ends in exactly one outcome counter.

``flush(timeout)`` wakes the workers at once and waits until everything queued
before it is settled. ``close(timeout)`` drains and joins; whatever it cannot
deliver in time is dead-lettered (``failed`` if it was still queued or its
request had not left, ``unknown`` if its request was in flight). An at-exit hook closes the sender
with a bounded timeout, and a forked child starts with an empty queue, fresh
locks and a new connection pool.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Literal, Protocol

from . import _constants as C
from . import metrics
from ._logs import log_safely
from ._post import BatchPoster
from ._process import close_at_exit
from .deadletter import OutcomeCallback, on_sender_thread
from .delivery import SyncDelivery
from .errors import ConfigurationError, InvalidEventError, QueueFullError, SenderClosedError
from .providers import Pending, Settled
from .providers.base import settle_unsent
from .queueing import SenderOptions
from .retry import finite
from .sender_core import SenderClient, SenderCore
from .spool import SpoolConfig, SpoolWriteError
from .stats import Stats
from .text import shorten, shown

log = logging.getLogger("billing_events.sender")

QueueFullPolicy = Literal["block", "drop"]


class SyncSenderClient(SenderClient, Protocol):
    """A synchronous client, as the thread sender sees it."""

    @property
    def poster(self) -> BatchPoster: ...


def _seconds(value: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0 and finite(value)


class BackgroundSender(SenderCore):
    def __init__(
        self,
        client: SyncSenderClient,
        *,
        max_queue_events: int = C.DEFAULT_MAX_QUEUE_EVENTS,
        max_queue_bytes: int = C.DEFAULT_MAX_QUEUE_BYTES,
        on_full: QueueFullPolicy = "block",
        block_timeout: float = C.DEFAULT_BLOCK_TIMEOUT,
        flush_interval: float = C.DEFAULT_FLUSH_INTERVAL,
        flush_at_events: int | None = None,
        flush_at_bytes: int | None = None,
        workers: int = 1,
        atexit_timeout: float = C.DEFAULT_ATEXIT_TIMEOUT,
        on_outcome: OutcomeCallback | None = None,
        on_drop: OutcomeCallback | None = None,
        spool: str | os.PathLike[str] | SpoolConfig | None = None,
    ) -> None:
        if not (isinstance(workers, int) and 1 <= workers <= 64):
            raise ConfigurationError(f"workers: must be between 1 and 64, got {shown(workers)}")
        if not _seconds(atexit_timeout):
            raise ConfigurationError(
                f"atexit_timeout: must be a positive, finite number of seconds, got {shown(atexit_timeout)}"
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
        self._sync_client = client
        self._workers = workers
        self._atexit_timeout = atexit_timeout
        super().__init__(client, options, on_outcome, on_drop)
        self._start_for_spool()
        close_at_exit(self)

    def _reset_core(self) -> None:
        super()._reset_core()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._abort = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closing = False  # a close() that waits for the workers has begun

    def _reset_after_fork(self) -> None:
        super()._reset_after_fork()  # with new threads and locks (_reset_core)
        self._start_for_spool()

    def _start_for_spool(self) -> None:
        # A spool may hold earlier senders' events, and adopts dead ones' while running: send from the start.
        # (Not for a sender closed before a fork: the child's copy takes no event.)
        if self._options.spool is not None and not self._closed:
            self._start_workers()

    # -- the caller's side ------------------------------------------------

    def track(self, event: object) -> str:
        """Queue one event and return its idempotency key. Never waits on the network."""
        # The caller's thread pays for every line here: no call that the common case can do without.
        try:
            key, payload, _, _, _ = self._rules.encode_parts(event)
        except InvalidEventError as exc:
            return self._reject(exc, event)
        refused = None
        with self._lock:
            if self._closed:
                raise SenderClosedError("track() on a closed sender")
            try:
                waiting = self._queue.offer(payload) or self._offer_when_room(payload)
            except SpoolWriteError as exc:
                if self._options.on_full == "block":
                    raise
                waiting, refused = 0, str(exc)
            if waiting:
                self._accepted += 1
                if not self._threads:
                    self._start_workers()
                batch_ready = waiting >= self._flush_at_events or self._queue.bytes >= self._flush_at_bytes
                if batch_ready and not self._wake.is_set():
                    self._wake.set()
                return key
            if refused is None and self._options.on_full == "block":
                raise QueueFullError(
                    f"the queue stayed full for {self._options.block_timeout}s ({self._fullness()})"
                )
        self._drop(key, payload, refused)
        return key

    def _offer_when_room(self, payload: bytes) -> int:
        """With the lock held and the queue full: under "block", offer again once there is room; else 0."""
        room = self._wait_for_room(len(payload))
        if self._closed:  # close() may have come while we waited for room (and ended the wait)
            raise SenderClosedError("track() on a closed sender")
        return self._queue.offer(payload) if room else 0

    def _wait_for_room(self, size: int) -> bool:
        """With the lock held: wait for room under the block policy. False when there is none."""
        if self._options.on_full == "drop":
            return False
        self._wake.set()
        deadline = time.monotonic() + self._options.block_timeout
        while not self._queue.has_room(size):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return False
            self._changed.wait(remaining)
        return True

    @property
    def stats(self) -> Stats:
        with self._lock:
            return self._snapshot()

    def flush(self, timeout: float = C.DEFAULT_CLOSE_TIMEOUT) -> bool:
        """Send everything queued so far; True when it all settled within ``timeout``."""
        deadline = time.monotonic() + timeout
        if self._on_worker():
            # From an outcome callback: the events being called back settle only once it returns.
            with self._lock:
                self._wake.set()
                return self._settled_before(self._queue.next_seq)
        # A spool takes over the files of senders that died since it last looked (within the timeout).
        self._queue.adopt(deadline)
        with self._lock:
            target = self._queue.next_seq
            self._wake.set()
            while not self._settled_before(target):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._queue.kept:
                    return False  # out of time, or a stop kept events in a spool: they never settle here
                self._changed.wait(remaining)
        return True

    def close(self, timeout: float = C.DEFAULT_CLOSE_TIMEOUT) -> Stats:
        """Stop accepting events, deliver what is queued within ``timeout``, dead-letter the rest.

        A ``close()`` while another runs waits for it to settle everything (within ``timeout``).
        """
        deadline = time.monotonic() + timeout
        on_worker = self._on_worker()
        with self._lock:
            already_closed = self._closing
            self._closed = True
            # From an outcome callback the worker cannot wait for itself: a later close() or the exit hook does.
            self._closing = self._closing or not on_worker
            self._changed.notify_all()
            threads = list(self._threads)
        if on_worker:
            self._wake.set()
            return self.stats
        if already_closed:
            # Another close() may still be draining: wait for it, within this call's own timeout.
            self.flush(max(0.0, deadline - time.monotonic()))
            return self.stats
        self._wake.set()
        try:
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        except BaseException:
            # Ctrl-C while draining: the exit hook sees a closed sender, so account for every event now,
            # after the same grace as at the deadline (a request still waiting for its budget ends failed).
            try:
                self._stop(threads, "close() was interrupted")
            finally:
                self._closed_down()
            raise
        if any(thread.is_alive() for thread in threads):
            self._stop(threads, "close deadline passed")
        else:
            # Every worker ended, also one that died (an error nothing could handle): what it left queued or
            # in flight is accounted for here, never left without an outcome. Usually nothing is left.
            self._abandon("the sender's worker threads ended early")
        return self._closed_down()

    def _closed_down(self) -> Stats:
        """The end of every close(), also an interrupted one: the queue closed (a spool's file released),
        the sender's gauges gone, the dead-letter file's last word said."""
        self._queue.close()
        stats = self.stats
        metrics.unwatch(self)
        self._sink.closing()
        log_safely(
            log.info, "%s sender closed: %s", self._rules.name, stats, extra={"provider": self._rules.name}
        )
        return stats

    def _close_at_exit(self, give_up: bool = False) -> None:
        if not self._closing:
            # give_up: the exit was interrupted; account for the events without waiting to send them.
            self.close(0.0 if give_up else self._atexit_timeout)

    def _on_worker(self) -> bool:
        """Whether the caller is one of this sender's threads (an outcome callback runs there)."""
        return threading.current_thread() in self._threads

    def __enter__(self) -> BackgroundSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BackgroundSender({self._client!r}, in_queue={len(self._queue)})"

    # -- the workers' side ------------------------------------------------

    def _start_workers(self) -> None:
        for number in range(self._workers):
            thread = threading.Thread(
                target=self._run, name=f"billing-events-{self._rules.name}-{number}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _run(self) -> None:
        # A callback's SystemExit here would end only this thread, and with it every later delivery.
        on_sender_thread()
        delivery = SyncDelivery(
            self._rules,
            self._sync_client.poster,
            self._sync_client.config.retry,
            self._record,
            self._count_retry,
        )
        while True:
            self._wake.wait(self._options.flush_interval)
            if not self._closed:
                self._wake.clear()
            while not self._abort.is_set() and (batch := self._take_batch()):
                try:
                    # After a close deadline (abort), deliver sends no request and leaves the rest to close().
                    delivery.deliver(batch, self._abort)
                except BaseException as exc:
                    # Any exception, SystemExit from a transport included: it would end this thread, and
                    # the events it holds and every later one would get no outcome.
                    log_safely(
                        log.exception,
                        "%s delivery failed unexpectedly",
                        self._rules.name,
                        extra={"provider": self._rules.name, "events": len(batch)},
                    )
                    self._record([], settle_unsent(batch, f"internal error: {shorten(repr(exc))}"))
            if self._abort.is_set():
                return  # close() settles what is left
            if self._closed:
                with self._lock:
                    if not self._queue:
                        return
                # Events a spool could not read back (it logged why): closing leaves _wake set, so wait
                # here, as an open sender does, rather than try again at once until the close deadline.
                self._abort.wait(self._options.flush_interval)

    def _take_batch(self) -> list[Pending]:
        # A spool reads back from its file without our lock: track() needs it, and never waits for the disk.
        self._queue.read_back()
        with self._lock:
            batch = self._queue.take_batch()
            if batch:
                self._flying.update(batch)
                self._changed.notify_all()
        return batch

    def _record(self, delivered: list[Pending], settled: list[Settled]) -> None:
        with self._lock:
            delivered, settled = self._claim(delivered, settled)
        if delivered or settled:
            try:
                self._store(delivered, settled)
            finally:
                # Even when storing was cut short: a flush() must not wait for ever on claimed events.
                with self._lock:
                    self._recorded(delivered, settled)
                    self._changed.notify_all()

    def _stop(self, threads: list[threading.Thread], why: str) -> None:
        """At the close deadline: stop the workers, then dead-letter what they leave.

        No request leaves after ``_abort``, and one still waiting for its rate budget stops waiting. The
        workers get ``STOP_GRACE`` to end: a request that never left then counts as stored nothing (as in
        ``send()``), so its events end ``failed``, not ``unknown``.
        """
        self._abort.set()
        grace = time.monotonic() + C.STOP_GRACE
        try:
            for thread in threads:
                thread.join(max(0.0, grace - time.monotonic()))
        finally:
            self._abandon(why)  # also when a (second) Ctrl-C cuts the grace short

    def _abandon(self, why: str) -> None:
        """At close: dead-letter what is still queued or in flight (a spool keeps it), then say so."""
        with self._lock:
            left = self._queue.leave(list(self._flying), why)
            self._flying.clear()
        if left:
            self._sink.record_settled([], left)
        with self._lock:
            self._changed.notify_all()  # a flush() waiting now has its answer (False, if a spool kept events)
        if left:
            log_safely(
                log.warning,
                "%s sender: %d events not settled at close: %s",
                self._rules.name,
                len(left),
                why,
                extra={"provider": self._rules.name, "events": len(left)},
            )
