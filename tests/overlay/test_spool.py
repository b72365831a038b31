"""The durable spool (``background(spool=...)``): tracked events survive SIGKILL, through the real mock.

Children are made with ``os.fork()`` (milliseconds, where a fresh interpreter costs most of a second),
report each key once ``track()`` has returned, and are SIGKILLed after a seeded random number of keys:
while tracking, while requests are out, while settling, while closing. A new sender on the same
directory then finishes the job. Counts are scaled down to keep the module near 30 s on 2 cores:
10 kills of children tracking up to 120 events each, per target.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import signal
import sqlite3
import sys
import threading
import traceback
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing_events import (
    AsyncLago,
    AsyncTogai,
    Lago,
    QueueFullError,
    RetryPolicy,
    SpoolConfig,
    Togai,
)
from billing_events.mock import create_app
from billing_events.mock.testing import serve_in_thread
from billing_events.spool import _intake as spool_intake
from billing_events.spool import spool_status
from billing_events.spool._adopt import fold_intake
from billing_events.spool._spool import Spool

from .scripted import lago_event, togai_event

TOKEN = "test-token"
TARGETS = ["togai", "lago-postgres", "lago-clickhouse"]
# Never exhausted under the faults below: a crash test must not end an event as unknown.
POLICY = RetryPolicy(max_attempts=40, deadline=60, initial_delay=0.001, max_delay=0.01, max_retry_after=0.01)
FAULTS = {"rate_429": 0.05, "rate_503": 0.1, "rate_drop": 0.1, "rate_lost_response": 0.1, "retry_after": 0}
KILLS = 10
PER_CHILD = 120
DESTINATION = "https://togai.example/api"


def direct_spool(directory: Path, **config: Any) -> Spool:
    """A Togai spool used directly, without a sender (its keeper thread runs)."""
    rules = Togai("token", base_url=DESTINATION).rules
    return Spool(rules, SpoolConfig(directory, **config), DESTINATION, 1_000, 1 << 20)


def keeperless_spool(directory: Path, **config: Any) -> Spool:
    """``direct_spool`` with its keeper and adopter threads stopped: the test takes their steps itself."""
    spool = direct_spool(directory, **config)
    spool._stop.set()
    spool._keeper.join(10)
    spool._adopter.join(10)
    return spool


def record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the files ``os.fsync`` is called on from here on (Linux: read from /proc)."""
    synced: list[str] = []
    fsync = os.fsync

    def recorded(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recorded)
    return synced


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_in_thread(create_app()) as url:
        yield url


def prepare(server: str, target: str, faults: dict[str, Any] | None = None) -> str:
    """Reset the mock for a target; returns the provider name."""
    provider, _, store = target.partition("-")
    httpx.post(f"{server}/_mock/reset").raise_for_status()
    httpx.put(f"{server}/_mock/lago_store", json={"store": store or "postgres"}).raise_for_status()
    httpx.put(f"{server}/_mock/faults", json={"seed": 11, **(faults or {})}).raise_for_status()
    return provider


def stored_keys(server: str, provider: str) -> list[str]:
    """What the provider would bill: the mock's events after its own deduplication."""
    key_field = "id" if provider == "togai" else "transaction_id"
    return [event[key_field] for event in httpx.get(f"{server}/_mock/events/{provider}").json()]


def base_url(server: str, provider: str) -> str:
    return f"{server}/togai" if provider == "togai" else f"{server}/lago/api/v1"


def event(provider: str, key: str, number: int) -> dict[str, Any]:
    if provider == "togai":
        return togai_event(number, id=key)
    made = lago_event(number, transaction_id=key)
    del made["timestamp"]  # the overlay stamps it at acceptance: a re-send must carry the same one
    return made


def client(provider: str, url: str, asynchronous: bool = False, **options: Any) -> Any:
    classes = {"togai": (Togai, AsyncTogai), "lago": (Lago, AsyncLago)}[provider]
    return classes[asynchronous](TOKEN, base_url=url, retry=POLICY, max_batch_events=25, **options)


def track_in_child(
    directory: Path,
    url: str,
    provider: str,
    prefix: str,
    count: int,
    out: int,
    asynchronous: bool,
    durability: str = "group",
) -> None:
    """The child's whole life: track, report each key, close. Never returns into pytest."""
    code = 1
    try:
        os.write(out, b"started\n")
        spool = SpoolConfig(directory, durability=durability)  # type: ignore[arg-type]
        options: dict[str, Any] = {"spool": spool, "flush_interval": 0.01, "max_queue_events": 40}
        if asynchronous:

            async def run() -> None:
                async with client(provider, url, asynchronous=True) as api:
                    sender = api.background(**options)
                    for number in range(count):
                        key = f"{prefix}-{number}"
                        sender.track(event(provider, key, number))
                        os.write(out, key.encode() + b"\n")
                        if number % 10 == 0:
                            await asyncio.sleep(0)  # let the sending task run
                    await sender.close(30)

            asyncio.run(run())
        else:
            with client(provider, url) as api:
                sender = api.background(workers=2, **options)
                for number in range(count):
                    key = f"{prefix}-{number}"
                    sender.track(event(provider, key, number))
                    os.write(out, key.encode() + b"\n")
                sender.close(30)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def fork(child: Callable[[int], None]) -> tuple[int, Any]:
    """Fork a child that writes lines to a pipe; returns its pid and the pipe's reading end."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        child(write)
    os.close(write)
    return pid, os.fdopen(read, "rb")


def run_and_kill(child: Callable[[int], None], kill_after: int) -> list[str]:
    """Run a child and SIGKILL it once it reported ``kill_after`` keys; every key it reported."""
    pid, lines = fork(child)
    keys: list[str] = []
    with lines:
        assert lines.readline() == b"started\n"
        while len(keys) < kill_after and (line := lines.readline()):
            keys.append(line.decode().strip())
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        keys += [line.decode().strip() for line in lines]  # tracked before the kill landed
    return keys


def crash_loop(
    server: str, target: str, directory: Path, asynchronous: bool, durability: str = "group"
) -> None:
    provider = prepare(server, target, FAULTS)
    url = base_url(server, provider)
    moments = random.Random(f"{target}-{asynchronous}").sample(range(PER_CHILD + 1), KILLS)
    tracked: list[str] = []
    attempted: set[str] = set()
    for run, moment in enumerate(moments):
        prefix = f"crash-{run}"
        attempted.update(f"{prefix}-{n}" for n in range(PER_CHILD))

        def child(out: int, prefix: str = prefix) -> None:
            track_in_child(directory, url, provider, prefix, PER_CHILD, out, asynchronous, durability)

        tracked += run_and_kill(child, moment)

    # A new sender on the same spool finishes the job, faults still on.
    with client(provider, url) as api:
        stats = api.background(spool=directory).close(60)
    stored = stored_keys(server, provider)

    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert set(tracked) <= set(stored), f"{len(set(tracked) - set(stored))} tracked events were lost"
    assert set(stored) <= attempted
    assert stats.in_spool == 0 and stats.unknown == 0 and stats.failed == 0
    assert not list(directory.glob("*.spool")), "the finished spool left files behind"
    assert len(tracked) > KILLS  # the kills landed at different moments, most of them mid-stream


@pytest.mark.parametrize("target", TARGETS)
def test_crash_loop_every_tracked_event_is_stored_exactly_once(
    server: str, target: str, tmp_path: Path
) -> None:
    crash_loop(server, target, tmp_path / "spool", asynchronous=False)


@pytest.mark.parametrize("target", TARGETS)
def test_crash_loop_with_the_asyncio_sender(server: str, target: str, tmp_path: Path) -> None:
    crash_loop(server, target, tmp_path / "spool", asynchronous=True)


@pytest.mark.parametrize("durability", ["os", "sync"])
def test_crash_loop_with_the_other_durability_settings(server: str, durability: str, tmp_path: Path) -> None:
    """Every setting survives a killed process; they differ only on a power loss (not tested here)."""
    crash_loop(server, "togai", tmp_path / "spool", asynchronous=False, durability=durability)


def hold_in_child(directory: Path, url: str, provider: str, prefix: str, count: int, out: int) -> None:
    """Track ``count`` events that are never sent (no flush trigger is reached), report, wait to be killed."""
    try:
        with client(provider, url) as api:
            sender = api.background(spool=directory, flush_interval=3600, flush_at_events=10_000)
            for number in range(count):
                sender.track(event(provider, f"{prefix}-{number}", number))
            os.write(out, b"started\ntracked\n")
            while True:
                signal.pause()
    finally:
        os._exit(1)


def killed_holder(directory: Path, url: str, provider: str, prefix: str, count: int) -> None:
    pid, lines = fork(lambda out: hold_in_child(directory, url, provider, prefix, count, out))
    with lines:
        assert lines.readline() == b"started\n"
        assert lines.readline() == b"tracked\n"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_a_survivor_adopts_the_events_of_a_killed_process(server: str, tmp_path: Path) -> None:
    provider = prepare(server, "lago-clickhouse")
    url = base_url(server, provider)
    directory = tmp_path / "spool"
    pid, lines = fork(lambda out: hold_in_child(directory, url, provider, "dead", 300, out))
    with lines:
        assert lines.readline() == b"started\n"
        assert lines.readline() == b"tracked\n"
    with client(provider, url) as api:
        survivor = api.background(spool=directory)
        survivor.track(event(provider, "alive-0", 0))
        assert survivor.flush(30)
        assert stored_keys(server, provider) == ["alive-0"]  # the live holder's file was not touched
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert survivor.flush(30)  # adopts the dead process's file, then sends its events
        stats = survivor.close(30)
    assert stats.recovered == 300
    assert sorted(stored_keys(server, provider)) == sorted(["alive-0", *(f"dead-{n}" for n in range(300))])
    assert not list(directory.glob("*.spool"))


def test_settled_events_are_not_sent_again_after_a_kill(server: str, tmp_path: Path) -> None:
    """Delivered events left the spool with their outcome: a restart re-sends none of them."""
    provider = prepare(server, "togai")
    url = base_url(server, provider)

    def delivered_then_killed(out: int) -> None:
        try:
            with client(provider, url) as api:
                sender = api.background(spool=tmp_path)
                for number in range(200):  # settled before the intake moves into SQLite (after 0.5 s)
                    sender.track(event(provider, f"settled-{number}", number))
                assert sender.flush(30)
                os.write(out, b"started\nflushed\n")
                while True:
                    signal.pause()
        finally:
            os._exit(1)

    assert run_and_kill(delivered_then_killed, 1) == ["flushed"]
    with client(provider, url) as api:
        stats = api.background(spool=tmp_path).close(30)
    assert stats.recovered == 0
    mock = httpx.get(f"{server}/_mock/stats").json()["togai"]
    assert (mock["stored"], mock["duplicates"]) == (200, 0)


def test_a_forked_child_never_sends_its_parents_spooled_events(server: str, tmp_path: Path) -> None:
    provider = prepare(server, "togai")
    url = base_url(server, provider)
    directory = tmp_path / "spool"
    with client(provider, url) as api:
        sender = api.background(spool=directory, flush_interval=3600, flush_at_events=10_000)
        for number in range(200):
            sender.track(event(provider, f"parent-{number}", number))

        def child(out: int) -> None:
            code = 1
            try:
                # The same sender object, forked with the parent's spool open: it must start afresh.
                for number in range(50):
                    sender.track(event(provider, f"child-{number}", number))
                stats = sender.close(30)
                os.write(out, f"{stats.delivered} {stats.recovered}\n".encode())
                code = 0
            finally:
                os._exit(code)

        pid, lines = fork(child)
        with lines:
            report = lines.readline()
        _, status = os.waitpid(pid, 0)
        assert status == 0
        assert report == b"50 0\n"
        assert sorted(stored_keys(server, provider)) == sorted(f"child-{n}" for n in range(50))
        stats = sender.close(30)
    assert stats.delivered == 200
    assert len(stored_keys(server, provider)) == 250
    assert not list(directory.glob("*.spool"))


def track_until_full(sender: Any, provider: str, reason: str = "spool") -> int:
    """Track until the sender refuses (its error names the spool and ``reason``); how many it took."""
    refused: list[QueueFullError] = []
    for number in range(100_000):
        try:
            sender.track(event(provider, f"full-{number}", number))
        except QueueFullError as exc:
            refused.append(exc)
            break
    assert refused, "the spool never filled"
    assert "spool" in str(refused[0]) and reason in str(refused[0])
    return number


def test_a_full_spool_blocks_then_raises_and_the_caller_keeps_the_event(server: str, tmp_path: Path) -> None:
    provider = prepare(
        server, "togai", {"latency_ms": 1000}
    )  # what a blocked caller wakes is slow to free room
    # Small requests allow a small spool: a few hundred events fill it.
    with client(provider, base_url(server, provider), max_batch_bytes=65_536) as api:
        sender = api.background(
            spool=SpoolConfig(tmp_path, max_bytes=65_536),
            flush_interval=3600,
            flush_at_events=100_000,
            flush_at_bytes=10**9,
            block_timeout=0.05,
        )
        tracked = track_until_full(sender, provider)
        assert 0 < sender.stats.in_spool == tracked
        httpx.put(f"{server}/_mock/faults", json={"latency_ms": 0}).raise_for_status()
        stats = sender.close(30)
    assert stats.delivered == tracked and stats.dropped == 0
    assert len(stored_keys(server, provider)) == tracked


def test_a_full_spool_drops_with_a_dead_letter(server: str, tmp_path: Path) -> None:
    provider = prepare(server, "lago-postgres")
    letters = tmp_path / "dead.jsonl"
    with client(
        provider, base_url(server, provider), max_batch_bytes=65_536, dead_letter_path=letters
    ) as api:
        sender = api.background(
            spool=SpoolConfig(tmp_path / "spool", max_bytes=65_536),
            flush_interval=3600,
            flush_at_events=100_000,
            flush_at_bytes=10**9,
            on_full="drop",
        )
        for number in range(1000):
            sender.track(event(provider, f"drop-{number}", number))
        before = sender.stats
        stats = sender.close(30)
    assert before.dropped > 0 and before.in_spool + before.dropped == 1000
    assert stats.delivered == before.in_spool
    assert letters.read_text().count('"status":"dropped"') == before.dropped
    assert "spool" in letters.read_text()


@pytest.mark.parametrize("on_full", ["block", "drop"])
def test_a_full_disk_is_handled_like_a_full_spool(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_full: str
) -> None:
    provider = prepare(server, "togai")
    letters = tmp_path / "dead.jsonl"
    monkeypatch.setattr(spool_intake, "SEGMENT_BYTES", 64 * 1024)  # the next intake file comes soon

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with client(provider, base_url(server, provider), dead_letter_path=letters) as api:
        sender = api.background(
            spool=tmp_path / "spool", flush_interval=3600, flush_at_events=10_000, on_full=on_full
        )
        for number in range(100):
            sender.track(event(provider, f"room-{number}", number))
        monkeypatch.setattr(spool_intake.os, "posix_fallocate", no_space)
        if on_full == "block":
            tracked = 100 + track_until_full(sender, provider, "No space left on device")
        else:
            for number in range(1000):
                sender.track(event(provider, f"disk-{number}", number))
            tracked = 1100 - sender.stats.dropped
        monkeypatch.undo()
        stats = sender.close(30)
    assert 100 < stats.delivered == tracked < 1100
    assert len(stored_keys(server, provider)) == tracked
    if on_full == "drop":
        assert letters.read_text().count("No space left on device") == stats.dropped > 0


@pytest.mark.skipif(sys.platform != "linux", reason="elsewhere the intake syncs through mmap.flush")
def test_other_threads_run_while_an_intake_segment_syncs(tmp_path: Path) -> None:
    """The keeper's msync (every ``fsync_interval`` under "group"; track()'s own under "sync") waits
    for the disk without the GIL: track() and the workers go on meanwhile.

    With the switch interval at 1000 s, the GIL changes hands only when its holder lets it go, so
    the other thread can run inside the loop only if a sync lets it go.
    """
    segment = spool_intake.Segment(tmp_path / "intake", 8 << 20, 1)
    ran: list[str] = []
    gate = threading.Lock()
    gate.acquire()

    def other() -> None:
        with gate:
            ran.append("ran")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000)
    try:
        thread = threading.Thread(target=other)
        thread.start()  # returns once the thread waits on the gate (it holds the GIL until then)
        gate.release()  # the thread now waits only for the GIL
        for step in range(8):
            start = step << 20
            segment.map[start : start + (1 << 20)] = bytes([step + 1]) * (1 << 20)
            segment.offset = start + (1 << 20)
            segment.sync()
            if ran:
                break
        ran_during_syncs = bool(ran)
    finally:
        sys.setswitchinterval(interval)
    thread.join(10)
    segment.close(remove=True)
    assert ran_during_syncs


def test_under_sync_a_settlement_leaves_no_marker_unsynced_where_its_markers_start_a_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Markers written before the settlement's own rotation to a new intake segment are synced too."""
    monkeypatch.setattr(spool_intake, "SEGMENT_BYTES", 4096)
    spool = direct_spool(tmp_path, durability="sync")
    try:
        record = spool_intake.RECORD_SIZE
        # Ten records leave 56 bytes of the first segment: room for one marker (40 bytes), not two.
        for number in range(10):
            spool.offer(b"x" * (404 - record - 5) + b"%05d" % number)
        first = spool._segments[-1]
        assert first.size - first.offset == 56
        taken = spool.take_batch()
        spool.settle([taken[0], taken[2], taken[4]], [])  # three runs: three markers
        segments = list(spool._segments)
        assert len(segments) == 2
        assert [segment.offset - segment.synced for segment in segments] == [0, 0]
    finally:
        spool.close()


@pytest.mark.skipif(sys.platform != "linux", reason="names the synced files through /proc/self/fd")
@pytest.mark.parametrize("moved", [False, True], ids=["settled-in-the-intake", "settled-after-a-move"])
def test_the_group_sync_fsyncs_sqlites_wal_only_when_a_settlement_changed_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moved: bool
) -> None:
    """Settlement markers are in the intake, which the group sync msyncs anyway: they leave the WAL
    alone. Events the keeper moved into SQLite are settled by a DELETE there, which the WAL holds."""
    spool = keeperless_spool(tmp_path, durability="group")
    try:
        for number in range(5):
            spool.offer(b'{"n":%d}' % number)
        if moved:
            with spool._db_lock:
                spool._move_now()
            spool._sync()  # the move's commit is fsynced
        spool.settle(spool.take_batch(), [])
        synced = record_fsyncs(monkeypatch)
        spool._sync()
        monkeypatch.undo()
        assert any(path.endswith("-wal") for path in synced) == moved
        assert spool._segments[-1].synced == spool._segments[-1].offset > 0
    finally:
        spool.close()


def test_the_track_that_fills_a_segment_swaps_in_the_keepers_spare(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Making an intake segment (allocation, its zeros, a directory sync) takes milliseconds: the keeper
    makes the next one once the current one is half full, and track() only swaps it in."""
    provider = prepare(server, "togai")
    monkeypatch.setattr(spool_intake, "SEGMENT_BYTES", 64 * 1024)
    made_by: list[threading.Thread] = []
    create = spool_intake.Segment.create

    def recorded(db_path: Path, number: int, payload_size: int) -> spool_intake.Segment:
        made_by.append(threading.current_thread())
        return create(db_path, number, payload_size)

    monkeypatch.setattr(spool_intake.Segment, "create", staticmethod(recorded))
    prepared = threading.Event()
    prepare_spare = Spool._prepare_spare

    def noted(spool: Spool) -> None:
        prepare_spare(spool)
        if spool._spare is not None:
            prepared.set()

    monkeypatch.setattr(Spool, "_prepare_spare", noted)
    directory = tmp_path / "spool"
    tracked = 0
    with client(provider, base_url(server, provider)) as api:
        sender = api.background(spool=directory, flush_interval=3600, flush_at_events=10_000)
        spool = sender._queue
        for _ in range(3):
            prepared.clear()
            while not spool._segments or spool._segments[-1].offset * 2 < spool._segments[-1].size:
                sender.track(event(provider, f"segment-{tracked}", tracked))
                tracked += 1
            current = spool._segments[-1]
            assert prepared.wait(10), "the keeper made no spare for a half-full segment"
            spare = spool._spare
            assert spare is not None and spare.path.exists()
            while spool._segments[-1] is current:
                sender.track(event(provider, f"segment-{tracked}", tracked))
                tracked += 1
            assert spool._segments[-1] is spare
        stats = sender.close(30)
    # Only the first segment was made by track(); every later one by the keeper, ahead of need.
    assert made_by[0] is threading.current_thread()
    assert {thread.name for thread in made_by[1:]} == {"billing-events-togai-spool"}
    assert stats.delivered == tracked
    assert sorted(stored_keys(server, provider)) == sorted(f"segment-{n}" for n in range(tracked))
    assert not list(directory.glob("*.intake-*"))  # the spare made last holds nothing and went too


def test_a_spare_that_track_overtook_is_replaced_before_the_next_segment_fills(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """track() made a segment itself while the keeper made a spare (the spare came too late): that spare
    can never follow the new segment, so the keeper removes it and makes one that can."""
    provider = prepare(server, "togai")
    monkeypatch.setattr(spool_intake, "SEGMENT_BYTES", 64 * 1024)
    spares: list[spool_intake.Segment] = []
    made = threading.Condition()
    prepare_spare = Spool._prepare_spare

    keeper = threading.Lock()  # held by the test: the keeper makes no spare meanwhile

    def noted(spool: Spool) -> None:
        with keeper:
            prepare_spare(spool)
        with made:
            if spool._spare is not None and (not spares or spool._spare is not spares[-1]):
                spares.append(spool._spare)
                made.notify_all()

    monkeypatch.setattr(Spool, "_prepare_spare", noted)
    directory = tmp_path / "spool"
    tracked = 0

    def track_until(condition: Callable[[], bool]) -> None:
        nonlocal tracked
        while not condition():
            sender.track(event(provider, f"late-{tracked}", tracked))
            tracked += 1

    with client(provider, base_url(server, provider)) as api:
        sender = api.background(spool=directory, flush_interval=3600, flush_at_events=10_000)
        spool = sender._queue
        track_until(
            lambda: bool(spool._segments) and spool._segments[-1].offset * 2 >= spool._segments[-1].size
        )
        with made:
            assert made.wait_for(lambda: len(spares) == 1, 10)
        with keeper:
            with spool._lock:  # the keeper's spare is late: track() finds none, and makes its segment
                late, spool._spare = spool._spare, None
            first = spool._segments[-1]
            track_until(lambda: spool._segments[-1] is not first)
            overtaking = spool._segments[-1]
            assert late is not None and late.number < overtaking.number
            with spool._lock:
                spool._spare = late
        track_until(lambda: overtaking.offset * 2 >= overtaking.size)
        with made:
            assert made.wait_for(lambda: len(spares) == 2, 10), "the late spare was kept"
        assert spares[1].number > overtaking.number
        assert not late.path.exists()
        track_until(lambda: spool._segments[-1] is not overtaking)
        assert spool._segments[-1] is spares[1]
        stats = sender.close(30)
    assert stats.delivered == tracked
    assert sorted(stored_keys(server, provider)) == sorted(f"late-{n}" for n in range(tracked))


def test_a_spare_the_full_disk_refuses_is_logged_once_and_track_makes_its_own(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    provider = prepare(server, "togai")
    monkeypatch.setattr(spool_intake, "SEGMENT_BYTES", 64 * 1024)
    ticks = threading.Condition()
    attempts = [0]
    prepare_spare = Spool._prepare_spare

    armed = threading.Event()  # set once the first segment is half full: each tick from then tries

    def counted(spool: Spool) -> None:
        prepare_spare(spool)
        if armed.is_set():
            with ticks:
                attempts[0] += 1
                ticks.notify_all()

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Spool, "_prepare_spare", counted)
    caplog.set_level(logging.WARNING, logger="billing_events")
    directory = tmp_path / "spool"
    tracked = 0
    with client(provider, base_url(server, provider)) as api:
        sender = api.background(spool=directory, flush_interval=3600, flush_at_events=10_000)
        spool = sender._queue
        sender.track(event(provider, "disk-0", 0))
        tracked = 1
        with monkeypatch.context() as disk:
            disk.setattr(spool_intake.os, "posix_fallocate", no_space)
            first = spool._segments[-1]
            while first.offset * 2 < first.size:
                sender.track(event(provider, f"disk-{tracked}", tracked))
                tracked += 1
            armed.set()
            with ticks:  # twenty ticks of the keeper, each of which could try again
                assert ticks.wait_for(lambda: attempts[0] >= 20, 30)
        while spool._segments[-1] is first:
            sender.track(event(provider, f"disk-{tracked}", tracked))
            tracked += 1
        stats = sender.close(30)
    assert caplog.text.count("could not prepare the next spool intake segment") == 1
    assert "No space left on device" in caplog.text
    assert stats.delivered == tracked
    assert sorted(stored_keys(server, provider)) == sorted(f"disk-{n}" for n in range(tracked))


def test_a_spare_segment_left_by_a_killed_process_is_read_as_empty(server: str, tmp_path: Path) -> None:
    """A kill can leave the keeper's spare behind (all zeros, or cut short while being written)."""
    provider = prepare(server, "togai")
    url = base_url(server, provider)
    directory = tmp_path / "spool"
    killed_holder(directory, url, provider, "spare", 200)
    [intake] = directory.glob("*.intake-*")
    prefix, _, number = intake.name.rpartition("-")
    intake.with_name(f"{prefix}-{int(number) + 1}").write_bytes(bytes(64 * 1024))
    intake.with_name(f"{prefix}-{int(number) + 2}").write_bytes(bytes(1000))  # cut short
    assert len(list(directory.glob("*.intake-*"))) == 3
    with Togai(TOKEN, base_url=url, retry=POLICY) as api:
        stats = api.background(spool=directory).close(30)
    assert stats.recovered == 200
    assert sorted(stored_keys(server, provider)) == sorted(f"spare-{n}" for n in range(200))
    assert not list(directory.glob("*.intake-*"))  # consumed, none set aside as damaged


def test_a_torn_spool_file_is_salvaged_and_set_aside(
    server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = prepare(server, "togai")
    url = base_url(server, provider)
    directory = tmp_path / "spool"
    killed_holder(directory, url, provider, "torn", 2000)
    [left] = directory.glob("*.spool")
    with contextlib.closing(sqlite3.connect(left, isolation_level=None)) as db:
        # As the keeper does: the intake's records into SQLite (the intake is then dropped), and a
        # checkpoint on close: every event is in the main file.
        fold_intake(db, left)
    with left.open("r+b") as file:  # then a power loss kept only the first part of the file
        file.truncate(left.stat().st_size * 2 // 3)

    caplog.set_level(logging.ERROR, logger="billing_events")
    with Togai(TOKEN, base_url=url, retry=POLICY) as api:
        sender = api.background(spool=directory)
        sender.track(event(provider, "after-0", 0))  # the sender keeps working
        stats = sender.close(30)
    stored = stored_keys(server, provider)
    assert "after-0" in stored
    assert 0 < stats.recovered < 2000
    assert len(stored) == stats.recovered + 1 == len(set(stored))
    assert set(stored) <= {f"torn-{n}" for n in range(2000)} | {"after-0"}
    [aside] = [path for path in directory.glob("*.damaged-*") if not path.name.endswith("-wal")]
    assert aside.name.startswith(left.name)
    assert f"set aside as {aside.name}" in caplog.text
    assert f"{stats.recovered} intact events were kept" in caplog.text


def test_a_damaged_intake_record_is_set_aside_and_the_records_after_it_are_kept(
    server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = prepare(server, "togai")
    url = base_url(server, provider)
    directory = tmp_path / "spool"
    killed_holder(directory, url, provider, "intake", 500)
    [intake] = directory.glob("*.intake-*")
    data = bytearray(intake.read_bytes())
    second = data.index(b"intake-1")  # a byte of the second record's payload (bit rot, a bad sector)
    data[second] ^= 0xFF
    intake.write_bytes(bytes(data))

    caplog.set_level(logging.ERROR, logger="billing_events")
    with Togai(TOKEN, base_url=url, retry=POLICY) as api:
        api.background(spool=directory).close(30)
    stored = set(stored_keys(server, provider))
    # Only the damaged record may be missing (if SQLite did not have it yet); every record after it is kept.
    assert {f"intake-{n}" for n in range(500)} - stored <= {"intake-1"}
    assert "1 damaged intake records (checksum mismatch) set aside" in caplog.text
    assert [path.name for path in directory.glob("*.intake-*.damaged-*")], sorted(
        p.name for p in directory.iterdir()
    )


def test_spool_status_shows_live_files_and_the_pending_events_of_dead_ones(
    server: str, tmp_path: Path
) -> None:
    provider = prepare(server, "togai")
    url = base_url(server, provider)
    killed_holder(tmp_path, url, provider, "status", 30)
    [dead] = spool_status(tmp_path)
    assert (dead.live, dead.pending) == (False, 30)
    assert dead.oldest is not None
    with client(provider, url) as api:
        sender = api.background(spool=tmp_path)
        [live] = spool_status(tmp_path)  # the new sender took the dead file over at once
        assert (live.live, live.pid) == (True, os.getpid())
        sender.close(30)
    assert spool_status(tmp_path) == []
    assert len(stored_keys(server, provider)) == 30


def test_spool_status_reads_a_file_without_tables_and_names_a_lock_it_may_not_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender killed while creating its SQLite file left no tables; another user's lock cannot be opened."""
    empty = tmp_path / "togai-0123456789-host-41-0badf00d.spool"
    empty.with_suffix(".lock").write_bytes(b"")
    with contextlib.closing(sqlite3.connect(empty)) as db:
        db.execute("PRAGMA journal_mode=WAL")
    foreign = tmp_path / "togai-0123456789-otherhost-42-0badf00d.lock"
    foreign.write_bytes(b"")
    refuse_opening(monkeypatch, foreign)
    [read, unread] = spool_status(tmp_path)
    assert (read.name, read.live, read.pid, read.pending, read.problem) == (empty.name, False, 41, 0, None)
    assert (unread.live, unread.pid, unread.pending) == (None, 42, None)
    assert unread.problem is not None and "not readable" in unread.problem


def test_a_record_whose_header_a_kill_came_before_is_the_end_of_the_intake(tmp_path: Path) -> None:
    """track() writes the payload, then the header: killed in between, a zero length precedes payload
    bytes with no record after them. That record was never accepted: the end, not damage."""
    record = spool_intake.RECORD
    data = bytearray(4096)
    record.pack_into(data, 0, 5, zlib.crc32(b"first"), 1, 1.0)
    data[record.size : record.size + 5] = b"first"
    data[2 * record.size + 5 : 2 * record.size + 11] = b"second"  # its header never written
    db_path = tmp_path / "file.spool"
    (tmp_path / "file.spool.intake-1").write_bytes(bytes(data))
    assert spool_intake.intake_rows(db_path, 0) == ([(1, 1.0, zlib.crc32(b"first"), b"first")], 0)


def test_stats_count_what_the_spool_holds_and_settled_events_leave_it(server: str, tmp_path: Path) -> None:
    provider = prepare(server, "togai")
    with client(provider, base_url(server, provider)) as api:
        sender = api.background(spool=tmp_path, flush_interval=3600, flush_at_events=10_000)
        for number in range(40):
            sender.track(event(provider, f"depth-{number}", number))
        assert sender.stats.in_spool == 40
        assert sender.flush(30)
        assert sender.stats.in_spool == 0
        assert sender.stats.delivered == 40
        assert sender.close(30).settled == 40


def refuse_opening(monkeypatch: pytest.MonkeyPatch, refused: Path) -> None:
    """``os.open`` of ``refused`` fails as another user's file does (the tests run as root)."""
    opener = os.open

    def denied(path: str | os.PathLike[str], flags: int, *rest: int) -> int:
        if Path(path) == refused:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return opener(path, flags, *rest)

    monkeypatch.setattr(os, "open", denied)
