"""What the thread and asyncio background senders share; each adds its own locking and waiting."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import attrs

from . import metrics
from ._base import rejected_outcome
from ._logs import log_safely
from ._process import reset_after_fork
from .config import ClientConfig
from .deadletter import DeadLetterFile, OutcomeCallback, OutcomeSink
from .errors import InvalidEventError, SenderClosedError
from .outcomes import Outcome, OutcomeStatus
from .providers import Pending, ProviderRules, Settled
from .queueing import EventQueue, Queue, SenderOptions
from .spool import Spool
from .stats import Stats, StatsCounter
from .text import shorten

log = logging.getLogger("billing_events.sender")


class SenderClient(Protocol):
    """What a background sender uses of its client; the senders never import the client modules."""

    @property
    def rules(self) -> ProviderRules: ...

    @property
    def config(self) -> ClientConfig: ...

    @property
    def dead_letter_file(self) -> DeadLetterFile | None: ...

    @property
    def on_dead_letter(self) -> OutcomeCallback | None: ...

    def pacing_stats(self) -> dict[str, Any]: ...


class SenderCore:
    """The queue, the counters and the outcome sink of a background sender."""

    def __init__(
        self,
        client: SenderClient,
        options: SenderOptions,
        on_outcome: OutcomeCallback | None,
        on_drop: OutcomeCallback | None,
    ) -> None:
        options.check(client.rules)
        self._client = client
        self._rules = client.rules
        self._options = options
        self._flush_at_events = options.events_trigger(client.rules)
        self._flush_at_bytes = options.bytes_trigger(client.rules)
        self._on_outcome = on_outcome
        self._on_drop = on_drop
        self._closed = False
        self._reset_core()
        # Read only when an OpenTelemetry SDK collects: track() pays nothing for it. A spool sender's
        # events are counted once, in the spool's gauge: its memory window is a cache of the spool.
        if options.spool is None:
            metrics.watch_queue(self, self._rules.name, _queue_depth)
        else:
            metrics.watch_spool(self, self._rules.name, _spool_depth)
        reset_after_fork(self)

    def _reset_core(self) -> None:
        self._queue = self._new_queue()
        self._accepted = 0
        # The events whose request is out; close() may abandon them, and then a late answer is ignored.
        self._flying: set[Pending] = set()
        # Claimed from flight, outcome not yet recorded: flush() must still wait for them.
        self._recording: set[Pending] = set()
        self._counter = StatsCounter()
        self._sink = OutcomeSink(
            self._rules.name,
            self._counter,
            self._client.dead_letter_file,
            self._client.on_dead_letter,
            self._on_outcome,
        )

    def _reset_after_fork(self) -> None:
        # The parent owns its queued and in-flight events (and its spool file); the child starts empty,
        # with its own queue, counters and spool file.
        self._reset_core()

    def _new_queue(self) -> Queue:
        options = self._options
        # A sender closed before a fork takes nothing in the child: no spool file of its own to leave there.
        if options.spool is None or self._closed:
            return EventQueue(self._rules, options.max_queue_events, options.max_queue_bytes)
        # The spool's memory window is the in-memory queue's bounds; the file holds the rest.
        return Spool(
            self._rules,
            options.spool,
            self._client.config.base_url,
            options.max_queue_events,
            options.max_queue_bytes,
        )

    def _encode(self, event: object) -> tuple[str, bytes | None]:
        """The key and payload of an event; payload None when it broke the spec (already recorded)."""
        try:
            key, payload, _, _, _ = self._rules.encode_parts(event)
        except InvalidEventError as exc:
            return self._reject(exc, event), None
        return key, payload

    def _reject(self, exc: InvalidEventError, event: object) -> str:
        """Record an event that broke the spec; its key, if it had one. A closed sender takes no event,
        a bad one neither: nothing is counted or dead-lettered after ``close()`` returned its stats."""
        if self._closed:
            raise SenderClosedError("track() on a closed sender")
        # Logged by the sink, at most one warning per interval: a stream of bad events is no log flood.
        self._sink.record([rejected_outcome(exc, event)])
        return exc.key or ""

    def _batch_ready(self, waiting: int) -> bool:
        """Whether ``waiting`` queued events (and the bytes they hold) make a batch worth sending now."""
        return waiting >= self._flush_at_events or self._queue.bytes >= self._flush_at_bytes

    def _fullness(self) -> str:
        return self._queue.fullness()

    def _drop(self, key: str, payload: bytes, why: str | None = None) -> None:
        """Dead-letter, count and report an event a full queue refused under the drop policy."""
        reason = why or f"queue full ({self._fullness()})"
        outcome = Outcome(
            key=key, status=OutcomeStatus.DROPPED, event=Pending(key, payload).event, reason=reason
        )
        self._sink.record([outcome])
        if self._on_drop is not None:
            try:
                self._on_drop(outcome)
            except Exception:
                log_safely(
                    log.exception,
                    "on_drop callback failed for event %s",
                    shorten(key, 120),
                    extra={"provider": self._rules.name, "key": shorten(key, 120)},
                )

    def _claim(self, delivered: list[Pending], settled: list[Settled]) -> tuple[list[Pending], list[Settled]]:
        """The settled events still in flight, now taken out of it; abandoned ones were reported already."""
        flying = self._flying
        delivered = [pending for pending in delivered if pending in flying]
        settled = [item for item in settled if item.pending in flying]
        flying.difference_update(delivered)
        flying.difference_update(item.pending for item in settled)
        self._recording.update(delivered)
        self._recording.update(item.pending for item in settled)
        return delivered, settled

    def _store(self, delivered: list[Pending], settled: list[Settled]) -> None:
        """Record the outcomes of claimed events, then take them out of the queue (a spool's file).

        Dead letters come first: a crash in between re-sends an event, never loses it.
        """
        self._sink.record_settled(delivered, settled)
        self._queue.settle(delivered, settled)

    def _recorded(self, delivered: list[Pending], settled: list[Settled]) -> None:
        """The outcomes of claimed events are now counted and dead-lettered."""
        self._recording.difference_update(delivered)
        self._recording.difference_update(item.pending for item in settled)

    def _settled_before(self, target: int) -> bool:
        """Whether every event queued before the ``target``-th one has settled.

        Events settle out of order when several requests are in flight, so this looks
        at the oldest unsettled event (queued or in flight), never at a count.
        """
        if self._queue.kept:
            return False  # a stop short left events in the spool, unsettled: flush() never says they are
        for unsettled in (self._flying, self._recording):
            if unsettled and min(pending.seq for pending in unsettled) < target:
                return False
        return not (self._queue and self._queue.head_seq < target)

    def _snapshot(self) -> Stats:
        queue = self._queue
        return attrs.evolve(
            self._counter.snapshot(in_queue=len(queue), **self._client.pacing_stats()),
            enqueued=self._accepted,
            in_spool=queue.depth,
            recovered=queue.recovered,
        )

    def _count_retry(self, amount: int) -> None:
        self._counter.add("retried", amount)


def _queue_depth(sender: SenderCore) -> int:
    return len(sender._queue)


def _spool_depth(sender: SenderCore) -> int:
    """The events in the spool's file, in flight included, as ``stats.in_spool``."""
    return sender._queue.depth
