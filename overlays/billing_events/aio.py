"""The asyncio clients: ``AsyncTogai`` and ``AsyncLago``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import httpx

import lago_api
import togai_api
from lago_api.api.events import event_estimate_fees
from lago_api.models import EventObject, EventResponse, FeeObject, FeesResponse

from . import _constants as C
from ._base import ClientBase, Slot
from ._post import AsyncBatchPoster
from ._spread import RoundTrip, Spread, known_rounds
from ._transport import async_bounded
from .aio_background import AsyncBackgroundSender
from .calls import async_retryable_call, find_request
from .client import estimate_body
from .config import Provider
from .deadletter import BadLineCallback
from .delivery import AsyncDelivery
from .errors import ConfigurationError
from .outcomes import Report, held_back_on_interruption, with_held_back
from .stats import Tally
from .text import shown

log = logging.getLogger("billing_events.client")


class _AsyncClient(ClientBase):
    api_client_type: ClassVar[Callable[..., Any]]
    asynchronous: ClassVar[bool] = True

    def __init__(
        self,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_in_flight: int = C.DEFAULT_MAX_IN_FLIGHT,
        **options: Any,
    ) -> None:
        super().__init__(token, **options)
        _check_in_flight(max_in_flight)
        self.max_in_flight = max_in_flight
        self._round_trip = RoundTrip()
        self._transport = transport
        self._api = self._build_api()

    def _build_api(self) -> Any:
        return self._api_client(
            self.api_client_type, async_bounded(self._transport, self.config.timeout, self.config.base_url)
        )

    @property
    def http(self) -> httpx.AsyncClient:
        client: httpx.AsyncClient = self._api.get_async_httpx_client()
        return client

    @property
    def poster(self) -> AsyncBatchPoster:
        """How this client's batches go out (``_post``)."""
        assert isinstance(self._poster, AsyncBatchPoster)
        return self._poster

    async def send(self, events: Iterable[object], *, max_in_flight: int | None = None) -> Report:
        """Send events with up to ``max_in_flight`` requests at once; one outcome per event."""
        in_flight = self.max_in_flight if max_in_flight is None else max_in_flight
        _check_in_flight(in_flight)
        slots: list[Slot] = []
        delivery = AsyncDelivery(
            self.rules, self.poster, self.config.retry, self._recorder(slots), self._count_retry
        )
        # One generator shared by the lanes: a lane encodes its next batch while the others wait on the network.
        enqueued = Tally()
        batches = self._batches(events, slots, enqueued)
        rounds = known_rounds(events, self.config.max_batch_events, in_flight)
        round_trip, spread = self._round_trip, Spread(self._round_trip, in_flight, rounds)
        clock = time.monotonic

        async def lane() -> None:
            for delivered, batch in enumerate(batches):
                if delivered == 1 and (wait := spread.next_wait()):
                    await asyncio.sleep(wait)  # see _spread: from its second batch on, a lane goes spread out
                started = clock()
                await delivery.deliver(batch)
                round_trip.observe(clock() - started)

        try:
            try:
                async with asyncio.TaskGroup() as lanes:
                    for _ in range(in_flight):
                        lanes.create_task(lane())
            except BaseExceptionGroup as group:
                # One lane's error (the caller's iterable raising, say) is the error of the call.
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise
        except BaseException as exc:
            # A cancellation or an error: every accepted event still gets its outcome.
            self._finish(slots, enqueued, exc)
            raise
        return self._finish(slots, enqueued)

    def background(self, **options: Any) -> AsyncBackgroundSender:
        """A background sender on this loop: ``track()`` queues, a task sends with requests in flight."""
        return AsyncBackgroundSender(self, **options)

    async def replay(
        self,
        dead_letter_path: str | Path,
        on_bad_line: BadLineCallback | None = None,
        *,
        resend_past_window: bool = False,
    ) -> Report:
        """Send the events of a dead-letter file again; their keys make this safe to repeat.

        A broken line (a write cut short, say) is skipped and reported to ``on_bad_line``
        (default: a WARNING with its line number); every good letter is still sent, except an
        ``unknown`` one past the provider's window for repeated keys (see ``dead_letter_events``) and
        one whose event was too large to keep. Those are in the report all the same, at their places,
        with their status, ``held_back`` and the reason: ``ok`` is False, ``to_resend()`` leaves them out.
        """
        events, held = self._replay_plan(dead_letter_path, on_bad_line, resend_past_window)
        try:
            report = await self.send(events)
        except BaseException as exc:
            held_back_on_interruption(exc, held)
            raise
        return with_held_back(report, held)

    async def aclose(self) -> None:
        await self.http.aclose()
        self.sink.closing()
        log.info("%s client closed: %s", self.provider, self.stats, extra={"provider": self.provider})

    async def __aenter__(self) -> _AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _check_in_flight(value: int) -> None:
    if not (isinstance(value, int) and 1 <= value <= 256):
        raise ConfigurationError(f"max_in_flight: must be an integer from 1 to 256, got {shown(value)}")


class AsyncTogai(_AsyncClient):
    """``Togai`` for asyncio, with several requests in flight."""

    provider: ClassVar[Provider] = "togai"
    api_client_type = togai_api.AuthenticatedClient

    async def __aenter__(self) -> AsyncTogai:
        return self


class AsyncLago(_AsyncClient):
    """``Lago`` for asyncio, with several requests in flight."""

    provider: ClassVar[Provider] = "lago"
    api_client_type = lago_api.AuthenticatedClient

    async def __aenter__(self) -> AsyncLago:
        return self

    async def find_event(self, transaction_id: str) -> EventObject:
        request = find_request(transaction_id)
        http = self._api.get_async_httpx_client()
        answer = await async_retryable_call(
            self.config.retry,
            lambda: self._request_meter.atimed(
                "GET", lambda marks: http.request(**request, extensions=marks)
            ),
            EventResponse,
            self.provider,
        )
        return answer.event

    async def estimate_fees(
        self,
        code: str,
        external_subscription_id: str,
        properties: dict[str, Any] | None = None,
        *,
        precise_total_amount_cents: str | int | float | None = None,
        timestamp: int | float | str | None = None,
        transaction_id: str | None = None,
    ) -> list[FeeObject]:
        body = estimate_body(
            code,
            external_subscription_id,
            properties,
            precise_total_amount_cents=precise_total_amount_cents,
            timestamp=timestamp,
            transaction_id=transaction_id,
        )
        request = event_estimate_fees._get_kwargs(body=body)
        http = self._api.get_async_httpx_client()
        answer = await async_retryable_call(
            self.config.retry,
            lambda: self._request_meter.atimed(
                "POST", lambda marks: http.request(**request, extensions=marks)
            ),
            FeesResponse,
            self.provider,
        )
        return answer.fees
