"""What happened to each event."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterator, Mapping
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


@attrs.frozen
class Report:
    """One outcome per event given to ``send()``, in the same order."""

    outcomes: tuple[Outcome, ...]

    def __iter__(self) -> Iterator[Outcome]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    @property
    def counts(self) -> Mapping[OutcomeStatus, int]:
        found = Counter(outcome.status for outcome in self.outcomes)
        return {status: found.get(status, 0) for status in OutcomeStatus}

    @property
    def ok(self) -> bool:
        """True when every event was delivered (or was already there)."""
        return all(outcome.delivered for outcome in self.outcomes)

    def by_status(self, status: OutcomeStatus) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.status is status]

    def raise_for_failures(self) -> None:
        """Raise the first error of an event that was not delivered, if any."""
        from .errors import RejectedError

        for outcome in self.outcomes:
            if not outcome.delivered:
                if outcome.error is not None:
                    raise outcome.error
                raise RejectedError(outcome.reason or outcome.status.value)
