"""Review: the durable spool through crashes, damaged files and a shared directory.

The first five tests are defects it found (each asserts what the README's "Durable sending" promises,
and failed before its fix); the others pin what holds. Children are forked and SIGKILLed as in ``test_spool``; the real mock server records what
was stored.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing_events import SpoolConfig, Togai
from billing_events.mock import create_app
from billing_events.mock.testing import serve_in_thread
from billing_events.spool import _intake as spool_intake
from billing_events.spool import _spool as spool_module
from billing_events.spool import _store as spool_store
from billing_events.spool._spool import Spool

from .test_spool import (
    DESTINATION,
    POLICY,
    TOKEN,
    base_url,
    client,
    event,
    fork,
    killed_holder,
    prepare,
    refuse_opening,
    stored_keys,
)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_in_thread(create_app()) as url:
        yield url


def held_in_intake(
    server: str, directory: Path, prefix: str, count: int, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A killed child's ``count`` events, all still in its intake file (none moved into SQLite); that file."""
    provider = prepare(server, "togai")
    with monkeypatch.context() as patch:
        patch.setattr(spool_module, "MOVE_AFTER", 3600.0)  # inherited by the forked child
        killed_holder(directory, base_url(server, provider), provider, prefix, count)
    [intake] = directory.glob("*.intake-*")
    return intake


def test_a_sender_killed_while_creating_its_sqlite_file_does_not_stop_the_next_sender(
    server: str, tmp_path: Path
) -> None:
    """A kill between the SQLite file's creation and its schema leaves an empty database behind."""
    provider = prepare(server, "togai")
    url = base_url(server, provider)
    directory = tmp_path / "spool"

    def killed_in_open_db(out: int) -> None:
        try:

            def stalled(path: Path, synchronous: str) -> sqlite3.Connection:
                db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA locking_mode=EXCLUSIVE")
                db.execute("PRAGMA journal_mode=WAL")
                os.write(out, b"started\n")
                while True:
                    signal.pause()

            spool_store.open_db = stalled  # type: ignore[assignment]  # the forked child's copy only
            with client(provider, url) as api:
                api.background(spool=directory)
        finally:
            os._exit(1)

    pid, lines = fork(killed_in_open_db)
    with lines:
        assert lines.readline() == b"started\n"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert len(list(directory.glob("*.spool"))) == 1

    with client(provider, url) as api:
        sender = api.background(spool=directory)  # today: sqlite3.OperationalError: no such table: meta
        sender.track(event(provider, "after-0", 0))
        assert sender.flush(30)
        stats = sender.close(30)
    assert stats.delivered == 1
    assert stored_keys(server, provider) == ["after-0"]


def test_an_intake_file_that_cannot_be_read_is_not_deleted(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An I/O error reading a dead sender's intake (a bad sector): its events must not vanish unreported."""
    directory = tmp_path / "spool"
    intake = held_in_intake(server, directory, "eio", 200, monkeypatch)
    url = base_url(server, "togai")
    read_bytes = Path.read_bytes

    def failing(path: Path) -> bytes:
        if path == intake:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return read_bytes(path)

    caplog.set_level(logging.WARNING, logger="billing_events")
    with monkeypatch.context() as patch:
        patch.setattr(Path, "read_bytes", failing)
        with Togai(TOKEN, base_url=url, retry=POLICY) as api:
            api.background(spool=directory).close(30)
    reported = [record for record in caplog.records if record.levelno >= logging.WARNING]
    # The read error went away (or an operator copied the file off the bad disk): a later sender sends them.
    with Togai(TOKEN, base_url=url, retry=POLICY) as api:
        api.background(spool=directory).close(30)
    assert set(stored_keys(server, "togai")) == {f"eio-{n}" for n in range(200)}
    assert reported, "the unreadable intake file was skipped without a word"


def test_an_intake_record_whose_length_was_zeroed_keeps_the_records_after_it(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """README: "the records after a damaged one are found again by their checksums, even when the damage
    hit the record's length". A length zeroed (a zeroed sector) must not read as the end of the intake."""
    directory = tmp_path / "spool"
    intake = held_in_intake(server, directory, "zeroed", 300, monkeypatch)
    data = bytearray(intake.read_bytes())
    first_length = spool_intake.RECORD.unpack_from(data, 0)[0]
    second = spool_intake.RECORD_SIZE + first_length
    data[second : second + 4] = bytes(4)  # the second record's length field
    intake.write_bytes(bytes(data))

    caplog.set_level(logging.ERROR, logger="billing_events")
    with Togai(TOKEN, base_url=base_url(server, "togai"), retry=POLICY) as api:
        stats = api.background(spool=directory).close(30)
    stored = set(stored_keys(server, "togai"))
    assert {f"zeroed-{n}" for n in range(300)} - stored <= {"zeroed-1"}, f"recovered {stats.recovered}"
    assert any("intake" in record.getMessage() for record in caplog.records), "the damage was not reported"


def test_flush_is_not_broken_by_another_users_spool_file_in_the_directory(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many processes may share one directory. A lock file this process may not open (another user's
    sender, its file mode 0600) is not ours to adopt: flush() must not raise PermissionError for it."""
    provider = prepare(server, "togai")
    directory = tmp_path / "spool"
    with client(provider, base_url(server, provider)) as api:
        sender = api.background(spool=directory, flush_interval=3600, flush_at_events=10_000)
        spool = sender._queue
        foreign = directory / f"{spool._prefix}otherhost-1-0badf00d.lock"
        foreign.write_bytes(b"")
        refuse_opening(monkeypatch, foreign)
        for number in range(20):
            sender.track(event(provider, f"shared-{number}", number))
        try:
            flushed = sender.flush(30)  # today: PermissionError from the scan for dead senders' files
        finally:
            monkeypatch.undo()
            stats = sender.close(30)
    assert flushed
    assert stats.delivered == 20
    assert foreign.exists()


def test_a_close_that_fails_on_a_full_disk_leaves_the_file_readable_by_the_next_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() cannot move the intake into SQLite (disk full): it releases the flock, so the file is
    a dead sender's, but its SQLite connection (locking_mode=EXCLUSIVE) stays open: nobody can read it."""
    rules = Togai("token", base_url=DESTINATION).rules
    first = Spool(rules, SpoolConfig(tmp_path), DESTINATION, 1_000, 1 << 20)
    for number in range(10):
        first.offer(b'{"id":"moved-%d"}' % number)
    with first._db_lock:
        first._move_now()  # these ten are in SQLite
    first.offer(b'{"id":"intake-0"}')  # this one only in the intake

    def disk_full(self: spool_store.Store, rows: object, through: int) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(spool_store.Store, "add", disk_full)
        first.close()
    [left] = tmp_path.glob("*.spool")
    with sqlite3.connect(left, timeout=0) as reader:
        # today: sqlite3.OperationalError: database is locked (the closed sender still holds it)
        assert reader.execute("SELECT count(*) FROM events").fetchone() == (10,)
    reader.close()
    second = Spool(rules, SpoolConfig(tmp_path), DESTINATION, 1_000, 1 << 20)
    try:
        assert second.recovered == 11
    finally:
        second.close()


def test_the_token_is_in_no_spool_file(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Holds: a killed sender's spool files (SQLite, WAL, intake, status, lock) never hold the token."""
    directory = tmp_path / "spool"
    held_in_intake(server, directory, "token", 50, monkeypatch)
    files = [path for path in directory.iterdir() if path.is_file()]
    assert {path.suffix for path in files} >= {".spool", ".lock"}
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), path.name


def test_two_senders_of_one_process_share_a_directory_and_each_event_is_stored_once(
    server: str, tmp_path: Path
) -> None:
    """Holds: two live senders on one directory each keep their own file; neither adopts the other's."""
    provider = prepare(server, "togai")
    url = base_url(server, provider)
    directory = tmp_path / "spool"
    with client(provider, url) as one, client(provider, url) as two:
        first = one.background(spool=directory, flush_interval=3600, flush_at_events=10_000)
        second = two.background(spool=directory, flush_interval=3600, flush_at_events=10_000)
        assert len(list(directory.glob("*.spool"))) == 2
        for number in range(50):
            first.track(event(provider, f"one-{number}", number))
            second.track(event(provider, f"two-{number}", number))
        assert second.flush(30) and first.flush(30)
        stats = [first.close(30), second.close(30)]
    assert [item.recovered for item in stats] == [0, 0]
    assert [item.delivered for item in stats] == [50, 50]
    stored = stored_keys(server, provider)
    assert len(stored) == len(set(stored)) == 100
    assert not list(directory.iterdir())
