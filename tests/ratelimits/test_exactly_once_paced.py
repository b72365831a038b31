"""Exactly-once still holds with pacing on, the rate limits enforced and random faults mixed in."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from billing_events import AsyncLago, AsyncTogai, Lago, OutcomeStatus, RetryPolicy, Togai

from .conftest import BUDGET, GROUP, base_url
from .workers import make_events

N = 100
FAULTS = {"rate_429": 0.05, "rate_503": 0.05, "rate_drop": 0.05, "rate_lost_response": 0.05, "seed": 11}
POLICY = RetryPolicy(max_attempts=15, deadline=60, initial_delay=0.01, max_delay=0.2, max_retry_after=1.0)


def send_thread(cls: type[Togai | Lago], url: str, events: list[dict[str, Any]]) -> list[OutcomeStatus]:
    statuses: list[OutcomeStatus] = []
    with cls(
        "test-token", base_url=url, retry=POLICY, max_batch_events=5, max_requests_per_second=BUDGET
    ) as client:
        sender = client.background(
            flush_interval=0.05, workers=2, on_outcome=lambda o: statuses.append(o.status)
        )
        for event in events:
            sender.track(event)
        sender.close(timeout=60)
    return statuses


def send_asyncio(
    cls: type[AsyncTogai | AsyncLago], url: str, events: list[dict[str, Any]]
) -> list[OutcomeStatus]:
    async def run() -> list[OutcomeStatus]:
        async with cls(
            "test-token", base_url=url, retry=POLICY, max_batch_events=5, max_requests_per_second=BUDGET
        ) as client:
            return [outcome.status for outcome in await client.send(events)]

    return asyncio.run(run())


@pytest.mark.parametrize("provider", ["togai", "lago"])
def test_every_event_is_stored_once_with_pacing_limits_and_faults(server: str, provider: str) -> None:
    admin = httpx.Client(base_url=server, timeout=10)
    admin.post("/_mock/reset").raise_for_status()
    admin.put(
        "/_mock/rate_limits", json={"enabled": True, "limits": {GROUP[provider]: BUDGET}}
    ).raise_for_status()
    admin.put("/_mock/faults", json=FAULTS).raise_for_status()
    url = base_url(server, provider)
    first, second = make_events(provider, 0, N), make_events(provider, 1, N)

    if provider == "togai":
        statuses = send_thread(Togai, url, first) + send_asyncio(AsyncTogai, url, second)
    else:
        statuses = send_thread(Lago, url, first) + send_asyncio(AsyncLago, url, second)

    admin.put("/_mock/faults", json={name: 0.0 for name in FAULTS if name != "seed"}).raise_for_status()
    admin.put("/_mock/rate_limits", json={"enabled": False}).raise_for_status()
    key = "id" if provider == "togai" else "transaction_id"
    stored = [event[key] for event in admin.get(f"/_mock/events/{provider}").json()]
    admin.close()
    assert len(statuses) == 2 * N
    assert all(status.delivered for status in statuses), Counter(statuses)
    assert sorted(stored) == sorted(event[key] for event in first + second)  # each once, none missing
