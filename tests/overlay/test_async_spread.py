"""Async ``send()``: from their second batch on, lanes go spread over one round trip (``_spread``)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from billing_events import AsyncTogai, OutcomeStatus, RetryPolicy, partial_report
from billing_events._spread import MAX_ROUND_TRIP, RoundTrip, Spread

from .scripted import accepted, togai_event

TOKEN = "spread-test-token"
LANES = 4


class Waits:
    """``asyncio.sleep`` recording each positive wait; ``waiting`` is set once one is under way."""

    def __init__(self) -> None:
        self.seen: list[float] = []
        self.waiting = asyncio.Event()
        self.real = asyncio.sleep

    async def __call__(self, delay: float, result: Any = None) -> Any:
        if delay > 0:
            self.seen.append(delay)
            self.waiting.set()
        return await self.real(delay, result)


def _client(transport: httpx.AsyncBaseTransport, retry: RetryPolicy) -> AsyncTogai:
    return AsyncTogai(
        TOKEN,
        base_url="http://togai.local",
        transport=transport,
        max_in_flight=LANES,
        max_batch_events=1,  # one event, one batch: the test counts batches in events
        retry=retry,
        max_requests_per_second=None,
    )


def test_a_send_of_one_round_waits_for_nothing_and_a_longer_one_spreads_its_lanes(
    monkeypatch: pytest.MonkeyPatch, fast_retry: RetryPolicy
) -> None:
    waits = Waits()
    monkeypatch.setattr(asyncio, "sleep", waits)

    async def handler(request: httpx.Request) -> httpx.Response:
        await waits.real(0)  # an answer comes later: the other lanes send meanwhile
        return accepted(request)

    async def run() -> tuple[list[float], list[float]]:
        async with _client(httpx.MockTransport(handler), fast_retry) as client:
            one_round = await client.send([togai_event(n) for n in range(LANES)])
            assert one_round.ok
            after_one_round = list(waits.seen)
            three_rounds = await client.send([togai_event(n) for n in range(3 * LANES)])
            assert three_rounds.ok
            return after_one_round, waits.seen

    after_one_round, seen = asyncio.run(run())

    assert after_one_round == []
    # One wait per lane that came back for a second batch, but the first: 1, 2, 3 spacings.
    assert len(seen) == LANES - 1
    spacing = seen[0]
    assert seen == pytest.approx([spacing, 2 * spacing, 3 * spacing])
    assert 0 < seen[-1] < MAX_ROUND_TRIP


def test_a_send_cancelled_while_a_lane_waits_to_go_on_settles_every_event(
    monkeypatch: pytest.MonkeyPatch, fast_retry: RetryPolicy
) -> None:
    waits = Waits()
    monkeypatch.setattr(asyncio, "sleep", waits)
    slow = True

    async def handler(request: httpx.Request) -> httpx.Response:
        # The first send teaches the client a long round trip.
        await waits.real(0.2 if slow else 0)
        return accepted(request)

    async def run() -> list[OutcomeStatus]:
        nonlocal slow
        async with _client(httpx.MockTransport(handler), fast_retry) as client:
            assert (await client.send([togai_event(n) for n in range(LANES)])).ok
            slow = False
            sending = asyncio.ensure_future(client.send([togai_event(n) for n in range(2 * LANES)]))
            await asyncio.wait_for(waits.waiting.wait(), 10)
            sending.cancel()
            with pytest.raises(asyncio.CancelledError) as raised:
                await sending
            report = partial_report(raised.value)
            assert report is not None
            return list(report.statuses)

    statuses = asyncio.run(run())

    # The first round was answered; a batch taken by a lane still waiting to go on never left.
    assert len(statuses) >= LANES + 1
    assert statuses[:LANES] == [OutcomeStatus.DELIVERED] * LANES
    assert OutcomeStatus.FAILED in statuses[LANES:]
    assert set(statuses) <= {OutcomeStatus.DELIVERED, OutcomeStatus.FAILED, OutcomeStatus.UNKNOWN}


def test_the_round_trip_follows_the_deliveries_within_its_bounds() -> None:
    round_trip = RoundTrip()
    round_trip.observe(0.05)
    assert round_trip.seconds == pytest.approx(0.05)

    round_trip.observe(30.0)  # a retry's backoff: counted as four round trips at most
    assert round_trip.seconds == pytest.approx(0.05 + 0.2 * (0.2 - 0.05))

    far = RoundTrip()
    far.observe(30.0)
    assert far.seconds == MAX_ROUND_TRIP
    spread = Spread(far, 8)
    assert [spread.next_wait() for _ in range(9)] == pytest.approx(
        [n / 8 for n in (0, 1, 2, 3, 4, 5, 6, 7, 0)]
    )
