"""Items 6 and 15 on the wire: a server's answer is kept short, and a redirect names its Location."""

from __future__ import annotations

import pytest
from cli.support import lago_event, togai_event

from billing_events import Lago, RetryPolicy, Togai
from hostile.conftest import TOKEN
from hostile.server import Answer, HostileServer

FAST = RetryPolicy(max_attempts=2, deadline=5.0, initial_delay=0.01, max_delay=0.01)


@pytest.mark.parametrize("status", [301, 307])
def test_a_redirect_names_its_location_scrubbed(hostile: HostileServer, status: int) -> None:
    location = f"https://elsewhere.example/ingest?token={TOKEN}"
    hostile.answer(Answer("redirect", status=status, store=False, location=location))
    with Togai(TOKEN, base_url=hostile.url, retry=FAST) as client:
        [outcome] = client.send([togai_event(0)]).outcomes
    assert not outcome.delivered
    assert outcome.reason is not None
    assert "redirected to https://elsewhere.example/ingest?token=***" in outcome.reason
    assert TOKEN not in outcome.reason
    assert hostile.requests == 1  # never followed: the batch goes only to base_url


def test_a_200_kb_error_message_gives_a_short_reason(hostile: HostileServer) -> None:
    body = b'{"message":"' + b"m" * 200_000 + b'"}'
    hostile.answer(Answer("error", status=400, store=False, body=body))
    with Lago(TOKEN, base_url=hostile.url, retry=FAST) as client:
        [outcome] = client.send([lago_event(0)]).outcomes
    assert outcome.status.value == "rejected"
    assert outcome.reason is not None and len(outcome.reason) < 1200
    assert len(str(outcome.error)) < 1200


@pytest.mark.parametrize("status", [500, 502, 503, 504, 520, 524])
def test_html_5xx_pages_are_never_taken_for_a_success(hostile: HostileServer, status: int) -> None:
    hostile.answer(Answer("html", status=status, store=False), Answer("ok"))
    with Togai(TOKEN, base_url=hostile.url, retry=FAST) as client:
        [outcome] = client.send([togai_event(0)]).outcomes
    # A proxy's HTML page is retried, and the event is delivered by the answer that follows.
    assert outcome.delivered
    assert hostile.requests == 2 and hostile.stored_count == 1


def test_an_html_200_is_not_taken_for_a_success(hostile: HostileServer) -> None:
    # A captive portal or a misrouted proxy answers 200 with a page; the server may or may not have stored.
    hostile.answer(Answer("html", status=200, store=True), Answer("ok"))
    with Lago(TOKEN, base_url=hostile.url, retry=FAST) as client:
        [outcome] = client.send([lago_event(0)]).outcomes
    assert hostile.requests == 2  # asked again: the page said nothing about the events
    assert outcome.delivered


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_connection_the_server_closed_while_idle_is_not_reused(
    hostile: HostileServer, asynchronous: bool
) -> None:
    # The client's network backend answers httpcore's "is this idle socket readable?" check:
    # a server's close is seen before a request is written to the dead connection.
    hostile.answer(Answer("ok_then_close"))
    events = [togai_event(n) for n in range(4)]
    if asynchronous:
        import asyncio

        from billing_events import AsyncTogai

        async def run() -> int:
            async with AsyncTogai(TOKEN, base_url=hostile.url, retry=RetryPolicy(max_attempts=1)) as client:
                for event in events:
                    assert (await client.send([event])).ok
                    assert await asyncio.to_thread(hostile.hung_up.acquire, timeout=10)
                return client.stats.retried

        retried = asyncio.run(run())
    else:
        with Togai(TOKEN, base_url=hostile.url, retry=RetryPolicy(max_attempts=1)) as client:
            for event in events:
                assert client.send([event]).ok
                assert hostile.hung_up.acquire(timeout=10)
            retried = client.stats.retried
    assert retried == 0
    assert hostile.stored_count == 4
