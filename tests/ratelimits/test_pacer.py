"""The client's pacer: its defaults, how it adapts to answers, its figures and its budgets."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from overlay.scripted import Scripted, accepted, lago_event, lago_ok, togai_event

from billing_events import AsyncTogai, ConfigurationError, Lago, OutcomeStatus, RetryPolicy, Togai, pacing
from billing_events.budgets import Booking, RedisBudget, SQLiteBudget

ONE_TRY = RetryPolicy(max_attempts=1)


def _wait(booking: Booking | None) -> float | None:
    """What a caller that needs only the wait reads of a booking."""
    return None if booking is None else booking.wait


def throttled(request: httpx.Request) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": "0"}, json={"message": "Request throttled"})


def test_the_provider_endpoints_get_the_published_pace_and_a_custom_base_url_none() -> None:
    assert Togai("t").stats.pace == 50
    assert Lago("t", endpoint="eu").stats.pace == 500  # event ingestion; estimate_fees and find_event have 50
    assert Lago("t", base_url="https://lago.example.com").stats.pace is None  # self-hosted: no limiter
    assert Togai("t", base_url="http://localhost:8910/togai", max_requests_per_second=40).stats.pace == 40
    assert Togai("t", max_requests_per_second=None).stats.pace is None


@pytest.mark.parametrize("bad", [0, -1, float("inf"), "50", True])
def test_a_bad_pace_is_refused_with_its_name(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_requests_per_second"):
        Togai("t", max_requests_per_second=bad)


def test_a_shared_budget_needs_a_pace_and_a_known_scheme(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="rate_budget: a shared budget needs a pace"):
        Togai("t", base_url="http://localhost/togai", rate_budget=f"sqlite:///{tmp_path}/b.db")
    with pytest.raises(ConfigurationError, match="unknown scheme 'memcached'"):
        Togai("t", rate_budget="memcached://localhost?key=x")


def test_a_429_halves_the_pace_and_is_counted(fast_retry: RetryPolicy) -> None:
    server = Scripted(throttled, default=accepted)
    with Togai("t", transport=server.transport(), retry=fast_retry, max_requests_per_second=40) as client:
        report = client.send([togai_event(1)])
        stats = client.stats

    assert report.outcomes[0].status is OutcomeStatus.DELIVERED
    assert stats.throttled == 1
    assert stats.pace is not None and 20 <= stats.pace < 30  # cut in half, then a moment of recovery


def test_an_unpaced_client_still_counts_429s(fast_retry: RetryPolicy) -> None:
    server = Scripted(throttled, default=accepted)
    with Togai("t", transport=server.transport(), retry=fast_retry, max_requests_per_second=None) as client:
        client.send([togai_event(1)])
        assert (client.stats.throttled, client.stats.pace) == (1, None)


def test_a_lower_limit_announced_by_the_server_lowers_the_ceiling() -> None:
    def limited(request: httpx.Request) -> httpx.Response:
        response = lago_ok(request)
        response.headers.update({"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "19"})
        return response

    with Lago("t", transport=httpx.MockTransport(limited), max_requests_per_second=None) as unpaced:
        unpaced.send([{"code": "c", "external_subscription_id": "s", "transaction_id": "x"}])
        assert unpaced.stats.pace is None
    with Lago("t", transport=httpx.MockTransport(limited), endpoint="us") as client:
        client.send([{"code": "c", "external_subscription_id": "s", "transaction_id": "x"}])
        assert client.stats.pace == 20


def test_no_budget_within_the_wait_bound_fails_the_event_as_never_sent() -> None:
    server = Scripted(default=accepted)
    # One request each 10 s, at most one early; a request may wait 0.5 s (the timeout) for its slot.
    with Togai(
        "t",
        transport=server.transport(),
        retry=ONE_TRY,
        max_batch_events=1,
        max_requests_per_second=0.1,
        timeout=0.5,
    ) as client:
        report = client.send([togai_event(n) for n in range(3)])
        stats = client.stats

    statuses = [outcome.status for outcome in report]
    assert statuses == [OutcomeStatus.DELIVERED, OutcomeStatus.DELIVERED, OutcomeStatus.FAILED]
    assert len(server.requests) == 2
    assert "BudgetTimeout; never stored" in (report.outcomes[2].reason or "")
    assert stats.budget_wait == 0.0  # nothing waited: the third slot was refused at once


def test_the_asyncio_client_waits_for_its_budget_and_counts_the_wait() -> None:
    server = Scripted(default=accepted)

    async def run() -> float:
        async with AsyncTogai(
            "t", transport=server.transport(), max_batch_events=1, max_requests_per_second=20
        ) as client:
            await client.send([togai_event(n) for n in range(6)])
            return client.stats.budget_wait

    waited = asyncio.run(run())

    assert len(server.requests) == 6
    assert waited > 0  # two go at once (the burst), the other four wait for their 50 ms slots


def test_sqlite_budget_hands_out_slots_in_order_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "budget.db"
    first, second = SQLiteBudget(path, "acme"), SQLiteBudget(path, "acme")

    waits = [
        _wait(first.reserve("/ingestBatch", 1.0, 0.0, 5.0)),
        _wait(second.reserve("/ingestBatch", 1.0, 0.0, 5.0)),
    ]
    refused = first.reserve("/ingestBatch", 1.0, 0.0, 1.5)

    third = _wait(second.reserve("/ingestBatch", 1.0, 0.0, 5.0))

    assert waits[0] == 0.0
    assert waits[1] is not None and 0 < waits[1] <= 1.0  # the next slot, one interval after the first
    assert refused is None  # two intervals ahead: past the bound, and nothing taken
    assert third is not None and waits[1] < third <= 2.0  # the slot after, not the refused one's
    assert _wait(SQLiteBudget(path, "other").reserve("/ingestBatch", 1.0, 0.0, 5.0)) == 0.0


def test_redis_budget_hands_out_slots_in_order(redis_url: str) -> None:
    first, second = RedisBudget(f"{redis_url}", "acme"), RedisBudget(f"{redis_url}", "acme")

    waits = [
        _wait(first.reserve("/events/batch", 1.0, 0.0, 5.0)),
        _wait(second.reserve("/events/batch", 1.0, 0.0, 5.0)),
    ]

    assert waits[0] == 0.0
    assert waits[1] is not None and 0 < waits[1] <= 1.0
    assert first.reserve("/events/batch", 1.0, 0.0, 1.5) is None


def test_an_unreachable_redis_never_holds_events_back(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=accepted)
    with Togai(
        "t",
        transport=server.transport(),
        retry=fast_retry,
        max_requests_per_second=40,
        rate_budget="redis://127.0.0.1:1/0?key=acme",
    ) as client:
        report = client.send([togai_event(1)])

    assert report.outcomes[0].status is OutcomeStatus.DELIVERED


def test_the_request_response_calls_go_through_the_pacer(fast_retry: RetryPolicy) -> None:
    stored = {"lago_customer_id": "c-1", "lago_subscription_id": "s-1", "timestamp": "2024-05-01T10:15:30Z"}
    found = {"event": {**lago_event(1), **stored}}
    server = Scripted(throttled, httpx.Response(200, json=found))
    with Lago("t", transport=server.transport(), retry=fast_retry, endpoint="us") as client:
        client.find_event("txn-1")
        assert client.stats.throttled == 1


# --- A wait cut short gives its slot back -----------------------------------------------------------------


def _interrupted_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pacer's sleeps, recorded and never slept; the first is cut by Ctrl-C."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(pacing, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    return waits


def test_ctrl_c_while_waiting_for_a_slot_gives_the_slot_back(monkeypatch: pytest.MonkeyPatch) -> None:
    pacer = pacing.Pacer({pacing.OTHER: 1.0})  # a slot a second, and one more at once (the burst)
    waits = _interrupted_sleep(monkeypatch)

    for _ in range(2):
        pacer.acquire("/ingestBatch")  # no wait
    with pytest.raises(KeyboardInterrupt):
        pacer.acquire("/ingestBatch")  # the next slot, about a second away, and Ctrl-C while waiting
    pacer.acquire("/ingestBatch")

    assert (
        len(waits) == 2 and 0 < waits[1] <= waits[0] <= 1.0
    )  # the interrupted one's slot, not the one after


class _BrokenBudget:
    """A budget store that books nothing and takes nothing back."""

    name = "broken"

    def __init__(self) -> None:
        self.released = 0

    def reserve(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        raise OSError("the store is gone")

    async def areserve(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        raise OSError("the store is gone")

    def release(self, key: str, interval: float, booking: Booking) -> None:
        self.released += 1
        raise OSError("the store is gone")


def test_a_slot_goes_back_to_the_local_budget_that_booked_it(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = _BrokenBudget()
    pacer = pacing.Pacer({pacing.OTHER: 1.0}, budget)
    waits = _interrupted_sleep(monkeypatch)

    for _ in range(2):
        pacer.acquire("/ingestBatch")
    with pytest.raises(KeyboardInterrupt):
        pacer.acquire("/ingestBatch")
    pacer.acquire("/ingestBatch")

    assert budget.released == 0  # the broken store booked nothing, so nothing goes back to it
    assert len(waits) == 2 and 0 < waits[1] <= waits[0]


def test_a_slot_that_cannot_be_given_back_leaves_the_interruption_as_it_was(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Unreturnable(_BrokenBudget):
        def reserve(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
            return Booking(wait=1.0, tat=time.monotonic() + 1.0)

    budget = Unreturnable()
    pacer = pacing.Pacer({pacing.OTHER: 1.0}, budget)
    _interrupted_sleep(monkeypatch)

    with caplog.at_level(logging.DEBUG), pytest.raises(KeyboardInterrupt):
        pacer.acquire("/ingestBatch")

    assert budget.released == 1
    assert [r.levelno for r in caplog.records if "given back" in r.getMessage()] == [logging.DEBUG]


def test_sqlite_budget_takes_a_slot_back(tmp_path: Path) -> None:
    path = tmp_path / "budget.db"
    first, second = SQLiteBudget(path, "acme"), SQLiteBudget(path, "acme")
    first.release("/ingestBatch", 1.0, Booking(0.0, time.time()))  # nothing booked yet: nothing to give back

    assert _wait(first.reserve("/ingestBatch", 1.0, 0.0, 5.0)) == 0.0
    booking = first.reserve("/ingestBatch", 1.0, 0.0, 5.0)
    assert booking is not None
    first.release("/ingestBatch", 1.0, booking)
    booked, again = booking.wait, _wait(second.reserve("/ingestBatch", 1.0, 0.0, 5.0))

    assert booked is not None and again is not None and 0 < again <= booked <= 1.0  # the same slot again


def _given_back(monkeypatch: pytest.MonkeyPatch, budget: RedisBudget) -> threading.Event:
    """Set once the budget's pool has run a release: ``release`` never waits for it."""
    done = threading.Event()
    give_back = budget._give_back

    def recorded(key: str, interval: float, booking: Booking) -> None:
        give_back(key, interval, booking)
        done.set()

    monkeypatch.setattr(budget, "_give_back", recorded)
    return done


def test_redis_budget_takes_a_slot_back_and_keeps_the_key_expiring(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    prefix = f"release-{time.monotonic_ns()}"
    first, second = RedisBudget(redis_url, prefix), RedisBudget(redis_url, prefix)
    done = _given_back(monkeypatch, first)

    assert _wait(first.reserve("/events/batch", 1.0, 0.0, 5.0)) == 0.0
    booking = first.reserve("/events/batch", 1.0, 0.0, 5.0)
    assert booking is not None
    first.release("/events/batch", 1.0, booking)
    assert done.wait(10)
    booked, again = booking.wait, _wait(second.reserve("/events/batch", 1.0, 0.0, 5.0))

    assert booked is not None and again is not None and 0 < again <= booked <= 1.0
    with redis.Redis.from_url(redis_url) as server:
        assert server.pttl(f"{prefix}:/events/batch") > 0  # still expires once its slots are past


def test_an_unreachable_redis_gives_the_slot_back_to_the_local_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    budget = RedisBudget("redis://127.0.0.1:1/0", "acme")
    done = _given_back(monkeypatch, budget)

    async def book_and_cancel() -> list[float | None]:
        booked = [await budget.areserve("/events/batch", 1.0, 0.0, 5.0) for _ in range(2)]
        assert booked[1] is not None
        budget.release("/events/batch", 1.0, booked[1])  # what a cancelled wait does
        return [*map(_wait, booked), _wait(await budget.areserve("/events/batch", 1.0, 0.0, 5.0))]

    first, booked, again = asyncio.run(book_and_cancel())

    assert first == 0.0 and booked is not None and again is not None and 0 < again <= booked <= 1.0
    assert not done.is_set()  # booked locally, so given back locally: Redis is never asked
