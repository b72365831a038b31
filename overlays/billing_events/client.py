"""The synchronous clients: ``Togai`` and ``Lago``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx

import lago_api
import togai_api
from lago_api.api.events import event_estimate_fees
from lago_api.models import (
    EventEstimateFeesInput,
    EventEstimateFeesInputObject,
    EventObject,
    EventProperties,
    EventResponse,
    FeeObject,
    FeesResponse,
)

from ._base import ClientBase, Slot
from ._post import BatchPoster
from ._transport import bounded
from .background import BackgroundSender
from .calls import find_request, retryable_call
from .config import Provider
from .deadletter import BadLineCallback
from .delivery import SyncDelivery
from .outcomes import Report, held_back_on_interruption, with_held_back
from .stats import Tally

T = TypeVar("T")
log = logging.getLogger("billing_events.client")


class _SyncClient(ClientBase):
    api_client_type: ClassVar[Callable[..., Any]]

    def __init__(
        self, token: str | None = None, *, transport: httpx.BaseTransport | None = None, **options: Any
    ) -> None:
        super().__init__(token, **options)
        self._transport = transport
        self._api = self._build_api()

    def _build_api(self) -> Any:
        return self._api_client(
            self.api_client_type, bounded(self._transport, self.config.timeout, self.config.base_url)
        )

    @property
    def http(self) -> httpx.Client:
        client: httpx.Client = self._api.get_httpx_client()
        return client

    @property
    def poster(self) -> BatchPoster:
        """How this client's batches go out (``_post``)."""
        assert isinstance(self._poster, BatchPoster)
        return self._poster

    def send(self, events: Iterable[object]) -> Report:
        """Send events now, in as few requests as the provider's limits allow; one outcome per event."""
        slots: list[Slot] = []
        delivery = SyncDelivery(
            self.rules, self.poster, self.config.retry, self._recorder(slots), self._count_retry
        )
        enqueued = Tally()
        try:
            for batch in self._batches(events, slots, enqueued):
                delivery.deliver(batch)
        except BaseException as exc:
            # Ctrl-C, or the caller's iterable raising: every accepted event still gets its outcome.
            self._finish(slots, enqueued, exc)
            raise
        return self._finish(slots, enqueued)

    def replay(
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
            report = self.send(events)
        except BaseException as exc:
            held_back_on_interruption(exc, held)
            raise
        return with_held_back(report, held)

    def background(self, **options: Any) -> BackgroundSender:
        """A background sender on this client: ``track()`` queues, a worker thread sends."""
        return BackgroundSender(self, **options)

    def close(self) -> None:
        self.http.close()
        self.sink.closing()
        log.info("%s client closed: %s", self.provider, self.stats, extra={"provider": self.provider})

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Togai(_SyncClient):
    """Send usage events to Togai.

    ``Togai()`` reads ``TOGAI_API_TOKEN`` and ``TOGAI_BASE_URL``; ``endpoint`` picks
    ``"production"`` (default) or ``"sandbox"``.
    """

    provider: ClassVar[Provider] = "togai"
    api_client_type = togai_api.AuthenticatedClient


class Lago(_SyncClient):
    """Send usage events to Lago, read them back and estimate fees.

    ``Lago()`` reads ``LAGO_API_KEY`` and ``LAGO_API_URL``; ``endpoint`` picks
    ``"us"`` (default) or ``"eu"``; a self-hosted server is given by ``base_url``.
    """

    provider: ClassVar[Provider] = "lago"
    api_client_type = lago_api.AuthenticatedClient

    def find_event(self, transaction_id: str) -> EventObject:
        """The stored event with this ``transaction_id``; raises NotFoundError if there is none."""
        request = find_request(transaction_id)
        http = self._api.get_httpx_client()
        answer = retryable_call(
            self.config.retry,
            lambda: self._request_meter.timed("GET", lambda marks: http.request(**request, extensions=marks)),
            EventResponse,
            self.provider,
        )
        return answer.event

    def estimate_fees(
        self,
        code: str,
        external_subscription_id: str,
        properties: dict[str, Any] | None = None,
        *,
        precise_total_amount_cents: str | int | float | None = None,
        timestamp: int | float | str | None = None,
        transaction_id: str | None = None,
    ) -> list[FeeObject]:
        """The fees an event would create for pay-in-advance charges; nothing is stored.

        ``precise_total_amount_cents`` prices a dynamic-pricing charge (without it that estimate is 0);
        ``timestamp`` and ``transaction_id`` are sent as given (the server overrides the id).
        """
        body = estimate_body(
            code,
            external_subscription_id,
            properties,
            precise_total_amount_cents=precise_total_amount_cents,
            timestamp=timestamp,
            transaction_id=transaction_id,
        )
        request = event_estimate_fees._get_kwargs(body=body)
        http = self._api.get_httpx_client()
        answer = retryable_call(
            self.config.retry,
            lambda: self._request_meter.timed(
                "POST", lambda marks: http.request(**request, extensions=marks)
            ),
            FeesResponse,
            self.provider,
        )
        return answer.fees


def estimate_body(
    code: str,
    external_subscription_id: str,
    properties: dict[str, Any] | None,
    *,
    precise_total_amount_cents: str | int | float | None = None,
    timestamp: int | float | str | None = None,
    transaction_id: str | None = None,
) -> EventEstimateFeesInput:
    """The estimate request; optional keys left as None are not sent."""
    event = EventEstimateFeesInputObject(code=code, external_subscription_id=external_subscription_id)
    if properties is not None:
        event.properties = EventProperties.from_dict(properties)
    if precise_total_amount_cents is not None:
        event.precise_total_amount_cents = precise_total_amount_cents
    if timestamp is not None:
        event.timestamp = timestamp
    if transaction_id is not None:
        event.transaction_id = transaction_id
    return EventEstimateFeesInput(event=event)
