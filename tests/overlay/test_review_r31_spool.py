"""Review r31 of the durable spool: defects found, each a strict xfail that passes once it is fixed.

A full disk is stood in for by SQLite's own ``max_page_count``: SQLite then answers every insert that
needs a new page with the error a full disk gives ("database or disk is full").
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing_events import AsyncTogai, SpoolConfig, Togai
from billing_events.spool import _adopt as spool_adopt
from billing_events.spool import _intake as spool_intake
from billing_events.spool import _spool as spool_module
from billing_events.spool._spool import Spool

from .scripted import togai_event
from .spool_support import DESTINATION, killed, offer_events, togai_spool


def fill_the_disk(spool: Spool) -> None:
    """From here on SQLite cannot grow the spool file: what a full disk does to it."""
    with spool._db_lock:
        db = spool._store.db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count={pages}")


def test_async_sender_posts_no_empty_batches_when_the_spool_cannot_be_read_back(tmp_path: Path) -> None:
    """With a spool on a full disk and more events than the memory window, the asyncio sender posts
    ``{"events": []}`` to the provider in a loop (thousands a second, each also an ERROR log line and a
    request from the rate budget). It should post no request without events, and wait for the next
    flush interval as the thread sender does."""
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(202, json={"success": True})

    async def run() -> None:
        async with AsyncTogai(
            "t", base_url="http://togai.local", transport=httpx.MockTransport(answer)
        ) as togai:
            sender = togai.background(spool=SpoolConfig(tmp_path), max_queue_events=1, flush_interval=0.01)
            fill_the_disk(sender._queue)
            for number in range(40):  # one in memory, the rest read back from SQLite when their turn comes
                sender.track(togai_event(number, id=f"ev-{number}"))
            await sender.flush(0.5)
            await sender.close(0.2)

    asyncio.run(run())
    empty = [body for body in bodies if not body.get("events")]
    assert bodies, "the event in memory was sent"
    assert len(empty) == 0, f"{len(empty)} of {len(bodies)} requests carried no event"


def test_group_durability_syncs_new_events_while_the_keeper_adopts_a_dead_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender starts on a directory where a killed sender left many events; its keeper adopts them in
    chunks, which on a large file takes seconds to minutes. Under ``durability="group"`` the README says
    everything tracked more than ``fsync_interval`` (50 ms) before a power loss survives it. But while
    the keeper adopts, nothing tracked is synced: a power loss then loses events tracked long ago.
    Here one chunk of the adoption is held; an event tracked meanwhile should still be synced."""
    dead = togai_spool(tmp_path)
    offer_events(dead, 50)
    with dead._db_lock:
        dead._move_now()
    killed(dead)
    monkeypatch.setattr(spool_adopt, "MERGE_CHUNK", 10)  # five chunks
    monkeypatch.setattr(spool_module, "ADOPT_AT_START", 0.0)  # the keeper adopts it all
    monkeypatch.setattr(spool_module, "ADOPT_EVERY", 0.0)

    in_second_chunk, release = threading.Event(), threading.Event()
    chunks = [0]
    insert = Spool._insert

    def slow_chunk(self: Spool, rows: list[tuple[Any, ...]]) -> bool:
        chunks[0] += 1
        if chunks[0] == 2:  # a chunk that takes long (a slow disk, a big file)
            in_second_chunk.set()
            release.wait(10)
        return insert(self, rows)

    target: list[int] = []
    covered = threading.Event()
    sync = spool_intake.Segment.sync

    def recorded_sync(self: spool_intake.Segment) -> None:
        sync(self)
        if target and self.synced >= target[0]:
            covered.set()

    monkeypatch.setattr(Spool, "_insert", slow_chunk)
    monkeypatch.setattr(spool_intake.Segment, "sync", recorded_sync)
    rules = Togai("t", base_url=DESTINATION).rules
    spool = Spool(rules, SpoolConfig(tmp_path, durability="group"), DESTINATION, 1_000, 1 << 20)
    try:
        assert in_second_chunk.wait(10)
        offer_events(spool, 1)
        target.append(spool._segments[-1].offset)
        synced_while_adopting = covered.wait(3)  # 60 times fsync_interval
    finally:
        release.set()
    try:
        assert covered.wait(10), "synced once the adoption ended"
        assert synced_while_adopting, "the event tracked during the adoption was not synced"
    finally:
        spool.close()


def test_track_does_not_wait_for_sqlite_while_a_worker_reads_events_back(tmp_path: Path) -> None:
    """With more events queued than the memory window, a worker reads the rest back from the spool's
    SQLite file while holding the sender's lock. Reading back waits for the SQLite lock (held by the
    keeper during a checkpoint, a move or an adoption chunk, each with its fsync) and runs a move
    itself: every ``track()`` meanwhile waits for the disk, where the README gives it microseconds
    and the spool's design says SQLite's work never holds up ``track()``. Here the keeper's side of
    the SQLite lock is held; a ``track()`` on another thread should still return."""
    gate, arrived = threading.Event(), threading.Event()

    def answer(request: httpx.Request) -> httpx.Response:
        arrived.set()
        gate.wait(10)
        return httpx.Response(202, json={"success": True})

    togai = Togai("t", base_url="http://togai.local", transport=httpx.MockTransport(answer))
    sender = togai.background(spool=SpoolConfig(tmp_path), max_queue_events=1, flush_interval=60)
    spool = sender._queue
    refilling, proceed = threading.Event(), threading.Event()
    refill = spool._refill

    def ordered_refill() -> None:
        refilling.set()
        proceed.wait(10)  # only orders the steps: the test takes the SQLite lock first
        refill()

    spool._refill = ordered_refill  # type: ignore[method-assign]
    returned = threading.Event()
    try:
        sender.track(togai_event(0, id="a"))
        assert arrived.wait(10)
        sender.track(togai_event(1, id="b"))  # the memory window
        sender.track(togai_event(2, id="c"))  # beyond it: read back from SQLite
        gate.set()
        assert refilling.wait(10)
        with spool._db_lock:  # the keeper inside SQLite
            proceed.set()
            tracker = threading.Thread(
                target=lambda: (sender.track(togai_event(3, id="d")), returned.set()), daemon=True
            )
            tracker.start()
            returned_while_busy = returned.wait(3)
    finally:
        gate.set()
        proceed.set()
    assert returned.wait(10)
    stats = sender.close(10)
    assert stats.delivered == 4
    assert returned_while_busy, "track() waited for the spool's SQLite lock"


def test_a_closing_thread_sender_does_not_retry_an_unreadable_spool_without_pause(tmp_path: Path) -> None:
    """With a spool on a full disk and more events than the memory window, ``close(timeout)`` of the thread
    sender tries to read the spool back again and again without pause until its deadline: tens of
    thousands of attempts a second, each an ERROR log line. It should wait for the flush interval between
    attempts, as it does while open (here the interval outlasts the close deadline); the events stay in
    the spool for the next sender."""
    gate, arrived = threading.Event(), threading.Event()

    def answer(request: httpx.Request) -> httpx.Response:
        arrived.set()
        gate.wait(10)
        return httpx.Response(202, json={"success": True})

    togai = Togai("t", base_url="http://togai.local", transport=httpx.MockTransport(answer))
    sender = togai.background(spool=SpoolConfig(tmp_path), max_queue_events=1, flush_interval=60)
    spool = sender._queue
    fill_the_disk(spool)
    attempts_while_closing = [0]
    read_back = spool.read_back

    def counted() -> None:
        if sender._closed:
            attempts_while_closing[0] += 1
        read_back()

    spool.read_back = counted  # type: ignore[method-assign]
    try:
        sender.track(togai_event(0, id="ev-0"))
        assert arrived.wait(10)
        for number in range(1, 40):  # one more in memory, the rest only in the intake (their move fails)
            sender.track(togai_event(number, id=f"ev-{number}"))
    finally:
        gate.set()
    stats = sender.close(0.5)
    assert (stats.delivered, stats.in_spool) == (2, 38)
    assert attempts_while_closing[0] <= 3, f"{attempts_while_closing[0]} read-back attempts while closing"
