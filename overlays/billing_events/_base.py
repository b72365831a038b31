"""What the sync and async clients share: configuration, rules, counters, outcome sink."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson

from . import __version__, metrics
from . import _constants as C
from ._post import AsyncBatchPoster, BatchPoster
from ._process import reset_after_fork
from ._transport import NoCookies
from .config import ClientConfig, Provider, resolve_base_url, resolve_token
from .deadletter import (
    BadLineCallback,
    DeadLetterFile,
    OutcomeCallback,
    OutcomeSink,
    held_back_outcome,
    read_dead_letters,
    unknown_since,
)
from .delivery import Recorder
from .errors import InvalidEventError
from .outcomes import Outcome, OutcomeStatus, Report, attach_report, past_window_reason, stale_before
from .pacing import PUBLISHED, PublishedPace, async_event_hooks, event_hooks, make_pacer
from .providers import LagoRules, Pending, ProviderRules, Settled, TogaiRules
from .providers.base import settle_unsent
from .retry import RetryPolicy
from .stats import Stats, StatsCounter, Tally
from .text import shorten, show

letter_log = logging.getLogger("billing_events.deadletter")

PROVIDER_DEFAULTS: dict[str, tuple[type[ProviderRules], int, int]] = {
    "togai": (TogaiRules, C.TOGAI_MAX_BATCH_EVENTS, C.TOGAI_MAX_BODY_BYTES),
    "lago": (LagoRules, C.LAGO_MAX_BATCH_EVENTS, C.LAGO_MAX_BODY_BYTES),
}
USER_AGENT = f"billing-events/{__version__}"


class ClientBase:
    provider: ClassVar[Provider]
    asynchronous: ClassVar[bool] = False

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str | None = None,
        endpoint: str | None = None,
        timeout: float = C.DEFAULT_TIMEOUT,
        connect_timeout: float = C.DEFAULT_CONNECT_TIMEOUT,
        max_batch_events: int | None = None,
        max_batch_bytes: int | None = None,
        retry: RetryPolicy | None = None,
        dead_letter_path: str | Path | None = None,
        on_dead_letter: OutcomeCallback | None = None,
        validate: bool = True,
        max_requests_per_second: float | PublishedPace | None = PUBLISHED,
        rate_budget: str | None = None,
    ) -> None:
        rules_type, default_events, default_bytes = PROVIDER_DEFAULTS[self.provider]
        self.config = ClientConfig(
            provider=self.provider,
            base_url=resolve_base_url(self.provider, base_url, endpoint),
            token=resolve_token(self.provider, token),
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_batch_events=default_events if max_batch_events is None else max_batch_events,
            max_batch_bytes=default_bytes if max_batch_bytes is None else max_batch_bytes,
            retry=retry or RetryPolicy(),
        )
        # validate=False sends events as they are and lets the provider judge them.
        self.rules: ProviderRules = rules_type(
            self.config.max_batch_events, self.config.max_batch_bytes, validate
        )
        self.dead_letter_file = DeadLetterFile(dead_letter_path) if dead_letter_path is not None else None
        self.on_dead_letter = on_dead_letter
        self.pacer = make_pacer(self.config, self.rules.batch_path, max_requests_per_second, rate_budget)
        self._stats = StatsCounter()
        self.sink = OutcomeSink(self.provider, self._stats, self.dead_letter_file, on_dead_letter)
        self._request_meter = metrics.RequestMeter(self.provider, self.config.base_url)
        # Both clients: a forked child gets its own pool and locks (``_reset_after_fork``).
        reset_after_fork(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.config.base_url!r})"

    @property
    def stats(self) -> Stats:
        return self._stats.snapshot(**self.pacing_stats())

    def pacing_stats(self) -> dict[str, Any]:
        """The pacer's figures for ``Stats``: current pace, seconds waited for budget, 429s seen."""
        pacer = self.pacer
        return {"pace": pacer.pace, "budget_wait": round(pacer.waited, 3), "throttled": pacer.throttled}

    def validate(self, event: object) -> dict[str, Any]:
        """Check one event against the spec without sending it; raise InvalidEventError if it breaks a rule."""
        return self.rules.validate(event)

    def _build_api(self) -> Any:
        """The generated API client (sync or async, by the subclass), with a connection pool of its own."""
        raise NotImplementedError

    def _reset_after_fork(self) -> None:
        # The parent's pooled sockets must not be shared: start a new pool, leave the old one alone.
        self._api = self._build_api()
        # A lock another thread held at the fork would stay held in the child forever.
        self._stats.reset_lock()
        # The parent's counts are its own: events it had in flight never settle here, so the child's
        # counters start from zero and add up to the child's sends.
        self._stats.reset()
        self.sink.reset_lock()
        if self.dead_letter_file is not None:
            self.dead_letter_file.reset_lock()

    def _api_client(self, api_client_type: Any, transport: Any) -> Any:
        """The generated AuthenticatedClient; kept private because its repr shows the token."""
        api = api_client_type(
            base_url=self.config.base_url,
            token=self.config.token.reveal(),
            timeout=self.config.httpx_timeout(),
            headers={"User-Agent": USER_AGENT},
            raise_on_unexpected_status=True,
            httpx_args=self._httpx_args(transport),
        )
        http = api.get_async_httpx_client() if self.asynchronous else api.get_httpx_client()
        http.cookies = NoCookies()
        # Batches go out through the same client's hooks and transport, without its send() (``_post``).
        self._poster = (
            AsyncBatchPoster(http, transport) if self.asynchronous else BatchPoster(http, transport)
        )
        return api

    def dead_letter_events(
        self,
        path: str | Path,
        on_bad_line: BadLineCallback | None = None,
        *,
        resend_past_window: bool = False,
    ) -> list[dict[str, Any]]:
        """The events of a dead-letter file that belong to this provider, keys included.

        A line that is not a dead letter is skipped and reported (see ``read_dead_letters``). An
        ``unknown`` letter older than the provider's window for repeated keys (Togai: 45 days, less a
        day) is left out with a WARNING, since Togai would bill it again if the first send was stored;
        ``resend_past_window=True`` keeps it. So is a letter whose event was too large to keep.
        """
        events, _ = self._replay_plan(path, on_bad_line, resend_past_window)
        return events

    def _replay_plan(
        self, path: str | Path, on_bad_line: BadLineCallback | None, resend_past_window: bool
    ) -> tuple[list[dict[str, Any]], list[tuple[int, Outcome]]]:
        """The events a replay sends, and the letters it holds back, each with its place in the report."""
        cutoff = None if resend_past_window else stale_before(self.provider)
        events: list[dict[str, Any]] = []
        held: list[tuple[int, Outcome]] = []
        others = 0
        for letter in read_dead_letters(path, on_bad_line):
            if letter.provider != self.provider:
                others += 1
                continue
            reason = None
            if letter.clipped is not None:
                # The note is read from the file: a damaged one must not make the reason grow.
                reason = f"not replayed: {shorten(str(letter.clipped))} (fix it where it came from)"
            elif (since := unknown_since(letter.status, letter.unsure_from, cutoff)) is not None:
                reason = past_window_reason(self.provider, since, "resend_past_window=True replays it")
            if reason is None:
                if letter.status == OutcomeStatus.UNKNOWN.value and isinstance(letter.key, str):
                    self.sink.remember_unknown(letter.key, letter.unsure_from)
                events.append(letter.event)
                continue
            key = letter.key if isinstance(letter.key, str) else show(letter.key)
            letter_log.warning(
                "%s: %s %s %s",
                path,
                self.rules.key_field,
                shorten(key, 80),
                reason,
                extra={"provider": self.provider},
            )
            held.append((len(events) + len(held), held_back_outcome(letter, key, reason)))
        if others:
            letter_log.warning(
                "%s: %d letters of another provider left out", path, others, extra={"provider": self.provider}
            )
        return events, held

    def _httpx_args(self, transport: Any) -> dict[str, Any]:
        # The pacer runs before and after every request of the client, whatever its transport.
        hooks = async_event_hooks if self.asynchronous else event_hooks
        args: dict[str, Any] = {"event_hooks": hooks(self.pacer)}
        if transport is not None:
            args["transport"] = transport
        else:
            args["limits"] = _limits()
        return args

    def _batches(
        self, events: Iterable[object], slots: list[Slot], enqueued: Tally
    ) -> Iterator[list[Pending]]:
        """Request-sized batches of ``events``, prepared as they are needed.

        Each event gets a slot in ``slots`` (its report position); one that breaks
        the spec is settled there at once as ``rejected`` and never sent.
        """
        for batch in self.rules.chunks(self._admit(events, slots)):
            # Once a batch, not once an event (a lock each time); the send's own tally with it, atomically.
            self._stats.add_counted("enqueued", len(batch), enqueued)
            yield batch

    def _admit(self, events: Iterable[object], slots: list[Slot]) -> Iterator[Pending]:
        rules = self.rules
        # The caller's keys seen in this send(): a key the provider stores once is sent once.
        seen: dict[object, tuple[int, bool]] = {}
        seq = 0
        for group, interrupted in _groups(events, ADMIT_GROUP):
            # One schema call for the group; only when it fails is each event checked on its own.
            checked = rules.all_valid(group)
            for event in group:
                try:
                    key, payload, data, keyed, stamped = rules.encode_parts(event, checked=checked)
                except InvalidEventError as exc:
                    outcome = rejected_outcome(exc, event)
                    slots.append(outcome)
                    self.sink.record([outcome])
                    seq += 1
                    continue
                pending = Pending(key, payload, "", seq)
                if keyed:
                    identity = _hashable(rules.repeat_identity(data, key))
                    first = seen.get(identity)
                    if first is not None:
                        slots.append(self._repeat(pending, stamped, first, slots))
                        seq += 1
                        continue
                    seen[identity] = (seq, stamped)
                slots.append(pending)
                seq += 1
                yield pending
            if interrupted is not None:
                raise interrupted

    def _repeat(self, pending: Pending, stamped: bool, first: tuple[int, bool], slots: list[Slot]) -> Slot:
        """The slot of an event whose key an earlier event of the same send() already has."""
        first_seq, first_stamped = first
        stamp = self.rules.stamp_field
        if _content(_event_of(slots[first_seq]), stamp if first_stamped else None) == _content(
            pending.event, stamp if stamped else None
        ):
            return Repeat(pending, first_seq)
        reason = (
            f"{self.rules.key_field} {shorten(pending.key)!r} is already used by event {first_seq} of this"
            " send() with different content; the provider would keep only one of them"
        )
        outcome = Outcome(key=pending.key, status=OutcomeStatus.REJECTED, event=pending.event, reason=reason)
        self.sink.record([outcome])
        return outcome

    def _recorder(self, slots: list[Slot]) -> Recorder:
        def record(delivered: list[Pending], settled: list[Settled]) -> None:
            settled = self.sink.with_earlier(settled)  # the report says what the letters say
            for pending in delivered:
                pending.delivered = True
                # The Pending goes: a large send() would otherwise keep one per event until it returns,
                # long enough for the garbage collector to move them all into its oldest generation.
                slots[pending.seq] = (pending.key, pending.payload, pending.attempts)
            for item in settled:
                slots[item.pending.seq] = item
            self.sink.record_settled(delivered, settled)

        return record

    def _finish(self, slots: list[Slot], enqueued: Tally, interrupted: BaseException | None = None) -> Report:
        """The report of a ``send()``; after an interruption, what was not settled ends failed or unknown."""
        if interrupted is not None:
            # Events taken from the caller that no batch handed on (the chunker held them when the caller's
            # iterable raised, or Ctrl-C came) end here with the others: count them as enqueued too.
            admitted = sum(1 for slot in slots if not isinstance(slot, Outcome | Repeat))
            self._stats.add("enqueued", admitted - enqueued.count)
            why = f"send() interrupted ({type(interrupted).__name__}) before an answer"
            unsettled = [slot for slot in slots if isinstance(slot, Pending) and not slot.delivered]
            settled = self.sink.with_earlier(settle_unsent(unsettled, why))
            for item in settled:
                slots[item.pending.seq] = item
            self.sink.record_settled([], settled)
        pending_repeats = [slot for slot in slots if isinstance(slot, Repeat)]
        if pending_repeats:
            repeats = self.sink.with_earlier([resolve_repeat(repeat, slots) for repeat in pending_repeats])
            for repeat, resolved in zip(pending_repeats, repeats, strict=True):
                repeat.settled = resolved  # with the earlier send's moment, as its first copy
            self.sink.record_settled([], repeats)
        report = finish(slots)
        if interrupted is not None:
            attach_report(interrupted, report)
        return report

    def _count_retry(self, amount: int) -> None:
        self._stats.add("retried", amount)


# Events read from the caller's iterable at a time and checked against the spec in one call.
ADMIT_GROUP = 64


def _groups(events: Iterable[object], size: int) -> Iterator[tuple[list[object], BaseException | None]]:
    """Consecutive lists of up to ``size`` events, read as they are needed.

    When the iterable raises, the events read before it are still handed out, with the exception,
    so that each of them gets its outcome before it propagates.
    """
    iterator = iter(events)
    while True:
        group: list[object] = []
        try:
            # extend() keeps what it read when the iterable raises partway.
            group.extend(itertools.islice(iterator, size))
        except BaseException as exc:  # the caller's iterable (or Ctrl-C while reading it)
            yield group, exc
            return
        if not group:
            return
        yield group, None
        if len(group) < size:
            return


def rejected_outcome(exc: InvalidEventError, event: object) -> Outcome:
    data = exc.event if isinstance(exc.event, dict) else {"unreadable_event": repr(event)[:1000]}
    return Outcome(key=exc.key or "", status=OutcomeStatus.REJECTED, event=data, reason=str(exc), error=exc)


class Repeat:
    """An event of a send() whose key an earlier one of the same send() has, with the same content.

    It is not sent: its outcome follows the earlier event's (``duplicate`` once that one is stored).
    """

    __slots__ = ("first", "pending", "settled")

    def __init__(self, pending: Pending, first: int) -> None:
        self.pending = pending
        self.first = first
        self.settled: Settled | None = None


def resolve_repeat(repeat: Repeat, slots: list[Slot]) -> Settled:
    earlier = slots[repeat.first]
    status = _status(earlier)
    if status.delivered:
        settled = Settled(repeat.pending, OutcomeStatus.DUPLICATE, f"same event as event {repeat.first}")
    else:
        reason = f"same event as event {repeat.first}, which ended {status.value}"
        settled = Settled(repeat.pending, status, reason)
    repeat.settled = settled
    return settled


# A delivered event's slot: its key, JSON and attempts. Atomic values only, so the garbage collector
# stops tracking the tuple at its first pass, and never scans it again however long the report lives.
Delivered = tuple[str, bytes, int]

# A report slot: accepted (its Pending until it is settled), delivered, settled otherwise, refused
# locally, or a repeat of an earlier event.
Slot = Pending | Delivered | Settled | Outcome | Repeat


def _status(slot: Slot) -> OutcomeStatus:
    if isinstance(slot, tuple):
        return OutcomeStatus.DELIVERED
    if isinstance(slot, Pending):
        raise AssertionError(f"event {slot.seq} was never settled")  # a bug, never a silent loss
    if isinstance(slot, Repeat):
        assert slot.settled is not None
        return slot.settled.status
    return slot.status


def finish(slots: list[Slot]) -> Report:
    """The report of a ``send()``; outcomes are built from the slots when first read."""
    delivered = OutcomeStatus.DELIVERED
    # Most slots are delivered events: their status without a call each.
    statuses = [delivered if type(slot) is tuple else _status(slot) for slot in slots]

    def make(index: int) -> Outcome:
        slot = slots[index]
        if isinstance(slot, tuple):
            key, payload, attempts = slot
            return Outcome(key=key, status=delivered, event=orjson.loads(payload), attempts=attempts)
        if isinstance(slot, Repeat):
            assert slot.settled is not None
            return slot.settled.outcome()
        if isinstance(slot, Settled):
            return slot.outcome()
        assert isinstance(slot, Outcome)  # a Pending left at the end was caught by _status above
        return slot

    return Report.lazy(statuses, make)


def _event_of(slot: Slot) -> dict[str, Any]:
    """The event of an admitted event's slot, as it was sent."""
    if isinstance(slot, tuple):
        loaded: dict[str, Any] = orjson.loads(slot[1])
        return loaded
    if isinstance(slot, Settled):
        return slot.pending.event
    assert isinstance(slot, Pending)
    return slot.event


def _content(event: dict[str, Any], stamped: str | None) -> dict[str, Any]:
    """An event without the field the overlay filled in, for comparing two events' content."""
    return {name: value for name, value in event.items() if name != stamped}


def _hashable(identity: object) -> object:
    try:
        hash(identity)
    except TypeError:
        return repr(identity)
    return identity


def _limits() -> httpx.Limits:
    return httpx.Limits(max_connections=C.MAX_CONNECTIONS, max_keepalive_connections=C.MAX_CONNECTIONS)
