"""Pacing against the rate-limited mock over real HTTP, from one process and from several.

The mock allows 40 requests/s on the event endpoint; counts come from its per-second counters. A run
sends 200 requests' worth of events (about five seconds at the budget); the first and last seconds are
partial and are left out of the goodput.
"""

from __future__ import annotations

from pathlib import Path

from .conftest import run_fleet, summary

# Every sending path: sync send(), the thread background sender, asyncio send(), the asyncio background sender.
MIXED = ["send", "thread", "asyncio", "asyncio-background"]


def test_one_process_reaches_the_budget_with_almost_no_429s(server: str) -> None:
    run = run_fleet(server, "togai", ["asyncio"], requests_each=200)

    assert run.statuses == {"delivered": 400}, summary(run)
    assert run.goodput_share() >= 0.90, summary(run)
    assert run.throttled_share <= 0.02, summary(run)


def test_four_processes_sharing_a_local_budget_reach_it_together(server: str, tmp_path: Path) -> None:
    budget = f"sqlite:///{tmp_path}/budget.db?key=acme-lago"

    run = run_fleet(server, "lago", MIXED, requests_each=50, budget=budget)

    assert run.statuses == {"delivered": 400}, summary(run)
    assert run.goodput_share() >= 0.90, summary(run)
    assert run.throttled_share <= 0.02, summary(run)


def test_four_processes_without_a_shared_budget_converge_near_it(server: str) -> None:
    run = run_fleet(server, "lago", MIXED, requests_each=50)

    assert run.statuses == {"delivered": 400}, summary(run)
    assert run.stored == 400
    # Each process starts at the whole budget; together they settle near it, not at four times it.
    assert run.load() <= 1.10, summary(run)
    # They read the server's bucket (X-RateLimit-Remaining) and slow down before it is empty; without
    # pacing about one request in six is refused.
    assert run.throttled_share <= 0.10, summary(run)
    assert run.reported_429s == sum(run.throttled)


def test_two_processes_sharing_a_budget_through_redis_reach_it_together(server: str, redis_url: str) -> None:
    run = run_fleet(
        server, "togai", ["thread", "asyncio"], requests_each=100, budget=f"{redis_url}?key=acme-togai"
    )

    assert run.statuses == {"delivered": 400}, summary(run)
    assert run.goodput_share() >= 0.90, summary(run)
    assert run.throttled_share <= 0.02, summary(run)
