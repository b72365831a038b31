"""What happened to each event."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs

from .errors import BillingEventsError


class OutcomeStatus(enum.Enum):
    DELIVERED = "delivered"
    """Stored by the provider."""
    DUPLICATE = "duplicate"
    """Already stored under the same idempotency key: counts as delivered."""
    REJECTED = "rejected"
    """Refused as invalid, by the provider or by the spec check before sending."""
    FAILED = "failed"
    """Not delivered: retries exhausted, deadline passed, or a non-retryable error."""
    UNKNOWN = "unknown"
    """Sent, but the answer did not say whether it was stored (safe to re-send: same key)."""
    DROPPED = "dropped"
    """Refused by a full background queue under the ``drop`` policy."""

    @property
    def delivered(self) -> bool:
        return self in (OutcomeStatus.DELIVERED, OutcomeStatus.DUPLICATE)


@attrs.frozen
class Outcome:
    """The final state of one event."""

    key: str
    """The idempotency key: Togai ``id`` or Lago ``transaction_id``."""
    status: OutcomeStatus
    event: Mapping[str, Any] = attrs.field(repr=False)
    reason: str | None = None
    attempts: int = 0
    error: BillingEventsError | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def delivered(self) -> bool:
        return self.status.delivered


class Report:
    """One outcome per event given to ``send()``, in the same order.

    Outcomes are built when first read: a large send that only looks at
    ``counts`` or ``ok`` never pays for a million ``Outcome`` objects.
    """

    __slots__ = ("_make", "_outcomes", "_statuses")

    def __init__(self, outcomes: Iterable[Outcome] = ()) -> None:
        self._outcomes: tuple[Outcome, ...] | None = tuple(outcomes)
        self._statuses = [outcome.status for outcome in self._outcomes]
        self._make: Callable[[int], Outcome] | None = None

    @classmethod
    def lazy(cls, statuses: list[OutcomeStatus], make: Callable[[int], Outcome]) -> Report:
        """A report whose i-th outcome, of status ``statuses[i]``, is ``make(i)`` when first read."""
        report = cls()
        report._outcomes, report._statuses, report._make = None, statuses, make
        return report

    @property
    def outcomes(self) -> tuple[Outcome, ...]:
        if self._outcomes is None:
            assert self._make is not None
            self._outcomes = tuple(map(self._make, range(len(self._statuses))))
        return self._outcomes

    def __iter__(self) -> Iterator[Outcome]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self._statuses)

    def __repr__(self) -> str:
        counts = ", ".join(f"{status.value}={count}" for status, count in self.counts.items() if count)
        return f"Report({len(self)} events: {counts or 'none'})"

    @property
    def counts(self) -> Mapping[OutcomeStatus, int]:
        found = Counter(self._statuses)
        return {status: found.get(status, 0) for status in OutcomeStatus}

    @property
    def ok(self) -> bool:
        """True when every event was delivered (or was already there)."""
        return all(status.delivered for status in self._statuses)

    def by_status(self, status: OutcomeStatus) -> list[Outcome]:
        outcomes = self.outcomes
        return [outcomes[index] for index, found in enumerate(self._statuses) if found is status]

    def raise_for_failures(self) -> None:
        """Raise the first error of an event that was not delivered, if any."""
        from .errors import RejectedError

        for index, status in enumerate(self._statuses):
            if not status.delivered:
                outcome = self.outcomes[index]
                if outcome.error is not None:
                    raise outcome.error
                raise RejectedError(outcome.reason or outcome.status.value)
