"""Review r31, second reading of the senders' fixes (close grace, read-back off the locks, adopter thread).

Every test here is a defect, marked as a strict xfail: it passes once the defect is fixed.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing_events import AsyncTogai, OutcomeStatus, RetryPolicy, SpoolConfig, Togai
from billing_events import pacing as pacing_module
from billing_events.outcomes import Outcome

from .scripted import Scripted, accepted, togai_event

FAST = RetryPolicy(max_attempts=3, deadline=5.0, initial_delay=0.001, max_delay=0.01, max_retry_after=0.01)


def test_async_sender_reads_the_spool_back_without_stopping_the_event_loop(tmp_path: Path) -> None:
    """An asyncio service with a spool holding more events than the memory window: while the keeper or the
    adopter thread holds the SQLite file (a move, a checkpoint's fsync, a chunk of a dead file taken over),
    the sender's task waits for it on the event loop's own thread, so every coroutine of the service,
    each ``track()`` included, stops until the disk is done. The README says the rest "is read back from
    the file by the sending thread or task, without holding up ``track()``"; the read-back should run
    off the loop (``asyncio.to_thread``), as ``flush()`` already does for adoption."""
    entered = threading.Event()  # the sender's task began reading back
    go = threading.Event()
    held = threading.Event()
    tracked = threading.Event()  # a coroutine of the service ran a track() meanwhile
    seen: list[bool] = []

    async def run() -> None:
        async with AsyncTogai(
            "t",
            base_url="http://togai.local",
            transport=httpx.MockTransport(accepted),
            max_requests_per_second=None,
        ) as togai:
            sender = togai.background(
                spool=SpoolConfig(tmp_path), max_queue_events=1, flush_interval=60, max_in_flight=1
            )
            spool = sender._queue
            refill, settle = spool._refill, spool.settle

            def reading_back() -> None:
                entered.set()
                refill()

            def settled_then_busy(*args: Any) -> None:
                settle(*args)
                if not go.is_set():  # the first event is settled: from here on the disk is busy
                    go.set()
                    assert held.wait(5)

            spool._refill = reading_back  # type: ignore[method-assign]
            spool.settle = settled_then_busy  # type: ignore[method-assign]

            def busy_disk() -> None:
                # The keeper's or the adopter's SQLite work, taking its time (a slow fsync, a large chunk).
                assert go.wait(5)
                with spool._db_lock:
                    held.set()
                    seen.append(tracked.wait(3))

            holder = threading.Thread(target=busy_disk)
            holder.start()
            for number in range(3):  # one in memory, two read back from the file when their turn comes
                sender.track(togai_event(number, id=f"ev-{number}"))
            assert await asyncio.to_thread(entered.wait, 5)
            sender.track(togai_event(3, id="ev-3"))  # any coroutine of the service, while the disk is busy
            tracked.set()
            await asyncio.to_thread(holder.join, 10)
            assert await sender.flush(10)
            await sender.close(10)

    asyncio.run(run())
    assert seen == [True], "the event loop stood still until the spool's SQLite lock was released"


def test_ctrl_c_in_close_dead_letters_a_request_still_waiting_for_its_budget_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A user presses Ctrl-C while ``close()`` drains a thread sender held back by its rate budget. The
    event whose worker was still waiting for its slot (no byte of it left, and it never leaves) is
    dead-lettered ``unknown`` ("a request that may have stored it was out"). The README says a Ctrl-C
    during close() dead-letters queued events ``failed`` and those whose request was out ``unknown``,
    and the same close past its deadline, or a cancelled async close(), now says ``failed`` for it: so
    should the Ctrl-C."""
    letters: list[Outcome] = []
    server = Scripted(default=accepted)
    waiting = threading.Event()
    sleep = pacing_module._sleep

    def budget_wait(seconds: float, stop: threading.Event | None) -> bool:
        waiting.set()
        return sleep(seconds, stop)

    monkeypatch.setattr(pacing_module, "_sleep", budget_wait)
    # One request every 5 s; the pacer lets two go at once, the third waits for its slot.
    client = Togai(
        "t",
        base_url="http://togai.local",
        transport=server.transport(),
        retry=FAST,
        max_requests_per_second=0.2,
        on_dead_letter=letters.append,
    )
    sender = client.background()
    for number in range(2):
        sender.track(togai_event(number, id=f"evt-{number}"))
        assert sender.flush(timeout=5.0)
    assert not waiting.is_set()
    sender.track(togai_event(2, id="evt-waiting"))
    sender.flush(timeout=0.01)  # wakes the worker
    assert waiting.wait(5)  # its request waits for its slot of the rate budget
    workers = list(sender._threads)

    interrupted: list[bool] = []

    def ctrl_c(timeout: float | None = None) -> None:
        if not interrupted:  # what a Ctrl-C does to close()'s join of the worker, once
            interrupted.append(True)
            raise KeyboardInterrupt
        threading.Thread.join(workers[0], timeout)

    workers[0].join = ctrl_c  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        sender.close(timeout=5.0)
    for worker in workers:
        threading.Thread.join(worker, 10)
    client.close()

    assert len(server.requests) == 2  # the third event's request never left
    assert len(letters) == 1
    assert letters[0].status is OutcomeStatus.FAILED, letters[0].reason


def test_flush_is_false_when_a_close_deadline_leaves_its_events_in_the_spool(tmp_path: Path) -> None:
    """One thread calls ``flush(2)`` while another shuts the spooled sender down with ``close(0.1)``, its only
    request still unanswered. The close leaves the event in the spool for the next sender (README: "the
    events not yet settled stay in the spool"); it got no outcome and was not delivered. Yet flush()
    returns True, which the README defines as "everything queued before the call has settled". It
    should return False."""
    arrived = threading.Event()
    release = threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        arrived.set()
        release.wait(10)
        return httpx.Response(202, json={"success": True})

    client = Togai("t", base_url="http://togai.local", transport=httpx.MockTransport(slow), retry=FAST)
    sender = client.background(spool=SpoolConfig(tmp_path))
    sender.track(togai_event(0, id="evt-0"))
    sender.flush(timeout=0.01)  # wakes the worker
    assert arrived.wait(5)
    flushed: list[bool] = []
    flusher = threading.Thread(target=lambda: flushed.append(sender.flush(2.0)))
    flusher.start()
    stats = sender.close(timeout=0.1)
    flusher.join(10)
    release.set()
    for worker in sender._threads:
        worker.join(10)
    client.close()

    assert stats.delivered == 0
    assert flushed == [False]
