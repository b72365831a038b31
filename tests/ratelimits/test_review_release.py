"""Second reading of "a wait cut short gives its slot back" (Budget.release, Pacer._give_back): the pace a
shared budget keeps when slots come back, the give-back on a locked SQLite file, a cancellation during the
booking itself, and a release after a Redis key expired."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from billing_events import pacing
from billing_events.budgets import Booking, Budget, MemoryBudget, RedisBudget, SQLiteBudget

# A slot every 10 s and the Pacer's smallest burst (one interval): the few milliseconds a test takes between
# two bookings are nothing against it.
INTERVAL = 10.0
BURST = INTERVAL
MAX_WAIT = 1000.0
KEY = "/events/batch"


def _over_the_pace(sends: list[float], interval: float, burst: float) -> list[tuple[float, float, int]]:
    """The windows [a, b] holding more sends than GCRA allows: (b - a + burst) / interval + 1."""
    times = sorted(sends)
    worst = []
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            allowed = (times[j] - start + burst) / interval + 1 + 0.01
            if j - i + 1 > allowed:
                worst.append((round(start, 2), round(times[j], 2), j - i + 1))
    return worst


def _redis_released(budget: RedisBudget, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """A wait for the releases handed to the budget's pool so far (``release`` never waits for them)."""
    done: list[threading.Event] = []
    give_back = budget._give_back

    def recorded(key: str, interval: float, booking: Booking, ran: threading.Event) -> None:
        try:
            give_back(key, interval, booking)
        finally:
            ran.set()

    def release(key: str, interval: float, booking: Booking) -> None:
        ran = threading.Event()
        done.append(ran)
        budget._pool().submit(lambda: recorded(key, interval, booking, ran))

    monkeypatch.setattr(budget, "release", release)
    return lambda: all(event.wait(10) for event in done) or pytest.fail("a release never ran")


@contextmanager
def _two_processes(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Budget, Budget, Callable[[], None]]]:
    """Two budgets sharing one store, as two processes would; and a wait for the first one's releases."""
    if kind == "sqlite":
        path = tmp_path / "budget.db"
        yield SQLiteBudget(path, "acme"), SQLiteBudget(path, "acme"), lambda: None
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"second-b-{time.monotonic_ns()}"
        first, second = RedisBudget(url, prefix), RedisBudget(url, prefix)
        yield first, second, _redis_released(first, monkeypatch)


# --- Defects ----------------------------------------------------------------------------------------------


def test_slots_given_back_under_later_bookings_never_let_more_through_than_the_pace_in_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ten tasks of one process wait for their slots; the first five are cancelled, and five new requests come.
    pacer = pacing.Pacer({pacing.OTHER: 1 / INTERVAL}, MemoryBudget(), max_wait=MAX_WAIT)
    waits: dict[int, float] = {}
    sleeping: dict[int, asyncio.Event] = {}

    class _Clock:
        """pacing's asyncio, whose sleep records the slot and waits until the test lets it go."""

        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        @staticmethod
        async def sleep(seconds: float) -> None:
            number = len(waits)
            waits[number] = seconds
            sleeping[number] = asyncio.Event()
            await sleeping[number].wait()

    async def scenario() -> list[float]:
        start = time.monotonic()
        tasks = []
        sent: list[float] = []

        async def one() -> None:
            sent.append(await pacer.aacquire(KEY) - start)

        for _ in range(2):  # the burst: no wait
            await one()
        for _ in range(10):
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        booked = dict(waits)
        for task in tasks[:5]:
            task.cancel()
        await asyncio.gather(*tasks[:5], return_exceptions=True)
        for _ in range(5):
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        # The requests that leave: the burst, the five kept, the five new, each at its slot.
        kept = [booked[n] for n in range(5, 10)] + [waits[n] for n in range(10, 15)]
        for event in sleeping.values():
            event.set()
        await asyncio.gather(*tasks[5:])
        return [0.0, 0.0, *kept]

    monkeypatch.setattr(pacing, "asyncio", _Clock())
    sends = asyncio.run(scenario())

    assert _over_the_pace(sends, INTERVAL, BURST) == []


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_slots_given_back_under_another_process_bookings_never_exceed_the_pace(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _two_processes(kind, tmp_path, request, monkeypatch) as (first, second, released):
        start = time.time()

        def book(budget: Budget) -> Booking:
            booking = budget.reserve(KEY, INTERVAL, BURST, MAX_WAIT)
            assert booking is not None
            return booking._replace(wait=time.time() - start + booking.wait)  # when its request goes

        burst = [book(first).wait, book(first).wait]
        mine = [book(first) for _ in range(5)]  # this process's tasks wait for these ...
        theirs = [book(second).wait for _ in range(5)]  # ... while the other process books the next ones
        for booking in mine:  # and this process's tasks are cancelled: their slots go back
            first.release(KEY, INTERVAL, booking)
        released()
        later = [book(first).wait for _ in range(5)]

    assert _over_the_pace(burst + theirs + later, INTERVAL, BURST) == []


def _holding_the_write_lock(path: Path, until: threading.Event) -> threading.Thread:
    """Another process's transaction on the budget file, held until ``until`` is set (10 s at most)."""
    held = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        until.wait(10)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert held.wait(10)
    return thread


class _NeverWoken:
    """pacing's asyncio, whose sleep tells the test it began and then waits to be cancelled."""

    def __init__(self) -> None:
        self.began = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, seconds: float) -> None:
        self.began.set()
        await asyncio.get_running_loop().create_future()


def test_a_give_back_on_a_locked_sqlite_file_never_blocks_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "budget.db"
    pacer = pacing.Pacer({pacing.OTHER: 1.0}, SQLiteBudget(path, "acme"))  # a second per slot, a burst of one
    clock = _NeverWoken()
    monkeypatch.setattr(pacing, "asyncio", clock)
    unlock = threading.Event()

    async def scenario() -> None:
        for _ in range(2):
            await pacer.aacquire(KEY)  # the burst: no wait
        waiting = asyncio.create_task(pacer.aacquire(KEY))  # the next slot, about a second away
        await clock.began.wait()
        holder = _holding_the_write_lock(path, unlock)  # another process writes the file for a moment
        waiting.cancel()
        # The loop's next callback ends the other process's transaction: a give-back that leaves the loop
        # free finds the file free at once; one that holds the loop waits out its busy timeout and fails.
        asyncio.get_running_loop().call_soon(unlock.set)
        with pytest.raises(asyncio.CancelledError):
            await waiting
        holder.join(10)

    with caplog.at_level(logging.DEBUG, logger="billing_events"):
        asyncio.run(scenario())

    assert [r.getMessage() for r in caplog.records if "given back" in r.getMessage()] == []
    again = SQLiteBudget(path, "acme").reserve(KEY, 1.0, 1.0, 5.0)
    assert again is not None and again.wait <= 1.0  # the cancelled slot, not the one after it


def test_a_task_cancelled_while_its_sqlite_booking_waits_for_the_lock_keeps_no_slot(tmp_path: Path) -> None:
    path = tmp_path / "budget.db"
    entered = threading.Event()

    class Observed(SQLiteBudget):
        def reserve(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
            entered.set()
            return super().reserve(key, interval, burst, max_wait)

    pacer = pacing.Pacer({pacing.OTHER: 1.0}, Observed(path, "acme"))
    unlock = threading.Event()

    async def scenario() -> None:
        for _ in range(2):
            await pacer.aacquire(KEY)  # the burst: no wait, nothing to give back
        entered.clear()
        holder = _holding_the_write_lock(path, unlock)  # another process writes the file for a moment
        booking = asyncio.create_task(pacer.aacquire(KEY))
        assert await asyncio.to_thread(entered.wait, 10)
        booking.cancel()  # a timeout around the send, say: the request never leaves
        with pytest.raises(asyncio.CancelledError):
            await booking
        unlock.set()
        holder.join(10)
        # asyncio.run waits for the booking's thread before it returns

    asyncio.run(scenario())

    again = SQLiteBudget(path, "acme").reserve(KEY, 1.0, 1.0, 5.0)
    assert again is not None and again.wait <= 1.0  # the slot of the cancelled task, which never sent


def test_a_task_cancelled_while_its_redis_booking_is_in_flight_keeps_no_slot(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"second-b-in-flight-{time.monotonic_ns()}"
    budget = RedisBudget(redis_url, prefix)
    pacer = pacing.Pacer({pacing.OTHER: 1.0}, budget)
    given_back = threading.Event()
    give_back = budget._give_back

    def recorded(key: str, interval: float, booking: Booking) -> None:
        give_back(key, interval, booking)
        given_back.set()

    monkeypatch.setattr(budget, "_give_back", recorded)

    async def scenario() -> None:
        for _ in range(2):
            await pacer.aacquire(KEY)  # the burst: no wait, nothing to give back
        asked, answer = asyncio.Event(), asyncio.Event()
        book = budget._abook

        async def in_flight(key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
            asked.set()
            await answer.wait()  # the script runs on while its caller is cancelled
            return await book(key, interval, burst, max_wait)

        monkeypatch.setattr(budget, "_abook", in_flight)
        booking = asyncio.create_task(pacer.aacquire(KEY))
        await asked.wait()
        booking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await booking
        answer.set()
        assert await asyncio.to_thread(given_back.wait, 10)

    asyncio.run(scenario())

    again = RedisBudget(redis_url, prefix).reserve(KEY, 1.0, 1.0, 5.0)
    assert again is not None and again.wait <= 1.0  # the slot of the cancelled task, which never sent


# --- What holds -------------------------------------------------------------------------------------------


def test_a_redis_release_after_the_key_expired_creates_nothing(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    prefix = f"second-b-expired-{time.monotonic_ns()}"
    budget = RedisBudget(redis_url, prefix)
    released = _redis_released(budget, monkeypatch)
    with redis.Redis.from_url(redis_url) as server:
        booking = budget.reserve(KEY, 1.0, 1.0, 5.0)
        assert booking is not None and booking.wait == 0.0
        server.delete(f"{prefix}:{KEY}")  # what its expiry does
        budget.release(KEY, 1.0, booking)
        released()
        assert server.exists(f"{prefix}:{KEY}") == 0
        server.set(f"{prefix}:{KEY}", "123.0")  # a key with no expiry: not ours to move
        budget.release(KEY, 1.0, booking._replace(tat=123.0))
        released()
        assert server.get(f"{prefix}:{KEY}") == b"123.0" and server.pttl(f"{prefix}:{KEY}") == -1


def test_the_last_slot_given_back_in_a_shared_budget_is_booked_again_once(tmp_path: Path) -> None:
    path = tmp_path / "budget.db"
    first, second = SQLiteBudget(path, "acme"), SQLiteBudget(path, "acme")
    waits = [first.reserve(KEY, INTERVAL, BURST, MAX_WAIT) for _ in range(3)]
    assert waits[2] is not None
    first.release(KEY, INTERVAL, waits[2])  # the last one's task is cancelled
    again = [second.reserve(KEY, INTERVAL, BURST, MAX_WAIT) for _ in range(2)]
    assert again[0] is not None and again[1] is not None
    assert again[0].wait <= waits[2].wait < again[1].wait  # its slot once, then the next one
