"""Review r31 (async paths): however an async send() or the async background sender ends, each event
ends with the outcome the provider's state allows, and no kept text grows with one bad value.

Every test here is a defect, marked as a strict xfail: it passes once the defect is fixed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from cli.support import lago_event
from overlay.scripted import Scripted, accepted, togai_event

from billing_events import (
    APIError,
    AsyncLago,
    AsyncTogai,
    OutcomeStatus,
    RateLimitedError,
    RetryPolicy,
    Togai,
)
from billing_events.outcomes import Outcome
from hostile.conftest import TOKEN
from hostile.server import echo_head_server

FAST = RetryPolicy(max_attempts=3, deadline=5.0, initial_delay=0.001, max_delay=0.01, max_retry_after=0.01)
# What a reason is cut to (README, "Bounds": a reason or server message is cut to 1,000 characters),
# with room for the words around it.
TEXT_BOUND = 2_000
# A Retry-After that parses as an HTTP-date whose year no C long holds.
HOSTILE_DATE = "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"


def _togai(transport: httpx.AsyncBaseTransport, **options: Any) -> AsyncTogai:
    options.setdefault("max_requests_per_second", None)
    return AsyncTogai(TOKEN, base_url="http://togai.local", transport=transport, retry=FAST, **options)


# -- 1. A close deadline that finds a request not yet sent calls it unknown ----------------------


async def _close_while_connecting(port: int) -> list[Outcome]:
    letters: list[Outcome] = []
    client = AsyncLago(
        TOKEN,
        base_url=f"http://127.0.0.1:{port}",
        timeout=30.0,
        connect_timeout=30.0,
        retry=RetryPolicy(max_attempts=1, deadline=60.0),
        on_dead_letter=letters.append,
    )
    sender = client.background()
    sender.track(lago_event(0, transaction_id="tx-connecting"))
    await sender.close(timeout=0.3)  # its lane is still making the connection: no byte left
    await client.aclose()
    return letters


async def _close_while_waiting_for_budget(cancelled: bool = False) -> list[Outcome]:
    letters: list[Outcome] = []
    server = Scripted(default=accepted)
    # One request every 5 s; the pacer lets two go at once, the third waits for its slot.
    client = _togai(server.transport(), max_requests_per_second=0.2, on_dead_letter=letters.append)
    sender = client.background(max_in_flight=4)
    for number in range(2):
        sender.track(togai_event(number, id=f"evt-{number}"))
        assert await sender.flush(timeout=5.0)
    sender.track(togai_event(2, id="evt-waiting"))
    if cancelled:
        with pytest.raises(TimeoutError):  # wait_for cancels the close() while the lane still waits
            await asyncio.wait_for(sender.close(timeout=30.0), 0.3)
    else:
        await sender.close(timeout=0.3)  # its lane is still waiting for its slot of the rate budget
    await client.aclose()
    assert len(server.requests) == 2  # the third event's request never reached the transport
    return letters


@pytest.mark.parametrize("waiting_for", ["connection", "rate budget"])
def test_a_close_deadline_that_finds_a_request_not_yet_sent_dead_letters_it_failed(
    waiting_for: str, unanswered_port: int
) -> None:
    """A user closes an async sender (a shutdown with the provider unreachable, or a sender held back by
    its rate budget) and gets the event dead-lettered ``unknown`` ("a request that may have stored it
    was out"), though no byte of it ever left: its connection never completed, or it was still waiting
    for its slot. It should be ``failed`` (surely not stored), as send() says in the same case and as
    the README's table says for a connection that never completed and a batch waiting for its budget.
    """
    if waiting_for == "connection":
        letters = asyncio.run(_close_while_connecting(unanswered_port))
    else:
        letters = asyncio.run(_close_while_waiting_for_budget())

    assert len(letters) == 1
    assert letters[0].status is OutcomeStatus.FAILED, letters[0].reason


def test_a_cancelled_close_that_finds_a_request_waiting_for_its_budget_dead_letters_it_failed() -> None:
    """The same when the ``close()`` itself is cancelled (``asyncio.wait_for`` around it): the README says a
    cancelled close dead-letters what is left before the cancellation goes on; a request still waiting
    for its rate budget sent nothing, so its event is ``failed``, not ``unknown``."""
    letters = asyncio.run(_close_while_waiting_for_budget(cancelled=True))

    assert len(letters) == 1
    assert letters[0].status is OutcomeStatus.FAILED, letters[0].reason


def test_a_thread_sender_close_deadline_during_a_budget_wait_dead_letters_it_failed() -> None:
    """The thread sender's twin of the test above: a user closes a sender held back by its rate budget
    and gets the event dead-lettered ``unknown``, though its worker was still waiting for its slot and
    no byte of it left. It should be ``failed`` (surely not stored), and its request should never leave,
    not after the deadline either."""
    letters: list[Outcome] = []
    server = Scripted(default=accepted)
    # One request every 5 s; the pacer lets two go at once, the third waits for its slot.
    client = Togai(
        TOKEN,
        base_url="http://togai.local",
        transport=server.transport(),
        retry=FAST,
        max_requests_per_second=0.2,
        on_dead_letter=letters.append,
    )
    sender = client.background()
    for number in range(2):
        sender.track(togai_event(number, id=f"evt-{number}"))
        assert sender.flush(timeout=5.0)
    sender.track(togai_event(2, id="evt-waiting"))
    sender.close(timeout=0.3)  # its worker is still waiting for its slot of the rate budget

    assert len(letters) == 1
    assert letters[0].status is OutcomeStatus.FAILED, letters[0].reason
    for worker in sender._threads:
        worker.join(10)
    assert len(server.requests) == 2  # the third event's request never left, with the client still open
    client.close()


# -- 2. A Retry-After whose date overflows takes the whole send() down --------------------------


def test_a_429_with_an_overflowing_retry_after_date_is_retried_not_raised() -> None:
    """A proxy answers 429 with ``Retry-After: Mon, 01 Jan 99999999999999999999 00:00:00 GMT``. The user's
    ``await send()`` raises OverflowError (a per-event problem raised out of send()), and its partial
    report calls the events ``unknown`` though a 429 stored nothing. The hint should be ignored (or
    capped): the 429 retried, and the event delivered by the next attempt. find_event() raises the same
    OverflowError instead of a RateLimitedError."""
    server = Scripted(
        httpx.Response(429, headers={"Retry-After": HOSTILE_DATE}, json={"message": "slow down"}),
        default=accepted,
    )

    async def run() -> tuple[OutcomeStatus, ...]:
        async with _togai(server.transport()) as client:
            report = await client.send([togai_event(0, id="evt-0")])
        return report.statuses

    assert asyncio.run(run()) == (OutcomeStatus.DELIVERED,)


def test_find_event_given_a_429_with_an_overflowing_retry_after_date_raises_rate_limited() -> None:
    """``await lago.find_event()`` against a 429 whose Retry-After date overflows raises a bare
    OverflowError; it should raise the typed RateLimitedError the README's error tree promises for 429."""
    answer = httpx.Response(429, headers={"Retry-After": HOSTILE_DATE}, json={"error": "Too Many Requests"})
    server = Scripted(default=answer)

    async def run() -> None:
        async with AsyncLago(
            TOKEN,
            base_url="http://lago.local",
            transport=server.transport(),
            retry=FAST,
            max_requests_per_second=None,
        ) as client:
            await client.find_event("tx-1")

    with pytest.raises(RateLimitedError):
        asyncio.run(run())


# -- 3. A deeply nested JSON error body takes the whole send() down -----------------------------


def test_a_429_whose_body_is_deeply_nested_json_is_retried_not_raised() -> None:
    """A proxy answers 429 with a 100 KB body of ``[`` (well under the 256 KiB error cap). The user's
    ``await send()`` raises RecursionError, and its partial report calls the events ``unknown`` though the
    429 stored nothing. The body should be read as text that is not the provider's answer: the 429
    retried, and the event delivered by the next attempt."""
    server = Scripted(
        httpx.Response(429, content=b"[" * 100_000, headers={"Content-Type": "application/json"}),
        default=accepted,
    )

    async def run() -> tuple[OutcomeStatus, ...]:
        async with _togai(server.transport()) as client:
            report = await client.send([togai_event(0, id="evt-0")])
        return report.statuses

    assert asyncio.run(run()) == (OutcomeStatus.DELIVERED,)


# -- 4. Error texts that grow with one bad value -------------------------------------------------


def test_a_huge_request_id_header_does_not_grow_the_outcomes_error() -> None:
    """A server answers 401 with a 60,000-character ``X-Request-Id``. The outcome's ``error`` (what
    ``raise_for_failures()`` raises, and the ``request_id`` field of every log record about the event)
    holds all 60,000 characters. It should be cut as find_event()'s errors cut it (100 characters), or
    at least as a reason is (1,000)."""
    server = Scripted(
        default=httpx.Response(401, json={"message": "bad key"}, headers={"X-Request-Id": "r" * 60_000})
    )

    async def run() -> Outcome:
        async with _togai(server.transport()) as client:
            report = await client.send([togai_event(0, id="evt-0")])
        return report[0]

    outcome = asyncio.run(run())

    assert outcome.status is OutcomeStatus.FAILED
    assert isinstance(outcome.error, APIError)
    assert len(str(outcome.error)) <= TEXT_BOUND
    assert len(outcome.error.request_id or "") <= TEXT_BOUND


def test_a_huge_malformed_header_line_does_not_grow_the_outcomes_error() -> None:
    """A server answers with a 50,000-byte header line h11 refuses. The outcome's reason is cut to about
    1,000 characters, but its ``error`` (what ``raise_for_failures()`` raises) quotes the whole line:
    50,000 characters. It should be cut like the reason."""

    def head(_: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nX-Broken" + b"x" * 50_000 + b"\r\n"

    async def run(url: str) -> Outcome:
        async with AsyncTogai(
            TOKEN, base_url=url, retry=RetryPolicy(max_attempts=1), max_requests_per_second=None
        ) as client:
            report = await client.send([togai_event(0, id="evt-0")])
        return report[0]

    with echo_head_server(head) as url:
        outcome = asyncio.run(run(url))

    assert outcome.status is OutcomeStatus.UNKNOWN
    assert len(outcome.reason or "") <= TEXT_BOUND
    assert len(str(outcome.error)) <= TEXT_BOUND
