"""The queue interface of the background senders, and the in-memory queue (its owner does the locking).

``Spool`` (``spool/``) is the durable queue with the same interface.
"""

from __future__ import annotations

import builtins
import sys
from collections import deque
from typing import TYPE_CHECKING, Literal, Protocol

import attrs

from . import _constants as C
from .config import at_least_one, positive_seconds
from .errors import ConfigurationError
from .outcomes import OutcomeStatus
from .providers import Pending, ProviderRules, Settled
from .text import shown

if TYPE_CHECKING:
    from .spool import SpoolConfig


class Queue(Protocol):
    """What the senders use of a queue: the in-memory ``EventQueue`` and the durable ``Spool`` alike."""

    bytes: int
    """Payload bytes waiting to be taken."""
    depth: int
    """Events held on disk, in flight included (0 in memory)."""
    recovered: int
    """Events taken over from an earlier sender's spool."""
    kept: int
    """Events a stop short (``leave``) kept for the next sender, unsettled: 0 in memory, where it settles them."""

    def __len__(self) -> int: ...

    @property
    def head_seq(self) -> int: ...

    @property
    def next_seq(self) -> int: ...

    def has_room(self, size: int) -> bool: ...

    def fullness(self) -> str: ...

    def offer(self, payload: builtins.bytes) -> int:
        """Queue the payload if there is room: the events then waiting, or 0 when it is full."""
        ...

    def must_read_back(self) -> bool:
        """Whether ``read_back`` has disk work to do now (the async sender then runs it on a thread)."""
        ...

    def read_back(self) -> None:
        """Bring events held only on disk into memory for ``take_batch`` (a spool reads SQLite).

        It may wait for the disk: call it without the lock that ``offer`` runs under.
        """
        ...

    def take_batch(self) -> list[Pending]:
        """The next request's worth of the events in memory; no disk work, so it may run under a lock."""
        ...

    def settle(self, delivered: list[Pending], settled: list[Settled]) -> None: ...

    def leave(self, flying: list[Pending], why: str) -> list[Settled]: ...

    def adopt(self, deadline: float | None = None) -> int: ...

    def close(self) -> None: ...


# What a queued payload costs beyond its length: the bytes object's header and the deque's pointer.
ITEM_OVERHEAD = sys.getsizeof(b"") + 8


class EventQueue:
    """Serialized events waiting to be sent, bounded by count and by the memory they hold."""

    def __init__(self, rules: ProviderRules, max_events: int, max_bytes: int) -> None:
        self.rules = rules
        self.max_events = max_events
        self.max_bytes = max_bytes
        # Bare payloads: bytes objects the garbage collector never scans, and no per-event key string.
        self._items: deque[bytes] = deque()
        self.bytes = 0
        # Sequence number of the event at the head: events are numbered in the order they were queued.
        self.head_seq = 0
        self.depth = 0
        self.recovered = 0
        self.kept = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def next_seq(self) -> int:
        return self.head_seq + len(self._items)

    def has_room(self, size: int) -> bool:
        return len(self._items) < self.max_events and self.bytes + size + ITEM_OVERHEAD <= self.max_bytes

    def fullness(self) -> str:
        return f"{len(self._items)} events, {self.bytes} bytes"

    def offer(self, payload: bytes) -> int:
        # This runs on every track(): the room check and the append in one call.
        items = self._items
        size = self.bytes + len(payload) + ITEM_OVERHEAD
        if len(items) >= self.max_events or size > self.max_bytes:
            return 0
        self.bytes = size
        items.append(payload)  # last: an interrupt (Ctrl-C) after it finds the bytes counted
        return len(items)

    def read_back(self) -> None:
        """Every event is in memory: nothing to read back."""

    def must_read_back(self) -> bool:
        return False

    def take_batch(self) -> list[Pending]:
        """The next request's worth of events, within the provider's count and byte limits."""
        rules = self.rules
        items = self._items
        batch: list[Pending] = []
        size = rules.envelope_bytes
        key_field = rules.key_field
        while items and rules.fits(len(batch), size, items[0]):
            payload = items.popleft()
            self.bytes -= len(payload) + ITEM_OVERHEAD
            size += len(payload) + 1
            batch.append(Pending(None, payload, key_field=key_field, seq=self.head_seq))
            self.head_seq += 1
        return batch

    def drain(self) -> list[Pending]:
        key_field, first = self.rules.key_field, self.head_seq
        batch = [
            Pending(None, payload, key_field=key_field, seq=first + index)
            for index, payload in enumerate(self._items)
        ]
        self._items.clear()
        self.bytes = 0
        self.head_seq += len(batch)
        return batch

    def settle(self, delivered: list[Pending], settled: list[Settled]) -> None:
        """Settled events left the queue when they were taken: nothing to do."""

    def leave(self, flying: list[Pending], why: str) -> list[Settled]:
        """A sender stops short: what it held, settled (queued events failed, in-flight ones unknown)."""
        return left_behind(self.drain(), flying, why)

    def adopt(self, deadline: float | None = None) -> int:
        return 0

    def close(self) -> None:
        pass


def _policy(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ("block", "drop"):
        raise ConfigurationError(f"{attribute.name}: must be 'block' or 'drop', got {shown(value)}")


@attrs.frozen
class SenderOptions:
    """Queue bounds and flush triggers of a background sender, checked where they are written."""

    max_queue_events: int = attrs.field(default=C.DEFAULT_MAX_QUEUE_EVENTS, validator=at_least_one)
    max_queue_bytes: int = attrs.field(default=C.DEFAULT_MAX_QUEUE_BYTES, validator=at_least_one)
    on_full: Literal["block", "drop"] = attrs.field(default="block", validator=_policy)
    block_timeout: float = attrs.field(default=C.DEFAULT_BLOCK_TIMEOUT, validator=positive_seconds)
    flush_interval: float = attrs.field(default=C.DEFAULT_FLUSH_INTERVAL, validator=positive_seconds)
    flush_at_events: int | None = None
    flush_at_bytes: int | None = None
    spool: SpoolConfig | None = None

    def check(self, rules: ProviderRules) -> None:
        if self.max_queue_bytes < rules.max_batch_bytes:
            raise ConfigurationError(
                f"max_queue_bytes: must be at least one request body ({rules.max_batch_bytes} bytes)"
            )
        if self.spool is not None and self.spool.max_bytes < rules.max_batch_bytes:
            raise ConfigurationError(
                f"spool max_bytes: must be at least one request body ({rules.max_batch_bytes} bytes)"
            )

    def events_trigger(self, rules: ProviderRules) -> int:
        return min(self.flush_at_events or rules.max_batch_events, self.max_queue_events)

    def bytes_trigger(self, rules: ProviderRules) -> int:
        return min(self.flush_at_bytes or rules.max_batch_bytes, self.max_queue_bytes)


def left_behind(queued: list[Pending], flying: list[Pending], why: str) -> list[Settled]:
    """How a sender that stops short settles what it holds: queued events failed; taken ones unknown if an
    attempt may have stored them (one in flight counts), else failed (between attempts that stored nothing,
    or stopped before a byte of its request left: the senders let a stopped request take its count back
    before they settle, as ``delivery._cut_before_sending`` does for ``send()``).
    """
    return [Settled(p, OutcomeStatus.FAILED, f"{why} while queued") for p in queued] + [
        Settled(p, OutcomeStatus.UNKNOWN, f"{why} while a request that may have stored it was out")
        if p.maybe_stored
        else Settled(p, OutcomeStatus.FAILED, f"{why}; none of its requests left or stored it")
        for p in flying
    ]
