"""What happened to each event."""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

import attrs

from . import _constants as C
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


# Settled statuses by the one-byte code that checkpoints store (the CLI's state, backfill checkpoints):
# the order is on disk, so only ever append.
STORED_STATUSES = ("delivered", "duplicate", "rejected", "failed", "unknown")


def stale_before(provider: str, now: float | None = None) -> float | None:
    """The Unix time before which an ``unknown`` event is too old to re-send; None without such a limit.

    Past the provider's window for repeated keys (Togai: 45 days, less a day's margin), the provider
    no longer knows the key: if the first send was stored, a re-send is billed a second time.
    """
    window = C.DEDUP_WINDOW_SECONDS.get(provider)
    if window is None:
        return None
    return (time.time() if now is None else now) - (window - C.DEDUP_WINDOW_MARGIN_SECONDS)


def past_window(unsure_since: float | None, cutoff: float | None) -> bool:
    """Whether an event ``unknown`` since ``unsure_since`` (Unix time) is too old to re-send (``stale_before``)."""
    return cutoff is not None and unsure_since is not None and unsure_since < cutoff


def past_window_reason(provider: str, unsure_since: float, remedy: str) -> str:
    """Why such an event stays ``unknown``, and ``remedy``: how to send it anyway."""
    day = dt.datetime.fromtimestamp(unsure_since, dt.UTC).date().isoformat()
    return (
        f"unknown since {day}, past {provider}'s window for repeated keys: not sent again, as a re-send"
        f" could be billed twice; {remedy}"
    )


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
    held_back: bool = False
    """A replay left this dead letter out (its ``reason`` says why): ``to_resend()`` leaves it out too."""
    unsure_since: str | None = None
    """For an event a replay sent that an earlier send left ``unknown``: when that was (ISO 8601). The
    provider may have had it since, so its window for repeated keys runs from then, not from this send."""

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

    @overload
    def __getitem__(self, index: int) -> Outcome: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Outcome, ...]: ...

    def __getitem__(self, index: int | slice) -> Outcome | tuple[Outcome, ...]:
        """The outcome of the event at ``index`` (a tuple for a slice); built alone while the others
        have not been read."""
        if self._outcomes is not None:
            return self._outcomes[index]
        assert self._make is not None
        positions = range(len(self._statuses))[index]
        if isinstance(positions, range):
            return tuple(map(self._make, positions))
        return self._make(positions)

    @property
    def statuses(self) -> tuple[OutcomeStatus, ...]:
        """Each event's status, in order, without building an ``Outcome`` for it."""
        return tuple(self._statuses)

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
        statuses = self._statuses
        # list.count compares by identity first, in C: no Python call per event.
        found = statuses.count(OutcomeStatus.DELIVERED) + statuses.count(OutcomeStatus.DUPLICATE)
        return found == len(statuses)

    def by_status(self, status: OutcomeStatus) -> list[Outcome]:
        return [self[index] for index, found in enumerate(self._statuses) if found is status]

    def to_resend(self) -> list[Mapping[str, Any]]:
        """The events to send again: those ``failed`` or ``unknown``, with the keys and timestamps they
        were sent with, so that a provider that has them already does not bill them twice. Letters a
        replay held back are not among them."""
        outcomes = (
            self[index]
            for index, status in enumerate(self._statuses)
            if status in (OutcomeStatus.FAILED, OutcomeStatus.UNKNOWN)
        )
        return [outcome.event for outcome in outcomes if not outcome.held_back]

    def raise_for_failures(self) -> None:
        """Raise the first error of an event that was not delivered, if any."""
        from .errors import RejectedError

        for index, status in enumerate(self._statuses):
            if not status.delivered:
                outcome = self[index]
                if outcome.error is not None:
                    raise outcome.error
                raise RejectedError(outcome.reason or outcome.status.value)


def with_held_back(report: Report, held: Sequence[tuple[int, Outcome]]) -> Report:
    """``report`` with the ``held`` outcomes, each ``(position, outcome)``, put at their places among its own.

    A report cut short (an interrupted send) covers a prefix of the events: it gets the held outcomes
    placed before the first event it lacks, so that it still covers the first ``len(report)`` letters.
    """
    if not held:
        return report
    places = dict(held)
    statuses = report._statuses
    sources: list[Outcome | int] = []
    merged: list[OutcomeStatus] = []
    sent = 0
    for position in itertools.count():
        outcome = places.get(position)
        if outcome is not None:
            sources.append(outcome)
            merged.append(outcome.status)
        elif sent < len(statuses):
            sources.append(sent)
            merged.append(statuses[sent])
            sent += 1
        else:
            break

    def make(index: int) -> Outcome:
        source = sources[index]
        return source if isinstance(source, Outcome) else report[source]

    return Report.lazy(merged, make)


def held_back_on_interruption(exc: BaseException, held: Sequence[tuple[int, Outcome]]) -> None:
    """Give the partial report that ``exc`` carries out of a replay's send the letters it held back."""
    cut = partial_report(exc)
    if cut is not None and held:
        attach_report(exc, with_held_back(cut, held))


_REPORT_ATTRIBUTE = "billing_events_report"
_NOTE_PREFIX = "billing_events: "


def attach_report(exc: BaseException, report: Report) -> None:
    """Give an exception that interrupted a ``send()`` the report of the events it had accepted."""
    setattr(exc, _REPORT_ATTRIBUTE, report)
    note = f"{_NOTE_PREFIX}{report!r}; partial_report(exc) has the outcomes"
    notes = getattr(exc, "__notes__", None)
    # A report attached again (a replay adding the letters it held back) replaces the note of the first.
    ours = [index for index, text in enumerate(notes or ()) if str(text).startswith(_NOTE_PREFIX)]
    if notes is not None and ours:
        notes[ours[-1]] = note
    else:
        exc.add_note(note)


def partial_report(exc: BaseException) -> Report | None:
    """The report of a ``send()`` that ``exc`` interrupted (a cancellation, Ctrl-C, the caller's
    iterable raising), or None. Every event the send accepted has its outcome there::

        try:
            report = client.send(events)
        except BaseException as exc:
            report = partial_report(exc)
            ...  # later: client.send(report.to_resend())
            raise
    """
    report = getattr(exc, _REPORT_ATTRIBUTE, None)
    return report if isinstance(report, Report) else None
