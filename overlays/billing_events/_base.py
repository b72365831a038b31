"""What the sync and async clients share: configuration, rules, counters, outcome sink."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx

from . import __version__
from . import _constants as C
from .config import ClientConfig, Provider, resolve_base_url, resolve_token
from .deadletter import BadLineCallback, DeadLetterFile, OutcomeCallback, OutcomeSink, read_dead_letters
from .delivery import Recorder
from .errors import InvalidEventError
from .outcomes import Outcome, OutcomeStatus, Report
from .providers import LagoRules, Pending, ProviderRules, Settled, TogaiRules
from .providers.base import delivered_outcome
from .retry import RetryPolicy
from .stats import Stats, StatsCounter

PROVIDER_DEFAULTS: dict[str, tuple[type[ProviderRules], int, int]] = {
    "togai": (TogaiRules, C.TOGAI_MAX_BATCH_EVENTS, C.TOGAI_MAX_BODY_BYTES),
    "lago": (LagoRules, C.LAGO_MAX_BATCH_EVENTS, C.LAGO_MAX_BODY_BYTES),
}
USER_AGENT = f"billing-events/{__version__}"


class ClientBase:
    provider: ClassVar[Provider]

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
        self._stats = StatsCounter()
        self.sink = OutcomeSink(self.provider, self._stats, self.dead_letter_file, on_dead_letter)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.config.base_url!r})"

    @property
    def stats(self) -> Stats:
        return self._stats.snapshot()

    def validate(self, event: object) -> dict[str, Any]:
        """Check one event against the spec without sending it; raise InvalidEventError if it breaks a rule."""
        return self.rules.validate(event)

    def _api_client(self, api_client_type: Any, transport: Any) -> Any:
        """The generated AuthenticatedClient; kept private because its repr shows the token."""
        return api_client_type(
            base_url=self.config.base_url,
            token=self.config.token.reveal(),
            timeout=self.config.httpx_timeout(),
            headers={"User-Agent": USER_AGENT},
            raise_on_unexpected_status=True,
            httpx_args=self._httpx_args(transport),
        )

    def dead_letter_events(
        self, path: str | Path, on_bad_line: BadLineCallback | None = None
    ) -> list[dict[str, Any]]:
        """The events of a dead-letter file that belong to this provider, keys included.

        A line that is not a dead letter is skipped and reported (see ``read_dead_letters``).
        """
        letters = read_dead_letters(path, on_bad_line)
        return [letter.event for letter in letters if letter.provider == self.provider]

    def _httpx_args(self, transport: Any) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if transport is not None:
            args["transport"] = transport
        else:
            args["limits"] = _limits()
        return args

    def _batches(self, events: Iterable[object], slots: list[Slot]) -> Iterator[list[Pending]]:
        """Request-sized batches of ``events``, prepared as they are needed.

        Each event gets a slot in ``slots`` (its report position); one that breaks
        the spec is settled there at once as ``rejected`` and never sent.
        """
        for batch in self.rules.chunks(self._admit(events, slots)):
            self._stats.add("enqueued", len(batch))  # once a batch, not once an event: a lock each time
            yield batch

    def _admit(self, events: Iterable[object], slots: list[Slot]) -> Iterator[Pending]:
        for seq, event in enumerate(events):
            try:
                pending = self.rules.prepare(event, seq)
            except InvalidEventError as exc:
                outcome = rejected_outcome(exc, event)
                slots.append(outcome)
                self.sink.record([outcome])
                continue
            slots.append(None)
            yield pending

    def _recorder(self, slots: list[Slot]) -> Recorder:
        def record(delivered: list[Pending], settled: list[Settled]) -> None:
            for pending in delivered:
                slots[pending.seq] = pending
            for item in settled:
                slots[item.pending.seq] = item
            self.sink.record_settled(delivered, settled)

        return record

    def _count_retry(self, amount: int) -> None:
        self._stats.add("retried", amount)


def rejected_outcome(exc: InvalidEventError, event: object) -> Outcome:
    data = exc.event if isinstance(exc.event, dict) else {"unreadable_event": repr(event)[:1000]}
    return Outcome(key=exc.key or "", status=OutcomeStatus.REJECTED, event=data, reason=str(exc), error=exc)


# A report slot: still pending (None), delivered (its Pending), settled otherwise, or refused locally.
Slot = Pending | Settled | Outcome | None


def finish(slots: list[Slot]) -> Report:
    """The report of a ``send()``; outcomes are built from the slots when first read."""
    statuses: list[OutcomeStatus] = []
    for index, slot in enumerate(slots):
        if slot is None:
            raise AssertionError(f"event {index} was never settled")  # a bug, never a silent loss
        statuses.append(OutcomeStatus.DELIVERED if isinstance(slot, Pending) else slot.status)

    def make(index: int) -> Outcome:
        slot = slots[index]
        if isinstance(slot, Pending):
            return delivered_outcome(slot)
        if isinstance(slot, Settled):
            return slot.outcome()
        assert slot is not None
        return slot

    return Report.lazy(statuses, make)


def _limits() -> httpx.Limits:
    return httpx.Limits(max_connections=C.MAX_CONNECTIONS, max_keepalive_connections=C.MAX_CONNECTIONS)
