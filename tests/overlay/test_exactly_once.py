"""Exactly-once delivery through the real mock server while it injects faults.

Every mode (sync, background thread, asyncio, asyncio background) against Togai and both
of Lago's event stores, with each fault kind at 20% of requests, including "stored but the
response was lost", which is what makes a naive retry bill an event twice. A third of the
events carry no key and a third of the Lago events no timestamp: on the ClickHouse store a
timestamp the server stamps itself would make each re-sent event a new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from billing_events import AsyncLago, AsyncTogai, Lago, OutcomeStatus, RejectedError, RetryPolicy, Togai
from billing_events.mock import create_app
from billing_events.mock.testing import serve_in_thread

from .scripted import lago_event, togai_event

N = 450
TOKEN = "test-token"
FAULTS = ["rate_429", "rate_503", "rate_gateway", "rate_html_ok", "rate_drop", "rate_lost_response"]
# Small batches so that each run makes enough requests for the faults to bite.
BATCH = {"togai": 30, "lago": 30}
POLICY = RetryPolicy(max_attempts=12, deadline=60, initial_delay=0.001, max_delay=0.02, max_retry_after=0.02)
TARGETS = ["togai", "lago-postgres", "lago-clickhouse"]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_in_thread(create_app()) as url:
        yield url


def base_url(server: str, provider: str) -> str:
    return f"{server}/togai" if provider == "togai" else f"{server}/lago/api/v1"


def events(provider: str) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = []
    for n in range(N):
        event = (
            togai_event(n, id=f"eo-{n}") if provider == "togai" else lago_event(n, transaction_id=f"eo-{n}")
        )
        if n % 3 == 1:
            del event["id" if provider == "togai" else "transaction_id"]  # the overlay assigns the key
        if provider == "lago" and n % 3 != 0:
            del event["timestamp"]  # the overlay stamps it, once
        made.append(event)
    return made


def send_sync(provider: str, url: str) -> list[tuple[str, OutcomeStatus]]:
    cls = Togai if provider == "togai" else Lago
    with cls(TOKEN, base_url=url, retry=POLICY, max_batch_events=BATCH[provider]) as client:
        return [(o.key, o.status) for o in client.send(events(provider))]


def send_background(provider: str, url: str) -> list[tuple[str, OutcomeStatus]]:
    cls = Togai if provider == "togai" else Lago
    outcomes: list[tuple[str, OutcomeStatus]] = []
    with cls(TOKEN, base_url=url, retry=POLICY, max_batch_events=BATCH[provider]) as client:
        sender = client.background(
            flush_interval=0.01, workers=2, on_outcome=lambda o: outcomes.append((o.key, o.status))
        )
        for event in events(provider):
            sender.track(event)
        stats = sender.close(timeout=120)
    assert stats.enqueued == N
    assert stats.settled == N
    return outcomes


def send_async(provider: str, url: str) -> list[tuple[str, OutcomeStatus]]:
    cls = AsyncTogai if provider == "togai" else AsyncLago

    async def run() -> list[tuple[str, OutcomeStatus]]:
        async with cls(
            TOKEN, base_url=url, retry=POLICY, max_batch_events=BATCH[provider], max_in_flight=4
        ) as client:
            report = await client.send(events(provider))
        return [(o.key, o.status) for o in report]

    return asyncio.run(run())


def send_async_background(provider: str, url: str) -> list[tuple[str, OutcomeStatus]]:
    cls = AsyncTogai if provider == "togai" else AsyncLago
    outcomes: list[tuple[str, OutcomeStatus]] = []

    async def run() -> None:
        async with cls(
            TOKEN, base_url=url, retry=POLICY, max_batch_events=BATCH[provider], max_in_flight=4
        ) as client:
            sender = client.background(
                flush_interval=0.01, on_outcome=lambda o: outcomes.append((o.key, o.status))
            )
            for event in events(provider):
                sender.track(event)
            stats = await sender.close(timeout=120)
        assert stats.enqueued == N
        assert stats.settled == N

    asyncio.run(run())
    return outcomes


MODES = {
    "sync": send_sync,
    "background": send_background,
    "asyncio": send_async,
    "asyncio-background": send_async_background,
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("target", TARGETS)
def test_every_event_is_stored_exactly_once(server: str, target: str, mode: str, fault: str) -> None:
    provider, _, store = target.partition("-")
    httpx.post(f"{server}/_mock/reset").raise_for_status()
    if store:
        httpx.put(f"{server}/_mock/lago_store", json={"store": store}).raise_for_status()
    httpx.put(f"{server}/_mock/faults", json={fault: 0.2, "seed": 7, "retry_after": 1}).raise_for_status()

    outcomes = MODES[mode](provider, base_url(server, provider))

    httpx.put(f"{server}/_mock/faults", json={fault: 0.0}).raise_for_status()
    # What the provider would bill: the mock's events after its own deduplication.
    stored = httpx.get(f"{server}/_mock/events/{provider}").json()
    stats = httpx.get(f"{server}/_mock/stats").json()[provider]
    httpx.put(f"{server}/_mock/lago_store", json={"store": "postgres"}).raise_for_status()
    key_field = "id" if provider == "togai" else "transaction_id"
    stored_keys = [event[key_field] for event in stored]
    # N distinct events stored, each once, and they are exactly the events the report names.
    assert len(stored_keys) == N
    assert len(set(stored_keys)) == N
    assert sorted(key for key, _ in outcomes) == sorted(stored_keys)
    # The report accounts for all N, every one delivered (a duplicate is one that was already stored).
    assert len(outcomes) == N
    assert all(status.delivered for _, status in outcomes)
    assert stats["requests"] > N // BATCH[provider]  # the faults forced retries
    if fault == "rate_lost_response":
        # The retries re-sent stored events, and none was billed twice.
        arrived = stats["arrivals"] if store == "clickhouse" else stats["stored"] + stats["duplicates"]
        assert arrived > N


def test_lago_one_invalid_event_in_100_gives_99_delivered_and_1_rejected(server: str) -> None:
    httpx.post(f"{server}/_mock/reset").raise_for_status()
    batch = [lago_event(n, transaction_id=f"one-bad-{n}") for n in range(100)]
    batch[37]["timestamp"] = "2024-05-01T10:15:30Z"  # Lago wants Unix seconds: invalid_format
    with Lago(TOKEN, base_url=base_url(server, "lago"), retry=POLICY, validate=False) as client:
        report = client.send(batch)
    assert report.counts[OutcomeStatus.DELIVERED] == 99
    assert report.by_status(OutcomeStatus.REJECTED) == [report.outcomes[37]]
    assert report.outcomes[37].reason == "timestamp: invalid_format"
    assert httpx.get(f"{server}/_mock/stats").json()["lago"]["stored"] == 99


def test_togai_one_invalid_event_in_100_is_rejected_through_a_207(server: str) -> None:
    httpx.post(f"{server}/_mock/reset").raise_for_status()
    batch = [togai_event(n) for n in range(100)]
    batch[61]["attributes"] = [{"name": "calls", "value": "three"}]
    with Togai(TOKEN, base_url=base_url(server, "togai"), retry=POLICY, validate=False) as client:
        report = client.send(batch)
    assert report.counts[OutcomeStatus.DELIVERED] == 99
    assert report.by_status(OutcomeStatus.REJECTED) == [report.outcomes[61]]
    assert "attributes" in (report.outcomes[61].reason or "")
    assert httpx.get(f"{server}/_mock/stats").json()["togai"]["stored"] == 99


def test_with_validation_on_the_bad_event_never_leaves_the_process(server: str) -> None:
    httpx.post(f"{server}/_mock/reset").raise_for_status()
    batch = [lago_event(n, transaction_id=f"local-{n}") for n in range(100)]
    batch[5]["timestamp"] = "yesterday"
    with Lago(TOKEN, base_url=base_url(server, "lago"), retry=POLICY) as client:
        report = client.send(batch)
    assert report.counts[OutcomeStatus.DELIVERED] == 99
    assert report.outcomes[5].status is OutcomeStatus.REJECTED
    assert (report.outcomes[5].reason or "").startswith("event.timestamp:")
    assert httpx.get(f"{server}/_mock/stats").json()["lago"]["requests"] == 1


def test_lago_find_event_and_estimate_fees_through_the_overlay(server: str) -> None:
    from billing_events import NotFoundError

    httpx.post(f"{server}/_mock/reset").raise_for_status()
    with Lago(TOKEN, base_url=base_url(server, "lago"), retry=POLICY) as client:
        client.send([lago_event(1, transaction_id="txn/with slash é")])
        found = client.find_event("txn/with slash é")
        assert found.transaction_id == "txn/with slash é"
        with pytest.raises(NotFoundError, match="event_not_found"):
            client.find_event("never-sent")
        [fee] = client.estimate_fees("seats", "sub_acme_growth", {"seats": 3})
        assert (fee.amount_cents, fee.amount_currency, fee.units) == (3000, "USD", "3.0")
        with pytest.raises(NotFoundError, match="subscription_not_found"):
            client.estimate_fees("seats", "sub_nobody")
        with pytest.raises(RejectedError, match="does_not_match_an_instant_charge"):
            client.estimate_fees("storage_gb", "sub_acme_growth", {"gb": 1})


@pytest.mark.parametrize("store", ["postgres", "clickhouse"])
def test_repeated_lago_keys_on_both_stores(server: str, store: str) -> None:
    """Same content twice, different content, and one transaction_id for two subscriptions."""
    httpx.post(f"{server}/_mock/reset").raise_for_status()
    httpx.put(f"{server}/_mock/lago_store", json={"store": store}).raise_for_status()
    first = lago_event(1, transaction_id="rk-1")
    del first["timestamp"]
    same = dict(first)
    changed = {**first, "properties": {"calls": 99}}
    other_subscription = {**first, "external_subscription_id": "sub-elsewhere"}
    events = [first, same, changed, other_subscription, lago_event(2, transaction_id="rk-2")]
    with Lago(TOKEN, base_url=base_url(server, "lago"), retry=POLICY) as client:
        report = client.send(events)
        statuses = [o.status for o in report]
        # Sent again in one batch through the background sender: the shared id is confirmed per event.
        sender = client.background(flush_interval=60)
        for event in (
            lago_event(3, transaction_id="rk-3"),
            lago_event(3, transaction_id="rk-3", external_subscription_id="sub-b"),
        ):
            sender.track(event)
        sender.close(timeout=30)
    stored = httpx.get(f"{server}/_mock/events/lago").json()
    httpx.put(f"{server}/_mock/lago_store", json={"store": "postgres"}).raise_for_status()
    D = OutcomeStatus.DELIVERED
    assert statuses == [D, OutcomeStatus.DUPLICATE, OutcomeStatus.REJECTED, D, D]
    assert sorted((e["external_subscription_id"], e["transaction_id"]) for e in stored) == [
        ("sub-1", "rk-1"),
        ("sub-2", "rk-2"),
        ("sub-3", "rk-3"),
        ("sub-b", "rk-3"),
        ("sub-elsewhere", "rk-1"),
    ]


def test_togai_207_without_detail_through_the_mock(server: str) -> None:
    httpx.post(f"{server}/_mock/reset").raise_for_status()
    httpx.put(f"{server}/_mock/faults", json={"togai_207_detail": False}).raise_for_status()
    batch = [togai_event(n, id=f"nd-{n}") for n in range(60)]
    for bad in (7, 33, 34):
        batch[bad]["attributes"] = [{"name": "calls", "value": "three"}]
    try:
        with Togai(TOKEN, base_url=base_url(server, "togai"), retry=POLICY, validate=False) as client:
            report = client.send(batch)
    finally:
        httpx.put(f"{server}/_mock/faults", json={"togai_207_detail": False}).raise_for_status()
    assert report.counts[OutcomeStatus.UNKNOWN] == 0
    assert [n for n, o in enumerate(report) if o.status is OutcomeStatus.REJECTED] == [7, 33, 34]
    assert httpx.get(f"{server}/_mock/stats").json()["togai"]["stored"] == 57
