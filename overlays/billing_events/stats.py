"""Counters of a client or sender, readable at any time."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs

from .outcomes import OutcomeStatus


@attrs.frozen
class Stats:
    """A consistent snapshot of the counters."""

    enqueued: int = 0
    delivered: int = 0
    duplicate: int = 0
    rejected: int = 0
    failed: int = 0
    unknown: int = 0
    dropped: int = 0
    retried: int = 0
    in_queue: int = 0
    # Pacing (see pacing.py): the event endpoint's current requests/s (None when unpaced), the seconds
    # requests spent waiting for rate budget (summed over requests), and the 429 answers seen.
    pace: float | None = None
    budget_wait: float = 0.0
    throttled: int = 0
    in_spool: int = 0
    """Events in the durable spool, in flight included (a sender with ``spool=``)."""
    recovered: int = 0
    """Events taken over from the spool files of earlier or dead senders."""

    @property
    def settled(self) -> int:
        return self.delivered + self.duplicate + self.rejected + self.failed + self.unknown + self.dropped


# The fields counted here; the pacing fields come from the client's pacer.
COUNTERS = tuple(
    name for name in attrs.fields_dict(Stats) if name not in ("pace", "budget_wait", "throttled")
)

_FIELD = {
    OutcomeStatus.DELIVERED: "delivered",
    OutcomeStatus.DUPLICATE: "duplicate",
    OutcomeStatus.REJECTED: "rejected",
    OutcomeStatus.FAILED: "failed",
    OutcomeStatus.UNKNOWN: "unknown",
    OutcomeStatus.DROPPED: "dropped",
}


class Tally:
    """What one caller added to a counter (``StatsCounter.add_counted``)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class StatsCounter:
    """Thread-safe counters; ``snapshot()`` returns a frozen ``Stats``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def add_counted(self, name: str, amount: int, tally: Tally) -> None:
        """Add to a counter and to ``tally`` under one lock, with no call between the two: a signal (Ctrl-C)
        lands before both or after both, so the tally always says what the counter got from it."""
        with self._lock:
            self._counts[name] += amount
            tally.count += amount

    def settle(self, statuses: Iterable[OutcomeStatus]) -> None:
        """Count settled events, one status each, under one lock acquisition."""
        found = Counter(statuses)
        with self._lock:
            for status, amount in found.items():
                self._counts[_FIELD[status]] += amount

    def reset_lock(self) -> None:
        self._lock = threading.Lock()

    def snapshot(self, in_queue: int = 0, **pacing: Any) -> Stats:
        with self._lock:
            return Stats(**{**self._counts, "in_queue": in_queue}, **pacing)

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(self._counts, 0)
