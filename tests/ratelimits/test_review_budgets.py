"""Review of README "Rate limits" under faults: the pace's value range, a Redis budget that comes and goes,
a password-protected Redis, an async send cancelled while it waits for its slot, a Retry-After past the
deadline."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest
from overlay.scripted import Scripted, accepted, togai_event

from billing_events import AsyncTogai, ConfigurationError, OutcomeStatus, RetryPolicy, Togai, budgets, pacing

from .conftest import _free_port, redis_server

ONE_TRY = RetryPolicy(max_attempts=1)
DELIVERED, FAILED = OutcomeStatus.DELIVERED, OutcomeStatus.FAILED


def _slow_client(server: Scripted, rate_budget: str) -> Togai:
    # One request a second, the burst lets one go at once; a request may wait 0.3 s for its slot.
    return Togai(
        "t",
        transport=server.transport(),
        retry=ONE_TRY,
        max_batch_events=1,
        max_requests_per_second=1,
        timeout=0.3,
        rate_budget=rate_budget,
    )


# --- Defects ----------------------------------------------------------------------------------------------


def test_a_pace_too_small_to_invert_never_lets_more_requests_through() -> None:
    server = Scripted(default=accepted)
    try:
        client = Togai(
            "t",
            transport=server.transport(),
            retry=ONE_TRY,
            max_batch_events=1,
            max_requests_per_second=1e-320,  # positive and finite; 1 / 1e-320 is inf
            timeout=0.3,
        )
    except ConfigurationError:
        return  # refusing it is as good as pacing it
    with client:
        report = client.send([togai_event(n) for n in range(4)])
    # At 1/600 requests/s the third request is refused (test_review_pacing.py): a slower pace never lets
    # more through ("Paces of any speed are kept").
    assert len(server.requests) <= 2, list(report.statuses)


def test_a_huge_integer_pace_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="max_requests_per_second"):
        Togai("t", max_requests_per_second=10**400)


def test_a_send_cancelled_while_waiting_for_its_slot_gives_the_slot_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = Scripted(default=accepted)
    waits: list[float] = []
    both_waiting = asyncio.Event()

    def waited(provider: str, seconds: float) -> None:  # the pacer records a wait before sleeping it
        waits.append(seconds)
        if len(waits) == 2:
            both_waiting.set()

    monkeypatch.setattr(pacing.metrics, "rate_budget_waited", waited)

    async def run() -> list[tuple[OutcomeStatus, str | None]]:
        async with AsyncTogai(
            "t",
            transport=server.transport(),
            retry=ONE_TRY,
            max_batch_events=1,
            max_requests_per_second=1,  # a slot a second, and one at once (the burst)
            timeout=2.5,
        ) as client:
            assert list((await client.send([togai_event(1), togai_event(2)])).statuses) == [DELIVERED] * 2
            # Two sends queue for the next slots (about 1 s and 2 s away) and are cancelled while waiting.
            waiting = [asyncio.ensure_future(client.send([togai_event(10 + n)])) for n in range(2)]
            await asyncio.wait_for(both_waiting.wait(), 10)  # both have their slot and sleep for it
            for task in waiting:
                task.cancel()
            for task in waiting:
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert len(server.requests) == 2  # neither cancelled request left
            # Nothing was sent since the first two: the next slot is about 1 s away, within 2.5 s. With the
            # cancelled sends' slots still taken it is about 3 s away, so this event fails, never sent.
            report = await client.send([togai_event(3)])
            return [(outcome.status, outcome.reason) for outcome in report]

    outcomes = asyncio.run(run())
    assert [status for status, _ in outcomes] == [DELIVERED], outcomes


# --- What holds -------------------------------------------------------------------------------------------


def test_a_redis_down_at_start_is_used_once_up_and_paced_around_once_gone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(budgets, "REDIS_RETRY_AFTER", 0.0)  # ask Redis again at once, not after 5 s
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0?key=comes-and-goes"
    first, second = Scripted(default=accepted), Scripted(default=accepted)
    with caplog.at_level(logging.WARNING), _slow_client(first, url) as a, _slow_client(second, url) as b:
        # Down: each paces alone, so each has its own burst.
        assert list(a.send([togai_event(1)]).statuses) == [DELIVERED]
        assert list(b.send([togai_event(2)]).statuses) == [DELIVERED]
        with redis_server(port):
            # Up: one budget. a takes the slot; b's next is a second away, past its 0.3 s.
            assert list(a.send([togai_event(3), togai_event(4)]).statuses) == [DELIVERED] * 2
            shared = b.send([togai_event(5)])
        # Gone mid-run: events are never held back by the budget store.
        assert list(a.send([togai_event(6)]).statuses) == [DELIVERED]
        assert list(b.send([togai_event(7)]).statuses) == [DELIVERED]
    assert shared.statuses[0] is FAILED, shared.outcomes[0].reason
    assert "BudgetTimeout" in (shared.outcomes[0].reason or "")
    warnings = [r for r in caplog.records if "Redis" in r.getMessage()]
    assert len(warnings) == 2  # one per client, however often Redis comes and goes


def test_a_password_protected_redis_is_shared_and_a_wrong_password_never_shows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = _free_port()
    with caplog.at_level(logging.DEBUG), redis_server(port, "--requirepass", "s3cret-redis-pw"):
        good = f"redis://:s3cret-redis-pw@127.0.0.1:{port}/0?key=auth-{time.monotonic_ns()}"
        first, second = Scripted(default=accepted), Scripted(default=accepted)
        with _slow_client(first, good) as a, _slow_client(second, good) as b:
            assert list(a.send([togai_event(1), togai_event(2)]).statuses) == [DELIVERED] * 2
            assert b.send([togai_event(3)]).statuses[0] is FAILED  # the budget is shared
            shown = repr(a) + repr(a.pacer.budget) + repr(a.stats)
        wrong = f"redis://:wrong-redis-pw@127.0.0.1:{port}/0?key=auth"
        server = Scripted(default=accepted)
        with _slow_client(server, wrong) as c:
            assert c.send([togai_event(4)]).statuses[0] is DELIVERED  # paced locally, not held back
            shown += repr(c) + repr(c.pacer.budget)
    for secret in ("s3cret-redis-pw", "wrong-redis-pw"):
        assert secret not in caplog.text and secret not in shown


def test_a_retry_after_past_the_deadline_ends_failed_without_waiting_it_out() -> None:
    def throttled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "3600"}, json={"message": "throttled"})

    server = Scripted(throttled, default=accepted)
    with Togai(
        "t",
        transport=server.transport(),
        retry=RetryPolicy(max_attempts=5, deadline=1.0),
        max_requests_per_second=40,
    ) as client:
        report = client.send([togai_event(1)])
        pace = client.stats.pace
    assert report.statuses[0] is FAILED and len(server.requests) == 1
    assert pace is not None and pace < 40  # the 429 cut the pace
