"""Shared rate budgets when the clock they are kept on steps back (NTP, a VM resumed, a DST-confused host).

A step back must not make the budget look taken for the length of the step: every request would
fail as never sent until the clock caught up.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from ratelimits.conftest import redis_url  # noqa: F401  (the real redis-server fixture)

from billing_events import budgets
from billing_events.budgets import RedisBudget, SQLiteBudget

STEP = 60.0


def test_a_sqlite_budget_survives_its_clock_stepping_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = SQLiteBudget(tmp_path / "budget.db", "acme")
    real = time.time
    with monkeypatch.context() as patch:
        patch.setattr(budgets.time, "time", lambda: real() + STEP)  # the clock, before the step
        first = budget.reserve("/ingestBatch", 0.5, 0.0, 5.0)
        assert first is not None and first.wait == 0.0
        assert budget.reserve("/ingestBatch", 0.5, 0.0, 5.0) is not None

    # The clock is now a minute earlier: the next slot is still one interval away, not a minute.
    booking = budget.reserve("/ingestBatch", 0.5, 0.0, 5.0)

    assert booking is not None and booking.wait <= 1.0


def test_a_redis_budget_survives_the_servers_clock_stepping_back(redis_url: str) -> None:  # noqa: F811
    budget = RedisBudget(redis_url, "acme")
    first = budget.reserve("/events/batch", 0.5, 0.0, 5.0)
    assert first is not None and first.wait == 0.0
    # What Redis holds after slots taken a minute "later" than its clock now reads.
    store = redis.Redis.from_url(redis_url)
    seconds, micros = store.time()
    ahead = seconds + micros / 1e6 + STEP
    store.set("acme:/events/batch", f"{ahead + 0.5:.6f}")
    store.set("acme:/events/batch:at", f"{ahead:.6f}")

    booking = budget.reserve("/events/batch", 0.5, 0.0, 5.0)

    assert booking is not None and booking.wait <= 1.0
