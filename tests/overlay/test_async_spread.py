"""Async ``send()``: from their second batch on, lanes go spread over one round trip (``_spread``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from billing_events import AsyncTogai, OutcomeStatus, RetryPolicy, partial_report
from billing_events._spread import MAX_ROUND_TRIP, MIN_ROUNDS, RoundTrip, Spread

from .scripted import accepted, togai_event

TOKEN = "spread-test-token"
LANES = 4


class Waits:
    """``asyncio.sleep`` recording each positive wait of the test's own thread.

    ``waiting`` is set once one is under way. Other threads of the test process (a mock server under
    uvicorn ticks every 0.1 s) go on sleeping unrecorded.
    """

    def __init__(self) -> None:
        self.seen: list[float] = []
        self.waiting = asyncio.Event()
        self.real = asyncio.sleep
        self.thread = threading.get_ident()

    async def __call__(self, delay: float, result: Any = None) -> Any:
        if delay > 0 and threading.get_ident() == self.thread:
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


def _sends(
    monkeypatch: pytest.MonkeyPatch, retry: RetryPolicy, *sends: Iterable[dict[str, object]]
) -> list[list[float]]:
    """The waits of each send, one after the other on one client, answers a moment late."""
    waits = Waits()
    monkeypatch.setattr(asyncio, "sleep", waits)

    async def handler(request: httpx.Request) -> httpx.Response:
        await waits.real(0)  # an answer comes later: the other lanes send meanwhile
        return accepted(request)

    async def run() -> list[list[float]]:
        seen: list[list[float]] = []
        async with _client(httpx.MockTransport(handler), retry) as client:
            for events in sends:
                waits.seen.clear()
                assert (await client.send(events)).ok
                seen.append(list(waits.seen))
        return seen

    return asyncio.run(run())


def test_a_long_send_spreads_the_second_batches_of_its_lanes_over_one_round_trip(
    monkeypatch: pytest.MonkeyPatch, fast_retry: RetryPolicy
) -> None:
    one_round = [togai_event(n) for n in range(LANES)]
    long = [togai_event(n) for n in range(MIN_ROUNDS * LANES)]

    first, seen = _sends(monkeypatch, fast_retry, one_round, long)

    assert first == []
    # One wait per lane that came back for a second batch, but the first: 1, 2, 3 spacings.
    assert len(seen) == LANES - 1
    spacing = seen[0]
    assert seen == pytest.approx([spacing, 2 * spacing, 3 * spacing])
    assert 0 < seen[-1] < MAX_ROUND_TRIP


def test_a_send_of_fewer_rounds_or_of_unknown_length_does_not_hold_its_lanes_back(
    monkeypatch: pytest.MonkeyPatch, fast_retry: RetryPolicy
) -> None:
    # Spread, the lanes of a short send would end it later: its last round would wait.
    short = [togai_event(n) for n in range(2 * LANES)]
    almost = [togai_event(n) for n in range((MIN_ROUNDS - 1) * LANES + LANES - 1)]
    unknown = (togai_event(n) for n in range(MIN_ROUNDS * LANES))

    seen = _sends(monkeypatch, fast_retry, [togai_event(n) for n in range(LANES)], short, almost, unknown)

    assert seen == [[], [], [], []]


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
            events = [togai_event(n) for n in range(MIN_ROUNDS * LANES)]
            sending = asyncio.ensure_future(client.send(events))
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
    spread = Spread(far, 8, MIN_ROUNDS)
    assert [spread.next_wait() for _ in range(9)] == pytest.approx(
        [n / 8 for n in (0, 1, 2, 3, 4, 5, 6, 7, 0)]
    )
    short = Spread(far, 8, MIN_ROUNDS - 1)
    assert [short.next_wait() for _ in range(9)] == [0.0] * 9
