"""Review r28: claims of the README that the code did not keep (beyond the reviewers' own test files)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from billing_events import AsyncTogai, RetryPolicy, Togai

from .scripted import togai_event


def _refusing(request: httpx.Request) -> httpx.Response:
    return httpx.Response(400, json={"message": "schema api_calls is not active"})


def _held_back_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "billing_events.outcomes" and record.levelno == logging.WARNING
    ]


@pytest.mark.parametrize("kind", ["client", "sender"])
def test_a_close_says_how_many_undelivered_events_the_warning_throttle_held_back(
    kind: str, caplog: pytest.LogCaptureFixture, fast_retry: RetryPolicy
) -> None:
    """README "Logging": at most one WARNING every 10 s, and the next one says how many events it held
    back. A client or sender closed within those 10 s never logged them: there was no next one."""
    caplog.set_level(logging.WARNING, logger="billing_events.outcomes")
    client = Togai(
        "t", base_url="http://togai.local", transport=httpx.MockTransport(_refusing), retry=fast_retry
    )
    with client:
        if kind == "client":
            for n in range(3):
                client.send([togai_event(n)])
        else:
            with client.background(flush_at_events=1) as sender:
                for n in range(3):
                    sender.track(togai_event(n))
                    assert sender.flush(10)
    warnings = _held_back_warnings(caplog)
    assert len(warnings) == 2, warnings
    assert "1 event not delivered" in warnings[0]
    assert warnings[1].startswith("togai: 2 more events not delivered since the last warning")


def test_an_async_client_says_it_at_close_too(
    caplog: pytest.LogCaptureFixture, fast_retry: RetryPolicy
) -> None:
    caplog.set_level(logging.WARNING, logger="billing_events.outcomes")

    async def refusing(request: httpx.Request) -> httpx.Response:
        return _refusing(request)

    async def run() -> None:
        async with AsyncTogai(
            "t", base_url="http://togai.local", transport=httpx.MockTransport(refusing), retry=fast_retry
        ) as client:
            for n in range(2):
                await client.send([togai_event(n)])

    asyncio.run(run())
    warnings = _held_back_warnings(caplog)
    assert [w.startswith("togai: 1 more event not delivered") for w in warnings] == [False, True], warnings
