"""Third reading of the compare-and-set slot give-back (budgets.py: Booking, release) and of the mock's
unauthenticated Togai bucket (mock/ratelimit.py) and calendar-checking LocalDateTime pattern (specs/togai.yaml).

Sources: docs.togai.com/docs/quotas-and-limits ("Unauthenticated API requests from an IP | 5 requests per 30
mins | No"), as quoted in tests/contract/test_review_togaimock.py; README "Rate limits" (the mock) and
"Waiting for a slot is bounded by the request `timeout`".
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing_events import budgets
from billing_events.budgets import Booking, MemoryBudget, RedisBudget, SQLiteBudget
from billing_events.mock import create_app
from billing_events.mock import ratelimit as mock_ratelimit
from billing_events.mock.config import MockConfig
from billing_events.mock.ratelimit import RateLimitConfig
from billing_events.mock.testing import sync_transport

TOKEN = "behaviour-token"
TOGAI = "/togai"
LAGO = "/lago/api/v1"
INTERVAL = 10.0
BURST = INTERVAL  # the Pacer's smallest burst
MAX_WAIT = 1000.0
KEY = "/ingestBatch"


def _over_the_pace(sends: list[float], interval: float, burst: float) -> list[tuple[float, float, int]]:
    """The windows [a, b] holding more sends than GCRA allows: (b - a + burst) / interval + 1."""
    times = sorted(sends)
    worst = []
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            if j - i + 1 > (times[j] - start + burst) / interval + 1 + 0.01:
                worst.append((round(start, 3), round(times[j], 3), j - i + 1))
    return worst


def _send_time(booking: Booking, now: float) -> float:
    """When the booking's request leaves: its wait from the store's now (tat - interval - burst when it waits)."""
    return max(now, booking.tat - INTERVAL - BURST) if booking.wait > 0 else now


# The same reserve/cancel loop, for this process's threads and for a second process.
WORKER = """
import json, random, sys, time
from billing_events.budgets import open_budget
url, seed, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
budget, rng, kept = open_budget(url), random.Random(seed), []
for _ in range(rounds):
    booking = budget.reserve("/ingestBatch", 10.0, 10.0, 1000.0)
    now = time.time()
    if booking is None:
        continue
    if rng.random() < 0.5:
        budget.release("/ingestBatch", 10.0, booking)
    else:
        kept.append(max(now, booking.tat - 20.0) if booking.wait > 0 else now)
print(json.dumps(kept))
"""


def _stress(
    budget: Any, url: str | None, clock: Callable[[], float], threads: int = 4, rounds: int = 25
) -> None:
    kept: list[float] = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(rounds):
            booking = budget.reserve(KEY, INTERVAL, BURST, MAX_WAIT)
            now = clock()
            assert booking is not None
            if rng.random() < 0.5:
                budget.release(KEY, INTERVAL, booking)  # the wait was cut: the request never leaves
            else:
                with lock:
                    kept.append(_send_time(booking, now))

    other = None
    if url is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        other = subprocess.Popen(
            [sys.executable, "-c", WORKER, url, "99", str(rounds * 2)], stdout=subprocess.PIPE, env=env
        )
    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if other is not None:
        out, _ = other.communicate(timeout=30)
        assert other.returncode == 0
        kept += json.loads(out)
    assert len(kept) > threads * rounds // 4
    assert _over_the_pace(kept, INTERVAL, BURST) == []


# --- what holds: the pace under random give-backs ------------------------------------------------------


def test_memory_budget_keeps_the_pace_under_random_give_backs_from_many_threads() -> None:
    _stress(MemoryBudget(), None, time.monotonic, threads=6)


def test_sqlite_budget_keeps_the_pace_with_two_processes_giving_slots_back(tmp_path: Path) -> None:
    path = tmp_path / "budget.db"
    _stress(SQLiteBudget(path, "acme"), f"sqlite://{path}?key=acme", time.time)


def test_redis_budget_keeps_the_pace_with_two_processes_giving_slots_back(redis_url: str) -> None:
    # Releases go to the budget's pool and land in any order: the compare-and-set keeps them harmless.
    url = f"{redis_url}?key=stress-{os.getpid()}"
    _stress(budgets.open_budget(url), url, time.time)


def test_a_redis_give_back_matches_the_tat_parsed_from_the_scripts_text(redis_url: str) -> None:
    # The script stores '%.6f' text and returns it; redis-py sends the parsed float back as repr(): the same
    # double on both sides, so a legitimate give-back matches, and one under a later booking does not.
    budget = RedisBudget(redis_url, f"float-{os.getpid()}")
    first, second = (budget.reserve(KEY, INTERVAL, BURST, MAX_WAIT) for _ in range(2))
    third = budget.reserve(KEY, INTERVAL, BURST, MAX_WAIT)
    assert first and second and third and third.wait > 0
    budget._give_back(KEY, INTERVAL, second)  # under the third booking: lost
    budget._give_back(KEY, INTERVAL, third)  # the latest: given back
    again = budget.reserve(KEY, INTERVAL, BURST, MAX_WAIT)
    assert again is not None and again.tat == third.tat


def test_a_redis_give_back_after_a_stale_tat_reset_leaves_the_fresh_tat(redis_url: str) -> None:
    budget = RedisBudget(redis_url, f"stale-{os.getpid()}")
    old = budget.reserve(KEY, INTERVAL, BURST, MAX_WAIT)
    assert old is not None
    import redis

    server = redis.Redis.from_url(redis_url)
    name = f"stale-{os.getpid()}:{KEY}"
    # A TAT of unknown age far ahead (a clock step's leftover), equal to the old booking's text: reset.
    server.delete(f"{name}:at")
    server.set(name, f"{old.tat + 10_000:.6f}", px=60_000)
    fresh = budget.reserve(KEY, INTERVAL, BURST, MAX_WAIT)
    assert fresh is not None and fresh.wait == 0
    budget._give_back(KEY, INTERVAL, old)
    assert float(server.get(name)) == fresh.tat


def test_sqlite_give_back_after_the_wall_clock_stepped_back_still_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Clock:
        now = 1_700_000_000.0

        def time(self) -> float:
            return self.now

        def monotonic(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(budgets, "time", clock)
    budget = SQLiteBudget(tmp_path / "b.db", "acme")
    bookings = [budget.reserve(KEY, INTERVAL, BURST, MAX_WAIT) for _ in range(3)]
    assert [b.wait for b in bookings if b] == [0.0, 0.0, INTERVAL]
    clock.now -= 3600  # NTP steps the clock back an hour while the third waits
    budget.release(KEY, INTERVAL, bookings[2])  # type: ignore[arg-type]
    again = budget.reserve(KEY, INTERVAL, BURST, MAX_WAIT)
    assert again is not None and again.wait == INTERVAL  # its slot, not one interval later


def test_asyncio_run_ends_while_another_process_holds_the_sqlite_lock(tmp_path: Path) -> None:
    # areserve books on the loop's default executor, which asyncio.run() joins at exit (no timeout on 3.11):
    # a booking stuck on a lock must still end within its busy timeout, so asyncio.run() returns.
    path = tmp_path / "b.db"
    budget = SQLiteBudget(path, "acme")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    gave_up = threading.Event()
    watchdog = threading.Timer(20, gave_up.set)
    watchdog.start()

    async def main() -> None:
        task = asyncio.ensure_future(budget.areserve(KEY, INTERVAL, BURST, 0.2))
        await asyncio.sleep(0)
        task.cancel()  # the thread books on (or fails on the lock) after its caller left

    try:
        asyncio.run(main())
        assert not gave_up.is_set()
    finally:
        watchdog.cancel()
        holder.execute("ROLLBACK")


def test_async_sqlite_bookings_behind_a_held_lock_each_end_within_their_wait(tmp_path: Path) -> None:
    # README: "Waiting for a slot is bounded by the request `timeout`." The default executor has
    # min(32, cpus + 4) threads; every booking behind another process's write lock holds one for its whole
    # max_wait, so the rest queue, and their max_wait only starts when they get a thread.
    path = tmp_path / "b.db"
    budget = SQLiteBudget(path, "acme")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    max_wait = 0.25
    tasks = 4 * min(32, (os.cpu_count() or 1) + 4)

    async def one() -> float:
        start = time.monotonic()
        with pytest.raises(sqlite3.OperationalError):  # the Pacer then paces locally
            await budget.areserve(KEY, INTERVAL, BURST, max_wait)
        return time.monotonic() - start

    async def main() -> list[float]:
        return await asyncio.gather(*(one() for _ in range(tasks)))

    try:
        waited = asyncio.run(main())
    finally:
        holder.execute("ROLLBACK")
    # Two max_waits of slack; today the last quarter of the tasks wait at least four (SQLite's busy timeout
    # never gives up early).
    assert max(waited) < 3 * max_wait, sorted(round(w, 2) for w in waited)[-5:]


# --- the mock's unauthenticated Togai bucket -----------------------------------------------------------


def _event(number: int, timestamp: str = "2024-05-01T10:15:30Z") -> dict[str, Any]:
    return {
        "schemaName": "api_calls",
        "id": f"evt_{number}",
        "timestamp": timestamp,
        "accountId": "acme-corp",
        "attributes": [{"name": "calls", "value": "1"}],
        "dimensions": {"region": "eu-west-1"},
    }


async def _post(app: Any, address: str, token: str, number: int) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://mock", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        return await client.post(f"{TOGAI}/ingest", json={"event": _event(number)})


def test_bad_tokens_from_many_addresses_never_refill_a_valid_tokens_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mock_ratelimit, "MAX_BUCKETS", 3)  # 10_000 in the mock; the same with fewer requests
    config = RateLimitConfig(enabled=True, limits={"togai.ingest": 0.001})  # one request, then 429
    app = create_app(MockConfig(token=TOKEN, rate_limits=config))

    async def run() -> list[int]:
        statuses = [(await _post(app, "10.0.0.1", TOKEN, 1)).status_code]
        statuses.append((await _post(app, "10.0.0.1", TOKEN, 2)).status_code)
        for n, address in enumerate(("10.9.0.1", "10.9.0.2", "10.9.0.3")):
            statuses.append((await _post(app, address, "wrong", 10 + n)).status_code)
        statuses.append((await _post(app, "10.0.0.1", TOKEN, 3)).status_code)
        return statuses

    statuses = asyncio.run(run())
    assert statuses[:5] == [202, 429, 401, 401, 401]
    assert statuses[5] == 429, statuses  # today 202: evt_3 stored past the limit
    assert [e["id"] for e in app.state.mock.togai.events()] == ["evt_1"]


def test_refused_unauthenticated_requests_are_not_counted_as_accepted() -> None:
    # README: `rate_counters()` / GET /_mock/rate_limits give "accepted and throttled requests per second and
    # group"; before 792381d requests with an unknown token were not counted at all.
    app = create_app(MockConfig(token=TOKEN, rate_limits=RateLimitConfig(enabled=True)))
    with httpx.Client(
        transport=sync_transport(app), base_url="http://mock", headers={"Authorization": "Bearer wrong"}
    ) as client:
        statuses = [client.post(f"{TOGAI}/ingest", json={"event": _event(n)}).status_code for n in range(3)]
        counters = client.get("/_mock/rate_limits").json()["seconds"]
    accepted = sum(groups.get("togai.ingest", {}).get("accepted", 0) for groups in counters.values())
    assert statuses == [401, 401, 401]
    assert accepted == 0, counters


def test_unauthenticated_bucket_retry_after_reset_and_lago() -> None:
    app = create_app(MockConfig(token=TOKEN, rate_limits=RateLimitConfig(enabled=True)))
    wrong = {"Authorization": "Bearer wrong"}
    with httpx.Client(transport=sync_transport(app), base_url="http://mock", headers=wrong) as client:
        togai = [client.post(f"{TOGAI}/ingestBatch", json={"events": [_event(n)]}) for n in range(6)]
        # One bucket per address for both Togai groups; a valid token is not throttled by it.
        assert [r.status_code for r in togai] == [401] * 5 + [429]
        assert togai[5].headers["Retry-After"] == "360"  # one of 5 per 1800 s
        ok = client.post(
            f"{TOGAI}/ingest", json={"event": _event(7)}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert ok.status_code == 202
        # Lago publishes no such limit: 401 forever.
        lago = [client.post(f"{LAGO}/events", json={"event": {}}).status_code for _ in range(7)]
        assert set(lago) == {401}
        assert client.post("/_mock/reset").status_code == 200
        after = client.post(f"{TOGAI}/ingest", json={"event": _event(8)})
        assert after.status_code == 401  # the reset emptied the address's bucket


def test_a_fresh_fixture_mock_does_not_inherit_a_previous_tests_throttling() -> None:
    from billing_events.mock.handle import ProviderMock

    for _ in range(2):  # two tests in a row, each with its own pytest-plugin mock
        with ProviderMock.create_in_process("togai", rate_limits=RateLimitConfig(enabled=True)) as togai:
            bad = togai.new_client(token="wrong")
            statuses = [
                bad.http.post(f"{togai.base_url}/ingest", json={"event": _event(n)}).status_code
                for n in range(6)
            ]
            assert statuses == [401] * 5 + [429]


# --- the calendar-checking LocalDateTime pattern ---------------------------------------------------------


def test_a_500_event_batch_of_hostile_timestamps_is_validated_per_event() -> None:
    # The pattern has alternations but no nested quantifier; jsonschema_rs matches it without backtracking.
    app = create_app(MockConfig(token=TOKEN))
    good = [
        "2024-02-29T00:00:00",
        "2000-02-29T23:59:59." + "9" * 5000,
        "0004-02-29T10:15:30",
        "9999-12-31T23:59:59",
    ]
    bad = [
        "1900-02-29T10:15:30",
        "2023-02-29T10:15:30",
        "2024-04-31T10:15:30",
        "2024-02-29T10:15:30." + "9" * 5000 + "x",
    ]
    events = [_event(n, (good + bad)[n % 8]) for n in range(500)]
    with httpx.Client(
        transport=sync_transport(app), base_url="http://mock", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        answer = client.post(f"{TOGAI}/ingestBatch", json={"events": events})
    assert answer.status_code == 207, answer.text[:300]
    stored = {e["id"] for e in app.state.mock.togai.events()}
    assert stored == {f"evt_{n}" for n in range(500) if n % 8 < 4}
