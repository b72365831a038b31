"""Hostile tests of the intake's GIL-free msync (``Segment.sync``) and of settlement markers' syncs.

The tests of ``Segment.sync`` closed under a sync, of a close() that stops waiting for the keeper's
sync, and of a failed msync before the WAL's fsync each failed because of a defect found in review
of the change that made ``Segment.sync`` call libc's msync through ctypes and stopped markers from
setting ``_dirty``. So did the Ctrl-C test's "sync" case (an older defect, found after the review).
The others guard what was checked and found to hold.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from billing_events.spool import _intake as spool_intake
from billing_events.spool import _spool as spool_module
from billing_events.spool._spool import SpoolWriteError

from .spool_support import next_batch
from .test_spool import direct_spool, keeperless_spool, record_fsyncs

linux_only = pytest.mark.skipif(
    sys.platform != "linux" or spool_intake._msync is None, reason="the ctypes msync is used on Linux only"
)


def _map_at(address: int, size: int) -> int | None:
    """An anonymous mapping exactly at ``address`` (MAP_FIXED_NOREPLACE: never over a live mapping);
    None when the address is still mapped."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    map_fixed_noreplace = 0x100000
    got: int | None = libc.mmap(
        address,
        size,
        mmap.PROT_READ | mmap.PROT_WRITE,
        mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | map_fixed_noreplace,
        -1,
        0,
    )
    if got != address and ctypes.get_errno() == errno.EEXIST:
        return None
    if got != address:
        pytest.skip(f"could not map at the segment's old address: {os.strerror(ctypes.get_errno())}")
    return address


def _unmap(address: int, size: int) -> None:
    libc = ctypes.CDLL(None)
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.munmap(address, size)


@linux_only
@pytest.mark.parametrize("after_close", ["unmapped", "reused"])
def test_a_sync_that_a_close_overtakes_never_reports_success_nor_an_unmapped_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_close: str
) -> None:
    """The keeper's sync has passed its ``closed`` check when another thread closes the segment.

    mmap.flush held the GIL from its check to the end of its msync, so no close could come in between;
    the ctypes call lets the GIL go (that is its point), so Spool.close()'s munmap can. The wrapper
    below only holds the keeper at the point the GIL is let go, to make the interleaving certain.
    """
    segment = spool_intake.Segment(tmp_path / "intake", 1 << 20, 1)
    address, size = segment._address, segment.size
    segment.map[0:4096] = b"r" * 4096
    segment.offset = 4096
    real = spool_intake._msync
    assert real is not None
    entered, closed = threading.Event(), threading.Event()

    def held_msync(at: int, length: int) -> None:
        entered.set()
        assert closed.wait(10)
        real(at, length)

    monkeypatch.setattr(spool_intake, "_msync", held_msync)
    outcome: list[BaseException | None] = []

    def keeper() -> None:
        try:
            segment.sync()
            outcome.append(None)
        except BaseException as exc:  # the test reports what came out
            outcome.append(exc)

    thread = threading.Thread(target=keeper)
    thread.start()
    assert entered.wait(10)
    segment.close(remove=True)  # Spool.close() does this once its keeper join gave up
    reused = _map_at(address, size) if after_close == "reused" else None
    try:
        closed.set()
        thread.join(10)
    finally:
        if reused is not None:
            _unmap(reused, size)
    assert len(outcome) == 1
    assert isinstance(outcome[0], ValueError), f"a sync overtaken by a close ended with {outcome[0]!r}"
    assert segment.synced == 0
    assert reused is None, "the segment's address was unmapped while its msync ran"
    assert segment.map.closed  # unmapped once the sync ended


@linux_only
def test_a_close_that_stops_waiting_for_a_slow_keeper_sync_leaves_no_error_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(spool_module, "KEEPER_JOIN", 0.05)
    real = spool_intake._msync
    assert real is not None
    keepers: list[threading.Thread] = []
    entered, released = threading.Event(), threading.Event()

    def slow_disk_msync(at: int, length: int) -> None:
        if keepers and threading.current_thread() is keepers[0] and not entered.is_set():
            entered.set()
            assert released.wait(10)  # the disk takes longer than close() waits for the keeper
        real(at, length)

    monkeypatch.setattr(spool_intake, "_msync", slow_disk_msync)
    spool = direct_spool(tmp_path, durability="group", fsync_interval=0.001)
    keepers.append(spool._keeper)
    spool.offer(b'{"n":0}')
    assert entered.wait(10), "the keeper never synced the intake"
    spool.close()  # its join gives up: it closes and removes the segment the keeper is syncing
    released.set()
    spool._keeper.join(10)
    assert not spool._keeper.is_alive()
    errors = [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]
    assert not errors, [(record.getMessage(), record.exc_info and record.exc_info[1]) for record in errors]


@linux_only
def test_after_a_failed_intake_msync_no_segment_is_dropped_before_the_wal_holding_its_records_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_intake, "SEGMENT_BYTES", 4096)
    spool = keeperless_spool(tmp_path, durability="group")
    try:
        for number in range(30):
            spool.offer(b'{"n":%02d,"pad":"%s"}' % (number, b"p" * 150))
        first_segment = spool._segments[0].path
        assert len(spool._segments) > 1
        with spool._db_lock:
            spool._move_now()  # all 30 in SQLite: a commit in the WAL, to be fsynced by the next _sync
        real = spool_intake._msync
        assert real is not None

        def failing_once(address: int, length: int) -> None:
            monkeypatch.setattr(spool_intake, "_msync", real)
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(spool_intake, "_msync", failing_once)
        with pytest.raises(OSError, match="Input/output error"):
            spool._sync()  # the keeper logs it and goes on with its next round
        # Traffic goes on: new events, settled while still in the intake (settlement markers).
        for number in range(30, 35):
            spool.offer(b'{"n":%02d,"pad":"%s"}' % (number, b"p" * 150))
        taken = []
        while batch := next_batch(spool):
            taken += batch
        spool.settle([pending for pending in taken if pending.seq > 30], [])
        synced = record_fsyncs(monkeypatch)
        spool._drop_moved_segments(spool._sync())  # the keeper's next round
        wal_fsynced = any(path.endswith("-wal") for path in synced)
        assert wal_fsynced or first_segment.exists(), (
            "the intake segment of events 1 to 30 was removed while they are only in a WAL never fsynced"
        )
    finally:
        spool.close()


@linux_only
def test_a_sync_of_a_closed_segment_raises_valueerror_as_mmap_flush_did(tmp_path: Path) -> None:
    segment = spool_intake.Segment(tmp_path / "intake", 1 << 20, 1)
    segment.map[0:10] = b"x" * 10
    segment.offset = 10
    segment.close(remove=True)
    with pytest.raises(ValueError, match="closed"):
        segment.sync()
    assert segment.synced == 0


@linux_only
def test_an_msync_error_reaches_offer_as_a_spool_write_error_and_the_record_is_taken_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = direct_spool(tmp_path, durability="sync")
    try:
        spool.offer(b'{"n":0}')
        real = spool_intake._msync

        def failing(address: int, length: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(spool_intake, "_msync", failing)
        with pytest.raises(SpoolWriteError) as caught:
            spool.offer(b'{"n":1}')
        assert "Input/output error" in str(caught.value)
        monkeypatch.setattr(spool_intake, "_msync", real)
        assert spool.depth == 1
        assert [row[0] for row in spool_intake.intake_rows(spool._own.db_path, 0)[0]] == [1]
    finally:
        spool.close()


def _child(directory: Path, out: int) -> None:
    """Offer 60 events into 4 KiB segments, move 20 into SQLite and settle some of each kind; then wait."""
    try:
        spool_intake.SEGMENT_BYTES = 4096
        # "group"; with no keeper, the test decides what is in SQLite and what only in the intake.
        spool = keeperless_spool(directory)
        for number in range(20):
            spool.offer(b'{"n":%02d,"pad":"%s"}' % (number, b"p" * 150))
        with spool._db_lock:
            spool._move_now()  # events 1 to 20 in SQLite
        for number in range(20, 60):
            spool.offer(b'{"n":%02d,"pad":"%s"}' % (number, b"p" * 150))
        taken = []
        while batch := next_batch(spool):
            taken += batch
        # Every other event settled: runs of one, a marker each, so the markers rotate segments too.
        spool.settle([pending for pending in taken if pending.seq % 2 == 0], [])
        spool._sync()
        os.write(out, b"ready\n")
        signal.pause()  # until the SIGKILL
    finally:
        os._exit(1)  # only if something above failed


def test_after_a_kill_a_new_sender_has_exactly_the_unsettled_events_of_sqlite_and_the_intake(
    tmp_path: Path,
) -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _child(tmp_path, write)
    os.close(write)
    with os.fdopen(read, "rb") as lines:
        ready = lines.readline()
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert ready == b"ready\n"
    survivor = direct_spool(tmp_path)
    try:
        assert survivor.depth == 30
        payloads = []
        while batch := next_batch(survivor):
            payloads += [pending.payload for pending in batch]
        numbers = sorted(int(payload[5:7]) for payload in payloads)
        assert numbers == [n for n in range(60) if (n + 1) % 2 == 1]  # seq n+1: the odd seqs are left
    finally:
        survivor.close()


@linux_only
def test_under_sync_an_msync_error_of_a_settlement_marker_is_logged_and_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    spool = direct_spool(tmp_path, durability="sync")
    try:
        for number in range(3):
            spool.offer(b'{"n":%d}' % number)
        taken = next_batch(spool)

        def failing(address: int, length: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(spool_intake, "_msync", failing)
        spool.settle(taken, [])  # unsynced markers only mean a re-send after a power loss: go on
        assert "could not mark settled events in the spool intake" in caplog.text
        assert spool.depth == 0
    finally:
        monkeypatch.undo()
        spool.close()


@pytest.mark.parametrize("machine", ["alpha", "parisc64"])
def test_where_ms_sync_is_not_4_the_intake_syncs_through_mmap_flush(
    monkeypatch: pytest.MonkeyPatch, machine: str
) -> None:
    """On Alpha and PA-RISC, 4 is MS_INVALIDATE: an msync with it would sync nothing and succeed."""
    monkeypatch.setattr(spool_intake.platform, "machine", lambda: machine)
    assert spool_intake._gil_free_msync() is None


class _InterruptedHeader:
    """The intake's record format, but Ctrl-C comes just after a record's header is written."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.size = real.size

    def pack_into(self, *args: Any) -> None:
        self.real.pack_into(*args)
        raise KeyboardInterrupt


def _interrupted_then_killed(directory: Path, where: str) -> None:
    """In a child: one event, one offer cut short by Ctrl-C, one more event; then killed (no close)."""
    try:
        spool = direct_spool(directory, durability="sync" if where == "sync" else "group")
        spool.offer(b'{"n":1}')
        msync, record = spool_intake._msync, spool_module.RECORD
        assert msync is not None
        if where == "sync":

            def interrupted(address: int, length: int) -> None:
                msync(address, length)
                raise KeyboardInterrupt  # a signal that came during the msync is raised once it returns

            spool_intake._msync = interrupted
        else:
            spool_module.RECORD = _InterruptedHeader(record)  # type: ignore[assignment]
        try:
            spool.offer(b'{"n":2}')
            os._exit(3)
        except KeyboardInterrupt:
            pass
        spool_intake._msync, spool_module.RECORD = msync, record
        taken = [pending.payload for pending in next_batch(spool)]
        spool.offer(b'{"n":3}')
        os._exit(0 if taken == [b'{"n":1}'] else 4)
    except BaseException:
        os._exit(5)


@pytest.mark.parametrize("where", ["sync", "header"])
def test_an_offer_cut_short_by_ctrl_c_takes_no_other_events_place(tmp_path: Path, where: str) -> None:
    """track() interrupted inside the spool's offer (during its msync under "sync", or just after the
    record's header is written) leaves no record behind, and the next event gets a sequence number of
    its own: after a kill, the next sender finds the events tracked before and after, not the one
    whose track() raised."""
    child = os.fork()
    if child == 0:
        _interrupted_then_killed(tmp_path, where)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    survivor = direct_spool(tmp_path)
    try:
        found = []
        while batch := next_batch(survivor):
            found += [pending.payload for pending in batch]
    finally:
        survivor.close()
    assert found == [b'{"n":1}', b'{"n":3}']
