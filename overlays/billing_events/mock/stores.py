"""Thread-safe event stores of both providers, with their duplicate and request counters."""

from __future__ import annotations

import itertools
import sys
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from attrs import frozen

from billing_events.mock.config import DEFAULT_MAX_EVENTS, LAGO_STORES
from billing_events.text import shown

Event = dict[str, Any]
# (external_subscription_id, transaction_id); the server stores an event without a subscription.
LagoKey = tuple[str | None, str]


class StoreFull(Exception):
    """A request's events would take a store past its ``max_events``: none of them is stored."""

    def __init__(self, limit: int, first: bool) -> None:
        super().__init__(
            f"the mock holds its limit of {limit} events (max_events); POST /_mock/reset forgets them"
        )
        self.limit = limit
        self.first = first  # the store's first refusal: worth a WARNING, the next ones are not


@frozen
class ProviderStats:
    stored: int
    duplicates: int
    requests: int
    # Lago only: events written, duplicates included, before the read-time deduplication of the ClickHouse store.
    arrivals: int | None = None

    def to_dict(self) -> dict[str, int]:
        counts = {"stored": self.stored, "duplicates": self.duplicates, "requests": self.requests}
        if self.arrivals is not None:
            counts["arrivals"] = self.arrivals
        return counts


class _Counters:
    """Counters and the read of stored events shared by every store; every method takes the store's lock."""

    _events: Mapping[Any, Event]

    def __init__(self, max_events: int | None) -> None:
        # A plain threading lock: requests can come from several threads and event loops at once.
        self._lock = threading.Lock()
        self._duplicates = 0
        self._requests = 0
        self._max_events = max_events
        self._refused = False

    def _make_room(self, new: int) -> None:
        """With the lock held: refuse ``new`` events that would take the store past its limit."""
        if self._max_events is not None and len(self._events) + new > self._max_events:
            first, self._refused = not self._refused, True
            raise StoreFull(self._max_events, first)

    def count_request(self) -> None:
        with self._lock:
            self._requests += 1

    def events(self, offset: int = 0, limit: int | None = None) -> list[Event]:
        """The stored events in arrival order, from ``offset``, at most ``limit`` of them."""
        with self._lock:
            if offset == 0 and limit is None:
                return list(self._events.values())
            # islice takes positions up to sys.maxsize: a page past that is past any store's end.
            start = min(offset, sys.maxsize)
            stop = None if limit is None else min(start + limit, sys.maxsize)
            return list(itertools.islice(self._events.values(), start, stop))


class _LagoReads(_Counters):
    """What both Lago stores answer alike: `find` returns the first stored event with a transaction_id."""

    def __init__(self, max_events: int | None) -> None:
        super().__init__(max_events)
        self._first_by_transaction: dict[str, Event] = {}

    def find(self, transaction_id: str) -> Event | None:
        with self._lock:
            return self._first_by_transaction.get(transaction_id)


class TogaiStore(_Counters):
    """Events keyed by `id`; an `id` seen before is acknowledged but not stored again."""

    def __init__(self, max_events: int | None = DEFAULT_MAX_EVENTS) -> None:
        super().__init__(max_events)
        self._events: dict[tuple[str, str], Event] = {}
        self._anonymous = itertools.count()

    def add(self, events: Iterable[Event]) -> int:
        """Store new events; returns how many were duplicates (StoreFull: none is stored)."""
        # In arrival order; None: no id, so it cannot be deduplicated and gets a key of its own.
        new: dict[tuple[str, str] | int, Event] = {}
        duplicates = 0
        with self._lock:
            for index, event in enumerate(events):
                event_id = event.get("id")
                # An empty id deduplicates nothing, like a missing one.
                if isinstance(event_id, str) and event_id:
                    key = ("id", event_id)
                    if key in self._events or key in new:
                        duplicates += 1
                        continue
                    new[key] = event
                else:
                    new[index] = event
            self._make_room(len(new))
            for stored_key, event in new.items():
                if isinstance(stored_key, int):
                    stored_key = ("generated", str(next(self._anonymous)))
                self._events[stored_key] = event
            self._duplicates += duplicates
        return duplicates

    def stats(self) -> ProviderStats:
        with self._lock:
            return ProviderStats(len(self._events), self._duplicates, self._requests)


class LagoStore(_LagoReads):
    """Lago's Postgres event store: a repeated (external_subscription_id, transaction_id) is refused.

    Batches are stored whole or not at all. Inside one batch the server matches inserted rows by
    `transaction_id` alone, so a `transaction_id` repeated in a batch (even for another subscription) makes
    the later index a duplicate and rolls the whole batch back.
    """

    kind: ClassVar[str] = "postgres"

    def __init__(self, max_events: int | None = DEFAULT_MAX_EVENTS) -> None:
        super().__init__(max_events)
        # Events without a subscription get a key of their own: the unique index treats NULLs as distinct.
        self._events: dict[LagoKey | tuple[None, str, int], Event] = {}
        self._unscoped = itertools.count()

    def commit(self, keys: Sequence[LagoKey | None], events: Sequence[Event]) -> list[int]:
        """Store valid `events` (one per key) unless some index is left a duplicate, as the server names them.

        Returns the indexes of the duplicate keys; nothing is stored when that list is not empty
        (nor when StoreFull is raised).
        """
        with self._lock:
            # lago-api's create_batch_service.rb `bulk_insert_events`: `Event.insert_all(records, unique_by:
            # :index_unique_transaction_id, returning: [:transaction_id, ...])` inserts every key not stored yet
            # and returns its row; `index_by` keeps one row per transaction_id. Each event in order then takes
            # its id's row (`attributes_per_transaction_id.delete`), and an index left without one is
            # `value_already_exist`: [(a, t) stored, (b, t)] names index 1, whose insert index 0 took.
            returned = {key[1] for key in keys if key is not None and key not in self._events}
            duplicates: list[int] = []
            for index, key in enumerate(keys):
                if key is None:
                    continue
                if key[1] in returned:
                    returned.remove(key[1])
                else:
                    duplicates.append(index)
            self._duplicates += len(duplicates)
            if duplicates:
                return duplicates
            self._make_room(len(keys))
            for key, event in zip(keys, events, strict=True):
                assert key is not None, "a stored event always has a key"
                subscription, transaction = key
                if subscription is None:
                    self._events[(None, transaction, next(self._unscoped))] = event
                else:
                    self._events[key] = event
                self._first_by_transaction.setdefault(transaction, event)
            return []

    def stats(self) -> ProviderStats:
        with self._lock:
            stored = len(self._events)
            return ProviderStats(stored, self._duplicates, self._requests, arrivals=stored)


# Organization ids are stable per key, as the server's are per organization.
_ORGANIZATIONS = uuid.UUID("0c5b8f0e-8d1e-4b7a-9f65-3f0f2a9d6b21")
# (organization, external_subscription_id, code, transaction_id, timestamp): the ClickHouse store's dedup key.
ReadKey = tuple[str, str | None, object, str, str]


class ClickhouseLagoStore(_LagoReads):
    """Lago's ClickHouse event store: every valid write is kept, and duplicates vanish only when read.

    Usage reads (stats, the events list) see one event per (organization, external_subscription_id,
    code, transaction_id, timestamp), carrying the values (properties, precise_total_amount_cents) of
    its latest write: the server keeps the row enriched last. The key keeps its first place in arrival
    order. The timestamp is the stored millisecond UTC text, so two spellings of one instant are one
    key. `find` reads the raw rows and answers the first one written.
    """

    kind: ClassVar[str] = "clickhouse"

    def __init__(self, organization: str, max_events: int | None = DEFAULT_MAX_EVENTS) -> None:
        super().__init__(max_events)
        self._organization = organization
        # The organization's id as rows carry it: a UUID derived from the key, never the key itself.
        self.organization_id = str(uuid.uuid5(_ORGANIZATIONS, organization))
        self._arrivals = 0
        self._events: dict[ReadKey, Event] = {}

    def commit(self, keys: Sequence[LagoKey | None], events: Sequence[Event]) -> list[int]:
        """Write valid `events`; a duplicate is never refused (StoreFull: none is written)."""
        del keys  # the write never checks for duplicates
        read_keys: list[ReadKey] = [
            (
                self._organization,
                # events_raw's column is a String, not Nullable: a null subscription is stored as "".
                event.get("external_subscription_id") or "",
                event.get("code"),
                event["transaction_id"],
                event["timestamp"],
            )
            for event in events
        ]
        with self._lock:
            # Rows that usage reads would count as new events: a re-sent one takes no room.
            self._make_room(len({key for key in read_keys if key not in self._events}))
            for key, event in zip(read_keys, events, strict=True):
                self._arrivals += 1
                if key in self._events:
                    self._duplicates += 1
                # A dict keeps a replaced key where it was: the latest values, in first-arrival order.
                self._events[key] = event
                self._first_by_transaction.setdefault(event["transaction_id"], event)
        return []

    def stats(self) -> ProviderStats:
        with self._lock:
            return ProviderStats(len(self._events), self._duplicates, self._requests, arrivals=self._arrivals)


AnyLagoStore = LagoStore | ClickhouseLagoStore


def new_lago_store(kind: str, organization: str, max_events: int | None = DEFAULT_MAX_EVENTS) -> AnyLagoStore:
    if kind == "postgres":
        return LagoStore(max_events)
    if kind == "clickhouse":
        return ClickhouseLagoStore(organization, max_events)
    raise ValueError(f"lago_store: must be one of {', '.join(LAGO_STORES)}, got {shown(kind)}")
